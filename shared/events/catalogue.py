"""The event catalogue: every event type Vigil records, where it travels, who writes it,
who reads it, and its payload's schema.

``python -m shared.events.catalogue > docs/events.md`` renders it (a test keeps the file
equal to this module). The type, version, topic, stream and schema come from the payload
models themselves; who writes and who reads each type is :data:`FLOWS`, the one table kept
by hand, which the same test checks against the services' code and which must name every
registered type (a new type without its row fails to render).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import shared.events  # noqa: F401  (registers every module's events)
from shared.events.api_keys import ApiKeyCreated, ApiKeyRevoked, ApiKeyRotated
from shared.events.notifications import (
    AssessmentSigned,
    DataQualityIssueAcknowledged,
    DeliveryAttempted,
    DeliveryFailed,
    DeliveryFellBack,
    DeliverySucceeded,
    DigestSent,
    NotificationEscalated,
    NotificationOpened,
    NotificationReissued,
    NotificationReopened,
    NotificationResolved,
    NotificationRouted,
    NotificationWithdrawn,
    SignalAcknowledged,
)
from shared.events.operations import (
    ProjectionEventSkipped,
    ProjectionRebuilt,
    UndeliveredSignalReported,
)
from shared.events.payloads import (
    AdverseEventReported,
    DataQualityIssueRaised,
    EventPayload,
    InputRejected,
    InputRejectedV1,
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
    payload_class,
    schema_version,
)
from shared.events.reviews import DataQualityIssueReviewed
from shared.events.topics import topic_for
from shared.events.workspace_accounts import WorkspaceAccountChanged


class Party(StrEnum):
    """Who writes or reads events: a service, the ``vigil`` command line, or a partner
    that publishes straight onto the input topics (docs/kafka-acls.md)."""

    INGEST = "ingest"
    SAFETY_RULES = "safety_rules"
    NOTIFIER = "notifier"
    CLI = "vigil CLI"
    PARTNER = "partner"


#: where each party's code is (a partner's is not Vigil's)
PARTY_CODE: Mapping[Party, str] = {
    Party.INGEST: "services/ingest",
    Party.SAFETY_RULES: "services/safety_rules",
    Party.NOTIFIER: "services/notifier",
    Party.CLI: "vigil",
}


@dataclass(frozen=True)
class Flow:
    """Who appends (or publishes) events of one type, and who reads them back, from Kafka
    or from the audit log; ``note`` says what the two columns cannot."""

    producers: tuple[Party, ...]
    consumers: tuple[Party, ...]
    note: str = ""


_FACT = Flow((Party.INGEST, Party.PARTNER), (Party.SAFETY_RULES,))
# the rules service reads its own signal events back to reconcile episodes
_SIGNAL = Flow((Party.SAFETY_RULES,), (Party.SAFETY_RULES, Party.NOTIFIER))
# the notifier folds its own stream to know who was told and when to escalate
_NOTIFICATION = Flow((Party.NOTIFIER,), (Party.NOTIFIER,))
_DELIVERY = Flow(
    (Party.NOTIFIER,), (), "The deliveries table drives the worker; the event is the record."
)
_API_KEY = Flow(
    (Party.CLI,),
    (),
    "Written by `vigil keys` with the change to the key table; ingest reads the table.",
)

FLOWS: Mapping[type[EventPayload], Flow] = {
    SubjectEnrolled: _FACT,
    LabResultReported: _FACT,
    LabResultUnreadable: Flow((Party.INGEST,), (Party.SAFETY_RULES,)),
    AdverseEventReported: _FACT,
    MedicationRecorded: _FACT,
    LabResultSuperseded: Flow((Party.SAFETY_RULES,), (Party.SAFETY_RULES,)),
    DataQualityIssueRaised: Flow(
        (Party.INGEST, Party.SAFETY_RULES),
        (Party.SAFETY_RULES, Party.NOTIFIER),
        "Ingest's issues reach the audit log through the rules service, which records "
        "what it consumes from the data-quality topic.",
    ),
    SafetySignalRaised: _SIGNAL,
    SafetySignalEscalated: _SIGNAL,
    SafetySignalResolved: _SIGNAL,
    SafetySignalReopened: _SIGNAL,
    SafetySignalAmended: _SIGNAL,
    SafetySignalRetracted: _SIGNAL,
    SafetySignalRouted: _SIGNAL,
    InputRejected: Flow(
        (Party.INGEST, Party.SAFETY_RULES),
        (),
        "The dead-letter topic carries a reference to the kept receipt (its headers say "
        "why); the rules service records each dead letter as this event.",
    ),
    InputRejectedV1: Flow((), (), "No longer written: kept to read events recorded before v2."),
    NotificationOpened: _NOTIFICATION,
    NotificationReissued: _NOTIFICATION,
    NotificationEscalated: _NOTIFICATION,
    NotificationWithdrawn: _NOTIFICATION,
    NotificationResolved: _NOTIFICATION,
    NotificationReopened: _NOTIFICATION,
    NotificationRouted: _NOTIFICATION,
    SignalAcknowledged: Flow(
        (Party.NOTIFIER,),
        (Party.NOTIFIER, Party.SAFETY_RULES),
        "The rules service's watchdog counts an acknowledged signal as told.",
    ),
    AssessmentSigned: Flow(
        (Party.NOTIFIER,),
        (Party.NOTIFIER, Party.SAFETY_RULES),
        "Recorded by the workspace's signed assessment; the notifier counts it as the "
        "acknowledgement (escalation stops) and the rules service's watchdog as told.",
    ),
    DataQualityIssueAcknowledged: Flow(
        (Party.NOTIFIER,),
        (Party.NOTIFIER,),
        "Recorded by the workspace's data-quality queue with the review of an issue whose "
        "notification asks for an acknowledgement; the notifier counts it as the "
        "acknowledgement (escalation stops).",
    ),
    DataQualityIssueReviewed: Flow(
        (Party.NOTIFIER,),
        (Party.NOTIFIER,),
        "Recorded by the workspace's data-quality queue, which reads it back to show the "
        "issue as reviewed.",
    ),
    DeliveryAttempted: _DELIVERY,
    DeliverySucceeded: Flow(
        (Party.NOTIFIER,),
        (Party.SAFETY_RULES,),
        "The rules service's watchdog counts a signal with a delivery as told.",
    ),
    DeliveryFailed: _DELIVERY,
    DeliveryFellBack: _DELIVERY,
    DigestSent: Flow((Party.NOTIFIER,), ()),
    ApiKeyCreated: _API_KEY,
    ApiKeyRotated: _API_KEY,
    ApiKeyRevoked: _API_KEY,
    ProjectionEventSkipped: Flow(
        (Party.SAFETY_RULES, Party.NOTIFIER, Party.CLI),
        (Party.SAFETY_RULES,),
        "Written by a projection (shared/projections.py) that could not apply an event, "
        "also during `vigil replay`; the rules service's readiness and "
        "`vigil_projection_skipped_events` count those since the last rebuild.",
    ),
    ProjectionRebuilt: Flow(
        (Party.CLI,), (Party.SAFETY_RULES,), "Written by `vigil replay`; resets the count."
    ),
    UndeliveredSignalReported: Flow((Party.SAFETY_RULES,), ()),
    WorkspaceAccountChanged: Flow(
        (Party.NOTIFIER, Party.CLI),
        (),
        "Written by `vigil users` and by the workspace (a lockout, a second factor enrolled) "
        "with the change to the account table; sign-in reads the table.",
    ),
}


@dataclass(frozen=True)
class CatalogueEntry:
    """One event type as the catalogue shows it."""

    event_type: str
    payload: type[EventPayload]
    version: int
    topic: str | None
    stream: str
    flow: Flow

    @property
    def summary(self) -> str:
        """The first paragraph of the payload's docstring, on one line."""
        paragraph = (self.payload.__doc__ or "").strip().split("\n\n", 1)[0]
        return " ".join(paragraph.split()).replace("``", "`")


