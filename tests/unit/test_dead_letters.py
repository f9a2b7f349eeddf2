"""Dead letters refer to the kept message; the raw message never travels with them."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

from services.safety_rules.entrypoints.records import (
    RAW_DEAD_LETTER_REASON,
    Record,
    Rejected,
    parse_records,
    rejected_input,
)
from shared.events import InputRejected, payload_class
from shared.events.dead_letters import (
    KAFKA_CHANNEL,
    RECEIPT_REFERENCE,
    ReceiptReference,
    dead_letter,
    reference_in,
)
from shared.events.payloads import InputRejectedV1

NAME = "Quentin Marrowfield"
MRN = "MRN-88231"
PARTNER_EVENT = json.dumps(
    {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/partner",
        "type": "org.vigil.subject.enrolled.v1",
        "time": "2026-11-01T08:00:00Z",
        "studyid": "NCT05262686",
        "correlationid": str(uuid.uuid4()),
        "data": {
            "study_id": "NCT05262686",
            "subject_id": MRN,
            "site_id": "PKUPH-01",
            "sex": "F",
            "birth_date": "1937-06-11",
            "name": NAME,
        },
    }
).encode()


def test_a_record_with_names_in_it_is_rejected_naming_fields_only() -> None:
    record = Record("vigil.subjects.v1", 2, 40, PARTNER_EVENT)
    _, (rejected,) = parse_records([record])
    assert "not a valid Vigil event" in rejected.reason
    assert "name" in rejected.reason or "(body)" in rejected.reason
    for value in (NAME, MRN, "1937-06-11"):
        assert value not in rejected.reason


def test_an_unknown_event_type_is_not_quoted() -> None:
    document = json.loads(PARTNER_EVENT)
    document["type"] = f"org.{NAME}.v1"
    _, (rejected,) = parse_records([Record("t", 0, 1, json.dumps(document).encode())])
    assert "no known Vigil event type" in rejected.reason
    assert NAME not in rejected.reason


def test_a_rejected_record_is_kept_verbatim_and_dead_lettered_by_reference() -> None:
    record = Record("vigil.subjects.v1", 2, 40, PARTNER_EVENT, (("content-type", b"x/y"),))
    kept = Rejected(record, "not a valid Vigil event: data: invalid").kept("rules")

    assert kept.receipt.raw == PARTNER_EVENT
    assert (kept.receipt.channel, kept.receipt.source) == (KAFKA_CHANNEL, record.origin)
    assert kept.receipt.content_type == "x/y"
    reference = ReceiptReference.model_validate_json(kept.letter.value)
    assert reference.receipt_id == kept.receipt.receipt_id
    assert reference.raw_sha256 == hashlib.sha256(PARTNER_EVENT).hexdigest()
    assert reference.raw_size == len(PARTNER_EVENT)
    assert kept.letter.headers["content-type"] == RECEIPT_REFERENCE
    assert kept.letter.headers["vigil-study-id"] == "NCT05262686"
    travelling = kept.letter.value + json.dumps(kept.letter.headers).encode()
    for value in (NAME, MRN, "1937-06-11"):
        assert value.encode() not in travelling
    # consumed again (its batch rewound): the same receipt and the same owed event
    again = Rejected(record, "not a valid Vigil event: data: invalid").kept("rules")
    assert again.receipt == kept.receipt


def test_the_event_of_a_dead_letter_is_the_one_its_producer_owes() -> None:
    reference = ReceiptReference.of(uuid.uuid4(), PARTNER_EVENT, "http-json")
    letter = dead_letter(
        reference, reason="subject_id: is required", origin="http /v1", rejected_by="x"
    )
    owed = letter.event(fallback_origin="http /v1").content_id()
    record = Record(
        "vigil.dead-letters.v1",
        0,
        7,
        letter.value,
        tuple((k, v.encode()) for k, v in letter.headers.items()),
    )
    envelope, to_keep = rejected_input(record)
    assert to_keep is None
    assert envelope.id == owed
    payload = envelope.payload()
    assert isinstance(payload, InputRejected)
    assert envelope.type == "org.vigil.input.rejected.v2"
    assert (payload.receipt_id, payload.raw_size, payload.channel) == (
        reference.receipt_id,
        len(PARTNER_EVENT),
        "http-json",
    )
    assert payload.reason == "subject_id: is required"


def test_a_raw_dead_letter_is_kept_first_and_recorded_without_its_producer_reason() -> None:
    headers = (("vigil-reason", f"bad name {NAME}".encode()), ("vigil-rejected-by", b"partner"))
    record = Record("vigil.dead-letters.v1", 1, 3, PARTNER_EVENT, headers)
    envelope, to_keep = rejected_input(record)
    assert to_keep is not None
    assert to_keep.raw == PARTNER_EVENT
    assert to_keep.reason == f"bad name {NAME}"  # with the raw, in the receipt store
    assert to_keep.event_ids == (envelope.id,)
    payload = envelope.payload()
    assert isinstance(payload, InputRejected)
    assert payload.receipt_id == to_keep.receipt_id
    assert payload.reason == RAW_DEAD_LETTER_REASON
    assert payload.rejected_by == "partner"
    assert NAME not in envelope.to_json().decode()
    assert MRN not in envelope.to_json().decode()


def test_a_reference_is_only_read_from_a_record_that_says_it_is_one() -> None:
    reference = ReceiptReference.of(uuid.uuid4(), b"raw", "mllp")
    value = reference.model_dump_json().encode()
    assert reference_in(value, {"content-type": RECEIPT_REFERENCE}) == reference
    assert reference_in(value, {}) is None
    assert reference_in(b"{not json", {"content-type": RECEIPT_REFERENCE}) is None


def test_version_1_events_can_still_be_read() -> None:
    old = {
        "study_id": None,
        "reason": "r",
        "origin": "o",
        "rejected_by": "b",
        "raw_base64": base64.b64encode(b"raw").decode(),
        "raw_text": "raw",
    }
    assert payload_class("org.vigil.input.rejected.v1") is InputRejectedV1
    assert InputRejectedV1.model_validate(old).raw_text == "raw"
