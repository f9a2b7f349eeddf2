"""Any secret setting can be read from a file: VIGIL_<NAME>_FILE (shared/secret_files.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from services.settings import VigilSettings
from shared.secret_files import SecretFileError, secret_field_names


@pytest.fixture(autouse=True)
def no_vigil_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)


def test_every_secret_setting_is_a_secret_str_that_accepts_a_file() -> None:
    names = secret_field_names(VigilSettings)
    for expected in (
        "database_service_password",
        "metrics_token",
        "kafka_sasl_password",
        "kafka_ssl_key_password",
        "notifier_link_keys",
        "notifier_webhook_secret",
    ):
        assert expected in names


@pytest.mark.parametrize("content", ["s3cret-from-a-file", "s3cret-from-a-file\n"])
def test_a_secret_is_read_from_the_file_its_file_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str
) -> None:
    secret = tmp_path / "webhook_secret"
    secret.write_text(content)
    monkeypatch.setenv("VIGIL_NOTIFIER_WEBHOOK_SECRET_FILE", str(secret))
    settings = VigilSettings()
    assert settings.notifier_webhook_secret == SecretStr("s3cret-from-a-file")


def test_a_secret_given_both_ways_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("token-from-a-file-0123")
    monkeypatch.setenv("VIGIL_METRICS_TOKEN", "token-from-the-environment")
    monkeypatch.setenv("VIGIL_METRICS_TOKEN_FILE", str(secret))
    with pytest.raises(
        SecretFileError, match="both VIGIL_METRICS_TOKEN and VIGIL_METRICS_TOKEN_FILE"
    ):
        VigilSettings()


def test_an_unreadable_secret_file_is_refused_naming_the_variable_and_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "password"
    monkeypatch.setenv("VIGIL_KAFKA_SASL_PASSWORD_FILE", str(missing))
    with pytest.raises(SecretFileError) as raised:
        VigilSettings()
    message = str(raised.value)
    assert f"VIGIL_KAFKA_SASL_PASSWORD_FILE={missing}" in message
    assert "cannot read" in message


def test_an_empty_secret_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv("VIGIL_NOTIFIER_WEBHOOK_SECRET_FILE", str(empty))
    with pytest.raises(SecretFileError, match="empty"):
        VigilSettings()


def test_an_empty_secret_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_NOTIFIER_WEBHOOK_SECRET", "")
    with pytest.raises(ValidationError, match="VIGIL_NOTIFIER_WEBHOOK_SECRET is empty"):
        VigilSettings()


def test_the_secret_never_shows_in_the_settings_repr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("do-not-print-me")
    monkeypatch.setenv("VIGIL_DATABASE_SERVICE_PASSWORD_FILE", str(secret))
    settings = VigilSettings()
    assert settings.service_password() == "do-not-print-me"
    assert "do-not-print-me" not in repr(settings)


def test_a_file_variable_for_a_setting_that_is_not_secret_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIGIL_SMTP_FROM_FILE", str(tmp_path / "nothing"))
    assert VigilSettings().smtp_from == "vigil-alerts@localhost"
