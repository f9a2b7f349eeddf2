"""General acknowledgements (ACK) with MSA and one ERR segment per problem (pure)."""

from __future__ import annotations

from datetime import datetime

from services.ingest.domain.hl7.messages import Interpretation

_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def escape(text: str) -> str:
    """HL7 escape sequences for the default delimiters; no line breaks in a field."""
    escaped = "".join(_ESCAPES.get(char, char) for char in text)
    return escaped.replace("\r", " ").replace("\n", " ")


def build_ack(
    outcome: Interpretation,
    *,
    sending_application: str,
    sending_facility: str,
    receiving_application: str = "",
    receiving_facility: str = "",
    ack_control_id: str,
    now: datetime,
    text: str | None = None,
) -> str:
    """The ACK for ``outcome``, to be encoded with ``codec_for(outcome.charset)``; ERR
    uses the 2.5 layout (ERR-2/3/4/8) and, for senders on 2.3/2.4, also ERR-1."""
    stamp = now.strftime("%Y%m%d%H%M%S+0000")
    version = outcome.version
    msh = (
        f"MSH|^~\\&|{escape(sending_application)}|{escape(sending_facility)}|"
        f"{escape(receiving_application)}|{escape(receiving_facility)}|{stamp}||ACK^R01^ACK|"
        f"{escape(ack_control_id)}|P|{escape(version)}"
    )
    if outcome.charset:  # MSH-18: the ACK is written in the message's character set
        msh += f"||||||{escape(outcome.charset)}"
    message = text or _summary(outcome)
    segments = [msh, f"MSA|{outcome.ack_code}|{escape(outcome.control_id)}|{escape(message[:80])}"]
    legacy = version.startswith(("2.3", "2.4"))
    for problem in outcome.problems:
        location = f"{problem.segment}^{problem.sequence}^{problem.field or ''}"
        code = f"{problem.code}^{escape(_CODE_TEXT.get(problem.code, 'Error'))}^HL70357"
        err1 = (
            f"{problem.segment}^{problem.sequence}^{problem.field or ''}^"
            f"{problem.code}&{escape(_CODE_TEXT.get(problem.code, 'Error'))}&HL70357"
            if legacy
            else ""
        )
        severity = problem.severity  # ERR-4, HL7 table 0516
        segments.append(f"ERR|{err1}|{location}|{code}|{severity}||||{escape(problem.text)}")
    return "\r".join(segments) + "\r"


def _summary(outcome: Interpretation) -> str:
    """MSA-3: the first problem, or for a message taken with results it could not read,
    how many (2.3 and 2.4 have no ERR severity: this says the ERR are warnings)."""
    if not outcome.problems:
        return ""
    if outcome.ack_code == "AA":
        count = len(outcome.problems)
        return (
            f"accepted; {count} result{'s' if count > 1 else ''} could not be read or be "
            "right: kept for review (see ERR)"
        )
    return outcome.problems[0].text


_CODE_TEXT = {
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "203": "Unsupported version id",
    "207": "Application internal error",
}
