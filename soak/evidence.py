"""What the system holds at the end of a run, read once for the checker.

From the audit log: every fact the soak sent (by its key), every rejected input (by the
SHA-256 of its raw bytes), every signal event; from the notifier's outbox: every planned
message; from the roster: who must be told of each signal; from the mailbox: every e-mail
with its arrival time; and the result of ``vigil audit verify`` on the final log.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import orjson

from services.notifier.adapters.roster_files import load_rosters
from services.notifier.domain.planning import goes_to_digest, signal_kind
from services.notifier.domain.roster import EmailChannel, Roster, role_named
from shared.events import SafetySignalRaised
from soak.mailbox import Mail
from soak.workload import FactKey

FACT_TYPES = {
    "org.vigil.subject.enrolled.v1": ("enrol", "subject_id"),
    "org.vigil.lab_result.reported.v1": ("lab", "source_message_id"),
    "org.vigil.adverse_event.reported.v1": ("ae", "ae_id"),
    "org.vigil.medication.recorded.v1": ("med", "medication_id"),
}
SIGNAL_PREFIX = "org.vigil.safety_signal."
REJECTED = "org.vigil.input.rejected.v1"  # carried the raw message
REJECTED_BY_REFERENCE = "org.vigil.input.rejected.v2"  # refers to it in the receipt store


@dataclass(frozen=True)
class SignalEvent:
    kind: str  # raised, escalated, resolved, reopened, amended, retracted
    signal_id: str
    subject: str
    rule_id: str
    episode_key: str | None
    recorded_at: float


@dataclass(frozen=True)
class Delivery:
    signal_id: str
    purpose: str
    channel: str
    recipient: str
    message_id: str
    status: str
    attempts: int


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    output: str


@dataclass
class Evidence:
    facts: dict[FactKey, list[float]] = field(default_factory=dict)  # key -> recorded_at each
    event_times: dict[str, float] = field(default_factory=dict)  # event id -> recorded_at
    rejected: dict[bytes, float] = field(default_factory=dict)  # raw SHA-256 -> recorded_at
    rejected_texts: list[str] = field(default_factory=list)  # rejected input that is text
    signals: list[SignalEvent] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    # signal id -> addresses the roster says must get its first alert at once
    recipients: dict[str, frozenset[str]] = field(default_factory=dict)
    mails: list[Mail] = field(default_factory=list)
    ingest_unrecorded: int = 0  # events ingest still owes the audit log
    verify: VerifyResult | None = None


async def read_database(dsn: str, study_dir: Path) -> Evidence:
    """The audit log, the notifier's deliveries and ingest's debts, as the checker needs them."""
    evidence = Evidence()
    rosters = load_rosters(study_dir)
    connection = await asyncpg.connect(dsn, timeout=30)
    try:
        evidence.event_times = {
            row["id"]: row["at"]
            for row in await connection.fetch(
                "SELECT event_id::text AS id, extract(epoch FROM recorded_at)::float8 AS at "
                "FROM events"
            )
        }
        rows = await connection.fetch(
            """SELECT type, subject_id, extract(epoch FROM recorded_at)::float8 AS at,
                      payload_json
               FROM events
               WHERE type = ANY($1::text[]) OR type LIKE 'org.vigil.safety_signal.%'
                  OR type = ANY($2::text[])
               ORDER BY position""",
            list(FACT_TYPES),
            [REJECTED, REJECTED_BY_REFERENCE],
        )
        # what the rejections refer to, as the receipt store kept it
        kept = {
            str(r["receipt_id"]): bytes(r["raw"])
            for r in await connection.fetch(
                "SELECT receipt_id, raw FROM received_messages WHERE outcome = 'rejected'"
            )
        }
        facts: dict[FactKey, list[float]] = defaultdict(list)
        for row in rows:
            _take(evidence, facts, rosters, row, kept)
        evidence.facts = dict(facts)
        evidence.deliveries = [
            Delivery(
                str(r["signal_id"]),
                r["purpose"],
                r["channel"],
                r["recipient"].lower(),
                r["message_id"],
                r["status"],
                r["attempts"],
            )
            for r in await connection.fetch(
                "SELECT signal_id, purpose, channel, recipient, message_id, status, attempts "
                "FROM deliveries"
            )
        ]
        evidence.ingest_unrecorded = await connection.fetchval(
            "SELECT count(*) FROM ingest_outbox o "
            "WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = o.event_id)"
        )
    finally:
        await connection.close()
    return evidence


def _take(
    evidence: Evidence,
    facts: dict[FactKey, list[float]],
    rosters: dict[str, Roster],
    row: asyncpg.Record,
    kept: dict[str, bytes],
) -> None:
    event_type, at = row["type"], row["at"]
    payload = orjson.loads(row["payload_json"])
    if event_type in FACT_TYPES:
        kind, field_name = FACT_TYPES[event_type]
        facts[(kind, str(payload[field_name]))].append(at)
    elif event_type == REJECTED:
        raw = base64.b64decode(payload["raw_base64"])
        evidence.rejected.setdefault(hashlib.sha256(raw).digest(), at)
        evidence.rejected_texts.append(raw.decode("utf-8", errors="replace"))
    elif event_type == REJECTED_BY_REFERENCE:
        evidence.rejected.setdefault(bytes.fromhex(payload["raw_sha256"]), at)
        raw = kept.get(str(payload["receipt_id"]), b"")
        evidence.rejected_texts.append(raw.decode("utf-8", errors="replace"))
    else:
        kind = event_type.removeprefix(SIGNAL_PREFIX).rsplit(".", 1)[0]
        signal = SignalEvent(
            kind,
            str(payload["signal_id"]),
            row["subject_id"],
            payload["rule_id"],
            payload.get("episode_key"),
            at,
        )
        evidence.signals.append(signal)
        if kind == "raised" and (roster := rosters.get(payload["study_id"])) is not None:
            evidence.recipients[signal.signal_id] = told_at_once(
                SafetySignalRaised.model_validate(payload), roster
            )


def told_at_once(signal: SafetySignalRaised, roster: Roster) -> frozenset[str]:
    """The e-mail addresses the roster says get this signal's first alert at once (the
    notifier's routing: the rule's extra roles, the site's people, digests left out; a
    person whose first channel is a webhook is told there, not by e-mail)."""
    extra = frozenset(
        role for name in signal.recipient_roles if (role := role_named(name)) is not None
    )
    people = roster.recipients_for(signal.site_id, signal_kind(signal), extra)
    return frozenset(
        person.channels[0].address.lower()
        for person in people
        if isinstance(person.channels[0], EmailChannel)
        and not goes_to_digest(signal, person, roster)
    )


def audit_verify(env: dict[str, str]) -> VerifyResult:
    """``vigil audit verify`` on the final log (it re-hashes every row by default), as an
    operator would run it."""
    command = [sys.executable, "-m", "vigil", "audit", "verify"]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, timeout=1800
    )
    output = (result.stdout + result.stderr).strip()
    return VerifyResult(result.returncode == 0, output)
