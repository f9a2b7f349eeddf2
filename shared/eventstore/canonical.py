"""The canonical encoding of a stored event and the hash chain over it.

One event's canonical bytes are its fields, in this order, each written as
``<length of the UTF-8 text in bytes>:<UTF-8 text>`` and separated by newlines:

    position, event_id, stream_id, stream_version, type, schema_version,
    clinical_time_us (empty when none), recorded_at_us, source, envelope_json, payload_json

Times are microseconds since 1970-01-01T00:00:00Z. ``envelope_json`` (the CloudEvents context
attributes without ``data``) and ``payload_json`` are the exact JSON texts stored in the row;
the queryable jsonb columns are generated from them by PostgreSQL, so nothing a query reads
can differ from what was hashed. The length prefixes make the encoding unambiguous whatever
the fields contain. Each row's hash is ``sha256(prev_hash || canonical)``; the first row's
``prev_hash`` is 32 zero bytes. ``CANONICAL_SQL`` builds the same bytes inside PostgreSQL,
so that verification can hash rows where they are (see verify.py).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import orjson

GENESIS_HASH = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_micros(moment: datetime | None) -> int | None:
    """Exact microseconds since the Unix epoch (what PostgreSQL's timestamptz stores)."""
    if moment is None:
        return None
    return (moment - _EPOCH) // _MICROSECOND


def canonical_bytes(
    *,
    position: int,
    event_id: str,
    stream_id: str,
    stream_version: int,
    type: str,
    schema_version: int,
    clinical_time_us: int | None,
    recorded_at_us: int,
    source: str,
    envelope_text: str,
    payload_text: str,
) -> bytes:
    """The bytes the hash covers (see the module docstring)."""
    fields = (
        str(position),
        event_id,
        stream_id,
        str(stream_version),
        type,
        str(schema_version),
        "" if clinical_time_us is None else str(clinical_time_us),
        str(recorded_at_us),
        source,
        envelope_text,
        payload_text,
    )
    # most fields are ASCII, where characters and bytes count the same
    head = "\n".join(
        [f"{len(f) if f.isascii() else len(f.encode())}:{f}" for f in fields[:-2]]
    ).encode()
    envelope, payload = envelope_text.encode(), payload_text.encode()
    return b"%s\n%d:%s\n%d:%s" % (head, len(envelope), envelope, len(payload), payload)


_CANONICAL_FIELDS_SQL = (
    "position::text",
    "event_id::text",
    "stream_id",
    "stream_version::text",
    "type",
    "schema_version::text",
    # exact microseconds from whole seconds and the sub-second part, both exact in double
    # precision (extract(epoch) is exact too, but computes in numeric, several times slower)
    "coalesce((date_part('epoch', date_trunc('second', clinical_time))::bigint * 1000000"
    " + date_part('microseconds', clinical_time)::bigint % 1000000)::text, '')",
    "(date_part('epoch', date_trunc('second', recorded_at))::bigint * 1000000"
    " + date_part('microseconds', recorded_at)::bigint % 1000000)::text",
    "source",
    "envelope_json",
    "payload_json",
)
# The same bytes as canonical_bytes, built by PostgreSQL from a row of ``events``, in one
# concat() so that the row is assembled without intermediate copies.
CANONICAL_SQL = (
    "convert_to(concat("
    + ", E'\\n', ".join(f"octet_length({field}), ':', {field}" for field in _CANONICAL_FIELDS_SQL)
    + "), 'UTF8')"
)


def json_text(value: object) -> str:
    """The JSON text Vigil stores for a document: compact, keys sorted, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def chain_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    """The hash of one row, chained to the previous row's hash."""
    return hashlib.sha256(prev_hash + canonical).digest()
