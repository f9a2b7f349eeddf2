"""What Vigil's services have in common: settings, event schemas, Kafka wiring, the database."""
