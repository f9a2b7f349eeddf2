"""Who an MLLP connection is, whom each message may speak for, and which settings may start."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
import yaml

from services.ingest.adapters.study_files import load_sources
from services.ingest.domain.sources import SourceRegistry
from services.ingest.entrypoints.mllp_auth import Authenticated, Refused, authenticate
from services.ingest.entrypoints.mllp_tls import (
    PresentedCertificate,
    UnsafeMllpSettings,
    check_mllp_settings,
)
from services.settings import VigilSettings
from tests.support.studies import STUDY

FINGERPRINT_B = "b" * 64


@pytest.fixture
def registry(tmp_path: Path) -> SourceRegistry:
    (tmp_path / STUDY).mkdir()
    document = {
        "study_id": STUDY,
        "sources": [
            {
                "id": "lab-a",
                "hl7": [{"sending_facility": "LAB-A", "sending_application": "LIS"}],
                "networks": ["10.1.0.0/16"],
                "sites": ["S-01"],
            },
            {"id": "edc-a", "hl7": [{"sending_facility": "EDC-A"}], "networks": ["10.1.0.0/16"]},
            {
                "id": "lab-b",
                "hl7": [{"sending_facility": "LAB-B"}],
                "certificates": [{"sha256": FINGERPRINT_B}],
                "networks": ["10.2.0.0/16"],
            },
        ],
    }
    (tmp_path / STUDY / "sources.yaml").write_text(yaml.safe_dump(document))
    return load_sources(tmp_path, default_study=STUDY, default_zone=UTC)


def connect(
    registry: SourceRegistry,
    host: str,
    certificate: PresentedCertificate | None = None,
    *,
    development: bool = False,
) -> Authenticated:
    auth = authenticate(registry, host=host, certificate=certificate, development=development)
    assert isinstance(auth, Authenticated), auth
    return auth


def test_a_peer_in_a_network_speaks_for_the_sources_there_by_their_identities(
    registry: SourceRegistry,
) -> None:
    auth = connect(registry, "10.1.4.5")
    lab = auth.sender_for("LIS", "LAB-A")
    edc = auth.sender_for("ANY", "EDC-A")
    assert lab is not None
    assert edc is not None
    assert lab.principal.source == "lab-a"
    assert lab.principal.credential == "mllp-network:10.1.0.0/16"
    assert lab.principal.studies == frozenset({STUDY})
    assert lab.principal.sites == frozenset({"S-01"})
    assert edc.principal.source == "edc-a"
    assert auth.sender_for("LIS", "LAB-B") is None  # another source's identity
    assert auth.sender_for("OTHER", "LAB-A") is None  # the application is named


def test_a_peer_outside_every_network_is_refused(registry: SourceRegistry) -> None:
    auth = authenticate(registry, host="192.0.2.7", certificate=None, development=False)
    assert isinstance(auth, Refused)
    assert auth.reason_code == "mllp-unauthenticated"


def test_an_ipv4_mapped_address_is_matched_as_ipv4(registry: SourceRegistry) -> None:
    assert connect(registry, "::ffff:10.1.0.9").sender_for("LIS", "LAB-A") is not None


def test_a_certificate_stands_for_its_source_only(registry: SourceRegistry) -> None:
    certificate = PresentedCertificate("lab-b.example.org", FINGERPRINT_B)
    auth = connect(registry, "10.2.0.1", certificate)
    sender = auth.sender_for("", "LAB-B")
    assert sender is not None
    assert sender.principal.credential == "mllp-certificate:lab-b.example.org"
    assert auth.sender_for("LIS", "LAB-A") is None


def test_a_source_that_lists_certificates_is_not_admitted_without_one(
    registry: SourceRegistry,
) -> None:
    auth = authenticate(registry, host="10.2.0.1", certificate=None, development=False)
    assert isinstance(auth, Refused)


def test_a_certificate_used_outside_its_sources_networks_is_refused(
    registry: SourceRegistry,
) -> None:
    certificate = PresentedCertificate(None, FINGERPRINT_B)
    auth = authenticate(registry, host="10.9.0.1", certificate=certificate, development=False)
    assert isinstance(auth, Refused)
    assert auth.reason_code == "mllp-network-not-allowed"


def test_in_development_a_loopback_peer_is_the_dev_source_for_every_study(
    registry: SourceRegistry,
) -> None:
    auth = connect(registry, "127.0.0.2", development=True)
    known, unknown = auth.sender_for("LIS", "LAB-A"), auth.sender_for("X", "ELSEWHERE")
    assert known is not None
    assert unknown is not None
    assert (known.principal.source, known.principal.credential) == ("dev", "dev-loopback")
    assert known.principal.studies == registry.studies
    assert known.study_id == STUDY
    assert unknown.study_id == registry.default[0]


def test_in_production_loopback_is_nobody_special(registry: SourceRegistry) -> None:
    auth = authenticate(registry, host="127.0.0.1", certificate=None, development=False)
    assert isinstance(auth, Refused)


def settings(**values: object) -> VigilSettings:
    return VigilSettings.model_validate(values)


def test_production_refuses_plain_mllp_naming_the_settings() -> None:
    with pytest.raises(UnsafeMllpSettings) as refused:
        check_mllp_settings(settings(environment="production"))
    assert "VIGIL_MLLP_TLS_CERT_FILE" in str(refused.value)
    assert "VIGIL_MLLP_ALLOW_PLAIN" in str(refused.value)


def test_plain_mllp_needs_the_explicit_allowance_or_development() -> None:
    check_mllp_settings(settings(environment="production", mllp_allow_plain=True))
    check_mllp_settings(settings(environment="development"))


def test_half_a_tls_configuration_is_refused() -> None:
    with pytest.raises(UnsafeMllpSettings, match="VIGIL_MLLP_TLS_KEY_FILE"):
        check_mllp_settings(settings(environment="development", mllp_tls_cert_file="c.pem"))
    with pytest.raises(UnsafeMllpSettings, match="VIGIL_MLLP_TLS_CLIENT_CA_FILE needs TLS"):
        check_mllp_settings(settings(environment="development", mllp_tls_client_ca_file="a.pem"))
