"""An HL7 v2 message is read in the character set its MSH-18 declares (HL7 table 0211),
UTF-8 when it declares none, and refused, naming MSH-18, when its bytes cannot be read:
never decoded with replacement characters."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime

import hl7
import pytest

from services.ingest.domain.hl7.ack import build_ack
from services.ingest.domain.hl7.charset import codec_for, declared_charset, decode
from services.ingest.domain.hl7.messages import Interpretation

ACK_TIME = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # when an ACK is written

MSH = "MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01|C1|P|2.5.1"


def message(charset: str | None, unit: str = "µmol/L") -> str:
    header = MSH if charset is None else f"{MSH}||||||{charset}"
    return f"{header}\rOBX|1|NM|1975-2^Bilirubin total^LN||300|{unit}||H|||F\r"


@pytest.mark.parametrize(
    ("charset", "codec", "unit"),
    [
        ("8859/1", "latin-1", "µmol/L"),
        ("8859/15", "iso8859-15", "€/µmol"),
        ("8859/5", "iso8859-5", "мкмоль/л"),
        ("ASCII", "ascii", "umol/L"),
        ("UNICODE UTF-8", "utf-8", "µmol/L 胆红素"),
        ("GB 18030-2000", "gb18030", "µmol/L 胆红素"),
        ("BIG-5", "big5", "膽紅素"),
        ("KS X 1001", "euc_kr", "빌리루빈"),
        ("unicode utf-8", "utf-8", "µmol/L"),
    ],
)
def test_the_message_is_read_in_the_character_set_msh_18_declares(
    charset: str, codec: str, unit: str
) -> None:
    decoded = decode(message(charset, unit).encode(codec))
    assert decoded.problem is None
    assert decoded.text == message(charset, unit)
    assert decoded.charset == charset.upper()


def test_without_msh_18_a_message_is_utf_8_and_a_byte_order_mark_is_skipped() -> None:
    assert decode(message(None).encode()).text == message(None)
    decoded = decode(codecs.BOM_UTF8 + message(None).encode())
    assert decoded.text == message(None)
    assert decoded.charset == ""


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_utf_16_or_utf_32_message_that_says_so_is_read(codec: str) -> None:
    charset = "UNICODE UTF-32" if "32" in codec else "UNICODE UTF-16"
    decoded = decode(message(charset).encode(codec))
    assert decoded.text == message(charset)


def test_the_first_repetition_of_msh_18_and_the_message_s_own_separators_count() -> None:
    assert declared_charset(f"{MSH}||||||8859/1~UNICODE UTF-8") == "8859/1"
    own = MSH.replace("|", "#").replace("^~", "^!")
    assert declared_charset(f"{own}######8859/1!GB 18030-2000") == "8859/1"
    assert declared_charset(MSH) == ""
    assert declared_charset("PID|1") == ""


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (message(None).encode("latin-1"), "UTF-8"),  # undeclared and not UTF-8
        (message("UNICODE UTF-8").encode("latin-1"), "UTF-8"),
        (message("ASCII").encode("utf-8"), "ASCII"),
        (message("GB 18030-2000").encode("gb18030")[:-8] + b"\x81\x20|F\r", "GB18030"),
    ],
)
def test_bytes_the_character_set_cannot_read_are_refused_naming_msh_18(
    raw: bytes, code: str
) -> None:
    decoded = decode(raw)
    assert decoded.text is None
    assert not decoded.unknown
    assert decoded.problem is not None
    assert decoded.problem.startswith("MSH-18")
    assert code in decoded.problem
    assert "\ufffd" not in decoded.header
    assert decoded.header.startswith("MSH|")  # the sender and control id stay readable


@pytest.mark.parametrize(
    "raw",
    [
        message("KLINGON").encode(),
        message("ISO IR87").encode(),  # ISO 2022 code extension: not read
        message("UNICODE UTF-16").encode(),  # declared wide, written in single bytes
        message("8859/1").encode("utf-16"),  # written wide, declared otherwise
    ],
)
def test_a_character_set_vigil_does_not_read_is_refused_naming_msh_18(raw: bytes) -> None:
    decoded = decode(raw)
    assert decoded.text is None
    assert decoded.unknown
    assert decoded.problem is not None
    assert decoded.problem.startswith("MSH-18")
    assert "KLINGON" not in decoded.problem  # names the field, never the value


def test_the_ack_declares_and_is_written_in_the_message_s_character_set() -> None:
    outcome = Interpretation("AA", "C1", "2.5.1", sender=("LABOR", "MÜNCHEN"), charset="8859/1")
    text = build_ack(
        outcome,
        sending_application="VIGIL",
        sending_facility="VIGIL",
        receiving_application="LABOR",
        receiving_facility="MÜNCHEN",
        ack_control_id="A1",
        now=ACK_TIME,
    )
    raw = text.encode(codec_for(outcome.charset))
    assert b"M\xdcNCHEN" in raw
    ack = hl7.parse(raw.decode("latin-1"))
    assert str(ack.segment("MSH")[18]) == "8859/1"
    assert codec_for("") == "utf-8"
