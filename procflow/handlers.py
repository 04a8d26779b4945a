"""Event handlers: the base class users subclass, and typed ``OnEvent`` handlers."""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from types import FunctionType, MethodType
from typing import Any, ClassVar

from pydantic import PydanticUserError, TypeAdapter, ValidationError

from .errors import DefinitionError, PayloadError
from .state import CallbackRequest

__all__ = ["FunctionHandler", "Handler"]


class Handler:
    """The base class of the handler behind each event of a ``Wait``.

    Subclass it with your own ``__init__`` and a ``type`` class attribute (a
    short, non-empty name stored with each parked event). Without one, a class
    inherits the ``type`` a base class set (a subclass of ``Timer`` is still a
    timer), and takes its own name when no base set one.
    Every method may be sync or async.
    """

    type: ClassVar[str] = "handler"
    side_effects: ClassVar[bool] = True
    """Whether ``setup``/``teardown`` act outside the workflow (register a webhook,
    a timer). Their results are then committed before anything else runs; set it
    to ``False`` for handlers whose setup and teardown only compute."""

    _type_is_its_name: ClassVar[bool] = False  # True where __init_subclass__ gave the class its name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Default ``type`` to the one a base class set, else to the class name.

        Raises:
            DefinitionError: the class sets a ``type`` that is not a non-empty str.
        """
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            if type(cls.type) is not str or not cls.type:
                raise DefinitionError(f"{cls.__qualname__}.type must be a non-empty str, got {cls.type!r}")
            cls._type_is_its_name = False
            return
        for base in cls.__mro__[1:]:
            if base is Handler:
                break
            if "type" in base.__dict__ and not base.__dict__.get("_type_is_its_name", False):
                cls._type_is_its_name = False
                return  # inherited, as class attributes are
        cls.type = cls.__name__
        cls._type_is_its_name = True

    def setup(self, req: CallbackRequest) -> str | Awaitable[str]:
        """Start listening for the event (register a webhook, a timer, ...).

        Runs when a thread parks on the Wait. The returned string is kept in
        ``req.setup_data`` for ``handle`` and ``teardown``. Raising makes
        ``resume`` raise ``SetupError``; the setup is retried by the next
        ``resume``.
        """
        return ""

    def handle(self, req: CallbackRequest, payload: Any) -> Any:
        """Handle the arrived event; may change the workflow's data.

        The return value is the reply to the sender. Raising
        ``PayloadError`` refuses the payload: ``handle_callback`` raises it,
        with where it happened prefixed. Raising anything else makes
        ``handle_callback`` raise ``HandlerError``. Either changes nothing in
        the ``State``.
        """
        return None

    def teardown(self, req: CallbackRequest, handled: bool) -> Awaitable[None] | None:
        """Stop listening; ``handled`` tells whether this event was the one delivered."""
        return None


@dataclass(frozen=True, slots=True)
class _Signature:
    payload: TypeAdapter[Any]
    reply: TypeAdapter[Any]
    payload_type: Any
    reply_type: Any
    takes_payload: bool


@dataclass(frozen=True, slots=True)
class _Cached:
    annotations: dict[str, Any]  # the dict the signature was read from (the fast check)
    fingerprint: tuple[Any, ...]  # what else it was read from (see _fingerprint)
    signature: _Signature


# Keyed by code object: definitions are rebuilt often, and a lambda or a bound
# method is a new object each time, while its code stays the same. Functions
# that share a code object (the wrappers of one decorator, the closures of one
# factory) may still differ in annotations, defaults or the function they wrap,
# so each code keeps one entry per fingerprint. A method or a module function
# keeps its annotations dict, which finds its entry without a fingerprint.
_signatures: dict[Hashable, list[_Cached]] = {}


def _keyed(fn: Callable[..., Any]) -> tuple[Hashable | None, FunctionType | None]:
    """``fn``'s cache key and the Python function its signature is read from (``None, None``: uncached)."""
    if isinstance(fn, functools.partial):
        inner, target = _keyed(fn.func)
        if inner is None:
            return None, None
        return ("partial", inner, len(fn.args), tuple(sorted(fn.keywords))), target
    func = getattr(fn, "__func__", fn)
    if type(func) is FunctionType:
        return func.__code__, func
    call = inspect.getattr_static(type(fn), "__call__", None)
    if type(call) is FunctionType:
        return ("call", call.__code__), call
    return None, None


