"""Whatever text a sender typed, every message is built and parses back: e-mail (subject,
plain and HTML bodies), webhook JSON and headers, digests, and the watchdog's report.

Hypothesis feeds arbitrary Unicode (control characters, line and paragraph separators,
lone surrogates, right-to-left marks, emoji, combining characters) and huge strings
through every field that reaches a message."""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any, get_args

from aiosmtplib.email import flatten_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.notifier.adapters.smtp import SmtpSender
from services.notifier.adapters.webhook import WebhookSender
from services.notifier.domain.deliveries import compose
from services.notifier.domain.links import LinkClaims, MessageLink
from services.notifier.domain.messages import (
    Delivery,
    MessageContent,
    MessageKind,
    content_for_signal,
    digest_line,
)
from shared.events import SafetySignalRaised
from shared.message_text import FIELD_LIMIT, SUBJECT_LIMIT, header_value, single_line

ODD = [
    "\r",
    "\n",
    "\r\n",
    "\x00",
    "\t",
    "\x0b",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\ufeff",
    "\u0301",  # combining acute accent
    "🧪",
    "👩🏽‍⚕️",
    "\ud800",  # a lone surrogate
    "=?utf-8?q?x?=",  # looks like an encoded word
    ":",
    ";",
    "<>",
    '"',
    "\\",
]
# any code point (surrogates included), mixed with a good share of the troublesome pieces
piece = st.one_of(st.text(st.characters(exclude_categories=()), max_size=6), st.sampled_from(ODD))
short = st.lists(piece, max_size=12).map("".join)
wild = st.one_of(
    short,
    # huge: a short wild text repeated into thousands of characters
    st.builds(lambda text, times: text * times, short.filter(bool),
              st.integers(min_value=100, max_value=1200)),
)  # fmt: skip
kinds = st.sampled_from(get_args(MessageKind))
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMTP = SmtpSender("smtp://127.0.0.1:25", "vigil-alerts@vigil.example.org")
WEBHOOK = WebhookSender(b"secret", clock=lambda: 1_800_000_000)


def content(kind: str, texts: dict[str, str], items: list[str]) -> MessageContent:
    return MessageContent(
        kind=kind,  # type: ignore[arg-type]
        study_id=texts["study_id"],
        subject_id=texts["subject_id"],
        site_id=texts["site_id"],
        signal_id=uuid.uuid4(),
        analyte=texts["analyte"],
        value=texts["value"],
        threshold=texts["threshold"],
        grade=3,
        grading=texts["grading"],
        rule_id=texts["rule_id"],
        rule_title=texts["rule_title"],
        deadline=texts["deadline"],
        acknowledge_by=datetime(2026, 6, 1, tzinfo=UTC),
        note=texts["note"],
        items=tuple(items),
    )


FIELDS = ["study_id", "subject_id", "site_id", "analyte", "value", "threshold", "grading",
          "rule_id", "rule_title", "deadline", "note"]  # fmt: skip
texts = st.fixed_dictionaries(dict.fromkeys(FIELDS, wild))


def parsed(message: EmailMessage, *, utf8: bool) -> EmailMessage:
    """The message as aiosmtplib puts it on the wire, read back by a receiver."""
    raw = flatten_message(message, utf8=utf8)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n")), "header line over 998 octets"
    back = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(back, EmailMessage)
    return back


def _squeezed(text: str) -> str:
    return "".join(text.split())


def assert_one_line(value: str) -> None:
    assert "\r" not in value
    assert "\n" not in value
    assert all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in value), repr(value)


def storable(text: str) -> str:
    return text.encode("utf-8", "replace").decode().replace("\x00", "")


def composed(facts: MessageContent, *, channel: str, address: str, link: str | None) -> Delivery:
    """The message as a sender gets it: planned for one person's channel, then rendered
    with ``link`` as its acknowledgement link (None: no link)."""
    claims = LinkClaims(
        key_id="k",
        signal_id=facts.signal_id,
        person_id="pi1",
        issued_at=datetime(2026, 6, 1, tzinfo=UTC),
        expires_at=datetime(2026, 6, 8, tzinfo=UTC),
        nonce="n",
    )
    planned = compose(
        facts,
        purpose="raised",
        person_id="pi1",
        channel=channel,
        address=address,
        link=None if link is None else claims,
    )
    return planned.render(lambda _claims, _channel: MessageLink(link or ""))


@PROPERTY
@given(kind=kinds, texts=texts, items=st.lists(wild, max_size=4), utf8=st.booleans())
def test_any_text_in_any_field_gives_an_email_that_parses_back(
    kind: str, texts: dict[str, str], items: list[str], utf8: bool
) -> None:
    facts = content(kind, texts, items)
    delivery = composed(
        facts,
        channel="email",
        address="pi1@vigil.example.org",
        link=f"https://vigil.example.org/workspace/signals/{facts.signal_id}",
    )

    back = parsed(SMTP.build(delivery), utf8=utf8)

    assert_one_line(delivery.subject_line)
    assert len(delivery.subject_line) <= SUBJECT_LIMIT
    # the e-mail package may drop a space next to an encoded word; every character stays
    assert _squeezed(str(back["Subject"])) == _squeezed(delivery.subject_line)
    assert str(back["To"]) == "pi1@vigil.example.org"
    assert str(back["Message-ID"]) == delivery.message_id
    for value in back.values():
        assert_one_line(str(value))
    plain = back.get_body(preferencelist=("plain",))
    html_part = back.get_body(preferencelist=("html",))
    assert plain is not None
    assert html_part is not None
    assert str(facts.signal_id) in plain.get_content()
    assert str(facts.signal_id) in html_part.get_content()


