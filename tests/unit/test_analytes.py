from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.analytes import (
    ANALYTES,
    LOINC_NAMES,
    SHARED_KEYS,
    UNIT_NOT_RECOGNISED,
    UNIT_SPELLINGS,
    UnitNotConvertible,
    analyte_for,
    analyte_named,
    codes_of,
    known_unit,
    normalise_lab_result,
    normalise_unit,
    render_loinc_table,
    shown_unit,
)
from shared.events import LabResultReported
from tests.support.services import REPO


def lab_result(**fields: Any) -> LabResultReported:
    return LabResultReported.model_validate(
        {
            "study_id": "NCT05262686",
            "subject_id": "01-001",
            "collected_at": datetime(2026, 6, 1, 9, tzinfo=UTC),
            "source_message_id": "M1",
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("9", "g/dL", "9"),
        ("90", "g/L", "9"),
        ("85", "g/l", "8.5"),
        ("6.206", "mmol/L", "10"),
        ("12.1", "G/DL", "12.1"),
    ],
)
def test_haemoglobin_converts_to_g_per_dl(value: str, unit: str, expected: str) -> None:
    analyte = analyte_for("718-7")
    assert analyte is not None
    assert analyte.to_canonical(Decimal(value), unit) == Decimal(expected)


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "expected"),
    [
        ("751-8", "1500", "/uL", "1.5"),
        ("751-8", "1.2", "10^3/uL", "1.2"),
        ("26499-4", "800", "cells/uL", "0.8"),
        ("1742-6", "0.5", "ukat/L", "30"),
        ("1975-2", "34.2", "umol/L", "2"),
        ("1975-2", "34.2", "µmol/L", "2"),
        ("2160-0", "88.4", "umol/L", "1"),
        ("2164-2", "0.5", "mL/s", "30"),
        ("2465-3", "1200", "mg/dL", "12"),
    ],
)
def test_domain_conversions(loinc: str, value: str, unit: str, expected: str) -> None:
    analyte = analyte_for(loinc)
    assert analyte is not None
    assert analyte.to_canonical(Decimal(value), unit) == Decimal(expected)


def test_unconvertible_unit_names_analyte_unit_and_alternatives() -> None:
    analyte = analyte_for("718-7")
    assert analyte is not None
    with pytest.raises(UnitNotConvertible) as raised:
        analyte.to_canonical(Decimal(9), "%")
    message = str(raised.value)
    assert "haemoglobin" in message
    assert "reported in %," in message  # a unit Vigil recognises, named
    assert "g/L" in message


def test_an_unrecognised_unit_is_not_quoted_in_the_problem() -> None:
    """A unit is sender text: the problem says it was not recognised, not what it was."""
    analyte = analyte_for("718-7")
    assert analyte is not None
    with pytest.raises(UnitNotConvertible) as raised:
        analyte.to_canonical(Decimal(9), "Quarrington")
    message = str(raised.value)
    assert "Quarrington" not in message
    assert "a unit Vigil does not recognise" in message
    assert "g/L" in message


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("g/dL", "g/dL"),
        ("G/DL", "g/dL"),  # the catalogue's spelling, not the sender's
        ("x10^9/L", "10*9/L"),
        ("µmol/L", "umol/L"),
        ("x ULN", "x ULN"),
        ("Quarrington1234", UNIT_NOT_RECOGNISED),
        ("g/dL Mr Smith", UNIT_NOT_RECOGNISED),
        (None, ""),
    ],
)
def test_only_a_unit_vigil_recognises_is_shown(sent: str | None, shown: str) -> None:
    assert shown_unit(sent) == shown
    assert known_unit(sent) == (shown if shown not in ("", UNIT_NOT_RECOGNISED) else None)


def test_unknown_loinc_is_none() -> None:
    assert analyte_for("99999-9") is None


@pytest.mark.parametrize(
    ("spelling", "same_as"),
    [("10^9/L", "10*9/L"), ("x10E9/L", "10*9/L"), ("μmol/L", "umol/L"), (" g / dL ", "g/dL")],
)
def test_unit_spellings_fold_together(spelling: str, same_as: str) -> None:
    assert normalise_unit(spelling) == normalise_unit(same_as)


