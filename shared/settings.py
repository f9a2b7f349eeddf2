"""The one settings class: every knob is an environment variable with the ``VIGIL_`` prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class VigilSettings(BaseSettings):
    """Configuration shared by all services; each service reads only what it needs.

    Defaults suit the production-shaped compose stack; ``vigil dev`` and the tests
    override the addresses of the components they start themselves.
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
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor used when Vigil creates its topics."
    )
    kafka_publish_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long ingest waits for the broker's acknowledgement before answering 503.",
    )
    database_url: str = Field(
        default="postgresql://vigil_app:vigil_app@localhost:5432/vigil",
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
    audit_anchor_file: Path = Field(
        default=Path(".vigil/audit-anchors.jsonl"),
        description="Where chain heads are anchored outside the database; keep it on "
        "separate, append-only storage.",
    )
    audit_anchor_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How often the rules service anchors the chain head (0: never).",
    )
    smtp_url: str = Field(
        default="smtp://localhost:1025",
        description="SMTP server for e-mail: smtp://[user:password@]host:port (smtps:// for TLS).",
    )
    smtp_from: str = Field(
        default="vigil-alerts@localhost", description="Sender address of alert e-mails."
    )
    study_dir: Path = Field(
        default=Path("studies"), description="Folder with one sub-folder per study."
    )
    default_study: str = Field(
        default="NCT05262686", description="Study assigned to sources that do not name one."
    )
    bind_host: str = Field(default="127.0.0.1", description="Address the services listen on.")
    ingest_port: int = Field(default=8080, description="Ingest HTTP port.")
    mllp_port: int = Field(default=2575, description="Ingest MLLP (HL7 v2) port.")
    source_timezone: str = Field(
        default="UTC",
        description="IANA time zone of times sent without an offset (HL7 v2, FHIR dates).",
    )
    rules_port: int = Field(default=8081, description="safety_rules health and metrics port.")
    notifier_port: int = Field(default=8082, description="Notifier health and metrics port.")
    public_base_url: str = Field(
        default="http://localhost:8080",
        description="Base URL put in notification links.",
    )
    log_level: str = Field(default="INFO", description="Log level of every service.")
    rules_batch_max_records: int = Field(
        default=500, ge=1, description="Most records the rules service takes in one batch."
    )

    ingest_redrive_after_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long ingest waits for a published event to reach the audit log "
        "before publishing it again.",
    )
    notifier_retry_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest back-off between two delivery attempts."
    )
    smtp_starttls: Literal["auto", "require", "off"] = Field(
        default="auto",
        description="STARTTLS on smtp:// URLs: when offered (auto), always (require), never.",
    )
    notifier_send_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long one SMTP or webhook attempt may take."
    )
    notifier_give_up_after_seconds: float = Field(
        default=900.0,
        gt=0,
        description="How long a channel is retried before the message falls back to the "
        "person's next channel, then to their backup.",
    )
    notifier_link_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs acknowledgement links; unset: a random key per process "
        "(links then stop working when the notifier restarts).",
    )
    notifier_link_valid_hours: float = Field(
        default=168.0, gt=0, description="How long an acknowledgement link stays valid."
    )
    notifier_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Key of the webhooks' HMAC-SHA256 signature; required when a roster "
        "has webhook channels.",
    )
    notifier_ack_hours_serious: float = Field(
        default=24.0, gt=0, description="Acknowledgement deadline of a serious adverse event."
    )
    notifier_ack_hours_grade3: float = Field(
        default=4.0, gt=0, description="Acknowledgement deadline of a CTCAE grade 3 or worse."
    )
    notifier_ack_hours_other: float = Field(
        default=72.0, gt=0, description="Acknowledgement deadline of any other signal."
    )
    notifier_timer_poll_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the notifier looks for passed deadlines and due digests.",
    )
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
    watchdog_undelivered_after_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a protocol-threshold or serious signal may go without any "
        "successful delivery before the watchdog reports it on its own channel.",
    )
    watchdog_poll_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How often the rules service's watchdog reads the undelivered signals "
        "(and refreshes vigil_oldest_undelivered_signal_age_seconds).",
    )
    watchdog_smtp_url: str | None = Field(
        default=None,
        description="SMTP server of the watchdog's second channel (not the notifier's): "
        "smtp://[user:password@]host:port or smtps://...",
    )
    watchdog_email_to: str | None = Field(
        default=None,
        description="Where the watchdog's e-mail goes, comma separated (e.g. the on-call "
        "operations list); needs VIGIL_WATCHDOG_SMTP_URL.",
    )
    watchdog_email_from: str = Field(
        default="vigil-watchdog@localhost", description="Sender address of watchdog e-mail."
    )
    watchdog_webhook_url: str | None = Field(
        default=None,
        description="A webhook (e.g. a pager's) the watchdog POSTs its JSON report to.",
    )
    watchdog_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Key of the watchdog webhook's X-Vigil-Signature (HMAC-SHA256); "
        "required with VIGIL_WATCHDOG_WEBHOOK_URL.",
    )

    @property
    def admin_dsn(self) -> str:
        """The DSN for schema changes."""
        return self.database_admin_url or self.database_url

    def service_password(self) -> str | None:
        secret = self.database_service_password
        return None if secret is None else secret.get_secret_value()
