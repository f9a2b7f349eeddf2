"""Password hashes of the workspace accounts: Argon2id through argon2-cffi, with the
library's current parameters; a hash made with weaker ones is replaced at the next
successful sign-in."""

from __future__ import annotations

import contextlib
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile (library defaults)
# verified against when the name is unknown or has no password, so that a wrong name takes
# as long to refuse as a wrong password. Made once with the library's parameters of the time,
# so that no process start spends a hash on it; made again (once) should they have changed,
# so that it always costs what a real check costs.
_MADE_EARLIER = (
    "$argon2id$v=19$m=65536,t=3,p=4$LSYhwZBqbHZIxeLfdNL8Lw$"
    "u72oMMpmTLFNLCwjU7xoM+N5ibI+MyUHe9VRY4ROKT8"
)


@functools.cache
def _dummy_hash() -> str:
    if _HASHER.check_needs_rehash(_MADE_EARLIER):
        return _HASHER.hash("no account has this password: it only spends the same time")
    return _MADE_EARLIER


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    """Whether ``password`` matches ``stored_hash`` (None: no password, always False, in the
    same time), and the new hash to store when the parameters changed since it was made."""
    if stored_hash is None:
        _spend_the_same_time(password)
        return False, None
    try:
        _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if _HASHER.check_needs_rehash(stored_hash):
        return True, _HASHER.hash(password)
    return True, None


def _spend_the_same_time(password: str) -> None:
    with contextlib.suppress(VerificationError):
        _HASHER.verify(_dummy_hash(), password)


def spend_the_same_time(password: str) -> None:
    """Verify against a hash no account has: the time a real check would take."""
    _spend_the_same_time(password)
