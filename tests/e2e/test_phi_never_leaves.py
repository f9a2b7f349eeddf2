"""No identifier leaves Vigil: a scanner over everything that goes out or to operators.

Messages full of identifiers (a name, a birth date, a street address, an MRN, a telephone
number, free-text comments and adverse-event terms, each a unique marker) go in through
every channel, valid and invalid: HTTP JSON, FHIR (a Patient with the hospital MRN first,
an Observation, an AdverseEvent, Bundles), HL7 v2 over MLLP (ADT and ORU with PID-5, PID-7,
PID-11, PID-13, an MRN in PID-3, NTE comments), and records a partner publishes straight
to Kafka. Alerts fire and are delivered by e-mail and webhook. Then every marker is looked
for, and must be found nowhere, in:

- every e-mail the SMTP server received (every header, every body part, decoded and raw);
- every webhook body and header the receiver accepted;
- every line of the three services' logs;
- every record on the dead-letter topic (value and headers);
- the audit log's payloads of what Vigil derived or decided: InputRejected,
  DataQualityIssueRaised, every safety-signal and notification event;
- every line (names, labels, values) of the three ``/metrics`` endpoints;
- every answer sent back to a sender (HTTP bodies, FHIR OperationOutcomes, HL7 ACKs).

Not scanned, on purpose: the receipt store (``received_messages``, the access-controlled
verbatim record) and the facts as received in the audit log (SubjectEnrolled keeps the
birth date the rules need; an AdverseEventReported keeps the site's verbatim term, a
MedicationRecorded its indication, for the record and the acknowledgement page).
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import random
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import hl7
import hl7.mllp
import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.ingest.domain.subject_identifiers import SubjectIdentifierSystem
from shared.events.topics import DEAD_LETTERS, SUBJECTS
from shared.yaml_files import load_yaml
from tests.support import components
from tests.support.components import as_service_role, create_database, drop_database
from tests.support.mail import MailCatcher
from tests.support.services import (
    METRICS_TOKEN,
    RunningServices,
    running_services,
    service_env,
)
from tests.support.studies import copy_studies, from_loopback
from tests.support.waiting import eventually
from tests.support.webhook import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
SYSTEM = SubjectIdentifierSystem.conventional(STUDY).fhir_system
HOSPITAL = "urn:oid:2.16.840.1.113883.19.5"
WEBHOOK_SECRET = b"phi-test-webhook-secret"
FHIR = {"content-type": "application/fhir+json"}


@dataclass(frozen=True)
class Markers:
    """One unique marker per kind of identifier; none may be found in what leaves."""

    family: str
    given: str
    birth: str  # ISO; HL7 sends it as YYYYMMDD
    street: str
    mrn: str
    phone: str
    comment: str
    term: str

    @property
    def birth_hl7(self) -> str:
        return self.birth.replace("-", "")

    def searched(self) -> dict[str, str]:
        return {
            "family name": self.family,
            "given name": self.given,
            "birth date": self.birth,
            "birth date (HL7)": self.birth_hl7,
            "street": self.street,
            "MRN": self.mrn,
            "phone": self.phone,
            "comment": self.comment,
            "adverse-event term": self.term,
        }

    @staticmethod
    def new() -> Markers:
        tag = uuid.uuid4().hex[:6]
        rng = random.Random(tag)
        return Markers(
            family=f"Qxfamily{tag}",
            given=f"Qxgiven{tag}",
            birth=f"19{rng.randint(20, 39)}-0{rng.randint(1, 9)}-{rng.randint(10, 28)}",
            street=f"Qxstreet{tag}",
            mrn=f"QXMRN{tag}".upper(),
            phone=f"555-01{rng.randint(1000, 9999)}",
            comment=f"Qxcomment{tag}",
            term=f"Qxterm{tag}",
        )


# -- the stack: own broker and database, the session's SMTP server, a webhook receiver ---


def study_dir_with_webhooks(folder: Path, url: str) -> Path:
    """The shipped study, with the site 01 sub-investigator and the medical monitor
    reached by webhook first, so that alerts go out by e-mail and by webhook."""
    # its HL7 senders connect from loopback, as the other tests' services allow
    studies = copy_studies(folder / "studies", from_loopback)
    path = studies / STUDY / "roster.yaml"
    roster = load_yaml(path.read_text())
    people = [*roster["study_contacts"], *(p for site in roster["sites"] for p in site["people"])]
    for person in people:
        if person["id"] in ("inv-0102", "mm-01"):
            person["channels"] = [{"webhook": url}, *person["channels"]]
    path.write_text(yaml.safe_dump(roster, sort_keys=False))
    return studies


@dataclass
class Stack:
    services: RunningServices
    bootstrap: str
    dsn: str
    receiver: WebhookReceiver
    mailbox: MailCatcher


# -- sending, through one helper per channel, every answer kept for the scan ---------------


@dataclass
class Sent:
    answers: list[str]
    rejections: int = 0  # messages sent that Vigil must refuse (and keep)
    credential: dict[str, str] = field(default_factory=dict)  # the API key's header

    async def http(
        self, client: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """Every HTTP write of this module goes through here (an API key goes here too)."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        kind = headers or {"content-type": "application/json"}
        response = await client.post(path, content=content, headers={**self.credential, **kind})
        self.answers.append(response.text)
        return response

    async def hl7(self, port: int, message: str) -> str:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port)
        try:
            writer.writeblock(message.encode())
            await writer.drain()
            answer = (await reader.readblock()).decode()
        finally:
            writer.close()
        self.answers.append(answer)
        return str(hl7.parse(answer).segment("MSA")[1])


