"""Acknowledgement tokens, their keys and their settings (pure: no server needed)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from services.notifier.adapters.link_keys import LinkKeysRefused, link_key_ring
from services.notifier.domain.deliveries import compose
from services.notifier.domain.links import (
    CLOCK_SKEW,
    MAX_TOKEN_LENGTH,
    InvalidLink,
    LinkClaims,
    LinkIssuer,
    LinkKey,
    LinkKeyRing,
    parse_link_keys,
    sign,
    token_id,
)
from services.notifier.domain.messages import MessageContent
from services.settings import VigilSettings
from shared.secret_files import SecretFileError

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SIGNAL = uuid.UUID(int=7)
ACTIVE = LinkKey("2027-01", b"a" * 32)
RETIRED = LinkKey("2026-07", b"r" * 32)
WEEK = timedelta(days=7)
ISSUER = LinkIssuer(LinkKeyRing(ACTIVE, (RETIRED,)), "https://v.example", WEEK)


def claims(**changes: Any) -> LinkClaims:
    values: dict[str, Any] = {
        "key_id": ACTIVE.key_id,
        "signal_id": SIGNAL,
        "person_id": "inv-0101",
        "issued_at": T0,
        "expires_at": T0 + WEEK,
        "nonce": "n0",
    }
    return LinkClaims(**{**values, **changes})


def test_a_genuine_token_names_the_signal_and_the_person_and_is_known_by_a_hash() -> None:
    token = ISSUER.token(ISSUER.claims(SIGNAL, "inv-0101", T0))
    verified = ISSUER.verify(token, SIGNAL, T0 + timedelta(hours=1))
    assert (verified.claims.signal_id, verified.person_id) == (SIGNAL, "inv-0101")
    assert verified.expires_at == T0 + WEEK
    assert verified.token_id == token_id(token)
    assert verified.token_id not in token


def test_every_issued_link_is_distinct_but_the_same_claims_make_the_same_token() -> None:
    first, second = (ISSUER.claims(SIGNAL, "inv-0101", T0) for _ in range(2))
    assert ISSUER.token(first) != ISSUER.token(second)  # the nonce
    stored = LinkClaims.model_validate_json(first.model_dump_json())  # as the outbox keeps it
    assert ISSUER.token(stored) == ISSUER.token(first)  # a resend carries the same link


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), "does not match"),
        (lambda t: t.split(".")[0] + ".eyJwIjoibW0tMDEifQ." + t.split(".")[2], "does not match"),
        (lambda t: t.replace(".", "", 1), "form"),
        (lambda t: "unknown-key." + t.split(".", 1)[1], "does not hold"),
        (lambda t: t + "x" * MAX_TOKEN_LENGTH, "longer"),
    ],
)
def test_altered_malformed_or_unknown_key_tokens_are_refused(mutate: Any, reason: str) -> None:
    token = sign(ACTIVE, claims())
    with pytest.raises(InvalidLink, match=reason):
        ISSUER.verify(mutate(token), SIGNAL, T0)


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip_unused_bits(token: str, bits: int) -> str:
    """The same signature bytes spelt otherwise: a 32-byte HMAC is 43 base64url characters,
    the last of which carries 2 bits that decoders ignore."""
    return token[:-1] + _B64URL[_B64URL.index(token[-1]) ^ bits]


@pytest.mark.parametrize(
    "respell",
    [
        lambda t: _flip_unused_bits(t, 1),
        lambda t: _flip_unused_bits(t, 2),
        lambda t: _flip_unused_bits(t, 3),
        lambda t: t + "=",
        lambda t: t + "==",
        lambda t: t[:-4] + "\n" + t[-4:],  # a character a lenient decoder skips
        lambda t: t[:-4] + "!" + t[-4:],
    ],
)
def test_a_link_is_accepted_only_as_it_was_issued_never_spelt_otherwise(respell: Any) -> None:
    """Each spelling of one signature would otherwise be another link, and record another
    assessment: refused with the same answer as an altered signature."""
    token = sign(ACTIVE, claims())
    assert ISSUER.verify(token, SIGNAL, T0).token_id == token_id(token)
    with pytest.raises(InvalidLink, match="does not match"):
        ISSUER.verify(respell(token), SIGNAL, T0)


def test_a_token_signed_with_another_secret_under_a_known_key_id_is_refused() -> None:
    forged = sign(LinkKey(ACTIVE.key_id, b"x" * 32), claims())
    with pytest.raises(InvalidLink, match="does not match"):
        ISSUER.verify(forged, SIGNAL, T0)


def test_a_forged_far_future_expiry_is_refused_even_when_correctly_signed() -> None:
    forged = sign(ACTIVE, claims(expires_at=T0 + timedelta(days=3650)))
    with pytest.raises(InvalidLink, match="longer validity"):
        ISSUER.verify(forged, SIGNAL, T0 + timedelta(hours=1))


def test_an_issue_time_in_the_future_is_refused_beyond_the_clock_skew() -> None:
    ahead = sign(ACTIVE, claims(issued_at=T0 + timedelta(hours=1), expires_at=T0 + WEEK))
    with pytest.raises(InvalidLink, match="future"):
        ISSUER.verify(ahead, SIGNAL, T0)
    slightly = T0 + CLOCK_SKEW - timedelta(seconds=1)
    within = sign(ACTIVE, claims(issued_at=slightly, expires_at=slightly + WEEK))
    assert ISSUER.verify(within, SIGNAL, T0).person_id == "inv-0101"


def test_the_server_cap_bounds_validity_and_a_shorter_claimed_expiry_is_kept() -> None:
    token = sign(ACTIVE, claims())
    ISSUER.verify(token, SIGNAL, T0 + WEEK - timedelta(seconds=1))
    with pytest.raises(InvalidLink, match="expired"):
        ISSUER.verify(token, SIGNAL, T0 + WEEK)
    # the operator shortened the cap: links already sent obey it
    stricter = LinkIssuer(ISSUER.keys, ISSUER.base_url, timedelta(days=1))
    with pytest.raises(InvalidLink, match="longer validity"):
        stricter.verify(token, SIGNAL, T0)
    short = sign(ACTIVE, claims(expires_at=T0 + timedelta(hours=2)))
    with pytest.raises(InvalidLink, match="expired"):
        ISSUER.verify(short, SIGNAL, T0 + timedelta(hours=2))


def test_a_token_for_another_signal_is_refused() -> None:
    with pytest.raises(InvalidLink, match="another signal"):
        ISSUER.verify(sign(ACTIVE, claims()), uuid.UUID(int=8), T0)


def test_a_retired_key_still_verifies_and_a_removed_one_does_not() -> None:
    old = sign(RETIRED, claims(key_id=RETIRED.key_id))
    assert ISSUER.verify(old, SIGNAL, T0).person_id == "inv-0101"
    after_removal = LinkIssuer(LinkKeyRing(ACTIVE), ISSUER.base_url, WEEK)
    with pytest.raises(InvalidLink, match="does not hold"):
        after_removal.verify(old, SIGNAL, T0)


def test_claims_planned_under_a_removed_key_are_signed_with_the_active_one_when_sent() -> None:
    planned = claims(key_id="gone")
    token = ISSUER.token(planned)
    assert token.startswith(f"{ACTIVE.key_id}.")
    assert ISSUER.verify(token, SIGNAL, T0).claims.nonce == planned.nonce


def test_link_keys_are_key_id_secret_entries_the_first_one_active() -> None:
    keys = parse_link_keys(" a:" + "1" * 32 + ",\nb:" + "2" * 40 + "\n")
    assert [(k.key_id, len(k.secret)) for k in keys] == [("a", 32), ("b", 40)]
    assert parse_link_keys("") == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [("just-a-secret-without-id", "entry 1 is not"), ("a:x,b", "entry 2 is not"),
     ("bad.id:secret", "key id")],
)  # fmt: skip
def test_malformed_link_keys_are_refused_without_showing_the_secret(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_link_keys(text)
    assert "secret" not in str(caught.value).replace("key-id:secret", "")


def test_two_keys_with_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match="same key id"):
        LinkKeyRing(ACTIVE, (LinkKey(ACTIVE.key_id, b"z" * 32),))


def settings(**values: Any) -> VigilSettings:
    return VigilSettings.model_validate(values)


def test_production_refuses_to_start_without_a_link_key_and_names_the_setting() -> None:
    with pytest.raises(LinkKeysRefused, match="VIGIL_NOTIFIER_LINK_KEYS") as caught:
        link_key_ring(settings(environment="production"))
    assert "VIGIL_NOTIFIER_LINK_KEYS_FILE" in str(caught.value)


def test_production_refuses_a_secret_shorter_than_32_bytes_naming_its_key_id() -> None:
    short = settings(notifier_link_keys="k1:" + "s" * 40 + ",k0:tooshort")
    with pytest.raises(LinkKeysRefused, match="key k0 is shorter than 32 bytes") as caught:
        link_key_ring(short)
    assert "tooshort" not in str(caught.value)


def test_development_generates_a_key_per_process_and_says_so() -> None:
    with capture_logs() as logs:
        first = link_key_ring(settings(environment="development"))
        second = link_key_ring(settings(environment="development"))
    assert first.active.secret != second.active.secret
    assert len(first.active.secret) >= 32
    assert [e["event"] for e in logs] == ["notifier.generated_link_key"] * 2


def test_the_configured_ring_has_the_first_key_active_and_the_rest_retired() -> None:
    ring = link_key_ring(settings(notifier_link_keys=f"new:{'n' * 32}\nold:{'o' * 32}"))
    assert (ring.active.key_id, [k.key_id for k in ring.retired]) == ("new", ["old"])


def test_link_keys_are_read_from_the_file_named_by_the_file_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "link-keys"
    secret_file.write_text(f"from-file:{'f' * 32}\n")
    monkeypatch.delenv("VIGIL_NOTIFIER_LINK_KEYS", raising=False)
    monkeypatch.setenv("VIGIL_NOTIFIER_LINK_KEYS_FILE", str(secret_file))
    assert link_key_ring(VigilSettings()).active.key_id == "from-file"
    monkeypatch.setenv("VIGIL_NOTIFIER_LINK_KEYS", f"env:{'e' * 32}")
    with pytest.raises(SecretFileError, match="keep one"):
        VigilSettings()
    monkeypatch.delenv("VIGIL_NOTIFIER_LINK_KEYS")
    monkeypatch.setenv("VIGIL_NOTIFIER_LINK_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(SecretFileError, match=r"VIGIL_NOTIFIER_LINK_KEYS_FILE=.*cannot read"):
        VigilSettings()


def test_the_secret_is_not_shown_when_settings_are_printed() -> None:
    shown = repr(settings(notifier_link_keys=f"k:{'p' * 32}"))
    assert "p" * 32 not in shown


def test_a_digest_renders_each_items_link_only_when_sent() -> None:
    content = MessageContent(
        kind="digest", study_id="S", subject_id="_digest", signal_id=uuid.UUID(int=9),
        items=("subject 01-003: haemoglobin 10.1 g/dL", "RESOLVED: subject 01-004"),
    )  # fmt: skip
    link = ISSUER.claims(SIGNAL, "inv-0102", T0)
    planned = compose(
        content, purpose="digest-2026-06-02", person_id="inv-0102", channel="email",
        address="sub@x.org", link=None, item_links=(link, None),
    )  # fmt: skip
    assert "token=" not in repr(planned)  # what the outbox stores
    sent = planned.render(ISSUER.message_link)
    assert f"haemoglobin 10.1 g/dL - {ISSUER.workspace_url(SIGNAL)}" in sent.body_text
    assert sent.body_text.count("/workspace/signals/") == 1
    assert "token" not in sent.body_text  # an e-mail carries no credential
    as_webhook = dataclasses.replace(planned, channel="webhook").render(ISSUER.message_link)
    assert f"haemoglobin 10.1 g/dL - {ISSUER.url(link)}" in as_webhook.body_text
