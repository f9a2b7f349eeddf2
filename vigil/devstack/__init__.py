"""Real components started on this machine for ``vigil dev`` and for the tests."""