def _fingerprint(func: FunctionType) -> tuple[Any, ...]:
    """What a function's signature is read from besides its code, compared with ``==``."""
    attrs = func.__dict__
    wrapped = attrs.get("__wrapped__")  # functools.wraps: inspect.signature reads the wrapped function
    inner: tuple[Any, ...] | None = None
    if wrapped is not None:
        key, target = _keyed(wrapped)
        inner = (key, None if target is None else _fingerprint(target))
    return (
        func.__annotations__,
        len(func.__defaults__ or ()),
        tuple(func.__kwdefaults__ or ()),
        attrs.get("__signature__"),
        inner,
    )


def _signature_of(fn: Callable[..., Any]) -> _Signature:
    func = fn.__func__ if type(fn) is MethodType else fn
    key: Hashable | None
    target: FunctionType | None
    if type(func) is FunctionType:  # _keyed's answer for the common cases, without its calls
        key, target = func.__code__, func
    else:
        key, target = _keyed(fn)
    if key is None or target is None:
        return _inspect(fn)
    annotations = target.__annotations__
    entries = _signatures.get(key)
    if entries is None:
        entries = _signatures[key] = []
    for entry in entries:
        if entry.annotations is annotations:
            return entry.signature
    fingerprint = _fingerprint(target)
    for entry in entries:
        if entry.fingerprint == fingerprint:
            return entry.signature
    sig = _inspect(fn)
    entries.append(_Cached(annotations, fingerprint, sig))
    return sig


def _annotated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function whose annotations describe ``fn``'s parameters."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return fn
    call: Callable[..., Any] = type(fn).__call__
    return call


