"""OWASP API1:2023, broken object-level authorization: a source writes only its own
studies and sites, and only the source that sent a subject or a record (or a key allowed
to amend others) may move or correct it. Every refusal is kept and counted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.test_haemoglobin_alert import enrolment, haemoglobin
from tests.support.api_keys import IssuedKey, issue_api_key
from tests.support.mail import MailCatcher
from tests.support.mllp import exchange
from tests.support.scrape import metric_value
from tests.support.services import PrivateIngest, RunningServices, private_ingest
from tests.support.studies import LOOPBACK, copy_studies
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"
FHIR = {"content-type": "application/fhir+json"}
REFUSED = "vigil_ingest_rejected_total"
SYSTEM = "urn:vigil:study:NCT05262686"  # the study's subject identifier system


def subject_id() -> str:
    return f"OA-{uuid.uuid4().hex[:10]}"


async def key(postgres_dsn: str, **scope: Any) -> IssuedKey:
    """A key of a source of this test's own (unique name)."""
    source = f"{scope.pop('source', 'src')}-{uuid.uuid4().hex[:8]}"
    return await issue_api_key(postgres_dsn, source=source, **scope)


async def post(
    services: RunningServices, sender: IssuedKey, path: str, body: Any, *, fhir: bool = False
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        if fhir:
            return await client.post(
                path, content=json.dumps(body), headers={**FHIR, **sender.headers}
            )
        return await client.post(path, json=body, headers=sender.headers)


async def accepted(
    services: RunningServices, sender: IssuedKey, path: str, body: Any, db: asyncpg.Connection
) -> list[str]:
    """Post, expect 202, and wait until the events are in the audit log."""
    response = await post(services, sender, path, body)
    assert response.status_code == 202, response.text
    ids = [uuid.UUID(i) for i in response.json()["event_ids"]]
    query = "SELECT count(*) = $2 FROM events WHERE event_id = ANY($1)"
    await eventually(
        lambda: db.fetchval(query, ids, len(ids)), timeout=60, what="the events in the audit log"
    )
    return [str(i) for i in ids]


async def refusals_counted(services: RunningServices, fmt: str, reason: str) -> float:
    return await metric_value(services.ingest_url, REFUSED, format=fmt, reason=reason)


async def kept_refusal(
    db: asyncpg.Connection, sender: IssuedKey, since: datetime
) -> asyncpg.Record:
    """The rejected receipt of ``sender``'s refused request, with who sent it."""
    row = await db.fetchrow(
        """SELECT * FROM received_messages
           WHERE principal_source = $1 AND outcome = 'rejected' AND received_at >= $2
           ORDER BY received_at DESC LIMIT 1""",
        sender.source,
        since,
    )
    assert row is not None, "the refused request was not kept"
    assert row["credential"] == f"api-key:{sender.key_id}"
    return row


async def now(db: asyncpg.Connection) -> datetime:
    moment: datetime = await db.fetchval("SELECT clock_timestamp()")
    return moment


async def subject_events(db: asyncpg.Connection, subject: str, kind: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM events WHERE subject_id = $1 AND type LIKE $2", subject, f"%{kind}%"
    )
    return count


async def test_a_key_for_study_a_writing_to_study_b_gets_403_and_nothing_is_accepted(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    sender = await key(postgres_dsn)
    subject = subject_id()
    before, since = await refusals_counted(services, "http-json", "forbidden-study"), await now(db)
    body = [haemoglobin(subject, "12.5"), haemoglobin(subject, "8.0", study_id="NCT00000001")]

    response = await post(services, sender, "/v1/lab-results", body)

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "forbidden-study"
    assert [(e["field"], e["type"]) for e in problem["errors"]] == [
        ("1.study_id", "forbidden-study")
    ]
    assert "NCT00000001" not in response.text  # the field is named, never the value
    assert await subject_events(db, subject, "lab_result") == 0  # not even the allowed item
    row = await kept_refusal(db, sender, since)
    assert json.loads(bytes(row["raw"])) == body
    assert "forbidden-study" in row["reason"]
    assert await refusals_counted(services, "http-json", "forbidden-study") == before + 1


async def test_a_fhir_transaction_for_another_study_gets_403_as_an_operation_outcome(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    other_study = await key(postgres_dsn, studies=("NCT00000001",))
    subject, since = subject_id(), await now(db)
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": subject}],
        "birthDate": "1971-03-04",
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient}]}

    response = await post(services, other_study, "/fhir/r4", bundle, fhir=True)

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/fhir+json"
    (issue,) = response.json()["issue"]
    assert issue["code"] == "forbidden"
    assert issue["expression"] == ["Bundle.entry[0].resource.Patient"]
    assert await subject_events(db, subject, "enrolled") == 0
    assert "forbidden-study" in (await kept_refusal(db, other_study, since))["reason"]


