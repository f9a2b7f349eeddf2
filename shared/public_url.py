"""A service's public address as a setting: what links and console lines are built on."""

from __future__ import annotations

from urllib.parse import urlsplit


def public_url(value: str, setting: str) -> str:
    """An absolute http(s) URL without a trailing slash, query or fragment. The error
    names the setting (``VIGIL_...``) and the form it needs."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"{setting} must be an absolute http:// or https:// URL without a query or "
            "fragment, such as https://vigil.example.org"
        )
    return text.rstrip("/")
