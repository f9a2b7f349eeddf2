"""``vigil rules explain`` and ``vigil rules simulate`` against a real audit log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import yaml

from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.facts import handle_batch
from shared.events import Envelope, SafetySignalRaised, wrap
from shared.yaml_files import load_yaml
from tests.support.components import as_service_role
from tests.support.rules_harness import fact
from tests.support.services import REPO

pytestmark = pytest.mark.integration
PACKS = load_rule_packs(REPO / "studies")
PACK_FILE = REPO / "studies" / "NCT05262686" / "rules.yaml"


def vigil(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", "rules", *args],
        env={
            "VIGIL_DATABASE_URL": as_service_role(dsn),
            "VIGIL_STUDY_DIR": str(REPO / "studies"),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def store(dsn: str, subject: str, *batches: list[dict[str, object]]) -> list[Envelope]:
    """Run batches of case-table facts through the handler; the signal events raised."""
    raised: list[Envelope] = []
    connection = await asyncpg.connect(dsn)
    try:
        for batch in batches:
            envelopes = [wrap(fact(spec, subject), source="/test/site") for spec in batch]
            async with connection.transaction():
                outcome = await handle_batch(envelopes, PostgresRulesUnitOfWork(connection), PACKS)
            raised += outcome.signals
    finally:
        await connection.close()
    return raised


async def test_explain_tells_the_computation_and_what_followed(fresh_dsn: str) -> None:
    raised = await store(
        fresh_dsn,
        "X1",
        [{"enrol": {"sex": "M", "birth_date": "1956-01-10", "weight_kg": 50}}],
        [{"lab": {"loinc": "2160-0", "value": 1.75, "unit": "mg/dL", "at": 2}}],
        [{"lab": {"loinc": "2160-0", "value": 3.5, "unit": "mg/dL", "at": 9}}],
        [{"lab": {"loinc": "2160-0", "value": 0.9, "unit": "mg/dL", "at": 16}}],
    )
    signal = next(e for e in raised if isinstance(e.payload(), SafetySignalRaised))
    assert [e.type.split(".")[-2] for e in raised] == ["raised", "escalated", "resolved"]

    done = await asyncio.to_thread(vigil, fresh_dsn, "explain", str(signal.id))

    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "CrCl = 27.8 mL/min" in text
    assert "CrCl: 27.8 mL/min" in text
    assert "(140 - 70) x 50 / (72 x 1.75)" in text
    assert "weight_kg: 50 (enrolment record" in text
    assert "CTCAE v5.0 Chronic kidney disease (creatinine clearance): grade 3" in text
    assert "escalated from grade 3 to 4" in text
    assert "resolved:" in text
    assert "enrolment at site PKUPH-01" in text  # the weight's source is an input


async def test_simulate_shows_what_a_candidate_pack_changes(fresh_dsn: str, tmp_path: Path) -> None:
    await store(
        fresh_dsn,
        "S1",
        [{"enrol": {}}],
        [{"lab": {"loinc": "718-7", "value": 8.5, "unit": "g/dL", "at": 1}}],
        [{"lab": {"loinc": "718-7", "value": 11.0, "unit": "g/dL", "at": 5}}],
        [{"lab": {"loinc": "718-7", "value": 9.6, "unit": "g/dL", "at": 9}}],
        [{"lab": {"loinc": "751-8", "value": 1.3, "unit": "10*9/L", "at": 9}}],
    )
    raw = load_yaml(PACK_FILE.read_text())
    raw["version"] = "2027.01.0-candidate"
    hb_rule = next(r for r in raw["rules"] if r["id"] == "anaemia-hb-le-9")
    hb_rule["threshold"] = 10  # an amendment: alert at Hb <= 10
    neutro = next(r for r in raw["rules"] if r["id"] == "neutropenia-anc-lt-1-5")
    neutro["threshold"] = 1.0  # and at ANC < 1.0 only
    candidate = tmp_path / "rules.yaml"
    candidate.write_text(yaml.safe_dump(raw))

    done = await asyncio.to_thread(
        vigil, fresh_dsn, "simulate", str(candidate), "--study", "NCT05262686"
    )

    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "current pack 2026.12.1 -> candidate 2027.01.0-candidate" in text
    assert "would appear: 1, would disappear: 1, graded differently: 0, unchanged: 1" in text
    appear = [line for line in text.splitlines() if line.startswith("  + ")]
    disappear = [line for line in text.splitlines() if line.startswith("  - ")]
    assert len(appear) == 1
    assert "anaemia-hb-le-9" in appear[0]
    assert "9.6 g/dL" in appear[0]
    assert len(disappear) == 1
    assert "neutropenia-anc-lt-1-5" in disappear[0]
    # nothing was written: the log holds what it held
    connection = await asyncpg.connect(fresh_dsn)
    try:
        signals = await connection.fetchval(
            "SELECT count(*) FROM events WHERE type LIKE 'org.vigil.safety_signal.%'"
        )
    finally:
        await connection.close()
    assert signals == 3  # Hb raised and resolved, neutropenia raised


async def test_rules_check_prints_the_table_and_the_neutrophil_note() -> None:
    done = await asyncio.to_thread(vigil, "postgresql://unused/", "check", str(PACK_FILE))
    assert done.returncode == 0, done.stderr
    rules = len(load_rule_packs(REPO / "studies")["NCT05262686"].rules)
    assert f"{rules} rule(s)" in done.stdout  # every rule of the pack, counted by the loader
    row = next(line for line in done.stdout.splitlines() if line.startswith("sae-any"))
    assert "adverse_event" in row
    assert "24 h" in row
    assert "safety-desk" in row
    assert "note on neutropenia-anc-lt-1-5" in done.stdout
    assert "confirm it against the protocol" in done.stdout
