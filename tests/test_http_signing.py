"""CallbackSigner: tokens bind instance, thread, event and pc; expire; rotate; need a real secret."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import pytest
from http_helpers import OLD_SECRET, SECRET, Clock

import procflow as pf
from procflow.http import (
    CallbackSigner,
    CallbackTokenError,
    CallbackTokenExpired,
    SigningConfigError,
)

REQ = pf.CallbackRequest(workflow_id="e-1", thread_id="_main_", name="approve", pc=3)


def signer(*secrets: str, clock: Clock | None = None) -> CallbackSigner:
    return CallbackSigner(secrets or [SECRET], base_url="https://api.example/flow", clock=clock or Clock())


def claims_of(token: str) -> dict[str, object]:
    body = token.split(".")[2]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


def reforge(token: str, **changes: object) -> str:
    """The token with its claims changed and its old signature kept."""
    claims = {**claims_of(token), **changes}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    version, kid, _, mac = token.split(".")
    return f"{version}.{kid}.{body}.{mac}"


def test_a_token_verifies_to_the_request_it_was_minted_for() -> None:
    s = signer()
    claims = s.verify(s.token(REQ, expires_in=60))
    assert (claims.instance_id, claims.thread_id, claims.event, claims.pc) == ("e-1", "_main_", "approve", 3)
    assert claims.expires_at == Clock().now + 60


def test_a_token_is_url_safe() -> None:
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", signer().token(REQ, expires_in=timedelta(days=30)))


def test_the_url_is_the_base_url_and_the_token() -> None:
    s = signer()
    url = s.url(REQ, expires_in=60)
    assert url.startswith("https://api.example/flow/callbacks/v1.")
    assert s.verify(url.rsplit("/", 1)[1]).event == "approve"


@pytest.mark.parametrize(
    "changes",
    [{"i": "e-2"}, {"e": "deny"}, {"p": 4}, {"t": "other"}, {"x": 9_999_999_999}],
    ids=["instance", "event", "pc", "thread", "expiry"],
)
def test_changing_any_claim_breaks_the_signature(changes: dict[str, object]) -> None:
    s = signer()
    with pytest.raises(CallbackTokenError, match="signature does not match"):
        s.verify(reforge(s.token(REQ, expires_in=60), **changes))


def test_a_token_has_one_spelling_other_spellings_of_its_mac_bytes_are_refused() -> None:
    s = signer()
    token = s.token(REQ, expires_in=60)
    head, mac = token.rsplit(".", 1)
    same_bytes = [
        mac[:-1] + c
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        if c != mac[-1]
        and base64.urlsafe_b64decode(mac[:-1] + c + "=") == base64.urlsafe_b64decode(mac + "=")
    ]
    assert same_bytes  # the decoder ignores the last character's unused bits
    for spelling in same_bytes:
        with pytest.raises(CallbackTokenError):
            s.verify(f"{head}.{spelling}")


def test_a_token_is_expired_from_its_expiry_on() -> None:
    clock = Clock()
    s = signer(clock=clock)
    token = s.token(REQ, expires_in=60)
    clock.now += 59.5
    s.verify(token)
    clock.now += 0.5
    with pytest.raises(CallbackTokenExpired):
        s.verify(token)


def test_a_token_of_another_secret_is_refused() -> None:
    token = signer(OLD_SECRET).token(REQ, expires_in=60)
    with pytest.raises(CallbackTokenError, match="key this server does not have"):
        signer(SECRET).verify(token)


def test_the_first_secret_signs_and_every_secret_verifies() -> None:
    old_token = signer(OLD_SECRET).token(REQ, expires_in=60)
    rotated = signer(SECRET, OLD_SECRET)
    assert rotated.verify(old_token).key_id == rotated.key_ids[1]
    assert rotated.verify(rotated.token(REQ, expires_in=60)).key_id == rotated.key_ids[0]


def test_a_key_id_with_a_forged_signature_of_another_key_is_refused() -> None:
    token = signer(OLD_SECRET).token(REQ, expires_in=60)
    version, _, body, mac = token.split(".")
    own_kid = signer(SECRET).key_ids[0]
    with pytest.raises(CallbackTokenError):
        signer(SECRET).verify(f"{version}.{own_kid}.{body}.{mac}")


@pytest.mark.parametrize("token", ["", "abc", "v1.a.b", "v1.a.b.c.d", "v9.a.b.c", "v1.a.b.%%%", "x" * 5000])
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(CallbackTokenError):
        signer().verify(token)


@pytest.mark.parametrize("garbage", ["é", "\udcff", " ", "+/="])
def test_a_token_whose_claims_hold_characters_outside_base64_is_refused(garbage: str) -> None:
    version, kid, body, mac = signer().token(REQ, expires_in=60).split(".")
    with pytest.raises(CallbackTokenError, match="malformed"):
        signer().verify(f"{version}.{kid}.{body}{garbage}.{mac}")


def test_the_key_id_and_repr_do_not_reveal_the_secret() -> None:
    s = signer()
    assert SECRET not in repr(s)
    assert SECRET[:8] not in s.token(REQ, expires_in=60)


def test_a_signer_without_a_secret_is_refused() -> None:
    with pytest.raises(SigningConfigError, match="needs a secret"):
        CallbackSigner([])


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(SigningConfigError, match="at least 32 bytes"):
        CallbackSigner(["hunter2"])


@pytest.mark.parametrize("alone", [SECRET, SECRET.encode()], ids=["str", "bytes"])
def test_one_secret_passed_alone_is_that_one_secret(alone: str | bytes) -> None:
    s = CallbackSigner(alone)
    assert s.key_ids == signer(SECRET).key_ids
    assert CallbackSigner([SECRET]).verify(s.token(REQ, expires_in=60)).instance_id == "e-1"


def test_a_secret_that_is_neither_str_nor_bytes_is_refused() -> None:
    with pytest.raises(SigningConfigError, match="must be a str or bytes, got int"):
        CallbackSigner([SECRET, 12345])  # type: ignore[list-item]


def test_from_env_reads_comma_separated_secrets_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCFLOW_SECRET", f"{SECRET}, {OLD_SECRET}")
    monkeypatch.setenv("PROCFLOW_BASE_URL", "https://api.example/flow/")
    s = CallbackSigner.from_env()
    assert s.key_ids == signer(SECRET, OLD_SECRET).key_ids
    assert s.base_url == "https://api.example/flow"


def test_from_env_without_the_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCFLOW_SECRET", raising=False)
    with pytest.raises(SigningConfigError, match=r"\$PROCFLOW_SECRET"):
        CallbackSigner.from_env()


def test_minting_a_url_without_a_base_url_is_refused() -> None:
    with pytest.raises(SigningConfigError, match="base URL"):
        CallbackSigner([SECRET]).url(REQ, expires_in=60)


@pytest.mark.parametrize(
    "req",
    [
        pf.CallbackRequest(name="approve"),
        REQ.model_copy(update={"pc": 0}),
        REQ.model_copy(update={"thread_id": ""}),
    ],
    ids=["unparked", "no-pc", "no-thread"],
)
def test_minting_for_a_request_that_names_no_parking_is_refused(req: pf.CallbackRequest) -> None:
    with pytest.raises(ValueError, match="does not name a parked event"):
        signer().token(req, expires_in=60)


@pytest.mark.parametrize("expires_in", [0, -5, timedelta(0), float("inf"), float("nan")])
def test_minting_with_a_lifetime_that_is_not_positive_and_finite_is_refused(
    expires_in: float | timedelta,
) -> None:
    with pytest.raises(ValueError, match="positive and finite"):
        signer().token(REQ, expires_in=expires_in)


def test_a_token_minted_at_a_fractional_time_lasts_at_least_its_expires_in() -> None:
    clock = Clock(1_800_000_000.5)
    token = signer(clock=clock).token(REQ, expires_in=60)
    clock.now += 59.9
    assert signer(clock=clock).verify(token).expires_at >= 1_800_000_060.5
