"""The rules service's use cases over its ports: judge a batch of facts, explain, simulate,
watch."""
