"""From consumed signals to planned deliveries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from services.notifier.domain.messages import Delivery, render_email
from services.notifier.domain.roster import Roster
from shared.events import Envelope, SafetySignalRaised

log = structlog.get_logger(__name__)


def plan_deliveries(
    envelopes: Sequence[Envelope], rosters: Mapping[str, Roster], *, base_url: str
) -> list[Delivery]:
    """One e-mail per signal and recipient; a signal for a study without roster is logged."""
    deliveries = []
    for envelope in envelopes:
        signal = envelope.payload()
        if not isinstance(signal, SafetySignalRaised):
            continue
        roster = rosters.get(signal.study_id)
        if roster is None:
            log.error(
                "notifier.no_roster", study_id=signal.study_id, signal_id=str(signal.signal_id)
            )
            continue
        for person in roster.recipients_for(signal.site_id):
            deliveries.append(render_email(signal, recipient=person.email, base_url=base_url))
    return deliveries
