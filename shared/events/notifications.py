"""The notifier's own events: one stream per signal, ``notification-{signal_id}``.

Everything the notifier did about a signal is here, in order: whom it planned to tell,
every delivery attempt and its outcome, fallbacks to other channels or people, escalations
when nobody acknowledged in time, and the acknowledgement itself. Escalation timers are
derived from these events, so a restarted notifier neither loses nor repeats them.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.events.payloads import EventPayload, StudyId, SubjectEvent, register_payload
from shared.events.values import MAX_INT64, Grade

Assessment = Literal["clinically-significant", "not-clinically-significant", "sae-confirmed"]
Channel = Literal["email", "webhook"]


def notification_stream(signal_id: uuid.UUID) -> str:
    """The stream that holds what the notifier did about one signal."""
    return f"notification-{signal_id}"


class NotificationEvent(SubjectEvent):
    """An event in the notification stream of one signal (or one data-quality issue)."""

    signal_id: uuid.UUID

    @property
    def stream_id(self) -> str:
        return notification_stream(self.signal_id)


class Recipient(BaseModel):
    """Who was told at one escalation level, by role; never a name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    person_id: str
    role: str


@register_payload
class NotificationOpened(NotificationEvent):
    """The notifier took on a signal: who is told now (level 0), who gets it in a digest,
    and when it must be acknowledged before the next level is told."""

    event_type: ClassVar[str] = "org.vigil.notification.opened.v1"

    site_id: str | None
    kind: Literal["safety-signal", "data-quality"] = "safety-signal"
    severity: str
    serious: bool
    grade: Grade | None
    raised_at: AwareDatetime
    recipients: tuple[Recipient, ...]
    digest_recipients: tuple[Recipient, ...] = ()
    acknowledge_by: AwareDatetime | None = Field(
        description="When the next escalation level is told if nobody acknowledged; None: "
        "nothing to acknowledge (e.g. a data-quality notice)."
    )
    deadline_hours: float | None = None
    message: dict[str, Any] = Field(
        default_factory=dict,
        description="The facts the messages carry (no direct identifiers), so that later "
        "escalations can be told from the event store alone.",
    )


@register_payload
class NotificationReissued(NotificationEvent):
    """The signal got worse (or was withdrawn): the people already told are told again."""

    event_type: ClassVar[str] = "org.vigil.notification.reissued.v1"

    reason: Literal["grade-worsened", "withdrawn"]
    grade: Grade | None = None
    acknowledge_by: AwareDatetime | None = None
    detail: str = ""


@register_payload
class NotificationEscalated(NotificationEvent):
    """Nobody acknowledged by the deadline: the next level was told."""

    event_type: ClassVar[str] = "org.vigil.notification.escalated.v1"

    level: int = Field(ge=1, le=MAX_INT64)
    overdue_since: AwareDatetime
    recipients: tuple[Recipient, ...]
    acknowledge_by: AwareDatetime | None = Field(
        description="When the level after this one is told; None: this was the last level."
    )


@register_payload
class NotificationWithdrawn(NotificationEvent):
    """The signal was retracted: recipients are told, escalation stops."""

    event_type: ClassVar[str] = "org.vigil.notification.withdrawn.v1"

    reason: str


@register_payload
class NotificationResolved(NotificationEvent):
    """The signal resolved (its condition stopped holding): the people told learn it, no
    acknowledgement is needed, and escalation stops until it reopens."""

    event_type: ClassVar[str] = "org.vigil.notification.resolved.v1"

    reason: str


@register_payload
class NotificationReopened(NotificationEvent):
    """What resolved the signal was corrected or withdrawn: the people told are told
    again, an acknowledgement given before counts no more, and the clock runs again."""

    event_type: ClassVar[str] = "org.vigil.notification.reopened.v1"

    reason: str
    acknowledge_by: AwareDatetime | None


@register_payload
class NotificationRouted(NotificationEvent):
    """The signal's subject became known at a site: that site's people were told (with
    their links, or for information when it was acknowledged already), may acknowledge it
    from now on, and are part of its escalation chain."""

    event_type: ClassVar[str] = "org.vigil.notification.routed.v1"

    site_id: str
    recipients: tuple[Recipient, ...]
    digest_recipients: tuple[Recipient, ...] = ()
    acknowledge_by: AwareDatetime | None = Field(
        default=None,
        description="A new deadline when the signal's clock had stopped (every level told "
        "before the site was known); None: the signal's deadline stands.",
    )


@register_payload
class SignalAcknowledged(NotificationEvent):
    """A person on the roster reviewed the signal and recorded a clinical assessment;
    escalation stops."""

    event_type: ClassVar[str] = "org.vigil.notification.acknowledged.v1"

    person_id: str
    role: str
    assessment: Assessment
    comment: str = Field(default="", max_length=4000)
    token_id: str = Field(description="Which issued link authenticated the person.")


SignerConfirmation = Literal["password", "password+totp"]
FACTS_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"


