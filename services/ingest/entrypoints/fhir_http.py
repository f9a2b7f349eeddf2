"""What a FHIR request's headers ask, and the CapabilityStatement (pure).

- ``Content-Type`` (R4 3.1.0.1.10): FHIR JSON only; a ``fhirVersion`` parameter other than
  4.0 (R4's; 3.1.0.1.11) is a 415: a STU3 resource is not read as an R4 one on a guess.
- ``Accept``: Vigil answers FHIR JSON; a request accepting none of its JSON types (only
  ``application/fhir+xml``, say) is a 406 rather than JSON it did not ask for.
- ``Content-Encoding`` (RFC 9110 8.4): ``gzip`` (and ``x-gzip``) is decoded, within the
  same size cap as any body: what it decompresses to is counted as it comes, so a small
  body that would expand without bound (a zip bomb) is a 413 after the cap, not a full
  inflation; ``identity`` is the body as sent. Any other coding is a 415 answered with
  ``Accept-Encoding`` (RFC 9110 15.5.16), never read as if it were plain.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from services.ingest.domain.fhir_issues import Issue

# the media types a FHIR JSON body may come as (application/json+fhir: DSTU2 and STU3 senders)
READ_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_ANSWERED_AS = READ_MEDIA_TYPES | {"*/*", "application/*"}
_GZIP = frozenset({"gzip", "x-gzip"})
ACCEPT_ENCODING = "gzip, identity"


@dataclass(frozen=True)
class HeaderRefusal:
    """A request refused for what its headers say: the status, the issue and the code
    kept with the refused receipt."""

    status: int
    issue: Issue
    code: str
    headers: dict[str, str]


def _parameters(value: str) -> tuple[str, dict[str, str]]:
    media, *rest = value.split(";")
    parameters = {}
    for item in rest:
        name, _, given = item.partition("=")
        parameters[name.strip().lower()] = given.strip().strip('"')
    return media.strip().lower(), parameters


def content_type_refusal(content_type: str | None) -> HeaderRefusal | None:
    """415 for a body that does not say it is FHIR R4 JSON."""
    media, parameters = _parameters(content_type or "")
    if media not in READ_MEDIA_TYPES:
        problem = "Vigil reads FHIR JSON only: send Content-Type application/fhir+json"
    elif not parameters.get("fhirversion", "4.0").startswith("4.0"):
        problem = "Vigil reads FHIR R4 only: fhirVersion must be 4.0"
    else:
        return None
    issue = Issue("not-supported", "Content-Type", problem)
    return HeaderRefusal(415, issue, "unsupported-media-type", {})


def accept_refusal(accept: str | None) -> HeaderRefusal | None:
    """406 when the request accepts none of the types Vigil answers in (no Accept, or
    one that allows any of them, is fine)."""
    if not accept or not accept.strip():
        return None
    for item in accept.split(","):
        media, parameters = _parameters(item)
        try:
            weight = float(parameters.get("q", "1"))
        except ValueError:
            weight = 1.0
        if media in _ANSWERED_AS and weight > 0:
            return None
    issue = Issue(
        "not-supported", "Accept", "Vigil answers FHIR JSON only: accept application/fhir+json"
    )
    return HeaderRefusal(406, issue, "not-acceptable", {})


class BodyRefused(Exception):
    """A body that cannot be decoded as its Content-Encoding says."""

    def __init__(self, refusal: HeaderRefusal) -> None:
        super().__init__(refusal.issue.diagnostics)
        self.refusal = refusal


def decoded(raw: bytes, encoding: str | None, cap: int) -> bytes:
    """The body as its ``Content-Encoding`` says to read it, at most ``cap`` bytes once
    decoded; BodyRefused (415, 413 or 400) else."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return raw
    if any(c not in _GZIP for c in codings):
        issue = Issue(
            "not-supported",
            "Content-Encoding",
            f"Content-Encoding is not one Vigil decodes: send {ACCEPT_ENCODING}",
        )
        refusal = HeaderRefusal(
            415, issue, "unsupported-encoding", {"Accept-Encoding": ACCEPT_ENCODING}
        )
        raise BodyRefused(refusal)
    body = raw
    for _ in codings:  # applied in order, so undone in reverse; each is gzip
        body = _gunzip(body, cap)
    return body


def _gunzip(data: bytes, cap: int) -> bytes:
    """gzip members (RFC 1952, one or more), decoded no further than ``cap`` bytes."""
    out: list[bytes] = []
    size = 0
    rest = data
    while rest:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            chunk = inflater.decompress(rest, cap + 1 - size)
        except zlib.error:
            raise BodyRefused(_bad_gzip()) from None
        size += len(chunk)
        out.append(chunk)
        if size > cap or inflater.unconsumed_tail:
            issue = Issue(
                "too-costly",
                "Content-Encoding",
                f"the body decompresses to more than VIGIL_INGEST_MAX_BODY_BYTES ({cap} bytes); "
                "send it in parts",
            )
            raise BodyRefused(HeaderRefusal(413, issue, "body-too-large", {}))
        if not inflater.eof:
            raise BodyRefused(_bad_gzip())
        rest = inflater.unused_data
    return b"".join(out)


def _bad_gzip() -> HeaderRefusal:
    issue = Issue("structure", "Content-Encoding", "the body is not valid gzip as its header says")
    return HeaderRefusal(400, issue, "invalid-encoding", {})


#: what a resource type's endpoint takes (R4 3.1.0: create is POST, update is PUT)
INTERACTIONS = ("create", "update")


def capability_statement(resources: tuple[str, ...], software_version: str) -> dict[str, Any]:
    """The server's CapabilityStatement (R4 6.1.0; served at ``GET [base]/metadata``)."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-03",
        "publisher": "Vigil",
        "kind": "instance",
        "software": {"name": "Vigil ingest", "version": software_version},
        "implementation": {
            "description": "Vigil safety monitoring: takes lab results, study subjects, "
            "adverse events and medications for the studies a key may write; serves no reads"
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "description": "Every interaction but this statement needs an API key: "
                    "Authorization: Bearer <key> (or X-API-Key), scoped to a source, its "
                    "studies and sites"
                },
                "resource": [
                    {
                        "type": kind,
                        "interaction": [{"code": code} for code in INTERACTIONS],
                        "updateCreate": True,
                    }
                    for kind in resources
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
