"""A number written as text, as laboratories send it in any format (pure): HL7 OBX-5 of
type ST or TX, FHIR ``valueString``. ``7.0``, ``<0.5``, ``≥ 60``: a comparator perhaps,
then one number, nothing else."""

from __future__ import annotations

import re
from decimal import Decimal

from shared.events.values import clinical_number

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
