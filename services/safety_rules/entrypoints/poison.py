"""Telling an outage from a poison record, and saying why a record failed without its values.

A batch can fail for two kinds of reason. The database or the broker may be away (a
connection refused or lost, a server shutting down, a timeout): nothing is wrong with the
records, so the whole batch is retried with back-off. Or one record makes the store or the
rules fail whatever the weather (a value the store's codec cannot encode, PostgreSQL
refusing a value, an exception in the rules): retrying it would stop its partition for
ever, so the batch is split until that record is found, and it is dead-lettered.
"""

from __future__ import annotations

from typing import Literal

import asyncpg
from aiokafka.errors import KafkaError
from pydantic import ValidationError

# PostgreSQL error classes a record's content causes: 22 data exception (a value out of
# range, a character the encoding cannot hold), 23 integrity constraint violation, 54
# program limit exceeded (a value too large). Every other class (08 connection, 40
# serialization, 53 resources, 57 operator intervention, ...) passes with time.
DATA_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})

Step = Literal["judged", "stored", "projected"]


class RepeatedConflicts(Exception):
    """Another instance kept writing the batch's subjects: not the data's fault."""


class RecordFailure(Exception):
    """A batch, or one record, failed for a reason its data causes.

    ``step`` says how far the batch got (judged, stored, projected); ``reason`` names the
    exception type and the fields or the PostgreSQL error code, never a value.
    """

    def __init__(self, error: BaseException, step: Step) -> None:
        self.error = error
        self.step = step
        super().__init__(failure_reason(error, step))

    @property
    def reason(self) -> str:
        return str(self)


def is_transient(error: BaseException) -> bool:
    """True for an outage (retry the batch as it is), False for a failure the data causes."""
    if isinstance(error, RecordFailure):
        return False
    if isinstance(error, OSError | TimeoutError | KafkaError | RepeatedConflicts):
        return True
    if isinstance(error, asyncpg.PostgresError):
        return (error.sqlstate or "")[:2] not in DATA_SQLSTATE_CLASSES
    # the client's own errors: a lost or busy connection passes; a value it cannot encode
    # (asyncpg's DataError is a PostgresError above) does not
    return isinstance(error, asyncpg.InterfaceError)


def failure_reason(error: BaseException, step: Step) -> str:
    """What failed, value-free: e.g. ``could not be stored: OverflowError``."""
    what = type(error).__name__
    if isinstance(error, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) or "(event)" for e in error.errors()})
        return f"could not be {step}: {what} in {', '.join(fields[:10])}"
    if isinstance(error, asyncpg.PostgresError):
        return f"could not be {step}: PostgreSQL error {error.sqlstate} ({what})"
    return f"could not be {step}: {what}"
