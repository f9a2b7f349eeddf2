"""Issue 15 round 2, what people receive (pure): the dose given beside its equivalent, no
resolution at a moment still to come, a finding in words, units in print form, and an
acknowledgement due no later than the rule's action deadline."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.notifier.adapters.roster_files import load_roster
from services.notifier.domain.deliveries import compose
from services.notifier.domain.escalation import escalate, fold
from services.notifier.domain.links import LinkIssuer, LinkKey, LinkKeyRing
from services.notifier.domain.messages import content_for_signal, when_for_people
from services.notifier.domain.planning import AckDeadlines, acknowledgement_due, open_notification
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain import engine
from shared.analytes import units_for_people
from shared.events import SafetySignalRaised, SafetySignalResolved
from tests.support.rules_harness import RECORDED_FROM, InMemoryRulesStore, fact, run_batches
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]
ROSTER = load_roster(REPO / "studies" / "NCT05262686" / "roster.yaml")
ISSUER = LinkIssuer(LinkKeyRing(LinkKey("k1", b"k" * 32)), "https://v.example", timedelta(days=7))
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
STEROID = "steroid-prednisone-equivalent-gt-10"


def _signal(**changes: Any) -> SafetySignalRaised:
    values: dict[str, Any] = {
        "study_id": "NCT05262686",
        "subject_id": "01-003",
        "site_id": "PKUPH-01",
        "signal_id": uuid.UUID(int=7),
        "rule_id": "hbv-reactivation",
        "rule_title": "HBV marker positive",
        "rule_pack_version": "1",
        "input_event_ids": (uuid.UUID(int=1),),
        "computed_values": {"result": "positive"},
        "analyte": "HBsAg",
        "threshold": "positive",
        "collected_at": T0,
    }
    return SafetySignalRaised(**{**values, **changes})


def _email(signal: SafetySignalRaised, acknowledge_by: datetime | None = None) -> tuple[str, str]:
    content = content_for_signal(signal).model_copy(update={"acknowledge_by": acknowledge_by})
    claims = ISSUER.claims(content.signal_id, "p", T0)
    delivery = compose(
        content, purpose="raised", person_id="p", channel="email", address="a@b.org", link=claims
    ).render(ISSUER.message_link)
    return delivery.subject_line, delivery.body_text


def _line(body: str, label: str) -> str:
    return next(line for line in body.splitlines() if line.startswith(label))


def test_a_pulse_resolves_when_a_fact_arrives_after_its_day() -> None:
    """A 500 mg methylprednisolone pulse given an hour before Vigil learned of it stays
    open while its day lasts; a result of another analyte recorded two days later makes
    the open rule walk again, and the pulse's day is over: it resolves then."""
    store = InMemoryRulesStore()
    pulse = {"drug": "Methylprednisolone", "dose": 500, "freq": "once", "route": "IV"}
    given = (RECORDED_FROM - timedelta(hours=1)).isoformat()
    first = asyncio.run(
        run_batches(
            store,
            [[fact({"enrol": {}}, "01-009")], [fact({"med": {**pulse, "start": given}}, "01-009")]],
            PACK,
        )
    )
    raised = [e.payload() for o in first for e in o.signals]
    assert [type(p).__name__ for p in raised] == ["SafetySignalRaised"]
    store.clock += timedelta(days=2)
    later = (RECORDED_FROM + timedelta(days=2)).isoformat()
    normal_hb = {"lab": {"loinc": "718-7", "value": 13, "unit": "g/dL", "at": later}}
    then = asyncio.run(run_batches(store, [[fact(normal_hb, "01-009")]], PACK))
    resolved = [e.payload() for o in then for e in o.signals]
    assert len(resolved) == 1
    assert isinstance(resolved[0], SafetySignalResolved)
    assert resolved[0].rule_id == STEROID
    assert resolved[0].collected_at == datetime.fromisoformat(given) + timedelta(days=1)


def test_a_qualitative_finding_is_written_in_words_never_as_a_dash() -> None:
    _, body = _email(_signal())
    assert _line(body, "Value:").split() == ["Value:", "positive"]


def test_a_signal_without_a_value_shows_no_value_line() -> None:
    """An adverse event has no value: no 'Value: -' line, which reads as negative."""
    _, body = _email(_signal(computed_values={}, analyte="syncope"))
    assert not any(line.startswith("Value:") for line in body.splitlines())
    ae = _signal(computed_values={"meddra_code": "10042772"}, episode_key="ae:1", serious=True)
    _, body = _email(ae)
    assert _line(body, "Adverse event:").startswith("Adverse event:    serious adverse event")
    assert not any(line.startswith("Analyte:") for line in body.splitlines())


