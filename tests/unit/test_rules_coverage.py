"""``vigil rules coverage``: per analyte the codes and units the pack accepts, per rule the
clinical cases that exercise it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.coverage import case_inputs, cases_of, report
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]


def coverage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", "rules", "coverage", *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "VIGIL_STUDY_DIR": str(REPO / "studies")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_prints_codes_units_rules_and_cases() -> None:
    done = coverage("--study", "NCT05262686")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    creatinine = out[out.index("\n  creatinine\n") :]
    assert "14682-9  Creatinine [Moles/volume] in Serum or Plasma" in creatinine
    assert "units: mg/dL (canonical); converts umol/L" in creatinine
    assert "rules: renal-crcl-le-30, creatinine-gt-1-5x-baseline" in creatinine
    assert "also spelled G/L, Gpt/L, /nL" in out  # counts
    anaemia = out[out.index("  anaemia-hb-le-9: ") :]
    assert "- Hb 7.0 gm/dL is 7.0 g/dL (grade 3 anaemia)" in anaemia.split("\n  neutropenia")[0]


def test_a_rule_no_case_exercises_is_listed(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    hb_low = {"name": "Hb low", "facts": [{"lab": {"loinc": "59260-0", "value": 4}}]}
    sae = {"name": "SAE", "facts": [], "expect": ["raised sae-any"]}
    cases.write_text(yaml.safe_dump([{**hb_low, "expect": []}, sae]))
    done = coverage("--study", "NCT05262686", "--cases", str(cases))
    assert done.returncode == 0, done.stderr
    assert "  anaemia-hb-le-9: 1 case(s)\n    - Hb low\n" in done.stdout
    assert "  sae-any: 1 case(s)\n    - SAE\n" in done.stdout
    uncovered = done.stdout.split("Rules no case exercises: ")[1]
    assert "hys-law" in uncovered
    assert "anaemia-hb-le-9" not in uncovered
    assert "sae-any" not in uncovered


def test_an_unknown_study_is_refused() -> None:
    done = coverage("--study", "NCT00000000")
    assert done.returncode == 1
    assert "no pack for NCT00000000" in done.stderr


def test_a_case_feeds_the_inputs_of_its_facts() -> None:
    case = {
        "facts": [
            {"lab": {"loinc": "14682-9", "value": 80}},
            [{"ae": {"id": "AE1"}}, {"med": {"id": "M1"}}],
        ]
    }
    assert case_inputs(case) == {"14682-9", "adverse-event", "medication"}
    found = cases_of(PACK, [{"name": "creatinine in umol/L", **case, "expect": []}])
    assert found["renal-crcl-le-30"] == ["creatinine in umol/L"]
    assert found["sae-any"] == ["creatinine in umol/L"]  # any adverse event feeds it
    assert found["anaemia-hb-le-9"] == []


def test_without_a_case_file_the_report_says_so() -> None:
    text = report(PACK, None)
    assert "(no case file read: give --cases PATH)" in text
    assert "Rules no case exercises" not in text
