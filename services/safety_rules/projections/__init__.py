"""Read models the rules service keeps from the event store."""
