"""How a failure is classified (a component away, or one bad item) and described without
quoting what it was about.

An exception's message can quote the data that caused it (a ``UnicodeEncodeError`` holds
the whole string, a database error the offending value), and Vigil's data is clinical: so
the descriptions here name the exception's type and where it was raised, never its
message. They are what goes into a log line, a failed delivery's reason or /tasks.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import asyncpg
from aiokafka.errors import KafkaError, KafkaTimeoutError

# Errors that say a component is away or busy (the database, the broker, the network),
# not that the item in hand is bad: retrying the same work later is the cure. Anything
# else met while handling one item is that item's failure.
OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection lost or refused
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialisation, deadlock
    KafkaTimeoutError,
)
# What a step that also talks to the broker retries: the outages above and any error of
# the Kafka client (a broker away, a leader moving, a request refused for now).
BROKER_OUTAGES: tuple[type[BaseException], ...] = (*OUTAGES, KafkaError)


def outages_and(*retry_later: type[BaseException]) -> tuple[type[BaseException], ...]:
    """:data:`OUTAGES` and a step's own errors that mean "try again later" (no channel
    took a report, the broker did not acknowledge in time): what its loop retries with
    back-off instead of letting the supervisor restart it."""
    return (*OUTAGES, *retry_later)


_ROOT = Path(__file__).resolve().parents[1]


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says a component is away rather than that an item is bad
    (aiokafka marks its own retriable errors)."""
    if isinstance(error, OUTAGES):
        return True
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))


def _where(filename: str) -> str:
    """A frame's file relative to the repository, or from ``site-packages`` on, or the
    stdlib module path: short, and free of the machine's folders."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(_ROOT))
    except ValueError:
        parts = path.parts
        for marker in ("site-packages", "lib"):
            if marker in parts:
                index = len(parts) - 1 - parts[::-1].index(marker)
                return "/".join(parts[index + 1 :])
        return path.name


def _is_ours(filename: str) -> bool:
    try:
        Path(filename).resolve().relative_to(_ROOT)
    except ValueError:
        return False
    return "site-packages" not in filename


def failure_summary(error: BaseException) -> str:
    """``ValueError at services/notifier/adapters/smtp.py:52 in build``: the type and where
    it was raised (and the innermost line of Vigil's own code, when it was raised in a
    library); never the message."""
    name = type(error).__qualname__
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    if not frames:
        return name
    last = frames[-1]
    text = f"{name} at {_where(last.filename)}:{last.lineno} in {last.name}"
    ours = [frame for frame in frames if _is_ours(frame.filename)]
    if ours and ours[-1] is not last:
        text += f", called from {_where(ours[-1].filename)}:{ours[-1].lineno} in {ours[-1].name}"
    return text


def failure_traceback(error: BaseException) -> str:
    """The traceback of ``error`` and the exceptions it was raised from or during: every
    frame with its source line and each exception's type, without the messages."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        chain.append(current)
        seen.add(id(current))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    parts = []
    for index, exception in enumerate(reversed(chain)):
        if index:
            parts.append("\nwhich led to:\n")
        frames = traceback.extract_tb(exception.__traceback__)
        for frame in frames:
            parts.append(
                f'  File "{_where(frame.filename)}", line {frame.lineno}, in {frame.name}\n'
            )
            if frame.line:
                parts.append(f"    {frame.line.strip()}\n")
        parts.append(f"{type(exception).__module__}.{type(exception).__qualname__}\n")
    return "".join(parts).rstrip("\n")
