"""From an HL7 v2 message to Vigil events, or to the errors its ACK must name (pure).

Supports ORU^R01 (lab results, one PATIENT_RESULT group per patient, placed by
structure.py) and ADT^A04/A08 (register or update a subject), versions 2.3 to 2.5.1.
What the original-mode ACK answers for the whole message (AE/AR, nothing taken): a
structure the reader cannot place, a patient whose subject cannot be told, an unsupported
type or version. One OBX that cannot be read fails alone (observations.py): the message
is AA with its readable results, and the unreadable one is kept as a LabResultUnreadable
and named in an ERR of severity W. Every problem names the segment, its position, the
field and an HL7 table 0357 error code, so the sender's ACK can point at it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, tzinfo

import hl7
import hl7.exceptions
from pydantic import ValidationError

from services.ingest.domain.hl7.envelope import segments
from services.ingest.domain.hl7.fields import FieldError, parse_date
from services.ingest.domain.hl7.observations import ObxContext, no_result, read_observation
from services.ingest.domain.hl7.obx_fields import get
from services.ingest.domain.hl7.outcome import APPLICATION_ERROR as APPLICATION_ERROR
from services.ingest.domain.hl7.outcome import DATA_TYPE_ERROR as DATA_TYPE_ERROR
from services.ingest.domain.hl7.outcome import REQUIRED_FIELD_MISSING as REQUIRED_FIELD_MISSING
from services.ingest.domain.hl7.outcome import SEGMENT_SEQUENCE_ERROR, UNSUPPORTED_PROCESSING_ID
from services.ingest.domain.hl7.outcome import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS
from services.ingest.domain.hl7.outcome import TABLE_VALUE_NOT_FOUND as TABLE_VALUE_NOT_FOUND
from services.ingest.domain.hl7.outcome import UNSUPPORTED_EVENT_CODE as UNSUPPORTED_EVENT_CODE
from services.ingest.domain.hl7.outcome import UNSUPPORTED_MESSAGE_TYPE as UNSUPPORTED_MESSAGE_TYPE
from services.ingest.domain.hl7.outcome import UNSUPPORTED_VERSION as UNSUPPORTED_VERSION
from services.ingest.domain.hl7.outcome import Hl7Problem as Hl7Problem
from services.ingest.domain.hl7.outcome import Interpretation as Interpretation
from services.ingest.domain.hl7.structure import Order, numbered, oru_r01
from services.ingest.domain.hl7.subject import SubjectIdInvalid, SubjectIdMissing, study_subject_id
from services.ingest.domain.plausible_times import DEFAULT_CLOCK_SKEW, time_problems
from services.ingest.domain.subject_identifiers import SubjectIdentifiers
from shared.events import LabResultReported, Sex, SubjectEnrolled, SubjectEvent
from shared.field_problems import describe, field_problems
from shared.plausibility import implausible_reference_range, implausible_value

# a DTM that ends with its UTC offset (HL7 v2.5.1 2A.3.22): an absolute instant
_OFFSET = re.compile(r"[+-]\d{4}\s*$")
_SEX = {"F": Sex.FEMALE, "M": Sex.MALE, "O": Sex.OTHER, "U": Sex.UNKNOWN, "A": Sex.OTHER}


def _entity(segment: hl7.Segment, number: int) -> str:
    """An EI (OBR-2, OBR-3) as its entity identifier and namespace: two laboratories'
    order numbers may be alike, their namespaces are not."""
    identifier, namespace = get(segment, number, 1), get(segment, number, 2)
    if not identifier:
        return ""
    return f"{identifier}^{namespace}" if namespace else identifier


def _clean(raw: str) -> str:
    """Segments separated by CR, whatever line ends the sender used; a byte-order mark
    before MSH and empty or whitespace-only segments (CR CR, trailing blank lines) left
    out: they carry nothing and are no error."""
    return "\r".join(segments(raw.lstrip("\ufeff"))) + "\r"


class _Reader:
    """Walks one message, collecting events and problems."""

    def __init__(
        self,
        message: hl7.Message,
        study_id: str,
        zone: tzinfo,
        code_map: Mapping[str, str],
        authority: str,
        now: datetime | None = None,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> None:
        self.now, self.clock_skew = now, clock_skew  # no "now": times are not checked
        self.message = message
        self.study_id = study_id
        self.authority = authority  # PID-3 assigning authority of the study's subject ids
        self.zone = zone
        self.code_map = code_map
        self.problems: list[Hl7Problem] = []
        self.control_id = get(message.segment("MSH"), 10)

    def problem(
        self, segment: str, sequence: int, number: int, code: str, text: str, severity: str = "E"
    ) -> None:
        self.problems.append(Hl7Problem(segment, sequence, number, code, text, severity))

    def numbered(self) -> list[tuple[str, int, hl7.Segment]]:
        """Segments with their position among segments of the same name (1-based)."""
        return [(name, at.sequence, at.segment) for name, at in numbered(self.message)]

    def subject_of(self, pid: hl7.Segment, sequence: int) -> str | None:
        """The study subject id of one PID (its position among the message's PIDs), or
        None with the problem recorded."""
        try:
            return study_subject_id(pid, self.authority)
        except SubjectIdMissing as error:
            self.problem("PID", sequence, 3, REQUIRED_FIELD_MISSING, str(error))
        except SubjectIdInvalid as error:
            self.problem("PID", sequence, 3, DATA_TYPE_ERROR, str(error))
        return None

    def lab_results(self) -> list[SubjectEvent]:
        """Every OBX under the subject of its own PATIENT_RESULT group (structure.py),
        in message order. A group whose subject cannot be told, or a segment with no
        place, fails the whole message (the ACK is about the message), never the other
        groups' results silently. One OBX that cannot be read fails alone: it is kept
        as a LabResultUnreadable and named in an ERR of severity W."""
        tree = oru_r01(self.message)
        if not any(group.pid for group in tree.patient_results):
            self.problem("PID", 1, 0, REQUIRED_FIELD_MISSING, "PID segment missing")
            return []
        for misplaced in tree.misplaced:
            self.problem(
                misplaced.name, misplaced.sequence, 0, REQUIRED_FIELD_MISSING, misplaced.problem
            )
        events: list[SubjectEvent] = []
        for group in tree.patient_results:
            if group.pid is None:
                continue
            subject = self.subject_of(group.pid.segment, group.pid.sequence)
            if subject is None:
                continue
            found = [
                event for order in group.orders for event in self.order_results(subject, order)
            ]
            self.check_birth_date(group.pid.segment, group.pid.sequence, found)
            events.extend(found)
        return events

    def check_birth_date(
        self, pid: hl7.Segment, sequence: int, results: list[SubjectEvent]
    ) -> None:
        """An ORU's PID-7 that cannot be right (in the future, or after a specimen of the
        message was collected) is named in an ERR of severity W: the results stand on
        their own (the rules use the enrolment's birth date, never the ORU's), but the
        laboratory's demographics are wrong or belong to another patient, which the
        sender must check (issue 15 item 11). The text names the field, never the date."""
        text = get(pid, 7)
        if not text:
            return
        try:
            birth = parse_date(text)
        except FieldError:
            return  # the ORU's birth date is not read; only ADT registers a subject
        why = None
        if self.now is not None and birth > (self.now + self.clock_skew).date():
            why = "is in the future"
        elif any(
            isinstance(result, LabResultReported) and result.collected_at.date() < birth
            for result in results
        ):
            why = "is after the collection time of a result of this patient"
        if why is not None:
            self.problem(
                "PID",
                sequence,
                7,
                APPLICATION_ERROR,
                f"PID-7 (birth date) {why}: it cannot be right; the results are kept, the "
                "birth date is not used: check the patient's demographics",
                "W",
            )

    def order_results(self, subject: str, order: Order) -> list[SubjectEvent]:
        if order.obr is None:
            return []  # an ORC without its OBR: no OBX is placed in it, nothing to read
        obr = order.obr.segment
        # the filler's order number survives a corrected resend; else the placer's
        filler, placer = _entity(obr, 3), _entity(obr, 2)
        number = f"filler:{filler}" if filler else f"placer:{placer}" if placer else ""
        events: list[SubjectEvent] = []
        time_from = (
            ("SPM", order.specimen.sequence, 17)
            if not get(obr, 7) and order.specimen is not None
            else ("OBR", order.obr.sequence, 7)
        )
        for at in order.observations:
            if no_result(at.segment):
                continue  # pending, not asked, order detail: nothing to record (kept)
            context = ObxContext(
                study_id=self.study_id,
                subject_id=subject,
                control_id=self.control_id,
                sequence=at.sequence,
                obr_sequence=order.obr.sequence,
                # OBR-7 is the specimen's collection time; a lab that leaves it empty
                # may give it in the order's SPM-17 (ELR 2.5.1 does both)
                obr_time=get(obr, 7) or (get(order.specimen.segment, 17) if order.specimen else ""),
                time_from=time_from,
                order=number,
                zone=self.zone,
                code_map=self.code_map,
            )
            outcome = read_observation(context, at.segment)
            events.extend(outcome.results)
            for result in outcome.results:
                self.check_result(
                    result,
                    at.sequence,
                    ("OBX", at.sequence, 14) if get(at.segment, 14) else time_from,
                    bool(_OFFSET.search(get(at.segment, 14) or context.obr_time)),
                )
            if outcome.problem is None:
                continue
            field_number, code, text = outcome.problem
            # ERR-2 names the field the problem is in: this OBX's, or the OBR-7 or SPM-17
            # its collection time was taken from
            where = outcome.located or ("OBX", at.sequence, field_number)
            if outcome.unreadable is None:  # not even kept as unreadable: fail the message
                self.problem(*where, code, text)
                continue
            events.append(outcome.unreadable)
            self.problem(
                *where,
                code,
                f"{text}; this result is kept for review",
                "W",
            )
        return events

    def check_result(
        self,
        result: LabResultReported,
        sequence: int,
        time_from: tuple[str, int, int],
        offset_sent: bool = False,
    ) -> None:
        """A collection time in the future fails the message (AE naming OBX-14, or the
        OBR-7 or SPM-17 it came from); a value that cannot be physiological is kept and
        named in an ERR of severity W (the rules never judge it; a data manager is asked
        to look)."""
        if self.now is not None:
            segment, number, field_number = time_from
            for found in time_problems(result, self.now, self.clock_skew, offset_sent=offset_sent):
                self.problem(
                    segment,
                    number,
                    field_number,
                    APPLICATION_ERROR,
                    f"{segment}-{field_number} (collection time, of OBX {sequence}) "
                    f"{found.problem}",
                )
        if (detail := implausible_value(result)) is not None:
            self.problem(
                "OBX", sequence, 5, APPLICATION_ERROR, f"OBX-5 (value): {detail}"[:300], "W"
            )
        if (why := implausible_reference_range(result)) is not None:
            self.problem(
                "OBX",
                sequence,
                7,
                APPLICATION_ERROR,
                f"OBX-7 (reference range) cannot be right: {why}; kept as sent and not used "
                "as a limit (the rule pack's fallback applies)"[:300],
                "W",
            )

    def registration(self) -> list[SubjectEvent]:
        """One subject from ADT^A04/A08, whose message structure has exactly one PID."""
        pids = [segment for name, _, segment in self.numbered() if name == "PID"]
        if not pids:
            self.problem("PID", 1, 0, REQUIRED_FIELD_MISSING, "PID segment missing")
            return []
        if len(pids) > 1:
            self.problem(
                "PID", 2, 0, APPLICATION_ERROR, "an ADT message registers one patient: one PID"
            )
            return []
        pid = pids[0]
        subject = self.subject_of(pid, 1)
        if subject is None:
            return []
        birth_text, sex_code = get(pid, 7), get(pid, 8).upper()
        birth = None
        try:
            birth = parse_date(birth_text) if birth_text else None
        except FieldError as error:
            self.problem("PID", 1, 7, DATA_TYPE_ERROR, f"PID-7 (birth date): {error}")
        if not birth_text:
            self.problem("PID", 1, 7, REQUIRED_FIELD_MISSING, "PID-7 (birth date) is empty")
        sex = _SEX.get(sex_code) if sex_code else Sex.UNKNOWN
        if sex is None:
            self.problem(
                "PID", 1, 8, TABLE_VALUE_NOT_FOUND, f"PID-8 sex is not one of {', '.join(_SEX)}"
            )
        site = ""
        try:
            pv1 = self.message.segment("PV1")
            site = get(pv1, 3, 4) or get(pv1, 3, 1)
        except KeyError:
            pass
        if not site:
            self.problem("PV1", 1, 3, REQUIRED_FIELD_MISSING, "PV1-3 (site) is empty")
        if self.problems or birth is None or sex is None:
            return []
        try:
            enrolled = SubjectEnrolled(
                study_id=self.study_id,
                subject_id=subject,
                site_id=site,
                sex=sex,
                birth_date=birth,
            )
        except ValidationError as error:  # e.g. a site id too long: an AE, never a crash
            self.problem("PID", 1, 0, APPLICATION_ERROR, describe(field_problems(error)))
            return []
        if self.now is not None:
            for found in time_problems(enrolled, self.now, self.clock_skew):
                self.problem("PID", 1, 7, APPLICATION_ERROR, f"PID-7 (birth date) {found.problem}")
        return [] if self.problems else [enrolled]


def interpret(
    raw: str,
    *,
    study_id: str,
    zone: tzinfo,
    code_map: Mapping[str, str] | None = None,
    route: Callable[[str, str], tuple[str, tzinfo]] | None = None,
    code_maps: Mapping[str, Mapping[str, str]] | None = None,
    identifiers: SubjectIdentifiers | None = None,
    processing_ids: frozenset[str] = frozenset({"P"}),
    now: datetime | None = None,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> Interpretation:
    """Read one HL7 v2 message (segments separated by carriage returns).

    ``route`` picks the study and time zone from the sender (MSH-3, MSH-4); without it,
    or for a sender it does not know, ``study_id`` and ``zone`` apply. ``code_maps`` gives
    each study's local-code map (``code_map`` is used when it has none for the study);
    ``identifiers`` the PID-3 assigning authority of each study's subject ids;
    ``processing_ids`` the MSH-11 values taken (production only, unless the deployment
    says otherwise: 2.9.2.1 has the receiver check it); ``now``, when given, the moment a
    collection time may not be later than by more than ``clock_skew``. No problem
    text quotes a field's content: ERR segments and logs name the field and the rule.
    """
    raw = _clean(raw)
    try:
        message = hl7.parse(raw)
        msh = message.segment("MSH")
    except (hl7.ParseException, KeyError, IndexError, ValueError):
        text = "not an HL7 v2 message: it must start with an MSH segment (MSH|^~\\&|...)"
        return Interpretation(
            "AR", "", "2.5.1", problems=[Hl7Problem("MSH", 1, 0, SEGMENT_SEQUENCE_ERROR, text)]
        )
    if route is not None:
        study_id, zone = route(get(msh, 3), get(msh, 4))
    study_codes = (code_maps or {}).get(study_id, code_map or {})
    authority = (identifiers or SubjectIdentifiers()).for_study(study_id).hl7_assigning_authority
    reader = _Reader(message, study_id, zone, study_codes, authority, now, clock_skew)
    version = get(msh, 12)
    kind, event = get(msh, 9, 1).upper(), get(msh, 9, 2).upper()
    result = Interpretation(
        "AA", reader.control_id, version or "2.5.1", sender=(get(msh, 3), get(msh, 4))
    )
    if not reader.control_id:
        result.ack_code = "AR"
        result.problems.append(
            Hl7Problem(
                "MSH",
                1,
                10,
                REQUIRED_FIELD_MISSING,
                "MSH-10 (message control id) is empty: it is required, and is what the "
                "acknowledgement's MSA-2 echoes so that the sender can match it",
            )
        )
        return result
    processing = get(msh, 11, 1).upper() or "P"
    if processing not in processing_ids:
        result.ack_code = "AR"
        result.problems.append(
            Hl7Problem(
                "MSH",
                1,
                11,
                UNSUPPORTED_PROCESSING_ID,
                f"MSH-11 processing id is not one this service takes "
                f"({', '.join(sorted(processing_ids))}; HL7 table 0103): training (T) and "
                "debugging (D) messages are not recorded as patients' results",
            )
        )
        return result
    if version not in SUPPORTED_VERSIONS:
        result.ack_code = "AR"
        result.problems.append(
            Hl7Problem(
                "MSH",
                1,
                12,
                UNSUPPORTED_VERSION,
                "MSH-12 version is not supported (2.3, 2.3.1, 2.4, 2.5 and 2.5.1 are)",
            )
        )
        return result
    if (kind, event) == ("ORU", "R01"):
        result.events = reader.lab_results()
    elif (kind, event) in (("ADT", "A04"), ("ADT", "A08")):
        result.events = reader.registration()
    else:
        result.ack_code = "AR"
        code = UNSUPPORTED_MESSAGE_TYPE if kind not in ("ORU", "ADT") else UNSUPPORTED_EVENT_CODE
        result.problems.append(
            Hl7Problem(
                "MSH",
                1,
                9,
                code,
                "MSH-9 message type is not supported (ORU^R01, ADT^A04, ADT^A08 are)",
            )
        )
        return result
    result.problems = reader.problems
    if any(problem.severity == "E" for problem in result.problems):
        result.ack_code = "AE"
        result.events = []  # the message's structure or a subject failed: none of it
        result.problems = [p for p in result.problems if p.severity == "E"]
    return result
