"""The eDISH plot's data (pure): peaks as multiples of ULN, quadrants, Hy's law cases."""

from __future__ import annotations

from decimal import Decimal

from services.notifier.domain.edish import (
    HYPERBILIRUBINEMIA,
    NORMAL,
    POTENTIAL_HYS_LAW,
    TEMPLES_COROLLARY,
    EdishPoint,
    NotPlottable,
    edish,
    edish_point,
    quadrant,
)
from services.notifier.domain.protocol_limits import FallbackUln
from shared.events import ResultStatus
from tests.support.lab_results import lab, superseded

D = Decimal


def test_the_quadrants_are_split_strictly_above_3_and_2_times_uln() -> None:
    assert quadrant(D(3), D(2)) == NORMAL
    assert quadrant(D("3.01"), D(2)) == TEMPLES_COROLLARY
    assert quadrant(D(3), D("2.01")) == HYPERBILIRUBINEMIA
    assert quadrant(D(4), D(3)) == POTENTIAL_HYS_LAW


def test_the_higher_multiple_of_alt_or_ast_is_the_peak_and_says_which() -> None:
    results = [
        lab(1, "100", loinc_code="1742-6", reference_high=D(50)),  # ALT 2 x ULN
        lab(2, "105", loinc_code="1920-8", unit="U/L", reference_high=D(35)),  # AST 3 x ULN
        lab(
            3,
            "3.6",
            loinc_code="1975-2",
            unit="mg/dL",
            canonical_unit="mg/dL",
            reference_high=D("1.2"),
        ),
    ]

    point = edish_point("S-1", "S1", results, [], hys_law_signal=False)

    assert isinstance(point, EdishPoint)
    assert (point.transaminase.analyte, point.transaminase.multiple) == ("AST", D(3))
    assert point.bilirubin.multiple == D(3)
    assert point.quadrant == HYPERBILIRUBINEMIA
    assert point.days_apart == 1
    assert not point.highlighted


def test_a_retracted_or_corrected_peak_does_not_count() -> None:
    wrong = lab(1, "400", loinc_code="1742-6", reference_high=D(40))
    withdrawal = lab(1, "0", loinc_code="1742-6", result_status=ResultStatus.DELETED)
    kept = lab(2, "80", loinc_code="1742-6", reference_high=D(40))
    bilirubin = lab(
        2, "3", loinc_code="1975-2", unit="mg/dL", canonical_unit="mg/dL", reference_high=D(1)
    )

    point = edish_point(
        "S-1",
        "S1",
        [wrong, withdrawal, kept, bilirubin],
        [superseded(wrong, withdrawal, "retracted")],
        hys_law_signal=False,
    )

    assert isinstance(point, EdishPoint)
    assert point.transaminase.multiple == D(2)
    assert point.quadrant == HYPERBILIRUBINEMIA


def test_a_subject_without_the_laboratorys_uln_is_listed_with_the_reason() -> None:
    no_range = lab(1, "200", loinc_code="1742-6", reference_high=None)
    bilirubin = lab(
        1, "3", loinc_code="1975-2", unit="mg/dL", canonical_unit="mg/dL", reference_high=D(1)
    )

    placed = edish_point("S-2", None, [no_range, bilirubin], [], hys_law_signal=False)

    assert placed == NotPlottable(
        "S-2", None, "ALT/AST: 1 result(s) without a ULN (the laboratory's or the pack's)"
    )


def test_a_hys_law_signal_highlights_the_subject_wherever_its_peaks_fall() -> None:
    normal = [
        lab(1, "50", loinc_code="1742-6", reference_high=D(40)),
        lab(1, "1", loinc_code="1975-2", unit="mg/dL", canonical_unit="mg/dL", reference_high=D(1)),
    ]
    hys = [
        lab(1, "200", loinc_code="1742-6", reference_high=D(40)),
        lab(1, "3", loinc_code="1975-2", unit="mg/dL", canonical_unit="mg/dL", reference_high=D(1)),
    ]

    points, left_out = edish(
        {
            "A": ("S1", normal, [], False),
            "B": ("S1", normal, [], True),
            "C": ("S2", hys, [], False),
            "D": ("S2", [], [], False),
        }
    )

    assert [(p.subject_id, p.highlighted) for p in points] == [
        ("B", True),
        ("C", True),
        ("A", False),
    ]
    assert points[1].quadrant == POTENTIAL_HYS_LAW
    assert left_out == [NotPlottable("D", "S2", "no ALT or AST result; no total bilirubin result")]


