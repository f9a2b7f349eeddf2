"""The workspace's sign-in rules without a server: who a sign-in name names, the password
policy, lockout, session lifetimes on a movable clock, where `next` may lead, one-time codes
(drift, replay), password hashes and the sealed TOTP secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher, extract_parameters

from services.notifier.adapters import passwords
from services.notifier.adapters.passwords import hash_password, verify_password
from services.notifier.adapters.secret_box import (
    SealedSecretUnreadable,
    SecretBox,
    WorkspaceKeyRefused,
    workspace_secret_box,
)
from services.notifier.domain import totp
from services.notifier.domain.accounts import (
    LockoutPolicy,
    SessionLifetime,
    landing_page,
    local_next,
    password_problem,
    person_named,
)
from services.notifier.domain.roster import Roster
from services.notifier.domain.workspace_access import viewer_for
from services.settings import VigilSettings
from tests.support.notifier import STUDY, roster

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
ROSTERS = {STUDY: roster()}


def test_a_sign_in_name_is_the_roster_id_or_the_roster_email_in_any_case() -> None:
    assert person_named("pi1", ROSTERS) == "pi1"
    assert person_named("  PI1@X.org ", ROSTERS) == "pi1"
    assert person_named("PI1", ROSTERS) is None  # ids are exact
    assert person_named("nobody@x.org", ROSTERS) is None
    assert person_named("", ROSTERS) is None
    assert person_named("x" * 300, ROSTERS) is None


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short-pass1", "at least 12 characters"),
        ("pi1@x.org", "at least 12 characters"),
        ("a long enough passphrase", None),
        ("pi1", "at least 12"),
        ("a" * 1025, "at most 1024"),
    ],
)
def test_the_password_policy_names_the_rule_broken(password: str, problem: str | None) -> None:
    found = password_problem(password, "pi1", "pi1@x.org")
    assert (found is None) if problem is None else (problem in (found or ""))


def test_a_password_may_not_be_the_person_id_or_email() -> None:
    assert "person id or e-mail" in (
        password_problem("Investigator-01", "investigator-01", None) or ""
    )
    assert "person id or e-mail" in (
        password_problem("Long.Person@Site.example", "p1", "long.person@site.example") or ""
    )
    assert password_problem("correct horse battery", "p1", "p1@x.org") is None


def test_five_failures_lock_for_the_lockout_and_the_count_starts_again() -> None:
    policy = LockoutPolicy(attempts=5, duration=timedelta(minutes=15))
    failed, locked_until = 0, None
    for _ in range(4):
        failed, locked_until = policy.after_failure(failed, T0)
        assert locked_until is None
    assert failed == 4
    failed, locked_until = policy.after_failure(failed, T0)
    assert (failed, locked_until) == (0, T0 + timedelta(minutes=15))
    assert policy.is_locked(locked_until, T0 + timedelta(minutes=14, seconds=59))
    assert not policy.is_locked(locked_until, T0 + timedelta(minutes=15))
    assert not policy.is_locked(None, T0)


def test_a_session_ends_when_idle_too_long_or_too_old_whatever_the_use() -> None:
    lifetime = SessionLifetime(idle=timedelta(minutes=30), absolute=timedelta(hours=12))
    assert lifetime.alive(T0, T0, T0 + timedelta(minutes=29))
    assert not lifetime.alive(T0, T0, T0 + timedelta(minutes=30))
    # used every 20 minutes it lives on, but never past 12 hours
    seen = T0 + timedelta(hours=11, minutes=50)
    assert lifetime.alive(T0, seen, T0 + timedelta(hours=11, minutes=59))
    assert not lifetime.alive(T0, seen, T0 + timedelta(hours=12))


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/workspace/signals/1b9d?x=1", "/workspace/signals/1b9d?x=1"),
        ("/workspace", "/workspace"),
        ("https://evil.example/workspace/", "/workspace/"),
        ("//evil.example/workspace/", "/workspace/"),
        ("/\\evil.example", "/workspace/"),
        ("/workspace\\..\\x", "/workspace/"),
        ("/workspace/../metrics", "/workspace/"),
        ("/workspace/%2e%2e/readyz", "/workspace/"),
        ("/workspace/.%2e/healthz", "/workspace/"),
        ("/workspace/%2E%2E/metrics", "/workspace/"),
        ("/workspace/%2e/inbox", "/workspace/"),
        ("/workspace/%252e%252e/metrics", "/workspace/"),
        ("/workspace/%2525252e%2525252e/metrics", "/workspace/"),
        ("/workspace/..%2fmetrics", "/workspace/"),
        ("/workspace/%5c..%5cmetrics", "/workspace/"),
        ("/workspace/%0d%0aSet-Cookie:x", "/workspace/"),
        ("/workspace/sign%2din", "/workspace/"),
        ("/workspace/subjects/01-003%20x", "/workspace/"),
        ("/workspace/subjects/NCT1/01-003", "/workspace/subjects/NCT1/01-003"),
        ("/workspace/inbox?state=open&q=%2e%2e", "/workspace/inbox?state=open&q=%2e%2e"),
        ("/workspaces", "/workspace/"),
        ("/metrics", "/workspace/"),
        ("javascript:alert(1)", "/workspace/"),
        ("/workspace/\r\nSet-Cookie: x=1", "/workspace/"),
        ("/workspace/sign-in?next=/workspace/", "/workspace/"),
        ("/workspace/" + "a" * 3000, "/workspace/"),
        ("", "/workspace/"),
        (None, "/workspace/"),
    ],
)
def test_next_is_only_ever_a_path_of_the_workspace(given: str | None, kept: str) -> None:
    assert local_next(given) == kept


def roster_with_data_manager() -> Roster:
    data = roster().model_dump(mode="json")
    data["study_contacts"].append(
        {"id": "dm", "name": "DM", "role": "data_manager", "channels": [{"email": "dm@x.org"}]}
    )
    return Roster.model_validate(data)


def test_site_staff_land_on_the_inbox_and_the_data_manager_on_data_quality() -> None:
    rosters = {STUDY: roster_with_data_manager()}
    investigator = viewer_for("pi1", rosters)
    data_manager = viewer_for("dm", rosters)
    monitor = viewer_for("mm", rosters)
    assert investigator is not None
    assert data_manager is not None
    assert monitor is not None
    assert landing_page(investigator) == "/workspace/inbox"
    assert landing_page(monitor) == "/workspace/inbox"
    assert landing_page(data_manager) == "/workspace/data-quality"


def test_a_one_time_code_is_accepted_one_step_either_side_and_only_once() -> None:
    secret = totp.new_secret()
    now = T0 + timedelta(seconds=15)
    step = totp.accepted_step(secret, totp.code_at(secret, now), now, None)
    assert step is not None
    # the same code again: refused (replay), though still within its window
    assert totp.accepted_step(secret, totp.code_at(secret, now), now, step) is None
    # the next step's code (the phone's clock 30 s ahead): accepted once
    ahead = now + timedelta(seconds=30)
    assert totp.accepted_step(secret, totp.code_at(secret, ahead), now, step) == step + 1
    # a code from two steps ago: too old
    old = now - timedelta(seconds=60)
    assert totp.accepted_step(secret, totp.code_at(secret, old), now, None) is None
    # the previous step (drift behind), never used: accepted
    behind = now - timedelta(seconds=30)
    assert totp.accepted_step(secret, totp.code_at(secret, behind), now, None) == step - 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_a_malformed_code_is_refused(code: str) -> None:
    assert totp.accepted_step(totp.new_secret(), code, T0, None) is None


def test_the_provisioning_uri_names_the_issuer_and_the_account() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "pi1")
    assert uri.startswith("otpauth://totp/Vigil%20workspace:pi1?")
    assert f"secret={secret}" in uri
    assert "issuer=Vigil%20workspace" in uri


def test_passwords_are_argon2id_and_a_weaker_hash_is_replaced_on_success() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery") == (True, None)
    assert verify_password(stored, "correct horse batterY") == (False, None)
    assert verify_password(None, "anything at all") == (False, None)
    assert verify_password("not a hash", "anything at all") == (False, None)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("old password!")
    ok, rehashed = verify_password(weak, "old password!")
    assert ok
    assert rehashed is not None
    assert rehashed.startswith("$argon2id$")
    assert verify_password(rehashed, "old password!") == (True, None)


def test_an_unknown_name_costs_what_a_real_check_costs() -> None:
    # the hash verified against for an unknown name is made with the library's current
    # parameters (it is kept ready made, so no process start spends a hash on it)
    dummy = passwords._dummy_hash()
    assert not PasswordHasher().check_needs_rehash(dummy)
    assert extract_parameters(dummy) == extract_parameters(hash_password("a real password"))
    assert verify_password(dummy, "anything at all") == (False, None)


def test_a_sealed_secret_opens_only_with_its_key_and_for_its_person() -> None:
    box = SecretBox("k" * 40)
    sealed = box.seal("JBSWY3DPEHPK3PXP", "pi1")
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed, "pi1") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(SealedSecretUnreadable):
        box.open(sealed, "pi2")  # moved to another person's row
    with pytest.raises(SealedSecretUnreadable, match="reset-totp"):
        SecretBox("j" * 40).open(sealed, "pi1")


def test_production_refuses_to_start_without_a_long_enough_workspace_key() -> None:
    with pytest.raises(WorkspaceKeyRefused, match="VIGIL_WORKSPACE_SECRET_KEY_FILE"):
        workspace_secret_box(VigilSettings(environment="production"))
    with pytest.raises(WorkspaceKeyRefused, match="too short"):
        workspace_secret_box(
            VigilSettings(environment="production", workspace_secret_key="short")  # type: ignore[arg-type]
        )
    workspace_secret_box(VigilSettings(environment="production", workspace_secret_key="s" * 32))  # type: ignore[arg-type]
    workspace_secret_box(VigilSettings(environment="development"))
