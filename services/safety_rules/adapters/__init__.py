"""The rules service's adapters: PostgreSQL and the outbox relay."""
