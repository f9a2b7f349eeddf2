"""A number written as text, as laboratories send it in any format (pure): HL7 OBX-5 of
type ST or TX, FHIR ``valueString``. ``7.0``, ``<0.5``, ``≥ 60``: a comparator perhaps,
then one number, nothing else."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from shared.events.values import clinical_number
from shared.qualitative import qualitative_answer

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_TEXT_NUMBER = re.compile(rf"^\s*(<=|>=|<|>|≤|≥)?\s*({NUMBER})\s*$")
_SIGNS = {"≤": "<=", "≥": ">="}


def number_in_text(text: str) -> tuple[str | None, Decimal] | None:
    """A plain number in text (``7.0``, ``<0.5``, ``≥ 60``): its comparator (``<``,
    ``<=``, ``>``, ``>=`` or None) and value; None when the text is not just a number.
    ValueError (saying why, never the number) for a number outside what a payload
    accepts (shared/events/values.py)."""
    match = _TEXT_NUMBER.match(text)
    if not match:
        return None
    sign = match[1]
    return (_SIGNS.get(sign, sign) if sign else None), clinical_number(Decimal(match[2]))


def text_result(text: str) -> dict[str, Any]:
    """The result fields of a value sent as text (HL7 ST or TX, FHIR valueString): its
    number when it is just one (the text kept beside it), else its qualitative answer and
    the text. A number no result may have is kept as the text it is."""
    try:
        found = number_in_text(text)
    except ValueError:
        found = None
    if found is None:
        return {"qualitative": qualitative_answer(text), "value_text": text}
    comparator, number = found
    return {"value": number, "comparator": comparator, "value_text": text}
