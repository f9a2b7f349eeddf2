import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from services.notifier.delivery_worker import retry_delay
from services.notifier.domain.messages import render_email
from services.notifier.domain.roster import InvalidRoster, load_roster
from shared.events import SafetySignalRaised
from tests.support.services import REPO

ROSTER = load_roster(REPO / "studies" / "NCT05262686" / "roster.yaml")


def signal(site_id: str | None) -> SafetySignalRaised:
    return SafetySignalRaised(
        study_id="NCT05262686",
        subject_id="01-003",
        site_id=site_id,
        signal_id=uuid.UUID(int=7),
        rule_id="anaemia-hb-le-9",
        rule_title="Haemoglobin at or below 9 g/dL",
        rule_pack_version="1",
        input_event_ids=(uuid.UUID(int=1),),
        computed_values={"value_in_rule_unit": "8.6"},
        analyte="haemoglobin",
        observed_value=Decimal("8.6"),
        observed_unit="g/dL",
        threshold="<= 9 g/dL",
        collected_at=datetime(2026, 6, 1, tzinfo=UTC),
    )


def test_site_investigators_receive_site_signals() -> None:
    emails = {str(p.email) for p in ROSTER.recipients_for("PKUPH-01")}
    assert emails == {"pi.site01@vigil.example.org", "subi.site01@vigil.example.org"}


@pytest.mark.parametrize("site", [None, "NO-SUCH-SITE"])
def test_unknown_site_goes_to_the_medical_monitor(site: str | None) -> None:
    assert [p.role for p in ROSTER.recipients_for(site)] == ["medical_monitor"]


def test_roster_without_medical_monitor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text("study_id: X\nsites: []\n")
    with pytest.raises(InvalidRoster, match="medical_monitor"):
        load_roster(path)


def test_email_has_what_the_investigator_needs_and_no_names() -> None:
    delivery = render_email(signal("PKUPH-01"), recipient="a@b.org", base_url="https://v.example")
    text = delivery.subject_line + delivery.body_text
    for needed in ("01-003", "haemoglobin", "8.6 g/dL", "<= 9 g/dL", "anaemia-hb-le-9"):
        assert needed in text
    assert f"https://v.example/signals/{uuid.UUID(int=7)}" in text
    names = [p.name for s in ROSTER.sites for p in s.people]
    assert not [name for name in names if name in text]


def test_delivery_identity_is_stable_per_signal_and_recipient() -> None:
    first = render_email(signal("A"), recipient="a@b.org", base_url="x")
    again = render_email(signal("A"), recipient="A@B.org", base_url="x")
    other = render_email(signal("A"), recipient="c@b.org", base_url="x")
    assert first.message_id == again.message_id != other.message_id


def test_retry_delay_grows_is_capped_and_jittered() -> None:
    assert retry_delay(1, maximum=300, rng=lambda: 0.0) == 1.0
    assert retry_delay(1, maximum=300, rng=lambda: 1.0) == 2.0
    assert retry_delay(4, maximum=300, rng=lambda: 1.0) == 16.0
    assert retry_delay(30, maximum=300, rng=lambda: 1.0) == 300.0
