"""What each entry of a batch or transaction Bundle asks, and the answers that are not a
recorded event (pure).

FHIR R4 (http.html#transaction) lets an entry ask any interaction. Vigil records what
is reported: POST creates, PUT updates or creates (a laboratory sending a corrected
Observation to ``Observation/<id>``; the Observation's status, not the method, says it
is a correction). It never deletes, patches or serves reads, so DELETE, PATCH, GET and
HEAD are answered ``405`` for that entry. An entry without ``request`` is read as a
POST: bdl-3 requires one, but what the resource says does not depend on it.

A resource Vigil does not judge (Practitioner, Encounter, DiagnosticReport, ...) is not
an error: it is kept verbatim with the Bundle's receipt and answered ``200 OK`` with an
information issue. ``200``, not ``201``: nothing was created that the sender could read
back at a location (http.html#transaction-response: an entry's status is the one the
interaction would have had on its own, and ``201`` promises a ``Location``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

from services.ingest.domain.fhir_issues import Issue
from services.ingest.domain.fhir_medications import medication_warnings
from services.ingest.domain.fhir_values import GROUPING, PENDING, unused_observation
from shared.events import LabResultReported, LabResultUnreadable, SubjectEvent
from shared.plausibility import implausible_reference_range, implausible_value

JUDGED = frozenset(
    {"Observation", "Patient", "AdverseEvent", "MedicationStatement", "MedicationAdministration"}
)
WRITES = frozenset({"POST", "PUT"})
NOT_WRITES = {
    "DELETE": "a result is never deleted from the audit trail: to withdraw one, send it "
    "again (POST or PUT) with status entered-in-error or cancelled",
    "PATCH": "a patch is not taken: send the whole resource with POST or PUT",
    "GET": "Vigil takes reports only and serves no reads",
    "HEAD": "Vigil takes reports only and serves no reads",
}
# FHIR R4 (4.0.1) resource types that R4B, whose models validate here, no longer has
_R4_ONLY = frozenset(
    {
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)


@dataclass(frozen=True)
class EntryRefusal:
    """Why one entry is refused, with the HTTP status its response carries."""

    status: str
    issues: list[Issue]


def is_resource_type(name: Any) -> bool:
    """Whether ``name`` is a concrete FHIR R4 resource type."""
    if not isinstance(name, str) or name in ("Resource", "DomainResource"):
        return False
    if name in _R4_ONLY:
        return True
    try:
        model = get_fhir_model_class(name)
    except ValueError:
        return False
    return issubclass(model, Resource)


def entry_refusal(entry: Any, n: int) -> EntryRefusal | None:
    """Why the ``n``th entry's request cannot be taken, or None: its method, and its url
    against the resource it carries."""
    where = f"Bundle.entry[{n}]"
    if not isinstance(entry, dict):
        return _bad(400, "structure", where, "each entry must be a JSON object")
    request = entry.get("request")
    if request is None:
        return None
    if not isinstance(request, dict):
        return _bad(400, "structure", f"{where}.request", "request must be a JSON object")
    method = request.get("method")
    if method in NOT_WRITES:
        problem = f"{method} is not supported here: {NOT_WRITES[method]}"
        return EntryRefusal(
            "405 Method Not Allowed", [Issue("not-supported", f"{where}.request.method", problem)]
        )
    if method not in WRITES:
        return _bad(
            400,
            "value",
            f"{where}.request.method",
            "method must be one of the FHIR HTTP verbs (POST or PUT to report)",
        )
    return _url_refusal(entry.get("resource"), request.get("url"), method, where)


def _url_refusal(resource: Any, url: Any, method: str, where: str) -> EntryRefusal | None:
    """A POST's url is the resource type; a PUT's ``<type>/<id>`` with the resource's own
    id (http.html#update: an id that disagrees is a 400) or ``<type>?<search>``."""
    if not isinstance(resource, dict) or url is None:
        return None  # a missing resource is the resource's own issue
    if not isinstance(url, str):
        return _bad(400, "structure", f"{where}.request.url", "url must be a string")
    kind = resource.get("resourceType")
    path, conditional, _ = url.partition("?")
    target, _, target_id = path.partition("/")
    if target != kind:
        return _bad(
            400,
            "invalid",
            f"{where}.request.url",
            "request.url names another resource type than the entry's resource",
        )
    if method == "PUT" and not conditional and target_id != resource.get("id"):
        return _bad(
            400,
            "invalid",
            f"{where}.request.url",
            "a PUT's request.url must be <resourceType>/<id> with the resource's own id",
        )
    return None


def _bad(status: int, code: str, expression: str, problem: str) -> EntryRefusal:
    reasons = {400: "Bad Request", 422: "Unprocessable Entity"}
    return EntryRefusal(f"{status} {reasons[status]}", [Issue(code, expression, problem)])


#: a Bundle's Patient that names its subject but not what an enrolment needs
NO_ENROLMENT = "Patient (no enrolment)"


def _no_enrolment(resource: Any) -> str | None:
    """NO_ENROLMENT for a Patient in a Bundle without managingOrganization or birthDate
    (both 0..1 in R4 and in US Core): a laboratory's transaction carries one to name
    whose results they are, not to enrol anyone, so it is kept and its results read
    rather than the whole transaction refused. Posted alone to /Patient, it is an
    enrolment, and the missing element is a 422 naming it."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        return None
    if resource.get("managingOrganization") and resource.get("birthDate"):
        return None
    return NO_ENROLMENT


#: why each resource that a Vigil type names is kept and not used
_NOT_USED = {
    PENDING: "Observation received and kept with the Bundle, not used: its status is "
    "registered and it carries no result yet; send the result when there is one",
    NO_ENROLMENT: "Patient received and kept with the Bundle, not used to enrol: it names "
    "no site (managingOrganization) or no birthDate, as a laboratory's Patient need not; "
    "the Bundle's results for its subject are recorded and judged",
    GROUPING: "Observation received and kept with the Bundle, not used: it groups results "
    "(hasMember or component) and carries no value of its own; each member is read as its "
    "own Observation",
    # its status is not its results': Observation.status is 1..1 in R4 and each result's
    # own is read, so a sender is told rather than left to assume otherwise
    "Medication": "Medication received and kept with the Bundle, not used on its own: "
    "its code is read as the drug of each MedicationStatement or MedicationAdministration "
    "whose medicationReference names it",
    "DiagnosticReport": "DiagnosticReport received and kept with the Bundle, not used: "
    "Vigil judges Observation, Patient, AdverseEvent and medication resources; its status is not "
    "applied to its results, each Observation's own status is read; its effective[x] "
    "dates those of its results that carry none",
}


def received_not_used(kind: str) -> dict[str, Any]:
    """The response entry of a resource Vigil keeps but does not judge (``kind``: its
    type, or what :func:`unused_observation` or the Patient check found it to be)."""
    default = (
        f"{kind} received and kept with the Bundle, not used: "
        "Vigil judges Observation, Patient, AdverseEvent, MedicationStatement and "
        "MedicationAdministration resources"
    )
    return _information("200 OK", _NOT_USED.get(kind, default))


def _information(status: str, diagnostics: str) -> dict[str, Any]:
    return {
        "response": {
            "status": status,
            "outcome": {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "information", "code": "informational", "diagnostics": diagnostics}
                ],
            },
        }
    }


def created(kind: str, event_id: Any, event: SubjectEvent | None = None) -> dict[str, Any]:
    """The response entry of a resource recorded as an event: its location names the
    resource type as sent, with the event's id as its logical id, version 1. A result
    kept unreadable says so, with why (a warning: it is kept, not judged)."""
    response: dict[str, Any] = {"status": "201 Created", "location": location(kind, event_id)}
    if isinstance(event, LabResultUnreadable):
        response["outcome"] = unreadable_outcome(event)
    elif (implausible := implausible_outcome(event)) is not None:
        response["outcome"] = implausible
    elif warnings := medication_warnings(event, kind):
        response["outcome"] = {"resourceType": "OperationOutcome", "issue": warnings}
    return {"response": response}


def implausible_outcome(event: SubjectEvent | None) -> dict[str, Any] | None:
    """What is said of a result whose value or reference range cannot be right: kept,
    never judged (the range never used), a data manager asked to look (warnings); None
    for any other."""
    if not isinstance(event, LabResultReported):
        return None
    issues = []
    if (detail := implausible_value(event)) is not None:
        issues.append(
            {
                "severity": "warning",
                "code": "value",
                "diagnostics": f"implausible-value: {detail}",
                "expression": ["Observation.value[x]"],
            }
        )
    if (why := implausible_reference_range(event)) is not None:
        # kept as sent, never used as a limit: the rules raise reference-range-implausible
        issues.append(
            {
                "severity": "warning",
                "code": "value",
                "diagnostics": f"reference-range-implausible: the range cannot be right ({why})",
                "expression": ["Observation.referenceRange"],
            }
        )
    return {"resourceType": "OperationOutcome", "issue": issues} if issues else None


def unreadable_outcome(event: LabResultUnreadable) -> dict[str, Any]:
    """What is said of a result kept unreadable: its field and problem, as a warning."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "warning",
                "code": "not-supported",
                "diagnostics": f"kept as unreadable, not judged: {event.problem}",
                "expression": [event.field],
            }
        ],
    }


