"""What the rules say about a result a laboratory sent and Vigil could not read (pure).

Ingest keeps such a result as ``LabResultUnreadable`` beside the message's readable ones;
the rules store it in the subject's stream and raise one data-quality issue for it:
``abnormal-result-unreadable`` when the sender's flags say abnormal or positive (the
medical monitor must chase the value), else ``result-unreadable``. The detail names the
analyte (by Vigil's catalogue and its LOINC code, or the sender's code), where in the
message, and the problem as ingest worded it; never the value, never the analyte's text
as sent (sender text reaches no derived event).
"""

from __future__ import annotations

import re
import uuid

from services.safety_rules.domain.conditions import Problem
from shared.analytes import analyte_for
from shared.events import LabResultUnreadable
from shared.events.payloads import DataQualityProblem

#: a sender's own code is named only when it looks like a code, not like words
_CODE_LIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9#%._:/+-]{0,23}")


def analyte_words(result: LabResultUnreadable) -> str:
    """The analyte as a message may name it."""
    if result.loinc_code:
        known = analyte_for(result.loinc_code)
        name = known.name if known is not None else "analyte"
        return f"{name} (LOINC {result.loinc_code})"
    if result.local_code and _CODE_LIKE.fullmatch(result.local_code):
        return f"the laboratory's code {result.local_code}"
    return "an analyte the laboratory did not code"


def unreadable_problem(event_id: uuid.UUID, result: LabResultUnreadable) -> Problem:
    """The data-quality issue for one unreadable result."""
    flagged = result.flagged_abnormal
    detail = (
        f"a result of {analyte_words(result)} could not be read: {result.segment}, "
        f"field {result.field}: {result.problem}"
    )
    if flagged:
        detail += "; the laboratory flagged it abnormal or positive"
    issue: DataQualityProblem = "abnormal-result-unreadable" if flagged else "result-unreadable"
    return Problem(issue, detail, event_id, "")
