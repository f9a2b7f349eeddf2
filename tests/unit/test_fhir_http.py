"""What a FHIR request's headers ask: media type, FHIR version, Accept, Content-Encoding."""

from __future__ import annotations

import gzip

import pytest

from services.ingest.entrypoints.fhir_http import (
    BodyRefused,
    accept_refusal,
    capability_statement,
    content_type_refusal,
    decoded,
)


@pytest.mark.parametrize(
    "content_type",
    ["application/fhir+json", "application/fhir+json; charset=utf-8", "application/json",
     "application/fhir+json; fhirVersion=4.0", "application/fhir+json;fhirVersion=\"4.0\""],
)  # fmt: skip
def test_fhir_r4_json_is_read(content_type: str) -> None:
    assert content_type_refusal(content_type) is None


@pytest.mark.parametrize(
    ("content_type", "said"),
    [("application/fhir+xml", "JSON only"), (None, "JSON only"), ("text/plain", "JSON only"),
     ("application/fhir+json; fhirVersion=3.0", "R4 only")],
)  # fmt: skip
def test_what_is_not_fhir_r4_json_is_415(content_type: str | None, said: str) -> None:
    refused = content_type_refusal(content_type)
    assert refused is not None
    assert (refused.status, refused.issue.expression) == (415, "Content-Type")
    assert said in refused.issue.diagnostics


@pytest.mark.parametrize(
    "accept",
    [None, "", "*/*", "application/fhir+json", "application/fhir+xml, application/json;q=0.5",
     "application/*"],
)  # fmt: skip
def test_an_accept_that_allows_json_is_answered(accept: str | None) -> None:
    assert accept_refusal(accept) is None


@pytest.mark.parametrize(
    "accept", ["application/fhir+xml", "text/html", "application/fhir+json;q=0"]
)
def test_an_accept_without_json_is_406(accept: str) -> None:
    refused = accept_refusal(accept)
    assert refused is not None
    assert (refused.status, refused.issue.expression) == (406, "Accept")


def test_a_gzip_body_is_decoded() -> None:
    body = b'{"resourceType": "Observation"}'
    assert decoded(gzip.compress(body), "gzip", 1024) == body
    assert decoded(gzip.compress(body) + gzip.compress(body), "x-gzip", 1024) == body + body
    assert decoded(body, None, 1024) == body
    assert decoded(body, "identity", 1024) == body


def test_a_body_that_inflates_past_the_cap_is_413_without_inflating_it_whole() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # some 50 kB that would be 50 MB
    with pytest.raises(BodyRefused) as refused:
        decoded(bomb, "gzip", 1024 * 1024)
    assert refused.value.refusal.status == 413


@pytest.mark.parametrize("encoding", ["br", "deflate, br", "compress", "zstd"])
def test_an_encoding_vigil_does_not_decode_is_415_saying_what_it_does(encoding: str) -> None:
    with pytest.raises(BodyRefused) as refused:
        decoded(b"{}", encoding, 1024)
    assert refused.value.refusal.status == 415
    assert refused.value.refusal.headers == {"Accept-Encoding": "gzip, identity"}


@pytest.mark.parametrize(
    "body", [b"{}", gzip.compress(b"{}", mtime=0)[:-4]], ids=["not-gzip", "cut-short"]
)
def test_a_body_that_is_not_the_gzip_it_says_is_400(body: bytes) -> None:
    with pytest.raises(BodyRefused) as refused:
        decoded(body, "gzip", 1024)
    assert refused.value.refusal.status == 400


def test_the_capability_statement_names_r4_and_what_is_taken() -> None:
    statement = capability_statement(("Observation", "Patient"), "1")
    assert (statement["resourceType"], statement["fhirVersion"]) == ("CapabilityStatement", "4.0.1")
    (rest,) = statement["rest"]
    assert [r["type"] for r in rest["resource"]] == ["Observation", "Patient"]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    assert "application/fhir+json" in statement["format"]
