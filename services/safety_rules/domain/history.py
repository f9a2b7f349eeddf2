"""One subject's history as the rules read it, folded from the subject's stream (pure).

Facts stand until a later fact replaces them: a lab result until its supersede link is
folded in (a report of the same observation that result status lets replace it, or the
standing report when it is itself the late one: see ``supersession``), an adverse event
or a medication until a later report with the same id. Signal events fold into the
episodes the rules have recorded so far, so that the engine can compare what the facts
say now with what it has already said.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from services.safety_rules.domain.supersession import Report, reported_result, standing_before
from shared.adverse_event_labels import is_serious
from shared.analytes import UnitNotConvertible, analyte_for
from shared.events import (
    AdverseEventReported,
    DataQualityIssueRaised,
    LabResultReported,
    LabResultSuperseded,
    LabResultUnreadable,
    MedicationRecorded,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
    SafetySignalRouted,
    SubjectEnrolled,
)
from shared.events.payloads import DataQualityProblem, EventPayload, payload_class
from shared.plausibility import (
    collected_before_birth,
    implausible_adult_weight,
    implausible_value,
    implausible_weight,
)


@dataclass(frozen=True)
class Fact:
    """A stored fact with what the rules need besides its payload."""

    event_id: uuid.UUID
    recorded_at: datetime
    stream_version: int


@dataclass(frozen=True)
class LabEntry(Fact):
    result: LabResultReported
    #: judgements of this entry that depend on nothing else that changed, kept between
    #: batches (keyed by rule and by the other facts they used)
    memo: dict[object, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def at(self) -> datetime:
        return self.result.collected_at


def _order(entry: LabEntry) -> tuple[datetime, int]:
    return (entry.result.collected_at, entry.stream_version)


def _place(entries: list[LabEntry], entry: LabEntry) -> None:
    """Add ``entry`` to a list kept in collection-time order (new results mostly come last)."""
    entries.append(entry)
    if len(entries) > 1 and _order(entries[-2]) > _order(entry):
        entries.sort(key=_order)  # a late result: put it where it belongs


@dataclass(frozen=True)
class SetAside:
    """A result no rule judges, because what it says cannot be right (a value that cannot
    be physiological, a specimen dated before its subject's birth): the data-quality
    issue that says so, once per result."""

    entry: LabEntry
    issue: DataQualityProblem
    detail: str


def set_aside_because(
    result: LabResultReported, enrolment: SubjectEnrolled | None
) -> tuple[DataQualityProblem, str] | None:
    """Why no rule may judge this result, or None."""
    if (detail := implausible_value(result)) is not None:
        return "implausible-value", detail
    if (detail := _implausible_weight(result, enrolment)) is not None:
        return "implausible-value", detail
    weight = enrolment.weight_kg if enrolment is not None else None
    if (detail := implausible_weight(result, weight)) is not None:
        return "implausible-value", detail
    if enrolment is not None and collected_before_birth(result.collected_at, enrolment.birth_date):
        analyte = analyte_for(result.loinc_code or "")
        name = analyte.name if analyte else (result.loinc_code or "a result")
        return "implausible-time", (
            f"{name} was collected on a date before the subject's date of birth: one of the "
            "two is wrong, so the result is kept as sent and not judged by any rule; ask the "
            "site and the laboratory to check the dates"
        )
    return None


def _implausible_weight(result: LabResultReported, enrolment: SubjectEnrolled | None) -> str | None:
    """Why a body weight result cannot be this (adult) subject's, or None."""
    analyte = analyte_for(result.loinc_code or "")
    if (
        enrolment is None
        or analyte is None
        or analyte.name != "body weight"
        or result.value is None
        or result.comparator is not None
    ):
        return None
    try:
        kg = analyte.to_canonical(result.value, result.unit or "")
    except UnitNotConvertible:
        return None
    return implausible_adult_weight(kg, enrolment.birth_date, result.collected_at.date())


@dataclass(frozen=True)
class AdverseEventEntry(Fact):
    report: AdverseEventReported
    #: when Vigil first learned that this AE is serious (its reporting clock starts then)
    serious_since: datetime | None


@dataclass(frozen=True)
class MedicationEntry(Fact):
    record: MedicationRecorded


@dataclass
class RecordedEpisode:
    """An episode as the signal events recorded it."""

    signal_id: uuid.UUID
    rule_id: str
    episode_key: str | None
    order: int
    opened_at: datetime
    grade: int | None
    inputs: set[uuid.UUID]
    status: str = "open"  # open, resolved, retracted
    resolved_at: datetime | None = None
    resolved_inputs: set[uuid.UUID] = field(default_factory=set)
    #: the site the signal belongs to (None: raised before the subject was known)
    site_id: str | None = None


@dataclass
class SubjectHistory:
    """Everything the rules know about one subject; fed event by event in stream order."""

    study_id: str
    subject_id: str
    version: int = 0
    enrolment: SubjectEnrolled | None = None
    enrolment_fact: Fact | None = None
    first_fact_id: uuid.UUID | None = None
    #: the latest time Vigil recorded anything of the subject: what the rules know is
    #: known as of then, and a moment after it (a planned stop, a single dose's day that
    #: has not ended) has not come yet
    learned_until: datetime | None = None
    labs: dict[uuid.UUID, LabEntry] = field(default_factory=dict)
    by_code: dict[str, list[LabEntry]] = field(default_factory=dict)
    adverse_events: dict[str, AdverseEventEntry] = field(default_factory=dict)
    medications: dict[str, MedicationEntry] = field(default_factory=dict)
    #: the keys in ``medications`` of what a record's earlier regimens stand for (FHIR
    #: statements updated to a new dose), by the record's id
    _earlier_parts: dict[str, list[str]] = field(default_factory=dict, repr=False)
    superseded: set[uuid.UUID] = field(default_factory=set)
    episodes: dict[uuid.UUID, RecordedEpisode] = field(default_factory=dict)
    data_quality: set[tuple[str, uuid.UUID]] = field(default_factory=set)
    #: every report of each observation identity, in stream order (corrections included)
    reports: dict[str, list[Report]] = field(default_factory=dict)
    #: results the laboratory sent that Vigil could not read (each a data-quality issue)
    unreadable: dict[uuid.UUID, LabResultUnreadable] = field(default_factory=dict)
    #: results no rule judges because what they say cannot be right (not in ``labs``)
    set_aside: dict[uuid.UUID, SetAside] = field(default_factory=dict)
    _baselines: dict[str, LabEntry | None] = field(default_factory=dict, repr=False)
    #: the rule-pack version this history was last judged with by every rule, in this
    #: process; until then (a new process, another pack) every rule walks it whole
    judged_with: str | None = field(default=None, repr=False)
    _merged: dict[tuple[str, ...], list[LabEntry]] = field(default_factory=dict, repr=False)
    #: how many episodes of each rule are open
    _open: dict[str, int] = field(default_factory=dict, repr=False)
    #: the episodes open on the record, by signal id (routing reads these, not them all)
    open_episodes: dict[uuid.UUID, RecordedEpisode] = field(default_factory=dict, repr=False)
    #: how many lifecycle events (raised ... retracted, not routed) of each rule were
    #: folded in: a rule's tail (``incremental``) stands only while it is the count it expects
    lifecycle_events: dict[str, int] = field(default_factory=dict, repr=False)
    #: each rule's tail: what its last walk left for the next in-order points to fold into
    #: (``services.safety_rules.domain.incremental.RuleTail``); dropped on any change
    #: that may move an earlier point (an enrolment, a supersession)
    tails: dict[str, Any] = field(default_factory=dict, repr=False)
    #: the rules with an episode on the record
    _raised_rules: set[str] = field(default_factory=set, repr=False)

    # -- feeding -------------------------------------------------------------------------

    def apply(
        self,
        event_type: str,
        payload: dict[str, Any] | EventPayload,
        event_id: uuid.UUID,
        recorded_at: datetime,
        stream_version: int,
    ) -> None:
        """Fold one stored event in (types the rules do not read change only the version)."""
        if stream_version <= self.version:
            return  # already folded in
        self.version = stream_version
        if self.learned_until is None or recorded_at > self.learned_until:
            self.learned_until = recorded_at
        try:
            cls = payload_class(event_type)
        except ValueError:
            return
        parsed = payload if isinstance(payload, cls) else cls.model_validate(payload)
        fact = Fact(event_id, recorded_at, stream_version)
        if isinstance(parsed, SubjectEnrolled):
            birth = self.enrolment.birth_date if self.enrolment else None
            weight = self.enrolment.weight_kg if self.enrolment else None
            self.enrolment, self.enrolment_fact = parsed, fact
            self._baselines.clear()  # Day 0 may have moved
            self.tails.clear()
            if parsed.birth_date != birth or parsed.weight_kg != weight:
                # a result may now be dated before birth, or a weight implausible, or not
                self._replace_labs()
        elif isinstance(parsed, LabResultReported):
            self._note_first(event_id)
            report = Report(event_id, parsed.result_status, reported_result(parsed))
            self.reports.setdefault(parsed.identity, []).append(report)
            self._add_lab(LabEntry(event_id, recorded_at, stream_version, parsed))
        elif isinstance(parsed, LabResultUnreadable):
            self._note_first(event_id)
            self.unreadable[event_id] = parsed
        elif isinstance(parsed, LabResultSuperseded):
            self._supersede(parsed.superseded_event_id)
        elif isinstance(parsed, AdverseEventReported):
            self._note_first(event_id)
            self._add_adverse_event(parsed, fact)
        elif isinstance(parsed, MedicationRecorded):
            self._note_first(event_id)
            self._add_medication(MedicationEntry(event_id, recorded_at, stream_version, parsed))
        elif isinstance(parsed, DataQualityIssueRaised):
            self.data_quality.add((parsed.issue, parsed.related_event_id))
        else:
            self._apply_signal_event(parsed)

    def _add_medication(self, entry: MedicationEntry) -> None:
        """A medication record replaces the standing one of its id (a correction), except
        a FHIR MedicationStatement updated to another regimen from a later start (see
        :func:`_dose_changed`): then the standing record stays, ending at the new start,
        and the new one stands from there. A record that is no taking (entered in error)
        withdraws every earlier part of its id."""
        key = entry.record.medication_id
        earlier = self.medications.get(key)
        parts = self._earlier_parts.setdefault(key, [])
        if earlier is not None and _dose_changed(earlier.record, entry.record):
            part = f"{key}\x00{len(parts)}"  # no sender's id has a control character
            stop = min(earlier.record.stop or entry.record.start, entry.record.start)
            ended = earlier.record.model_copy(update={"stop": stop})
            self.medications[part] = MedicationEntry(
                earlier.event_id, earlier.recorded_at, earlier.stream_version, ended
            )
            parts.append(part)
        elif earlier is not None:
            self.superseded.add(earlier.event_id)
            if no_taking(entry.record):
                for part in parts:
                    self.superseded.add(self.medications.pop(part).event_id)
                parts.clear()
        self.medications[key] = entry

    def _note_first(self, event_id: uuid.UUID) -> None:
        if self.first_fact_id is None:
            self.first_fact_id = event_id

    def _add_lab(self, entry: LabEntry) -> None:
        result = entry.result
        if not result.result_status.is_measurement:
            return  # cancelled or entered in error: nothing to judge; its link supersedes
        reason = set_aside_because(result, self.enrolment)
        if reason is not None:
            # kept, never judged: it neither raises, resolves nor is a baseline
            self.set_aside[entry.event_id] = SetAside(entry, *reason)
            return
        self.labs[entry.event_id] = entry
        if result.loinc_code is None:
            return
        if self.day0 is None or entry.at.date() <= self.day0:
            self._baselines.pop(_same(result.loinc_code), None)  # it may be the new baseline
        _place(self.by_code.setdefault(result.loinc_code, []), entry)
        for codes, merged in self._merged.items():
            if result.loinc_code in codes:
                _place(merged, entry)

    def _replace_labs(self) -> None:
        """Sort every current result again into judged and set aside (the birth date,
        which a result's time is checked against, is new or changed)."""
        entries = [*self.labs.values(), *(aside.entry for aside in self.set_aside.values())]
        entries.sort(key=lambda entry: entry.stream_version)
        self.labs, self.set_aside, self.by_code = {}, {}, {}
        self._merged.clear()
        self._baselines.clear()
        for entry in entries:
            self._add_lab(entry)

    def _supersede(self, event_id: uuid.UUID) -> None:
        self.superseded.add(event_id)
        self.tails.clear()
        self.set_aside.pop(event_id, None)
        entry = self.labs.pop(event_id, None)
        if entry is not None and entry.result.loinc_code is not None:
            self._baselines.pop(_same(entry.result.loinc_code), None)
            self._merged.clear()
            history = self.by_code.get(entry.result.loinc_code, [])
            self.by_code[entry.result.loinc_code] = [
                item for item in history if item.event_id != event_id
            ]

    def _add_adverse_event(self, report: AdverseEventReported, fact: Fact) -> None:
        earlier = self.adverse_events.get(report.ae_id)
        serious_since = earlier.serious_since if earlier else None
        if is_serious(report) and serious_since is None:
            serious_since = fact.recorded_at
        if earlier is not None:
            self.superseded.add(earlier.event_id)
        self.adverse_events[report.ae_id] = AdverseEventEntry(
            fact.event_id, fact.recorded_at, fact.stream_version, report, serious_since
        )

    def _apply_signal_event(self, event: EventPayload) -> None:
        rule_id = getattr(event, "rule_id", None)
        if rule_id is not None and not isinstance(event, SafetySignalRouted):
            self.lifecycle_events[rule_id] = self.lifecycle_events.get(rule_id, 0) + 1
        if isinstance(event, SafetySignalRaised):
            self.episodes[event.signal_id] = RecordedEpisode(
                signal_id=event.signal_id,
                rule_id=event.rule_id,
                episode_key=event.episode_key,
                order=len(self.episodes),
                opened_at=event.collected_at,
                grade=event.grade,
                inputs=set(event.input_event_ids),
                site_id=event.site_id,
            )
            self._open[event.rule_id] = self._open.get(event.rule_id, 0) + 1
            self._raised_rules.add(event.rule_id)
            self.open_episodes[event.signal_id] = self.episodes[event.signal_id]
            return
        episode = self.episodes.get(getattr(event, "signal_id", uuid.UUID(int=0)))
        if episode is None:
            return
        if isinstance(event, SafetySignalEscalated):
            episode.grade = event.grade
            episode.inputs |= set(event.input_event_ids)
        elif isinstance(event, SafetySignalAmended):
            episode.grade = event.grade
            episode.opened_at = event.collected_at
            episode.inputs = set(event.input_event_ids)
        elif isinstance(event, SafetySignalResolved):
            self._set_status(episode, "resolved")
            episode.resolved_at = event.collected_at
            episode.resolved_inputs = set(event.input_event_ids)
        elif isinstance(event, SafetySignalReopened):
            self._set_status(episode, "open")
            episode.resolved_at = None
            episode.resolved_inputs = set()
        elif isinstance(event, SafetySignalRetracted):
            self._set_status(episode, "retracted")
        elif isinstance(event, SafetySignalRouted):
            episode.site_id = event.site_id

    def _set_status(self, episode: RecordedEpisode, status: str) -> None:
        change = (status == "open") - (episode.status == "open")
        self._open[episode.rule_id] = self._open.get(episode.rule_id, 0) + change
        episode.status = status
        if status == "open":
            self.open_episodes[episode.signal_id] = episode
        else:
            self.open_episodes.pop(episode.signal_id, None)

    # -- reading -------------------------------------------------------------------------

    def results(self, *codes: str) -> list[LabEntry]:
        """Current results of these LOINC codes, by collection time (do not change it)."""
        if len(codes) == 1:
            return self.by_code.get(codes[0], [])
        if codes not in self._merged:
            merged = [entry for code in codes for entry in self.by_code.get(code, ())]
            merged.sort(key=_order)
            self._merged[codes] = merged
        return self._merged[codes]

    def has_open_episode(self, rule_id: str) -> bool:
        """Whether an episode of this rule is open on the record."""
        return self._open.get(rule_id, 0) > 0

    def has_recorded(self, rule_id: str) -> bool:
        """Whether any episode of this rule was ever raised on the record (whatever
        became of it since): read without walking every recorded episode."""
        return rule_id in self._raised_rules

    def open_count(self, rule_id: str) -> int:
        """How many episodes of this rule are open on the record."""
        return self._open.get(rule_id, 0)

    def standing_reports(self, identity: str, event_id: uuid.UUID) -> list[Report]:
        """The reports of the same observation that stood when ``event_id`` arrived (see
        :mod:`services.safety_rules.domain.supersession`)."""
        return standing_before(self.reports.get(identity, []), event_id, self.superseded)

    def baseline(self, code: str) -> LabEntry | None:
        """The last result on or before Day 0 (collection date as reported) of the analyte
        of ``code``, whichever of its codes it came under (a creatinine baseline sent as
        2160-0 in mg/dL serves a later 14682-9 in umol/L); of ``code`` alone when Vigil
        does not know it."""
        key = _same(code)
        if key not in self._baselines:
            day0 = self.day0
            before = None
            if day0 is not None:
                for entry in reversed(self.results(*_codes_of_same(code))):
                    if entry.at.date() <= day0:
                        before = entry
                        break
            self._baselines[key] = before
        return self._baselines[key]

    def is_current(self, event_id: uuid.UUID) -> bool:
        """Whether a fact still stands (no later report replaced it)."""
        return event_id not in self.superseded

    @property
    def site_id(self) -> str | None:
        return self.enrolment.site_id if self.enrolment else None

    @property
    def day0(self) -> date | None:
        return self.enrolment.day0 if self.enrolment else None

    def enrolment_weight(self) -> tuple[Decimal, datetime, uuid.UUID] | None:
        """The enrolment weight with the moment it stands for (Day 0, else enrolment)."""
        if self.enrolment is None or self.enrolment.weight_kg is None:
            return None
        assert self.enrolment_fact is not None
        when = (
            datetime.combine(self.enrolment.day0, time(12), tzinfo=UTC)
            if self.enrolment.day0
            else self.enrolment_fact.recorded_at
        )
        return self.enrolment.weight_kg, when, self.enrolment_fact.event_id


#: how FHIR ingest names a MedicationStatement's source (``fhir:MedicationStatement/<id>``,
#: services/ingest/domain/fhir_medications.py): one resource, updated in place by its sender
FHIR_STATEMENT = "fhir:MedicationStatement/"


def no_taking(record: MedicationRecorded) -> bool:
    """A record of no length: FHIR's entered-in-error, not-taken (see fhir_medications)."""
    return record.stop is not None and record.stop <= record.start


def _dose_changed(earlier: MedicationRecorded, later: MedicationRecorded) -> bool:
    """Whether a later version of a FHIR MedicationStatement is a change of regimen rather
    than a correction: a taking whose effective start moved later with another drug, dose,
    unit, route or frequency. A MedicationStatement is one resource a sender updates (PUT,
    FHIR R4 http.html#update) as the regimen changes ("prednisone 20 mg/day" becomes "5
    mg/day from 5 March"); the earlier version stood until the new start (FHIR keeps it as
    a version in the resource's history), while an error is marked entered-in-error. A
    JSON record re-sent, an administration, a start moved earlier or kept, and the same
    regimen moved later (a date corrected) remain corrections that replace the record."""
    if not (
        earlier.source_message_id.startswith(FHIR_STATEMENT)
        and later.source_message_id.startswith(FHIR_STATEMENT)
    ):
        return False
    if no_taking(later) or no_taking(earlier) or later.start <= earlier.start:
        return False
    regimen = ("drug", "drug_code", "dose", "dose_unit", "route", "frequency")
    return any(getattr(earlier, name) != getattr(later, name) for name in regimen)


def _same(code: str) -> str:
    """What results that stand for the same measurement share: the analyte's name for a
    code Vigil knows (every code of an analyte is one measurement), else the code."""
    analyte = analyte_for(code)
    return analyte.name if analyte is not None else code


def _codes_of_same(code: str) -> tuple[str, ...]:
    analyte = analyte_for(code)
    return analyte.loinc_codes if analyte is not None else (code,)
