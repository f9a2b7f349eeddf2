"""The outbox's view of a message: planned (facts and link claims, stored) and rendered
(what a sender sends, built only when sending).

The content is stored with each planned delivery, so that a fallback to another channel
renders the same facts. So are the claims of its acknowledgement links, never the links:
a token is a credential, so the message is rendered, link and all, only when it is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.notifier.domain.links import LinkClaims, MessageLink
from services.notifier.domain.messages import (
    Delivery,
    DeliveryHeader,
    MessageContent,
    is_data_quality,
    links_to_queue,
    message_zone,
    render,
    subject_line,
)
from services.notifier.domain.roster import Roster
from services.notifier.domain.site_time import UTC_ZONE
from shared.events.payloads import EVENT_ID_NAMESPACE


@dataclass(frozen=True)
class PlannedDelivery(DeliveryHeader):
    """A delivery as the outbox keeps it: the facts, and the claims of its links.

    ``link`` is the message's own acknowledgement link; ``item_links`` the links of a
    digest's items, one per item (None: that item has none)."""

    content: MessageContent
    link: LinkClaims | None
    item_links: tuple[LinkClaims | None, ...] = ()

    def render(
        self,
        link_of: Callable[[LinkClaims, str], MessageLink],
        zone: ZoneInfo = UTC_ZONE,
        queue_url_of: Callable[[uuid.UUID], str] | None = None,
    ) -> Delivery:
        """The message as sent, its links made from their claims for this channel by
        ``link_of`` (the same claims and key give the same links, so a repeat is the same
        message), its times shown in ``zone``."""
        content = self.content
        if self.item_links:
            items = [
                item if claims is None else f"{item} - {link_of(claims, self.channel).item_url}"
                for item, claims in zip(content.items, self.item_links, strict=False)
            ]
            content = content.model_copy(update={"items": (*items, *content.items[len(items) :])})
        link = link_of(self.link, self.channel) if self.link is not None else None
        if link is not None and queue_url_of is not None and is_data_quality(content):
            # an issue is not a signal: its page is its entry in the data-quality queue,
            # where marking it reviewed acknowledges it (a system still uses its token)
            link = replace(link, url=queue_url_of(content.signal_id))
        queue_url = (
            queue_url_of(content.signal_id)
            if link is None and queue_url_of is not None and links_to_queue(content)
            else None
        )
        rendered = render(
            content,
            self.channel,
            link=link,
            message_id=self.message_id,
            zone=zone,
            queue_url=queue_url,
        )
        header = {field.name: getattr(self, field.name) for field in fields(DeliveryHeader)}
        header["subject_line"] = rendered.subject
        return Delivery(**header, body_text=rendered.text, body_html=rendered.html)


def as_sent(
    delivery: PlannedDelivery,
    link_of: Callable[[LinkClaims, str], MessageLink],
    rosters: Mapping[str, Roster],
    queue_url_of: Callable[[uuid.UUID], str] | None = None,
) -> Delivery:
    """The message as it is sent: links for its channel, times in its reader's zone (see
    :func:`services.notifier.domain.messages.message_zone`)."""
    roster = rosters.get(delivery.study_id)
    zone = message_zone(roster, delivery.person_id, delivery.content.site_id)
    return delivery.render(link_of, zone, queue_url_of)


def delivery_id_for(signal_id: uuid.UUID, purpose: str, channel: str, recipient: str) -> uuid.UUID:
    """Stable per signal, purpose, channel and recipient: a repeat is recognisable."""
    return uuid.uuid5(
        EVENT_ID_NAMESPACE, f"delivery:{signal_id}:{purpose}:{channel}:{recipient.lower()}"
    )


def compose(
    content: MessageContent,
    *,
    purpose: str,
    person_id: str,
    channel: str,
    address: str,
    link: LinkClaims | None,
    item_links: Sequence[LinkClaims | None] = (),
) -> PlannedDelivery:
    """The delivery of ``content`` to one person's channel, ready for the outbox."""
    delivery_id = delivery_id_for(content.signal_id, purpose, channel, address)
    return PlannedDelivery(
        delivery_id=delivery_id,
        signal_id=content.signal_id,
        study_id=content.study_id,
        subject_id=content.subject_id,
        purpose=purpose,
        person_id=person_id,
        channel=channel,
        recipient=address,
        message_id=f"<{delivery_id}@vigil>",
        subject_line=subject_line(content),
        content=content,
        link=link,
        item_links=tuple(item_links),
    )


@dataclass(frozen=True)
class Claimed:
    """A delivery this instance holds for one attempt."""

    delivery: PlannedDelivery
    attempt: int
    give_up_at: datetime | None


@dataclass(frozen=True)
class Unreadable:
    """A claimed delivery whose stored message cannot be read back (written by another
    version, or damaged): it cannot be sent, only marked failed. ``ids`` are its columns
    that name it (delivery, signal, study, subject, person, channel, purpose)."""

    ids: dict[str, Any]
    attempt: int
    give_up_at: datetime | None
    error: Exception


@dataclass(frozen=True)
class SignalRecord:
    """When the audit log recorded a signal event, and the correlation id it carries."""

    recorded_at: datetime
    correlation_id: str | None
