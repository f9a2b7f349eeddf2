"""Pure notifier logic: rosters, who is told, what the message says."""