# --- issue 15: codes from LOINC's axes, unit spellings ------------------------------------


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("7917-8", "HIV antibody"),  # HIV 1 Ab [Presence] in Serum
        ("11259-9", "HCV RNA"),  # HCV RNA [Presence] in Serum or Plasma by NAA
        ("59260-0", "haemoglobin"),  # Hemoglobin [Moles/volume] in Blood
        ("14682-9", "creatinine"),  # Creatinine [Moles/volume] in Serum or Plasma
        ("33558-8", "creatinine clearance"),  # unspecified duration
        ("3141-9", "body weight"),  # Body weight Measured
        ("753-4", "neutrophils"),  # Neutrophils [#/volume] in Blood by Manual count
        ("14631-6", "total bilirubin"),  # Bilirubin.total [Moles/volume] in Serum or Plasma
        ("1744-2", "ALT"),  # ALT by No addition of P-5'-P
        ("23761-0", "neutrophils percent"),  # Neutrophils/100 leukocytes by Manual count
    ],
)
def test_the_issues_codes_belong_to_their_analyte(code: str, name: str) -> None:
    analyte = analyte_for(code)
    assert analyte is not None
    assert analyte.name == name
    assert code in codes_of(name)


def test_a_panel_code_is_not_a_result_code() -> None:
    assert analyte_for("75622-1") is None  # HIV 1 and 2 tests - Meaningful Use set


def test_every_code_has_its_loinc_long_common_name_and_the_doc_is_the_table() -> None:
    assert set(LOINC_NAMES) == {code for a in ANALYTES for code in a.loinc_codes}
    assert "Moles/volume" in LOINC_NAMES["14682-9"]
    doc = (REPO / "docs" / "loinc-codes.md").read_text(encoding="utf-8")
    assert doc == render_loinc_table(), "run: python -m shared.analytes > docs/loinc-codes.md"


def test_a_substance_concentration_code_converts_from_its_own_unit() -> None:
    creatinine = analyte_for("14682-9")
    haemoglobin = analyte_for("59260-0")
    assert creatinine is not None
    assert haemoglobin is not None
    assert creatinine.to_canonical(Decimal("176.8"), "umol/L") == Decimal(2)
    assert haemoglobin.to_canonical(Decimal("6.206"), "mmol/L") == Decimal(10)


@pytest.mark.parametrize(
    ("name", "value", "unit", "expected"),
    [
        ("haemoglobin", "7.0", "gm/dL", "7.0"),
        ("haemoglobin", "7.0", "GM/DL", "7.0"),
        ("haemoglobin", "7.0", "g/dl", "7.0"),
        ("haemoglobin", "70", "gm/L", "7"),
        ("haemoglobin", "70", "G/L", "7"),  # an all-capitals LIS: grams per litre
        ("neutrophils", "0.9", "G/L", "0.9"),  # a count: giga per litre
        ("neutrophils", "0.9", "Gpt/L", "0.9"),
        ("neutrophils", "0.9", "10^9/L", "0.9"),
        ("neutrophils", "0.9", "x10^9/L", "0.9"),
        ("neutrophils", "0.9", "10E9/L", "0.9"),
        ("neutrophils", "0.9", "x10E9/l", "0.9"),
        ("neutrophils", "0.9", "\u00d710^9/L", "0.9"),  # multiplication sign
        ("neutrophils", "0.9", "/nL", "0.9"),
        ("neutrophils", "900", "/mcL", "0.9"),
        ("neutrophils", "900", "cells/mcL", "0.9"),
        ("neutrophils", "900", "/ul", "0.9"),
        ("neutrophils", "900", "cells/mm3", "0.9"),
        ("neutrophils", "0.9", "Thousand/uL", "0.9"),
        ("platelets", "45", "G/L", "45"),
        ("creatinine", "88.4", "umol/l", "1"),
        ("creatinine", "0.0884", "mmol/L", "1"),
        ("body weight", "100", "lbs", "45.359237"),
        ("creatinine", "88.4", "\u00b5mol/L", "1"),  # micro sign
        ("creatinine", "88.4", "\u03bcmol/L", "1"),  # Greek mu
        ("haemoglobin", "6.206", "mmol/l", "10"),
        ("ALT", "40", "IU/L", "40"),
        ("ALT", "40", "U/l", "40"),
        ("ALT", "500", "nkat/L", "30"),
        ("hCG quantitative", "5", "mIU/mL", "5"),
        ("hCG quantitative", "5", "IU/L", "5"),
        ("TSH", "2.5", "mIU/L", "2.5"),
        ("TSH", "2.5", "uIU/mL", "2.5"),
        ("TSH", "2.5", "\u00b5IU/mL", "2.5"),
        ("body weight", "60", "kg", "60"),
        ("body weight", "60", "KG", "60"),
        ("IgG", "400", "mg/dL", "4"),
        ("IgG", "4000", "mg/L", "4"),
    ],
)
def test_unit_spellings_convert_exactly(name: str, value: str, unit: str, expected: str) -> None:
    assert analyte_named(name).to_canonical(Decimal(value), unit) == Decimal(expected)


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("neutrophils", "Gi/L"),  # UCUM Gi is gibi (2^30): not 10^9, refused
        ("neutrophils", "gm/L"),  # grams of cells: no count
        ("haemoglobin", "Gpt/L"),  # a count spelling for a mass concentration
        ("haemoglobin", "/nL"),
        ("body weight", "kgs"),  # not a unit
    ],
)
def test_a_spelling_of_another_quantity_is_refused(name: str, unit: str) -> None:
    with pytest.raises(UnitNotConvertible, match=name):
        analyte_named(name).to_canonical(Decimal(1), unit)


