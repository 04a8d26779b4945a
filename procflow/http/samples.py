"""A sample instance of a workflow class, to read the events its ``definition()`` declares.

The OpenAPI document lists each workflow's events before any instance
exists, so it needs a workflow object to call ``definition()`` on. In order,
it uses the sample the app was given, ``cls()``, or an object whose required
fields hold zero values of their types (``""``, ``0``, ``False``, empty
containers, ``None``).
"""

from __future__ import annotations

from typing import Any

from ..statements import On
from ..zero_values import zeroed
from .errors import WorkflowSampleError
from .events import events_of

__all__ = ["sample_events", "sample_of"]


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
        return zeroed(cls)
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
