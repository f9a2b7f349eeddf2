"""Reading MLLP frames (``0x0B`` message ``0x1C 0x0D``) with every input bounded.

Why not ``hl7.mllp``'s reader: its ``readblock`` waits for ``0x1C 0x0D`` without a time
limit (a frame missing its final ``0x0D``, or a half-sent one, holds the connection
forever and is never answered), and past its ``limit`` it raises and clears its buffer, so
an oversized message can be neither answered nor kept. This reader keeps a bounded
prefix of any frame, answers for every frame it saw begin, and gives up on a frame that
does not end in time.

Rules, in the order they apply:

- between frames, ``CR``/``LF`` and spaces are skipped (some senders end a frame with
  ``CR LF``); waiting longer than the idle timeout for a frame to begin raises IdleTimeout;
- a frame ends at ``0x1C``: the byte cannot occur inside HL7 data, so what came before it
  is the whole message. The ``0x0D`` after it is awaited briefly; when it does not come
  the frame is still returned (``missing_final_cr``), so the sender is answered at once;
- bytes before ``0x0B`` are discarded (counted in ``discarded``) up to the next ``0x0B``;
  when a ``0x1C`` comes first, they were an unframed message (``no-start-block``);
- a frame larger than ``max_bytes`` is read to its end but only its first ``keep_bytes``
  are kept (``oversize``);
- a frame that does not end within ``frame_timeout`` seconds of its first byte, or that
  the sender abandons (end of stream), is returned as ``incomplete-frame`` with what came
  of it, and the stream cannot be read further (``ends_stream``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
_BETWEEN_FRAMES = b"\r\n\t "
_CHUNK = 64 * 1024
# how long the 0x0D after 0x1C is waited for: a sender writes both at once, so this only
# delays the answer to a sender that omits it
TRAILER_GRACE_SECONDS = 1.0


class FrameProblem(StrEnum):
    OVERSIZE = "oversize"
    INCOMPLETE = "incomplete-frame"
    NO_START_BLOCK = "no-start-block"


class IdleTimeout(Exception):
    """No frame began within the idle timeout."""


@dataclass(frozen=True)
class Frame:
    content: bytes
    """The message between 0x0B and 0x1C, or its first bytes when it has a problem."""
    size: int
    """How many bytes the sender sent for it."""
    problem: FrameProblem | None = None
    missing_final_cr: bool = False
    ends_stream: bool = False
    """The connection cannot go on: the frame was abandoned or timed out."""
    discarded: int = 0
    """Bytes outside any frame dropped before this one."""


class _Collected:
    """A frame's content as it arrives: everything up to ``max_bytes``, then only the
    first ``keep_bytes``."""

    def __init__(self, max_bytes: int, keep_bytes: int) -> None:
        self.max_bytes, self.keep_bytes = max_bytes, keep_bytes
        self.kept = bytearray()
        self.size = 0

    @property
    def oversize(self) -> bool:
        return self.size > self.max_bytes

    def add(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if not self.oversize:
            self.kept += data
        elif len(self.kept) < self.keep_bytes:
            self.kept += data[: self.keep_bytes - len(self.kept)]
        if self.oversize and len(self.kept) > self.keep_bytes:
            del self.kept[self.keep_bytes :]


class FrameReader:
    """Frames from one connection's stream."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_bytes: int,
        keep_bytes: int,
        frame_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._max_bytes = max_bytes
        self._keep_bytes = min(keep_bytes, max_bytes)
        self._frame_timeout = frame_timeout
        self._clock = clock
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self, deadline: float) -> bool:
        """Read more into the buffer; False at the end of the stream. Raises TimeoutError
        at ``deadline``."""
        if self._eof:
            return False
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            chunk = await self._reader.read(_CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    async def next_frame(self, idle_timeout: float) -> Frame | None:
        """The next frame; None when the stream ended between frames."""
        idle_deadline = self._clock() + idle_timeout
        while True:
            skip = len(self._buffer) - len(self._buffer.lstrip(_BETWEEN_FRAMES))
            del self._buffer[:skip]
            if self._buffer:
                break
            try:
                if not await self._fill(idle_deadline):
                    return None
            except TimeoutError:
                raise IdleTimeout from None
        return await self._frame(self._clock() + self._frame_timeout)

    async def _frame(self, deadline: float) -> Frame:
        collected = _Collected(self._max_bytes, self._keep_bytes)
        framed, discarded = self._buffer[0] == START_BLOCK, 0
        if framed:
            del self._buffer[0]
        while True:
            end = self._buffer.find(END_BLOCK)
            start = -1 if framed else self._buffer.find(START_BLOCK)
            if start != -1 and (end == -1 or start < end):
                # what came before 0x0B was noise outside a frame: resynchronise on it
                discarded += collected.size + start
                collected = _Collected(self._max_bytes, self._keep_bytes)
                del self._buffer[: start + 1]
                framed = True
                continue
            if end != -1:
                collected.add(self._buffer[:end])
                del self._buffer[: end + 1]
                break
            collected.add(self._buffer)
            self._buffer.clear()
            try:
                more = await self._fill(deadline)
            except TimeoutError:
                more = False
            if not more:
                return Frame(
                    bytes(collected.kept),
                    collected.size,
                    FrameProblem.INCOMPLETE,
                    ends_stream=True,
                    discarded=discarded,
                )
        problem = (
            FrameProblem.OVERSIZE
            if collected.oversize
            else None
            if framed
            else FrameProblem.NO_START_BLOCK
        )
        return Frame(
            bytes(collected.kept),
            collected.size,
            problem,
            missing_final_cr=not await self._final_cr(),
            discarded=discarded,
        )

    async def _final_cr(self) -> bool:
        """Consume the 0x0D that ends a frame; False when it did not come in time."""
        if not self._buffer:
            try:
                await self._fill(self._clock() + TRAILER_GRACE_SECONDS)
            except TimeoutError:
                return False
        if self._buffer[:1] == bytes([CARRIAGE_RETURN]):
            del self._buffer[0]
            return True
        return False
