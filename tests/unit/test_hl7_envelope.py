"""One MLLP block, one message: a batch or a second MSH is found however it hides."""

from __future__ import annotations

import pytest

from services.ingest.domain.hl7.envelope import header_name, not_one_message

FIRST = "MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|C1|P|2.5.1"
SECOND = "MSH|^~\\&|LIS|OTHER-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|C2|P|2.5.1"
BODY = [
    "PID|1||01-003^^^NCT05262686^SS",
    "OBR|1|P1|F1|58410-2^CBC^LN|||20261120080000+0800",
    "OBX|1|NM|718-7^Hemoglobin^LN||7.0|g/dL|12-16|L|||F",
]
BATCH_HEAD = [
    "FHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||F1",
    "BHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||B1",
]


def block(*segments: str, end: str = "\r") -> str:
    return end.join(segments) + end


def test_one_message_is_one_message() -> None:
    assert not_one_message(block(FIRST, *BODY)) is None
    assert not_one_message(block(FIRST, *BODY, end="\n")) is None
    assert not_one_message("\ufeff" + block(FIRST, *BODY, end="\r\n") + "\r\n\r\n") is None


def test_segments_that_only_begin_like_a_header_are_none() -> None:
    assert header_name("MSHX|1") is None
    assert header_name("NTE|1||MSH and BTS are words here") is None
    assert header_name("OBX|1|ST|X^Y^L||MSH") is None
    assert header_name("ZMS|MSH") is None


@pytest.mark.parametrize(
    "second",
    [
        SECOND,
        " " + SECOND,
        "\t" + SECOND,
        "\ufeff" + SECOND,
        "\x00" + SECOND,
        "\x0c" + SECOND,
        SECOND.lower(),
        SECOND.replace("|", "#"),  # its own field separator
        "MSH",
    ],
)
def test_a_second_msh_is_found_however_it_hides(second: str) -> None:
    for end in ("\r", "\n", "\r\n"):
        for gap in ([], [""], ["", "   ", ""]):  # after blank lines
            found = not_one_message(block(FIRST, *BODY, *gap, second, *BODY, end=end))
            assert found is not None, (second, end, gap)
            assert found.reason_code == "mllp-second-message"
            assert (found.problem.segment, found.problem.sequence) == ("MSH", 2)
            assert found.problem.code == "100"
            assert "one message" in found.problem.text
            assert "OTHER-LAB" not in found.problem.text  # never a value


def test_a_batch_that_reaches_the_message_check_is_refused_saying_so_with_code_200() -> None:
    # only a batch the batch reader could not take (UTF-16, UTF-32) comes here
    batch = block(*BATCH_HEAD, FIRST, *BODY, SECOND, *BODY, "BTS|2", "FTS|1")
    found = not_one_message(batch)
    assert found is not None
    assert found.reason_code == "mllp-batch"
    assert found.problem.code == "200"  # unsupported message type, not 207
    assert found.problem.segment == "FHS"
    assert "batch" in found.problem.text
    assert "its own MLLP block" in found.problem.text


@pytest.mark.parametrize(
    "segments",
    [
        [FIRST, *BODY, "BTS|1", SECOND, *BODY],  # a second message after BTS
        [FIRST, *BODY, "  bts|1"],
        [FIRST, *BODY, "FTS|1"],
        [FIRST, *BODY, "", "\n", *BATCH_HEAD, SECOND, *BODY],  # after blank lines
    ],
)
def test_a_batch_segment_inside_a_message_refuses_it(segments: list[str]) -> None:
    for end in ("\r", "\n"):
        found = not_one_message(block(*segments, end=end))
        assert found is not None, (segments, end)
        assert found.reason_code == "mllp-batch-malformed", (segments, end)
        assert found.problem.code == "100"
        assert "belong around messages" in found.problem.text