@PROPERTY
@given(kind=kinds, texts=texts, items=st.lists(wild, max_size=4))
def test_any_text_in_any_field_gives_a_webhook_whose_json_and_headers_parse(
    kind: str, texts: dict[str, str], items: list[str]
) -> None:
    facts = content(kind, texts, items)
    delivery = composed(
        facts,
        channel="webhook",
        address="https://pager.vigil.example.org/hook",
        link=None,
    )

    request = WEBHOOK.request(delivery)

    document: dict[str, Any] = json.loads(request.content)
    assert document["signal_id"] == str(facts.signal_id)
    assert document["analyte"] == facts.analyte
    for value in request.headers.values():
        assert_one_line(value)
    request.content.decode("ascii")  # JSON escapes: the body is plain ASCII


@PROPERTY
@given(texts=texts, unit=wild, action=wild)
def test_a_signal_with_any_free_text_becomes_content_of_bounded_single_lines(
    texts: dict[str, str], unit: str, action: str
) -> None:
    # payloads refuse at the door only what cannot be stored (NUL, lone surrogates; see
    # test_payload_bounds): everything else they accept must become one-line content
    texts = {name: storable(text) for name, text in texts.items()}
    unit, action = storable(unit), storable(action)
    signal = SafetySignalRaised(
        study_id="NCT05262686",
        subject_id="01-003",
        site_id="PKUPH-01",
        signal_id=uuid.uuid4(),
        rule_id="sae-any",
        rule_pack_version="1",
        rule_title=texts["rule_title"],
        input_event_ids=(uuid.uuid4(),),
        computed_values={},
        analyte=texts["analyte"],
        observed_value=Decimal("8.1"),
        observed_unit=unit,
        threshold=texts["threshold"],
        collected_at=datetime(2026, 6, 1, tzinfo=UTC),
        required_action=action,
        reporting_deadline=datetime(2026, 6, 2, tzinfo=UTC),
    )

    facts = content_for_signal(signal)

    for name in FIELDS:
        value = getattr(facts, name) or ""
        assert_one_line(value)
        assert len(value) <= FIELD_LIMIT
    line = digest_line(facts)
    assert_one_line(line)
    json.loads(facts.model_dump_json())  # stored as JSON with the delivery
    assert "\\u0000" not in facts.model_dump_json()  # PostgreSQL's jsonb refuses it


@PROPERTY
@given(text=wild)
def test_one_line_text_keeps_what_is_printable_and_cuts_with_an_ellipsis(text: str) -> None:
    line = single_line(text, limit=50)

    assert_one_line(line)
    assert len(line) <= 50
    assert header_value(text) == single_line(text.replace("=?", "= ?"), limit=SUBJECT_LIMIT)
    line.encode("utf-8")  # no lone surrogate left


def test_odd_but_printable_unicode_is_kept_and_encoded_not_refused() -> None:
    term = "Pneumonie\u0301 \u202edérobée\u202c 🧪 שלום"
    line = single_line(term)

    assert line == term
    message = SMTP.build(
        composed(
            MessageContent(study_id="S", subject_id="01-003", signal_id=uuid.uuid4(), analyte=term),
            channel="email",
            address="pi1@vigil.example.org",
            link=None,
        )
    )
    raw = flatten_message(message)
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]  # RFC 2047 encoded words
    assert _squeezed(term) in _squeezed(str(parsed(message, utf8=False)["Subject"]))


def test_a_line_break_in_a_term_never_reaches_the_subject() -> None:
    facts = MessageContent(
        study_id="NCT05262686",
        subject_id="01-003",
        signal_id=uuid.uuid4(),
        analyte="Pneumonia\r\nBcc: everyone@example.org",
    )
    delivery = composed(facts, channel="email", address="p@x.org", link=None)

    back = parsed(SMTP.build(delivery), utf8=False)

    assert back["Bcc"] is None
    assert "Pneumonia Bcc: everyone@example.org" in str(back["Subject"])


def test_a_ten_thousand_character_term_is_cut_in_the_subject_with_an_ellipsis() -> None:
    facts = MessageContent(
        study_id="S", subject_id="01-003", signal_id=uuid.uuid4(), analyte="é" * 10_000
    )
    delivery = composed(facts, channel="email", address="p@x.org", link=None)

    subject = str(parsed(SMTP.build(delivery), utf8=False)["Subject"])

    assert len(subject) == SUBJECT_LIMIT
    assert subject.endswith("…")


def test_a_subject_cut_before_its_units_are_spelled_for_people_stays_within_the_limit() -> None:
    # found by the property test above in CI: UCUM's "10*" is shown as "x10^", one
    # character longer, and the subject was cut before that, so it came out at 201
    facts = MessageContent(
        study_id="S", subject_id="01-003", signal_id=uuid.uuid4(), analyte="10*9/L " * 60
    )
    delivery = composed(facts, channel="email", address="p@x.org", link=None)

    assert len(delivery.subject_line) <= SUBJECT_LIMIT
    assert delivery.subject_line.endswith("…")
    assert "x10^9/L" in delivery.subject_line
