"""Fuzzing ingest's parsers over real sockets: whatever a sender writes (HL7 v2 over MLLP,
JSON and FHIR over HTTP), ingest answers within a bound, never with a 5xx, and keeps what
it was sent (a receipt, accepted or rejected): no crash, no hang, no silence.

Hypothesis builds the inputs from the shapes senders use, with every field free to hold
anything (the HL7 delimiters, escape sequences, control characters, other scripts,
numbers out of any range, dates far in the past and future), plus arbitrary bytes.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api_keys import IssuedKey, issue_api_key_blocking
from tests.support.mail import MailCatcher
from tests.support.services import PrivateIngest, private_ingest

pytestmark = pytest.mark.integration

START, END = b"\x0b", b"\x1c\x0d"
ANSWER_WITHIN = 20.0  # seconds: a healthy ingest answers in milliseconds
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# generous limits: the fuzzer must reach the parsers, not the rate limiter
ROOMY = {
    "VIGIL_INGEST_RATE_PER_SOURCE": "10000",
    "VIGIL_INGEST_RATE_BURST_PER_SOURCE": "10000",
    "VIGIL_MLLP_RATE_PER_SECOND": "10000",
    "VIGIL_MLLP_RATE_BURST": "10000",
    "VIGIL_MLLP_FRAME_TIMEOUT_SECONDS": "5",
}


@pytest.fixture(scope="module")
def fuzzed(
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrivateIngest, IssuedKey]]:
    with private_ingest(
        server_dsn=postgres_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        log_dir=tmp_path_factory.mktemp("fuzz"),
        **ROOMY,
    ) as ingest:
        yield ingest, issue_api_key_blocking(ingest.dsn)


def receipts(dsn: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM received_messages"))
        finally:
            await connection.close()

    return asyncio.run(count())


# --- HL7 v2 ----------------------------------------------------------------------------

# anything a field may hold, framing bytes aside (those are the transport's, tested below)
field = st.text(
    alphabet=st.characters(blacklist_characters="\x0b\x1c\r", blacklist_categories=("Cs",)),
    max_size=40,
) | st.sampled_from(
    ["", "^", "~", "\\", "&", "\\F\\", "\\X0D\\", "<^0.5", "1E+400", "NaN", "-0", "99999999"]
)
timestamp = st.sampled_from(
    ["20261120083000", "20261120083000+0800", "99991231235959-1400", "00000000", "2026", ""]
) | st.from_regex(r"\A[0-9]{4,14}([+-][0-9]{4})?\Z", fullmatch=True)
subject = st.sampled_from(["01-003^^^NCT05262686^SS", "MRN1^^^HOSP^MR~01-004^^^NCT05262686^SS"])


@st.composite
def oru_messages(draw: st.DrawFn) -> str:
    """An ORU^R01 from a listed laboratory whose every other field is drawn freely."""
    control = draw(st.text(alphabet="ABCDEFGHIJ0123456789", min_size=1, max_size=12))
    version = draw(st.sampled_from(["2.5.1", "2.3", "2.4", "2.9", "", "x"]))
    segments = [
        f"MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|{draw(timestamp)}||ORU^R01^ORU_R01|{control}"
        f"|P|{version}",
        f"PID|1||{draw(subject | field)}||{draw(field)}||{draw(timestamp)}|{draw(field)}",
    ]
    for n in range(draw(st.integers(min_value=0, max_value=3))):
        segments.append(
            f"OBR|{n + 1}|{draw(field)}|{draw(field)}|{draw(field)}|||{draw(timestamp)}"
        )
        for m in range(draw(st.integers(min_value=0, max_value=3))):
            kind = draw(st.sampled_from(["NM", "SN", "ST", "CE", "CWE", "TX", "", "ZZ"]))
            code = draw(st.sampled_from(["718-7^Hb^LN", "1742-6^ALT^LN", "X^Y^L"]) | field)
            segments.append(
                f"OBX|{m + 1}|{kind}|{code}|{draw(field)}|{draw(field)}|{draw(field)}"
                f"|{draw(field)}|{draw(field)}|||{draw(field)}|||{draw(timestamp)}"
            )
    extra = draw(st.lists(field.map(lambda f: f"ZZZ|{f}") | field, max_size=2))
    return "\r".join(segments + extra)


def exchange(port: int, frame: bytes) -> list[bytes]:
    """Send one frame and read what comes back until an answer ends or the server closes
    the connection; fails the test when neither happens in time (a hang)."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN) as connection:
        connection.sendall(frame)
        received = b""
        while END not in received:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                pytest.fail(f"no answer and no close within {ANSWER_WITHIN} s: {frame[:80]!r}")
            if not chunk:
                break  # the server closed the connection: an answer too
            received += chunk
    return [part for part in received.split(END) if part]


