"""Which report of an observation stands: result status decides, not arrival."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain.supersession import (
    Decision,
    Report,
    decide,
    reason_for,
    standing_before,
)
from services.safety_rules.handlers.facts import handle_batch
from shared.events import (
    DataQualityIssueRaised,
    LabResultReported,
    LabResultSuperseded,
    ResultStatus,
    SafetySignalRaised,
    SafetySignalRetracted,
)
from tests.support.rules_harness import STUDY, T0, InMemoryRulesStore, run_batches
from tests.support.services import REPO

P, F, C = ResultStatus.PRELIMINARY, ResultStatus.FINAL, ResultStatus.CORRECTED
X, D, W = ResultStatus.CANNOT_OBTAIN, ResultStatus.DELETED, ResultStatus.WRONG
CANCELS = (X, D, W)

# (new, standing): reason; every pair of statuses
EXPECTED: dict[tuple[ResultStatus, ResultStatus], str] = {
    (P, P): "updated",
    (F, P): "updated",
    (C, P): "corrected",
    (P, F): "late",
    (F, F): "updated",  # when it says the same: a different final conflicts (see below)
    (C, F): "corrected",
    (P, C): "late",
    (F, C): "late",
    (C, C): "corrected",
    **{(cancel, standing): "retracted" for cancel in CANCELS for standing in (P, F, C)},
    **{(cancel, earlier): "retracted" for cancel in CANCELS for earlier in CANCELS},
    **{(P, cancel): "late" for cancel in CANCELS},
    **{(F, cancel): "late" for cancel in CANCELS},
    **{(C, cancel): "corrected" for cancel in CANCELS},  # a correction re-issues it
}


def test_every_pair_of_statuses_is_decided() -> None:
    assert set(EXPECTED) == {(a, b) for a in ResultStatus for b in ResultStatus}


@pytest.mark.parametrize(("new", "standing"), sorted(EXPECTED))
def test_the_reason_follows_result_status_meaning(
    new: ResultStatus, standing: ResultStatus
) -> None:
    assert reason_for(new, standing) == EXPECTED[(new, standing)]


def test_a_late_report_is_the_superseded_one() -> None:
    final, late = Report(uuid.uuid4(), F), Report(uuid.uuid4(), P)

    (link,) = decide(late, [final]).links

    assert (link.superseded, link.superseding, link.reason) == (
        late.event_id,
        final.event_id,
        "late",
    )


def test_a_replacing_report_supersedes_the_standing_one() -> None:
    final, correction = Report(uuid.uuid4(), F), Report(uuid.uuid4(), C)

    (link,) = decide(correction, [final]).links

    assert (link.superseded, link.superseding) == (final.event_id, correction.event_id)
    assert decide(final, []) == Decision()  # an observation's first report replaces nothing


def test_the_standing_report_is_the_last_one_nothing_superseded() -> None:
    final, late, correction = (Report(uuid.uuid4(), s) for s in (F, P, C))
    reports = [final, late, correction]

    # the late preliminary was marked superseded: the final stood when the correction came
    assert standing_before(reports, correction.event_id, {late.event_id}) == [final]
    assert standing_before(reports, late.event_id, set()) == [final]
    assert standing_before(reports, final.event_id, set()) == []
    assert standing_before(reports, uuid.uuid4(), set()) == []


def test_a_final_re_sent_as_it_was_is_a_plain_update() -> None:
    first, again = Report(uuid.uuid4(), F, (Decimal("7"), None, "g/dL")), None
    again = Report(uuid.uuid4(), F, (Decimal("7"), None, "g/dL"))

    decision = decide(again, [first])

    assert decision.conflicts_with == ()
    assert [(d.superseded, d.superseding, d.reason) for d in decision.links] == [
        (first.event_id, again.event_id, "updated")
    ]


def test_a_different_final_replaces_nothing_and_conflicts_with_the_standing_final() -> None:
    """HL7 v2.5.1 table 0085: a final "can only be changed with a corrected result"."""
    first = Report(uuid.uuid4(), F, (Decimal("7"), None, "g/dL"))
    other = Report(uuid.uuid4(), F, (Decimal("7"), ">", "g/dL"))  # the comparator differs

    assert decide(other, [first]) == Decision((), (first.event_id,))


def test_a_correction_replaces_every_conflicting_final() -> None:
    finals = [Report(uuid.uuid4(), F, (Decimal(v), None, "g/dL")) for v in ("7", "13")]
    correction = Report(uuid.uuid4(), C, (Decimal("12"), None, "g/dL"))

    decision = decide(correction, finals)

    assert decision.conflicts_with == ()
    assert [(d.superseded, d.reason) for d in decision.links] == [
        (finals[0].event_id, "corrected"),
        (finals[1].event_id, "corrected"),
    ]


@pytest.mark.parametrize("status", [P, F])
@pytest.mark.parametrize("cancel", CANCELS)
def test_a_report_after_a_cancellation_is_late_and_conflicts(
    status: ResultStatus, cancel: ResultStatus
) -> None:
    cancelled = Report(uuid.uuid4(), cancel)
    late = Report(uuid.uuid4(), status, (Decimal("7"), None, "g/dL"))

    decision = decide(late, [cancelled])

    assert decision.conflicts_with == (cancelled.event_id,)
    assert [(d.superseded, d.superseding, d.reason) for d in decision.links] == [
        (late.event_id, cancelled.event_id, "late")
    ]


# -- the batch handler on the in-memory store ----------------------------------------------

PACK = load_rule_packs(REPO / "studies")[STUDY]


def hb(value: str | None, status: ResultStatus, message: str) -> LabResultReported:
    return LabResultReported(
        study_id=STUDY,
        subject_id="S-1",
        loinc_code="718-7",
        value=None if value is None else Decimal(value),
        unit=None if value is None else "g/dL",
        collected_at=T0 + timedelta(days=1),
        result_status=status,
        source_message_id=message,
        observation_key="hl7:FIL-1:718-7:",
    )


def links(store: InMemoryRulesStore) -> list[tuple[str, str, str]]:
    """(superseded, superseding, reason) by source message id."""
    by_id = {
        e.id: e.payload().source_message_id  # type: ignore[union-attr]
        for e in store.stream(STUDY, "S-1")
        if e.type == LabResultReported.event_type
    }
    found = []
    for envelope in store.stream(STUDY, "S-1"):
        link = envelope.payload()
        if isinstance(link, LabResultSuperseded):
            found.append(
                (by_id[link.superseded_event_id], by_id[link.superseding_event_id], link.reason)
            )
    return found


def issues(store: InMemoryRulesStore) -> list[str]:
    return [
        e.payload().issue  # type: ignore[union-attr]
        for e in store.stream(STUDY, "S-1")
        if e.type == DataQualityIssueRaised.event_type and e.payload().issue != "unknown-subject"  # type: ignore[union-attr]
    ]


def signal_types(store: InMemoryRulesStore) -> list[str]:
    return [
        e.type.split(".")[-2]
        for e in store.stream(STUDY, "S-1")
        if e.type.startswith("org.vigil.safety_signal.")
    ]


@pytest.mark.parametrize("one_batch", [False, True])
async def test_a_late_preliminary_after_the_final_raises_nothing(one_batch: bool) -> None:
    store = InMemoryRulesStore()
    final, late = hb("12.5", F, "final"), hb("7.0", P, "prelim")
    batches = [[final, late]] if one_batch else [[final], [late]]

    outcomes = await run_batches(store, batches, PACK)

    assert [o.signals for o in outcomes] == [[] for _ in outcomes]
    assert links(store) == [("prelim", "final", "late")]
    histories = store.histories[(STUDY, "S-1")]
    assert [e.result.source_message_id for e in histories.results("718-7")] == ["final"]


async def test_a_late_original_after_its_correction_keeps_the_correction_outcome() -> None:
    store = InMemoryRulesStore()

    outcomes = await run_batches(
        store, [[hb("12.1", C, "correction")], [hb("7.0", F, "original")]], PACK
    )

    assert [o.signals for o in outcomes] == [[], []]  # the corrected-away 7.0 never alerts
    assert links(store) == [("original", "correction", "late")]


async def test_a_correction_after_the_final_replaces_it_and_retracts_its_signal() -> None:
    store = InMemoryRulesStore()

    await run_batches(store, [[hb("7.0", F, "final")], [hb("12.1", C, "correction")]], PACK)

    assert links(store) == [("final", "correction", "corrected")]
    assert signal_types(store) == ["raised", "retracted"]


async def test_a_cancellation_retracts_and_only_a_correction_reissues() -> None:
    store = InMemoryRulesStore()
    batches = [
        [hb("7.0", F, "final")],
        [hb(None, X, "cancel")],
        [hb("7.2", F, "late-final")],  # the very final the cancellation withdrew, late
        [hb("7.5", C, "reissue")],
    ]

    await run_batches(store, batches, PACK)

    assert links(store) == [
        ("final", "cancel", "retracted"),
        ("late-final", "cancel", "late"),
        ("cancel", "reissue", "corrected"),
    ]
    # the late final is raised for a person to look at (it may be the lab reporting again)
    assert issues(store) == ["conflicting-results"]
    # the late final raises nothing; the correction re-issues the result, so its signal
    assert signal_types(store) == ["raised", "retracted", "raised"]


async def test_a_restart_decides_the_same_and_a_redelivery_says_nothing() -> None:
    store = InMemoryRulesStore()
    final, late = hb("7.0", F, "final"), hb("6.0", P, "prelim")
    await run_batches(store, [[final]], PACK)
    store.histories.clear()  # a new process reads the subject back from the log

    outcomes = await run_batches(store, [[late]], PACK)
    store.histories.clear()
    stored = [e for e in store.stream(STUDY, "S-1") if e.type == late.event_type]
    again = await handle_batch(stored, store.unit_of_work(), {STUDY: PACK})

    assert outcomes[0].signals == []  # the late 6.0 neither escalates nor raises
    assert links(store) == [("prelim", "final", "late")]
    assert (again.stored, again.signals, again.data_quality) == (0, [], [])
    assert [type(e.payload()) for e in store.stream(STUDY, "S-1") if "safety_signal" in e.type] == [
        SafetySignalRaised
    ]
    assert SafetySignalRetracted not in {type(e.payload()) for e in store.stream(STUDY, "S-1")}


@pytest.mark.parametrize("one_batch", [False, True])
async def test_a_different_final_keeps_the_first_and_its_alert_and_raises_the_conflict(
    one_batch: bool,
) -> None:
    """Issue 14: a later final is not a correction; both are judged, nothing retracted."""
    store = InMemoryRulesStore()
    first, second = hb("7.0", F, "first"), hb("13.0", F, "second")
    batches = [[first, second]] if one_batch else [[first], [second]]

    await run_batches(store, batches, PACK)

    assert links(store) == []
    assert "retracted" not in signal_types(store)
    assert signal_types(store)[0] == "raised"
    assert issues(store) == ["conflicting-results"]
    history = store.histories[(STUDY, "S-1")]
    assert sorted(e.result.source_message_id for e in history.results("718-7")) == [
        "first",
        "second",
    ]


async def test_a_final_re_sent_unchanged_says_nothing_new() -> None:
    store = InMemoryRulesStore()

    outcomes = await run_batches(store, [[hb("7.0", F, "first")], [hb("7.00", F, "again")]], PACK)

    assert links(store) == [("first", "again", "updated")]
    assert issues(store) == []
    assert outcomes[1].data_quality == []
    # the signal stands on the re-sent report (amended: same grade, same value), no more
    assert [e.type.split(".")[-2] for e in outcomes[1].signals] in ([], ["amended"])
    assert signal_types(store) in (["raised"], ["raised", "amended"])


async def test_a_correction_after_conflicting_finals_replaces_both() -> None:
    store = InMemoryRulesStore()
    batches = [[hb("7.0", F, "first")], [hb("13.0", F, "second")], [hb("12.5", C, "fix")]]

    await run_batches(store, batches, PACK)

    assert links(store) == [("first", "fix", "corrected"), ("second", "fix", "corrected")]
    history = store.histories[(STUDY, "S-1")]
    assert [e.result.source_message_id for e in history.results("718-7")] == ["fix"]
