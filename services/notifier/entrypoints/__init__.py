"""How work reaches the notifier: the signal consumer, the audit-log catch-up, the delivery
worker, and the acknowledgement page and API."""
