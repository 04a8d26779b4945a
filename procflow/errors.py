"""The exceptions procflow raises.

Every error procflow raises is a :class:`ProcflowError`, so ``except
procflow.ProcflowError`` catches them all. Each subclass names one kind of
failure, and its message says what went wrong, where (statement name, thread
id) and, where it helps, what to do about it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CallbackNotFound",
    "ConflictError",
    "CorruptInstanceError",
    "DefinitionError",
    "DuplicateInstanceError",
    "HandlerError",
    "IdempotencyKeyReused",
    "InstanceNotFound",
    "PayloadError",
    "ProcflowError",
    "ReentrantCallError",
    "SetupError",
    "StaleCallback",
    "StepError",
    "StoreError",
    "UnknownWorkflowError",
    "UnstorableDataError",
    "WorkflowFinishedError",
]


class ProcflowError(Exception):
    """Base class of every error procflow raises.

    Every one pickles (to another process, a task queue's result) with its
    message and attributes, whatever its ``__init__`` takes.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own __reduce__ calls the class with the message alone,
        # which the subclasses whose __init__ takes other arguments refuse.
        return _unpickled, (type(self), self.args), self.__dict__


def _unpickled(cls: type[ProcflowError], args: tuple[Any, ...]) -> ProcflowError:
    error = cls.__new__(cls)
    error.args = args
    return error


class DefinitionError(ProcflowError):
    """The definition tree is invalid or does not match a stored instance.

    Raised for a duplicate or empty name, a statement of the wrong type, a loop
    whose iteration never parks, ``Break``/``Continue`` outside a ``For``, a
    stored position that no longer exists in the definition, and a ``resume``
    that exceeds ``max_transitions``.
    """


class StepError(ProcflowError):
    """A step's action (or a compensation, or a ``WaitFor`` handler) raised.

    The cause is chained (``__cause__``) and its text is part of the message.
    ``step`` names the step and ``thread_id`` the thread that ran it; it is
    empty for a compensation, which ``cancel`` runs outside any thread. The
    state is left at the last checkpoint, so the next ``resume`` (or
    ``cancel``) retries the same step. ``what`` and ``instance`` (the
    workflow and id, as ``'order' 'o-1'``) only shape the message.
    """

    def __init__(
        self, step: str, thread_id: str, cause: BaseException, *, what: str = "Step", instance: str = ""
    ) -> None:
        self.step = step
        self.thread_id = thread_id
        where = f" in thread {thread_id!r}" if thread_id else ""
        if instance:
            where += f" of {instance}"
        super().__init__(f"{what} {step!r}{where} raised {describe_exception(cause)}")


class SetupError(ProcflowError):
    """One or more event setups failed during ``resume``.

    The failed events are kept with status ``SETUP_ERROR`` and are set up again
    by the next ``resume``. ``failures`` maps ``(thread_id, event name)`` to the
    error text; the first cause is chained. ``instance`` (the workflow and id,
    as ``'order' 'o-1'``) only shapes the message.
    """

    def __init__(self, failures: dict[tuple[str, str], str], *, instance: str = "") -> None:
        self.failures = failures
        details = "; ".join(
            f"event {name!r} in thread {thread!r}: {text}" for (thread, name), text in failures.items()
        )
        of = f" of {instance}" if instance else ""
        super().__init__(
            f"setup of {len(failures)} event(s){of} failed: {details}; the next resume retries them"
        )


class CallbackNotFound(ProcflowError):
    """No thread is parked on the event the callback names.

    The event was already delivered, its Wait was left, or it never existed.
    """


class StaleCallback(ProcflowError):
    """The callback carries a ``pc`` from an earlier parking of the event."""


class PayloadError(ProcflowError):
    """A payload failed validation against an ``OnEvent``'s payload type, or its handler refused it.

    ``errors`` holds pydantic's list of validation errors (JSON-serialisable;
    empty when a handler raised it). Nothing was changed.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        self.errors: list[dict[str, Any]] = errors or []
        super().__init__(message)


class HandlerError(ProcflowError):
    """An event handler's ``handle`` raised; the cause is chained.

    ``event`` names the event and ``thread_id`` the thread parked on it. The
    state is unchanged and the event stays parked.
    """

    def __init__(self, message: str, *, event: str = "", thread_id: str = "") -> None:
        self.event = event
        self.thread_id = thread_id
        super().__init__(message)


class WorkflowFinishedError(ProcflowError):
    """The workflow is finished or cancelled, so it cannot be resumed or called back."""


class IdempotencyKeyReused(ProcflowError):
    """An idempotency key came again with another event or payload.

    A key names one request: its kept reply answers repeats of that request
    only. Give each new request a key of its own.
    """


class ReentrantCallError(ProcflowError):
    """A step or handler (or a task it started) called the engine on the
    instance whose run is running it.

    The engine's operations on one instance take turns, so that call would
    wait for the run that made it. Change the workflow's data in the step
    instead, or make the call from another task once the run is over.
    """


class UnstorableDataError(ProcflowError):
    """The workflow's data cannot be stored: it does not serialise to JSON, or
    its JSON would not validate back as the workflow's class (a ``None`` in a
    ``list[str]`` field, say).

    Also raised by a send with an idempotency key whose handler's reply does
    not serialise to JSON, or whose JSON would not give a repeat the same
    reply (a model that writes its NaN as ``null``), since the reply must be
    kept for a repeat.

    Nothing is saved. When a step left such data, the engine keeps the
    instance as its last commit left it and marks it ``FAILED`` on that step,
    so ``retry`` runs the step again once its code is fixed.
    """


class InstanceNotFound(ProcflowError):
    """No stored instance has that id (or correlation id)."""


class UnknownWorkflowError(ProcflowError):
    """A workflow name that no class was registered for (``Engine(workflows=[...])``)."""


class StoreError(ProcflowError):
    """A store could not do what was asked; the subclasses say why."""


class ConflictError(StoreError):
    """The instance changed since it was loaded (optimistic concurrency).

    Another process saved it first; nothing was written. Load it again and
    retry, or give up: the engine retries where that is safe.
    """


class DuplicateInstanceError(StoreError):
    """An instance with that id or correlation id already exists."""


class CorruptInstanceError(StoreError):
    """A stored instance cannot be decoded (bad JSON, or data that no longer validates).

    The message names the instance; other instances are not affected.
    """


def describe_exception(exc: BaseException) -> str:
    """``"Type: message"`` for ``exc``, as failures and hooks record it.

    An exception group (a task group's, say) also lists what it holds, since
    its own message ("unhandled errors in a TaskGroup") does not say what
    went wrong.
    """
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BaseExceptionGroup):
        text += " [" + "; ".join(describe_exception(e) for e in exc.exceptions) + "]"
    return storable_text(text)


def storable_text(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (``\\udcff``).

    Messages may hold them (a file name that is not UTF-8, as ``os.listdir``
    returns it); stored, they would make the whole commit fail to encode.
    """
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text
