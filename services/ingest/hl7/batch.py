"""HL7 v2.5.1 batches (2.10.3) in one MLLP block: split into messages, answered as a
batch (pure)::

    [FHS] [BHS] { MSH ... } [BTS] [FTS]

A block whose first segment is FHS or BHS is a batch. Each of its messages begins at an
MSH (found however it hides, as ``envelope.header_name`` finds it) and is handed on as the
bytes it was sent as, to be read, authenticated and kept exactly as a message in a block
of its own: its own MSH-3/MSH-4 is checked against the connection's source. The envelope
is only checked: one batch per block, its segments in their places, and BTS-1 (message
count) and FTS-1 (batch count), when given, matching what came, and at most
``MAX_MESSAGES`` messages. A batch that is not whole is refused whole, never half read.

The answer (2.10.3.2) is a batch of the ACKs: FHS when the batch had one, BHS naming the
batch it answers (BHS-12), one ACK per message in the order sent, BTS with their count,
and FTS. Lines are found in the bytes (CR, LF or CR LF): in every character set a batch
is read in (ASCII-based; UTF-16 and UTF-32 batches are refused) those bytes are only
ever line ends.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from services.ingest.hl7.ack import escape
from services.ingest.hl7.envelope import (
    NotOneMessage,
    header_name,
    not_one_message,
)
from services.ingest.hl7.outcome import APPLICATION_ERROR, SEGMENT_SEQUENCE_ERROR, Hl7Problem

MAX_MESSAGES = 1000
"""The most messages one batch may hold (the default rate-limit burst): each is a receipt
written and an ACK sent, and a block of tiny messages must not multiply them unbounded."""
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
_OPENERS = frozenset({"FHS", "BHS"})


@dataclass(frozen=True)
class Batch:
    messages: tuple[bytes, ...]
    """Each message as sent, from its MSH to the next header."""
    file_header: tuple[str, ...] | None
    """FHS split at its field separator (FHS-n is ``[n - 1]``), when the batch has one."""
    batch_header: tuple[str, ...] | None


@dataclass(frozen=True)
class _Line:
    start: int
    text: str
    name: str | None


def _lines(content: bytes) -> Iterator[_Line]:
    """The block's non-blank lines, where each starts, and the header each is."""
    for match in _LINE.finditer(content):
        text = match.group().decode("ascii", errors="replace").strip("\r\n")
        if text.strip():
            yield _Line(match.start(), text, header_name(text))


def _fields(line: _Line) -> tuple[str, ...]:
    """An envelope segment split at its own field separator, from its name on (what hid
    the name before it left out)."""
    text = line.text[line.text.upper().index(str(line.name)) :]
    separator = text[3:4] or "|"
    return tuple(text.split(separator))


def _refused(position: int, opener: str, text: str) -> NotOneMessage:
    """The whole batch refused, ERR on its first header (``opener``): the segment at fault
    is named by its position, never by its content."""
    problem = Hl7Problem(opener, 1, 0, SEGMENT_SEQUENCE_ERROR, f"segment {position}: {text}")
    return NotOneMessage(problem, "mllp-batch-malformed")


_SHAPE = "a block holds one batch, [FHS] [BHS] {MSH ...} [BTS] [FTS], and nothing after it"


def read_block(content: bytes, text: str) -> Batch | NotOneMessage | None:
    """A batch (or why it cannot be read), why one message is not one, or None.

    ``text`` is the block decoded as one message, for the check of a block that is no
    batch."""
    first = next(_lines(content), None)  # a message is not split here: only its first line
    if first is not None and first.name in _OPENERS:
        return read_batch(content, list(_lines(content)))
    return not_one_message(text)


