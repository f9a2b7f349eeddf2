"""API keys: their form, and what a presented credential proves (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.ingest.domain.api_keys import (
    ApiKeyRecord,
    Authenticated,
    NotAuthenticated,
    authenticate,
    credential_of,
    generate_key,
    parse_key,
    secret_digest,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def record_for(text: str, **changes: object) -> ApiKeyRecord:
    presented = parse_key(text)
    assert presented is not None
    record = ApiKeyRecord(
        key_id=presented.key_id,
        source="pkuph-lab",
        studies=frozenset({"NCT05262686"}),
        sites=frozenset({"PKUPH-01"}),
        may_amend_others=False,
        secret_sha256=secret_digest(presented.secret),
        created_at=NOW - timedelta(days=1),
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def refused(result: Authenticated | NotAuthenticated) -> NotAuthenticated:
    assert isinstance(result, NotAuthenticated), result
    return result


def test_a_generated_key_reads_back_as_its_id_and_secret() -> None:
    new = generate_key()
    presented = parse_key(new.text)
    assert presented is not None
    assert (presented.key_id, presented.secret) == (new.key_id, new.secret)
    assert new.text.startswith("vgk_")
    assert len(new.secret) == 43  # 256 bits, base64url


def test_two_generated_keys_share_nothing() -> None:
    first, second = generate_key(), generate_key()
    assert first.key_id != second.key_id
    assert first.secret != second.secret


def test_only_the_sha256_of_the_secret_is_what_gets_stored() -> None:
    new = generate_key()
    assert new.secret_sha256 == hashlib.sha256(new.secret.encode()).digest()
    assert new.secret.encode() not in new.secret_sha256


@pytest.mark.parametrize(
    "text",
    ["", "vgk_", "vgk_0123456789abcdef", "abc_0123456789abcdef_" + "A" * 43, "vgk_XYZ_" + "A" * 43,
     "vgk_0123456789abcdef_" + "A" * 42, "vgk_0123456789abcdef_" + "A" * 42 + "!"],
)  # fmt: skip
def test_anything_not_in_the_key_form_is_not_a_key(text: str) -> None:
    assert parse_key(text) is None


def test_a_bearer_token_or_an_x_api_key_header_carries_the_key() -> None:
    assert credential_of("Bearer vgk_x", None) == "vgk_x"
    assert credential_of("bearer   vgk_x ", None) == "vgk_x"
    assert credential_of(None, "vgk_x") == "vgk_x"
    assert credential_of("Bearer vgk_x", "vgk_x") == "vgk_x"
    assert credential_of(None, None) is None


@pytest.mark.parametrize(
    ("authorization", "x_api_key"),
    [("Basic dXNlcjpwYXNz", None), ("Bearer", None), ("Bearer a", "b")],
)
def test_another_scheme_an_empty_bearer_or_two_different_keys_are_unusable(
    authorization: str, x_api_key: str | None
) -> None:
    assert credential_of(authorization, x_api_key) == ""


def test_a_valid_key_names_its_source_and_scope_never_its_secret() -> None:
    new = generate_key()
    result = authenticate(new.text, {new.key_id: record_for(new.text)}, NOW)
    assert isinstance(result, Authenticated)
    principal = result.principal
    assert principal.source == "pkuph-lab"
    assert principal.credential == f"api-key:{new.key_id}"
    assert new.secret not in principal.credential
    assert principal.studies == {"NCT05262686"}
    assert principal.sites == {"PKUPH-01"}
    assert not principal.may_amend_others


def test_with_no_usable_key_at_all_the_answer_says_how_to_create_one() -> None:
    new = generate_key()
    for keys in ({}, {new.key_id: record_for(new.text, revoked_at=NOW - timedelta(hours=1))}):
        answer = refused(authenticate(new.text, keys, NOW))
        assert answer.reason == "no-keys-configured"
        assert "vigil keys create --source NAME --study STUDY" in answer.detail


def test_a_request_without_a_key_is_told_how_to_send_one() -> None:
    new = generate_key()
    answer = refused(authenticate(None, {new.key_id: record_for(new.text)}, NOW))
    assert answer.reason == "missing-credential"
    assert "Authorization: Bearer" in answer.detail


def test_an_unknown_key_and_a_wrong_secret_are_told_the_same_words() -> None:
    new, stranger = generate_key(), generate_key()
    keys = {new.key_id: record_for(new.text)}
    forged = f"vgk_{new.key_id}_{stranger.secret}"
    unknown = refused(authenticate(stranger.text, keys, NOW))
    wrong = refused(authenticate(forged, keys, NOW))
    assert (unknown.reason, wrong.reason) == ("unknown-key", "wrong-secret")
    assert unknown.detail == wrong.detail


def test_a_malformed_credential_is_refused_as_such() -> None:
    new = generate_key()
    answer = refused(authenticate("", {new.key_id: record_for(new.text)}, NOW))
    assert answer.reason == "malformed-credential"


def test_a_revoked_or_expired_key_is_refused_only_to_whoever_holds_its_secret() -> None:
    new, stranger = generate_key(), generate_key()
    other = generate_key()
    keys = {
        new.key_id: record_for(new.text, revoked_at=NOW - timedelta(seconds=1)),
        other.key_id: record_for(other.text, expires_at=NOW),
        # a live key, so that "no keys configured" does not apply
        stranger.key_id: record_for(stranger.text),
    }
    assert refused(authenticate(new.text, keys, NOW)).reason == "revoked-key"
    assert refused(authenticate(other.text, keys, NOW)).reason == "expired-key"
    guess = f"vgk_{new.key_id}_{stranger.secret}"
    assert refused(authenticate(guess, keys, NOW)).reason == "wrong-secret"


def test_a_key_in_its_grace_period_still_works_until_it_ends() -> None:
    new = generate_key()
    keys = {new.key_id: record_for(new.text, expires_at=NOW + timedelta(hours=1))}
    assert isinstance(authenticate(new.text, keys, NOW), Authenticated)
    later = NOW + timedelta(hours=1)
    assert refused(authenticate(new.text, keys, later)).reason in (
        "expired-key",
        "no-keys-configured",
    )