def registered_payloads() -> list[type[EventPayload]]:
    """Every payload class that names an event type and is registered under it (what
    :func:`~shared.events.payloads.payload_class` reads), in type-name order."""
    found: dict[str, type[EventPayload]] = {}
    classes: list[type[EventPayload]] = [EventPayload]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        if "event_type" in vars(cls) and payload_class(cls.event_type) is cls:
            found[cls.event_type] = cls
    return [found[event_type] for event_type in sorted(found)]


def entries() -> list[CatalogueEntry]:
    """Every registered event type, in type-name order; an error names any type without
    its row in :data:`FLOWS`."""
    payloads = registered_payloads()
    missing = [cls.event_type for cls in payloads if cls not in FLOWS]
    if missing:
        raise ValueError(f"add who writes and reads these to FLOWS: {', '.join(missing)}")
    return [
        CatalogueEntry(
            cls.event_type,
            cls,
            schema_version(cls.event_type),
            _topic(cls),
            stream_pattern(cls),
            FLOWS[cls],
        )
        for cls in payloads
    ]


def _topic(payload: type[EventPayload]) -> str | None:
    try:
        return topic_for(payload)
    except KeyError:
        return None  # kept in the audit log only


def stream_pattern(payload: type[EventPayload]) -> str:
    """The event-store stream of the type, with its fields as placeholders
    (``subject-{study_id}/{subject_id}``): the payload's own ``stream_id``, asked of an
    instance whose every field holds its name."""
    placeholders = {name: f"{{{name}}}" for name in payload.model_fields}
    stream: str = payload.model_construct(None, **placeholders).stream_id
    return stream


