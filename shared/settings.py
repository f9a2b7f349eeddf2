"""The one settings class: every knob is an environment variable with the ``VIGIL_`` prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.secret_files import SecretFilesSource, secret_field_names


class InsecureConfiguration(RuntimeError):
    """Production settings that would leave a door open; the message names the setting."""


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
    ingest_port: int = Field(default=8080, description="Ingest HTTP port.")
    mllp_port: int = Field(default=2575, description="Ingest MLLP (HL7 v2) port.")
    # MLLP trust and limits (services/ingest/mllp*.py); sources are in sources.yaml
    mllp_tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) of the MLLP listener; with the key, MLLP is TLS.",
    )
    mllp_tls_key_file: Path | None = Field(
        default=None, description="PEM private key of VIGIL_MLLP_TLS_CERT_FILE."
    )
    mllp_tls_client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificates that sign the senders' client certificates; set, "
        "MLLP asks every client for a certificate and maps it to a source.",
    )
    mllp_tls_client_certificate: Literal["required", "optional"] = Field(
        default="required",
        description="With a client CA: refuse clients without a certificate (required), or "
        "let them authenticate by their network (optional).",
    )
    mllp_allow_plain: bool = Field(
        default=False,
        description="Accept plain (unencrypted) MLLP in production, from the sources' "
        "networks only; development always may.",
    )
    mllp_max_message_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest HL7 message accepted; a larger one gets AR and its first "
        "bytes are kept as a rejected receipt.",
    )
    mllp_processing_ids: str = Field(
        default="P",
        pattern=r"^[PDT](,[PDT])*$",
        description="MSH-11 processing ids taken, comma-separated (HL7 table 0103: P "
        "production, T training, D debugging); any other gets AR, nothing recorded.",
    )
    mllp_idle_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="An MLLP connection that starts no message for this long is closed.",
    )
    mllp_frame_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest time from a message's first byte to its end; an unfinished "
        "frame then gets AR, is kept, and the connection is closed.",
    )
    mllp_max_connections_per_peer: int = Field(
        default=10, ge=1, description="Open MLLP connections allowed from one address."
    )
    mllp_rate_per_second: float = Field(
        default=100.0,
        gt=0,
        description="Messages per second one source may send over MLLP (token bucket); "
        "over it a message gets AE 'try later'.",
    )
    mllp_rate_burst: int = Field(
        default=1000, ge=1, description="Messages a source may send at once above the rate."
    )
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
    ingest_max_body_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        description="Largest HTTP request body ingest reads; a larger one gets 413 before it "
        "is read whole (its first bytes are kept as a rejected receipt).",
    )
    ingest_body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest time an HTTP request body may take to arrive (408 after it).",
    )
    ingest_max_items_per_request: int = Field(
        default=5000, ge=1, description="Most items one JSON request (a list) may carry."
    )
    ingest_max_bundle_entries: int = Field(
        default=1000, ge=1, description="Most entries one FHIR Bundle may carry."
    )
    ingest_clock_skew_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="How far ahead of ingest's clock a collection time may be before it is "
        "refused as in the future (a sender's clock may run ahead; a specimen is not "
        "collected after it is reported).",
    )
    ingest_rate_per_source: float = Field(
        default=50.0,
        gt=0,
        description="Sustained HTTP requests per second one authenticated source may send "
        "(per ingest instance); above it, 429 with Retry-After.",
    )
    ingest_rate_burst_per_source: float = Field(
        default=200.0, ge=1, description="Requests a source may send at once above its rate."
    )
    ingest_rate_unauthenticated_per_client: float = Field(
        default=1.0,
        gt=0,
        description="Requests per second one client address may send without a valid key "
        "(each is answered 401 and kept); above it, 429 and nothing is kept.",
    )
    ingest_rate_burst_unauthenticated_per_client: float = Field(
        default=20.0, ge=1, description="Unauthenticated requests one address may send at once."
    )
    ingest_key_refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often ingest re-reads the API keys: a revoked key stops working "
        "within this time.",
    )
    notifier_retry_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest back-off between two delivery attempts."
    )
    smtp_starttls: Literal["auto", "require", "off"] = Field(
        default="auto",
        description="STARTTLS on smtp:// URLs: when offered (auto), always (require), never.",
    )
    notifier_send_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long one SMTP or webhook attempt may take in all, however slowly "
        "the server answers; then it is a failed attempt, retried later.",
    )
    notifier_give_up_after_seconds: float = Field(
        default=900.0,
        gt=0,
        description="How long a channel is retried before the message falls back to the "
        "person's next channel, then to their backup.",
    )
    notifier_link_keys: SecretStr | None = Field(
        default=None,
        description="Keys of acknowledgement links: `key-id:secret` entries separated by "
        "commas or line breaks; the first signs new links, the others (retired keys) still "
        "verify until removed. Required in production, each secret at least 32 bytes; "
        "VIGIL_NOTIFIER_LINK_KEYS_FILE may name a file holding the value instead.",
    )
    notifier_link_valid_hours: float = Field(
        default=168.0,
        gt=0,
        description="How long an acknowledgement link stays valid from its issue time; the "
        "server's cap, which a token's own expiry can only shorten.",
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
    notifier_catch_up_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How old a signal event in the audit log must be before the notifier's "
        "catch-up answers it when Kafka has not: the fast path's head start.",
    )
    notifier_catch_up_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How often the notifier's catch-up reads the audit log for signal events "
        "Kafka did not bring.",
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
