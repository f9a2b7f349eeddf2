"""The notifier's adapters: PostgreSQL work queue and SMTP."""
