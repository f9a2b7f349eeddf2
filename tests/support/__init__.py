"""Fixtures' building blocks: real components started for the tests."""
