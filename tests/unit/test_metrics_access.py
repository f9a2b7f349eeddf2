"""/metrics needs the bearer token; production refuses to run without one
(shared/http_service.py). tests/e2e/test_owasp_api8_security_misconfiguration.py checks
the running services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import SecretStr

from services.settings import VigilSettings
from shared.http_service import metrics_credential, service_app
from shared.settings import InsecureConfiguration

TOKEN = "a-metrics-token-0123456789"


@asynccontextmanager
async def no_workers() -> AsyncIterator[None]:
    yield


async def ready() -> str | None:
    return None


def client(token: SecretStr | None) -> httpx.AsyncClient:
    """The app in process, without its lifespan (there are no workers to run)."""
    app = service_app("test", no_workers, ready, metrics_token=token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer nope", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"]
)
async def test_metrics_without_the_exact_bearer_token_is_401(
    path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with client(SecretStr(TOKEN)) as http:
        response = await http.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "python_gc" not in response.text


@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
async def test_metrics_with_the_bearer_token_is_served(path: str) -> None:
    async with client(SecretStr(TOKEN)) as http:
        response = await http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "python_gc_objects_collected_total" in response.text


async def test_probes_need_no_credential() -> None:
    async with client(SecretStr(TOKEN)) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"status": "ready"}


async def test_without_a_token_metrics_are_open_which_only_development_allows() -> None:
    async with client(None) as http:
        assert (await http.get("/metrics")).status_code == 200
    assert metrics_credential(VigilSettings(environment="development")) is None


def test_production_without_a_token_is_refused_naming_the_setting() -> None:
    with pytest.raises(InsecureConfiguration, match="VIGIL_METRICS_TOKEN"):
        metrics_credential(VigilSettings(environment="production"))


@pytest.mark.parametrize("environment", ["production", "development"])
def test_a_short_token_is_refused_everywhere(environment: str) -> None:
    with pytest.raises(InsecureConfiguration, match="shorter than 16"):
        metrics_credential(
            VigilSettings(environment=environment, metrics_token=SecretStr("too-short"))  # type: ignore[arg-type]
        )
