"""ingest: receives results from labs and sites, validates them and publishes events."""
