"""Every ORU^R01 and FHIR R4 lab sample that ships in a well-known HL7 or FHIR package,
replayed through real sockets with the outcome a conformant receiver gives (issue 14).

The samples and where they come from are in ``tests/data/packages/`` (README.md there);
``expected.yaml`` beside them says, per sample, the ACK or HTTP answer and how many
results each subject gets. The samples name hospital patients, not this study's
subjects, so a replay names them the way a laboratory in the trial would:

- HL7: MSH-3/MSH-4 become the study laboratory's identity (LIS / PKUPH-LAB), and every
  PID-3 gains a repetition ``<new subject>^^^NCT05262686^SS`` after the sample's own
  identifiers (which Vigil must never read). Nothing else is touched: segment ends,
  encoding characters and every other field go as the package ships them.
- FHIR: an Observation's ``Patient/<id>`` subject keeps its reference and gains the
  study's identifier (``urn:vigil:study:NCT05262686``); a contained Patient (``#id``)
  gains it as an identifier. Other subjects (a Group, none) are left as they are. A
  ``collection`` Bundle is sent as the ``batch`` an EHR would post (each entry a POST of
  its resource type); other Bundles as shipped.

Each sample's subjects are new, so the counts read from the audit log are its own. Every
answer is also checked for what it must never show (the sample's patient, an internal
text). The pure parts (the rewriting and the comparisons) are in
``tests/support/package_samples.py``, with unit tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from shared.yaml_files import load_yaml
from tests.support.mllp import ack_code, exchange_bytes
from tests.support.package_samples import (
    as_study_laboratory,
    as_study_sender,
    check_errors,
    check_refusal,
    errors_of,
    leaks,
    misses,
    patient_values,
    pid_values,
    problems,
    status_fits,
    taken_per_subject,
)
from tests.support.services import RunningServices

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "packages"
EXPECTED: dict[str, dict[str, dict[str, Any]]] = load_yaml((SAMPLES / "expected.yaml").read_text())
FHIR = {"content-type": "application/fhir+json"}
REPORTED = "org.vigil.lab_result.reported.v1"
UNREADABLE = "org.vigil.lab_result.unreadable.v1"
LOCATION = re.compile(r"Observation/[A-Za-z0-9\-.]{1,64}/_history/1")  # issue 14, item 5


def samples(kind: str) -> list[str]:
    """The samples of ``kind``, by name."""
    return sorted(EXPECTED[kind])


# --- what the audit log holds ---------------------------------------------------------


async def counts(db: asyncpg.Connection, subjects: dict[str, str]) -> dict[str, dict[str, int]]:
    rows = await db.fetch(
        """SELECT subject_id, type, count(*) AS n FROM events
           WHERE subject_id = ANY($1) AND type = ANY($2) GROUP BY subject_id, type""",
        list(subjects.values()),
        [REPORTED, UNREADABLE],
    )
    by_id = {(row["subject_id"], row["type"]): row["n"] for row in rows}
    return {
        alias: {
            "reported": by_id.get((subject, REPORTED), 0),
            "unreadable": by_id.get((subject, UNREADABLE), 0),
        }
        for alias, subject in subjects.items()
    }


async def results_as_expected(
    db: asyncpg.Connection, subjects: dict[str, str], wanted: dict[str, dict[str, int]]
) -> None:
    """Wait (bounded) until each subject ``wanted`` names has its results; fail naming
    the difference. Every subject ``wanted`` names must have been named by the sample."""
    assert set(wanted) <= set(subjects), f"subjects {sorted(wanted)} not in the sample"
    deadline = time.monotonic() + 45
    while True:
        found = await counts(db, subjects)
        wrong = {a: m for a, w in wanted.items() if (m := misses(found[a], w))}
        if not wrong:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"results per subject: {wrong}")
        await asyncio.sleep(0.5)


# --- the replay -----------------------------------------------------------------------


@pytest.mark.parametrize("name", samples("hl7"))
async def test_an_oru_sample_from_a_package_gets_the_answer_and_results_a_conformant_receiver_gives(
    name: str, services: RunningServices, db: asyncpg.Connection
) -> None:
    expected = EXPECTED["hl7"][name]
    subjects: dict[str, str] = {}
    sample = (SAMPLES / name).read_bytes()
    message = as_study_laboratory(sample, subjects)

    ack = await exchange_bytes(services.mllp_port, message)

    found = errors_of(ack)
    texts = [str(segment[8]) for segment in ack.segments("ERR")] if found else []
    assert ack_code(ack) == expected["ack"], f"ACK {ack_code(ack)} with ERR {found}: {texts}"
    check_errors(found, expected)
    said = [str(ack.segment("MSA")), *(str(s) for s in (ack.segments("ERR") if found else []))]
    assert leaks("\r".join(said), pid_values(sample)) == [], "the ACK shows what it must not"
    await results_as_expected(db, subjects, expected["subjects"])


@pytest.mark.parametrize("name", samples("fhir"))
async def test_a_fhir_lab_example_from_a_package_gets_the_answer_and_results_a_conformant_receiver_gives(  # noqa: E501
    name: str, services: RunningServices, db: asyncpg.Connection
) -> None:
    expected = EXPECTED["fhir"][name]
    subjects: dict[str, str] = {}
    sample = json.loads((SAMPLES / "hl7.fhir.r4.examples" / name).read_text())
    body = as_study_sender(sample, subjects)
    path = "/fhir/r4" if body["resourceType"] == "Bundle" else "/fhir/r4/Observation"

    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=60) as client:
        response = await client.post(
            path, content=json.dumps(body), headers={**FHIR, **services.headers}
        )

    assert status_fits(str(response.status_code), expected["status"]), problems(response.json())
    assert leaks(response.text, patient_values(sample)) == [], "the answer shows what it must not"
    if response.status_code == 422 and "refusable_at" in expected:
        check_refusal(response.json(), expected)
        return  # refused precisely: nothing of it is a result
    if response.status_code == 200 and body["resourceType"] != "Bundle":
        assert any("not used" in p for p in problems(response.json())), response.text
        return  # received and kept, not used: nothing of it is a result
    wanted = expected["subjects"]
    if "entries" in expected:
        answers = [entry.get("response", {}) for entry in response.json()["entry"]]
        assert len(answers) == len(expected["entries"])
        wrong = [
            (index, answer.get("status"), problems(answer.get("outcome", {})))
            for index, (answer, want) in enumerate(zip(answers, expected["entries"], strict=True))
            if not status_fits(answer.get("status", ""), want)
        ]
        assert wrong == [], f"entries not answered as expected (index, status, issues): {wrong}"
        for answer, entry, want in zip(answers, body["entry"], expected["entries"], strict=True):
            if answer["status"][:3] == "422" and isinstance(want, list):
                check_refusal(answer.get("outcome", {}), expected)
            elif (
                entry["resource"]["resourceType"] == "Observation" and answer["status"][:3] == "201"
            ):
                assert LOCATION.fullmatch(answer.get("location", "")), answer
        observations = [
            answer for answer, entry in zip(answers, body["entry"], strict=True)
            if entry["resource"]["resourceType"] == "Observation"
        ]  # fmt: skip
        if any(answer["status"][:3] != "201" for answer in observations):
            wanted = taken_per_subject(body, answers, subjects)
    await results_as_expected(db, subjects, wanted)
