"""Time-based one-time codes (RFC 6238: SHA-1, 6 digits, 30-second steps) as the workspace's
optional second factor: a code is accepted in its own step or one step either side (clock
drift), and only once: a step at or before the last accepted one is refused, so a code seen
over a shoulder cannot be used again."""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp

STEP_SECONDS = 30
DRIFT_STEPS = 1
ISSUER = "Vigil workspace"


def new_secret() -> str:
    """A fresh base32 secret of 160 bits (the RFC 4226 recommendation)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from a QR code."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def code_at(secret: str, when: datetime) -> str:
    """The code for the step holding ``when`` (for tests and the enrolment check)."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).at(when)


def accepted_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The step ``code`` belongs to when it is valid now and newer than ``last_step``, else
    None. The caller stores the returned step as the new ``last_step``."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = totp.timecode(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None
