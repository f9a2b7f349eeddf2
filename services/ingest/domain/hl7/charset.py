"""Which character set an HL7 v2 message is written in, and its text (pure).

MSH-18 names the message's character set from HL7 table 0211; its first repetition is
the default for the whole message. It is read from the raw bytes: MSH is ASCII in every
ASCII-compatible character set, and the field separator is MSH-1 (the fourth byte), the
repetition separator the second encoding character (MSH-2). UTF-16 and UTF-32 are told
by a byte-order mark or by the zero bytes around ``MSH``. Without MSH-18 the message
must be UTF-8 (ASCII, HL7's default, is a subset); a UTF-8 byte-order mark is skipped.
Bytes that are not valid in the character set are never replaced: the message is
refused, naming MSH-18, so that nothing is stored other than as it was reported.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

# HL7 table 0211 -> Python codec. ISO IR14/IR87/IR159 and CNS 11643-1992 need ISO 2022
# code extension (MSH-20) or have no codec: they are known but refused.
_CODECS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "ISO IR100": "latin-1",
    **{f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "UNICODE UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "UNICODE": "utf-16",  # ISO/IEC 10646 (UCS-2) before v2.5 named its encodings
}
_UNSUPPORTED = frozenset({"ISO IR14", "ISO IR87", "ISO IR159", "CNS 11643-1992"})
DEFAULT_CODEC = "utf-8"


@dataclass(frozen=True)
class Decoded:
    """The message's text, or why it cannot be read."""

    text: str | None
    """None when the bytes cannot be read in the character set (see ``problem``)."""
    header: str
    """Enough to read MSH from (sender, control id): the text, or its MSH segment."""
    codec: str
    """The Python codec the message is read in and its ACK is written in."""
    charset: str = ""
    """MSH-18's first repetition as read, for the ACK's own MSH-18."""
    problem: str | None = None
    unknown: bool = False
    """MSH-18 names no character set Vigil reads (AR), rather than bytes that are not
    valid in the one it names (AE)."""


def codec_for(charset: str) -> str:
    """The codec a message declaring ``charset`` in MSH-18 (as read) is answered in."""
    return _CODECS.get(charset, DEFAULT_CODEC)


def declared_charset(first_segment: str) -> str:
    """MSH-18's first repetition, stripped and upper-cased; empty when absent."""
    if not first_segment.startswith("MSH") or len(first_segment) < 8:
        return ""
    fields = first_segment.split(first_segment[3])
    if len(fields) < 18:
        return ""
    encoding = fields[1]
    repetition = encoding[1] if len(encoding) > 1 else "~"
    return fields[17].split(repetition, 1)[0].strip().upper()


def _first_segment(text: str) -> str:
    return text.lstrip("\r\n").replace("\n", "\r").split("\r", 1)[0]


def _wide_codec(content: bytes) -> str | None:
    """UTF-16/UTF-32 and its byte order, told by a byte-order mark or by ``MSH``."""
    marks = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    for mark, codec in zip(marks, ("utf-32", "utf-32", "utf-16", "utf-16"), strict=True):
        if content.startswith(mark):
            return codec
    for codec in ("utf-32-le", "utf-32-be", "utf-16-le", "utf-16-be"):
        if content.startswith("MSH".encode(codec)):
            return codec
    return None


def decode(content: bytes) -> Decoded:
    """The text of one message in the character set its MSH-18 declares."""
    wide = _wide_codec(content)
    if wide is not None:
        return _decode_wide(content, wide)
    if content.startswith(codecs.BOM_UTF8):
        content = content[len(codecs.BOM_UTF8) :]
    # MSH is ASCII: its separators and MSH-18 are read before the character set is known
    msh = _first_segment(content.decode("ascii", errors="replace"))
    charset = declared_charset(msh)
    if not charset:
        return _strict(content, DEFAULT_CODEC, "", msh, "no MSH-18 names another")
    codec = _CODECS.get(charset)
    if codec is None:
        return _unknown(msh, charset)
    if codec.startswith(("utf-16", "utf-32")):
        problem = f"MSH-18 declares {_name(codec)}, but MSH is written in single bytes"
        return Decoded(None, msh, DEFAULT_CODEC, problem=problem, unknown=True)
    return _strict(content, codec, charset, msh, "as MSH-18 declares")


def _decode_wide(content: bytes, codec: str) -> Decoded:
    try:
        text = content.decode(codec).lstrip("\ufeff")
    except UnicodeDecodeError as error:
        return _unreadable(codec, "", error.start, "by its byte-order mark or MSH")
    charset = declared_charset(_first_segment(text))
    declared = _CODECS.get(charset, "")
    if not declared.startswith(("utf-16", "utf-32")) or not codec.startswith(declared):
        problem = (
            f"MSH-18: the message is written in {_name(codec)}, which MSH-18 must declare "
            "(UNICODE UTF-16 or UNICODE UTF-32)"
        )
        return Decoded(None, text, DEFAULT_CODEC, problem=problem, unknown=True)
    return Decoded(text, text, codec, charset)


def _strict(content: bytes, codec: str, charset: str, msh: str, which: str) -> Decoded:
    try:
        text = content.decode(codec)
    except UnicodeDecodeError as error:
        return _unreadable(codec, msh, error.start, which)
    return Decoded(text, text, codec, charset)


def _unreadable(codec: str, header: str, position: int, which: str) -> Decoded:
    problem = (
        f"MSH-18: the message is not valid {_name(codec)} ({which}): byte {position} "
        "cannot be read; declare in MSH-18 the character set the message is written in"
    )
    return Decoded(None, header, codec, problem=problem)


def _unknown(header: str, charset: str) -> Decoded:
    known = "is not supported" if charset in _UNSUPPORTED else "is not in HL7 table 0211"
    problem = f"MSH-18: the character set named {known}; supported: {', '.join(sorted(_CODECS))}"
    return Decoded(None, header, DEFAULT_CODEC, problem=problem, unknown=True)


def _name(codec: str) -> str:
    return codec.upper().replace("ISO8859", "ISO 8859")
