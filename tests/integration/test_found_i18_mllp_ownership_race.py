"""Checks that held when issue 18's group commit was attacked from outside:
two HL7 sources (PKUPH-LAB, PKUPH) on many MLLP connections at once, racing
for the same subjects and the same OBX, duplicate control ids sent concurrently, and
poison messages among them; the database must agree with every ACK."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
import pytest

from tests.support import components
from tests.support.mail import MailCatcher
from tests.support.mllp import (
    MllpClient,
    ack_code,
    bursting_ingest,
    hl7_message,
    msh,
)

pytestmark = pytest.mark.integration

CONNECTIONS = 16
FACILITY = {"lab": ("LIS", "PKUPH-LAB"), "edc": ("EDC", "PKUPH")}
SOURCE = {"PKUPH-LAB": "pkuph-lab", "PKUPH": "pkuph"}


def adt(who: str, control: str, subject: str, site: str) -> bytes:
    return hl7_message(
        msh(*FACILITY[who], "ADT^A04^ADT_A01", control),
        f"PID|1||{subject}^^^NCT05262686^SS||~||19850412|F",
        f"PV1|1|O|RHEUM^^^{site}",
    )


def oru(
    who: str,
    control: str,
    subjects: list[str],
    value: str = "13.1",
    when: str = "20261120080000+0800",
) -> bytes:
    segments = [msh(*FACILITY[who], "ORU^R01^ORU_R01", control)]
    for n, subject in enumerate(subjects, 1):
        segments += [
            f"PID|{n}||{subject}^^^NCT05262686^SS",
            f"OBR|1|ORD{n}|F{control}-{n}|58410-2^CBC^LN|||{when}",
            f"OBX|1|NM|718-7^Hemoglobin^LN||{value}|g/dL|12-16|N|||F",
        ]
    return hl7_message(*segments)


POISON = {
    "garbage": (
        b"MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|2026||ORU^R01|BAD-GARBAGE|P|2.5.1\r\xff\xfe\x00PID"
    ),
    "month13": oru("lab", "BAD-MONTH13", ["P-1"], when="20261340080000+0800"),
    "year0": oru("lab", "BAD-YEAR0", ["P-1"], when="00000101000000+0000"),
    "year9999": oru("lab", "BAD-Y9999", ["P-1"], when="99991231235959-1400"),
    "huge": oru("lab", "BAD-HUGE", ["P-1"], value="9" * 5000),
    "exp": oru("lab", "BAD-EXP", ["P-1"], value="1E999999999"),
    "nan": oru("lab", "BAD-NAN", ["P-1"], value="NaN"),
    "tz": oru("lab", "BAD-TZ", ["P-1"], when="20261120080000+9999"),
}


def controls_of(raw: bytes) -> tuple[str, str]:
    fields = raw.split(b"\r", 1)[0].split(b"|")
    return fields[3].decode(errors="replace"), fields[9].decode(errors="replace")


async def test_two_hl7_sources_race_and_poison_fails_alone(
    tmp_path: Path,
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
) -> None:
    dsn = await components.create_database(postgres_dsn, "i18mllp")
    rng = random.Random(11)
    subjects = [f"M-{n:02d}" for n in range(10)]
    work: list[tuple[str, str, bytes]] = []  # (kind, control, frame)
    n = 0
    for subject in subjects:
        for who, site in (("lab", "PKUPH-01"), ("edc", "PKUPH-02")):
            for _ in range(2):
                n += 1
                work.append(("adt", f"A-{n}", adt(who, f"A-{n}", subject, site)))
            # the same observation (same control id, same OBX) from both sources
            work.append(("obs", f"O-{subject}", oru(who, f"O-{subject}", [subject], "11.0")))
        # the same message twice from one source, at once
        work.append(("dup", f"D-{subject}", oru("lab", f"D-{subject}", [subject], "9.9")))
        work.append(("dup", f"D-{subject}", oru("lab", f"D-{subject}", [subject], "9.9")))
    for _k in range(8):  # several patients in one message
        n += 1
        work.append(("multi", f"X-{n}", oru("edc", f"X-{n}", rng.sample(subjects, 3), "12.0")))
    good = len(work)
    for name, frame in POISON.items():
        work.append(("poison", name, frame))
    rng.shuffle(work)
    lanes: list[list[tuple[str, str, bytes]]] = [[] for _ in range(CONNECTIONS)]
    for i, item in enumerate(work):
        lanes[i % CONNECTIONS].append(item)

    answers: list[tuple[str, str, bytes, str, str]] = []
    with bursting_ingest(
        tmp_path / "ingest",
        admin_dsn=dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        connections=CONNECTIONS + 4,
    ) as ingest:

        async def lane(items: list[tuple[str, str, bytes]]) -> None:
            client = await MllpClient.connect(ingest.mllp_port)
            try:
                for kind, control, frame in items:
                    try:
                        ack = await client.exchange(frame)
                        code, named = ack_code(ack), str(ack.segment("MSA")[2])
                    except Exception as error:
                        code, named = f"ERROR {error!r}", ""
                        await client.close()
                        client = await MllpClient.connect(ingest.mllp_port)
                    answers.append((kind, control, frame, code, named))
            finally:
                await client.close()

        await asyncio.gather(*(lane(items) for items in lanes))

    for kind, control, _, code, named in answers:
        if kind != "poison":
            assert code in {"AA", "AR"}, (kind, control, code)
            assert named == control, (kind, control, named)
    poison_codes = {control: code for kind, control, _, code, _ in answers if kind == "poison"}
    assert all(code in {"AE", "AR", "AA"} for code in poison_codes.values()), poison_codes

    connection = await asyncpg.connect(dsn)
    try:
        owners = dict(
            await connection.fetch("SELECT subject_id, owner_source FROM ingest_subject_owners")
        )
        record_owners = dict(
            await connection.fetch("SELECT identity, owner_source FROM ingest_record_owners")
        )
        kept = await connection.fetch(
            "SELECT raw, outcome, event_ids, principal_source, xmin::text AS tx "
            "FROM received_messages WHERE channel = 'mllp'"
        )
        outbox = Counter(
            r["event_id"] for r in await connection.fetch("SELECT event_id FROM ingest_outbox")
        )
    finally:
        await connection.close()

    # every ACK has its receipt, with the outcome the ACK said
    answered = Counter(
        (controls_of(frame), "accepted" if code == "AA" else "rejected")
        for kind, _, frame, code, _ in answers
        if code in {"AA", "AE", "AR"}
    )
    stored = Counter((controls_of(bytes(r["raw"])), r["outcome"]) for r in kept)
    assert stored == answered, (stored - answered, answered - stored)
    for row in kept:
        if row["outcome"] == "accepted":
            assert row["event_ids"], row
            assert all(outbox[e] == 1 for e in row["event_ids"]), row

    # ownership: every AA'd enrolment is its owner's, every AR'd one the other source's
    by_subject: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for kind, _, frame, code, _ in answers:
        if kind == "adt":
            facility, _ = controls_of(frame)
            subject = frame.split(b"PID|1||", 1)[1].split(b"^", 1)[0].decode()
            by_subject[subject].append((SOURCE[facility], code))
    for subject, seen in by_subject.items():
        owner = owners[subject]
        assert all((source == owner) == (code == "AA") for source, code in seen), (
            subject,
            owner,
            seen,
        )
    # the same OBX from both sources: exactly one AA, by the record's owner
    for subject in subjects:
        codes = [
            (SOURCE[controls_of(frame)[0]], code)
            for kind, control, frame, code, _ in answers
            if kind == "obs" and control == f"O-{subject}"
        ]
        assert sorted(c for _, c in codes) == ["AA", "AR"], (subject, codes)
        (winner,) = [s for s, c in codes if c == "AA"]
        owned = [v for k, v in record_owners.items() if f":FO-{subject}-1:" in k]
        assert owned == [winner], (subject, owned, winner)
    # duplicates sent at once: both AA, the events owed once
    for subject in subjects:
        twice = [a[3] for a in answers if a[1] == f"D-{subject}"]
        assert twice == ["AA", "AA"], (subject, twice)
    assert sum(1 for *_, code, _ in answers if code == "AA") >= good - 2 * len(subjects) - 80
    await components.drop_database(postgres_dsn, dsn)
