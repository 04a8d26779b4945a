"""How the engine turns a registered workflow class into stored JSON and back."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from .errors import CorruptInstanceError, DefinitionError, UnstorableDataError
from .state import State
from .stores._keys import storable

__all__ = ["WorkflowType"]


class WorkflowType:
    """A registered workflow class: its stored name and its JSON codec.

    The workflow's data is the class (a dataclass or a pydantic model)
    dumped with pydantic. Fields annotated ``State`` are not stored with the
    data: the engine stores the ``State`` on its own and puts it back into
    those fields when it loads an instance, so ``definition()`` may read it.
    Such a field needs a default (e.g. ``field(default_factory=...)``).
    """

    def __init__(self, cls: type[Any], name: str | None = None) -> None:
        if not isinstance(cls, type):
            hint = (
                f"pass the class {type(cls).__name__}, not an instance of it"
                if callable(getattr(cls, "definition", None))
                else "pass a dataclass or pydantic model class with a definition() method"
            )
            raise DefinitionError(f"workflows are registered by class, got {cls!r}; {hint}")
        if not callable(getattr(cls, "definition", None)):
            raise DefinitionError(f"{cls.__qualname__} has no definition() method; it is not a workflow")
        if name is not None and (not isinstance(name, str) or not storable(name)):
            raise DefinitionError(
                f"{cls.__qualname__} cannot be registered under {name!r}: a workflow name is a str "
                "that every store can keep (UTF-8 text, no NUL character)"
            )
        self.cls = cls
        self.name = name or cls.__name__
        try:
            self.adapter: TypeAdapter[Any] = TypeAdapter(cls)
        except Exception as e:
            raise DefinitionError(
                f"workflow {cls.__qualname__} must be a dataclass or a pydantic model that "
                f"pydantic can serialise: {e}"
            ) from e
        self.state_fields = _state_fields(cls)
        self.data_fields = tuple(name for name in _field_names(cls) if name not in self.state_fields)

    def encode(self, workflow: Any, instance_id: str = "") -> str:
        """The workflow's data as JSON, without its ``State`` fields.

        The JSON is validated back as the class before it is returned, so that
        nothing is stored that could not be loaded again.

        Raises:
            UnstorableDataError: the data does not serialise, or its JSON does
                not validate as the class.
        """
        exclude = set(self.state_fields) or None
        of = f" of instance {instance_id!r}" if instance_id else ""
        try:
            data = self.adapter.dump_json(workflow, exclude=exclude)
        except (PydanticSerializationError, ValueError, TypeError) as e:
            raise UnstorableDataError(
                f"the data{of} cannot be stored: it does not serialise as workflow {self.name!r} "
                f"({type(e).__name__}: {e}); keep the fields to values pydantic can dump to JSON"
            ) from e
        _, error = self._load(data)
        if error is not None:
            raise UnstorableDataError(
                f"the data{of} cannot be stored: its JSON would not load back as workflow "
                f"{self.name!r} ({_problem(error)}); keep each field to what its annotation allows"
            ) from error
        return data.decode()

    def decode(self, instance_id: str, data: str, state: State) -> Any:
        """A workflow object from stored JSON, with ``state`` in its ``State`` fields.

        Raises:
            CorruptInstanceError: the data does not validate against the class
                (or one of its validators raised; the error is chained).
        """
        workflow, error = self._load(data)
        if error is not None:
            raise CorruptInstanceError(
                f"instance {instance_id!r}: its stored data does not load as workflow {self.name!r} "
                f"({_problem(error)}); repair the row (procflow edit) or make the class accept it"
            ) from error
        self.attach(workflow, state)
        return workflow

    def _load(self, data: str | bytes) -> tuple[Any, Exception | None]:
        """The workflow object of JSON ``data``, or what its validation raised."""
        try:
            return self.adapter.validate_json(data), None
        except Exception as e:  # a ValidationError, or whatever a validator of the class raised
            return None, e

    def attach(self, workflow: Any, state: State) -> None:
        """Put ``state`` into the workflow's ``State`` fields."""
        for name in self.state_fields:
            object.__setattr__(workflow, name, state)


def _problem(error: Exception) -> str:
    """Why data did not load, for messages: pydantic's first errors, or what a validator raised."""
    if not isinstance(error, ValidationError):
        return f"{type(error).__name__}: {error}"
    first = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
        for e in error.errors(include_url=False)[:3]
    )
    return f"{error.error_count()} error(s): {first}"


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    """The fields of a pydantic model or a dataclass, in order."""
    fields = getattr(cls, "model_fields", None)
    if fields is not None:
        return tuple(fields)
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return ()


def _state_fields(cls: type[Any]) -> tuple[str, ...]:
    fields = getattr(cls, "model_fields", None)
    if fields is not None:
        return tuple(name for name, f in fields.items() if f.annotation is State)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = getattr(cls, "__annotations__", {})
    return tuple(name for name, hint in hints.items() if hint is State or hint == "State")
