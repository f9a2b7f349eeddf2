"""Who is told what, when: pure decisions from a signal, the roster and the deadlines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notifier.domain.messages import MessageContent, content_for_signal
from services.notifier.domain.roster import Person, Role, Roster, role_named
from shared.events import DataQualityIssueRaised, SafetySignalRaised
from shared.events.notifications import NotificationOpened, Recipient


@dataclass(frozen=True)
class AckDeadlines:
    """How long a signal may wait for an acknowledgement before the next level is told."""

    serious_hours: float = 24.0
    grade3_hours: float = 4.0
    other_hours: float = 72.0

    def hours_for(self, *, serious: bool, grade: int | None) -> float:
        """The shortest deadline that applies: a serious grade-3 event gets the grade's."""
        hours = [self.other_hours]
        if serious:
            hours.append(self.serious_hours)
        if grade is not None and grade >= 3:
            hours.append(self.grade3_hours)
        return min(hours)


def acknowledgement_due(
    told_at: datetime, hours: float, action_deadline: datetime | None
) -> tuple[datetime, float]:
    """When an acknowledgement is due and the interval of the escalation timers that
    follow: ``hours`` after the people are told, but never later than the rule's own
    deadline for the action it asks (a pregnancy reported within 24 hours is not
    acknowledged three days later). The next levels get the same interval; a deadline
    already past makes the acknowledgement due at once, and the next levels keep
    ``hours``."""
    due = told_at + timedelta(hours=hours)
    if action_deadline is None or action_deadline >= due:
        return due, hours
    left = (action_deadline - told_at).total_seconds() / 3600
    return action_deadline, left if left > 0 else hours


@dataclass(frozen=True)
class PlannedMessage:
    """One message to one person (on their first channel; fallbacks happen on failure)."""

    person: Person
    content: MessageContent
    purpose: str


def signal_kind(signal: SafetySignalRaised | NotificationOpened) -> str:
    """The routing class of a signal: serious, protocol-threshold or finding."""
    return "serious" if signal.serious else signal.severity


def goes_to_digest(
    signal: SafetySignalRaised | NotificationOpened, person: Person, roster: Roster
) -> bool:
    """A finding no protocol rule flags waits for the daily digest for the roles the study
    chose (and so does what becomes of it); a protocol-threshold or serious signal is
    always sent at once."""
    return signal_kind(signal) == "finding" and person.role in roster.digest.roles


def recipient(person: Person) -> Recipient:
    return Recipient(person_id=person.id, role=person.role.value)


def open_notification(
    signal: SafetySignalRaised,
    *,
    raised_at: datetime,
    roster: Roster,
    deadlines: AckDeadlines,
) -> tuple[NotificationOpened, list[PlannedMessage], list[Person]]:
    """The opening event, the messages to send now, and the people who get it in a digest."""
    extra = {role for name in signal.recipient_roles if (role := role_named(name)) is not None}
    people = roster.recipients_for(signal.site_id, signal_kind(signal), frozenset(extra))
    digest = [p for p in people if goes_to_digest(signal, p, roster)]
    now = [p for p in people if p not in digest]
    acknowledge_by, hours = acknowledgement_due(
        raised_at,
        deadlines.hours_for(serious=signal.serious, grade=signal.grade),
        signal.reporting_deadline,
    )
    content = content_for_signal(signal).model_copy(update={"acknowledge_by": acknowledge_by})
    opened = NotificationOpened(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        site_id=signal.site_id,
        severity=signal.severity,
        serious=signal.serious,
        grade=signal.grade,
        raised_at=raised_at,
        recipients=tuple(recipient(p) for p in now),
        digest_recipients=tuple(recipient(p) for p in digest),
        acknowledge_by=acknowledge_by,
        deadline_hours=hours,
        message=content.model_dump(mode="json"),
    )
    return opened, [PlannedMessage(p, content, "raised") for p in now], digest


def escalation_chain(roster: Roster, told: set[str]) -> list[Person]:
    """The next level for a signal nobody acknowledged: the backups of those told, then the
    study's medical monitors, then their backups; nobody already told."""
    backups = [roster.backup_of(person_id) for person_id in sorted(told)]
    monitors = list(roster.medical_monitors())
    monitor_backups = [roster.backup_of(p.id) for p in monitors]
    for level in (backups, monitors, monitor_backups):
        fresh = [p for p in dict.fromkeys(level) if p is not None and p.id not in told]
        if fresh:
            return fresh
    return []


