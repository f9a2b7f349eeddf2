"""The ``vigil`` command and the embedded development stack."""
