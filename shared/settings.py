"""The settings every service shares: each knob is an environment variable with the
``VIGIL_`` prefix.

Shared code reads only these common fields (:class:`CommonSettings`); each service's own
fields live with the service, and :class:`services.settings.VigilSettings` composes them
all into the one object the services and the ``vigil`` CLI read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.secret_files import SecretFilesSource, secret_field_names


class InsecureConfiguration(RuntimeError):
    """Production settings that would leave a door open; the message names the setting."""


class CommonSettings(BaseSettings):
    """What every service (and the ``vigil`` CLI) reads: the environment, the broker, the
    database, the HTTP face and task supervision. Defaults suit the production-shaped
    compose stack; ``vigil dev`` and the tests override the addresses of the components
    they start themselves.
    """

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    environment: Literal["production", "development"] = Field(
        default="production",
        description="production: every secure default holds (credentials, TLS, no "
        "generated secrets); development: what `vigil dev` sets for a stack on one "
        "machine (loopback MLLP senders accepted, generated keys allowed).",
    )
    kafka_bootstrap: str = Field(
        default="localhost:9092", description="Kafka bootstrap servers, comma separated."
    )
    kafka_partitions: int = Field(
        default=6, ge=1, description="Partition count used when Vigil creates its topics."
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        le=5000,
        description="How long the rules' and the notifier's consumers let the broker hold a "
        "fetch that finds nothing new. Short is low latency on a broker that does not "
        "answer a waiting fetch when records arrive (the development broker, Tansu, "
        "answers after a share of this time); each idle fetch costs the broker CPU.",
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor used when Vigil creates its topics."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How every Kafka client connects: TLS (SSL), SASL authentication, both "
        "(SASL_SSL) or neither; production refuses PLAINTEXT to a broker off this host.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism for SASL_PLAINTEXT and SASL_SSL."
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user name (the service's Kafka principal)."
    )
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the broker's certificate (unset: the "
        "system's trusted CAs).",
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for brokers that require one."
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted client key."
    )
    kafka_allow_plaintext: bool = Field(
        default=False,
        description="Allow PLAINTEXT (or SASL PLAIN without TLS) to a broker that is not on "
        "loopback in production; only for a network you trust as much as the host.",
    )
    database_url: str = Field(
        default="postgresql://vigil_app@localhost:5432/vigil",
        description="PostgreSQL DSN the services use: the service role, which may only "
        "INSERT and SELECT on the audit log.",
    )
    database_admin_url: str | None = Field(
        default=None,
        description="DSN of the schema owner, for `vigil db upgrade`; VIGIL_DATABASE_URL "
        "when unset.",
    )
    database_service_role: str = Field(
        default="vigil_app", description="Role `vigil db upgrade` creates for the services."
    )
    database_service_password: SecretStr | None = Field(
        default=None,
        description="Password `vigil db upgrade` sets on the service role (none: unchanged).",
    )
    database_owner_role: str = Field(
        default="vigil_owner",
        description="NOLOGIN role `vigil db upgrade` creates to own the tables and their "
        "triggers; the service role is never a member of it.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token every service's /metrics requires; production refuses to "
        "start without one.",
    )
    audit_anchor_file: Path = Field(
        default=Path(".vigil/audit-anchors.jsonl"),
        description="Where chain heads are anchored outside the database; keep it on "
        "separate, append-only storage.",
    )
    study_dir: Path = Field(
        default=Path("studies"), description="Folder with one sub-folder per study."
    )
    default_study: str = Field(
        default="NCT05262686", description="Study assigned to sources that do not name one."
    )
    bind_host: str = Field(default="127.0.0.1", description="Address the services listen on.")
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="An HTTP connection (every service's port) that has not sent a whole "
        "request head this long after it opened, or after its last answer, is closed.",
    )
    http_max_connections: int = Field(
        default=500,
        ge=1,
        description="Open HTTP connections one service holds at most; more are closed at once.",
    )
    log_level: str = Field(default="INFO", description="Log level of every service.")
    task_stuck_after_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long a background task may go without completing a step while "
        "work waits before it counts as stuck (/readyz then answers 503 naming it).",
    )
    task_restart_max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest back-off before a background task that died is started "
        "again (from 1 s, doubling).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Every secret may also come from the file named by ``VIGIL_<NAME>_FILE``."""
        secret_files = SecretFilesSource(settings_cls, prefix="VIGIL_")
        return init_settings, env_settings, secret_files, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name in secret_field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, SecretStr) and not value.get_secret_value():
                raise ValueError(f"VIGIL_{name.upper()} is empty: give the secret or unset it")
        if self.kafka_security_protocol.startswith("SASL_") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(
                f"VIGIL_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "VIGIL_KAFKA_SASL_USERNAME and VIGIL_KAFKA_SASL_PASSWORD (or _FILE)"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError(
                "VIGIL_KAFKA_SSL_CERT_FILE and VIGIL_KAFKA_SSL_KEY_FILE go together: give both "
                "for a client certificate, or neither"
            )
        if self.database_owner_role == self.database_service_role:
            raise ValueError(
                "VIGIL_DATABASE_OWNER_ROLE must differ from VIGIL_DATABASE_SERVICE_ROLE: the "
                "services must not own the audit log they write to"
            )
        return self

    @property
    def admin_dsn(self) -> str:
        """The DSN for schema changes."""
        return self.database_admin_url or self.database_url

    def service_password(self) -> str | None:
        secret = self.database_service_password
        return None if secret is None else secret.get_secret_value()
