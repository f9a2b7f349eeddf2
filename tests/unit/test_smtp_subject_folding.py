"""Alert e-mail subject lines never start with a space.

The e-mail package folds a Subject of 70 to 77 characters (too long to follow
``Subject: `` on a 78-character line, short enough for one continuation line) as
``Subject:`` CRLF `` [Vigil] ...``: unfolded, the subject a reader sees starts with a
space. The notifier's messages fold it on the first line instead."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime

import pytest
from aiosmtplib.email import flatten_message

from services.notifier.adapters.smtp import SmtpSender
from services.notifier.domain.deliveries import compose
from services.notifier.domain.links import LinkClaims, MessageLink
from services.notifier.domain.messages import Delivery, MessageContent, subject_line

SMTP = SmtpSender("smtp://127.0.0.1:25", "vigil-alerts@vigil.example.org")


def delivery(analyte: str, rule_id: str = "anaemia-hb-le-9") -> Delivery:
    facts = MessageContent(
        kind="signal", study_id="NCT05262686", subject_id="01-003", site_id="PKUPH-01",
        signal_id=uuid.uuid4(), analyte=analyte, value="8.6 g/dL", threshold="<= 9 g/dL",
        grade=2, grading="CTCAE v5.0 Anemia", rule_id=rule_id, rule_title="Hb at or below 9",
        deadline="", acknowledge_by=datetime(2026, 6, 1, tzinfo=UTC), note="", items=(),
    )  # fmt: skip
    claims = LinkClaims(
        key_id="k", signal_id=facts.signal_id, person_id="pi1",
        issued_at=datetime(2026, 6, 1, tzinfo=UTC), expires_at=datetime(2026, 6, 8, tzinfo=UTC),
        nonce="n",
    )  # fmt: skip
    planned = compose(
        facts, purpose="raised", person_id="pi1", channel="email",
        address="pi1@vigil.example.org", link=claims,
    )  # fmt: skip
    return planned.render(lambda _claims, _channel: MessageLink("https://vigil.example.org/x"))


def on_the_wire(message: email.message.EmailMessage, *, utf8: bool) -> tuple[bytes, str]:
    """The Subject line(s) as aiosmtplib sends them, and the Subject a receiver reads."""
    raw = flatten_message(message, utf8=utf8)
    head = raw.split(b"\r\n\r\n", 1)[0]
    back = email.message_from_bytes(raw, policy=email.policy.default)
    return head, str(back["Subject"])


def test_the_subject_that_started_with_a_space_in_the_dev_mailbox_no_longer_does() -> None:
    sent = delivery("haemoglobin")
    # the subject of 01-003's anaemia alert in .vigil/mail: 77 characters
    assert sent.subject_line == (
        "[Vigil] NCT05262686 subject 01-003: haemoglobin 8.6 g/dL (anaemia-hb-le-9)"
    )
    for utf8 in (False, True):
        head, subject = on_the_wire(SMTP.build(sent), utf8=utf8)
        assert b"\r\nSubject: [Vigil] NCT05262686" in b"\r\n" + head
        assert subject == sent.subject_line


@pytest.mark.parametrize("length", range(1, 60))
@pytest.mark.parametrize("utf8", [False, True])
def test_no_subject_length_starts_the_subject_with_a_space(length: int, utf8: bool) -> None:
    # analytes of every length move the subject across the 70-77 characters that folded badly
    sent = delivery("haemoglobin"[:1] + "x" * length)
    head, subject = on_the_wire(SMTP.build(sent), utf8=utf8)
    assert not subject.startswith(" ")
    assert subject == sent.subject_line
    assert b"Subject:\r\n" not in head
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))


@pytest.mark.parametrize("analyte", ["hémoglobine", "血红蛋白", "haemo globin " * 6])
def test_non_ascii_and_long_subjects_fold_and_read_back_whole(analyte: str) -> None:
    sent = delivery(analyte)
    head, subject = on_the_wire(SMTP.build(sent), utf8=False)
    assert not subject.startswith(" ")
    assert subject.replace(" ", "") == subject_line_squeezed(sent)
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))


def subject_line_squeezed(sent: Delivery) -> str:
    # the e-mail package may drop a space next to an encoded word; every character stays
    return sent.subject_line.replace(" ", "")


def test_subject_line_itself_never_starts_with_a_space() -> None:
    facts = MessageContent(
        kind="signal", study_id="S", subject_id="1", site_id=None, signal_id=uuid.uuid4(),
        analyte="  Hb", value="", threshold="", grade=None, grading=None, rule_id="",
        rule_title="", deadline="", acknowledge_by=None, note="", items=(),
    )  # fmt: skip
    assert subject_line(facts) == "[Vigil] S subject 1: Hb"
