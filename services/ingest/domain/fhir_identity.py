"""What names a FHIR Observation across its corrections, so that only a report of the
same observation supersedes it (pure)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from fhir.resources.R4B.observation import Observation


def observation_identity(observation: Observation) -> str | None:
    """What names an Observation across its corrections: its first identifier, system and
    value together as a FHIR token (a FHIR Identifier is both: two laboratories'
    accession numbers may share a value), else its logical id."""
    first = observation.identifier[0] if observation.identifier else None
    if first is not None and first.value:
        return f"fhir:Observation?identifier={first.system or ''}|{first.value}"
    return f"fhir:Observation/{observation.id}" if observation.id else None


def content_identity(
    subject: str | None, code: str | None, collected: datetime | None
) -> str | None:
    """For an Observation with neither identifier nor id (a transaction's entries may be
    named only by a ``urn:uuid:`` fullUrl, which a resend renews): the subject, the test
    and the collection instant, as HL7 v2 does without order numbers. Serial results
    stay apart; a resend or a correction of the same sample names the same observation."""
    if not (subject and code and collected):
        return None
    instant = collected.astimezone(UTC).isoformat()
    return f"fhir:Observation?subject={subject}&code={code}&effective={instant}"


def bounded(identity: str, limit: int) -> str:
    """``identity`` if it fits in ``limit`` characters, else its SHA-256: cutting it
    short could make two observations one."""
    if len(identity) <= limit:
        return identity
    return f"fhir:sha256:{hashlib.sha256(identity.encode()).hexdigest()}"
