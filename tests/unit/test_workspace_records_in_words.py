"""The workspace's pure parts and handlers without a server: a subject's audit trail in
words (ids and values, never free text), and a data-quality review recorded once per
person on the in-memory unit of work."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notifier import handlers
from services.notifier.domain.audit_trail import recorded_by, summary, type_in_words
from services.notifier.domain.roster import Person
from shared.events import AdverseEventReported, DataQualityIssueRaised
from shared.events.notifications import AssessmentSigned
from shared.events.reviews import DataQualityIssueReviewed
from tests.support.notifier import ManualClock, context, roster
from tests.support.notifier_in_memory import store_for
from tests.support.signatures import data_quality_issue, haemoglobin

AT = datetime(2026, 6, 1, 9, tzinfo=UTC)


def test_an_adverse_event_is_summarised_by_ids_and_codes_never_by_its_verbatim_term() -> None:
    event = AdverseEventReported.model_validate(
        {
            "study_id": "S",
            "subject_id": "01-001",
            "ae_id": "AE-7",
            "term": "Jane Roe fainted at home",
            "meddra_code": "10042772",
            "onset": AT,
            "serious": True,
            "source_message_id": "M-1",
        }
    )
    text = summary(event.event_type, event.model_dump(mode="json"))
    assert text == "AE AE-7; MedDRA 10042772; serious yes; message M-1"
    assert type_in_words(event.event_type) == "Adverse event reported"


def test_a_signature_names_its_signer_and_keeps_its_comment_off_the_trail() -> None:
    signed = {
        "person_id": "pi1",
        "role": "investigator",
        "meaning": "clinically-significant",
        "comment": "called Jane Roe",
        "signal_id": "s-1",
        "facts_digest": "sha256:" + "0" * 64,
    }
    kind = AssessmentSigned.event_type
    assert recorded_by(kind, "/vigil/notifier", signed) == "/vigil/notifier: pi1 (investigator)"
    assert "Jane" not in summary(kind, signed)
    # a delivery's person is its recipient, not who recorded it
    delivery = "org.vigil.notification.delivery_succeeded.v1"
    assert recorded_by(delivery, "/vigil/notifier", {"person_id": "pi1"}) == "/vigil/notifier"
    assert type_in_words("org.vigil.something_new.happened.v1") == "Something new happened"


async def test_a_review_is_recorded_once_per_person_whatever_the_note() -> None:
    ctx = context(roster(), ManualClock())
    store, result = store_for(ctx), haemoglobin("01-001")
    envelope = data_quality_issue("01-001", result)
    issue = envelope.payload()
    assert isinstance(issue, DataQualityIssueRaised)
    the_roster = roster()
    pi1, mm = the_roster.person("pi1"), the_roster.person("mm")
    assert pi1 is not None
    assert mm is not None

    async def review(person: Person, note: str) -> bool:
        reviewed = await handlers.review_issue(
            store,
            envelope.id,
            issue,
            person=person,
            note=note,
            context=ctx,
        )
        return reviewed.new

    assert await review(pi1, "asked the lab")
    assert not await review(pi1, "asked the lab again")
    assert await review(mm, "")
    reviews = [e.payload() for e in store.events()]
    assert all(isinstance(r, DataQualityIssueReviewed) for r in reviews)
    assert [(r.person_id, r.note) for r in reviews if isinstance(r, DataQualityIssueReviewed)] == [
        ("pi1", "asked the lab"),
        ("mm", ""),
    ]
    assert {r.stream_id for r in reviews} == {f"data-quality-{envelope.id}"}
