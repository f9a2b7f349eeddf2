"""The notifier's own settings: its port, public address, SMTP, links, deadlines, retries
and timers.
Composed into the one :class:`services.settings.VigilSettings` (environment variables
``VIGIL_<NAME>``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.public_url import public_url


class NotifierSettings(BaseModel):
    """The fields only the notifier reads; see the module's docstring."""

    smtp_url: str = Field(
        default="smtp://localhost:1025",
        description="SMTP server for e-mail: smtp://[user:password@]host:port (smtps:// for TLS).",
    )
    smtp_from: str = Field(
        default="vigil-alerts@localhost", description="Sender address of alert e-mails."
    )
    notifier_port: int = Field(default=8082, description="Notifier health and metrics port.")
    notifier_public_url: str = Field(
        default="http://localhost:8082",
        description="The notifier's address as people reach it (scheme, host, port, any "
        "path prefix a proxy adds): every message's link is "
        "`{this}/workspace/signals/{signal_id}`.",
    )
    public_base_url: str | None = Field(
        default=None,
        description="Deprecated alias of VIGIL_NOTIFIER_PUBLIC_URL, used when that is not "
        "set (a warning at start says so).",
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

    @field_validator("notifier_public_url", "public_base_url")
    @classmethod
    def _notifier_public_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        setting = f"VIGIL_{(info.field_name or '').upper()}"
        return None if value is None else public_url(value, setting)

    @model_validator(mode="after")
    def _notifier_public_url_alias(self) -> Self:
        """VIGIL_PUBLIC_BASE_URL, the old name, still sets the notifier's address when
        the new name is not given (an outside interface: it changes with a deprecation)."""
        if self.public_base_url is not None and "notifier_public_url" not in self.model_fields_set:
            # not by assignment, which would count the new name as given
            self.__dict__["notifier_public_url"] = self.public_base_url
        return self

    def deprecated_settings(self) -> list[str]:
        """What the notifier warns about at start: settings given by an old name."""
        if self.public_base_url is None:
            return []
        if "notifier_public_url" in self.model_fields_set:
            return [
                "VIGIL_PUBLIC_BASE_URL is deprecated and ignored: VIGIL_NOTIFIER_PUBLIC_URL "
                "is set; unset VIGIL_PUBLIC_BASE_URL"
            ]
        return [
            "VIGIL_PUBLIC_BASE_URL is deprecated: rename it VIGIL_NOTIFIER_PUBLIC_URL (it "
            "is the notifier's address, port 8082 by default, not ingest's)"
        ]


# --- The workspace's sign-in (issue 17): accounts, sessions, second factor, OIDC -----------


class WorkspaceSettings(BaseModel):
    """How people sign in to the workspace (``/workspace`` on the notifier's port)."""

    workspace_secret_key: SecretStr | None = Field(
        default=None,
        description="Key that seals the stored TOTP secrets of the workspace (at least 32 "
        "characters; changing it voids every enrolled second factor). Required in "
        "production; VIGIL_WORKSPACE_SECRET_KEY_FILE may name a file holding it. "
        "Development without it derives a fixed key (never use that for real accounts).",
    )
    workspace_sign_in_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Wrong passwords (or one-time codes) in a row that lock a workspace account.",
    )
    workspace_lockout_minutes: float = Field(
        default=15.0, gt=0, description="How long a locked workspace account stays locked."
    )
    workspace_session_idle_minutes: float = Field(
        default=30.0,
        gt=0,
        description="A workspace session not used this long ends (each request extends it).",
    )
    workspace_session_hours: float = Field(
        default=12.0, gt=0, description="A workspace session ends this long after sign-in."
    )
    workspace_oidc_issuer: str | None = Field(
        default=None,
        description="OpenID Connect issuer URL of the sites' identity provider; when set (with "
        "the client id and secret) the sign-in page offers it (authorization code, PKCE).",
    )
    workspace_oidc_client_id: str | None = Field(
        default=None, description="The workspace's client id at the OpenID Connect provider."
    )
    workspace_oidc_client_secret: SecretStr | None = Field(
        default=None, description="The workspace's client secret at the OpenID Connect provider."
    )
    workspace_oidc_claim: str = Field(
        default="email",
        description="ID-token claim matched against the rosters: `email` (a person's roster "
        "e-mail, any case) or another claim holding the roster person id.",
    )
