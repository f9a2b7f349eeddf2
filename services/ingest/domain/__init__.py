"""Ingest's domain (pure): what an HL7 v2 message, a FHIR resource or a JSON request says,
as Vigil events."""