def location(kind: str, event_id: Any) -> str:
    return f"{kind}/{event_id}/_history/1"


@dataclass(frozen=True)
class EntryOutcome:
    """What one entry is: an event to record, a resource kept but not used (its type), or
    a refusal."""

    event: SubjectEvent | None = None
    unused: str | None = None
    refusal: EntryRefusal | None = None


def read_entry(
    entry: Any, n: int, event_of: Callable[[Any], tuple[SubjectEvent | None, list[Issue]]]
) -> EntryOutcome:
    """The ``n``th entry of a Bundle, its resource read by ``event_of`` when Vigil judges
    its type."""
    refused = entry_refusal(entry, n)
    if refused is not None:
        return EntryOutcome(refusal=refused)
    where = f"Bundle.entry[{n}].resource"
    resource = entry.get("resource")
    if resource is None:
        return EntryOutcome(
            refusal=_bad(400, "required", where, "the entry carries no resource to report")
        )
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if (unused := unused_observation(resource) or _no_enrolment(resource)) is not None:
        return EntryOutcome(unused=unused)
    if kind is not None and (not isinstance(kind, str) or kind not in JUDGED):
        if is_resource_type(kind):
            return EntryOutcome(unused=str(kind))
        problem = "resourceType is not a FHIR R4 resource type"
        return EntryOutcome(refusal=_bad(422, "not-supported", f"{where}.resourceType", problem))
    event, issues = event_of(resource)
    if isinstance(event, LabResultUnreadable):
        event = event.model_copy(update={"segment": f"Bundle.entry[{n}]"})
    if event is not None:
        return EntryOutcome(event=event)
    prefixed = [Issue(i.code, f"{where}.{i.expression}", i.diagnostics) for i in issues]
    return EntryOutcome(refusal=EntryRefusal("422 Unprocessable Entity", prefixed))
