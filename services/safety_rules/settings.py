"""The rules service's own settings: its port and batch size, anchoring of the audit
chain, and the watchdog's channels. Composed into the one
:class:`services.settings.VigilSettings` (environment variables ``VIGIL_<NAME>``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class RulesSettings(BaseModel):
    """The fields only the rules service reads; see the module's docstring."""

    audit_anchor_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How often the rules service anchors the chain head (0: never).",
    )
    rules_port: int = Field(default=8081, description="safety_rules health and metrics port.")
    rules_batch_max_records: int = Field(
        default=500, ge=1, description="Most records the rules service takes in one batch."
    )
    rules_pipeline: bool = Field(
        default=True,
        description="Judge each batch while the one before it commits (false: one batch "
        "at a time).",
    )
    rules_incremental: bool = Field(
        default=True,
        description="Fold new in-order results into the end of each rule's record (false: "
        "every rule a new fact touches walks the subject's whole history; same events, "
        "slower as histories grow).",
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
