"""The pure parts of the package-sample replay (tests/support/package_samples.py): a
sample is changed only where it names its sender and subject, and an answer is compared
with expected.yaml without letting a wrong one through."""

from __future__ import annotations

import copy
from typing import Any

import hl7
import pytest

from tests.support.package_samples import (
    as_study_laboratory,
    as_study_sender,
    check_errors,
    check_refusal,
    errors_of,
    leaks,
    misses,
    patient_values,
    pid_values,
    status_fits,
    taken_per_subject,
)

SYSTEM = "urn:vigil:study:NCT05262686"


# --- HL7: sender and subjects ---------------------------------------------------------


def test_only_sender_processing_id_and_pid_3_change_and_segment_ends_are_kept() -> None:
    sample = (
        b"MSH|^~\\&|APP|FAC|X|Y|20110329082006||ORU^R01|C1|T|2.3\n"
        b"PID|1||MRN1^^^HOSP^MR||DOE^JANE\n"
        b"OBR|1|||681X^CBC\n"
        b"OBX|1|NM|6690-2^WBC^LN||11.8|10*9/L\n"
    )
    subjects: dict[str, str] = {}

    sent = as_study_laboratory(sample, subjects)

    subject = subjects["PID 1"]
    assert sent == (
        b"MSH|^~\\&|LIS|PKUPH-LAB|X|Y|20110329082006||ORU^R01|C1|P|2.3\n"
        b"PID|1||MRN1^^^HOSP^MR~" + subject.encode() + b"^^^NCT05262686^SS||DOE^JANE\n"
        b"OBR|1|||681X^CBC\n"
        b"OBX|1|NM|6690-2^WBC^LN||11.8|10*9/L\n"
    )


def test_every_patient_result_group_gets_its_own_subject_and_an_empty_pid_3_only_ours() -> None:
    sample = b"MSH|^~\\&|A|B|||1||ORU^R01|C|P|2.5\rPID|||\rOBX|1\rPID|2||H2^^^HOSP\rOBX|1\r"
    subjects: dict[str, str] = {}

    segments = as_study_laboratory(sample, subjects).decode().split("\r")

    assert sorted(subjects) == ["PID 1", "PID 2"]
    assert subjects["PID 1"] != subjects["PID 2"]
    assert segments[1] == f"PID|||{subjects['PID 1']}^^^NCT05262686^SS"
    assert segments[3] == f"PID|2||H2^^^HOSP~{subjects['PID 2']}^^^NCT05262686^SS"


def test_the_messages_own_encoding_characters_are_used() -> None:
    sample = b"MSH|#$ &|A|B|||1||ORU^R01|C|P|2.3\rPID|||M1#####X\r"
    subjects: dict[str, str] = {}

    segments = as_study_laboratory(sample, subjects).decode().split("\r")

    assert segments[1] == f"PID|||M1#####X${subjects['PID 1']}###NCT05262686#SS"


# --- FHIR: subjects and Bundles -------------------------------------------------------


