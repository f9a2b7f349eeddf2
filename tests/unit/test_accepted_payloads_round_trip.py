"""Property, without servers: whatever a payload type accepts is published, parsed back by
the rules unchanged, encoded canonically and judged by the real batch handler (on the
in-memory store; tests/integration/test_accepted_payloads_are_storable.py does the same
against PostgreSQL)."""

from __future__ import annotations

from hypothesis import given, settings

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.facts import handle_batch
from shared.events import Envelope, EventPayload, wrap
from shared.eventstore.canonical import canonical_bytes, epoch_micros, json_text
from tests.support.payload_strategies import accepted_batches
from tests.support.rules_harness import InMemoryRulesStore
from tests.support.services import REPO

PACKS = load_rule_packs(REPO / "studies")


@settings(max_examples=100, deadline=None)
@given(payloads=accepted_batches())
async def test_every_accepted_payload_reads_back_encodes_and_is_judged(
    payloads: list[EventPayload],
) -> None:
    envelopes = [wrap(payload, source="/tests/property") for payload in payloads]
    parsed = [Envelope.from_json(envelope.to_json()) for envelope in envelopes]
    for envelope, again in zip(envelopes, parsed, strict=True):
        # the rules read the same fact: its content (and so its id) survives the trip
        assert again.payload().content_id() == envelope.payload().content_id()
        canonical_bytes(
            position=1,
            event_id=str(again.id),
            stream_id=again.payload().stream_id,
            stream_version=1,
            type=again.type,
            schema_version=1,
            clinical_time_us=epoch_micros(again.payload().clinical_time),
            recorded_at_us=0,
            source=again.source,
            envelope_text=again.attributes_json(),
            payload_text=json_text(again.data),
        )
    await handle_batch(parsed, InMemoryRulesStore().unit_of_work(), PACKS)
