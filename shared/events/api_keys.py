"""Events of the API keys' lives, in the audit log's ``api-keys`` stream.

Who could write, to which studies and sites, and when: every key created, rotated or
revoked is recorded here by ``vigil keys``, in the same transaction as the change to the
key table. Neither the secret nor its hash is ever part of an event.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import AwareDatetime, Field

from shared.events.payloads import EventPayload, register_payload

API_KEYS_STREAM = "api-keys"


class ApiKeyEvent(EventPayload):
    """An event about one API key; all live in one stream."""

    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    issued_by: str = Field(
        min_length=1,
        max_length=200,
        description="Who ran `vigil keys`: the operating-system account and host, and the "
        "database role it connected as.",
    )

    @property
    def stream_id(self) -> str:
        return API_KEYS_STREAM


@register_payload
class ApiKeyCreated(ApiKeyEvent):
    """A key was issued: from now on ``source`` may write these studies (and sites)."""

    event_type: ClassVar[str] = "org.vigil.api_key.created.v1"

    source: str
    studies: tuple[str, ...] = Field(min_length=1)
    sites: tuple[str, ...] | None = Field(default=None, description="None: every site.")
    may_amend_others: bool
    created_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    rotated_from: str | None = Field(
        default=None, description="The key this one replaces (`vigil keys rotate`)."
    )


@register_payload
class ApiKeyRotated(ApiKeyEvent):
    """A key was replaced by a new one of the same scope; it keeps working until
    ``retires_at`` (the grace period lets senders switch without a gap)."""

    event_type: ClassVar[str] = "org.vigil.api_key.rotated.v1"

    replaced_by: str
    retires_at: AwareDatetime


@register_payload
class ApiKeyRevoked(ApiKeyEvent):
    """A key stopped working at once (ingest notices within its refresh interval)."""

    event_type: ClassVar[str] = "org.vigil.api_key.revoked.v1"

    revoked_at: AwareDatetime
    reason: str | None = Field(default=None, max_length=500)
