"""sources.yaml: named sources with identities, networks and certificates, checked at start."""

from __future__ import annotations

from datetime import UTC
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.ingest.adapters.study_files import load_sources
from services.ingest.domain.sources import InvalidSources
from tests.support.studies import SHIPPED, STUDY

FINGERPRINT = "AB:" * 31 + "AB"


def write(folder: Path, document: dict[str, Any], study: str = STUDY) -> Path:
    (folder / study).mkdir(parents=True, exist_ok=True)
    (folder / study / "sources.yaml").write_text(yaml.safe_dump(document))
    return folder


def source(**fields: Any) -> dict[str, Any]:
    return {"id": "lab-a", "hl7": [{"sending_facility": "LAB-A"}], **fields}


def test_the_shipped_senders_keep_their_study_and_zone() -> None:
    registry = load_sources(SHIPPED, default_study="OTHER", default_zone=UTC)
    lab = registry.claiming("LIS", "PKUPH-LAB")
    hospital = registry.claiming("EDC", "PKUPH")
    assert lab is not None
    assert hospital is not None
    assert (lab.id, lab.study_id, str(lab.zone)) == ("pkuph-lab", STUDY, "Asia/Shanghai")
    assert (hospital.id, str(hospital.zone)) == ("pkuph", "Asia/Shanghai")
    assert registry.claiming("OTHERLIS", "PKUPH-LAB") is None  # the application is named
    assert STUDY in registry.studies


def test_networks_and_certificates_are_read(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "study_id": STUDY,
            "sources": [
                source(networks=["10.1.0.0/16"], sites=["S-01"]),
                {
                    "id": "lab-b",
                    "hl7": [{"sending_facility": "LAB-B", "sending_application": "LIS"}],
                    "certificates": [{"subject_cn": "lab-b.example.org", "sha256": FINGERPRINT}],
                },
            ],
        },
    )
    registry = load_sources(folder, default_study=STUDY, default_zone=UTC)
    (lab_a,) = registry.by_network(ip_address("10.1.2.3"))
    assert (lab_a.id, lab_a.sites) == ("lab-a", frozenset({"S-01"}))
    assert registry.by_network(ip_address("10.2.0.1")) == ()
    lab_b = registry.by_certificate("lab-b.example.org", "ab" * 32)
    assert lab_b is not None
    assert lab_b.id == "lab-b"
    assert registry.by_certificate("lab-b.example.org", "cd" * 32) is None


def test_a_source_with_certificates_is_not_admitted_by_its_network_alone(tmp_path: Path) -> None:
    certified = source(networks=["10.1.0.0/16"], certificates=[{"subject_cn": "lab-a"}])
    folder = write(tmp_path, {"study_id": STUDY, "sources": [certified]})
    registry = load_sources(folder, default_study=STUDY, default_zone=UTC)
    assert registry.by_network(ip_address("10.1.2.3")) == ()


def test_the_subject_identifier_block_stands_beside_the_sources(tmp_path: Path) -> None:
    block = {"hl7_assigning_authority": "X", "fhir_system": "urn:x"}
    document = {"study_id": STUDY, "sources": [source()], "subject_identifier": block}
    registry = load_sources(write(tmp_path, document), default_study=STUDY, default_zone=UTC)
    assert [s.id for s in registry.sources] == ["lab-a"]


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        (source(networks=["10.1.0.1/16"]), "sources.0.networks.0"),
        (source(timezone="Mars/Olympus"), "sources.0.timezone"),
        (source(certificates=[{"sha256": "nothex"}]), "sources.0.certificates.0.sha256"),
        (source(certificates=[{}]), "sources.0.certificates.0"),
        (source(id="Lab A"), "sources.0.id"),
        (source(colour="blue"), "sources.0.colour"),
    ],
)
def test_an_invalid_source_names_the_file_and_the_field(
    tmp_path: Path, entry: dict[str, Any], named: str
) -> None:
    folder = write(tmp_path, {"study_id": STUDY, "sources": [entry]})
    with pytest.raises(InvalidSources) as raised:
        load_sources(folder, default_study=STUDY, default_zone=UTC)
    assert str(folder / STUDY / "sources.yaml") in str(raised.value)
    assert named in str(raised.value)


def test_an_hl7_identity_of_two_sources_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"study_id": STUDY, "sources": [source()]})
    write(tmp_path, {"study_id": "OTHER", "sources": [source(id="lab-z")]}, study="OTHER")
    with pytest.raises(InvalidSources, match="already belongs to 'lab-a'"):
        load_sources(tmp_path, default_study=STUDY, default_zone=UTC)


def test_a_source_name_used_twice_is_refused(tmp_path: Path) -> None:
    twice = [source(), source(hl7=[{"sending_facility": "LAB-Z"}])]
    with pytest.raises(InvalidSources, match="'lab-a' is already a source"):
        load_sources(
            write(tmp_path, {"study_id": STUDY, "sources": twice}),
            default_study=STUDY,
            default_zone=UTC,
        )


def test_the_study_id_must_be_its_folder(tmp_path: Path) -> None:
    folder = write(tmp_path, {"study_id": "NCT00000000", "sources": [source()]})
    with pytest.raises(InvalidSources, match="must be the name of its folder"):
        load_sources(folder, default_study=STUDY, default_zone=UTC)


def test_an_identity_that_overlaps_another_sources_is_refused(tmp_path: Path) -> None:
    any_application = source()
    one_application = source(
        id="lab-z", hl7=[{"sending_facility": "LAB-A", "sending_application": "LIS"}]
    )
    folder = write(tmp_path, {"study_id": STUDY, "sources": [any_application, one_application]})
    with pytest.raises(InvalidSources, match="already belongs to 'lab-a'"):
        load_sources(folder, default_study=STUDY, default_zone=UTC)
