"""The ACKs the MLLP handler sends: an outcome from what MSH said, encoded as the
message was (pure)."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.ingest.domain.hl7.ack import build_ack
from services.ingest.domain.hl7.charset import codec_for
from services.ingest.domain.hl7.header import DEFAULT_VERSION, Hl7Header
from services.ingest.domain.hl7.messages import Hl7Problem, Interpretation
from services.ingest.entrypoints.mllp_refusals import AckCode


def outcome_of(
    code: AckCode, header: Hl7Header | None, problems: list[Hl7Problem], charset: str = ""
) -> Interpretation:
    """What a message read no further than its MSH is answered with."""
    if header is None:
        return Interpretation(code, "", DEFAULT_VERSION, problems=problems, charset=charset)
    return Interpretation(
        code,
        header.control_id,
        header.version,
        problems=problems,
        sender=(header.application, header.facility),
        charset=charset,
    )


def encode_ack(outcome: Interpretation, now: datetime) -> bytes:
    """The ACK for ``outcome`` from VIGIL to the message's sender, in its character set,
    sent at ``now``."""
    return build_ack(
        outcome,
        sending_application="VIGIL",
        sending_facility="VIGIL",
        receiving_application=outcome.sender[0],
        receiving_facility=outcome.sender[1],
        ack_control_id=f"ACK{uuid.uuid4().hex[:16].upper()}",
        now=now,
    ).encode(codec_for(outcome.charset), errors="replace")
