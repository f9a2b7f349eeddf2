import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.notifier.adapters.roster_files import load_roster
from services.notifier.domain.deliveries import compose
from services.notifier.domain.escalation import escalate, fold
from services.notifier.domain.links import LinkIssuer, LinkKey, LinkKeyRing
from services.notifier.domain.messages import content_for_signal, digest_line
from services.notifier.domain.planning import AckDeadlines, goes_to_digest, open_notification
from services.notifier.domain.roster import InvalidRoster
from services.notifier.entrypoints.delivery_worker import retry_delay
from shared.events import SafetySignalRaised
from shared.events.notifications import (
    NotificationReopened,
    NotificationResolved,
    SignalAcknowledged,
)
from tests.support.services import REPO

ROSTER = load_roster(REPO / "studies" / "NCT05262686" / "roster.yaml")
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ISSUER = LinkIssuer(LinkKeyRing(LinkKey("k1", b"k" * 32)), "https://v.example", timedelta(days=7))


def signal(site_id: str | None, **changes: Any) -> SafetySignalRaised:
    values: dict[str, Any] = {
        "study_id": "NCT05262686",
        "subject_id": "01-003",
        "site_id": site_id,
        "signal_id": uuid.UUID(int=7),
        "rule_id": "anaemia-hb-le-9",
        "rule_title": "Haemoglobin at or below 9 g/dL",
        "rule_pack_version": "1",
        "input_event_ids": (uuid.UUID(int=1),),
        "computed_values": {"value_in_rule_unit": "8.6"},
        "analyte": "haemoglobin",
        "observed_value": Decimal("8.6"),
        "observed_unit": "g/dL",
        "threshold": "<= 9 g/dL",
        "collected_at": T0,
    }
    return SafetySignalRaised(**{**values, **changes})


def test_site_investigators_receive_site_signals() -> None:
    ids = {p.id for p in ROSTER.recipients_for("PKUPH-01")}
    assert ids == {"inv-0101", "inv-0102"}


@pytest.mark.parametrize("site", [None, "NO-SUCH-SITE"])
def test_unknown_site_goes_to_the_medical_monitor(site: str | None) -> None:
    assert [p.role for p in ROSTER.recipients_for(site)] == ["medical_monitor"]


def test_serious_signals_also_reach_the_study_roles() -> None:
    roles = {p.role.value for p in ROSTER.recipients_for("PKUPH-01", "serious")}
    assert roles == {"investigator", "sub_investigator", "medical_monitor", "safety_desk"}


def test_rule_pack_roles_are_added_in_either_spelling() -> None:
    _, planned, _ = open_notification(
        signal("PKUPH-02", recipient_roles=("medical-monitor",)),
        raised_at=T0,
        roster=ROSTER,
        deadlines=AckDeadlines(),
    )
    assert {m.person.id for m in planned} == {"inv-0201", "mm-01"}


def test_roster_without_medical_monitor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text("study_id: X\nsites: []\n")
    with pytest.raises(InvalidRoster, match="medical_monitor"):
        load_roster(path)


def test_roster_with_unknown_backup_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(
        "study_id: X\nstudy_contacts:\n  - {id: mm, name: M, role: medical_monitor, "
        "email: m@x.org, backup: nobody}\nsites: []\n"
    )
    with pytest.raises(InvalidRoster, match="backup 'nobody'"):
        load_roster(path)


def test_backup_is_explicit_or_the_next_on_call() -> None:
    assert ROSTER.backup_of("inv-0201").id == "mm-01"  # type: ignore[union-attr]
    assert ROSTER.backup_of("inv-0101").id == "inv-0102"  # type: ignore[union-attr]
    assert ROSTER.backup_of("inv-0102").id == "inv-0101"  # type: ignore[union-attr]


