"""A result's identity names one observation: only a later report of that observation (a
correction, a cancellation, a final after a preliminary) supersedes it."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from services.ingest.domain.fhir_identity import bounded
from services.ingest.domain.fhir_mapping import observation_event
from shared.events import LabResultReported
from tests.unit.test_fhir_mapping import observation


def result(**changes: Any) -> LabResultReported:
    return LabResultReported.model_validate(
        {
            "study_id": "S",
            "subject_id": "01-003",
            "loinc_code": "718-7",
            "value": "8.4",
            "unit": "g/dL",
            "collected_at": "2026-11-20T08:30:00+08:00",
            "source_message_id": "MSG-1",
            **changes,
        }
    )


def test_results_of_one_message_for_different_analytes_are_different_observations() -> None:
    platelets = result(loinc_code="777-3", value="250", unit="10*9/L")
    assert result().identity != platelets.identity


def test_serial_samples_under_one_message_id_are_different_observations() -> None:
    assert result().identity != result(collected_at="2026-11-20T10:30:00+08:00").identity


def test_local_codes_tell_results_apart_when_there_is_no_loinc() -> None:
    glucose = result(loinc_code=None, local_system="LAB", local_code="GLU")
    potassium = result(loinc_code=None, local_system="LAB", local_code="K")
    assert glucose.identity != potassium.identity


def test_a_correction_of_the_same_observation_keeps_its_identity() -> None:
    corrected = result(value="9.4", result_status="C", collected_at="2026-11-20T00:30:00Z")
    assert corrected.identity == result().identity  # the same instant, written in UTC
    assert result(observation_key="OBS-1").identity == "OBS-1"
    assert result(observation_key="OBS-1", loinc_code="777-3").identity == "OBS-1"


def observation_key(**changes: Any) -> str:
    event, issues = observation_event(observation(**changes), study_id="S", zone=UTC)
    assert issues == []
    assert isinstance(event, LabResultReported)
    return event.identity


def test_a_fhir_identifier_is_its_system_and_value_together() -> None:
    lab_a = observation_key(identifier=[{"system": "urn:lab-a", "value": "123"}])
    lab_b = observation_key(identifier=[{"system": "urn:lab-b", "value": "123"}])
    assert lab_a != lab_b
    assert lab_a == observation_key(
        identifier=[{"system": "urn:lab-a", "value": "123"}], status="corrected"
    )


def test_a_fhir_identifier_without_a_system_is_not_the_observations_logical_id() -> None:
    assert observation_key(identifier=[{"value": "obs-1"}]) != observation_key(id="obs-1")


def test_a_long_identity_is_hashed_never_cut_short() -> None:
    long_a, long_b = "x" * 400 + "a", "x" * 400 + "b"
    assert bounded(long_a, 300) != bounded(long_b, 300)
    assert len(bounded(long_a, 128)) <= 128
    assert bounded("short", 300) == "short"
