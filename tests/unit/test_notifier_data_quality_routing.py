"""Who is told of each data-quality issue (issue 15, items 8 and 9), and of a signal routed
to its subject's site once the subject is enrolled (item 12): pure decisions and words."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import pytest

from services.notifier.adapters.roster_files import load_roster
from services.notifier.domain.deliveries import compose
from services.notifier.domain.escalation import escalate, fold
from services.notifier.domain.links import LinkIssuer, LinkKey, LinkKeyRing
from services.notifier.domain.messages import (
    MessageContent,
    carries_link,
    content_for_data_quality,
)
from services.notifier.domain.planning import (
    ANSWERED_ISSUES,
    DATA_QUALITY_ROUTES,
    AckDeadlines,
    data_quality_recipients,
    open_notification,
    route_of,
)
from services.notifier.domain.roster import Role, role_named
from services.notifier.handlers.signals import ACKNOWLEDGED_ISSUES
from shared.analytes import normalise_lab_result
from shared.events import DataQualityIssueRaised, LabResultReported, SafetySignalRaised
from shared.events.notifications import NotificationRouted, Recipient, SignalAcknowledged
from shared.events.payloads import DataQualityProblem
from tests.support.services import REPO

ROSTER = load_roster(REPO / "studies" / "NCT05262686" / "roster.yaml")
WITHOUT_DATA_MANAGER = ROSTER.model_copy(
    update={"study_contacts": tuple(p for p in ROSTER.study_contacts if p.id != "dm-01")}
)
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ISSUER = LinkIssuer(LinkKeyRing(LinkKey("k1", b"k" * 32)), "https://v.example", timedelta(days=7))
DATA_MANAGER_ISSUES = (
    "implausible-value",
    "implausible-time",
    "reference-range-implausible",
    "medication-not-recognised",
    "missing-input",
    "reference-range-missing",
)


def issue(kind: str, detail: str = "rule x: a field Vigil names", **changes: Any) -> Any:
    return DataQualityIssueRaised(
        study_id="NCT05262686",
        subject_id="01-003",
        issue=kind,  # type: ignore[arg-type]
        detail=detail,
        related_event_id=uuid.UUID(int=1),
        **changes,
    )


def rendered(content: MessageContent, *, link: bool) -> Any:
    claims = ISSUER.claims(content.signal_id, "p", T0) if link else None
    planned = compose(
        content, purpose="p", person_id="p", channel="email", address="a@b.org", link=claims
    )
    return planned.render(ISSUER.message_link)


def test_every_data_quality_kind_reaches_a_person() -> None:
    """Never silent: each kind has a route, its own words and is read by the catch-up."""
    kinds = set(get_args(DataQualityProblem))
    assert set(DATA_QUALITY_ROUTES) == kinds
    assert set(ANSWERED_ISSUES) == kinds
    for kind in kinds - {"unknown-subject"}:
        content = content_for_data_quality(issue(kind, rule_id="r"), uuid.UUID(int=2))
        assert content.kind == kind  # told in its own words, with what to do
        assert content.deadline


def test_a_protocol_analyte_in_an_unknown_unit_is_an_alert_for_the_monitors() -> None:
    result = LabResultReported(
        study_id="NCT05262686",
        subject_id="01-003",
        loinc_code="718-7",
        value=Decimal("7.0"),
        unit="gm per decilitre of Quentin",  # sender text: reaches no message
        collected_at=T0,
        source_message_id="MSG-1",
    )
    _, detail = normalise_lab_result(result)
    assert detail is not None
    raised = issue("unit-not-convertible", detail)
    route = route_of(raised)
    content = content_for_data_quality(raised, uuid.UUID(int=2))
    message = rendered(content.model_copy(update={"acknowledge_by": T0}), link=True)

    assert (route.role, route.acknowledged) == (Role.MEDICAL_MONITOR, True)
    assert [p.id for p in data_quality_recipients(ROSTER, route)] == ["mm-01"]
    assert message.subject_line.startswith("[Vigil] UNKNOWN UNIT: NCT05262686 subject 01-003")
    body = " ".join(message.body_text.split())
    assert "A protocol analyte in an unknown unit" in body
    assert "haemoglobin" in body
    assert "a unit Vigil does not recognise" in body
    assert "obtain the value in a unit Vigil knows" in body
    assert "Quentin" not in message.body_text + message.subject_line + (message.body_html or "")
    assert ISSUER.workspace_url(content.signal_id) in body


@pytest.mark.parametrize("kind", ["dose-not-convertible", "route-not-recognised"])
def test_a_dose_or_route_a_rule_could_not_read_is_acknowledged_by_the_monitors(kind: str) -> None:
    counted = route_of(issue(kind, rule_id="steroid-prednisone-equivalent-gt-10"))
    uncounted = route_of(issue(kind))  # no rule looked at it: a query

    assert (counted.role, counted.acknowledged) == (Role.MEDICAL_MONITOR, True)
    assert kind in ACKNOWLEDGED_ISSUES
    assert (uncounted.role, uncounted.acknowledged) == (Role.DATA_MANAGER, False)


@pytest.mark.parametrize("kind", DATA_MANAGER_ISSUES)
def test_what_needs_a_query_goes_to_the_data_manager_as_a_notice(kind: str) -> None:
    raised = issue(kind, rule_id="anaemia-hb-le-9")
    route = route_of(raised)
    content = content_for_data_quality(raised, uuid.UUID(int=2))
    message = rendered(content, link=False)

    assert (route.role, route.acknowledged) == (Role.DATA_MANAGER, False)
    assert [p.id for p in data_quality_recipients(ROSTER, route)] == ["dm-01"]
    assert not carries_link(content)  # nothing to acknowledge
    assert kind.replace("-", " ").upper().split()[0] in message.subject_line
    assert "acknowledge" not in message.body_text.lower()


def test_without_a_data_manager_the_monitors_are_told_and_the_roster_warns() -> None:
    route = route_of(issue("implausible-value"))

    assert [p.id for p in data_quality_recipients(WITHOUT_DATA_MANAGER, route)] == ["mm-01"]
    assert ROSTER.warnings() == []
    (warning,) = WITHOUT_DATA_MANAGER.warnings()
    assert "no data_manager" in warning
    assert "medical monitors instead" in warning


def test_the_data_manager_role_is_read_in_either_spelling() -> None:
    assert role_named("data-manager") is Role.DATA_MANAGER
    assert [p.id for p in ROSTER.data_managers()] == ["dm-01"]
    assert ROSTER.person("dm-01").email.endswith("@vigil.example.org")  # type: ignore[union-attr]


def test_an_acknowledged_issue_carries_a_link_and_an_informing_one_does_not() -> None:
    content = content_for_data_quality(issue("censored-result"), uuid.UUID(int=2))

    assert not carries_link(content)
    assert carries_link(content.model_copy(update={"acknowledge_by": T0}))
    assert not carries_link(content_for_data_quality(issue("unknown-subject"), uuid.UUID(int=2)))


# -- item 12: a signal routed to its subject's site -------------------------------------


def unknown_subject_signal(**changes: Any) -> SafetySignalRaised:
    values: dict[str, Any] = {
        "study_id": "NCT05262686",
        "subject_id": "01-009",
        "site_id": None,
        "signal_id": uuid.UUID(int=7),
        "rule_id": "anaemia-hb-le-9",
        "rule_title": "Haemoglobin at or below 9 g/dL",
        "rule_pack_version": "1",
        "input_event_ids": (uuid.UUID(int=1),),
        "computed_values": {},
        "analyte": "haemoglobin",
        "observed_value": Decimal("8.6"),
        "observed_unit": "g/dL",
        "threshold": "<= 9 g/dL",
        "collected_at": T0,
        "subject_enrolled": False,
    }
    return SafetySignalRaised(**{**values, **changes})


def routed(site_id: str, *people: tuple[str, str]) -> NotificationRouted:
    return NotificationRouted(
        study_id="NCT05262686",
        subject_id="01-009",
        signal_id=uuid.UUID(int=7),
        site_id=site_id,
        recipients=tuple(Recipient(person_id=p, role=r) for p, r in people),
    )


def test_a_routed_signal_belongs_to_the_site_and_escalates_through_it() -> None:
    opened, planned, _ = open_notification(
        unknown_subject_signal(), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    assert [m.person.id for m in planned] == ["mm-01"]
    before = fold([opened])
    after = fold([opened, routed("PKUPH-01", ("inv-0101", "investigator"))])
    assert before is not None
    assert after is not None

    assert (before.site_id, after.site_id) == (None, "PKUPH-01")
    assert after.told == {"mm-01", "inv-0101"}
    assert after.content().site_id == "PKUPH-01"  # what becomes of it names the site
    assert not ROSTER.may_acknowledge("inv-0101", before.site_id)
    assert ROSTER.may_acknowledge("inv-0101", after.site_id)
    # unacknowledged, the next level is the site's on-call backup; before, nobody was left
    assert escalate(before, ROSTER)[1] == []
    assert [p.id for p in escalate(after, ROSTER)[1]] == ["inv-0102"]


def test_a_routed_deadline_restarts_a_stopped_clock() -> None:
    opened, _, _ = open_notification(
        unknown_subject_signal(), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    stopped, _ = escalate(fold([opened]), ROSTER)  # type: ignore[arg-type]
    assert stopped.acknowledge_by is None
    later = T0 + timedelta(days=5)
    event = routed("PKUPH-01", ("inv-0101", "investigator")).model_copy(
        update={"acknowledge_by": later}
    )
    state = fold([opened, stopped, event])
    assert state is not None
    assert state.acknowledge_by == later
    assert state.due(later)


def test_a_routed_alert_asks_the_site_to_acknowledge_and_an_acknowledged_one_informs() -> None:
    opened, _, _ = open_notification(
        unknown_subject_signal(), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    state = fold([opened])
    assert state is not None
    alert = state.content().with_kind("routed", site_id="PKUPH-01")
    ack = SignalAcknowledged(
        study_id="NCT05262686",
        subject_id="01-009",
        signal_id=uuid.UUID(int=7),
        person_id="mm-01",
        role="medical_monitor",
        assessment="clinically-significant",
        token_id="t",
    )
    informed = fold([opened, ack])
    assert informed is not None
    assert informed.closed
    notice = informed.content().with_kind(
        "routed-acknowledged", site_id="PKUPH-01", note="acknowledged before"
    )

    alert_message = rendered(alert, link=carries_link(alert))
    notice_message = rendered(notice, link=carries_link(notice))
    assert alert_message.subject_line.startswith("[Vigil] NOW AT YOUR SITE: ")
    assert "now enrolled at your site" in alert_message.body_text
    assert "PKUPH-01" in alert_message.body_text
    assert "/workspace/signals/" in alert_message.body_text
    assert notice_message.subject_line.startswith("[Vigil] NOW AT YOUR SITE (ACKNOWLEDGED): ")
    assert "no action is needed" in notice_message.body_text
    assert "/workspace/signals/" not in notice_message.body_text


@pytest.mark.parametrize("kind", DATA_MANAGER_ISSUES)
def test_an_issue_nobody_acknowledges_links_to_its_entry_in_the_data_quality_queue(
    kind: str,
) -> None:
    """The data manager's message opens the issue in the workspace's queue (where it is
    marked reviewed), in the text, the HTML and a webhook's document alike."""
    content = content_for_data_quality(issue(kind, rule_id="r"), uuid.UUID(int=2))
    assert not carries_link(content)
    url = f"https://v.example/workspace/data-quality?issue={uuid.UUID(int=2)}"
    for channel in ("email", "webhook"):
        planned = compose(
            content, purpose="p", person_id="p", channel=channel, address="a@b.org", link=None
        )
        sent = planned.render(ISSUER.message_link, queue_url_of=ISSUER.issue_url)
        assert url in sent.body_text
        if channel == "email":
            assert "data-quality queue to review it" in sent.body_text
            assert sent.body_html is not None
            assert f'href="{url}"' in sent.body_html
    # an issue its reader must acknowledge links to its queue entry too (an issue is not a
    # signal: /workspace/signals/<issue id> has no page), where marking it reviewed
    # acknowledges it; also when it escalates
    acknowledged = content_for_data_quality(
        issue("abnormal-result-unreadable"), uuid.UUID(int=3)
    ).model_copy(update={"acknowledge_by": T0})
    assert carries_link(acknowledged)
    claims = ISSUER.claims(acknowledged.signal_id, "p", T0)
    queue = f"https://v.example/workspace/data-quality?issue={uuid.UUID(int=3)}"
    for content in (acknowledged, acknowledged.with_kind("escalation", level=1)):
        planned = compose(
            content, purpose="p", person_id="p", channel="email", address="a@b.org", link=claims
        )
        sent = planned.render(ISSUER.message_link, queue_url_of=ISSUER.issue_url)
        assert queue in sent.body_text
        assert "data-quality queue to review and acknowledge it" in sent.body_text
        assert "/workspace/signals/" not in sent.body_text
    # a signal's message links to the signal, never to the queue
    signal = MessageContent(study_id="NCT05262686", signal_id=uuid.UUID(int=4))
    claims = ISSUER.claims(signal.signal_id, "p", T0)
    planned = compose(
        signal, purpose="p", person_id="p", channel="email", address="a@b.org", link=claims
    )
    sent = planned.render(ISSUER.message_link, queue_url_of=ISSUER.issue_url)
    assert f"https://v.example/workspace/signals/{uuid.UUID(int=4)}" in sent.body_text
    assert "/workspace/data-quality" not in sent.body_text
