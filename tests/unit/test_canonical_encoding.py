"""The canonical bytes of a row are exactly the documented encoding: each field as
``<UTF-8 length>:<UTF-8 text>``, newline-separated, in the documented order; the hash
chains them to the previous row's hash."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

from shared.eventstore.canonical import canonical_bytes, chain_hash, epoch_micros


def documented(*fields: str) -> bytes:
    return b"\n".join(b"%d:%s" % (len(f.encode()), f.encode()) for f in fields)


def test_fields_are_length_prefixed_utf8_in_order_and_an_absent_clinical_time_is_empty() -> None:
    encoded = canonical_bytes(
        position=42,
        event_id="7f1c8a52-2b0e-4d0f-9d55-3a1e1b0c9e21",
        stream_id="subject-NCT1/Sévérine:1\n2",
        stream_version=3,
        type="org.vigil.lab_result.reported.v1",
        schema_version=1,
        clinical_time_us=None,
        recorded_at_us=1_767_600_000_123_456,
        source="/tests/ünïcode",
        envelope_text='{"subject":"NCT1/Sévérine"}',
        payload_text='{"note":"5:x\\n","unit":"µmol/L"}',
    )

    assert encoded == documented(
        "42",
        "7f1c8a52-2b0e-4d0f-9d55-3a1e1b0c9e21",
        "subject-NCT1/Sévérine:1\n2",
        "3",
        "org.vigil.lab_result.reported.v1",
        "1",
        "",
        "1767600000123456",
        "/tests/ünïcode",
        '{"subject":"NCT1/Sévérine"}',
        '{"note":"5:x\\n","unit":"µmol/L"}',
    )


def test_a_negative_clinical_time_is_its_signed_microseconds() -> None:
    encoded = canonical_bytes(
        position=1,
        event_id="e",
        stream_id="s",
        stream_version=1,
        type="t",
        schema_version=2,
        clinical_time_us=-1_000_001,
        recorded_at_us=0,
        source="/",
        envelope_text="{}",
        payload_text="{}",
    )
    assert encoded == documented("1", "e", "s", "1", "t", "2", "-1000001", "0", "/", "{}", "{}")


def test_the_hash_covers_the_previous_hash_then_the_canonical_bytes() -> None:
    prev = bytes(range(32))
    assert chain_hash(prev, b"row") == hashlib.sha256(prev + b"row").digest()


def test_times_are_exact_microseconds_since_the_epoch_in_any_offset() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    assert epoch_micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert epoch_micros(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == -1
    assert epoch_micros(datetime(2026, 1, 5, 13, 30, 0, 123_456, tzinfo=india)) == (
        1_767_600_000_123_456
    )
    assert epoch_micros(None) is None