def test_no_two_spellings_of_one_analyte_fold_onto_one_key() -> None:
    """Within an analyte every folded key has one meaning (checked at import; here each
    analyte's table is rebuilt and compared). Across the catalogue only ``g/l`` (grams per
    litre, or G/L a count) and ``iu/l`` (IU/L, [IU]/L: one unit) are shared, and no analyte
    accepts both meanings of ``g/l``."""
    for analyte in ANALYTES:
        keys = [normalise_unit(u) for u in (analyte.canonical_unit, *analyte.conversions)]
        assert len(keys) == len(set(keys)), analyte.name
    assert frozenset({"g/l", "iu/l"}) >= SHARED_KEYS
    for analyte in ANALYTES:
        # gm/L only ever means grams, Gpt/L only ever a count
        assert not (analyte.accepts("gm/L") and analyte.accepts("Gpt/L")), analyte.name


def test_every_spelling_means_a_catalogue_unit() -> None:
    units = {u for a in ANALYTES for u in (a.canonical_unit, *a.conversions)}
    assert set(UNIT_SPELLINGS.values()) <= units


def test_a_count_in_gi_per_litre_is_a_data_quality_problem_not_a_value() -> None:
    result = lab_result(loinc_code="751-8", value=Decimal("0.9"), unit="Gi/L")
    normalised, problem = normalise_lab_result(result)
    assert normalised.canonical_value is None
    assert problem is not None
    assert "neutrophils" in problem
    assert "Gi/L" not in problem  # sender text is not quoted


def test_a_count_in_g_per_litre_is_normalised() -> None:
    result = lab_result(loinc_code="751-8", value=Decimal("0.9"), unit="G/L")
    normalised, problem = normalise_lab_result(result)
    assert problem is None
    assert normalised.canonical_value == Decimal("0.9")
    assert normalised.canonical_unit == "10*9/L"


@pytest.mark.parametrize(
    ("sent", "shown"),
    [("G/L", "G/L"), ("gm/dL", "gm/dL"), ("GM/DL", "g/dL"), ("Gi/L", UNIT_NOT_RECOGNISED)],
)
def test_a_known_spelling_is_shown_as_sent_and_a_folded_one_as_the_catalogue_spells_it(
    sent: str, shown: str
) -> None:
    """``G/L`` is a count for a count and grams per litre for haemoglobin: shown as sent
    (the analyte beside it tells which), never turned into the other's unit."""
    assert shown_unit(sent) == shown
