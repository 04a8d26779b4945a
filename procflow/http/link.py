"""``CallbackLink``: an ``OnEvent``-style handler whose setup mints a signed callback URL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from .._calling import call
from ..handlers import FunctionHandler
from ..state import CallbackRequest
from .signing import CallbackSigner

__all__ = ["CallbackLink"]

Notify = Callable[[CallbackRequest, str], "Awaitable[None] | None"]


class CallbackLink(FunctionHandler):
    """Handles an event like ``OnEvent`` (typed payload, ``fn``'s return value as the reply),
    and on setup hands a signed URL for the event to ``notify(req, url)``.

    Use it with ``On``: ``pf.On("approve", CallbackLink(self.approve, signer, notify=mail))``.
    ``signer`` is a ``CallbackSigner`` or a zero-argument function returning
    one (read at setup, so a definition can be built before signing is
    configured). ``notify`` (sync or async) sends the URL wherever the third
    party will find it (an e-mail, a chat message, a payment provider's API).
    The URL delivers this event to this parking only and expires after
    ``expires_in``; it is not stored with the instance.

    A failing ``notify`` (or a signer without a secret) fails the setup:
    ``resume`` raises ``SetupError`` and the next ``resume`` tries again.
    """

    type = "callback_link"
    side_effects = True

    def __init__(
        self,
        fn: Callable[..., Any],
        signer: CallbackSigner | Callable[[], CallbackSigner],
        *,
        notify: Notify,
        expires_in: float | timedelta = timedelta(days=7),
    ) -> None:
        super().__init__(fn)
        self.signer = signer
        self.notify = notify
        self.expires_in = expires_in

    async def setup(self, req: CallbackRequest) -> str:
        """Mint the event's signed URL and pass it to ``notify``.

        Raises:
            SigningConfigError: the signer has no ``base_url``.
        """
        signer = self.signer if isinstance(self.signer, CallbackSigner) else self.signer()
        await call(self.notify, req, signer.url(req, expires_in=self.expires_in))
        return ""
