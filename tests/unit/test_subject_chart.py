"""The subject chart's data (pure): CTCAE bands and thresholds placed on the value axis,
the baseline, superseded results, study days, units."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from services.notifier.domain.protocol_limits import (
    AnalyteLimits,
    Band,
    Grading,
    Reference,
    Region,
    Threshold,
    grade_of,
    grade_of_value,
    grade_regions,
    threshold_value,
)
from services.notifier.domain.subject_chart import (
    Standing,
    SubjectFacts,
    standings,
    study_day,
    subject_chart,
)
from shared.events import ResultStatus
from tests.support.lab_results import enrolled, lab, superseded

D = Decimal
SHANGHAI = ZoneInfo("Asia/Shanghai")
ALT_BANDS = Grading(
    "CTCAE v5.0 ALT increased",
    bands=(
        Band(4, ">", D(20), "uln"),
        Band(3, ">", D(5), "uln"),
        Band(2, ">", D(3), "uln"),
        Band(1, ">", D(1), "uln"),
    ),
    abnormal_baseline_bands=(
        Band(4, ">", D(20), "baseline"),
        Band(3, ">", D(5), "baseline"),
        Band(2, ">", D(3), "baseline"),
        Band(1, ">=", D("1.5"), "baseline"),
    ),
)
ANAEMIA_BANDS = Grading(
    "CTCAE v5.0 Anemia",
    bands=(Band(3, "<", D(8), "value"), Band(2, "<", D(10), "value"), Band(1, "<", D(1), "lln")),
)


def spans(regions: tuple[Region, ...]) -> list[tuple[int, Decimal | None, Decimal | None]]:
    return [(r.grade, r.lower, r.upper) for r in regions]


def test_bands_given_as_multiples_of_the_uln_become_values_with_each_results_own_range() -> None:
    regions = grade_regions(ALT_BANDS, Reference(low=D(7), high=D(40), baseline=None))

    assert spans(regions) == [
        (4, D(800), None),
        (3, D(200), D(800)),
        (2, D(120), D(200)),
        (1, D(40), D(120)),
    ]
    assert grade_of_value(regions, D(150)) == 2
    assert grade_of_value(regions, D(200)) == 2  # "> 5 x ULN": 5 x ULN itself is grade 2
    assert grade_of_value(regions, D("200.1")) == 3
    assert grade_of_value(regions, D(40)) is None


def test_falling_bands_mix_absolute_values_and_multiples_of_the_lln() -> None:
    regions = grade_regions(ANAEMIA_BANDS, Reference(low=D(12), high=D(16), baseline=None))

    assert spans(regions) == [(3, None, D(8)), (2, D(8), D(10)), (1, D(10), D(12))]
    assert grade_of_value(regions, D("9.1")) == 2
    assert grade_of_value(regions, D(8)) == 2  # "< 8" is grade 3: 8 itself is grade 2
    assert grade_of_value(regions, D(12)) is None


def test_an_abnormal_baseline_grades_on_multiples_of_the_baseline() -> None:
    reference = Reference(low=D(7), high=D(40), baseline=D(60), baseline_high=D(40))

    regions = grade_regions(ALT_BANDS, reference)

    assert spans(regions)[-1] == (1, D(90), D(180))  # 1.5 to 3 x baseline 60
    assert grade_of_value(regions, D(90)) == 1  # ">= 1.5 x baseline": included
    assert spans(regions)[0] == (4, D(1200), None)


def test_a_band_whose_basis_the_result_lacks_is_left_out() -> None:
    no_range = Reference(low=None, high=None, baseline=None)

    assert grade_regions(ALT_BANDS, no_range) == ()
    assert spans(grade_regions(ANAEMIA_BANDS, no_range)) == [(3, None, D(8)), (2, D(8), D(10))]


def test_a_multiple_of_uln_threshold_uses_the_results_uln_else_the_packs_fallback() -> None:
    liver = Threshold("liver", "ALT > 3 x ULN", "uln", ">", D(3), None, False, fallback=D(25))

    assert threshold_value(liver, Reference(None, D(40), None)) == D(120)
    assert threshold_value(liver, Reference(None, None, None)) == D(75)


def test_a_ratio_to_baseline_threshold_needs_the_baseline_or_falls_back_to_the_uln() -> None:
    ratio = Threshold("crea", "x", "ratio", ">", D("1.5"), "mg/dL", True, without_baseline_uln=True)

    assert threshold_value(ratio, Reference(None, D("1.1"), D("0.8"))) == D("1.20")
    assert threshold_value(ratio, Reference(None, D("1.1"), None)) == D("1.65")


def test_superseded_results_are_marked_by_what_superseded_them() -> None:
    first, correction = lab(0, "50"), lab(0, "55", result_status=ResultStatus.CORRECTED)
    wrong, withdrawal = (
        lab(7, "900"),
        lab(7, "1", value=None, canonical_value=None, result_status=ResultStatus.DELETED),
    )
    preliminary, final = lab(14, "60", result_status=ResultStatus.PRELIMINARY), lab(14, "61")
    marks = standings(
        [first, correction, wrong, withdrawal, preliminary, final],
        [
            superseded(first, correction, "corrected"),
            superseded(wrong, withdrawal, "retracted"),
            superseded(preliminary, final, "updated"),
        ],
    )

    assert marks == {
        first.event_id: Standing.CORRECTED,
        correction.event_id: Standing.CURRENT,
        wrong.event_id: Standing.RETRACTED,
        withdrawal.event_id: Standing.RETRACTION,
        preliminary.event_id: Standing.UPDATED,
        final.event_id: Standing.CURRENT,
    }


def test_the_baseline_is_the_last_current_value_on_or_before_day0() -> None:
    screening, day0_first = lab(-7, "30"), lab(0, "35")
    day0_correction = lab(0, "33", result_status=ResultStatus.CORRECTED)
    later = lab(14, "200")
    facts = SubjectFacts(
        enrolled(date(2026, 6, 1)),
        results=(screening, day0_first, day0_correction, later),
        supersessions=(superseded(day0_first, day0_correction, "corrected"),),
    )

    chart = subject_chart(facts, lambda name: AnalyteLimits(name, grading=ALT_BANDS), SHANGHAI)

    (series,) = chart.series
    assert series.baseline is not None
    assert series.baseline.event_id == day0_correction.event_id
    assert [p.study_day for p in series.points] == [-7, 0, 0, 14]
    assert series.points[-1].grade == 2  # 200 U/L is 5 x ULN: above 3 x, not above 5 x
    assert [p.reference.baseline for p in series.points][-1] == D(33)


def test_study_days_count_from_day0_at_the_sites_time() -> None:
    evening_utc = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)  # 01:00 on 2 June in Shanghai

    assert study_day(evening_utc, date(2026, 6, 1), SHANGHAI) == (1, 1 + 1 / 24)
    assert study_day(evening_utc, date(2026, 6, 1), ZoneInfo("UTC"))[0] == 0


def test_values_are_drawn_in_the_canonical_unit_with_the_laboratory_range_converted() -> None:
    bilirubin = lab(
        3,
        "34.2",
        loinc_code="1975-2",
        unit="umol/L",
        canonical_value=D(2),
        canonical_unit="mg/dL",
        reference_low=D("3.42"),
        reference_high=D("17.1"),
    )
    facts = SubjectFacts(enrolled(date(2026, 6, 1)), results=(bilirubin,))

    chart = subject_chart(facts, AnalyteLimits, SHANGHAI)

    (series,) = chart.series
    assert (series.analyte, series.unit) == ("total bilirubin", "mg/dL")
    (point,) = series.points
    assert (point.value, point.reference.high, point.reference.low) == (D(2), D(1), D("0.2"))


def test_a_value_threshold_in_another_unit_is_converted_to_the_charts_unit() -> None:
    haemoglobin = lab(
        2,
        "9.5",
        loinc_code="718-7",
        unit="g/dL",
        canonical_value=D("9.5"),
        canonical_unit="g/dL",
        reference_low=D(12),
        reference_high=D(16),
    )
    in_g_per_l = Threshold("hb", "Hb <= 90 g/L", "value", "<=", D(90), "g/L", False)
    facts = SubjectFacts(enrolled(date(2026, 6, 1)), results=(haemoglobin,))

    chart = subject_chart(
        facts, lambda name: AnalyteLimits(name, (in_g_per_l,), ANAEMIA_BANDS), SHANGHAI
    )

    (point,) = chart.series[0].points
    assert point.thresholds == (D(9),)
    assert point.grade == 2


def test_a_censored_value_is_graded_as_far_as_it_is_certain() -> None:
    neutropenia = Grading(
        "CTCAE v5.0 Neutrophil count decreased",
        bands=(Band(4, "<", D("0.5"), "value"), Band(3, "<", D(1), "value")),
    )
    reference = Reference(low=D("1.8"), high=D("7.7"), baseline=None)

    assert grade_of(neutropenia, reference, D("0.5"), "<") == 4
    assert grade_of(neutropenia, reference, D("0.5"), None) == 3
    assert grade_of(neutropenia, reference, D("0.8"), ">") is None
