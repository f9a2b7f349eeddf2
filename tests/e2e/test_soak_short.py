"""The short soak: the whole stack on real components under a mixed stream with poison and a
few faults of each kind, checked by the same checker as ``make soak`` (a few thousand
events, under three minutes), so that the soak itself cannot rot unnoticed."""

from __future__ import annotations

import shutil

import pytest

from soak.config import short
from soak.run import run

pytestmark = pytest.mark.integration


async def test_a_short_soak_under_faults_and_poison_loses_nothing_and_alerts_once() -> None:
    config = short()

    outcome = await run(config)

    figures = outcome.figures
    assert figures.failures() == [], outcome.report
    # and the run did what it says: the stream, the faults, the poison, the observers
    assert figures.facts_acknowledged >= config.events
    assert figures.poison_sent >= len(config.poison_kinds)
    assert figures.episodes_expected >= 8
    assert figures.emails_received >= figures.episodes_expected
    assert figures.records_tapped > config.events
    assert figures.positions_sampled > 0
    assert "Faults: 7 " in outcome.report
    shutil.rmtree(outcome.folder, ignore_errors=True)  # kept for a look when it fails
