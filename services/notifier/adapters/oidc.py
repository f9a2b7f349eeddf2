"""Signing in through the sites' OpenID Connect provider: the authorization-code flow with
PKCE (S256), a state and a nonce, and the ID token's signature checked against the
provider's published keys (JWKS), its issuer, audience, expiry and nonce.

The provider's metadata comes from its discovery document
(``<issuer>/.well-known/openid-configuration``); the keys are fetched at each sign-in, so a
rotation at the provider needs nothing here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.settings import VigilSettings

TIMEOUT_SECONDS = 10.0
SIGNATURE_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
MAX_DOCUMENT_BYTES = 256 * 1024


class OidcRefused(Exception):
    """The provider's answer cannot be trusted or used; the message says why (for the log:
    no token, no claim values)."""


class OidcMisconfigured(RuntimeError):
    """The OIDC settings are incomplete; the message names the setting."""


@dataclass(frozen=True)
class OidcStart:
    """What the sign-in keeps between the redirect and the provider's answer."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    claim: str


def oidc_config(settings: VigilSettings) -> OidcConfig | None:
    """The provider to offer, or None when OIDC sign-in is not configured."""
    issuer = settings.workspace_oidc_issuer
    if not issuer:
        return None
    if not settings.workspace_oidc_client_id or settings.workspace_oidc_client_secret is None:
        raise OidcMisconfigured(
            "VIGIL_WORKSPACE_OIDC_ISSUER is set: also set VIGIL_WORKSPACE_OIDC_CLIENT_ID and "
            "VIGIL_WORKSPACE_OIDC_CLIENT_SECRET (or _FILE), the workspace's client at the provider"
        )
    parts = urlsplit(issuer)
    loopback = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    if parts.scheme != "https" and not (loopback or settings.environment == "development"):
        raise OidcMisconfigured(
            "VIGIL_WORKSPACE_OIDC_ISSUER must be an https:// URL: the ID token's keys are "
            "fetched from it"
        )
    return OidcConfig(
        issuer=issuer.rstrip("/"),
        client_id=settings.workspace_oidc_client_id,
        client_secret=settings.workspace_oidc_client_secret.get_secret_value(),
        claim=settings.workspace_oidc_claim,
    )


class OidcClient:
    """The workspace as a confidential OIDC client of one provider."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None

    async def _get_json(self, client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        try:
            response = await client.get(url)
        except httpx.HTTPError as error:
            raise OidcRefused(
                f"the provider did not answer {url}: {type(error).__name__}"
            ) from None
        return _json_object(response, url)

    async def metadata(self, client: httpx.AsyncClient) -> dict[str, Any]:
        if self._metadata is None:
            url = f"{self.config.issuer}/.well-known/openid-configuration"
            document = await self._get_json(client, url)
            if str(document.get("issuer", "")).rstrip("/") != self.config.issuer:
                raise OidcRefused("the discovery document names another issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(document.get(key), str):
                    raise OidcRefused(f"the discovery document has no {key}")
            self._metadata = document
        return self._metadata

    async def start(self, redirect_uri: str) -> OidcStart:
        """Where to send the browser, and the secrets to keep until it comes back."""
        async with _client() as client:
            metadata = await self.metadata(client)
        state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid email profile",
                "state": state,
                "nonce": nonce,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = str(metadata["authorization_endpoint"])
        separator = "&" if "?" in endpoint else "?"
        return OidcStart(f"{endpoint}{separator}{query}", state, nonce, verifier)

    async def finish(
        self, code: str, code_verifier: str, nonce: str, redirect_uri: str
    ) -> dict[str, Any]:
        """Exchange the code for tokens and return the verified ID token's claims."""
        async with _client() as client:
            metadata = await self.metadata(client)
            try:
                response = await client.post(
                    str(metadata["token_endpoint"]),
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": redirect_uri,
                        "code_verifier": code_verifier,
                    },
                    auth=(self.config.client_id, self.config.client_secret),
                )
            except httpx.HTTPError as error:
                raise OidcRefused(
                    f"the token endpoint did not answer: {type(error).__name__}"
                ) from None
            tokens = _json_object(response, "the token endpoint")
            id_token = tokens.get("id_token")
            if not isinstance(id_token, str):
                raise OidcRefused("the token endpoint gave no ID token")
            keys = await self._get_json(client, str(metadata["jwks_uri"]))
        return self._verified_claims(id_token, keys, nonce)

    def _verified_claims(self, id_token: str, keys: dict[str, Any], nonce: str) -> dict[str, Any]:
        try:
            key_set = KeySet.import_key_set(keys)  # type: ignore[arg-type]
            token = jwt.decode(id_token, key_set, algorithms=list(SIGNATURE_ALGORITHMS))
            registry = jwt.JWTClaimsRegistry(
                now=int(time.time()),
                leeway=60,
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError, KeyError, TypeError) as error:
            raise OidcRefused(f"the ID token is not valid: {type(error).__name__}") from None
        audience = token.claims.get("aud")
        several = isinstance(audience, list) and len(audience) > 1
        if several and token.claims.get("azp") != self.config.client_id:
            raise OidcRefused("the ID token names several audiences and another party (azp)")
        return dict(token.claims)


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False)


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise OidcRefused(f"{what} answered HTTP {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise OidcRefused(f"{what} answered a document too large to be OIDC metadata")
    try:
        document = response.json()
    except ValueError:
        raise OidcRefused(f"{what} did not answer JSON") from None
    if not isinstance(document, dict):
        raise OidcRefused(f"{what} did not answer a JSON object")
    return document
