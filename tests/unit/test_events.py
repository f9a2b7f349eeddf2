import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.events import Envelope, LabResultReported, SubjectEnrolled, wrap


def result(**changes: object) -> LabResultReported:
    fields: dict[str, object] = {
        "study_id": "NCT05262686",
        "subject_id": "01-001",
        "loinc_code": "718-7",
        "value": Decimal("8.6"),
        "unit": "g/dL",
        "reference_low": Decimal("12"),
        "collected_at": datetime(2026, 6, 1, 9, tzinfo=UTC),
        "source_message_id": "M1",
    }
    fields.update(changes)
    return LabResultReported.model_validate(fields)


def test_envelope_follows_cloudevents_structured_mode() -> None:
    envelope = wrap(result(), source="/tests")
    raw = envelope.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert raw["specversion"] == "1.0"
    assert raw["type"] == "org.vigil.lab_result.reported.v1"
    assert raw["subject"] == "NCT05262686/01-001"
    assert raw["studyid"] == "NCT05262686"
    assert raw["correlationid"] == raw["id"]
    assert raw["data"]["value"] == 8.6
    assert envelope.key == b"NCT05262686/01-001"


def test_envelope_round_trips_with_exact_values() -> None:
    envelope = wrap(result(value=Decimal("84")), source="/tests")
    back = Envelope.from_json(envelope.to_json())
    assert back == envelope
    payload = back.payload()
    assert isinstance(payload, LabResultReported)
    assert payload.value == Decimal(84)
    assert payload.reference_low == Decimal(12)


def test_same_content_same_id_different_content_different_id() -> None:
    assert result().content_id() == result().content_id()
    assert result().content_id() == result(value=Decimal("8.60")).content_id()
    assert result().content_id() != result(value=Decimal("8.7")).content_id()


def test_unknown_type_names_the_known_ones() -> None:
    envelope = wrap(result(), source="/tests")
    raw = envelope.to_json().replace(b"lab_result.reported.v1", b"lab_result.reported.v9")
    with pytest.raises(ValueError, match=r"unknown event type .*known types"):
        Envelope.from_json(raw)


def test_payloads_are_immutable_and_strict() -> None:
    subject = SubjectEnrolled(
        study_id="S", subject_id="1", site_id="A", sex="F", birth_date=date(1990, 1, 1)
    )
    with pytest.raises(ValidationError, match="frozen"):
        subject.site_id = "B"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="name"):
        SubjectEnrolled.model_validate({**subject.model_dump(), "name": "Jane Doe"})


def test_extension_attributes_are_lowercase_alphanumeric() -> None:
    raw = wrap(result(), source="/tests", causation_id=uuid.uuid4()).model_dump(by_alias=True)
    for name in raw:
        assert name.isalnum(), name
        assert name.islower(), name


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        result(collected_at=datetime(2026, 6, 1, 9))


@pytest.mark.parametrize("value", ["999999999999999.99", "0.12345678901234567", "7.0", "1e15"])
def test_a_fact_read_back_from_its_json_is_the_same_fact(value: str) -> None:
    """A number past a double's precision is written as its double; writing what was read
    back must give the same JSON (and so the same content id), or a redelivered fact
    would look like a new one (Hypothesis found 999999999999999.99 written first as
    1000000000000000.0, then as 1000000000000000)."""
    envelope = wrap(result(value=Decimal(value)), source="/tests")
    again = Envelope.from_json(envelope.to_json())
    assert again.payload().content_id() == envelope.payload().content_id()
    assert Envelope.from_json(again.to_json()).to_json() == again.to_json()
