"""The dead-letter contract: what a rejected record carries, and the event it becomes.

Whoever rejects input (ingest, the rules service, a partner) publishes the raw bytes to the
dead-letter topic with these headers; the rules service records each one in the
``rejected-input`` stream as InputRejected. The event id derives from the content, so the
rejecting side knows in advance which event must reach the audit log.
"""

from __future__ import annotations

import base64
import json

from shared.events.payloads import InputRejected
from shared.events.values import unstorable_text

REASON = "vigil-reason"
ORIGIN = "vigil-origin"
REJECTED_BY = "vigil-rejected-by"
_MAX_REASON = 1000


def dead_letter_headers(*, reason: str, origin: str, rejected_by: str) -> dict[str, str]:
    """Headers of a dead letter (the reason is cut to a size every broker accepts)."""
    return {REASON: reason[:_MAX_REASON], ORIGIN: origin, REJECTED_BY: rejected_by}


def input_rejected(raw: bytes, headers: dict[str, str], *, fallback_origin: str) -> InputRejected:
    """The audit-log payload for a dead letter; made for any bytes and headers, since a
    dead letter that cannot be recorded would stop the partition it is on."""
    try:
        text: str | None = raw.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" in text:
        text = None  # jsonb cannot hold U+0000; the bytes are kept in raw_base64
    return InputRejected(
        study_id=_study_named_in(text),
        reason=_storable(headers.get(REASON)) or "no reason given by the producer",
        origin=_storable(headers.get(ORIGIN)) or _storable(fallback_origin) or "unknown",
        rejected_by=_storable(headers.get(REJECTED_BY)) or "unknown",
        raw_base64=base64.b64encode(raw).decode(),
        raw_text=text,
    )


def _plain(text: str) -> bool:
    return unstorable_text(text) is None


def _storable(header: str | None) -> str | None:
    """A header value as text the audit log can hold (a partner's header may hold NUL)."""
    if not header:
        return None
    return header.encode(errors="replace").decode().replace("\x00", "\ufffd")


def _study_named_in(text: str | None) -> str | None:
    """The study a rejected message names, when it is JSON that names one."""
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    data = document.get("data")
    candidates = [
        document.get("studyid"),
        data.get("study_id") if isinstance(data, dict) else None,
        document.get("study_id"),
    ]
    return next(
        # json.loads makes lone surrogates of "\\ud800": such a name is not kept either
        (c for c in candidates if isinstance(c, str) and 0 < len(c) <= 64 and _plain(c)),
        None,
    )
