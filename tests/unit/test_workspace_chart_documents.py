"""The workspace's charts as documents: matplotlib's SVG made CSP-safe and deterministic,
and the rule pack read for what the charts draw."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from matplotlib.figure import Figure

from services.notifier.adapters.rule_pack_limits import RulePackLimits, limits_from_data
from services.notifier.adapters.svg_documents import render_svg
from tests.support.services import REPO


def _draw(figure: Figure) -> None:
    ax = figure.add_subplot()
    ax.plot([0, 1, 2], [3, 1, 2], linestyle="--", label="a line")
    ax.fill_between([0, 2], [0, 0], [1, 1], alpha=0.3)
    ax.set_title("Haemoglobin")
    figure.legend()


def test_the_svg_carries_no_style_the_content_security_policy_would_refuse() -> None:
    svg = render_svg(_draw, size=(4, 3), label='Hb "chart"', prefix="hb")

    assert svg.startswith("<svg")
    assert "style=" not in svg
    assert "<style" not in svg
    assert "<metadata" not in svg
    assert 'aria-label="Hb &quot;chart&quot;"' in svg
    assert re.search(r'stroke-dasharray="[\d.,]+"', svg)
    assert "<text" in svg
    assert "Haemoglobin" in svg


def test_every_id_of_a_figure_is_its_own_so_several_fit_on_one_page() -> None:
    svg = render_svg(_draw, size=(4, 3), label="x", prefix="chart-hb")

    ids = re.findall(r'\sid="([^"]+)"', svg)
    references = re.findall(r'url\(#([^)]+)\)|xlink:href="#([^"]+)"', svg)
    assert ids
    assert all(i.startswith("chart-hb-") for i in ids)
    assert references
    assert all((a or b) in ids for a, b in references)


def test_one_input_gives_one_svg_byte_for_byte() -> None:
    assert render_svg(_draw, size=(4, 3), label="x", prefix="x") == render_svg(
        _draw, size=(4, 3), label="x", prefix="x"
    )


def test_the_shipped_pack_gives_each_lab_analyte_its_thresholds_and_bands() -> None:
    pack = RulePackLimits(REPO / "studies").of("NCT05262686")

    alt = pack.of("ALT")
    assert next((t.rule_id, t.words, t.fallback) for t in alt.thresholds) == (
        "liver-alt-ast-gt-3-uln",
        "> 3 x ULN",
        Decimal(25),
    )
    assert alt.grading is not None
    assert alt.grading.abnormal_baseline_bands
    neutrophils = pack.of("neutrophils").thresholds[0]
    assert (neutrophils.amount, neutrophils.unit) == (Decimal("1.5"), "10*9/L")  # a parameter
    assert "hys-law" in pack.hys_law_rules
    assert pack.hys_law_window_days == 30


def test_the_reader_leaves_out_what_it_cannot_read_and_keeps_the_rest() -> None:
    pack = limits_from_data(
        {
            "version": "1",
            "rules": [
                {
                    "id": "odd",
                    "kind": "absolute_threshold",
                    "analytes": ["platelets"],
                    "operator": "~",
                    "threshold": 75,
                },
                {
                    "id": "plt",
                    "kind": "absolute_threshold",
                    "analytes": ["platelets"],
                    "operator": "<",
                    "threshold": 75,
                    "unit": "10*9/L",
                    "new_field": True,
                    "grading": {
                        "term": "Platelets",
                        "bands": [{"grade": 9.5}, {"grade": 3, "operator": "<", "bound": 50}],
                    },
                },
                "not a rule",
            ],
        }
    )

    platelets = pack.of("platelets")
    assert [t.rule_id for t in platelets.thresholds] == ["plt"]
    assert platelets.grading is not None
    assert len(platelets.grading.bands) == 1
    assert RulePackLimits(Path("/nonexistent")).of("X").by_analyte == {}


def test_the_shipped_pack_gives_edish_the_hys_law_rules_fallback_ulns() -> None:
    pack = RulePackLimits(REPO / "studies").of("NCT05262686")

    alt = pack.hys_law_fallbacks["ALT"]
    bilirubin = pack.hys_law_fallbacks["total bilirubin"]
    assert (alt.unit, alt.for_sex("F"), alt.for_sex("M"), alt.for_sex(None)) == (
        "U/L",
        Decimal(25),
        Decimal(33),
        Decimal(25),
    )
    assert (bilirubin.unit, bilirubin.for_sex("M")) == ("mg/dL", Decimal("1.2"))
    assert pack.hys_law_window_days == 30
