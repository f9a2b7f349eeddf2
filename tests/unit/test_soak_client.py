"""What the soak's senders make of ingest's answers: send again, or not."""

from __future__ import annotations

import httpx
import pytest

from soak.client import Credential, CredentialRefused, hl7_answer, http_answer


def ack(code: str, *errors: str) -> bytes:
    segments = ["MSH|^~\\&|VIGIL|VIGIL|LIS|LAB|20260302||ACK^R01^ACK|A1|P|2.5.1", f"MSA|{code}|X1"]
    segments += [f"ERR||MSH^1^0|{error}^Error^HL70357|E||||text" for error in errors]
    return b"\x0b" + "\r".join(segments).encode() + b"\r\x1c\r"


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (ack("AA"), "acknowledged"),
        (ack("AE", "207"), "try-again"),  # ingest's "temporarily unavailable"
        (ack("AE", "102"), "refused"),  # a data type error: sending again changes nothing
        (ack("AR", "200"), "refused"),
        (b"\x0bnot an ack\x1c\r", "refused"),
    ],
)
def test_an_hl7_acknowledgement_says_whether_to_send_again(answer: bytes, verdict: str) -> None:
    assert hl7_answer(answer).verdict == verdict


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, request=httpx.Request("POST", "http://ingest/v1/lab-results")
    )


def test_an_http_answer_says_whether_to_send_again_and_when() -> None:
    assert http_answer(_response(202)).verdict == "acknowledged"
    assert http_answer(_response(422)).verdict == "refused"
    unavailable = http_answer(_response(503))
    limited = http_answer(_response(429, {"retry-after": "3"}))

    assert (unavailable.verdict, unavailable.retry_after) == ("try-again", None)
    assert (limited.verdict, limited.retry_after) == ("try-again", 3.0)


def test_a_refused_credential_stops_the_soak_instead_of_counting_as_refusals() -> None:
    with pytest.raises(CredentialRefused, match="credential"):
        http_answer(_response(401))


def test_the_credential_is_sent_as_a_bearer_token_only_when_there_is_one() -> None:
    assert Credential("k-123").http_headers() == {"authorization": "Bearer k-123"}
    assert Credential().http_headers() == {}