@dataclass(frozen=True)
class IssueRoute:
    """Who is told of one kind of data-quality issue, and whether they must acknowledge it
    (then it has the deadline of a signal without a grade and escalates like one)."""

    role: Role
    acknowledged: bool
    #: how an issue of this kind that names no rule is told instead (None: the same)
    without_rule: IssueRoute | None = None


_MONITOR_ALERT = IssueRoute(Role.MEDICAL_MONITOR, acknowledged=True)
_MONITOR_NOTICE = IssueRoute(Role.MEDICAL_MONITOR, acknowledged=False)
_DATA_MANAGER = IssueRoute(Role.DATA_MANAGER, acknowledged=False)
# a dose or a route no rule counted (raised before any rule looked at the medication) is a
# query for the data manager; one a rule counted may hide a prohibited dose
_COUNTED_MEDICATION = IssueRoute(
    Role.MEDICAL_MONITOR, acknowledged=True, without_rule=_DATA_MANAGER
)

#: Every kind of data-quality issue reaches a person ("never silent"); a new kind fails
#: the tests until it is given a route here (and its words in ``messages``).
#: - The medical monitors acknowledge what may hide a value or a dose a rule would have
#:   alerted on: a result flagged abnormal that cannot be read, a censored result, reports
#:   that contradict each other, a protocol analyte in an unknown unit (a critical
#:   haemoglobin in 'gm/dL' reaches nobody else), and a dose or a route a rule could not
#:   read on a medication it counts (a prohibited dose may hide behind it).
#: - They are informed of a result for a subject nobody enrolled (its signals reach them
#:   too) and of an unflagged result that cannot be read.
#: - The data manager is informed of what needs a query, not a clinical judgement: a
#:   value or a time that cannot be right (never judged, so nothing to assess), a reference
#:   range that cannot be right or is missing, a missing input, a medication Vigil does
#:   not recognise. No acknowledgement: the query is the data manager's work in the data
#:   system, and an acknowledgement link records a clinical assessment.
#: The notifier answers exactly these kinds (``ANSWERED_ISSUES``), in this
#: order: its catch-up's partial index (migration 0015) lists them so; a new kind needs a
#: migration that recreates the index.
DATA_QUALITY_ROUTES: dict[str, IssueRoute] = {
    "unknown-subject": _MONITOR_NOTICE,
    "result-unreadable": _MONITOR_NOTICE,
    "abnormal-result-unreadable": _MONITOR_ALERT,
    "censored-result": _MONITOR_ALERT,
    "conflicting-results": _MONITOR_ALERT,
    "unit-not-convertible": _MONITOR_ALERT,
    "dose-not-convertible": _COUNTED_MEDICATION,
    "route-not-recognised": _COUNTED_MEDICATION,
    "implausible-value": _DATA_MANAGER,
    "implausible-time": _DATA_MANAGER,
    "reference-range-implausible": _DATA_MANAGER,
    "medication-not-recognised": _DATA_MANAGER,
    "missing-input": _DATA_MANAGER,
    "reference-range-missing": _DATA_MANAGER,
}
#: The kinds of data-quality issue the notifier answers, in the order DATA_QUALITY_ROUTES
#: lists them: the catch-up's selection (``services/notifier/adapters/signal_log.py``) and
#: so its partial index (migration 0015) list them in this order.
ANSWERED_ISSUES: tuple[str, ...] = tuple(DATA_QUALITY_ROUTES)


def route_of(issue: DataQualityIssueRaised) -> IssueRoute:
    """How one issue is told: its kind's route, or the route the kind gives an issue that
    names no rule."""
    route = DATA_QUALITY_ROUTES[issue.issue]
    if route.without_rule is not None and not issue.rule_id:
        return route.without_rule
    return route


def data_quality_recipients(roster: Roster, route: IssueRoute) -> tuple[Person, ...]:
    """The people a data-quality issue goes to: the study contacts with the route's role;
    the medical monitors when the study has none with it (never nobody)."""
    return roster.study_contacts_with(route.role) or roster.medical_monitors()
