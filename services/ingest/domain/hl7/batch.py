"""HL7 v2.5.1 batches (2.10.3) in one MLLP block: split into messages, answered as a
batch (pure)::

    [FHS] { [BHS] { MSH ... } [BTS] } [FTS]

A block whose first segment is FHS or BHS is a batch file: one or more batches, each
after the first opened by its BHS. Each of its messages begins at an
MSH (found however it hides, as ``envelope.header_name`` finds it) and is handed on as the
bytes it was sent as, to be read, authenticated and kept exactly as a message in a block
of its own: its own MSH-3/MSH-4 is checked against the connection's source. The envelope
is only checked: its segments in their places, each BTS-1 (message count) and FTS-1
(batch count), when given, matching what came, and at most
``MAX_MESSAGES`` messages. A batch that is not whole is refused whole, never half read.

The answer (2.10.3.2) is a file of the ACKs: FHS when the file had one; for each batch a
BHS naming the batch it answers (BHS-12), one ACK per message in the order sent and BTS
with their count; FTS with the count of batches. Lines are found in the bytes (CR, LF
or CR LF): in every character set a batch is read in (ASCII-based; UTF-16 and UTF-32
batches are refused) those bytes are only ever line ends.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from services.ingest.domain.hl7.ack import escape
from services.ingest.domain.hl7.envelope import (
    NotOneMessage,
    header_name,
    not_one_message,
)
from services.ingest.domain.hl7.outcome import APPLICATION_ERROR, SEGMENT_SEQUENCE_ERROR, Hl7Problem

MAX_MESSAGES = 1000
"""The most messages one batch may hold (the default rate-limit burst): each is a receipt
written and an ACK sent, and a block of tiny messages must not multiply them unbounded."""
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
_OPENERS = frozenset({"FHS", "BHS"})


@dataclass(frozen=True)
class Batch:
    """A batch file: its messages, and which batch of the file each belongs to."""

    messages: tuple[bytes, ...]
    """Each message as sent, from its MSH to the next header, in the order sent."""
    file_header: tuple[str, ...] | None
    """FHS split at its field separator (FHS-n is ``[n - 1]``), when the file has one."""
    batches: tuple[tuple[tuple[str, ...] | None, int], ...]
    """Each batch's BHS (split as FHS is; None without one) and how many of the messages,
    in order, are its."""

    @property
    def batch_header(self) -> tuple[str, ...] | None:
        return self.batches[0][0]


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


_SHAPE = "a block holds one batch file, [FHS] { [BHS] {MSH ...} [BTS] } [FTS], and nothing after it"


@dataclass
class _Open:
    """One batch of the file as it is read."""

    header: _Line | None
    starts: list[int]
    trailer: _Line | None = None


def read_block(content: bytes, text: str) -> Batch | NotOneMessage | None:
    """A batch (or why it cannot be read), why one message is not one, or None.

    ``text`` is the block decoded as one message, for the check of a block that is no
    batch."""
    first = next(_lines(content), None)  # a message is not split here: only its first line
    if first is not None and first.name in _OPENERS:
        return read_batch(content, list(_lines(content)))
    return not_one_message(text)


def read_batch(content: bytes, lines: list[_Line]) -> Batch | NotOneMessage:
    """The messages of a batch file, whose first line is FHS or BHS (2.10.3.1: a file
    holds one or more batches; a batch after the first opens with its BHS)."""
    opener = str(lines[0].name)
    file_header: _Line | None = None
    file_trailer: _Line | None = None
    batches: list[_Open] = []
    ends: list[int] = []  # where a message may end: every envelope segment and MSH
    for position, line in enumerate(lines, start=1):
        name, current = line.name, batches[-1] if batches else None
        open_batch = current is not None and current.trailer is None
        if name is None:
            if not (open_batch and current and current.starts) or file_trailer is not None:
                return _refused(position, opener, f"a segment outside any message: {_SHAPE}")
            continue
        ends.append(line.start)
        if file_trailer is not None:
            return _refused(position, opener, f"{name} after FTS: {_SHAPE}")
        if name == "FHS" and position == 1:
            file_header = line
        elif name == "BHS":  # a new batch (its BTS, like the one before it, is optional)
            batches.append(_Open(line, []))
        elif name == "MSH" and (open_batch or current is None):
            if current is None:  # a file or batch without BHS: one batch, no header
                current = _Open(None, [])
                batches.append(current)
            current.starts.append(line.start)
        elif name == "BTS" and open_batch and current is not None:
            current.trailer = line
        elif name == "FTS":
            file_trailer = line
        else:
            return _refused(position, opener, f"{name} out of place: {_SHAPE}")
    ends.append(len(content))
    messages = tuple(
        content[start : next(end for end in ends if end > start)]
        for batch in batches
        for start in batch.starts
    )
    if len(messages) > MAX_MESSAGES:
        text = (
            f"the batch holds {len(messages)} messages; the most one block may hold is "
            f"{MAX_MESSAGES}: send it in smaller batches"
        )
        problem = Hl7Problem(opener, 1, 0, APPLICATION_ERROR, text)
        return NotOneMessage(problem, "mllp-batch-too-large")
    counted = _count_problem(batches, file_trailer)
    if counted is not None:
        return counted
    return Batch(
        messages,
        _fields(file_header) if file_header else None,
        tuple((_fields(b.header) if b.header else None, len(b.starts)) for b in batches)
        or ((None, 0),),
    )


def _count_problem(batches: list[_Open], file_trailer: _Line | None) -> NotOneMessage | None:
    """Each BTS-1 (its batch's message count) and FTS-1 (the file's batch count), when
    given, must be what came: a batch that lost a message is not read in part."""
    counts = [
        (
            batch.trailer,
            {str(len(batch.starts))},
            f"the {len(batch.starts)} messages its batch holds",
        )
        for batch in batches
        if batch.trailer is not None
    ]
    if file_trailer is not None:
        expected = {str(len(batches))} | ({"0", "1"} if len(batches) <= 1 else set())
        counts.append((file_trailer, expected, f"the {len(batches)} batches the file holds"))
    for line, expected, what in counts:
        fields = _fields(line)
        given = fields[1].strip() if len(fields) > 1 else ""
        if given and given not in expected:
            text = (
                f"{line.name}-1 does not match {what}: a batch that is not whole is refused "
                "whole; send it again"
            )
            problem = Hl7Problem(str(line.name), 1, 1, SEGMENT_SEQUENCE_ERROR, text)
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


def batch_ack(batch: Batch, acks: list[bytes], *, control_id: str, now: datetime) -> bytes:
    """The batch acknowledgement: FHS when the file had one, then for each batch its BHS,
    one ACK per message in order and BTS with their count, then FTS with the count of
    batches."""
    stamp = now.strftime("%Y%m%d%H%M%S+0000")
    lines: list[bytes] = []
    if batch.file_header is not None:
        lines.append(_segment(_header("FHS", batch.file_header, stamp, f"{control_id}F")))
    given = iter(acks)
    for number, (header, count) in enumerate(batch.batches, start=1):
        fields = header or batch.file_header or ("BHS", "^~\\&")
        suffix = "" if len(batch.batches) == 1 else f"B{number}"
        lines.append(_segment(_header("BHS", fields, stamp, f"{control_id}{suffix}")))
        mine = list(itertools.islice(given, count))
        lines += mine
        lines.append(_segment(f"BTS|{len(mine)}"))
    if batch.file_header is not None:
        lines.append(_segment(f"FTS|{len(batch.batches)}"))
    return b"".join(lines)


def _segment(text: str) -> bytes:
    return (text + "\r").encode("ascii", errors="replace")
