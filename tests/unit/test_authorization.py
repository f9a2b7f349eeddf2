"""Object-level rules: studies, sites and owners of subjects and records (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from services.ingest.domain.authorization import (
    Ownership,
    RecordKey,
    SubjectOwnership,
    claims,
    decide,
    precheck,
    without,
)
from services.ingest.domain.json_events import events_for
from services.ingest.domain.principals import Principal
from shared.events import (
    AdverseEventReported,
    Envelope,
    LabResultReported,
    LabResultUnreadable,
    MedicationRecorded,
    ResultStatus,
    Sex,
    SubjectEnrolled,
    SubjectEvent,
)

STUDY = "NCT05262686"
AT = datetime(2026, 11, 1, 8, tzinfo=UTC)
LAB_A = Principal("lab-a", "api-key:a", frozenset({STUDY}))
LAB_B = Principal("lab-b", "api-key:b", frozenset({STUDY}))
SITE_01 = Principal("site-01", "api-key:s", frozenset({STUDY}), frozenset({"PKUPH-01"}))
DATA_MANAGER = Principal("dm", "api-key:d", frozenset({STUDY}), may_amend_others=True)


def envelopes(*events: SubjectEvent) -> list[Envelope]:
    return [
        e
        for event in events
        for e in events_for(event, source="/t", correlation_id=uuid.uuid4(), now=AT)
    ]


def enrolment(
    subject: str = "01-003", site: str = "PKUPH-01", study: str = STUDY
) -> SubjectEnrolled:
    return SubjectEnrolled(
        study_id=study,
        subject_id=subject,
        site_id=site,
        sex=Sex.FEMALE,
        birth_date=date(1980, 1, 1),
    )


def result(
    subject: str = "01-003", status: ResultStatus = ResultStatus.FINAL, unit: str = "g/dL"
) -> LabResultReported:
    return LabResultReported(
        study_id=STUDY,
        subject_id=subject,
        loinc_code="718-7",
        value=None if not status.is_measurement else Decimal("8.4"),
        unit=unit,
        collected_at=AT,
        result_status=status,
        source_message_id=f"msg-{status.value}",
        observation_key="LAB-1:718-7",
    )


def adverse_event(serious: bool = False) -> AdverseEventReported:
    return AdverseEventReported(
        study_id=STUDY, subject_id="01-003", ae_id="AE-1", term="headache", onset=AT,
        serious=serious, source_message_id=f"ae-{serious}",
    )  # fmt: skip


def medication(dose: str = "10") -> MedicationRecorded:
    return MedicationRecorded(
        study_id=STUDY, subject_id="01-003", category="concomitant", medication_id="CM-1",
        drug="prednisone", dose=Decimal(dose), dose_unit="mg", route="oral", start=AT,
        source_message_id=f"cm-{dose}",
    )  # fmt: skip


def owned_by(owner: str, *events: SubjectEvent, site: str = "PKUPH-01") -> Ownership:
    records = {}
    subjects = {}
    for envelope in envelopes(*events):
        enrolled, keys, _ = claims([envelope])
        subjects.update({key: SubjectOwnership(owner, site) for key in enrolled})
        records.update(dict.fromkeys(keys, owner))
    return Ownership(subjects, records)


def codes(decision_refusals: list[object]) -> list[str]:
    return [r.code for r in decision_refusals]  # type: ignore[attr-defined]


def test_a_key_for_study_a_writing_to_study_b_is_refused_by_study_id() -> None:
    (refusal,) = precheck(envelopes(enrolment(study="OTHER-STUDY")), LAB_A)
    assert (refusal.code, refusal.field) == ("forbidden-study", "study_id")


def test_a_site_scoped_key_may_not_enrol_at_another_site() -> None:
    (refusal,) = precheck(envelopes(enrolment(site="PKUPH-02")), SITE_01)
    assert (refusal.code, refusal.field) == ("forbidden-site", "site_id")
    assert precheck(envelopes(enrolment(site="PKUPH-01")), SITE_01) == []


def test_a_site_scoped_key_may_not_write_for_a_subject_of_another_site() -> None:
    known = owned_by("lab-a", enrolment(), site="PKUPH-02")
    decision = decide(envelopes(result()), SITE_01, known)
    assert [(r.code, r.field) for r in decision.refusals] == [("forbidden-site", "subject_id")]


def test_a_result_for_a_subject_nobody_enrolled_yet_may_be_written() -> None:
    events = envelopes(result())
    known = owned_by("site-01", result())  # the request's own claim
    assert decide(events, SITE_01, known).refusals == []


def test_the_first_sender_of_an_observation_may_correct_and_cancel_it() -> None:
    known = owned_by("lab-a", result())
    for status in (ResultStatus.CORRECTED, ResultStatus.WRONG, ResultStatus.CANNOT_OBTAIN):
        assert decide(envelopes(result(status=status)), LAB_A, known).refusals == []


def test_another_source_may_not_correct_or_cancel_an_observation() -> None:
    known = owned_by("lab-a", result())
    for status in (ResultStatus.CORRECTED, ResultStatus.WRONG, ResultStatus.FINAL):
        decision = decide(envelopes(result(status=status)), LAB_B, known)
        assert [(r.code, r.field) for r in decision.refusals] == [
            ("forbidden-object", "observation_key")
        ]


def test_a_key_allowed_to_amend_others_may_correct_anything_of_its_studies() -> None:
    known = owned_by("lab-a", result(), enrolment(), adverse_event(), medication())
    events = envelopes(
        result(status=ResultStatus.CORRECTED), adverse_event(True), medication("20"),
        enrolment(site="PKUPH-02"),
    )  # fmt: skip
    decision = decide(events, DATA_MANAGER, known)
    assert decision.refusals == []
    assert decision.moves == {(STUDY, "01-003"): "PKUPH-02"}


def test_adverse_events_and_medications_belong_to_their_first_sender() -> None:
    known = owned_by("lab-a", adverse_event(), medication())
    decision = decide(envelopes(adverse_event(True), medication("20")), LAB_B, known)
    assert [(r.code, r.field) for r in decision.refusals] == [
        ("forbidden-object", "ae_id"),
        ("forbidden-object", "medication_id"),
    ]


def test_moving_or_re_enrolling_another_sources_subject_is_refused() -> None:
    known = owned_by("lab-a", enrolment())
    for event in (enrolment(site="PKUPH-02"), enrolment()):
        decision = decide(envelopes(event), LAB_B, known)
        assert [(r.code, r.field) for r in decision.refusals] == [
            ("forbidden-object", "subject_id")
        ]
        assert decision.moves == {}


def test_the_owner_moving_its_subject_is_recorded_as_a_move() -> None:
    decision = decide(envelopes(enrolment(site="PKUPH-02")), LAB_A, owned_by("lab-a", enrolment()))
    assert decision.moves == {(STUDY, "01-003"): "PKUPH-02"}


def test_results_after_a_move_in_the_same_request_are_judged_at_the_new_site() -> None:
    site_01_and_02 = Principal("s", "k", frozenset({STUDY}), frozenset({"PKUPH-01", "PKUPH-02"}))
    known = owned_by("s", enrolment())
    decision = decide(envelopes(enrolment(site="PKUPH-02"), result()), site_01_and_02, known)
    assert decision.refusals == []
    narrower = Principal("s", "k", frozenset({STUDY}), frozenset({"PKUPH-01"}))
    refused = decide(envelopes(enrolment(site="PKUPH-03"), result()), narrower, known)
    assert ("forbidden-site", "subject_id") in [(r.code, r.field) for r in refused.refusals]


def test_a_data_quality_event_stands_or_falls_with_its_result() -> None:
    events = envelopes(result(unit="%"))  # an unconvertible unit adds a data-quality issue
    assert len(events) == 2
    known = owned_by("lab-a", result(unit="%"))
    decision = decide(events, LAB_B, known)
    assert [r.event_id for r in decision.refusals] == [events[0].id]
    assert without(events, {events[0].id}) == []


def test_claims_name_each_enrolled_subject_at_its_first_site_and_each_record() -> None:
    enrolled, records, touched = claims(
        envelopes(enrolment(site="PKUPH-01"), enrolment(site="PKUPH-02"), result(), medication())
    )
    assert enrolled == {(STUDY, "01-003"): "PKUPH-01"}
    assert records == {
        RecordKey(STUDY, "01-003", "observation", "LAB-1:718-7"),
        RecordKey(STUDY, "01-003", "medication", "CM-1"),
    }
    assert touched == {(STUDY, "01-003")}


def test_an_item_of_another_study_is_refused_once_with_its_data_quality_event() -> None:
    other = result(unit="%").model_copy(update={"study_id": "OTHER-STUDY"})
    events = envelopes(other)
    assert len(events) == 2
    (refusal,) = precheck(events, LAB_A)
    assert refusal.event_id == events[0].id
    assert without(events, {refusal.event_id}) == []


def test_a_data_quality_event_without_its_cause_is_refused_rather_than_waved_through() -> None:
    _, issue = envelopes(result(unit="%"))
    decision = decide([issue], LAB_A, Ownership())
    assert [(r.code, r.event_id) for r in decision.refusals] == [("forbidden-object", issue.id)]


def unreadable(subject: str = "01-003") -> LabResultUnreadable:
    return LabResultUnreadable(
        study_id=STUDY, subject_id=subject, source_message_id="msg-u", segment="OBX[2]",
        field="OBX-5", problem="OBX-5 (value) is empty", error_code="101",
        loinc_code="718-7", abnormal_flags=("H",),
    )  # fmt: skip


def test_an_unreadable_result_is_judged_like_a_result_by_who_may_write_its_subject() -> None:
    """A LabResultUnreadable has no observation to own: any principal that may write the
    subject (its study, its site) may report one; another study or site may not."""
    events = envelopes(unreadable())
    assert precheck(events, LAB_A) == []
    assert decide(events, LAB_B, owned_by("lab-a", result())).refusals == []
    on_other_site = owned_by("lab-a", enrolment(), site="PKUPH-02")
    assert [(r.code, r.field) for r in decide(events, SITE_01, on_other_site).refusals] == [
        ("forbidden-site", "subject_id")
    ]
    other_study = envelopes(unreadable().model_copy(update={"study_id": "OTHER-STUDY"}))
    assert [r.code for r in precheck(other_study, LAB_A)] == ["forbidden-study"]