def read_batch(content: bytes, lines: list[_Line]) -> Batch | NotOneMessage:
    """The messages of a batch block, whose first line is FHS or BHS."""
    opener = str(lines[0].name)
    seen: dict[str, _Line] = {}
    starts: list[int] = []
    end: int | None = None  # where the last message ends: at the first trailer
    for position, line in enumerate(lines, start=1):
        name = line.name
        if name is None:
            if not starts or end is not None:
                return _refused(position, opener, f"a segment outside any message: {_SHAPE}")
            continue
        if name == "MSH" and end is None:
            starts.append(line.start)
            continue
        if name in ("BTS", "FTS") and end is None:
            end = line.start
        if name in seen or "FTS" in seen or _out_of_place(name, seen, starts, end):
            return _refused(position, opener, f"{name} out of place: {_SHAPE}")
        seen[name] = line
    bounds = [*starts, len(content) if end is None else end]
    messages = tuple(content[a:b] for a, b in itertools.pairwise(bounds))
    if len(messages) > MAX_MESSAGES:
        text = (
            f"the batch holds {len(messages)} messages; the most one block may hold is "
            f"{MAX_MESSAGES}: send it in smaller batches"
        )
        problem = Hl7Problem(opener, 1, 0, APPLICATION_ERROR, text)
        return NotOneMessage(problem, "mllp-batch-too-large")
    counted = _count_problem(seen, len(messages))
    if counted is not None:
        return counted
    file_header, batch_header = seen.get("FHS"), seen.get("BHS")
    return Batch(
        messages,
        _fields(file_header) if file_header else None,
        _fields(batch_header) if batch_header else None,
    )


def _out_of_place(name: str, seen: dict[str, _Line], starts: list[int], end: int | None) -> bool:
    """Whether an envelope segment stands where 2.10.3 puts none (a second one of a
    kind, or anything after FTS, is out of place too)."""
    if name == "FHS":
        return bool(seen) or bool(starts)
    if name == "BHS":
        return bool(starts) or end is not None
    return name == "MSH"  # a message after the trailers


def _count_problem(seen: dict[str, _Line], messages: int) -> NotOneMessage | None:
    """BTS-1 (the batch's message count) and FTS-1 (the file's batch count), when given,
    must be what came: a batch that lost a message is not read in part."""
    batches = {"1"} if "BHS" in seen else {"0", "1"}
    for name, expected, what in (
        ("BTS", {str(messages)}, f"the {messages} messages the batch holds"),
        ("FTS", batches, "the one batch a block holds"),
    ):
        line = seen.get(name)
        fields = _fields(line) if line else ()
        given = fields[1].strip() if len(fields) > 1 else ""
        if given and given not in expected:
            text = (
                f"{name}-1 does not match {what}: a batch that is not whole is refused "
                "whole; send it again"
            )
            problem = Hl7Problem(name, 1, 1, SEGMENT_SEQUENCE_ERROR, text)
            return NotOneMessage(problem, "mllp-batch-count")
    return None


def _component(fields: tuple[str, ...], index: int) -> str:
    """FHS-n/BHS-n's first component (``index`` = n - 1), escaped for the answer."""
    if len(fields) <= index:
        return ""
    component = fields[1][:1] or "^"
    return escape(fields[index].split(component, 1)[0].strip())


def _header(name: str, fields: tuple[str, ...], stamp: str, control_id: str) -> str:
    """FHS or BHS of the answer: from Vigil to the batch's sender, BHS-12/FHS-12 naming
    the control id (BHS-11/FHS-11) of the batch it answers."""
    to = f"{_component(fields, 2)}|{_component(fields, 3)}"
    reference = _component(fields, 10)
    return f"{name}|^~\\&|VIGIL|VIGIL|{to}|{stamp}||||{escape(control_id)}|{reference}"


def batch_ack(
    batch: Batch, acks: list[bytes], *, control_id: str, now: datetime | None = None
) -> bytes:
    """The batch acknowledgement: the envelope around one ACK per message, in order."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")
    batch_fields = batch.batch_header or batch.file_header or ("BHS", "^~\\&")
    head = []
    if batch.file_header is not None:
        head.append(_header("FHS", batch.file_header, stamp, f"{control_id}F"))
    head.append(_header("BHS", batch_fields, stamp, control_id))
    tail = [f"BTS|{len(acks)}"] + (["FTS|1"] if batch.file_header is not None else [])
    envelope = ("\r".join(head) + "\r").encode("ascii", errors="replace")
    return envelope + b"".join(acks) + ("\r".join(tail) + "\r").encode("ascii")
