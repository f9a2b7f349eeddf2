"""How Vigil names an adverse event in what it sends: in its own words, never the term.

A site's verbatim term is free text ("fell at home in Elm Street, taken to St Mary's by
her daughter") and may identify the subject. Signals, e-mails and webhooks therefore say
what Vigil knows in its own vocabulary: serious or not, the ICH E2A criteria, the NYHA
class and the MedDRA code when one was sent. The term itself stays in the reported fact
(the audit log) and on the acknowledgement page behind the link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import get_args

from shared.events.payloads import MEDDRA_PATTERN, AdverseEventReported, SeriousnessCriterion
from shared.nyha import NYHA_CLASSES

SERIOUSNESS_CRITERIA: frozenset[str] = frozenset(get_args(SeriousnessCriterion))
_MEDDRA = re.compile(MEDDRA_PATTERN)


def adverse_event_label(
    *,
    serious: bool,
    criteria: Iterable[str] = (),
    meddra_code: str | None = None,
    nyha_class: str | None = None,
) -> str:
    """E.g. ``serious adverse event (hospitalisation), MedDRA 10035664``. Only values of
    Vigil's own vocabularies are used; anything else given is left out."""
    known = [criterion for criterion in criteria if criterion in SERIOUSNESS_CRITERIA]
    label = "serious adverse event" if serious else "adverse event"
    if serious and known:
        label += f" ({', '.join(dict.fromkeys(known))})"
    if nyha_class in NYHA_CLASSES:
        label += f", NYHA class {nyha_class}"
    if meddra_code and _MEDDRA.match(meddra_code):
        label += f", MedDRA {meddra_code}"
    return label


def results_in_death(report: AdverseEventReported) -> bool:
    """CTCAE v5.0 grade 5 is death, and so is an outcome fatal."""
    return report.ctcae_grade == 5 or report.outcome == "fatal"


def is_serious(report: AdverseEventReported) -> bool:
    """ICH E2A: an adverse event that results in death is serious, whatever the site ticked
    (a grade 5 or fatal report with the seriousness flag left false contradicts itself; the
    more alerting reading is taken)."""
    return report.serious or results_in_death(report)
