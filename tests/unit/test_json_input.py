"""JSON Vigil receives is decoded one way, with bounded depth: nesting too deep is invalid
JSON, refused like any other, and never a RecursionError that escapes every refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.safety_rules.entrypoints import records
from services.safety_rules.entrypoints.records import (
    Record,
    parse_records,
    rejected_input,
)
from shared.events import Envelope
from shared.events.dead_letters import study_named_in
from shared.events.topics import DEAD_LETTERS, LAB_RESULTS
from shared.http_service import service_app
from shared.json_input import JSONDecodeError, decode

NESTED = b"[" * 5000 + b"]" * 5000


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [250, 1000, 5000, 100_000])
def test_nesting_too_deep_is_invalid_json_not_a_recursion_error(depth: int) -> None:
    with pytest.raises(JSONDecodeError) as raised:
        decode(nested(depth))
    assert isinstance(raised.value, ValueError)
    assert 0 < raised.value.pos <= 2 * depth


def test_nesting_an_input_may_need_decodes() -> None:
    assert decode(nested(100))[0][0][0] is not None
    assert decode(b'{"a": {"b": [1, 2.5, "x"]}}') == {"a": {"b": [1, 2.5, "x"]}}


def test_integers_stay_exact() -> None:
    assert decode(b"[123456789012345678901234567890]") == [123456789012345678901234567890]


@pytest.mark.parametrize(
    "raw", [b"[NaN]", b"[Infinity]", b'"\\ud800"', b'"\xff"', b"{not json", b"", b"\xef\xbb\xbf"]
)
def test_what_rfc_8259_does_not_allow_is_invalid(raw: bytes) -> None:
    with pytest.raises(JSONDecodeError):
        decode(raw)


def test_an_object_naming_a_member_twice_is_refused_without_naming_it() -> None:
    """RFC 8259 leaves a repeated name to each reader: one keeps the last, another the
    first. A second ``subject_id`` must not decide whose result it is."""
    for raw in (b'{"subject_id": "A", "subject_id": "B"}', b'[{"a": {"x": 1, "x": 2}}]'):
        with pytest.raises(JSONDecodeError) as raised:
            decode(raw)
        assert "twice" in str(raised.value)
        assert "subject_id" not in str(raised.value)
    assert decode(b'[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]  # in other objects
    assert decode(b'{"n": 1e3, "m": ' + b"9" * 100 + b"}") == {"n": 1e3, "m": int("9" * 100)}


def test_a_leading_byte_order_mark_is_ignored_as_rfc_8259_allows() -> None:
    assert decode(b"\xef\xbb\xbf[1]") == [1]
    assert decode("\ufeff[1]") == [1]


def test_the_error_says_where() -> None:
    with pytest.raises(JSONDecodeError) as raised:
        decode('{"a": 1,\n "b": NaN}')
    assert (raised.value.lineno, raised.value.colno) == (2, 7)


@pytest.mark.parametrize("raw", [NESTED, b"[" * 100_000, b"\xff", b""])
def test_a_refused_message_names_no_study_whatever_it_holds(raw: bytes) -> None:
    assert study_named_in(raw) is None


def test_a_refused_message_names_its_study() -> None:
    assert study_named_in(b'{"data": {"study_id": "NCT05262686"}}') == "NCT05262686"


def test_a_nested_record_on_an_input_topic_is_refused_and_kept() -> None:
    record = Record(LAB_RESULTS, 0, 7, NESTED)
    entries, rejected = parse_records([record])
    assert entries == []
    (refused,) = rejected
    assert refused.reason.startswith("not a valid Vigil event")
    kept = refused.kept("vigil-safety-rules")
    assert kept.receipt.raw == NESTED
    assert refused.rejection("vigil-safety-rules").type.startswith("org.vigil.input.rejected")


def test_a_nested_raw_dead_letter_is_kept() -> None:
    envelope, receipt = rejected_input(Record(DEAD_LETTERS, 0, 3, NESTED))
    assert receipt is not None
    assert receipt.raw == NESTED
    assert envelope.type.startswith("org.vigil.input.rejected")


def test_whatever_decoding_one_record_raises_refuses_that_record_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(raw: bytes | str) -> Envelope:
        if raw == NESTED:
            raise RecursionError("maximum recursion depth exceeded")
        return real(raw)

    real = Envelope.from_json
    monkeypatch.setattr(records.Envelope, "from_json", staticmethod(broken))
    entries, rejected = parse_records([Record(LAB_RESULTS, 0, 1, NESTED)])
    assert entries == []
    assert [r.reason for r in rejected] == [
        "not a valid Vigil event: could not be decoded (RecursionError)"
    ]


class Item(BaseModel):
    name: str


def json_app() -> Any:
    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        yield

    async def ready() -> str | None:
        return None

    app = service_app("test", workers, ready, metrics_token=None)

    @app.post("/items")
    async def items(body: Item | list[Item]) -> dict[str, int]:
        return {"items": 1 if isinstance(body, Item) else len(body)}

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # the body is there for the handler that keeps it
        body = await request.body()
        return JSONResponse({"kept": len(body), "type": exc.errors()[0]["type"]}, 422)

    app.add_exception_handler(RequestValidationError, invalid)
    return app


async def post(body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=json_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(
            "/items", content=body, headers={"content-type": "application/json"}
        )


async def test_a_route_refuses_a_nested_body_as_invalid_json_and_its_handler_reads_it() -> None:
    answer = await post(NESTED)
    assert answer.status_code == 422
    assert answer.json() == {"kept": len(NESTED), "type": "json_invalid"}


async def test_a_route_decodes_a_body_as_before() -> None:
    answer = await post(b'[{"name": "a"}, {"name": "b"}]')
    assert (answer.status_code, answer.json()) == (200, {"items": 2})