ALT_FALLBACK = {"ALT": FallbackUln("U/L", female=D(25), male=D(33))}


def test_a_result_without_a_range_is_divided_by_the_packs_fallback_uln_for_the_sex() -> None:
    with_range = lab(1, "50", loinc_code="1742-6", reference_high=D(40))  # 1.25 x ULN
    no_range = lab(14, "900", loinc_code="1742-6", reference_high=None)
    bilirubin = lab(14, "0.6", loinc_code="1975-2", unit="mg/dL", reference_high=D("1.2"))
    results = [with_range, no_range, bilirubin]

    woman = edish_point("S-1", "S1", results, [], False, fallbacks=ALT_FALLBACK, sex="F")
    man = edish_point("S-1", "S1", results, [], False, fallbacks=ALT_FALLBACK, sex="M")
    unknown = edish_point("S-1", "S1", results, [], False, fallbacks=ALT_FALLBACK, sex=None)

    assert isinstance(woman, EdishPoint)
    assert isinstance(man, EdishPoint)
    assert isinstance(unknown, EdishPoint)
    assert (woman.transaminase.multiple, woman.transaminase.fallback) == (D(36), True)
    assert woman.transaminase.event_id == no_range.event_id
    assert woman.quadrant == TEMPLES_COROLLARY
    assert man.transaminase.multiple == D(900) / D(33)
    assert unknown.transaminase.multiple == D(36)  # the lower (female) limit


def test_a_result_with_no_uln_at_all_is_counted_on_the_placed_subjects_peak() -> None:
    with_range = lab(1, "50", loinc_code="1742-6", reference_high=D(40))
    no_range = lab(14, "900", loinc_code="1742-6", reference_high=None)
    bilirubin = lab(14, "0.6", loinc_code="1975-2", unit="mg/dL", reference_high=D("1.2"))

    point = edish_point("S-1", "S1", [with_range, no_range, bilirubin], [], False)

    assert isinstance(point, EdishPoint)
    assert (point.transaminase.multiple, point.transaminase.set_aside) == (D("1.25"), 1)
    assert not point.transaminase.fallback


def test_peaks_in_the_quadrant_months_apart_are_not_highlighted_without_a_signal() -> None:
    results = [
        lab(14, "200", loinc_code="1742-6", reference_high=D(40)),  # 5 x ULN, day 14
        lab(14, "0.6", loinc_code="1975-2", unit="mg/dL", reference_high=D("1.2")),
        lab(213, "3.6", loinc_code="1975-2", unit="mg/dL", reference_high=D("1.2")),  # 3 x
    ]

    apart = edish_point("S-1", "S1", results, [], False, window_days=30)
    signalled = edish_point("S-1", "S1", results, [], True, window_days=30)
    close = edish_point("S-1", "S1", results, [], False, window_days=200)

    assert isinstance(apart, EdishPoint)
    assert isinstance(signalled, EdishPoint)
    assert isinstance(close, EdishPoint)
    assert apart.quadrant == POTENTIAL_HYS_LAW  # the placement stays as eDISH draws it
    assert (apart.concurrent, apart.highlighted) == (False, False)
    assert signalled.highlighted
    assert close.highlighted


def test_a_subject_set_aside_with_a_hys_law_signal_is_flagged_and_listed_first() -> None:
    no_range = [lab(1, "900", loinc_code="1742-6", reference_high=None)]

    _, left_out = edish({"A": ("S1", [], [], False), "B": ("S1", no_range, [], True)})

    assert [(s.subject_id, s.hys_law_signal) for s in left_out] == [("B", True), ("A", False)]
