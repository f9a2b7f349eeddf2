"""Who is on the other end of an MLLP connection, and whom each of its messages may speak
for (pure).

A connection is authenticated once, when it opens:

1. a TLS client certificate that ``sources.yaml`` maps to a source stands for that source
   (and when the source lists networks, the peer must be in one of them);
2. in development, any peer on loopback is the development source ``dev``: every study,
   any HL7 identity, routed by ``sources.yaml`` or to the default study;
3. otherwise, a peer address inside the networks of sources that list no certificates
   stands for those sources (several systems may share a network);
4. anything else is not authenticated: its messages get AR and are kept as rejected.

Each message must then carry (MSH-3/MSH-4) an identity of a source the connection stands
for; that source becomes the message's Principal, and its study and time zone apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from ipaddress import ip_address

from services.ingest.domain.development import DEVELOPMENT_SOURCE, development_principal
from services.ingest.domain.principals import Principal
from services.ingest.domain.sources import IpAddress, Source, SourceRegistry
from services.ingest.entrypoints.mllp_tls import PresentedCertificate

DEV_SOURCE = DEVELOPMENT_SOURCE


@dataclass(frozen=True)
class Sender:
    """Whom one message speaks for, and where its facts go."""

    principal: Principal
    study_id: str
    zone: tzinfo


@dataclass(frozen=True)
class Refused:
    """The connection stands for no source."""

    reason_code: str
    text: str


@dataclass(frozen=True)
class Authenticated:
    """The sources a connection stands for, and how it proved it."""

    sources: tuple[Source, ...]
    address: IpAddress | None
    certificate: PresentedCertificate | None = None
    development: SourceRegistry | None = None
    """Set for a development loopback peer: routing by the registry, every study."""

    @property
    def label(self) -> str:
        """For log lines: the source names, or ``dev``."""
        return DEV_SOURCE if self.development else ",".join(s.id for s in self.sources)

    def sender_for(self, application: str, facility: str) -> Sender | None:
        """Whom a message with this MSH-3/MSH-4 speaks for; None when the identity belongs
        to no source this connection stands for."""
        registry = self.development
        if registry is not None:
            study, zone = registry.route(application, facility)
            return Sender(development_principal(registry.studies), study, zone)
        source = next((s for s in self.sources if s.claims(application, facility)), None)
        return (
            None
            if source is None
            else Sender(self._principal(source), source.study_id, source.zone)
        )

    def only_principal(self) -> Principal | None:
        """The principal when the connection stands for exactly one source (a refused
        message is then recorded as that source's)."""
        if self.development is not None:
            return development_principal(self.development.studies)
        return self._principal(self.sources[0]) if len(self.sources) == 1 else None

    def _principal(self, source: Source) -> Principal:
        if self.certificate is not None:
            credential = f"mllp-certificate:{self.certificate.label}"
        else:
            network = source.network_of(self.address) if self.address is not None else None
            credential = f"mllp-network:{network}"
        return Principal(source.id, credential, frozenset({source.study_id}), source.sites)


def parse_address(host: str) -> IpAddress | None:
    """The peer's address (an IPv4-mapped IPv6 address as IPv4); None when not an IP."""
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def authenticate(
    registry: SourceRegistry,
    *,
    host: str,
    certificate: PresentedCertificate | None,
    development: bool,
) -> Authenticated | Refused:
    """Decide, once per connection, which sources the peer stands for."""
    address = parse_address(host)
    if certificate is not None:
        source = registry.by_certificate(certificate.subject_cn, certificate.sha256)
        if source is not None:
            if source.networks and (address is None or source.network_of(address) is None):
                return Refused(
                    "mllp-network-not-allowed",
                    f"the certificate of source {source.id} is used from an address outside "
                    "its networks",
                )
            return Authenticated((source,), address, certificate)
    if development and address is not None and address.is_loopback:
        return Authenticated((), address, development=registry)
    sources = registry.by_network(address) if address is not None else ()
    if sources:
        return Authenticated(sources, address)
    return Refused(
        "mllp-unauthenticated",
        "this connection stands for no source: connect from a network listed for your "
        "source in sources.yaml, or with a TLS client certificate mapped to it",
    )
