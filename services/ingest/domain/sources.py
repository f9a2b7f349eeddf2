"""The systems that send a study's data over HL7 v2: ``studies/<study>/sources.yaml``.

Each source is one sending system (a laboratory's LIS, a hospital's EDC) with a name (the
same name its API keys and the ownership of what it sent carry), the HL7 identities it
may use (MSH-4 facility, optionally MSH-3 application), the time zone of the times it
sends without an offset, the sites it may write (all when unset), and how its MLLP
connections are recognised: the client networks it connects from and, over TLS, its
client certificates. The file's study is the one study a source writes.

The file is validated at start-up; an error names the file and the field. Identities,
names and certificates are unique across every study (and no two sources' identities
overlap), so a certificate and a message's identity always map to at most one source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import tzinfo
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
    model_validator,
)

from services.ingest.domain.study_documents import StudyDocument
from services.ingest.domain.subject_identifiers import SubjectIdentifierSystem

SOURCES_FILE = "sources.yaml"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

IpAddress = IPv4Address | IPv6Address
IpNetwork = IPv4Network | IPv6Network


class InvalidSources(ValueError):
    """A sources file failed validation; the message names the file and the field."""


class Hl7Identity(BaseModel):
    """How a source names itself in MSH."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sending_facility: str = Field(min_length=1, max_length=180, description="MSH-4.1")
    sending_application: str | None = Field(
        default=None, min_length=1, max_length=180, description="MSH-3.1; any when unset"
    )


class ClientCertificate(BaseModel):
    """A TLS client certificate that stands for the source: every field given must match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject_cn: str | None = Field(default=None, min_length=1, description="subject CN")
    sha256: str | None = Field(
        default=None, description="SHA-256 fingerprint of the DER certificate, hex"
    )

    @field_validator("sha256")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalised = value.replace(":", "").lower()
        if not _SHA256.match(normalised):
            raise ValueError("must be 64 hexadecimal digits (colons allowed)")
        return normalised

    @model_validator(mode="after")
    def _something_to_match(self) -> ClientCertificate:
        if self.subject_cn is None and self.sha256 is None:
            raise ValueError("give subject_cn, sha256 or both")
        return self

    def matches(self, subject_cn: str | None, sha256: str) -> bool:
        return (self.subject_cn is None or self.subject_cn == subject_cn) and (
            self.sha256 is None or self.sha256 == sha256
        )


class SourceEntry(BaseModel):
    """One sending system, as written in the file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="the source's name")
    hl7: tuple[Hl7Identity, ...] = ()
    timezone: str = "UTC"
    sites: tuple[str, ...] | None = Field(default=None, min_length=1)
    networks: tuple[IPvAnyNetwork, ...] = ()
    certificates: tuple[ClientCertificate, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone (e.g. Asia/Shanghai)") from None
        return value


class StudySources(BaseModel):
    """A whole ``sources.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study_id: str = Field(min_length=1)
    sources: tuple[SourceEntry, ...] = ()
    # owned by the subject-identifier configuration (HL7 PID-3 assigning authority, FHIR
    # identifier system); read by its own model, carried here untouched
    subject_identifier: SubjectIdentifierSystem | None = None


@dataclass(frozen=True)
class Source:
    """A loaded source: what ingest authenticates a connection or a message against."""

    id: str
    study_id: str
    identities: tuple[Hl7Identity, ...]
    zone: tzinfo
    sites: frozenset[str] | None
    networks: tuple[IpNetwork, ...]
    certificates: tuple[ClientCertificate, ...]

    def claims(self, application: str, facility: str) -> bool:
        """Whether MSH-3 ``application`` / MSH-4 ``facility`` is one of its identities."""
        return any(
            i.sending_facility == facility and i.sending_application in (None, application)
            for i in self.identities
        )

    def network_of(self, address: IpAddress) -> IpNetwork | None:
        """The first of its networks that holds ``address``."""
        return next((n for n in self.networks if address in n), None)


@dataclass(frozen=True)
class SourceRegistry:
    """Every source of every study under the study folder."""

    sources: tuple[Source, ...]
    studies: frozenset[str]
    """Every study in the folder (a development sender may write any of them)."""
    default: tuple[str, tzinfo]

    def claiming(self, application: str, facility: str) -> Source | None:
        """The source that owns this HL7 identity (at most one: identities of two sources
        never overlap)."""
        return next((s for s in self.sources if s.claims(application, facility)), None)

    def route(self, application: str, facility: str) -> tuple[str, tzinfo]:
        """Study and zone of a sender by its identity; the defaults for one not listed."""
        source = self.claiming(application, facility)
        return (source.study_id, source.zone) if source is not None else self.default

    def by_certificate(self, subject_cn: str | None, sha256: str) -> Source | None:
        return next(
            (s for s in self.sources if any(c.matches(subject_cn, sha256) for c in s.certificates)),
            None,
        )

    def by_network(self, address: IpAddress) -> tuple[Source, ...]:
        """Sources without certificates that may connect from ``address`` (a source that
        lists certificates must present one)."""
        return tuple(
            s for s in self.sources if not s.certificates and s.network_of(address) is not None
        )


def _problems(error: ValidationError) -> str:
    """Each problem as ``field.path: message``; config values are not patient data, but the
    message names the field so the fix is obvious."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or '(file)'}: {e['msg']}"
        for e in error.errors()
    )


