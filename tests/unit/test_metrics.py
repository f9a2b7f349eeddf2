"""Recording Vigil's domain metrics (shared/metrics.py and each service's metrics.py), read
back from the registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from services.notifier import metrics as notifier_metrics
from services.safety_rules import metrics as rules_metrics
from shared import metrics

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_signal_counts_by_rule_and_grade_and_observes_both_latencies() -> None:
    before = sample("vigil_signals_raised_total", rule="unit-rule", grade="3")
    received = sample("vigil_receipt_to_signal_seconds_count")
    late = sample("vigil_collection_to_signal_seconds_bucket", le="3600.0")

    rules_metrics.record_signal(
        "unit-rule", 3, NOW - timedelta(minutes=30), NOW - timedelta(seconds=2), now=NOW
    )

    assert sample("vigil_signals_raised_total", rule="unit-rule", grade="3") == before + 1
    assert sample("vigil_receipt_to_signal_seconds_count") == received + 1
    assert sample("vigil_collection_to_signal_seconds_bucket", le="3600.0") == late + 1


def test_an_ungraded_signal_has_grade_none() -> None:
    rules_metrics.record_signal("unit-ungraded", None, NOW, None, now=NOW)
    assert sample("vigil_signals_raised_total", rule="unit-ungraded", grade="none") == 1


def test_rules_of_the_loaded_packs_are_exported_at_zero() -> None:
    rules_metrics.initialise_rules(["unit-initialised"])
    for name in ("raised", "escalated", "resolved"):
        value = REGISTRY.get_sample_value(
            f"vigil_signals_{name}_total", {"rule": "unit-initialised", "grade": "none"}
        )
        assert value == 0.0


def test_only_a_sent_delivery_observes_signal_to_delivery_latency() -> None:
    observed = sample("vigil_signal_to_delivery_seconds_count")
    notifier_metrics.record_delivery("unit-channel", "failed", NOW, now=NOW)
    notifier_metrics.record_delivery("unit-channel", "sent", NOW - timedelta(seconds=4), now=NOW)
    assert sample("vigil_deliveries_total", channel="unit-channel", outcome="failed") == 1
    assert sample("vigil_deliveries_total", channel="unit-channel", outcome="sent") == 1
    assert sample("vigil_signal_to_delivery_seconds_count") == observed + 1


def test_an_empty_queue_has_age_zero() -> None:
    metrics.set_queue(rules_metrics.OUTBOX_BACKLOG, rules_metrics.OUTBOX_OLDEST_AGE, 0, None)
    assert sample("vigil_outbox_oldest_pending_age_seconds") == 0
    metrics.set_queue(rules_metrics.OUTBOX_BACKLOG, rules_metrics.OUTBOX_OLDEST_AGE, 3, 12.5)
    assert sample("vigil_outbox_backlog") == 3
    assert sample("vigil_outbox_oldest_pending_age_seconds") == 12.5


class FakeConsumer:
    """The three calls lag sampling makes of an aiokafka consumer."""

    def __init__(
        self,
        highwater: dict[TopicPartition, int | None],
        committed: dict[TopicPartition, int | None],
    ) -> None:
        self._highwater = highwater
        self._committed = committed

    def assignment(self) -> set[TopicPartition]:
        return set(self._highwater)

    def highwater(self, partition: TopicPartition, /) -> int | None:
        return self._highwater[partition]

    async def committed(self, partition: TopicPartition, /) -> int | None:
        return self._committed[partition]


async def test_lag_is_highwater_minus_committed_and_revoked_partitions_disappear() -> None:
    zero, one, two = (TopicPartition("unit.topic", n) for n in range(3))
    consumer = FakeConsumer({zero: 10, one: 5, two: None}, {zero: 4, one: None, two: None})

    await metrics.record_consumer_lag("unit-group", consumer)

    lag = {"group": "unit-group", "topic": "unit.topic"}
    assert REGISTRY.get_sample_value("vigil_consumer_lag_records", {**lag, "partition": "0"}) == 6
    assert REGISTRY.get_sample_value("vigil_consumer_lag_records", {**lag, "partition": "1"}) == 5
    # no fetch answered for partition 2 yet: no guess
    assert (
        REGISTRY.get_sample_value("vigil_consumer_lag_records", {**lag, "partition": "2"}) is None
    )

    await metrics.record_consumer_lag("unit-group", FakeConsumer({one: 5}, {one: 5}))

    assert (
        REGISTRY.get_sample_value("vigil_consumer_lag_records", {**lag, "partition": "0"}) is None
    )
    assert REGISTRY.get_sample_value("vigil_consumer_lag_records", {**lag, "partition": "1"}) == 0
