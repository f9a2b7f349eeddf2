"""The study subject id in PID-3: the repetition from the study's assigning authority (pure).

PID-3 (patient identifier list) repeats: a hospital sends its MRN, perhaps an insurance
number, and the study's subject id, each a CX with its assigning authority in CX-4
(``MRN123^^^HOSP^MR~01-003^^^NCT05262686^SS``). Only the study's own identifier may
become a subject id; any other is never read, so it cannot reach an event or an e-mail.
"""

from __future__ import annotations

import hl7
import hl7.exceptions

from services.ingest.domain.hl7.obx_fields import extract
from shared.events.payloads import SUBJECT_ID_FORM, is_subject_id

PATIENT_IDENTIFIER_LIST = 3
_ID, _AUTHORITY = 1, 4  # CX-1 id number, CX-4 assigning authority (its HD-1)
_MAX_REPETITIONS = 50


class SubjectIdMissing(ValueError):
    """PID-3 has no identifier from the study's assigning authority."""


class SubjectIdInvalid(ValueError):
    """The study's identifier in PID-3 does not fit the subject-id grammar, or is given
    twice with different values."""


def _component(pid: hl7.Segment, repetition: int, component: int) -> str:
    """A component's text (its first subcomponent); raises IndexError past the last
    repetition."""
    try:
        return extract(pid, PATIENT_IDENTIFIER_LIST, repetition, component).strip()
    except IndexError:
        if component == _ID:
            raise
        return ""  # a repetition without this component
    except (KeyError, hl7.exceptions.HL7Exception):
        return ""


def _identifiers(pid: hl7.Segment) -> list[tuple[str, str]]:
    """(CX-1, CX-4 HD-1) of each PID-3 repetition."""
    found = []
    for repetition in range(1, _MAX_REPETITIONS + 1):
        try:
            value = _component(pid, repetition, _ID)
        except IndexError:
            break
        found.append((value, _component(pid, repetition, _AUTHORITY)))
    return found


def study_subject_id(pid: hl7.Segment, authority: str) -> str:
    """The subject id PID-3 carries from ``authority``; the errors' messages name the
    authority and the rule, never an identifier's value."""
    values = {value for value, issuer in _identifiers(pid) if issuer == authority and value}
    if not values:
        raise SubjectIdMissing(
            f"PID-3 has no identifier from the study's assigning authority {authority} "
            f"(send the study subject id as <id>^^^{authority}^SS); other identifiers, such "
            "as a hospital MRN, are never used as the subject id"
        )
    if len(values) > 1:
        raise SubjectIdInvalid(
            f"PID-3 has {len(values)} different identifiers from the study's assigning "
            f"authority {authority}; send one"
        )
    (value,) = values
    if not is_subject_id(value):
        raise SubjectIdInvalid(
            f"the study subject id in PID-3 (assigning authority {authority}) must be "
            f"{SUBJECT_ID_FORM}"
        )
    return value
