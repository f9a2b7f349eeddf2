"""The MLLP frame reader: every frame it saw begin is returned, bounded in size and time."""

from __future__ import annotations

import asyncio

import pytest

from services.ingest.entrypoints.mllp_frames import FrameProblem, FrameReader, IdleTimeout

MESSAGE = b"MSH|^~\\&|LIS|PKUPH-LAB|||20261120083000||ORU^R01|C1|P|2.5.1\rPID|1||01-003"


def stream(*chunks: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


def frames(reader: asyncio.StreamReader, **limits: float) -> FrameReader:
    settings = {"max_bytes": 1024, "keep_bytes": 16, "frame_timeout": 5.0, **limits}
    return FrameReader(
        reader,
        max_bytes=int(settings["max_bytes"]),
        keep_bytes=int(settings["keep_bytes"]),
        frame_timeout=settings["frame_timeout"],
    )


async def test_a_well_formed_frame_is_its_message_and_the_stream_goes_on() -> None:
    reader = frames(stream(b"\x0b" + MESSAGE + b"\x1c\x0d", b"\x0bsecond\x1c\x0d"))
    first = await reader.next_frame(1)
    second = await reader.next_frame(1)
    assert first is not None
    assert second is not None
    assert (first.content, first.problem, first.missing_final_cr) == (MESSAGE, None, False)
    assert second.content == b"second"
    assert await reader.next_frame(1) is None


async def test_a_frame_split_across_reads_is_put_together() -> None:
    raw = b"\x0b" + MESSAGE + b"\x1c\x0d"
    reader = frames(stream(*(raw[i : i + 7] for i in range(0, len(raw), 7))))
    frame = await reader.next_frame(1)
    assert frame is not None
    assert frame.content == MESSAGE


async def test_a_frame_without_its_final_cr_is_answered_without_waiting_for_it() -> None:
    reader = frames(stream(b"\x0b" + MESSAGE + b"\x1c", eof=False))
    frame = await asyncio.wait_for(reader.next_frame(1), timeout=10)
    assert frame is not None
    assert (frame.content, frame.problem, frame.missing_final_cr) == (MESSAGE, None, True)


async def test_the_next_frame_right_after_a_missing_cr_is_not_lost() -> None:
    reader = frames(stream(b"\x0bone\x1c\x0btwo\x1c\x0d"))
    first, second = await reader.next_frame(1), await reader.next_frame(1)
    assert first is not None
    assert second is not None
    assert (first.content, first.missing_final_cr) == (b"one", True)
    assert (second.content, second.missing_final_cr) == (b"two", False)


async def test_an_oversized_frame_keeps_its_first_bytes_and_the_stream_stays_in_step() -> None:
    big = b"x" * 5000
    reader = frames(stream(b"\x0b" + big + b"\x1c\x0d", b"\x0bnext\x1c\x0d"), max_bytes=1024)
    frame = await reader.next_frame(1)
    assert frame is not None
    assert frame.problem is FrameProblem.OVERSIZE
    assert (frame.content, frame.size, frame.ends_stream) == (b"x" * 16, 5000, False)
    following = await reader.next_frame(1)
    assert following is not None
    assert following.content == b"next"


async def test_a_frame_abandoned_by_the_sender_is_returned_incomplete() -> None:
    reader = frames(stream(b"\x0b" + MESSAGE))
    frame = await reader.next_frame(1)
    assert frame is not None
    assert frame.problem is FrameProblem.INCOMPLETE
    assert frame.ends_stream
    assert frame.content == MESSAGE[:1024]


async def test_a_frame_that_does_not_end_in_time_is_returned_incomplete() -> None:
    reader = frames(stream(b"\x0b" + MESSAGE, eof=False), frame_timeout=0.2)
    frame = await asyncio.wait_for(reader.next_frame(5), timeout=10)
    assert frame is not None
    assert (frame.problem, frame.ends_stream) == (FrameProblem.INCOMPLETE, True)


async def test_no_frame_within_the_idle_timeout_raises_idle_timeout() -> None:
    reader = frames(stream(eof=False))
    with pytest.raises(IdleTimeout):
        await asyncio.wait_for(reader.next_frame(0.1), timeout=10)


async def test_line_ends_between_frames_are_skipped() -> None:
    reader = frames(stream(b"\r\n\x0bone\x1c\x0d\r\n\x0btwo\x1c\x0d\n"))
    contents = [(await reader.next_frame(1)), (await reader.next_frame(1))]
    assert [f.content for f in contents if f is not None] == [b"one", b"two"]
    assert await reader.next_frame(1) is None


async def test_noise_before_a_start_block_is_dropped_and_counted() -> None:
    reader = frames(stream(b"garbage\x0bone\x1c\x0d"))
    frame = await reader.next_frame(1)
    assert frame is not None
    assert (frame.content, frame.problem, frame.discarded) == (b"one", None, 7)


async def test_a_message_sent_without_a_start_block_is_a_frame_with_that_problem() -> None:
    reader = frames(stream(MESSAGE + b"\x1c\x0d"))
    frame = await reader.next_frame(1)
    assert frame is not None
    assert frame.problem is FrameProblem.NO_START_BLOCK
    assert frame.content == MESSAGE