def test_a_medication_signal_states_the_dose_given_beside_its_equivalent() -> None:
    signal = _signal(
        rule_id=STEROID,
        analyte="methylprednisolone",
        observed_value=Decimal(625),
        observed_unit="mg/day",
        computed_values={
            "dose_given": "500 mg ONCE intravenous",
            "daily_dose": "625 mg/day prednisone-equivalent",
        },
    )
    subject, body = _email(signal)
    value = "500 mg ONCE intravenous (625 mg/day prednisone-equivalent)"
    assert f"methylprednisolone {value}" in subject
    # labelled for what they hold: a medication and the dose given
    assert _line(body, "Medication:").removeprefix("Medication:").strip() == "methylprednisolone"
    assert _line(body, "Dose:").removeprefix("Dose:").strip() == value
    assert not any(line.startswith("Analyte:") for line in body.splitlines())


def test_units_are_printed_as_people_write_them_and_the_content_keeps_ucum() -> None:
    assert units_for_people("1500 m[IU]/mL") == "1500 mIU/mL"
    assert units_for_people("< 1.5 10*9/L, >= 5 [IU]/L") == "< 1.5 x10^9/L, >= 5 IU/L"
    assert units_for_people("1.5 x 10*9/L") == "1.5 x10^9/L"
    signal = _signal(
        analyte="hCG",
        observed_value=Decimal(1500),
        observed_unit="m[IU]/mL",
        threshold=">= 5 m[IU]/mL",
        computed_values={},
    )
    assert content_for_signal(signal).value == "1500 m[IU]/mL"
    subject, body = _email(signal)
    assert "hCG 1500 mIU/mL" in subject
    assert "[IU]" not in body
    assert not subject.startswith(" ")


def test_deadlines_are_printed_to_the_minute_in_the_readers_zone_never_later() -> None:
    moment = datetime(2026, 12, 4, 17, 40, 59, 999999, tzinfo=timezone(timedelta(hours=8)))
    assert when_for_people(moment) == "2026-12-04 09:40 UTC"
    shanghai = when_for_people(moment, ZoneInfo("Asia/Shanghai"))
    assert shanghai == "2026-12-04 17:40 CST (Asia/Shanghai)"


def test_the_acknowledgement_is_due_no_later_than_the_action_deadline() -> None:
    deadline = T0 + timedelta(hours=24)
    assert acknowledgement_due(T0, 72.0, deadline) == (deadline, 24.0)
    assert acknowledgement_due(T0, 4.0, deadline) == (T0 + timedelta(hours=4), 4.0)
    assert acknowledgement_due(T0, 72.0, None) == (T0 + timedelta(hours=72), 72.0)
    # a deadline already past: due at once, the next levels keep the usual interval
    assert acknowledgement_due(T0, 72.0, T0 - timedelta(hours=1)) == (
        T0 - timedelta(hours=1),
        72.0,
    )


def test_escalation_follows_the_action_deadline() -> None:
    """A pregnancy to report within 24 hours: acknowledge by then, and each next level
    24 hours later, not 72."""
    signal = _signal(
        rule_id="pregnancy",
        required_action="report to the sponsor within 24 hours.",
        reporting_deadline=T0 + timedelta(hours=24),
    )
    opened, planned, _ = open_notification(
        signal, raised_at=T0, roster=ROSTER, deadlines=AckDeadlines()
    )
    assert opened.acknowledge_by == T0 + timedelta(hours=24)
    assert opened.deadline_hours == 24.0
    _, body = _email(signal, planned[0].content.acknowledge_by)
    assert _line(body, "Acknowledge by:").endswith(" 2026-12-04 09:00 UTC")
    # each line holds what its label says: the action, and when the report is due
    assert _line(body, "Required action:").endswith(" report to the sponsor within 24 hours.")
    assert _line(body, "Report due by:").endswith(" 2026-12-04 09:00 UTC")
    assert "Deadline" not in body
    state = fold([opened])
    assert state is not None
    escalated, _ = escalate(state, ROSTER)
    assert escalated.acknowledge_by == T0 + timedelta(hours=48)


def test_a_signal_resolved_ahead_of_time_before_the_fix_is_not_reopened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signal the rules resolved at a moment still to come (as they did before they
    waited for it) is not told 'REOPENED' on the next walk: no fact contradicts the
    recorded resolution yet."""
    store = InMemoryRulesStore()
    pulse = {"drug": "Methylprednisolone", "dose": 500, "freq": "once", "route": "IV"}
    given = (RECORDED_FROM - timedelta(hours=1)).isoformat()
    with monkeypatch.context() as old:
        old.setattr(engine, "known_by_now", lambda points, _history: list(points))
        before = asyncio.run(
            run_batches(
                store,
                [
                    [fact({"enrol": {}}, "01-010")],
                    [fact({"med": {**pulse, "start": given}}, "01-010")],
                ],
                PACK,
            )
        )
    told = [type(e.payload()).__name__ for o in before for e in o.signals]
    assert told == ["SafetySignalRaised", "SafetySignalResolved"]
    # a low dose from the same hour: the steroid rule walks the subject's medications again
    low = {"med": {"id": "M2", "drug": "Prednisone", "dose": 5, "start": given}}
    after = asyncio.run(run_batches(store, [[fact(low, "01-010")]], PACK))
    assert [type(e.payload()).__name__ for o in after for e in o.signals] == []