def render_catalogue() -> str:
    """``docs/events.md``: the index of every event type, then each type's schema."""
    catalogue = entries()
    lines = [
        "# Event catalogue",
        "",
        "Generated from `shared/events/` (`python -m shared.events.catalogue > docs/events.md`);",
        "a test keeps this file equal to the code. Every event is a CloudEvents 1.0 envelope",
        "(README, *Events*) whose `type` names the payload and ends with its version; a",
        "breaking change is a new version, never an edit. Every event is appended to the",
        "audit log in its stream; those with a topic also travel on Kafka, keyed",
        "`study_id/subject_id`. *Producers* append or publish the type, *consumers* read it",
        "back from Kafka or from the audit log; a *partner* publishes straight onto the",
        "input topics (docs/kafka-acls.md). Who writes and reads each type is",
        "`FLOWS` in `shared/events/catalogue.py`, checked against the services' code.",
        "",
        f"{len(catalogue)} event types.",
        "",
        "| Type | Version | Kafka topic | Stream | Producers | Consumers |",
        "|---|---|---|---|---|---|",
    ]
    for entry in catalogue:
        lines.append(
            f"| [`{entry.event_type}`](#{_anchor(entry.event_type)}) | {entry.version} | "
            f"{_code(entry.topic) if entry.topic else 'audit log only'} | "
            f"{_code(entry.stream)} | {_parties(entry.flow.producers)} | "
            f"{_parties(entry.flow.consumers)} |"
        )
    lines += ["", "## Topics", "", "| Topic | Event types |", "|---|---|"]
    topics: dict[str, list[str]] = {}
    for entry in catalogue:
        if entry.topic is not None:
            topics.setdefault(entry.topic, []).append(_code(entry.event_type))
    lines += [f"| {_code(topic)} | {', '.join(types)} |" for topic, types in topics.items()]
    lines += ["", "## Payloads"]
    for entry in catalogue:
        lines += ["", *_section(entry)]
    return "\n".join(lines) + "\n"


def _section(entry: CatalogueEntry) -> Iterator[str]:
    yield f"### {entry.event_type}"
    yield ""
    yield f"`{entry.payload.__name__}` ({entry.payload.__module__}). {_cell(entry.summary)}"
    yield ""
    topic = _code(entry.topic) if entry.topic else "none (audit log only)"
    yield f"- Topic: {topic}; stream: {_code(entry.stream)}"
    yield f"- Producers: {_parties(entry.flow.producers)}"
    yield f"- Consumers: {_parties(entry.flow.consumers)}"
    if entry.flow.note:
        yield f"- {entry.flow.note}"
    yield ""
    schema = entry.payload.model_json_schema()
    yield from _fields_table(schema, schema.get("$defs", {}))
    for name, definition in schema.get("$defs", {}).items():
        if definition.get("type") == "object":
            yield ""
            yield f"`{name}`: {_cell(definition.get('description', ''))}"
            yield ""
            yield from _fields_table(definition, schema["$defs"])


def _fields_table(schema: dict[str, Any], definitions: dict[str, Any]) -> Iterator[str]:
    required = set(schema.get("required", ()))
    yield "| Field | Type | Required | Constraints | Description |"
    yield "|---|---|---|---|---|"
    for name, field in schema.get("properties", {}).items():
        kind, constraints = _describe(field, definitions)
        if "default" in field:
            constraints.append(f"default `{_json(field['default'])}`")
        yield (
            f"| `{name}` | {_cell(kind)} | {'yes' if name in required else 'no'} | "
            f"{_cell('; '.join(constraints)) or '-'} | "
            f"{_cell(field.get('description', '')) or '-'} |"
        )


_CONSTRAINTS = {
    "minLength": "min length {}",
    "maxLength": "max length {}",
    "pattern": "pattern `{}`",
    "minimum": ">= {}",
    "maximum": "<= {}",
    "exclusiveMinimum": "> {}",
    "exclusiveMaximum": "< {}",
    "minItems": "min items {}",
    "maxItems": "max items {}",
}


def _describe(schema: dict[str, Any], definitions: dict[str, Any]) -> tuple[str, list[str]]:
    """A field's type in words and its constraints, from its JSON schema."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        kind, constraints = _describe(definitions[name], definitions)
        return (f"`{name}`" if kind == "object" else f"{kind} (`{name}`)"), constraints
    if "anyOf" in schema:
        kinds, constraints = [], []
        for option in schema["anyOf"]:
            kind, more = _describe(option, definitions)
            kinds.append(kind)
            constraints += more
        return " or ".join(kinds), constraints
    constraints = [
        text.format(schema[key] if key == "pattern" else _json(schema[key]))
        for key, text in _CONSTRAINTS.items()
        if key in schema
    ]
    if "enum" in schema:
        constraints.append("one of " + ", ".join(f"`{value}`" for value in schema["enum"]))
    kind = schema.get("type", "any")
    if "format" in schema:
        kind = f"{kind} ({schema['format']})"
    if kind == "array":
        item, item_constraints = _describe(schema.get("items", {}), definitions)
        constraints += [f"each: {c}" for c in item_constraints]
        kind = f"array of {item}"
    return kind, constraints


def _json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value)


def _parties(parties: tuple[Party, ...]) -> str:
    return ", ".join(parties) if parties else "-"


def _code(text: str) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


if __name__ == "__main__":
    print(render_catalogue(), end="")
