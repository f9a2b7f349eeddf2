"""How work reaches the rules service: the Kafka consumer of facts, and what it makes of
each record."""
