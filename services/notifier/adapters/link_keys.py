"""The keys of acknowledgement links, from the settings, checked before the notifier starts.

Production (``VIGIL_ENVIRONMENT=production``, the default) refuses to start without a key
or with a secret shorter than 32 bytes: a link is a credential to record a clinical
assessment as someone, and a guessable or shared key lets anyone mint one. Development
(`vigil dev`) may run without: a random key per process, said in a log line, so its links
stop working when the notifier restarts.
"""

from __future__ import annotations

import secrets

import structlog

from services.notifier.domain.links import MIN_SECRET_BYTES, LinkKey, LinkKeyRing, parse_link_keys
from services.settings import VigilSettings

log = structlog.get_logger(__name__)

SETTING = "VIGIL_NOTIFIER_LINK_KEYS"
HOW = (
    f"set {SETTING} (or {SETTING}_FILE, naming a file that holds it) to `key-id:secret`, "
    f"a secret of at least {MIN_SECRET_BYTES} bytes, e.g. "
    """`2027-01:$(python -c "import secrets; print(secrets.token_urlsafe(48))")`; """
    "to rotate, put the new entry first and keep the old one after it until the links it "
    "signed have expired"
)


class LinkKeysRefused(RuntimeError):
    """The link keys in the settings cannot be used; the message says how to fix them."""


def link_key_ring(settings: VigilSettings) -> LinkKeyRing:
    """The ring of link keys the settings give, or a generated one in development."""
    production = settings.environment == "production"
    text = settings.notifier_link_keys.get_secret_value() if settings.notifier_link_keys else ""
    try:
        keys = parse_link_keys(text)
    except ValueError as error:
        raise LinkKeysRefused(f"{SETTING}: {error}; {HOW}") from None
    if not keys:
        if production:
            raise LinkKeysRefused(
                f"no key signs acknowledgement links: {HOW}. (VIGIL_NOTIFIER_LINK_SECRET, "
                "read by earlier versions, is ignored; VIGIL_ENVIRONMENT=development "
                "generates a key per process instead.)"
            )
        key = LinkKey(f"dev-{secrets.token_hex(4)}", secrets.token_bytes(MIN_SECRET_BYTES))
        log.warning(
            "notifier.generated_link_key",
            key_id=key.key_id,
            hint=f"{SETTING} is unset: development generated a key for this process; its "
            "acknowledgement links stop working when the notifier restarts and differ "
            "between instances",
        )
        return LinkKeyRing(key)
    short = [key.key_id for key in keys if len(key.secret) < MIN_SECRET_BYTES]
    if short and production:
        raise LinkKeysRefused(
            f"{SETTING}: the secret of key {', '.join(short)} is shorter than "
            f"{MIN_SECRET_BYTES} bytes; {HOW}"
        )
    if short:
        log.warning("notifier.short_link_key", key_ids=short, minimum_bytes=MIN_SECRET_BYTES)
    try:
        ring = LinkKeyRing(keys[0], tuple(keys[1:]))
    except ValueError as error:
        raise LinkKeysRefused(f"{SETTING}: {error}") from None
    log.info(
        "notifier.link_keys",
        active=ring.active.key_id,
        retired=[key.key_id for key in ring.retired],
    )
    return ring