def msh(kind: str, control: str) -> str:
    sender = "LIS|PKUPH-LAB" if kind.startswith("ORU") else "EDC|PKUPH"
    return f"MSH|^~\\&|{sender}|VIGIL|SPONSOR|20261120083000||{kind}|{control}|P|2.5.1"


def pid(m: Markers, pid3: str, *, birth: str | None = None) -> str:
    return (
        f"PID|1||{pid3}||{m.family}^{m.given}||{birth or m.birth_hl7}|F|||"
        f"12 {m.street} Road^^Beijing^^100044^CHN||{m.phone}^PRN^PH"
    )


def adt(m: Markers, pid3: str, control: str, *, birth: str | None = None) -> str:
    return "\r".join(
        [
            msh("ADT^A04^ADT_A01", control),
            pid(m, pid3, birth=birth),
            "PV1|1|O|RHEUM^^^PKUPH-01",
            f"NTE|1||{m.comment}: lives at 12 {m.street} Road, phone {m.phone}",
        ]
    )


def oru(m: Markers, pid3: str, control: str, obx: str) -> str:
    return "\r".join(
        [
            msh("ORU^R01^ORU_R01", control),
            pid(m, pid3),
            f"OBR|1|{control}|F{control}|58410-2^CBC^LN|||20261120080000+0800",
            obx,
            f"NTE|1||{m.comment} {m.family} seen in clinic",
        ]
    )


def patient(m: Markers, identifiers: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [{"family": m.family, "given": [m.given]}],
        "birthDate": m.birth,
        "gender": "female",
        "address": [{"line": [f"12 {m.street} Road"], "city": "Beijing"}],
        "telecom": [{"system": "phone", "value": m.phone}],
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
        **extra,
    }


def fhir_hb(m: Markers, subject: dict[str, Any], key: str, value: Any = 80) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:lab:obs", "value": key}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": subject,
        "effectiveDateTime": "2026-11-20T08:00:00+08:00",
        "valueQuantity": {"value": value, "unit": "g/L", "system": "http://unitsofmeasure.org"},
        "referenceRange": [{"low": {"value": 120}, "high": {"value": 160}}],
        "note": [{"text": f"{m.comment} {m.family} {m.phone}"}],
    }


def fhir_sae(m: Markers, subject: str, key: str, date: str = "2026-11-19") -> dict[str, Any]:
    return {
        "resourceType": "AdverseEvent",
        "identifier": {"value": key},
        "actuality": "actual",
        "event": {"text": f"{m.term}: {m.given} {m.family} fell at 12 {m.street} Road"},
        "subject": {"reference": f"Patient/{subject}"},
        "date": date,
        "seriousness": {"coding": [{"code": "serious"}]},
    }


def lab(subject: str, value: Any, key: str) -> dict[str, Any]:
    return {
        "subject_id": subject,
        "loinc_code": "718-7",
        "value": value,
        "unit": "g/dL",
        "reference_low": "12",
        "reference_high": "16",
        "collected_at": "2026-11-20T08:30:00+08:00",
        "source_message_id": key,
    }


async def stored(dsn: str, query: str, *args: Any) -> bool:
    connection = await asyncpg.connect(dsn)
    try:
        return bool(await connection.fetchval(query, *args))
    finally:
        await connection.close()