@FUZZ
@given(message=oru_messages())
def test_any_hl7_message_gets_an_ack_and_is_kept(
    fuzzed: tuple[PrivateIngest, IssuedKey], message: str
) -> None:
    ingest, _ = fuzzed
    before = receipts(ingest.dsn)

    answers = exchange(ingest.mllp_port, START + message.encode() + END)

    assert len(answers) == 1, answers
    ack = answers[0].decode(errors="replace")
    assert ack.startswith("\x0bMSH|"), ack[:80]
    msa = next(s for s in ack.split("\r") if s.startswith("MSA|"))
    assert msa.split("|")[1] in ("AA", "AE", "AR")
    assert receipts(ingest.dsn) == before + 1


@FUZZ
@given(raw=st.binary(max_size=2048))
def test_any_bytes_on_the_mllp_port_are_answered_or_closed_in_time(
    fuzzed: tuple[PrivateIngest, IssuedKey], raw: bytes
) -> None:
    ingest, _ = fuzzed
    answers = exchange(ingest.mllp_port, raw + END)  # then the frame timeout or an answer
    for answer in answers:
        assert answer.startswith(START + b"MSH|"), answer[:80]


# --- JSON and FHIR over HTTP -------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["9999-12-31T23:00:00-14:00", "1E+400", "0001-01-01", "718-7", ""]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
LAB_RESULT = {
    "subject_id": "01-003",
    "loinc_code": "718-7",
    "value": 8.6,
    "unit": "g/dL",
    "collected_at": "2026-11-20T08:30:00+08:00",
    "source_message_id": "FUZZ-1",
}
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "identifier": [{"system": "urn:lab", "value": "FUZZ-1"}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
    "subject": {"reference": "Patient/01-003"},
    "effectiveDateTime": "2026-11-20T08:30:00+08:00",
    "valueQuantity": {"value": 8.6, "unit": "g/dL", "system": "http://unitsofmeasure.org"},
}


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """A valid document with some fields replaced, removed or added."""
    document = dict(valid)
    for name in draw(st.lists(st.sampled_from([*valid, "extra", "name"]), max_size=3)):
        if draw(st.booleans()):
            document[name] = draw(json_values)
        else:
            document.pop(name, None)
    return document


ENDPOINTS = {
    "/v1/lab-results": mutated(LAB_RESULT) | st.lists(mutated(LAB_RESULT), max_size=3),
    "/v1/subjects": json_values,
    "/v1/adverse-events": json_values,
    "/v1/concomitant-medications": json_values,
    "/fhir/r4/Observation": mutated(OBSERVATION),
    "/fhir/r4": st.builds(
        lambda kind, entries: {"resourceType": "Bundle", "type": kind, "entry": entries},
        st.sampled_from(["batch", "transaction", "collection"]),
        st.lists(st.builds(lambda r: {"resource": r}, mutated(OBSERVATION)), max_size=3),
    ),
}


@FUZZ
@given(
    path=st.sampled_from(sorted(ENDPOINTS)),
    data=st.data(),
    as_bytes=st.booleans(),
    junk=st.binary(max_size=512),
)
def test_any_json_or_fhir_body_is_answered_below_500_and_kept(
    fuzzed: tuple[PrivateIngest, IssuedKey],
    path: str,
    data: st.DataObject,
    as_bytes: bool,
    junk: bytes,
) -> None:
    ingest, key = fuzzed
    document = data.draw(ENDPOINTS[path])
    body = junk if as_bytes else json.dumps(document).encode()
    kind = "application/fhir+json" if path.startswith("/fhir") else "application/json"
    before = receipts(ingest.dsn)

    with httpx.Client(base_url=ingest.url, timeout=ANSWER_WITHIN) as client:
        response = client.post(path, content=body, headers={**key.headers, "content-type": kind})

    assert response.status_code < 500, (response.status_code, response.text[:300])
    # kept: the request, and for a FHIR batch each refused entry on its own too
    assert receipts(ingest.dsn) > before
