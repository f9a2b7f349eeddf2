import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.safety_rules.domain.evaluation import evaluate_lab_result, signal_id_for
from services.safety_rules.domain.rule_pack import load_rule_packs
from shared.events import LabResultReported, ResultStatus
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]
EVENT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")


def hb(value: str, unit: str = "g/dL", **changes: object) -> LabResultReported:
    fields: dict[str, object] = {
        "study_id": "NCT05262686",
        "subject_id": "01-001",
        "loinc_code": "718-7",
        "value": Decimal(value),
        "unit": unit,
        "collected_at": datetime(2026, 6, 1, 9, tzinfo=UTC),
        "source_message_id": "M1",
    }
    fields.update(changes)
    return LabResultReported.model_validate(fields)


@pytest.mark.parametrize(
    ("value", "unit", "fires"),
    [
        ("9", "g/dL", True),  # the threshold itself is included
        ("9.0", "g/dL", True),
        ("9.01", "g/dL", False),
        ("8.2", "g/dL", True),
        ("90", "g/L", True),
        ("91", "g/L", False),
        ("5.585", "mmol/L", True),  # 8.999 g/dL
        ("5.59", "mmol/L", False),  # 9.007 g/dL
        ("13.5", "g/dL", False),
    ],
)
def test_haemoglobin_threshold(value: str, unit: str, fires: bool) -> None:
    signals, problems = evaluate_lab_result(hb(value, unit), EVENT_ID, PACK, site_id="PKUPH-01")
    assert bool(signals) is fires
    assert problems == []


def test_signal_explains_itself() -> None:
    signals, _ = evaluate_lab_result(hb("84", "g/L"), EVENT_ID, PACK, site_id="PKUPH-02")
    (signal,) = signals
    assert signal.rule_id == "anaemia-hb-le-9"
    assert signal.rule_pack_version == PACK.version
    assert signal.input_event_ids == (EVENT_ID,)
    assert signal.computed_values["value_in_rule_unit"] == "8.4"
    assert signal.computed_values["comparison"] == "8.4 <= 9 g/dL"
    assert signal.observed_value == Decimal(84)
    assert signal.observed_unit == "g/L"
    assert signal.site_id == "PKUPH-02"
    assert signal.signal_id == signal_id_for("anaemia-hb-le-9", EVENT_ID)


@pytest.mark.parametrize("status", [ResultStatus.CANNOT_OBTAIN, ResultStatus.WRONG])
def test_result_that_is_not_a_measurement_raises_nothing(status: ResultStatus) -> None:
    signals, _ = evaluate_lab_result(hb("5", result_status=status), EVENT_ID, PACK, site_id=None)
    assert signals == []


def test_unconvertible_unit_is_reported_not_dropped() -> None:
    signals, problems = evaluate_lab_result(hb("5", "%"), EVENT_ID, PACK, site_id=None)
    assert signals == []
    assert [p.rule_id for p in problems] == ["anaemia-hb-le-9"]


def test_other_analytes_are_not_judged_by_the_haemoglobin_rule() -> None:
    result = hb("5", loinc_code="777-3", unit="10*9/L")
    assert evaluate_lab_result(result, EVENT_ID, PACK, site_id=None) == ([], [])


def test_same_input_same_signal_id() -> None:
    assert signal_id_for("r", EVENT_ID) == signal_id_for("r", EVENT_ID)
    assert signal_id_for("r", EVENT_ID) != signal_id_for("s", EVENT_ID)


@pytest.mark.parametrize(
    ("comparator", "value", "fires"),
    [
        ("<", "0.5", True),  # certainly below 9
        ("<", "10", True),  # may be below 9: cannot be told apart from an alarming value
        (">", "12", False),  # certainly above 9
        (">", "8", True),  # may be 8.5
        (">=", "9", True),  # may be exactly 9
        (">", "9", False),  # certainly above 9
    ],
)
def test_censored_values_alert_when_the_condition_may_hold(
    comparator: str, value: str, fires: bool
) -> None:
    signals, _ = evaluate_lab_result(hb(value, comparator=comparator), EVENT_ID, PACK, site_id=None)
    assert bool(signals) is fires
    if signals:
        assert signals[0].computed_values["censored"] == f"reported as {comparator}{value}"