async def enrolled(stack: Stack, subject: str) -> bool:
    return await stored(
        stack.dsn,
        "SELECT count(*) > 0 FROM events WHERE subject_id = $1 AND type LIKE '%enrolled%'",
        subject,
    )


async def feed(stack: Stack, m: Markers, sent: Sent) -> dict[str, str]:
    """Every channel, valid and invalid; returns the subjects whose alerts must arrive."""
    tag = m.term[-6:]
    json_subject, fhir_subject, bundle_subject, hl7_subject = (
        f"PHI-{tag}-{n}" for n in ("J", "F", "B", "H")
    )
    port = stack.services.mllp_port
    async with httpx.AsyncClient(base_url=stack.services.ingest_url, timeout=30) as client:
        # HTTP JSON, valid: enrolment, a low haemoglobin, an SAE whose verbatim term names
        # the subject and their street, a medication with a free-text indication
        enrolment = {"subject_id": json_subject, "site_id": "PKUPH-01", "sex": "F"}
        answer = await sent.http(client, "/v1/subjects", {**enrolment, "birth_date": m.birth})
        assert answer.status_code == 202, answer.text
        await eventually(lambda: enrolled(stack, json_subject), what="JSON enrolment")
        answer = await sent.http(client, "/v1/lab-results", lab(json_subject, "8.1", f"J{tag}"))
        assert answer.status_code == 202, answer.text
        # kept, and a data-quality issue: a unit haemoglobin cannot be converted from
        unconvertible = {**lab(json_subject, "55", f"U{tag}"), "unit": "%"}
        answer = await sent.http(client, "/v1/lab-results", unconvertible)
        assert answer.status_code == 202, answer.text
        sae = {
            "subject_id": json_subject,
            "ae_id": f"AE-{tag}",
            "term": f"{m.term}: {m.given} {m.family} fell at 12 {m.street} Road",
            "onset": "2026-11-19T10:00:00+08:00",
            "serious": True,
            "seriousness_criteria": ["hospitalisation"],
            "source_message_id": f"AE-{tag}",
        }
        answer = await sent.http(client, "/v1/adverse-events", sae)
        assert answer.status_code == 202, answer.text
        medication = {
            "subject_id": json_subject,
            "medication_id": f"CM-{tag}",
            "drug": "paracetamol",
            "dose": "500",
            "dose_unit": "mg",
            "route": "oral",
            "start": "2026-11-18T08:00:00+08:00",
            "indication": f"{m.comment}: headache, call {m.phone}",
            "source_message_id": f"CM-{tag}",
        }
        answer = await sent.http(client, "/v1/concomitant-medications", medication)
        assert answer.status_code == 202, answer.text
        # HTTP JSON, invalid: unknown fields, a bad date, a wrong type, a misfit subject id,
        # broken JSON
        invalid = [
            (
                "/v1/subjects",
                {
                    **enrolment,
                    "birth_date": f"{m.birth}x",
                    "name": f"{m.given} {m.family}",
                    "address": f"12 {m.street} Road",
                    "phone": m.phone,
                    "mrn": m.mrn,
                },
            ),
            ("/v1/lab-results", lab(f"{m.mrn} 1", f"{m.given} {m.family}", f"X{tag}")),
            ("/v1/adverse-events", {**sae, "onset": f"born {m.birth}", "comment": m.comment}),
        ]
        broken = f'{{"subject_id": "{m.mrn}", "name": "{m.family}", "value": '.encode()
        for path, body in [*invalid, ("/v1/lab-results", broken)]:
            assert (await sent.http(client, path, body)).status_code == 422
            sent.rejections += 1

        # FHIR, valid: a Patient with the hospital MRN first, an Observation with a note,
        # a serious AdverseEvent, a transaction Bundle
        hospital = {"system": HOSPITAL, "value": m.mrn}
        answer = await sent.http(
            client,
            "/fhir/r4/Patient",
            patient(m, [hospital, {"system": SYSTEM, "value": fhir_subject}]),
            FHIR,
        )
        assert answer.status_code == 201, answer.text
        await eventually(lambda: enrolled(stack, fhir_subject), what="FHIR enrolment")
        reference = {"reference": f"Patient/{fhir_subject}"}
        answer = await sent.http(
            client, "/fhir/r4/Observation", fhir_hb(m, reference, f"F{tag}"), FHIR
        )
        assert answer.status_code == 201, answer.text
        answer = await sent.http(
            client, "/fhir/r4/AdverseEvent", fhir_sae(m, fhir_subject, f"FAE-{tag}"), FHIR
        )
        assert answer.status_code == 201, answer.text
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": patient(m, [hospital, {"system": SYSTEM, "value": bundle_subject}])},
                {
                    "resource": fhir_hb(
                        m, {"identifier": {"system": SYSTEM, "value": bundle_subject}}, f"B{tag}"
                    )
                },
            ],
        }
        answer = await sent.http(client, "/fhir/r4", bundle, FHIR)
        assert answer.status_code == 200, answer.text
        # FHIR, invalid: only an MRN, a subject named by MRN, a bad birth date and an
        # unknown element, a bad onset, a batch with one bad entry
        invalid_fhir = [
            ("/fhir/r4/Patient", patient(m, [hospital])),
            ("/fhir/r4/Observation", fhir_hb(m, {"identifier": hospital}, f"Y{tag}")),
            (
                "/fhir/r4/Patient",
                patient(
                    m,
                    [{"system": SYSTEM, "value": fhir_subject}],
                    birthDate=f"{m.birth}T{m.family}",
                    nickname=m.given,
                ),
            ),
            ("/fhir/r4/AdverseEvent", fhir_sae(m, fhir_subject, f"Z{tag}", f"{m.birth}{m.mrn}")),
        ]
        for path, body in invalid_fhir:
            assert (await sent.http(client, path, body, FHIR)).status_code in (400, 422)
            sent.rejections += 1
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"resource": fhir_hb(m, reference, f"W{tag}", value=f"{m.phone} {m.family}")},
                {"resource": patient(m, [hospital])},
            ],
        }
        answer = await sent.http(client, "/fhir/r4", batch, FHIR)
        assert answer.status_code == 200, answer.text
        sent.rejections += 2  # each entry refused on its own

    # HL7 v2 over MLLP, valid: an ADT with name, birth date, address, phone, an MRN before
    # the study's id and a comment; an ORU with a low haemoglobin and a comment
    study_id = f"{m.mrn}^^^PKUPH^MR~{hl7_subject}^^^{STUDY}^SS"
    assert await sent.hl7(port, adt(m, study_id, f"A{tag}")) == "AA"
    await eventually(lambda: enrolled(stack, hl7_subject), what="HL7 enrolment")
    obx = "OBX|1|NM|718-7^Hemoglobin^LN||7.9|g/dL|12-16|L|||F"
    assert await sent.hl7(port, oru(m, study_id, f"R{tag}", obx)) == "AA"
    # HL7, a result that cannot be read (a name where a number belongs, a status that is
    # a name, an MRN where the LOINC code belongs): AA, the result kept as unreadable,
    # which must carry none of it
    unreadable_hl7 = [
        oru(m, study_id, f"B3{tag}", f"OBX|1|NM|718-7^Hb^LN||{m.family}|g/dL|12-16|L|||F"),
        oru(m, study_id, f"B4{tag}", f"OBX|1|NM|718-7^Hb^LN||8|g/dL|12-16|L|||{m.given}"),
        oru(m, study_id, f"B5{tag}", f"OBX|1|NM|{m.mrn}^Hb^LN||8|g/dL|12-16|L|||F"),
    ]
    for message in unreadable_hl7:
        assert await sent.hl7(port, message) == "AA"
    # HL7, invalid: the MRN alone, a bad birth date, a study id with a space, a message
    # that is not HL7
    invalid_hl7 = [
        adt(m, f"{m.mrn}^^^PKUPH^MR", f"B1{tag}"),
        adt(m, study_id, f"B2{tag}", birth=f"{m.birth_hl7}{m.family}"),
        adt(m, f"{m.mrn} {hl7_subject}^^^{STUDY}^SS", f"B6{tag}"),
        pid(m, study_id) + "\r" + f"NTE|1||{m.comment}",
    ]
    for message in invalid_hl7:
        assert await sent.hl7(port, message) in ("AE", "AR")
        sent.rejections += 1

    # Kafka, straight onto an input topic: a "subject" with a name and an MRN; and a raw
    # dead letter whose producer's reason quotes the name
    partner = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/partner",
        "type": "org.vigil.subject.enrolled.v1",
        "time": "2026-11-20T08:00:00Z",
        "correlationid": str(uuid.uuid4()),
        "data": {"study_id": STUDY, "subject_id": m.mrn, "name": m.family, "birth": m.birth},
    }
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(SUBJECTS, json.dumps(partner).encode(), key=m.mrn.encode())
        await producer.send_and_wait(
            DEAD_LETTERS,
            raw_dead_letter(m),
            headers=[("vigil-reason", f"bad patient {m.family} {m.mrn}".encode())],
        )
    finally:
        await producer.stop()
    sent.rejections += 2  # kept by the rules service (channel kafka)
    return {
        "JSON lab": json_subject,
        "FHIR lab": fhir_subject,
        "Bundle lab": bundle_subject,
        "HL7 lab": hl7_subject,
    }


