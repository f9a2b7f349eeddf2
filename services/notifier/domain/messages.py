"""What a message says, and how each channel shows it.

Subject id, site, analyte, value, grade, rule, the required action, when it is due (in
the reader's time zone, named, to the minute) and a link into the workspace; never a
name or any other direct identifier, and never free text copied from the input (an
adverse event is named in Vigil's words and by its MedDRA code, not by the site's
verbatim term). The
content is stored with each planned delivery
(:mod:`services.notifier.domain.deliveries`), so that a fallback to another channel
renders the same facts.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import resources
from string import Template
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator

from services.notifier.domain.links import MessageLink
from services.notifier.domain.roster import Roster
from services.notifier.domain.site_time import UTC_ZONE, local_time
from shared.adverse_event_labels import adverse_event_label
from shared.analytes import shown_unit, units_for_people
from shared.events import DataQualityIssueRaised, SafetySignalRaised
from shared.events.payloads import Comparator, Qualitative
from shared.message_text import header_value, single_line

MessageKind = Literal[
    "signal",
    "escalation",
    "grade-worsened",
    "reopened",
    "resolved",
    "withdrawn",
    "data-quality",
    "result-unreadable",
    "abnormal-result-unreadable",
    "censored-result",
    "conflicting-results",
    # a protocol analyte, a dose or a route no rule could read (the monitors acknowledge)
    "unit-not-convertible",
    "dose-not-convertible",
    "route-not-recognised",
    # what needs a query, not a clinical judgement (the data manager is told)
    "implausible-value",
    "implausible-time",
    "reference-range-implausible",
    "medication-not-recognised",
    "missing-input",
    "reference-range-missing",
    # a signal raised before its subject's site was known, told to that site now
    "routed",
    "routed-acknowledged",
    "digest",
]
#: what a signal judged: a laboratory analyte, an adverse event, a medication's dose
Judged = Literal["analyte", "adverse-event", "medication"]
# Kinds that only inform: nothing to acknowledge, so a short notice without a link.
NOTICE_KINDS: frozenset[MessageKind] = frozenset({"resolved", "withdrawn", "routed-acknowledged"})


_TEXT_FIELDS = (
    "study_id",
    "subject_id",
    "site_id",
    "analyte",
    "value",
    "threshold",
    "grading",
    "rule_id",
    "rule_title",
    "severity",
    "deadline",
    "note",
)


class MessageContent(BaseModel):
    """The facts one message carries (stored as JSON with the delivery)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: MessageKind = "signal"
    study_id: str
    subject_id: str = ""
    site_id: str | None = None
    signal_id: uuid.UUID
    analyte: str = ""
    # what ``analyte`` and ``value`` hold, so each is labelled for it: a laboratory
    # analyte and its value, an adverse event (no value), a medication and its dose
    judged: Judged = "analyte"
    value: str = ""
    threshold: str = ""
    grade: int | None = None
    grading: str | None = None
    rule_id: str = ""
    rule_title: str = ""
    severity: str = "protocol-threshold"
    serious: bool = False
    # the required action (the name is what older stored messages have): "report to the
    # sponsor", "review and acknowledge"; its due time, if any, is report_by
    deadline: str = ""
    acknowledge_by: AwareDatetime | None = None
    report_by: AwareDatetime | None = None
    level: int = 0
    note: str = ""
    items: tuple[str, ...] = ()
    # what the message is about: a signal, or a data-quality issue (whose workspace page is
    # its entry in the data-quality queue, also when it escalates)
    about: Literal["signal", "data-quality-issue"] = "signal"

    @field_validator(*_TEXT_FIELDS, mode="before")
    @classmethod
    def _one_line(cls, value: object) -> object:
        """Each fact on one line, bounded: whatever a sender typed (a line break in an AE
        term, a NUL) can reach neither a header nor the database's JSON."""
        return single_line(value) if isinstance(value, str) else value

    @field_validator("items", mode="before")
    @classmethod
    def _lines(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(single_line(v) if isinstance(v, str) else v for v in value)
        return value

    def with_kind(self, kind: MessageKind, **changes: object) -> MessageContent:
        return self.model_copy(update={"kind": kind, **changes})


def format_value(value: Decimal | None, unit: str | None, comparator: str | None = None) -> str:
    """A measured value as the message shows it ("" for AE and medication signals), with
    the comparator the laboratory sent ("< 0.5 10*9/L": HL7 SN, FHIR Quantity.comparator;
    the number alone is not what it reported). Only a unit Vigil recognises is shown: a
    signal recorded before the rules service stopped copying the unit as sent shows a fixed
    phrase for any other."""
    if value is None:
        return ""
    number = f"{comparator} {value:f}" if comparator in _COMPARATORS else f"{value:f}"
    return f"{number} {shown_unit(unit)}".strip()


_COMPARATORS: frozenset[str] = frozenset(get_args(Comparator))

#: what a qualitative finding says, in Vigil's words (the result as sent never is shown)
_FINDINGS: frozenset[str] = frozenset(get_args(Qualitative))


def signal_value(
    value: Decimal | None,
    unit: str | None,
    comparator: str | None,
    computed: Mapping[str, Any],
) -> str:
    """What a signal's message shows as its value: a medication's dose as given with the
    day's sum the rule judged, labelled ("500 mg once intravenous (625 mg/day
    prednisone-equivalent)": the equivalent alone reads as a dose of the drug); a measured
    value; a qualitative finding in Vigil's words ("positive"), never a bare "-", which a
    laboratory report reads as negative; else "" (an adverse event has no value)."""
    given, daily = computed.get("dose_given"), computed.get("daily_dose")
    if isinstance(given, str) and isinstance(daily, str) and given and daily:
        return f"{given} ({daily})"
    shown = format_value(value, unit, comparator)
    if shown:
        return shown
    finding = computed.get("result")
    return finding if isinstance(finding, str) and finding in _FINDINGS else ""


def when_for_people(moment: datetime, zone: ZoneInfo = UTC_ZONE) -> str:
    """A deadline as a message prints it: in the reader's zone, to the minute (cut down,
    never later than the deadline), the zone named: ``2026-12-06 06:28 CST
    (Asia/Shanghai)``."""
    return local_time(moment, zone)


def message_zone(roster: Roster | None, person_id: str, site_id: str | None) -> ZoneInfo:
    """The zone a person reads a message's times in: the site's for the people of a site
    (its own zone, else the study's), the study's for study-level contacts (a medical
    monitor reads every site's signals in one zone); UTC without a roster."""
    if roster is None:
        return UTC_ZONE
    if any(person.id == person_id for person in roster.study_contacts):
        return roster.zone(None)
    return roster.zone(site_id)


def analyte_of(signal: SafetySignalRaised) -> str:
    """What the message says was judged. An adverse event is named in Vigil's own words
    from the signal's coded values, never by its verbatim term: a signal recorded before
    the rules service stopped putting the term there is worded afresh here."""
    if not (signal.episode_key or "").startswith("ae:"):
        return signal.analyte
    computed = signal.computed_values
    seriousness = computed.get("seriousness")
    meddra_code, nyha_class = computed.get("meddra_code"), computed.get("nyha_class")
    return adverse_event_label(
        serious=signal.serious,
        criteria=seriousness.split(", ") if isinstance(seriousness, str) else (),
        meddra_code=meddra_code if isinstance(meddra_code, str) else None,
        nyha_class=nyha_class if isinstance(nyha_class, str) else None,
    )


def judged_in(signal: SafetySignalRaised) -> Judged:
    """What a signal judged: an adverse event, a medication's dose, or an analyte."""
    if (signal.episode_key or "").startswith("ae:"):
        return "adverse-event"
    if isinstance(signal.computed_values.get("daily_dose"), str):
        return "medication"
    return "analyte"


def content_for_signal(signal: SafetySignalRaised) -> MessageContent:
    value = signal_value(
        signal.observed_value,
        signal.observed_unit,
        signal.observed_comparator,
        signal.computed_values,
    )
    if signal.reporting_deadline:
        action = signal.required_action or "report"
    else:
        action = signal.required_action or "review and acknowledge"
    return MessageContent(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        site_id=signal.site_id,
        signal_id=signal.signal_id,
        analyte=analyte_of(signal),
        judged=judged_in(signal),
        value=value,
        threshold=signal.threshold,
        grade=signal.grade,
        grading=signal.grading,
        rule_id=signal.rule_id,
        rule_title=signal.rule_title,
        severity=signal.severity,
        serious=signal.serious,
        deadline=action,
        report_by=signal.reporting_deadline,
    )


#: what to do about each data-quality issue that is told in its own words: a result, a
#: dose or a route no rule could judge (unreadable, censored without an answer,
#: conflicting reports, an unknown unit), and what the data manager queries
_ACTIONS: dict[MessageKind, str] = {
    "result-unreadable": "ask the laboratory to send the result again",
    "abnormal-result-unreadable": "obtain the result from the laboratory and review it",
    "censored-result": "obtain the exact value from the laboratory and review it",
    "conflicting-results": "ask the laboratory which report is right (a corrected result) "
    "and review both",
    "unit-not-convertible": "obtain the value in a unit Vigil knows from the laboratory and "
    "review it against the protocol's thresholds",
    "dose-not-convertible": "obtain the dose, unit and frequency from the site and review "
    "the daily dose against the protocol's limit",
    "route-not-recognised": "obtain the route from the site and review whether the "
    "medication counts under the protocol",
    "implausible-value": "query the value with the laboratory or site and have it corrected "
    "(Vigil judged nothing on it)",
    "implausible-time": "query the date with the site or laboratory and have it corrected",
    "reference-range-implausible": "ask the laboratory for its reference range for the "
    "analyte and have the result corrected",
    "medication-not-recognised": "query the medication's name or code with the site",
    "missing-input": "obtain the missing value the problem names from the site",
    "reference-range-missing": "ask the laboratory to send its reference range with the result",
}
#: data-quality issues told in their own words (the subject, the problem as Vigil words
#: it, what to do, the issue's id), whoever is told
UNREADABLE_KINDS: frozenset[MessageKind] = frozenset(_ACTIONS)


def carries_link(content: MessageContent) -> bool:
    """Whether a message asks its reader to acknowledge (with their own link): a signal
    and what it becomes, unless a notice; a data-quality issue only when it has a deadline
    (the others inform: a data manager queries the data, nobody assesses it)."""
    if content.kind in NOTICE_KINDS or content.kind == "digest":
        return False
    if content.kind in UNREADABLE_KINDS or content.kind == "data-quality":
        return content.acknowledge_by is not None
    return True


def content_for_data_quality(issue: DataQualityIssueRaised, event_id: uuid.UUID) -> MessageContent:
    """A data-quality issue as its message tells it: a result for a subject nobody
    enrolled, a result, dose or route no rule could read, or what the data manager queries
    (the detail, built by Vigil, names the analyte or field, where and the problem; never
    the value or text as sent)."""
    if issue.issue in _ACTIONS:
        return MessageContent(
            kind=issue.issue,
            study_id=issue.study_id,
            subject_id=issue.subject_id,
            signal_id=event_id,
            rule_id=issue.rule_id or "",
            note=issue.detail,
            deadline=_ACTIONS[issue.issue],
            about="data-quality-issue",
        )
    return MessageContent(
        kind="data-quality",
        study_id=issue.study_id,
        subject_id=issue.subject_id,
        signal_id=event_id,
        rule_id=issue.rule_id or "",
        note=f"{issue.issue}: {issue.detail}",
        deadline="check the subject's enrolment",
        about="data-quality-issue",
    )


def digest_line(content: MessageContent) -> str:
    """One finding (or what became of it: resolved, reopened, withdrawn) as a line of a
    daily digest."""
    where = f"subject {content.subject_id} (site {content.site_id})"
    if content.kind in {"resolved", "reopened", "withdrawn"}:
        return f"{content.kind.upper()}: {where}: {content.analyte}, {content.rule_id}: " + (
            content.note
        )
    grade = f"grade {content.grade}" if content.grade else "not graded"
    value = f"{content.analyte} {content.value}".strip()
    return f"{where}: {value}, {grade}, {content.rule_id}"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


_HEADLINES: dict[MessageKind, str] = {
    "signal": "A safety signal was raised for a subject in study {study}.",
    "escalation": "ESCALATION (level {level}): a safety signal in study {study} was not "
    "acknowledged in time; you are told as the next level.",
    "grade-worsened": "The safety signal got worse: grade {grade}. Please review again.",
    "reopened": "REOPENED: what resolved this safety signal was corrected or withdrawn; the "
    "abnormality holds again. Please review and acknowledge.",
    "resolved": "RESOLVED: the condition of this safety signal no longer holds; no action "
    "is needed.",
    "withdrawn": "WITHDRAWN: this safety signal was retracted; no action is needed.",
    "data-quality": "A result arrived for a subject Vigil does not know in study {study}.",
    "result-unreadable": "A laboratory sent a result for a subject in study {study} that "
    "Vigil cannot read, so no rule could judge it.",
    "abnormal-result-unreadable": "A laboratory sent a result for a subject in study {study} "
    "that it flagged abnormal or positive, and Vigil cannot read it, so no rule could judge "
    "it. Please obtain the result from the laboratory, review it and acknowledge.",
    "censored-result": "A laboratory sent a result for a subject in study {study} only as "
    "above or below a number, and that does not tell whether a rule's threshold is met. "
    "Please obtain the exact value, review it and acknowledge.",
    "conflicting-results": "A laboratory sent reports of one result for a subject in study "
    "{study} that contradict each other without a correction. Please find out which is "
    "right, review and acknowledge.",
    "unit-not-convertible": "A protocol analyte in an unknown unit: a laboratory sent a "
    "result for a subject in study {study} in a unit Vigil does not recognise, so no rule "
    "could judge it, and it may be critical. Please obtain the value in a known unit, review "
    "it and acknowledge.",
    "dose-not-convertible": "A medication a protocol rule counts was recorded for a subject "
    "in study {study} with a dose Vigil cannot turn into a daily amount, so the rule could "
    "not tell whether it exceeds the protocol's limit. Please obtain the dose, review it and "
    "acknowledge.",
    "route-not-recognised": "A medication a protocol rule counts was recorded for a subject "
    "in study {study} with a route Vigil does not recognise, so the rule could not tell "
    "whether it counts. Please obtain the route, review it and acknowledge.",
    "implausible-value": "A value for a subject in study {study} cannot be physiological: "
    "Vigil kept it and judged nothing on it. Please query it.",
    "implausible-time": "A date or time for a subject in study {study} cannot be right "
    "against the subject's others: Vigil set it aside. Please query it.",
    "reference-range-implausible": "A laboratory sent a reference range for a subject in "
    "study {study} that cannot be right (low above high): Vigil did not use it. Please "
    "query it.",
    "medication-not-recognised": "A medication was recorded for a subject in study {study} "
    "that Vigil does not recognise, so no rule could tell whether it counts. Please query "
    "it.",
    "missing-input": "A rule could not judge a subject in study {study} because a value it "
    "needs is missing. Please obtain it.",
    "reference-range-missing": "A laboratory sent a result for a subject in study {study} "
    "without the reference range a rule needs to judge it. Please obtain it.",
    "routed": "The subject of this open safety signal is now enrolled at your site: it was "
    "raised before Vigil knew the subject, and the study's medical monitors were told. "
    "Please review and acknowledge.",
    "routed-acknowledged": "The subject of this safety signal is now enrolled at your site: "
    "it was raised before Vigil knew the subject, and has been acknowledged already. For "
    "your information; no action is needed.",
    "digest": "Daily digest for study {study}: findings no protocol rule flags.",
}
_SUBJECT_PREFIX: dict[MessageKind, str] = {
    "signal": "",
    "escalation": "ESCALATED: ",
    "grade-worsened": "WORSE: ",
    "reopened": "REOPENED: ",
    "resolved": "RESOLVED: ",
    "withdrawn": "WITHDRAWN: ",
    "data-quality": "DATA QUALITY: ",
    "result-unreadable": "UNREADABLE RESULT: ",
    "abnormal-result-unreadable": "UNREADABLE ABNORMAL RESULT: ",
    "censored-result": "EXACT VALUE NEEDED: ",
    "conflicting-results": "CONFLICTING RESULTS: ",
    "unit-not-convertible": "UNKNOWN UNIT: ",
    "dose-not-convertible": "DOSE NOT READABLE: ",
    "route-not-recognised": "ROUTE NOT RECOGNISED: ",
    "implausible-value": "IMPLAUSIBLE VALUE: ",
    "implausible-time": "IMPLAUSIBLE TIME: ",
    "reference-range-implausible": "IMPLAUSIBLE REFERENCE RANGE: ",
    "medication-not-recognised": "MEDICATION NOT RECOGNISED: ",
    "missing-input": "MISSING INPUT: ",
    "reference-range-missing": "REFERENCE RANGE MISSING: ",
    "routed": "NOW AT YOUR SITE: ",
    "routed-acknowledged": "NOW AT YOUR SITE (ACKNOWLEDGED): ",
    "digest": "DIGEST: ",
}


#: the labels of what a signal judged and its value
_JUDGED_LABELS: dict[Judged, tuple[str, str]] = {
    "analyte": ("Analyte", "Value"),
    "adverse-event": ("Adverse event", "Value"),
    "medication": ("Medication", "Dose"),
}


def _rows(content: MessageContent, zone: ZoneInfo) -> list[tuple[str, str]]:
    if content.kind == "digest":
        return [("Finding", item) for item in content.items]
    if content.kind in UNREADABLE_KINDS:
        rows = [
            ("Subject", content.subject_id),
            ("Problem", content.note),
            ("Required action", content.deadline),
        ]
        if content.acknowledge_by is not None:
            rows.append(("Acknowledge by", when_for_people(content.acknowledge_by, zone)))
        rows.append(("Issue id", str(content.signal_id)))
        return [(label, value) for label, value in rows if value]
    site = content.site_id or "unknown (subject not enrolled in Vigil)"
    what, amount = _JUDGED_LABELS[content.judged]
    if content.kind in NOTICE_KINDS:
        rows = [
            ("Subject", content.subject_id),
            ("Site", site),
            (what, content.analyte),
            ("Rule", f"{content.rule_id} - {content.rule_title}"),
            ("Reason", content.note),
            ("Signal id", str(content.signal_id)),
        ]
        return [(label, value) for label, value in rows if value]
    grade = f"{content.grading or 'CTCAE'} grade {content.grade}" if content.grade else "not graded"
    rows = [
        ("Subject", content.subject_id),
        ("Site", site),
        (what, content.analyte),
        (amount, content.value),
        ("Threshold", content.threshold),
        ("Grade", grade),
        ("Serious AE", "yes" if content.serious else "no"),
        ("Rule", f"{content.rule_id} - {content.rule_title}"),
        ("Required action", content.deadline),
    ]
    if content.report_by is not None:
        rows.append(("Report due by", when_for_people(content.report_by, zone)))
    if content.acknowledge_by is not None:
        rows.append(("Acknowledge by", when_for_people(content.acknowledge_by, zone)))
    if content.note:
        rows.append(("Reason" if content.kind == "reopened" else "Note", content.note))
    rows.append(("Signal id", str(content.signal_id)))
    return [(label, value) for label, value in rows if value]


def subject_line(content: MessageContent) -> str:
    """The e-mail's Subject: one line, units as people write them (UCUM's ``10*`` as
    ``x10^``), cut with an ellipsis past SUBJECT_LIMIT (after the units are spelled: they
    may lengthen it)."""
    prefix = _SUBJECT_PREFIX[content.kind]
    if content.kind == "digest":
        line = f"[Vigil] {prefix}{content.study_id}: {len(content.items)} finding(s)"
    elif content.kind in UNREADABLE_KINDS:  # no value to show: the prefix says what it is
        line = f"[Vigil] {prefix}{content.study_id} subject {content.subject_id}"
    else:
        what = f"{content.analyte} {content.value}".strip()
        rule = f" ({content.rule_id})" if content.rule_id else ""
        line = f"[Vigil] {prefix}{content.study_id} subject {content.subject_id}: {what}{rule}"
    return header_value(units_for_people(line))


def _template(name: str) -> Template:
    return Template(resources.files("services.notifier").joinpath("templates", name).read_text())


#: what the link in a message says it is for
ACTION_TEXT = "Open the signal in the Vigil workspace to assess and sign (you sign in first)"
#: what the link of a data-quality issue nobody acknowledges says it is for
QUEUE_ACTION_TEXT = (
    "Open the issue in the Vigil workspace's data-quality queue to review it (you sign in first)"
)


#: what the link of a data-quality issue its reader must acknowledge says it is for
QUEUE_ACKNOWLEDGE_TEXT = (
    "Open the issue in the Vigil workspace's data-quality queue to review and acknowledge "
    "it (you sign in first)"
)


def is_data_quality(content: MessageContent) -> bool:
    """A data-quality issue's message (not a signal's): its workspace page is its entry in
    the data-quality queue, whether or not it asks for an acknowledgement."""
    return (
        content.about == "data-quality-issue"
        or content.kind in UNREADABLE_KINDS
        or content.kind == "data-quality"
    )


def links_to_queue(content: MessageContent) -> bool:
    """A data-quality issue that asks for no acknowledgement links to its queue entry."""
    return is_data_quality(content) and not carries_link(content)


def render(
    content: MessageContent,
    channel: str,
    *,
    link: MessageLink | None,
    message_id: str,
    zone: ZoneInfo = UTC_ZONE,
    queue_url: str | None = None,
) -> Rendered:
    """The message for a channel: e-mail has subject, plain text and HTML, its times in
    ``zone``; a webhook has the JSON document (in ``text``; times as ISO 8601 values)."""
    headline = _HEADLINES[content.kind].format(
        study=content.study_id, level=content.level, grade=content.grade
    )
    # units in the form people read, in every message (the content keeps UCUM)
    # cut again after: a unit read by people is longer than UCUM's ("10*" is "x10^")
    subject = subject_line(content)
    rows = [(label, units_for_people(value)) for label, value in _rows(content, zone)]
    if channel == "webhook":
        document = {
            "type": f"vigil.{content.kind}",
            "message_id": message_id,
            "summary": headline,
            **content.model_dump(mode="json"),
            "workspace_url": link.url if link else queue_url,
            "acknowledgement_api": link.api_url if link else None,
            "acknowledgement_token": link.token if link else None,
            # deprecated: the token link, for receivers that read the token from it
            "acknowledge_url": link.acknowledge_url if link else None,
        }
        return Rendered(subject, json.dumps(document, sort_keys=True), None)
    template = "notice" if content.kind in NOTICE_KINDS else "alert"
    action_text = QUEUE_ACKNOWLEDGE_TEXT if is_data_quality(content) else ACTION_TEXT
    action = f"{action_text}:\n{link.url}" if link else ""
    if link is None and queue_url is not None:
        action = f"{QUEUE_ACTION_TEXT}:\n{queue_url}"
    text = _template(f"{template}.txt").substitute(
        headline=headline,
        rows="\n".join(f"{label + ':':<17} {value}" for label, value in rows),
        action=action,
        message_id=message_id,
    )
    html_rows = "\n".join(
        f"<tr><th align=left>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    html_action = (
        f'<p><a href="{html.escape(link.url, quote=True)}">{html.escape(action_text)}</a></p>'
        if link
        else f'<p><a href="{html.escape(queue_url, quote=True)}">'
        f"{html.escape(QUEUE_ACTION_TEXT)}</a></p>"
        if queue_url
        else ""
    )
    body_html = _template(f"{template}.html").substitute(
        title=html.escape(subject),
        headline=html.escape(headline),
        rows=html_rows,
        action=html_action,
        message_id=html.escape(message_id),
    )
    return Rendered(subject, text, body_html)


@dataclass(frozen=True)
class DeliveryHeader:
    """Which message this is: one person, one channel, one signal and purpose."""

    delivery_id: uuid.UUID
    signal_id: uuid.UUID
    study_id: str
    subject_id: str
    purpose: str
    person_id: str
    channel: str
    recipient: str
    message_id: str
    subject_line: str


@dataclass(frozen=True)
class Delivery(DeliveryHeader):
    """A message rendered: what a sender sends. Built when sending, never stored (a
    webhook's body carries an acknowledgement token)."""

    body_text: str
    body_html: str | None
