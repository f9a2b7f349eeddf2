"""A service process starts without what only some of its requests need: matplotlib (the
workspace's charts) costs most of a second of CPU at every start, and the test suite alone
starts the notifier dozens of times. It is imported with the first chart instead."""

from __future__ import annotations

import subprocess
import sys

import pytest
from matplotlib.figure import Figure

from tests.support.services import REPO

HEAVY_ON_DEMAND = ("matplotlib", "numpy")


@pytest.mark.parametrize(
    "module",
    ["services.notifier.main", "services.safety_rules.main", "services.ingest.main", "vigil.cli"],
)
def test_starting_a_service_does_not_load_the_chart_library(module: str) -> None:
    probe = (
        f"import sys, {module}; print(','.join(m for m in {HEAVY_ON_DEMAND!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_first_chart_loads_it_and_draws() -> None:
    from services.notifier.adapters.svg_documents import render_svg

    def draw(figure: Figure) -> None:
        figure.subplots().plot([0, 1], [1, 0])

    svg = render_svg(draw, size=(2, 1), label="a line", prefix="t")
    assert svg.startswith("<svg")
    assert 'aria-label="a line"' in svg
    assert "matplotlib" in sys.modules