def raw_dead_letter(m: Markers) -> bytes:
    """What a partner publishes on the dead-letter topic itself: the raw message."""
    return f"{m.family} {m.street} {m.phone}".encode()


# -- waiting for everything to settle, then scanning --------------------------------------


async def rejections_recorded(stack: Stack, expected: int) -> bool:
    """Every rejected message kept, and each one's InputRejected in the audit log."""
    return await stored(
        stack.dsn,
        """SELECT count(*) = $1 AND bool_and(EXISTS (
               SELECT 1 FROM events e WHERE e.event_id = ANY(r.event_ids)))
           FROM received_messages r WHERE outcome = 'rejected'""",
        expected,
    )


async def dead_letters(bootstrap: str, published: bytes) -> list[str]:
    """Every dead letter on the topic but the raw one this test published as a partner."""
    consumer = AIOKafkaConsumer(
        DEAD_LETTERS,
        bootstrap_servers=bootstrap,
        group_id=f"phi-scan-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[str] = []
    try:
        while batches := await consumer.getmany(timeout_ms=2000):
            for record in (r for records in batches.values() for r in records):
                if record.value == published:
                    continue
                headers = " ".join(f"{k}={v.decode(errors='replace')}" for k, v in record.headers)
                found.append(f"{(record.value or b'').decode(errors='replace')} {headers}")
    finally:
        await consumer.stop()
    return found


def mail_texts(mailbox: MailCatcher) -> Iterator[str]:
    for item in mailbox.matching(lambda _: True):
        message = item.message
        yield message.as_bytes(policy=email.policy.SMTP).decode(errors="replace")
        yield " ".join(f"{key}: {value}" for key, value in message.items())
        for part in message.walk():
            if part.get_content_maintype() == "text":
                yield str(part.get_content())


# the kinds of derived events the scan must have seen, so that it scanned something
SCANNED_KINDS = {
    "org.vigil.input.rejected.v2",
    "org.vigil.data_quality.issue_raised.v1",
    "org.vigil.safety_signal.raised.v1",
    "org.vigil.notification.delivery_succeeded.v1",
}


async def audit_payloads(dsn: str) -> list[str] | None:
    """The payloads and envelopes of every derived or decided event; None until each kind
    the scan must cover is there (a delivery's success is committed just after the send)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            """SELECT type, payload_json::text AS payload, envelope_json::text AS envelope
               FROM events
               WHERE type LIKE 'org.vigil.input.rejected.%'
                  OR type LIKE 'org.vigil.data_quality.%'
                  OR type LIKE 'org.vigil.safety_signal.%'
                  OR type LIKE 'org.vigil.notification.%'"""
        )
    finally:
        await connection.close()
    if not {row["type"] for row in rows} >= SCANNED_KINDS:
        return None
    return [f"{row['type']} {row['payload']} {row['envelope']}" for row in rows]


def hits(texts: dict[str, list[str]], m: Markers) -> list[str]:
    found = []
    for where, items in texts.items():
        for item in items:
            lowered = item.lower()
            for kind, marker in m.searched().items():
                if marker.lower() in lowered:
                    at = lowered.index(marker.lower())
                    found.append(f"{kind} in {where}: ...{item[max(0, at - 120) : at + 60]}...")
    return found


@pytest.fixture
async def stack(
    postgres_dsn: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path: Path,
) -> Any:
    dsn = await create_database(postgres_dsn, "phi")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with ExitStack() as exits:
        broker = exits.enter_context(components.tansu())
        async with webhook_receiver(WEBHOOK_SECRET) as receiver:
            env = service_env(
                database_url=as_service_role(dsn),
                kafka_bootstrap=broker.bootstrap,
                smtp_port=smtp_server[0],
                VIGIL_STUDY_DIR=str(study_dir_with_webhooks(tmp_path, receiver.url)),
                VIGIL_NOTIFIER_WEBHOOK_SECRET=WEBHOOK_SECRET.decode(),
                VIGIL_NOTIFIER_LINK_KEYS="phi:phi-test-link-secret-of-32-bytes!",
                VIGIL_AUDIT_ANCHOR_FILE=str(log_dir / "anchors.jsonl"),
            )
            services = await asyncio.to_thread(
                exits.enter_context, running_services(env, log_dir, admin_dsn=dsn)
            )
            try:
                yield Stack(services, broker.bootstrap, dsn, receiver, smtp_server[1])
            finally:
                await asyncio.to_thread(exits.close)
    await drop_database(postgres_dsn, dsn)


async def test_no_identifier_reaches_mail_webhooks_logs_dead_letters_audit_or_metrics(
    stack: Stack,
) -> None:
    m = Markers.new()
    sent = Sent([], credential=stack.services.headers)
    subjects = await feed(stack, m, sent)

    # alerts fire and are delivered: e-mail for every lab alert and SAE, webhooks too
    for what, subject in subjects.items():
        await eventually(
            lambda s=subject: asyncio.sleep(0, stack.mailbox.matching(about(s))),
            timeout=90,
            what=f"the {what} alert e-mail",
        )
    saes = (subjects["JSON lab"], subjects["FHIR lab"])
    for subject in saes:
        await eventually(
            lambda s=subject: asyncio.sleep(
                0, [i for i in stack.mailbox.matching(about(s)) if "adverse event" in subj(i)]
            ),
            timeout=90,
            what=f"the SAE e-mail of {subject}",
        )
    await eventually(
        lambda: asyncio.sleep(
            0,
            {d["subject_id"] for d in stack.receiver.accepted} >= {*saes, subjects["HL7 lab"]},
        ),
        timeout=90,
        what="webhooks for the site 01 alerts and the SAEs",
    )
    await eventually(
        lambda: rejections_recorded(stack, sent.rejections),
        timeout=90,
        what=f"{sent.rejections} rejections kept and recorded",
    )

    operator = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with httpx.AsyncClient(timeout=30, headers=operator) as client:
        metrics = [
            (await client.get(f"{url}/metrics")).text
            for url in (
                stack.services.ingest_url,
                stack.services.rules_url,
                stack.services.notifier_url,
            )
        ]
    texts = {
        "e-mail": list(mail_texts(stack.mailbox)),
        "webhook": [json.dumps(d) for d in stack.receiver.accepted]
        + [json.dumps(h) for h in stack.receiver.headers],
        "service log": [
            line
            for path in stack.services.log_dir.glob("*.log")
            for line in path.read_text().splitlines()
        ],
        "dead letter": await dead_letters(stack.bootstrap, raw_dead_letter(m)),
        "audit log": await eventually(
            lambda: audit_payloads(stack.dsn), what=f"events of each kind: {SCANNED_KINDS}"
        ),
        "metrics": metrics,
        "answer to a sender": sent.answers,
    }
    assert all(texts.values()), {k: len(v) for k, v in texts.items()}
    found = hits(texts, m)
    assert found == [], "\n".join(found)

    # one real alert, read as a person would: still useful without any identifier
    (alert, *_) = stack.mailbox.matching(about(subjects["HL7 lab"]))
    subject_line = subj(alert)
    assert subject_line == (
        f"[Vigil] {STUDY} subject {subjects['HL7 lab']}: haemoglobin 7.9 g/dL (anaemia-hb-le-9)"
    )
    body = alert.body
    for label, value in (
        ("Subject:", subjects["HL7 lab"]),
        ("Site:", "PKUPH-01"),
        ("Analyte:", "haemoglobin"),
        ("Value:", "7.9 g/dL"),
        ("Rule:", "anaemia-hb-le-9"),
    ):
        line = next((line for line in body.splitlines() if line.startswith(label)), "")
        assert value in line, f"{label} {value} not in:\n{body}"
    assert "/workspace/signals/" in body
    assert "token" not in body
    (sae, *_) = [
        i for i in stack.mailbox.matching(about(subjects["JSON lab"])) if "adverse event" in subj(i)
    ]
    assert "serious adverse event (hospitalisation)" in subj(sae)


def about(subject: str) -> Any:
    return lambda item: f"subject {subject}:" in subj(item)


def subj(item: Any) -> str:
    return str(item.message["Subject"])
