"""Workflow objects made without arguments, to read what their ``definition()`` declares.

Drawing a workflow class or listing its events needs an object to call
``definition()`` on before any instance exists. ``zeroed`` makes one whose
required fields hold zero values of their types (``""``, ``0``, ``False``,
empty containers, the first member of an enum, ``None``).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel

from .state import State

__all__ = ["zero_value", "zeroed"]

_EMPTY: dict[Any, Any] = {list: list, dict: dict, set: set, frozenset: frozenset, tuple: tuple}


def zero_value(hint: Any) -> Any:
    """A zero value of a type hint (``None`` when there is no obvious one)."""
    origin = typing.get_origin(hint) or hint
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        return None if type(None) in args else zero_value(args[0])
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
        return zeroed(origin)
    return None


def zeroed(cls: type[Any]) -> Any:
    """An instance of a dataclass or pydantic model with zero values in its required fields.

    Raises:
        Exception: whatever ``cls`` raises for those values (its own checks).
    """
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        required = {name: zero_value(f.annotation) for name, f in cls.model_fields.items() if f.is_required()}
        return cls.model_construct(**required)
    hints = typing.get_type_hints(cls)
    required = {
        f.name: zero_value(hints.get(f.name, Any))
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return cls(**required)