def test_message_has_what_the_investigator_needs_and_no_names() -> None:
    content = content_for_signal(signal("PKUPH-01", grade=3, grading="CTCAE v5.0 Anemia"))
    claims = ISSUER.claims(content.signal_id, "p", T0)
    delivery = compose(
        content, purpose="raised", person_id="p", channel="email", address="a@b.org", link=claims
    ).render(ISSUER.message_link)
    link = "https://v.example/workspace/signals/" + str(content.signal_id)
    for text in (delivery.subject_line + delivery.body_text, delivery.body_html or ""):
        for needed in ("01-003", "haemoglobin", "8.6 g/dL", "anaemia-hb-le-9", "grade 3"):
            assert needed in text
        names = [p.name for p in ROSTER.everyone()]
        assert not [name for name in names if name in text]
    assert link in delivery.body_text  # the signal's page in the workspace
    assert f'href="{link}"' in (delivery.body_html or "")
    assert "token" not in delivery.body_text + (delivery.body_html or "")  # no credential
    assert "&lt;= 9 g/dL" in (delivery.body_html or "")  # escaped in HTML


@pytest.mark.parametrize("channel", ["email", "webhook"])
def test_a_censored_value_is_stated_with_its_comparator_as_the_laboratory_sent_it(
    channel: str,
) -> None:
    """Issue 14: '<0.5' is not 0.5 (HL7 v2.5.1 SN, FHIR Quantity.comparator): the value
    line, the webhook and the digest all carry the comparator."""
    content = content_for_signal(
        signal(
            "PKUPH-01",
            analyte="neutrophils",
            observed_value=Decimal("0.5"),
            observed_unit="10*9/L",
            observed_comparator="<",
        )
    )
    assert content.value == "< 0.5 10*9/L"
    assert "< 0.5 10*9/L" in digest_line(content)
    claims = ISSUER.claims(content.signal_id, "p", T0)
    delivery = compose(
        content, purpose="raised", person_id="p", channel=channel, address="a@b.org", link=claims
    ).render(ISSUER.message_link)
    if channel == "email":
        # people read the unit in its print form; the content (and a webhook) keep UCUM
        assert "Value:            < 0.5 x10^9/L" in delivery.body_text.splitlines()
        assert "&lt; 0.5 x10^9/L" in (delivery.body_html or "")
    else:
        assert "< 0.5 10*9/L" in delivery.body_text


def test_delivery_identity_is_stable_per_signal_purpose_and_recipient() -> None:
    content = content_for_signal(signal("A"))

    def make(address: str, purpose: str = "raised") -> str:
        return compose(
            content, purpose=purpose, person_id="p", channel="email", address=address, link=None
        ).message_id

    assert make("a@b.org") == make("A@B.org") != make("c@b.org")
    assert make("a@b.org") != make("a@b.org", "escalation-1")


def test_retry_delay_grows_is_capped_and_jittered() -> None:
    assert retry_delay(1, maximum=300, rng=lambda: 0.0) == 1.0
    assert retry_delay(1, maximum=300, rng=lambda: 1.0) == 2.0
    assert retry_delay(4, maximum=300, rng=lambda: 1.0) == 16.0
    assert retry_delay(30, maximum=300, rng=lambda: 1.0) == 300.0


@pytest.mark.parametrize(
    ("serious", "grade", "hours"),
    [(True, None, 24), (False, 3, 4), (True, 4, 4), (False, 2, 72), (False, None, 72)],
)
def test_acknowledgement_deadlines(serious: bool, grade: int | None, hours: float) -> None:
    assert AckDeadlines().hours_for(serious=serious, grade=grade) == hours