def observation(subject: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Observation", "status": "final", **extra}
    if subject is not None:
        body["subject"] = subject
    return body


def test_a_patient_reference_keeps_its_reference_and_gains_the_study_identifier() -> None:
    sample = observation({"reference": "Patient/f001", "display": "P. van de Heuvel"})
    subjects: dict[str, str] = {}

    sent = as_study_sender(sample, subjects)

    assert sent["subject"] == {
        "reference": "Patient/f001",
        "display": "P. van de Heuvel",
        "identifier": {"system": SYSTEM, "value": subjects["Patient/f001"]},
    }
    assert "identifier" not in sample["subject"], "the sample itself was changed"


def test_a_contained_patient_gains_the_identifier_and_other_subjects_stay_as_they_are() -> None:
    newborn = observation(
        {"reference": "#newborn"},
        contained=[{"resourceType": "Patient", "id": "newborn", "identifier": [{"value": "1"}]}],
    )
    herd = observation({"reference": "Group/herd1"})
    subjects: dict[str, str] = {}

    sent = as_study_sender(newborn, subjects)
    untouched = as_study_sender(herd, subjects)

    assert sent["contained"][0]["identifier"] == [
        {"value": "1"},
        {"system": SYSTEM, "value": subjects["#newborn"]},
    ]
    assert sent["subject"] == {"reference": "#newborn"}
    assert untouched == herd
    assert list(subjects) == ["#newborn"]


def test_a_collection_is_sent_as_a_batch_and_a_transaction_as_it_ships() -> None:
    report = {"resourceType": "DiagnosticReport", "subject": {"reference": "Patient/p"}}
    result = observation({"reference": "Patient/p"})
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "https://x/DiagnosticReport/1", "resource": report},
                  {"fullUrl": "https://x/Observation/2", "resource": result}],
    }  # fmt: skip
    transaction = copy.deepcopy(collection)
    transaction["type"] = "transaction"
    for entry in transaction["entry"]:
        entry["request"] = {"method": "PUT", "url": "x"}
    subjects: dict[str, str] = {}

    batch = as_study_sender(collection, subjects)
    kept = as_study_sender(transaction, subjects)

    assert batch["type"] == "batch"
    assert [e["request"] for e in batch["entry"]] == [
        {"method": "POST", "url": "DiagnosticReport"},
        {"method": "POST", "url": "Observation"},
    ]
    assert batch["entry"][0]["resource"] == report, "only Observations name the subject"
    assert batch["entry"][1]["resource"]["subject"]["identifier"]["system"] == SYSTEM
    assert kept["type"] == "transaction"
    assert [e["request"]["method"] for e in kept["entry"]] == ["PUT", "PUT"]


# --- comparing with expected.yaml -----------------------------------------------------


@pytest.mark.parametrize(
    ("found", "wanted", "wrong"),
    [
        ({"reported": 2, "unreadable": 0}, {"reported": 2, "unreadable": 0}, 0),
        ({"reported": 2, "unreadable": 1}, {"reported": 2, "unreadable": 0}, 1),
        ({"reported": 1, "unreadable": 1}, {"results": 2}, 0),
        ({"reported": 3, "unreadable": 0}, {"results": 2}, 1),
        ({"reported": 3, "unreadable": 0}, {"results_at_least": 2}, 0),
        ({"reported": 1, "unreadable": 0}, {"results_at_least": 2}, 1),
        ({"reported": 0, "unreadable": 6}, {"results": 6, "unreadable_at_least": 6}, 0),
        ({"reported": 1, "unreadable": 5}, {"results": 6, "unreadable_at_least": 6}, 1),
    ],
)
def test_counts_are_exact_unless_a_floor_is_asked_for(
    found: dict[str, int], wanted: dict[str, int], wrong: int
) -> None:
    assert len(misses(found, wanted)) == wrong


def ack(*errs: str) -> hl7.Message:
    return hl7.parse("\r".join(["MSH|^~\\&|V|V|L|L|1||ACK|A1|P|2.5.1", "MSA|AA|C1", *errs]))


def test_err_segments_are_read_as_where_severity_and_code() -> None:
    found = errors_of(ack("ERR||OBX^2^5|102^Data type error^HL70357|W||||text"))

    assert found == [("OBX^2", "W", "102")]
    assert errors_of(ack()) == []


def test_a_required_warning_must_be_there_and_no_other_error_unless_allowed() -> None:
    wanted = {"errors": [{"where": "OBX^2", "severity": "W", "code": [102, 103]}]}

    check_errors([("OBX^2", "W", "103")], wanted)
    with pytest.raises(AssertionError, match="no ERR"):
        check_errors([("OBX^2", "E", "102")], wanted)
    with pytest.raises(AssertionError, match="not expected"):
        check_errors([("OBX^2", "W", "102"), ("OBX^3", "W", "102")], wanted)
    check_errors([("OBX^2", "W", "102"), ("OBX^3", "W", "101")], {**wanted, "other_errors": ["W"]})