def _validate(document: StudyDocument) -> StudySources:
    try:
        return StudySources.model_validate(document.content)
    except ValidationError as error:
        raise InvalidSources(f"{document.path}: invalid sources: {_problems(error)}") from None


def _overlap(one: Hl7Identity, other: Hl7Identity) -> bool:
    """Whether a message could carry both identities (an unset application is any)."""
    return one.sending_facility == other.sending_facility and (
        None in (one.sending_application, other.sending_application)
        or one.sending_application == other.sending_application
    )


def _check_unique(path: Path, entry: SourceEntry, loaded: list[Source]) -> None:
    for other in loaded:
        if other.id == entry.id:
            raise InvalidSources(f"{path}: sources.id {entry.id!r} is already a source")
        for identity in entry.hl7:
            if any(_overlap(identity, theirs) for theirs in other.identities):
                raise InvalidSources(
                    f"{path}: source {entry.id!r}: hl7 identity {identity.sending_facility!r}/"
                    f"{identity.sending_application!r} already belongs to {other.id!r}"
                )
        for certificate in entry.certificates:
            if certificate in other.certificates:
                raise InvalidSources(
                    f"{path}: source {entry.id!r}: certificates: the same certificate "
                    f"already stands for {other.id!r}"
                )


def source_registry(
    documents: Iterable[StudyDocument],
    *,
    study_folders: Iterable[str],
    default_study: str,
    default_zone: tzinfo,
) -> SourceRegistry:
    """Every study's sources, from each study's ``sources.yaml`` (``study_folders``: the
    names of every study folder, with or without one); raises InvalidSources naming the
    file and the field."""
    loaded: list[Source] = []
    for document in documents:
        path = document.path
        study = _validate(document)
        if study.study_id != document.folder:
            raise InvalidSources(
                f"{path}: study_id {study.study_id!r} must be the name of its folder "
                f"({document.folder!r})"
            )
        for entry in study.sources:
            _check_unique(path, entry, loaded)
            loaded.append(
                Source(
                    id=entry.id,
                    study_id=study.study_id,
                    identities=entry.hl7,
                    zone=ZoneInfo(entry.timezone),
                    sites=frozenset(entry.sites) if entry.sites is not None else None,
                    networks=tuple(entry.networks),
                    certificates=entry.certificates,
                )
            )
    studies = set(study_folders) | {s.study_id for s in loaded} | {default_study}
    return SourceRegistry(tuple(loaded), frozenset(studies), (default_study, default_zone))
