"""How messages reach ingest: the HTTP JSON and FHIR APIs and the MLLP listener."""
