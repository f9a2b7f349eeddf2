"""The soak's checker fails a run for each kind of loss: crafted evidence, one flaw each."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from shared.events.dead_letters import ReceiptReference
from shared.events.topics import DEAD_LETTERS, LAB_RESULTS
from soak.checker import Figures, check
from soak.evidence import Delivery, Evidence, SignalEvent, VerifyResult
from soak.faults import FaultRecord, Timeline
from soak.mailbox import Mail
from soak.observers import Epoch, Observed, PositionSample, TapRecord, _raw_sha256
from soak.stream import Ledger, Sent
from soak.workload import HB, Episode, Item, Lab, Subject, Workload, fact_key

T0 = 1_800_000_000.0  # a wall-clock origin; the crafted run starts here
RULE = "anaemia-hb-le-9"
PI, SUBI = "pi.site01@vigil.example.org", "subi.site01@vigil.example.org"
SUBJECT = Subject("SK-00001", "PKUPH-01", "F", date(1980, 1, 1), Decimal(60))


def lab(n: int, value: str = "13.0") -> Lab:
    return Lab(SUBJECT.id, HB, Decimal(value), datetime(2026, 3, 2, n, tzinfo=UTC), f"SK{n:07d}-1")


class Run:
    """A clean run: two results, the second a haemoglobin of 7.0 that raised one signal,
    e-mailed to both site investigators; every figure at its target."""

    def __init__(self) -> None:
        self.normal, self.low = lab(1), lab(2, "7.0")
        items = [
            Item(1, "json", SUBJECT.id, (self.normal,)),
            Item(2, "json", SUBJECT.id, (self.low,)),
        ]
        episode = Episode(SUBJECT.id, RULE)
        self.workload = Workload(
            (SUBJECT,), (), tuple(items), frozenset({episode}), {episode: fact_key(self.low)}
        )
        self.ledger = Ledger(started_at=T0, finished_at=T0 + 10)
        for n, item in enumerate(items):
            self.ledger.sent.append(
                Sent(item, b"{}", T0 + n, T0 + n + 0.1, "acknowledged", "202", attempts=1)
            )
        self.evidence = Evidence(
            facts={fact_key(self.normal): [T0 + 0.5], fact_key(self.low): [T0 + 1.5]},
            event_times={"e-1": T0 + 0.5, "e-2": T0 + 1.5},
            signals=[SignalEvent("raised", "sig-1", SUBJECT.id, RULE, None, T0 + 1.6)],
            deliveries=[
                Delivery("sig-1", "raised", "email", PI, "<m-1@vigil>", "sent", 1),
                Delivery("sig-1", "raised", "email", SUBI, "<m-2@vigil>", "sent", 1),
            ],
            recipients={"sig-1": frozenset({PI, SUBI})},
            mails=[
                Mail(T0 + 3, (PI,), "<m-1@vigil>", "sig-1", "[Vigil] ..."),
                Mail(T0 + 3, (SUBI,), "<m-2@vigil>", "sig-1", "[Vigil] ..."),
            ],
            verify=VerifyResult(True, "chain: 3 event(s) verified"),
        )
        self.observed = Observed(
            positions=[PositionSample("vigil-safety-rules", "lab", 0, 2, T0 + 1.6)],
            records=[
                TapRecord(0, "lab", 0, 0, "e-1", b"x"),
                TapRecord(0, "lab", 0, 1, "e-2", b"y"),
            ],
            epochs=[Epoch(T0 - 100)],
        )
        self.timeline = Timeline()

    def check(self) -> Figures:
        return check(self.workload, self.ledger, self.evidence, self.observed, self.timeline)


@pytest.fixture
def run() -> Run:
    return Run()


def test_a_clean_run_passes(run: Run) -> None:
    figures = run.check()

    assert figures.failures() == []
    assert figures.facts_acknowledged == 2
    assert figures.emails_received == figures.emails_expected == 2
    assert figures.latencies == pytest.approx([1.9, 1.9])


def test_an_acknowledged_fact_missing_from_the_audit_log_is_lost(run: Run) -> None:
    del run.evidence.facts[fact_key(run.normal)]

    figures = run.check()

    assert figures.failures() == ["lost"]
    assert figures.lost == ["lab SK0000001-1 (SK0000001 (json), acknowledged 202)"]


def test_a_fact_that_was_never_acknowledged_is_not_lost_but_counted_apart(run: Run) -> None:
    del run.evidence.facts[fact_key(run.normal)]
    run.ledger.sent[0].outcome, run.ledger.sent[0].detail = "gave-up", "503"

    figures = run.check()

    assert figures.lost == []
    assert figures.failures() == ["never acknowledged"]


def test_a_fact_recorded_twice_is_duplicated(run: Run) -> None:
    run.evidence.facts[fact_key(run.normal)].append(T0 + 5)

    assert run.check().duplicated == ["lab SK0000001-1 x2"]


def test_a_record_below_a_recorded_position_that_was_never_recorded_is_skipped(run: Run) -> None:
    del run.evidence.event_times["e-1"]

    figures = run.check()

    assert figures.skipped == ["lab[0]@0 (broker epoch 0): never recorded"]
    assert "skipped" in figures.failures()


def test_a_record_recorded_only_after_the_position_passed_it_is_skipped_too(run: Run) -> None:
    run.evidence.event_times["e-1"] = T0 + 40  # the re-drive brought it back later

    figures = run.check()

    assert figures.skipped_stored_later == [
        "lab[0]@0 (broker epoch 0): recorded 38.4s after passed"
    ]
    assert "skipped" in figures.failures()


def test_a_record_the_consumer_dead_lettered_is_not_skipped(run: Run) -> None:
    del run.evidence.event_times["e-1"]
    run.evidence.rejected[b"x"] = T0 + 30  # its InputRejected came back through the topic

    assert run.check().failures() == []


def test_positions_around_a_broker_restart_are_not_judged_against_either_log(run: Run) -> None:
    del run.evidence.event_times["e-1"]
    run.observed = Observed(
        positions=run.observed.positions,
        records=run.observed.records,
        epochs=[Epoch(T0 - 100, stopped_at=T0 + 1), Epoch(T0 + 1.5)],  # restarted at T0+1.5
    )

    assert run.check().skipped == []


def test_an_episode_raised_twice_is_doubled_and_one_never_raised_is_missing(run: Run) -> None:
    run.evidence.signals.append(SignalEvent("raised", "sig-2", SUBJECT.id, RULE, None, T0 + 2))
    doubled = run.check()
    run.evidence.signals.clear()
    missing = run.check()

    assert doubled.signals_doubled == [f"{SUBJECT.id} {RULE} x2"]
    assert missing.signals_missing == [f"{SUBJECT.id} {RULE}"]


def test_a_signal_where_no_finding_was_sent_is_unexpected(run: Run) -> None:
    run.evidence.signals.append(
        SignalEvent("raised", "sig-3", SUBJECT.id, "liver-alt-ast-gt-3-uln", None, T0 + 2)
    )

    assert run.check().signals_unexpected == [f"{SUBJECT.id} liver-alt-ast-gt-3-uln x1"]


def test_an_email_never_received_is_missing(run: Run) -> None:
    run.evidence.mails.pop()

    figures = run.check()

    assert figures.emails_missing == [f"sig-1 raised -> {SUBI}"]
    assert figures.failures() == ["e-mails missing"]


def test_one_message_under_two_message_ids_is_doubled_and_a_repeat_is_only_counted(
    run: Run,
) -> None:
    run.evidence.deliveries.append(
        Delivery("sig-1", "raised", "email", PI, "<m-9@vigil>", "sent", 1)
    )
    run.evidence.mails += [
        Mail(T0 + 4, (PI,), "<m-9@vigil>", "sig-1", "[Vigil] ..."),  # a second message
        Mail(T0 + 5, (SUBI,), "<m-2@vigil>", "sig-1", "[Vigil] ..."),  # the same one again
    ]

    figures = run.check()

    assert figures.emails_doubled == [f"sig-1 raised -> {PI}: 2 Message-IDs"]
    assert figures.email_repeats == 1
    assert figures.failures() == ["e-mails doubled"]


def test_a_signal_no_message_was_planned_for_is_never_notified(run: Run) -> None:
    run.evidence.deliveries.clear()
    run.evidence.mails.clear()

    figures = run.check()

    assert figures.never_notified == [f"{SUBJECT.id} {RULE} (signal sig-1)"]
    assert figures.emails_missing == [f"sig-1 raised -> {PI}", f"sig-1 raised -> {SUBI}"]


def test_an_email_later_than_the_budget_after_recovery_is_late(run: Run) -> None:
    run.evidence.mails = [
        Mail(T0 + 100, (PI,), "<m-1@vigil>", "sig-1", "[Vigil] ..."),
        Mail(T0 + 100, (SUBI,), "<m-2@vigil>", "sig-1", "[Vigil] ..."),
    ]
    late = run.check()
    # a fault that ended at T0+50 moves the clock's start: 50 s after recovery is in time
    run.timeline.faults.append(FaultRecord("kill safety_rules", T0 + 20, T0 + 50))
    after_fault = run.check()

    assert late.late == [f"{SUBJECT.id} {RULE} -> {PI}: 99s", f"{SUBJECT.id} {RULE} -> {SUBI}: 99s"]
    assert after_fault.late == []
    assert after_fault.latencies == pytest.approx([50.0, 50.0])


def test_poison_acknowledged_and_then_dead_lettered_is_lost(run: Run) -> None:
    raw = b'{"value": "1E+400"}'
    poison = Item(3, "json", SUBJECT.id, (), poison="json-huge-number")
    run.ledger.sent.append(Sent(poison, raw, T0 + 2, T0 + 2.1, "acknowledged", "202"))
    run.evidence.rejected[hashlib.sha256(raw).digest()] = T0 + 3

    figures = run.check()

    assert figures.poison_lost == [
        "json-huge-number SK0000003: acknowledged, then dead-lettered (202)"
    ]
    assert figures.failures() == ["lost"]
    assert figures.poison == {"json-huge-number": {"acknowledged, then dead-lettered": 1}}


def test_poison_acknowledged_and_refused_downstream_is_lost_too(run: Run) -> None:
    poison = Item(3, "json", SUBJECT.id, (), poison="json-huge-number")
    run.ledger.sent.append(Sent(poison, b"{...}", T0 + 2, T0 + 2.1, "acknowledged", "202"))
    run.evidence.rejected_texts.append('{"data": {"source_message_id": "SK0000003-P"}}')

    assert run.check().poison_lost == [
        "json-huge-number SK0000003: acknowledged, then dead-lettered (202)"
    ]


def test_poison_refused_and_kept_passes_and_poison_never_answered_fails(run: Run) -> None:
    raw = b"THIS IS NOT HL7"
    refused = Item(3, "mllp", SUBJECT.id, (), poison="hl7-not-hl7")
    silent = Item(4, "mllp", SUBJECT.id, (), poison="hl7-no-final-cr")
    run.ledger.sent += [
        Sent(refused, raw, T0 + 2, T0 + 2.1, "refused", "AR 200"),
        Sent(silent, b"MSH|...", T0 + 2, None, "no-answer", "no answer within 15s"),
    ]
    run.evidence.rejected[hashlib.sha256(raw).digest()] = T0 + 3

    figures = run.check()

    assert figures.poison["hl7-not-hl7"] == {"refused and kept": 1}
    assert figures.poison_unanswered == [
        "hl7-no-final-cr SK0000004: no-answer: no answer within 15s"
    ]
    assert figures.failures() == ["poison unanswered"]


def test_a_failed_audit_verify_fails_the_run(run: Run) -> None:
    run.evidence.verify = VerifyResult(False, "chain broken at position 2")

    assert run.check().failures() == ["audit verify"]


def test_a_dead_letter_that_refers_to_a_receipt_stands_for_the_raw_it_names() -> None:
    raw = b"MSH|^~\\&|not really HL7"
    reference = ReceiptReference.of(uuid.uuid4(), raw, "mllp").model_dump_json().encode()

    assert _raw_sha256(DEAD_LETTERS, reference) == hashlib.sha256(raw).digest()
    assert _raw_sha256(LAB_RESULTS, raw) == hashlib.sha256(raw).digest()