def test_escalation_goes_to_backups_then_the_medical_monitor_then_stops() -> None:
    opened, _, _ = open_notification(
        signal("PKUPH-02", grade=3), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    events: list[Any] = [opened]
    state = fold(events)
    assert state is not None
    assert not state.due(T0 + timedelta(hours=3, minutes=59))
    assert state.due(T0 + timedelta(hours=4))
    first, people = escalate(state, ROSTER)
    assert (first.level, [p.id for p in people]) == (1, ["mm-01"])  # inv-0201's backup
    assert first.acknowledge_by == T0 + timedelta(hours=8)
    events.append(first)
    second, people = escalate(fold(events), ROSTER)  # type: ignore[arg-type]
    assert (second.level, people, second.acknowledge_by) == (2, [], None)
    events.append(second)
    assert not fold(events).due(T0 + timedelta(days=30))  # type: ignore[union-attr]


def test_acknowledged_notification_is_never_due() -> None:
    opened, _, _ = open_notification(
        signal("PKUPH-01"), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    ack = SignalAcknowledged(
        study_id=opened.study_id,
        subject_id=opened.subject_id,
        signal_id=opened.signal_id,
        person_id="inv-0101",
        role="investigator",
        assessment="not-clinically-significant",
        token_id="x",
    )
    assert not fold([opened, ack]).due(T0 + timedelta(days=30))  # type: ignore[union-attr]


def test_findings_for_digest_roles_wait_but_thresholds_do_not() -> None:
    finding = signal("PKUPH-01", severity="finding", grade=1)
    _, planned, digest = open_notification(
        finding, raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    assert [p.id for p in digest] == ["inv-0102"]  # the sub-investigator's role digests
    assert [m.person.id for m in planned] == ["inv-0101"]
    _, planned, digest = open_notification(
        signal("PKUPH-01", grade=1), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    assert (digest, len(planned)) == ([], 2)


def lifecycle_events(opened: Any) -> dict[str, Any]:
    return {"study_id": opened.study_id, "subject_id": opened.subject_id,
            "signal_id": opened.signal_id}  # fmt: skip


def test_resolution_stops_escalation_and_a_reopening_runs_it_again() -> None:
    opened, _, _ = open_notification(
        signal("PKUPH-02", grade=3), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    resolved = NotificationResolved(**lifecycle_events(opened), reason="Hb 10.2 g/dL")
    state = fold([opened, resolved])
    assert state is not None
    assert state.closed
    assert not state.due(T0 + timedelta(days=30))
    again = T0 + timedelta(days=2)
    reopened = NotificationReopened(
        **lifecycle_events(opened), reason="the 10.2 g/dL result was withdrawn",
        acknowledge_by=again + timedelta(hours=4),
    )  # fmt: skip
    state = fold([opened, resolved, reopened])
    assert state is not None
    assert (state.resolutions, state.reopenings) == (1, 1)
    assert not state.due(again + timedelta(hours=3))
    assert state.due(again + timedelta(hours=4))
    event, people = escalate(state, ROSTER)
    assert (event.level, [p.id for p in people]) == (1, ["mm-01"])
    assert event.overdue_since == again + timedelta(hours=4)


def test_a_reopening_sets_an_earlier_acknowledgement_aside() -> None:
    opened, _, _ = open_notification(
        signal("PKUPH-01"), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    ack = SignalAcknowledged(
        **lifecycle_events(opened), person_id="inv-0101", role="investigator",
        assessment="clinically-significant", token_id="x",
    )  # fmt: skip
    resolved = NotificationResolved(**lifecycle_events(opened), reason="back in range")
    reopened = NotificationReopened(
        **lifecycle_events(opened), reason="corrected", acknowledge_by=T0 + timedelta(days=5)
    )
    state = fold([opened, ack, resolved, reopened])
    assert state is not None
    assert not state.closed
    assert state.due(T0 + timedelta(days=5))
    assert fold([opened, ack, resolved, reopened, ack]).closed  # type: ignore[union-attr]


def test_a_resolved_notice_says_why_carries_no_link_and_no_names() -> None:
    content = content_for_signal(signal("PKUPH-01", grade=3)).with_kind(
        "resolved", note="haemoglobin 10.2 g/dL: back in range"
    )
    delivery = compose(
        content, purpose="resolved-1", person_id="p", channel="email", address="a@b.org",
        link=None,
    ).render(ISSUER.message_link)  # fmt: skip
    assert delivery.subject_line.startswith("[Vigil] RESOLVED: NCT05262686 subject 01-003")
    for text in (delivery.body_text, delivery.body_html or ""):
        for needed in ("01-003", "haemoglobin", "10.2 g/dL", "anaemia-hb-le-9", "no action"):
            assert needed in text
        assert "acknowledge" not in text.replace("nothing to acknowledge", "")
        assert not [p.name for p in ROSTER.everyone() if p.name in text]


def test_a_reopened_alert_asks_for_review_and_carries_the_link() -> None:
    content = content_for_signal(signal("PKUPH-01")).with_kind("reopened", note="corrected")
    claims = ISSUER.claims(content.signal_id, "p", T0)
    link = ISSUER.workspace_url(content.signal_id)
    delivery = compose(
        content, purpose="reopened-1", person_id="p", channel="email", address="a@b.org",
        link=claims,
    ).render(ISSUER.message_link)  # fmt: skip
    assert delivery.subject_line.startswith("[Vigil] REOPENED: ")
    assert "holds again" in delivery.body_text
    assert link in delivery.body_text


def test_what_becomes_of_a_finding_is_a_digest_line() -> None:
    content = content_for_signal(signal("PKUPH-01", severity="finding"))
    line = digest_line(content.with_kind("resolved", note="Hb 12.1 g/dL: back in range"))
    assert line == (
        "RESOLVED: subject 01-003 (site PKUPH-01): haemoglobin, anaemia-hb-le-9: "
        "Hb 12.1 g/dL: back in range"
    )


def test_what_becomes_of_a_finding_follows_its_routing() -> None:
    finding, _, _ = open_notification(
        signal("PKUPH-01", severity="finding"), raised_at=T0, roster=ROSTER,
        deadlines=AckDeadlines(),
    )  # fmt: skip
    threshold, _, _ = open_notification(
        signal("PKUPH-01"), raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    sub, pi = ROSTER.person("inv-0102"), ROSTER.person("inv-0101")
    assert sub is not None
    assert pi is not None
    assert goes_to_digest(finding, sub, ROSTER)  # the sub-investigator's role digests
    assert not goes_to_digest(finding, pi, ROSTER)
    assert not goes_to_digest(threshold, sub, ROSTER)  # a protocol threshold: at once


@pytest.mark.parametrize(
    ("issue", "prefix", "action"),
    [
        ("censored-result", "EXACT VALUE NEEDED: ", "obtain the exact value"),
        ("conflicting-results", "CONFLICTING RESULTS: ", "which report is right"),
    ],
)
def test_issues_no_rule_could_judge_are_told_to_the_monitors_with_what_to_do(
    issue: str, prefix: str, action: str
) -> None:
    from services.notifier.domain.messages import content_for_data_quality
    from services.notifier.domain.planning import ANSWERED_ISSUES
    from services.notifier.handlers.signals import ACKNOWLEDGED_ISSUES
    from shared.events import DataQualityIssueRaised

    raised = DataQualityIssueRaised(
        study_id="NCT05262686",
        subject_id="01-003",
        issue=issue,  # type: ignore[arg-type]
        detail="rule anaemia-hb-le-9: haemoglobin was reported as > 7.0 g/dL",
        related_event_id=uuid.UUID(int=1),
    )
    content = content_for_data_quality(raised, uuid.UUID(int=2))
    claims = ISSUER.claims(content.signal_id, "p", T0)
    delivery = compose(
        content, purpose="data-quality", person_id="p", channel="email", address="a@b.org",
        link=claims,
    ).render(ISSUER.message_link)  # fmt: skip

    assert issue in ANSWERED_ISSUES
    assert issue in ACKNOWLEDGED_ISSUES
    assert delivery.subject_line.startswith(f"[Vigil] {prefix}")
    assert action in delivery.body_text
    assert ISSUER.workspace_url(content.signal_id) in delivery.body_text
