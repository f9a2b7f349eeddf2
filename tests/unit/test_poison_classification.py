"""What makes a batch retry as it is (an outage) and what makes it split (its data)."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from services.safety_rules.entrypoints.poison import (
    RecordFailure,
    RepeatedConflicts,
    failure_reason,
    is_transient,
)
from shared.events import LabResultReported


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        KafkaConnectionError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection lost"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.SerializationError("could not serialize"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.InterfaceError("another operation is in progress"),
        RepeatedConflicts(),
    ],
)
def test_an_outage_retries_the_whole_batch(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        OverflowError("date value out of range"),
        ZeroDivisionError(),
        KeyError("01-003"),
        ValueError("bad"),
        asyncpg.exceptions.DatetimeFieldOverflowError("out of range"),
        asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted"),
        asyncpg.exceptions.NumericValueOutOfRangeError("out of range"),
        asyncpg.exceptions.ProgramLimitExceededError("index row too big"),
    ],
)
def test_a_failure_the_data_causes_splits_the_batch(error: Exception) -> None:
    assert not is_transient(error)
    assert not is_transient(RecordFailure(error, "stored"))


def test_the_reason_names_the_step_and_the_error_never_the_value() -> None:
    assert failure_reason(KeyError("01-003"), "judged") == "could not be judged: KeyError"
    overflow = asyncpg.exceptions.DatetimeFieldOverflowError("9999-12-31 out of range")
    reason = failure_reason(overflow, "stored")
    assert reason == "could not be stored: PostgreSQL error 22008 (DatetimeFieldOverflowError)"
    with pytest.raises(ValidationError) as caught:
        LabResultReported.model_validate({"subject_id": "01 003", "value": "1E+400"})
    reason = failure_reason(caught.value, "judged")
    assert reason.startswith("could not be judged: ValidationError in ")
    assert "subject_id" in reason
    assert "value" in reason
    assert "01 003" not in reason
    assert "1E+400" not in reason
