"""Ingest's use cases over its ports: keep every message, publish its events, re-drive."""