def _function_name(fn: Callable[..., Any]) -> str:
    """``fn`` as messages name it: its qualified name, never its repr (a bound method's shows its object)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return repr(name)


def check_event_function(fn: Callable[..., Any]) -> None:
    """Check that ``fn`` can be an ``OnEvent``'s function (the result is cached).

    Raises:
        DefinitionError: it needs more than one argument or a keyword-only
            one, its type hints do not resolve, or pydantic cannot validate its
            payload or reply type.
    """
    _signature_of(fn)


def _inspect(fn: Callable[..., Any]) -> _Signature:
    """Read ``fn``'s payload and reply types; its first positional parameter, if any, takes the payload."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as e:
        raise DefinitionError(f"function {_function_name(fn)}: cannot read its signature: {e}") from e
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 1:
        raise DefinitionError(
            f"function {_function_name(fn)} takes {len(required)} arguments; it must take one, "
            "the payload (or none)"
        )
    keyword_only = [p.name for p in parameters if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if keyword_only:
        raise DefinitionError(
            f"function {_function_name(fn)} has keyword-only parameters without a default "
            f"({', '.join(keyword_only)}); the payload is passed positionally, so give them defaults"
        )
    params = positional[:1]
    try:
        hints = typing.get_type_hints(_annotated(fn))
    except Exception as e:  # unresolvable forward reference, typically
        raise DefinitionError(
            f"function {_function_name(fn)}: cannot resolve its type hints ({e}); "
            "define the payload type at module level"
        ) from e
    payload_type = hints.get(params[0].name, Any) if params else None
    reply_type = hints.get("return", Any)
    if reply_type is type(None):
        reply_type = None
    try:
        payload: TypeAdapter[Any] = TypeAdapter(payload_type if params else None)
        reply: TypeAdapter[Any] = TypeAdapter(reply_type)
    except PydanticUserError as e:  # a type pydantic cannot validate
        first_line = str(e).splitlines()[0]
        raise DefinitionError(
            f"function {_function_name(fn)}: pydantic cannot validate its payload or reply "
            f"type ({first_line}); use a pydantic model, a dataclass or a standard type"
        ) from e
    return _Signature(
        payload=payload,
        reply=reply,
        payload_type=payload_type,
        reply_type=reply_type,
        takes_payload=bool(params),
    )


class FunctionHandler(Handler):
    """The handler of an ``OnEvent``: validates the payload, then calls ``fn``."""

    type = "event"
    side_effects = False

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    @property
    def payload_type(self) -> Any:
        """The type the payload is validated against (``Any`` when unannotated)."""
        return _signature_of(self.fn).payload_type

    @property
    def reply_type(self) -> Any:
        """The annotated return type of ``fn`` (``Any`` when unannotated)."""
        return _signature_of(self.fn).reply_type

    def payload_schema(self) -> dict[str, Any]:
        """The JSON Schema of the payload."""
        return _signature_of(self.fn).payload.json_schema()

    def reply_schema(self) -> dict[str, Any]:
        """The JSON Schema of the reply."""
        return _signature_of(self.fn).reply.json_schema(mode="serialization")

    def validate(self, payload: Any) -> Any:
        """Return ``payload`` validated against the payload type.

        ``str`` and ``bytes`` are parsed as JSON, except that a ``str`` whose
        JSON does not validate is taken as it is when the payload type accepts
        that string (so ``"ann"``, ``'"ann"'`` and ``"42"`` for a ``str``
        payload give ``"ann"``, ``"ann"`` and ``"42"``). Anything else is
        validated as a Python object. A function without a payload parameter
        ignores the payload.

        Raises:
            PayloadError: the payload does not validate; ``.errors`` lists why.
        """
        sig = _signature_of(self.fn)
        if not sig.takes_payload:
            return None
        return self._validated(sig, payload)

    def _validated(self, sig: _Signature, payload: Any) -> Any:
        # The adapter's compiled validator: TypeAdapter's methods, with nothing
        # to pass on, only add a Python call around it.
        validator = sig.payload.validator
        try:
            if isinstance(payload, (str, bytes, bytearray)):
                try:
                    return validator.validate_json(payload)
                except ValidationError:
                    if not isinstance(payload, str):
                        raise
                    try:  # the text itself, for a payload type that takes a string
                        return validator.validate_python(payload)
                    except ValidationError:
                        pass
                    raise
            return validator.validate_python(payload)
        except ValidationError as e:
            errors = _jsonable(e)
            raise PayloadError(
                f"invalid payload for {_function_name(self.fn)}: "
                f"{e.error_count()} error(s): {_summary(errors)}",
                errors,
            ) from e

    def storable(self, payload: Any) -> Any:
        """``payload`` validated, as the JSON values that validate back to it, for the inbox.

        Dumped through the payload type (aliases included), so that a model
        comes back as the same model when the event is delivered later.

        Raises:
            PayloadError: the payload does not validate, or its JSON does not
                validate back to the same value (a ``SecretStr`` is masked,
                say), so it cannot wait in the inbox.
        """
        sig = _signature_of(self.fn)
        if not sig.takes_payload:
            return None
        value = self._validated(sig, payload)
        stored = sig.payload.dump_python(value, mode="json", by_alias=True, exclude_unset=True)
        try:
            same = self._validated(sig, stored) == value
        except PayloadError:
            same = False
        if not same:
            raise PayloadError(
                f"the payload for {_function_name(self.fn)} cannot wait in the inbox: stored as JSON, it "
                "does not come back the same (a secret is masked, say); send it once a thread waits for it"
            )
        return stored

    def handle(self, req: CallbackRequest, payload: Any) -> Any:
        """Validate ``payload`` and return ``fn``'s result (awaitable when ``fn`` is async).

        Raises:
            PayloadError: the payload does not validate; ``fn`` is not called.
        """
        fn = self.fn
        sig = _signature_of(fn)
        if sig.takes_payload:
            return fn(self._validated(sig, payload))
        return fn()


def _jsonable(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as plain JSON values: inputs may be bytes (even invalid UTF-8) or objects."""
    raw = error.errors(include_url=False)
    for item in raw:
        value = item.get("input")
        if isinstance(value, (bytes, bytearray)):
            item["input"] = bytes(value).decode("utf-8", "replace")
    result: list[dict[str, Any]] = json.loads(json.dumps(raw, default=str))
    return result


def _summary(errors: list[Any]) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in errors[:5]
    )
