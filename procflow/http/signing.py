"""Signed callback URLs: a capability to deliver one event to one parked instance.

A token carries the instance id, thread id, event name and the parking's
``pc``, with an expiry, under an HMAC-SHA256 of a server secret (the shape of
AWS Step Functions' task tokens). Its form is ``v1.<key id>.<claims>.<mac>``,
each part URL-safe base64 without padding; the key id names the secret that
signed it, so secrets can be rotated: the first secret signs, every one
configured verifies.

Secrets come from configuration (``PROCFLOW_SECRET``, or passed in), never
from code: a ``CallbackSigner`` without a secret of at least
``MIN_SECRET_BYTES`` bytes is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from ..state import CallbackRequest
from .errors import CallbackTokenError, CallbackTokenExpired, SigningConfigError

__all__ = ["BASE_URL_ENV", "MIN_SECRET_BYTES", "SECRET_ENV", "CallbackClaims", "CallbackSigner"]

SECRET_ENV: Final = "PROCFLOW_SECRET"
BASE_URL_ENV: Final = "PROCFLOW_BASE_URL"
MIN_SECRET_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = 4096

_VERSION: Final = "v1"
_DOMAIN: Final = b"procflow callback token v1\x00"
_B64: Final = re.compile(r"[A-Za-z0-9_-]*")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64.fullmatch(text):
        raise ValueError("not URL-safe base64")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # The last character's unused bits are ignored by the decoder: only the one
    # canonical spelling of the bytes is accepted, so a token has a single form.
    if _b64encode(data) != text:
        raise ValueError("not the canonical base64 of its bytes")
    return data


def key_id(secret: bytes) -> str:
    """The public id of a secret: a short hash that names it in tokens, never reveals it."""
    return _b64encode(hashlib.sha256(b"procflow key id\x00" + secret).digest()[:6])


@dataclass(frozen=True, slots=True)
class CallbackClaims:
    """What a verified token allows: deliver ``event`` to thread ``thread_id`` of
    instance ``instance_id``, parked at ``pc``, until ``expires_at``."""

    instance_id: str
    thread_id: str
    event: str
    pc: int
    expires_at: float
    key_id: str


class CallbackSigner:
    """Mints and verifies signed callback tokens and URLs.

    ``secrets``: one secret or a list of them (``str`` or ``bytes``, each at
    least ``MIN_SECRET_BYTES`` bytes); the first signs, all verify. ``base_url``:
    where the app is reachable from outside (e.g.
    ``https://api.example.com/procflow``), needed by ``url``. ``clock``
    gives Unix seconds (inject one in tests).

    Configure one signer when the application starts and hand it to the
    handlers that mint URLs (see ``CallbackLink``) and to ``create_app``.

    Raises:
        SigningConfigError: no secret, one that is too short, or one that
            is neither ``str`` nor ``bytes``.
    """

    def __init__(
        self,
        secrets: str | bytes | Iterable[str | bytes],
        *,
        base_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys: dict[str, bytes] = {}
        # One secret alone is one secret: iterating bytes would give ints, and
        # bytes(int) a run of zero bytes anyone could sign with.
        for secret in [secrets] if isinstance(secrets, (str, bytes, bytearray)) else secrets:
            if isinstance(secret, str):
                raw = secret.encode()
            elif isinstance(secret, (bytes, bytearray)):
                raw = bytes(secret)
            else:
                raise SigningConfigError(
                    f"a callback signing secret must be a str or bytes, got {type(secret).__name__}"
                )
            if len(raw) < MIN_SECRET_BYTES:
                raise SigningConfigError(
                    f"a callback signing secret needs at least {MIN_SECRET_BYTES} bytes, got {len(raw)}; "
                    'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
                )
            keys.setdefault(key_id(raw), raw)
        if not keys:
            raise SigningConfigError(
                f"callback signing needs a secret: set ${SECRET_ENV} (or pass secrets=[...]); "
                "never write it in code"
            )
        self._keys = keys
        self._signing_id = next(iter(keys))
        self.base_url = base_url.rstrip("/") if base_url else None
        self.clock = clock

    @classmethod
    def from_env(
        cls,
        *,
        base_url: str | None = None,
        clock: Callable[[], float] = time.time,
        env: str = SECRET_ENV,
    ) -> CallbackSigner:
        """A signer whose secrets are in the environment variable ``env``.

        The variable holds one or more secrets separated by commas or
        whitespace, the signing one first. ``base_url`` defaults to
        ``$PROCFLOW_BASE_URL``.

        Raises:
            SigningConfigError: the variable is unset or empty, or a secret is too short.
        """
        value = os.environ.get(env, "")
        secrets = [s for s in re.split(r"[\s,]+", value) if s]
        if not secrets:
            raise SigningConfigError(
                f"callback signing needs a secret in ${env} (one or more, comma-separated, newest first); "
                'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        return cls(secrets, base_url=base_url or os.environ.get(BASE_URL_ENV) or None, clock=clock)

    def __repr__(self) -> str:
        return f"CallbackSigner(keys={list(self._keys)}, base_url={self.base_url!r})"

    @property
    def key_ids(self) -> list[str]:
        """The ids of the configured secrets, the signing one first."""
        return list(self._keys)

    def _mac(self, key: bytes, signed: str) -> bytes:
        return hmac.new(key, _DOMAIN + signed.encode("ascii"), hashlib.sha256).digest()

    def token(self, req: CallbackRequest, *, expires_in: float | timedelta) -> str:
        """A token that delivers ``req``'s event to its parked thread, valid for ``expires_in``.

        ``req`` is the request a handler's ``setup`` receives (with
        ``workflow_id``, ``thread_id``, ``name`` and ``pc`` filled in).

        Raises:
            ValueError: ``req`` does not name a parked event, or ``expires_in``
                is not positive and finite.
        """
        seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else float(expires_in)
        if not 0 < seconds < math.inf:
            raise ValueError(f"expires_in must be positive and finite, got {expires_in!r}")
        if not req.workflow_id or not req.thread_id or not req.name or req.pc <= 0:
            raise ValueError(
                f"{req!r} does not name a parked event; mint tokens in a handler's setup, "
                "from the request it receives"
            )
        claims = {
            "i": req.workflow_id,
            "t": req.thread_id,
            "e": req.name,
            "p": req.pc,
            "x": math.ceil(self.clock() + seconds),
        }
        body = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signed = f"{_VERSION}.{self._signing_id}.{body}"
        return f"{signed}.{_b64encode(self._mac(self._keys[self._signing_id], signed))}"

    def url(self, req: CallbackRequest, *, expires_in: float | timedelta) -> str:
        """The callback URL of ``token(req, expires_in=...)``: ``<base_url>/callbacks/<token>``.

        Raises:
            SigningConfigError: the signer has no ``base_url``.
            ValueError: as ``token`` raises it.
        """
        if self.base_url is None:
            raise SigningConfigError(
                "minting callback URLs needs the app's public base URL: "
                f"pass base_url=... or set ${BASE_URL_ENV}"
            )
        return f"{self.base_url}/callbacks/{self.token(req, expires_in=expires_in)}"

    def verify(self, token: str) -> CallbackClaims:
        """The claims of a token this signer (or one sharing a secret) minted and that has not expired.

        Reads nothing but the token: no state is loaded or changed.

        Raises:
            CallbackTokenError: the token is malformed, tampered with, or signed
                by a secret this signer does not have.
            CallbackTokenExpired: it is past its expiry.
        """
        parts = token.split(".") if len(token) <= MAX_TOKEN_CHARS else []
        if len(parts) != 4 or parts[0] != _VERSION:
            raise CallbackTokenError("the callback token is malformed")
        version, kid, body, mac = parts
        if not _B64.fullmatch(body):  # the MAC is over ASCII text
            raise CallbackTokenError("the callback token is malformed")
        key = self._keys.get(kid)
        if key is None:
            raise CallbackTokenError(
                "the callback token is signed by a key this server does not have (retired or foreign)"
            )
        try:
            given = _b64decode(mac)
        except (ValueError, binascii.Error):
            raise CallbackTokenError("the callback token is malformed") from None
        if not hmac.compare_digest(self._mac(key, f"{version}.{kid}.{body}"), given):
            raise CallbackTokenError("the callback token's signature does not match")
        claims = _claims(body, kid)
        if self.clock() >= claims.expires_at:
            raise CallbackTokenExpired(f"the callback token expired at {claims.expires_at:.0f} (Unix time)")
        return claims


def _claims(body: str, kid: str) -> CallbackClaims:
    try:
        raw: Any = json.loads(_b64decode(body))
        claims = CallbackClaims(raw["i"], raw["t"], raw["e"], raw["p"], float(raw["x"]), kid)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise CallbackTokenError("the callback token's claims are malformed") from None
    if not all(isinstance(v, str) for v in (claims.instance_id, claims.thread_id, claims.event)) or not (
        isinstance(claims.pc, int) and claims.pc > 0
    ):
        raise CallbackTokenError("the callback token's claims are malformed")
    return claims
