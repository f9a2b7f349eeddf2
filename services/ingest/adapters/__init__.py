"""Ingest's adapters: the Kafka publisher."""
