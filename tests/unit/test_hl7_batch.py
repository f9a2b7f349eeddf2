"""HL7 batches in one MLLP block: split into the messages as sent, refused whole when the
envelope is not whole, answered as a batch of ACKs."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest

from services.ingest.domain.hl7.batch import MAX_MESSAGES, Batch, batch_ack, read_block
from services.ingest.domain.hl7.envelope import NotOneMessage

ACK_TIME = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # when an ACK is written

FHS = "FHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||F1"
BHS = "BHS|^~\\&|LIS^x|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||B1"


def message(control: str, facility: str = "PKUPH-LAB") -> list[str]:
    return [
        f"MSH|^~\\&|LIS|{facility}|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|{control}|P|2.5.1",
        "PID|1||01-003^^^NCT05262686^SS",
        "OBX|1|NM|718-7^Hemoglobin^LN||7.0|g/dL|12-16|L|||F",
    ]


def block(*segments: str, end: str = "\r") -> bytes:
    return (end.join(segments) + end).encode()


def read(content: bytes) -> Batch | NotOneMessage | None:
    return read_block(content, content.decode("utf-8", errors="replace"))


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"])
def test_a_batch_is_split_into_its_messages_as_sent(end: str) -> None:
    first, second = message("C1"), message("C2", facility="OTHER-LAB")
    content = block(FHS, BHS, *first, *second, "BTS|2", "FTS|1", end=end)
    batch = read(content)
    assert isinstance(batch, Batch)
    assert batch.messages == (block(*first, end=end), block(*second, end=end))
    assert batch.file_header is not None
    assert batch.file_header[10] == "F1"
    assert batch.batch_header is not None
    assert batch.batch_header[10] == "B1"


def test_the_trailers_and_the_file_header_are_optional() -> None:
    batch = read(block(BHS, "", *message("C1"), "", *message("C2")))
    assert isinstance(batch, Batch)
    assert [m.lstrip(b"\r").split(b"|")[9] for m in batch.messages] == [b"C1", b"C2"]
    assert batch.file_header is None
    empty = read(block(FHS, BHS, "BTS|0", "FTS|1"))
    assert isinstance(empty, Batch)
    assert empty.messages == ()


def test_a_disguised_msh_in_a_batch_starts_a_message_of_its_own() -> None:
    hidden = [" msh" + message("C2")[0][3:], *message("C2")[1:]]
    batch = read(block(BHS, *message("C1"), *hidden, "BTS|2"))
    assert isinstance(batch, Batch)
    assert len(batch.messages) == 2
    assert batch.messages[1].startswith(b" msh|")  # refused alone, as not beginning with MSH


@pytest.mark.parametrize(
    ("segments", "reason"),
    [
        ([FHS, BHS, *message("C1"), "BTS|2", "FTS|1"], "mllp-batch-count"),
        ([FHS, BHS, *message("C1"), "BTS|1", "FTS|2"], "mllp-batch-count"),
        ([BHS, "PID|1||01-003", *message("C1")], "mllp-batch-malformed"),
        ([BHS, *message("C1"), "BTS|1", *message("C2")], "mllp-batch-malformed"),
        ([BHS, *message("C1"), "BTS|1", "PID|1||01-003"], "mllp-batch-malformed"),
        (
            [FHS, BHS, *message("C1"), "BTS|1", BHS, *message("C2"), "BTS|1", "FTS|1"],
            "mllp-batch-count",
        ),
        ([BHS, FHS, *message("C1")], "mllp-batch-malformed"),
        ([FHS, *message("C1"), "FTS|1", "BTS|1"], "mllp-batch-malformed"),
        ([FHS, BHS, *message("C1"), "BTS|1", "FTS|1", "FTS|1"], "mllp-batch-malformed"),
    ],
)
def test_a_batch_that_is_not_whole_is_refused_whole(segments: list[str], reason: str) -> None:
    refused = read(block(*segments))
    assert isinstance(refused, NotOneMessage)
    assert refused.reason_code == reason
    assert refused.problem.code == "100"
    assert "01-003" not in refused.problem.text  # never a value


def test_a_block_that_is_no_batch_is_checked_as_one_message() -> None:
    assert read(block(*message("C1"))) is None
    two = read(block(*message("C1"), *message("C2", facility="OTHER-LAB")))
    assert isinstance(two, NotOneMessage)
    assert two.reason_code == "mllp-second-message"


def test_the_answer_is_a_batch_of_the_acks_that_a_batch_reader_reads() -> None:
    batch = read(block(FHS, BHS, *message("C1"), *message("C2"), "BTS|2", "FTS|1"))
    assert isinstance(batch, Batch)
    acks = [
        b"MSH|^~\\&|VIGIL|VIGIL|LIS|PKUPH-LAB|20261120083001||ACK^R01^ACK|A1|P|2.5.1\rMSA|AA|C1\r",
        b"MSH|^~\\&|VIGIL|VIGIL|LIS|PKUPH-LAB|20261120083001||ACK^R01^ACK|A2|P|2.5.1\rMSA|AR|C2\r",
    ]
    now = datetime(2026, 11, 20, 0, 30, tzinfo=UTC)
    answer = batch_ack(batch, acks, control_id="ACKB1", now=now)
    parsed = hl7.parse_file(answer.decode())  # python-hl7 numbers FHS/BHS fields as MSH's
    assert str(parsed.header[11]) == "ACKB1F"
    assert str(parsed.header[12]) == "F1"  # FHS-12: the file it answers
    (answered,) = parsed
    assert str(answered.header[5]) == "LIS"  # BHS-5: BHS-3's first component only
    assert str(answered.header[6]) == "PKUPH-LAB"
    assert str(answered.header[11]) == "ACKB1"
    assert str(answered.header[12]) == "B1"  # BHS-12: the batch it answers
    assert [str(m.segment("MSA")[2]) for m in answered] == ["C1", "C2"]
    assert str(answered.trailer[1]) == "2"
    assert str(parsed.trailer[1]) == "1"


def test_a_file_of_two_batches_is_read_and_answered_batch_by_batch() -> None:
    """2.10.3.1: a file is [FHS] { [BHS] {MSH ...} [BTS] } [FTS]; FTS-1 counts its
    batches, and the answer acknowledges each batch in its own BHS ... BTS."""
    second = BHS.replace("||||B1", "||||B2")
    batch = read(
        block(FHS, BHS, *message("C1"), "BTS|1", second, *message("C2"), *message("C3"),
              "BTS|2", "FTS|2")
    )  # fmt: skip
    assert isinstance(batch, Batch)
    assert [m.split(b"\r")[0].split(b"|")[9] for m in batch.messages] == [b"C1", b"C2", b"C3"]
    acks = [f"MSH|^~\\&|VIGIL|VIGIL|LIS|PKUPH-LAB|1||ACK|A{n}|P|2.5.1\rMSA|AA|C{n}\r".encode()
            for n in (1, 2, 3)]  # fmt: skip
    parsed = hl7.parse_file(batch_ack(batch, acks, control_id="K", now=ACK_TIME).decode())
    assert [str(b.header[12]) for b in parsed] == ["B1", "B2"]  # each answers its batch
    assert [[str(m.segment("MSA")[2]) for m in b] for b in parsed] == [["C1"], ["C2", "C3"]]
    assert [str(b.trailer[1]) for b in parsed] == ["1", "2"]
    assert str(parsed.trailer[1]) == "2"


def test_a_batch_without_a_file_header_is_answered_without_one() -> None:
    batch = read(block(BHS, *message("C1")))
    assert isinstance(batch, Batch)
    answer = batch_ack(batch, [b"MSH|^~\\&|VIGIL\rMSA|AA|C1\r"], control_id="X", now=ACK_TIME)
    assert answer.startswith(b"BHS|")
    assert answer.endswith(b"BTS|1\r")


def test_a_batch_of_more_messages_than_the_rate_burst_is_refused_whole() -> None:
    small = ["MSH|^~\\&|LIS|PKUPH-LAB|||1||ORU^R01|C|P|2.5.1"]
    assert isinstance(read(block(BHS, *small * MAX_MESSAGES)), Batch)
    refused = read(block(BHS, *small * (MAX_MESSAGES + 1)))
    assert isinstance(refused, NotOneMessage)
    assert refused.reason_code == "mllp-batch-too-large"
    assert "smaller batches" in refused.problem.text


def test_envelope_segments_are_read_whatever_hides_their_names() -> None:
    content = b"\xef\xbb\xbf" + block(" " + BHS, *message("C1"), "\tbts|1", " FTS#1")
    batch = read(content)
    assert isinstance(batch, Batch)
    assert batch.batch_header is not None
    assert batch.batch_header[10] == "B1"
    assert batch.messages == (block(*message("C1")),)
    refused = read(block(BHS, *message("C1"), " BTS|2"))
    assert isinstance(refused, NotOneMessage)
    assert refused.reason_code == "mllp-batch-count"


def test_a_batch_header_closes_the_batch_before_it_whose_trailer_is_optional() -> None:
    second = BHS.replace("||||B1", "||||B2")
    batch = read(block(FHS, BHS, *message("C1"), second, *message("C2"), "FTS|2"))
    assert isinstance(batch, Batch)
    assert [count for _, count in batch.batches] == [1, 1]
