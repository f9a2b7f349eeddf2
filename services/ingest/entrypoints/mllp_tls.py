"""TLS for the MLLP listener, and the start-up check that production never listens in
the clear by accident.

The listener's certificate and key come from VIGIL_MLLP_TLS_CERT_FILE and
VIGIL_MLLP_TLS_KEY_FILE. With VIGIL_MLLP_TLS_CLIENT_CA_FILE every client is asked for a
certificate signed by that CA (required unless VIGIL_MLLP_TLS_CLIENT_CERTIFICATE is
``optional``); ``sources.yaml`` maps certificates to sources by subject CN or SHA-256
fingerprint.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from typing import Any

from services.settings import VigilSettings


class UnsafeMllpSettings(ValueError):
    """The MLLP settings are incomplete or unsafe for the environment; the message names
    the settings to change."""


@dataclass(frozen=True)
class PresentedCertificate:
    """What a client's verified certificate says about it."""

    subject_cn: str | None
    sha256: str

    @property
    def label(self) -> str:
        """How the audit trail names it: the CN, or the start of the fingerprint."""
        return self.subject_cn or f"sha256:{self.sha256[:16]}"


def check_mllp_settings(settings: VigilSettings) -> None:
    """Refuse a configuration that would listen in the clear in production, or that is
    half given."""
    cert, key = settings.mllp_tls_cert_file, settings.mllp_tls_key_file
    if (cert is None) != (key is None):
        raise UnsafeMllpSettings(
            "MLLP TLS needs both VIGIL_MLLP_TLS_CERT_FILE and VIGIL_MLLP_TLS_KEY_FILE"
        )
    if cert is None and settings.mllp_tls_client_ca_file is not None:
        raise UnsafeMllpSettings(
            "VIGIL_MLLP_TLS_CLIENT_CA_FILE needs TLS: set VIGIL_MLLP_TLS_CERT_FILE and "
            "VIGIL_MLLP_TLS_KEY_FILE too"
        )
    if cert is None and settings.environment == "production" and not settings.mllp_allow_plain:
        raise UnsafeMllpSettings(
            "production refuses plain MLLP: set VIGIL_MLLP_TLS_CERT_FILE and "
            "VIGIL_MLLP_TLS_KEY_FILE (and VIGIL_MLLP_TLS_CLIENT_CA_FILE for client "
            "certificates), or VIGIL_MLLP_ALLOW_PLAIN=true to accept plain MLLP from the "
            "networks listed in sources.yaml"
        )


def server_context(settings: VigilSettings) -> ssl.SSLContext | None:
    """The listener's TLS context, or None for plain MLLP (allowed by the check above)."""
    check_mllp_settings(settings)
    cert, key = settings.mllp_tls_cert_file, settings.mllp_tls_key_file
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise UnsafeMllpSettings(
            f"cannot load VIGIL_MLLP_TLS_CERT_FILE {cert} with VIGIL_MLLP_TLS_KEY_FILE {key}: "
            f"{error}"
        ) from None
    ca = settings.mllp_tls_client_ca_file
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as error:
            raise UnsafeMllpSettings(
                f"cannot load VIGIL_MLLP_TLS_CLIENT_CA_FILE {ca}: {error}"
            ) from None
        context.verify_mode = (
            ssl.CERT_REQUIRED
            if settings.mllp_tls_client_certificate == "required"
            else ssl.CERT_OPTIONAL
        )
    return context


def presented_certificate(ssl_object: ssl.SSLObject | None) -> PresentedCertificate | None:
    """The verified client certificate of a TLS connection, if it presented one."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    details: dict[str, Any] = dict(ssl_object.getpeercert() or {})
    names = [
        value for rdn in details.get("subject", ()) for key, value in rdn if key == "commonName"
    ]
    return PresentedCertificate(names[0] if names else None, hashlib.sha256(der).hexdigest())