async def test_a_site_scoped_key_cannot_enrol_at_another_site(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    site_01 = await key(postgres_dsn, sites=("PKUPH-01",))
    subject, since = subject_id(), await now(db)
    before = await refusals_counted(services, "http-json", "forbidden-site")

    response = await post(services, site_01, "/v1/subjects", enrolment(subject, "PKUPH-02"))

    assert response.status_code == 403
    assert [e["field"] for e in response.json()["errors"]] == ["site_id"]
    await kept_refusal(db, site_01, since)
    assert await refusals_counted(services, "http-json", "forbidden-site") == before + 1
    assert await db.fetchval(
        "SELECT count(*) = 0 FROM ingest_subject_owners WHERE subject_id = $1", subject
    )


async def test_a_site_scoped_key_cannot_write_for_a_subject_enrolled_at_another_site(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    edc, site_01 = (
        await key(postgres_dsn, source="edc"),
        await key(postgres_dsn, sites=("PKUPH-01",)),
    )
    elsewhere, unknown = subject_id(), subject_id()
    await accepted(services, edc, "/v1/subjects", enrolment(elsewhere, "PKUPH-02"), db)
    since = await now(db)

    refused = await post(services, site_01, "/v1/lab-results", haemoglobin(elsewhere, "8.0"))
    not_yet_enrolled = await post(services, site_01, "/v1/lab-results", haemoglobin(unknown, "13"))

    assert refused.status_code == 403
    assert [(e["field"], e["type"]) for e in refused.json()["errors"]] == [
        ("subject_id", "forbidden-site")
    ]
    assert not_yet_enrolled.status_code == 202  # results for unknown subjects are a feature
    await kept_refusal(db, site_01, since)


async def test_moving_a_subject_enrolled_by_another_source_gets_403_and_it_stays(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    owner, other = await key(postgres_dsn, source="edc"), await key(postgres_dsn, source="lab")
    subject = subject_id()
    await accepted(services, owner, "/v1/subjects", enrolment(subject, "PKUPH-01"), db)
    since = await now(db)
    before = await refusals_counted(services, "http-json", "forbidden-object")

    moved = await post(services, other, "/v1/subjects", enrolment(subject, "PKUPH-02"))

    assert moved.status_code == 403
    assert [(e["field"], e["type"]) for e in moved.json()["errors"]] == [
        ("subject_id", "forbidden-object")
    ]
    await kept_refusal(db, other, since)
    assert await refusals_counted(services, "http-json", "forbidden-object") == before + 1
    assert (
        await db.fetchval(
            "SELECT site_id FROM ingest_subject_owners WHERE subject_id = $1", subject
        )
        == "PKUPH-01"
    )
    # the owner may move its own subject
    await accepted(services, owner, "/v1/subjects", enrolment(subject, "PKUPH-02"), db)
    assert (
        await db.fetchval(
            "SELECT site_id FROM ingest_subject_owners WHERE subject_id = $1", subject
        )
        == "PKUPH-02"
    )


async def test_another_sources_correction_or_cancellation_gets_403_and_the_signal_stands(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    lab, intruder = await key(postgres_dsn, source="lab"), await key(postgres_dsn, source="other")
    subject = subject_id()
    await accepted(services, lab, "/v1/subjects", enrolment(subject), db)
    await accepted(
        services, lab, "/v1/lab-results", haemoglobin(subject, "8.4", observation_key="OBS-1"), db
    )
    await eventually(lambda: subject_events(db, subject, "safety_signal.raised"), what="the signal")
    since = await now(db)

    corrected = await post(
        services,
        intruder,
        "/v1/lab-results",
        haemoglobin(subject, "13.0", observation_key="OBS-1", result_status="C"),
    )
    cancelled = await post(services, intruder, "/v1/lab-results",
                           {**haemoglobin(subject, "1", observation_key="OBS-1", result_status="W"),
                            "value": None, "unit": None})  # fmt: skip

    for response in (corrected, cancelled):
        assert response.status_code == 403, response.text
        assert [(e["field"], e["type"]) for e in response.json()["errors"]] == [
            ("observation_key", "forbidden-object")
        ]
    assert await db.fetchval(
        "SELECT count(*) = 2 FROM received_messages WHERE principal_source = $1 "
        "AND outcome = 'rejected' AND received_at >= $2",
        intruder.source,
        since,
    )
    # a later result of the subject is consumed after anything sent before it
    await accepted(services, lab, "/v1/lab-results", haemoglobin(subject, "8.2"), db)
    assert await subject_events(db, subject, "superseded") == 0
    assert await subject_events(db, subject, "safety_signal.retracted") == 0
    assert await subject_events(db, subject, "safety_signal.raised") == 1


async def test_the_owners_correction_is_accepted_and_retracts_its_signal(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    lab = await key(postgres_dsn, source="lab")
    subject = subject_id()
    await accepted(services, lab, "/v1/subjects", enrolment(subject), db)
    await accepted(
        services, lab, "/v1/lab-results", haemoglobin(subject, "8.4", observation_key="OBS-1"), db
    )
    await eventually(lambda: subject_events(db, subject, "safety_signal.raised"), what="the signal")

    correction = haemoglobin(subject, "13.0", observation_key="OBS-1", result_status="C")
    await accepted(services, lab, "/v1/lab-results", correction, db)

    await eventually(lambda: subject_events(db, subject, "superseded"), what="the supersede link")
    await eventually(
        lambda: subject_events(db, subject, "safety_signal.retracted"), what="the retraction"
    )


async def test_a_key_allowed_to_amend_others_may_correct_and_move_what_others_sent(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    lab = await key(postgres_dsn, source="lab")
    data_manager = await key(postgres_dsn, source="dm", may_amend_others=True)
    subject = subject_id()
    await accepted(services, lab, "/v1/subjects", enrolment(subject, "PKUPH-01"), db)
    await accepted(
        services, lab, "/v1/lab-results", haemoglobin(subject, "8.4", observation_key="OBS-1"), db
    )

    correction = haemoglobin(subject, "8.6", observation_key="OBS-1", result_status="C")
    await accepted(services, data_manager, "/v1/lab-results", correction, db)
    await accepted(services, data_manager, "/v1/subjects", enrolment(subject, "PKUPH-02"), db)

    await eventually(lambda: subject_events(db, subject, "superseded"), what="the correction")
    owner, site = await db.fetchrow(
        "SELECT owner_source, site_id FROM ingest_subject_owners WHERE subject_id = $1", subject
    )
    assert (owner, site) == (lab.source, "PKUPH-02")  # moved, and still the lab's subject


async def test_an_adverse_event_or_medication_of_another_source_cannot_be_updated(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    site, other = await key(postgres_dsn, source="site"), await key(postgres_dsn, source="other")
    subject = subject_id()
    adverse_event = {
        "subject_id": subject, "ae_id": "AE-1", "term": "Headache", "serious": False,
        "onset": "2026-10-01T00:00:00+00:00", "source_message_id": "AE-1-v1",
    }  # fmt: skip
    medication = {
        "subject_id": subject, "medication_id": "CM-1", "drug": "prednisone", "dose": 10,
        "dose_unit": "mg", "route": "oral", "start": "2026-10-01T08:00:00+00:00",
        "source_message_id": "CM-1-v1",
    }  # fmt: skip
    await accepted(services, site, "/v1/adverse-events", adverse_event, db)
    await accepted(services, site, "/v1/concomitant-medications", medication, db)

    serious = {**adverse_event, "serious": True, "seriousness_criteria": ["hospitalisation"],
               "source_message_id": "AE-1-v2"}  # fmt: skip
    upgraded = await post(services, other, "/v1/adverse-events", serious)
    doubled = await post(services, other, "/v1/concomitant-medications",
                         {**medication, "dose": 60, "source_message_id": "CM-1-v2"})  # fmt: skip

    assert upgraded.status_code == doubled.status_code == 403
    assert upgraded.json()["errors"][0]["field"] == "ae_id"
    assert doubled.json()["errors"][0]["field"] == "medication_id"
    await accepted(services, site, "/v1/adverse-events", serious, db)  # the owner may


async def test_a_fhir_batch_answers_each_entry_and_refuses_only_the_forbidden_one(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    owner, other = await key(postgres_dsn, source="edc"), await key(postgres_dsn, source="lab")
    taken, free = subject_id(), subject_id()
    await accepted(services, owner, "/v1/subjects", enrolment(taken, "PKUPH-01"), db)
    since = await now(db)

    def patient(subject: str) -> dict[str, Any]:
        return {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": SYSTEM, "value": subject}],
                "birthDate": "1971-03-04",
                "managingOrganization": {"reference": "Organization/PKUPH-02"},
            }
        }

    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [patient(taken), patient(free)]}
    response = await post(services, other, "/fhir/r4", bundle, fhir=True)

    assert response.status_code == 200, response.text
    first, second = (entry["response"] for entry in response.json()["entry"])
    assert first["status"] == "403 Forbidden"
    assert first["outcome"]["issue"][0]["expression"] == [
        "Bundle.entry[0].resource.Patient.identifier"
    ]
    assert second["status"] == "201 Created"
    await eventually(lambda: subject_events(db, free, "enrolled"), what="the allowed entry stored")
    assert (
        await db.fetchval("SELECT site_id FROM ingest_subject_owners WHERE subject_id = $1", taken)
        == "PKUPH-01"
    )
    row = await kept_refusal(db, other, since)
    assert json.loads(bytes(row["raw"])) == patient(taken)


async def test_a_fhir_transaction_with_one_forbidden_entry_writes_nothing(
    services: RunningServices, db: asyncpg.Connection, postgres_dsn: str
) -> None:
    owner, other = await key(postgres_dsn, source="edc"), await key(postgres_dsn, source="lab")
    taken, free = subject_id(), subject_id()
    await accepted(services, owner, "/v1/subjects", enrolment(taken, "PKUPH-01"), db)
    entries = [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": s}],
                      "birthDate": "1971-03-04",
                      "managingOrganization": {"reference": "Organization/PKUPH-02"}}}
        for s in (free, taken)
    ]  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    response = await post(services, other, "/fhir/r4", bundle, fhir=True)

    assert response.status_code == 403
    assert [i["expression"] for i in response.json()["issue"]] == [
        ["Bundle.entry[1].resource.Patient.identifier"]
    ]
    # nothing of the request was claimed or written, not even the entry that was allowed
    assert await db.fetchval(
        "SELECT count(*) = 0 FROM ingest_subject_owners WHERE subject_id = $1", free
    )


@pytest.fixture(scope="module")
def three_sources(
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrivateIngest]:
    """An ingest whose MLLP senders are three sources of the study, all on loopback and
    told apart by their HL7 identity (MSH-4): two laboratories and a system of site 01."""
    folder = tmp_path_factory.mktemp("three-sources")

    def sources(_: list[dict[str, Any]]) -> list[dict[str, Any]]:
        source = {"timezone": "UTC", "networks": [LOOPBACK]}
        return [
            {**source, "id": "mllp-lab", "hl7": [{"sending_facility": "LAB-A"}]},
            {**source, "id": "mllp-other", "hl7": [{"sending_facility": "LAB-B"}]},
            {
                **source,
                "id": "mllp-site",
                "hl7": [{"sending_facility": "SITE-1"}],
                "sites": ["PKUPH-01"],
            },
        ]

    with private_ingest(
        server_dsn=postgres_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        log_dir=tmp_path_factory.mktemp("three-sources-logs"),
        VIGIL_STUDY_DIR=str(copy_studies(folder / "studies", sources)),
    ) as ingest:
        yield ingest


def oru(subject: str, control: str, value: str, status: str, facility: str) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|{facility}|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|{control}"
            "|P|2.5.1",
            f"PID|1||{subject}^^^{STUDY}^SS",
            "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20261120080000+0800",
            f"OBX|1|NM|718-7^Haemoglobin^LN||{value}|g/dL|12-16|L|||{status}",
        ]
    )


async def test_an_hl7_correction_from_another_source_gets_ar_naming_the_obx_and_is_kept(
    three_sources: PrivateIngest,
) -> None:
    ingest, tag, subject = three_sources, uuid.uuid4().hex[:6], subject_id()
    port = ingest.mllp_port
    db = await asyncpg.connect(ingest.dsn)
    try:
        first = await exchange(port, oru(subject, f"A{tag}", "8.1", "F", "LAB-A"))
        assert str(first.segment("MSA")[1]) == "AA"
        since = await now(db)
        before = await metric_value(ingest.url, REFUSED, format="mllp", reason="forbidden-object")

        refused = await exchange(port, oru(subject, f"B{tag}", "13.0", "C", "LAB-B"))

        assert str(refused.segment("MSA")[1]) == "AR"
        err = refused.segment("ERR")
        assert str(err[2]) == "OBX^1^3"
        assert "forbidden-object" in str(err[8])
        counted = await metric_value(ingest.url, REFUSED, format="mllp", reason="forbidden-object")
        assert counted == before + 1
        row = await db.fetchrow(
            "SELECT * FROM received_messages WHERE principal_source = $1 AND received_at >= $2",
            "mllp-other",
            since,
        )
        assert (row["outcome"], row["channel"]) == ("rejected", "mllp")
        assert row["credential"] == "mllp-network:127.0.0.1/32"
        assert b"13.0" in bytes(row["raw"])
        assert "forbidden-object" in row["reason"]
        assert "13.0" not in row["reason"]

        owners = await exchange(port, oru(subject, f"C{tag}", "13.0", "C", "LAB-A"))
        assert str(owners.segment("MSA")[1]) == "AA"

        adt = "\r".join(
            [
                f"MSH|^~\\&|EDC|SITE-1|VIGIL|SPONSOR|20261120083000||ADT^A04^ADT_A01|D{tag}|P"
                "|2.5.1",
                f"PID|1||{subject_id()}^^^{STUDY}^SS||~||19850412|F",
                "PV1|1|O|RHEUM^^^PKUPH-02",
            ]
        )
        elsewhere = await exchange(port, adt)
        assert str(elsewhere.segment("MSA")[1]) == "AR"
        assert str(elsewhere.segment("ERR")[2]) == "PV1^1^3"
    finally:
        await db.close()
