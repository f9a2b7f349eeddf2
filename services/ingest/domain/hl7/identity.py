"""The identity of an HL7 v2 observation across corrections: ``observation_key`` (pure)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import hl7

from services.ingest.domain.hl7.obx_fields import ObxContext, get

_MAX_KEY = 300


def _bounded(key: str) -> str:
    """The key if it fits, else its SHA-256: cutting it short could merge observations."""
    if len(key) <= _MAX_KEY:
        return key
    return f"hl7:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def observation_key(
    context: ObxContext, obx: hl7.Segment, collected: datetime, repetition: int
) -> str:
    """What stays the same when the lab corrects this result (HL7 2.5.1 7.4.2: OBX-3 and
    OBX-4 identify an observation within its order; the order is the filler's number,
    OBR-3, else the placer's, OBR-2). Without OBX-4, two OBX of the same OBX-3 under one
    order at different times are serial results, not one result reported twice, so the
    collection time is part of the key; so it is when the sender gives no order number
    (then the subject stands for the order). Never MSH-10: it changes on every resend."""
    code = f"{get(obx, 3, 1)}^{get(obx, 3, 3).upper()}"
    sub_id = get(obx, 4)
    scope = context.order or f"subject:{context.subject_id}"
    key = f"hl7:{scope}:{code}:{sub_id}"
    if not sub_id or not context.order:
        key += f"@{collected.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"
    if repetition > 1:
        key += f"#{repetition}"
    return _bounded(key)
