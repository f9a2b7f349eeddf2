"""Ingest's own settings: its ports, the MLLP listener's trust and limits, HTTP request
limits and rates, re-drive and key refresh. Composed into the one
:class:`services.settings.VigilSettings` (environment variables ``VIGIL_<NAME>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from shared.public_url import public_url


class IngestSettings(BaseModel):
    """The fields only ingest reads; see the module's docstring."""

    kafka_publish_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long ingest waits for the broker's acknowledgement before answering 503.",
    )
    ingest_port: int = Field(default=8080, description="Ingest HTTP port.")
    ingest_public_url: str = Field(
        default="http://localhost:8080",
        description="Ingest's HTTP address as senders reach it (scheme, host, port, any "
        "path prefix a proxy adds); what `vigil dev` prints for the API.",
    )
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

    @field_validator("ingest_public_url")
    @classmethod
    def _ingest_public_url(cls, value: str) -> str:
        return public_url(value, "VIGIL_INGEST_PUBLIC_URL")
