"""A sample instance of a workflow class, to read the events its ``definition()`` declares.

The OpenAPI document lists each workflow's events before any instance
exists, so it needs a workflow object to call ``definition()`` on. In order,
it uses the sample the app was given, ``cls()``, or an object whose required
fields hold zero values of their types (``""``, ``0``, ``False``, empty
containers, ``None``).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel

from ..state import State
from ..statements import On
from .errors import WorkflowSampleError
from .events import events_of

__all__ = ["sample_events", "sample_of"]

_EMPTY: dict[Any, Any] = {list: list, dict: dict, set: set, frozenset: frozenset, tuple: tuple}


def _zero(hint: Any) -> Any:
    """A zero value of a type hint (``None`` when there is no obvious one)."""
    origin = typing.get_origin(hint) or hint
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        return None if type(None) in args else _zero(args[0])
    if origin is Literal:
        return typing.get_args(hint)[0]
    if origin in _EMPTY:
        return _EMPTY[origin]()
    if origin in (bool, int, float, str, bytes):
        return origin()
    if isinstance(origin, type) and issubclass(origin, enum.Enum):
        return next(iter(origin))
    if origin is State:
        return None
    if isinstance(origin, type) and (dataclasses.is_dataclass(origin) or issubclass(origin, BaseModel)):
        return _zeroed(origin)
    return None


def _zeroed(cls: type[Any]) -> Any:
    """An instance of a dataclass or pydantic model with zero values in its required fields."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        required = {name: _zero(f.annotation) for name, f in cls.model_fields.items() if f.is_required()}
        return cls.model_construct(**required)
    hints = typing.get_type_hints(cls)
    required = {
        f.name: _zero(hints.get(f.name, Any))
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return cls(**required)


def sample_of(name: str, cls: type[Any], given: Any = None) -> Any:
    """A workflow object of ``cls`` to read its definition from.

    Raises:
        WorkflowSampleError: ``cls`` cannot be instantiated without arguments,
            even with zero values in its required fields.
    """
    if given is not None:
        return given
    try:
        return cls()
    except Exception:
        pass
    try:
        return _zeroed(cls)
    except Exception as e:
        raise WorkflowSampleError(
            f"cannot make a sample {name!r} ({cls.__qualname__}) to read its events: "
            f"{type(e).__name__}: {e}; pass create_app(..., samples={{{name!r}: {cls.__name__}(...)}})"
        ) from e


def sample_events(name: str, cls: type[Any], given: Any = None) -> dict[str, On]:
    """The events of a workflow class by name, read from a sample's definition.

    Raises:
        WorkflowSampleError: no sample can be made, or its ``definition()`` raises.
    """
    sample = sample_of(name, cls, given)
    try:
        return events_of(sample.definition())
    except Exception as e:
        raise WorkflowSampleError(
            f"the definition() of a sample {name!r} raised {type(e).__name__}: {e}; "
            f"pass create_app(..., samples={{{name!r}: {cls.__name__}(...)}}) with data it can use"
        ) from e