@pytest.mark.parametrize(
    ("status", "wanted", "fits"),
    [
        ("201 Created", 201, True),
        ("422 Unprocessable Entity", 201, False),
        ("200 OK", "2xx", True),
        ("422", "2xx", False),
        ("422", [201, 422], True),
        ("400", [201, 422], False),
        ("500", None, True),
        ("", 201, False),
    ],
)
def test_an_entry_status_fits_its_expectation(status: str, wanted: Any, fits: bool) -> None:
    assert status_fits(status, wanted) is fits


def outcome(*expressions: str) -> dict[str, Any]:
    return {"issue": [{"diagnostics": "d", "expression": [e]} for e in expressions]}


def test_a_refusal_may_name_only_the_elements_the_sample_lets_a_receiver_refuse() -> None:
    allowed = {"refusable_at": ["Observation.effective[x]", "Observation.subject"]}

    check_refusal(outcome("Bundle.entry[3].resource.Observation.effective[x]"), allowed)
    check_refusal(outcome("Observation.subject.reference"), allowed)
    with pytest.raises(AssertionError, match="may be only for"):
        check_refusal(outcome("Observation.effective[x]", "Observation.status"), allowed)
    with pytest.raises(AssertionError, match="names no element"):
        check_refusal({"issue": [{"diagnostics": "refused"}]}, allowed)


def test_each_observation_entry_taken_counts_for_its_subject() -> None:
    body = {
        "entry": [
            {"resource": {"resourceType": "DiagnosticReport", "subject": {"reference": "P/a"}}},
            {"resource": observation({"reference": "Patient/a"})},
            {"resource": observation({"reference": "Patient/a"})},
            {"resource": observation({"reference": "Patient/b"})},
        ]
    }
    answers = [{"status": "201"}, {"status": "201 Created"}, {"status": "422"}, {"status": "422"}]

    taken = taken_per_subject(body, answers, {"Patient/a": "S1", "Patient/b": "S2"})

    assert taken == {"Patient/a": {"results_at_least": 1}}


# --- what an answer must never show ---------------------------------------------------


def test_the_patients_words_in_a_pid_are_every_value_of_four_characters_or_more() -> None:
    sample = (
        b"MSH|^~\\&|A|B|||1||ORU^R01|C|P|2.3\r"
        b"PID|1||94000000000^^^Priority Health||LASTNAME^FIRSTNAME^INIT||19460101|M\r"
        b"OBX|1|NM|JHDL^HDL||62|mg/dL\r"
    )

    assert pid_values(sample) == {
        "94000000000", "Priority Health", "LASTNAME", "FIRSTNAME", "INIT", "19460101",
    }  # fmt: skip


def test_the_patients_words_in_a_fhir_sample_are_its_display_and_contained_patient() -> None:
    sample = observation(
        {"reference": "#p", "display": "Mary Chalmers"},
        contained=[{"resourceType": "Patient", "id": "p", "name": [{"family": "Chalmers"}],
                    "birthDate": "2016-05-18",
                    "identifier": [{"system": "http://x", "value": "12345"}]}],
        code={"text": "Haemoglobin"},
    )  # fmt: skip

    assert patient_values(sample) == {"Mary Chalmers", "Chalmers", "2016-05-18", "12345"}


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        ("ERR||OBX^2^5|102^^HL70357|W||||OBX-5 is not a number", []),
        ("ERR||OBX^2^5|102^^HL70357|W||||OBX-5 'LASTNAME' is not a number", ["LASTNAME"]),
        ("(body): a result needs a loinc_code", ["(body)"]),
        ("string index out of range", ["out of range"]),
        ("does not match ^[0-9]{1,7}-[0-9]$", ["^[", "{1", "[0-9"]),
    ],
)
def test_an_answer_may_show_neither_a_patients_words_nor_an_internal_text(
    answer: str, shown: list[str]
) -> None:
    assert leaks(answer, {"LASTNAME", "19460101"}) == shown
