"""Text from the data made safe for a message: one line for a header or a table cell, no
control characters anywhere, and a bounded length.

Whatever a sender typed (an adverse-event term with a line break, a NUL, a right-to-left
mark, an emoji, ten thousand characters) must never stop a message from being built: a
line break in an e-mail header makes the e-mail package refuse the message, a NUL cannot be
stored in PostgreSQL text. So control characters and line or paragraph separators become
spaces, and text longer than its place allows is cut with an ellipsis. Printable Unicode,
however odd, is kept: the e-mail package encodes it (RFC 2047 in headers).
"""

from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "…"
# the longest Subject Vigil writes; longer ones are cut (the body carries the facts)
SUBJECT_LIMIT = 200
# the longest single fact (a term, a rule title) a message repeats; the audit log has it all
FIELD_LIMIT = 1000

# Cc (C0 and C1 controls, incl. CR, LF, TAB, NUL, NEL), Zl and Zp (U+2028, U+2029): all
# end a line for someone (str.splitlines, mail clients, header parsers)
_BREAKING = {"Cc", "Zl", "Zp"}
# Cs: lone surrogates cannot be encoded as UTF-8 at all; Cn: unassigned code points
_DROPPED = {"Cs", "Cn"}
_SPACES = re.compile(r"\s+")


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + ELLIPSIS


def single_line(text: str, *, limit: int = FIELD_LIMIT) -> str:
    """``text`` as one line of at most ``limit`` characters: control characters and line
    or paragraph separators become spaces, runs of white space one space, lone surrogates
    and unassigned code points are dropped, and the end is cut with an ellipsis."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in _BREAKING:
            kept.append(" ")
        elif category not in _DROPPED:
            kept.append(char)
    return _cut(_SPACES.sub(" ", "".join(kept)).strip(), limit)


def body_text(text: str, *, limit: int) -> str:
    """``text`` for a message body: line breaks kept (as ``\\n``), every other control
    character, lone surrogate and unassigned code point dropped, cut at ``limit``."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return _cut("\n".join(single_line(line, limit=limit) for line in lines), limit)


def header_value(text: str) -> str:
    """A header value Vigil writes (a subject, an id): one line, at most
    :data:`SUBJECT_LIMIT` characters, and no ``=?`` that a mail client would take for the
    start of an RFC 2047 encoded word and show as something else."""
    return single_line(text.replace("=?", "= ?"), limit=SUBJECT_LIMIT)


def safe_address(address: str, *, setting: str) -> str:
    """An address for a To or From header, refused (not repaired: a changed address is
    someone else's) when it holds anything that could break the header."""
    if address != single_line(address) or any(ch.isspace() for ch in address):
        raise ValueError(
            f"an e-mail address in {setting} contains white space or control characters; "
            "correct it there"
        )
    return address
