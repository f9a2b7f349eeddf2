"""Which event a FHIR resource is, in which study: the dispatch of each resource type to
its mapping, after the study its identifiers name (fhir_studies)."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from services.ingest.domain.fhir_adverse_events import adverse_event_event
from services.ingest.domain.fhir_issues import Issue
from services.ingest.domain.fhir_mapping import observation_event, patient_event
from services.ingest.domain.fhir_medications import KINDS as MEDICATION_KINDS
from services.ingest.domain.fhir_medications import LocalMedications, medication_event
from services.ingest.domain.fhir_studies import choose_study, named_studies
from services.ingest.domain.fhir_subjects import LocalPatients
from services.ingest.domain.principals import Principal
from services.ingest.domain.subject_identifiers import SubjectIdentifiers
from shared.events import SubjectEvent


class ResourceReader:
    """Reads resources into events for one ingest: ``systems`` gives each study's
    identifier system, ``zone`` the time zone of times sent without one."""

    def __init__(self, systems: SubjectIdentifiers, zone: tzinfo, default_study: str) -> None:
        self.systems = systems
        self.zone = zone
        self.default_study = default_study

    def study_of(self, principal: Principal) -> str:
        (only,) = principal.studies if len(principal.studies) == 1 else (self.default_study,)
        return only

    def event_of(
        self,
        resource: Any,
        principal: Principal,
        patients: LocalPatients | None = None,
        medications: LocalMedications | None = None,
    ) -> tuple[SubjectEvent | None, list[Issue]]:
        """The resource's event, in the one study its identifier systems name that the
        key may write (fhir_studies.choose_study), else in the key's study; the key must
        allow that study (Intake refuses it else). ``patients`` are the Bundle's Patients
        a subject may reference, ``medications`` its Medications a medicationReference may."""
        if not isinstance(resource, dict):
            return None, [Issue("structure", "Resource", "the body is not a JSON object")]
        kind = resource.get("resourceType")
        patients = patients or {}
        study = choose_study(
            str(kind),
            named_studies(resource, patients, self.systems),
            principal.studies,
            self.study_of(principal),
        )
        if isinstance(study, Issue):
            return None, [study]
        system = self.systems.for_study(study)
        zone = self.zone
        if kind == "Observation":
            return observation_event(
                resource, study_id=study, zone=zone, identifiers=system, patients=patients
            )
        if kind == "Patient":
            return patient_event(resource, study_id=study, identifiers=system)
        if kind == "AdverseEvent":
            return adverse_event_event(
                resource, study_id=study, zone=zone, identifiers=system, patients=patients
            )
        if kind in MEDICATION_KINDS:
            return medication_event(
                resource,
                study_id=study,
                zone=zone,
                identifiers=system,
                patients=patients,
                medications=medications,
            )
        return None, [
            Issue(
                "not-supported",
                "Resource.resourceType",
                "resourceType is not one accepted here (Observation, Patient, AdverseEvent, "
                "MedicationStatement, MedicationAdministration, Bundle)",
            )
        ]