@register_payload
class AssessmentSigned(NotificationEvent):
    """A person on the roster signed their clinical assessment of the signal in the
    workspace (21 CFR 11.50, 11.70, 11.100, 11.200): the acknowledgement, as an electronic
    signature; escalation stops.

    The signature is bound to the records the signal stands on: the raising event, the
    signal's latest event when it was amended or escalated since, and the input events,
    through ``facts_digest``, the SHA-256 of their stored hashes (the ``events.hash`` of
    each, 32 bytes, concatenated in log position order). Anyone can recompute it from the
    log (or an export) and so prove which records were signed."""

    event_type: ClassVar[str] = "org.vigil.notification.assessment_signed.v1"

    person_id: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=64)
    printed_name: str = Field(
        min_length=1, max_length=200, description="The signer's name as the roster prints it."
    )
    meaning: Assessment = Field(description="What the signature means (11.50(a)(3)).")
    comment: str = Field(default="", max_length=4000)
    signed_at: AwareDatetime
    confirmed_by: SignerConfirmation = Field(
        description="How the signer was confirmed when signing: password, and the TOTP "
        "code when enrolled."
    )
    episode_event_id: uuid.UUID = Field(
        description="The signal event that opened the episode signed: its raising, or its "
        "latest reopening."
    )
    raised_event_id: uuid.UUID
    raised_position: int = Field(ge=1, le=MAX_INT64)
    latest_signal_event_id: uuid.UUID = Field(
        description="The signal's latest event when signed (the raising, or its latest "
        "amendment, escalation, reopening or routing)."
    )
    latest_signal_position: int = Field(ge=1, le=MAX_INT64)
    input_event_ids: tuple[uuid.UUID, ...] = Field(
        max_length=1000, description="The facts the signal stood on when signed."
    )
    facts_digest: str = Field(pattern=FACTS_DIGEST_PATTERN)


@register_payload
class DataQualityIssueAcknowledged(NotificationEvent):
    """A person allowed to acknowledge a data-quality issue's notification (one that asks
    for an acknowledgement: a result, dose or route no rule could read) reviewed the issue
    in the workspace's data-quality queue; escalation stops. ``signal_id`` is the issue's
    id (the event id of its raising), ``review_event_id`` the review recorded with it."""

    event_type: ClassVar[str] = "org.vigil.notification.issue_acknowledged.v1"

    person_id: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=64)
    acknowledged_at: AwareDatetime
    review_event_id: uuid.UUID = Field(
        description="The org.vigil.data_quality.issue_reviewed.v1 event recorded with it."
    )


class DeliveryEvent(NotificationEvent):
    """About one message to one person on one channel."""

    delivery_id: uuid.UUID
    person_id: str
    channel: Channel
    purpose: str


@register_payload
class DeliveryAttempted(DeliveryEvent):
    """Recorded (committed) before the message is handed to the channel: an attempt
    without a later outcome is one a crash interrupted, and its repeat carries the same
    ``message_id``."""

    event_type: ClassVar[str] = "org.vigil.notification.delivery_attempted.v1"

    attempt: int = Field(ge=1, le=MAX_INT64)
    message_id: str


@register_payload
class DeliverySucceeded(DeliveryEvent):
    """The channel accepted the message (SMTP 250, webhook 2xx)."""

    event_type: ClassVar[str] = "org.vigil.notification.delivery_succeeded.v1"

    attempt: int = Field(ge=1, le=MAX_INT64)
    detail: str = ""


@register_payload
class DeliveryFailed(DeliveryEvent):
    """An attempt failed; ``retry_at`` None means the notifier gave up on this channel."""

    event_type: ClassVar[str] = "org.vigil.notification.delivery_failed.v1"

    attempt: int = Field(ge=1, le=MAX_INT64)
    error: str
    retry_at: AwareDatetime | None


@register_payload
class DeliveryFellBack(DeliveryEvent):
    """A channel kept failing until its deadline: the message goes to the person's next
    channel, or to their backup; ``to_person_id`` None means nobody was left to try."""

    event_type: ClassVar[str] = "org.vigil.notification.delivery_fell_back.v1"

    to_delivery_id: uuid.UUID | None
    to_person_id: str | None
    to_channel: Channel | None


@register_payload
class DigestSent(EventPayload):
    """One person's daily digest of findings that no protocol rule flags."""

    event_type: ClassVar[str] = "org.vigil.notification.digest_sent.v1"

    study_id: StudyId
    person_id: str
    day: date
    delivery_id: uuid.UUID
    signal_ids: tuple[uuid.UUID, ...]

    @property
    def study(self) -> str | None:
        return self.study_id

    @property
    def stream_id(self) -> str:
        return f"digest-{self.study_id}-{self.person_id}"


NOTIFICATION_EVENTS = (
    NotificationOpened,
    NotificationReissued,
    NotificationEscalated,
    NotificationWithdrawn,
    NotificationResolved,
    NotificationReopened,
    SignalAcknowledged,
    AssessmentSigned,
    DeliveryAttempted,
    DeliverySucceeded,
    DeliveryFailed,
    DeliveryFellBack,
    DigestSent,
)
