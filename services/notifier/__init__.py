"""notifier: turns safety signals into messages for the people on the study roster."""
