"""Events of the workspace accounts' lives, in the audit log's ``workspace-accounts`` stream.

Who could sign in, and how: a password set or changed, a second factor enrolled or reset, an
account locked by failed attempts or unlocked. Recorded by ``vigil users`` and by the
notifier's workspace in the same transaction as the change to the account table. Never a
password, a hash or a TOTP secret.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.events.payloads import EventPayload, register_payload

WORKSPACE_ACCOUNTS_STREAM = "workspace-accounts"

AccountChange = Literal[
    "password-set",
    "password-changed",
    "unlocked",
    "locked",
    "totp-enrolled",
    "totp-reset",
]


@register_payload
class WorkspaceAccountChanged(EventPayload):
    """Something that decides how ``person_id`` signs in to the workspace changed."""

    event_type: ClassVar[str] = "org.vigil.workspace.account_changed.v1"

    person_id: str = Field(min_length=1, max_length=200, description="The roster person id.")
    change: AccountChange
    changed_by: str = Field(
        min_length=1,
        max_length=200,
        description="Who made the change: the person themselves (`person:<id>`), the "
        "workspace (`workspace`, a lockout), or who ran `vigil users` (account@host and "
        "database role).",
    )

    @property
    def stream_id(self) -> str:
        return WORKSPACE_ACCOUNTS_STREAM
