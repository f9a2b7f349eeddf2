"""How every Kafka client Vigil makes connects: TLS, SASL, or (on one host) neither.

One function builds the security of FastStream's broker (:func:`kafka_security`) and one
the keyword arguments of a raw aiokafka client (:func:`kafka_client_options`, the admin
client and tools), both from the same settings, so no client can be forgotten.

Production refuses an unauthenticated, unencrypted connection (PLAINTEXT) to a broker
that is not on this host's loopback, and SASL PLAIN without TLS (the password would cross
the network in the clear), unless ``VIGIL_KAFKA_ALLOW_PLAINTEXT`` says the network is
trusted: the input topics are how a partner can feed the safety pipeline, so an open
broker is an open door. SCRAM without TLS is allowed: it authenticates without sending
the password, though the records themselves travel unencrypted.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

from faststream.kafka.security import parse_security
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from shared.settings import CommonSettings, InsecureConfiguration

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def bootstrap_hosts(bootstrap: str) -> list[str]:
    """Host names of ``host:port,host:port`` (``[::1]:9092`` for IPv6)."""
    hosts = []
    for server in bootstrap.split(","):
        server = server.strip()
        host = server.rsplit(":", 1)[0] if server.count(":") == 1 or "]" in server else server
        hosts.append(host.strip("[]"))
    return hosts


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_kafka_transport(settings: CommonSettings) -> None:
    """Refuse, in production, a connection that would expose the broker or a password."""
    if settings.environment != "production" or settings.kafka_allow_plaintext:
        return
    remote = [h for h in bootstrap_hosts(settings.kafka_bootstrap) if not is_loopback(h)]
    if not remote:
        return
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        raise InsecureConfiguration(
            f"VIGIL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT to {', '.join(remote)}: a broker off this "
            "host must be reached with SASL_SSL (or SSL, or SASL_PLAINTEXT with SCRAM); set "
            "VIGIL_KAFKA_ALLOW_PLAINTEXT=true only for a network you trust like the host itself"
        )
    if protocol == "SASL_PLAINTEXT" and settings.kafka_sasl_mechanism == "PLAIN":
        raise InsecureConfiguration(
            "VIGIL_KAFKA_SASL_MECHANISM=PLAIN over SASL_PLAINTEXT sends the password in the "
            f"clear to {', '.join(remote)}: use SASL_SSL, or a SCRAM mechanism"
        )


def ssl_context(settings: CommonSettings) -> ssl.SSLContext:
    """A client context that verifies the broker's certificate and host name."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
        )
    except (OSError, ssl.SSLError) as error:
        raise InsecureConfiguration(
            f"VIGIL_KAFKA_SSL_CA_FILE={settings.kafka_ssl_ca_file}: cannot load the CA "
            f"certificate(s): {error}"
        ) from None
    if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
        password = settings.kafka_ssl_key_password
        try:
            context.load_cert_chain(
                settings.kafka_ssl_cert_file,
                settings.kafka_ssl_key_file,
                password=None if password is None else password.get_secret_value(),
            )
        except (OSError, ssl.SSLError) as error:
            raise InsecureConfiguration(
                f"VIGIL_KAFKA_SSL_CERT_FILE={settings.kafka_ssl_cert_file} / "
                f"VIGIL_KAFKA_SSL_KEY_FILE={settings.kafka_ssl_key_file}: cannot load the client "
                f"certificate and key: {error}"
            ) from None
    return context


def kafka_security(settings: CommonSettings) -> BaseSecurity:
    """FastStream's security object for ``settings`` (refusing insecure production ones)."""
    check_kafka_transport(settings)
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if not protocol.startswith("SASL_"):
        return BaseSecurity(ssl_context=context, use_ssl=context is not None)
    password = settings.kafka_sasl_password
    # the settings validator guarantees both for SASL protocols
    assert settings.kafka_sasl_username is not None
    assert password is not None
    security_class = _SASL[settings.kafka_sasl_mechanism]
    return security_class(
        settings.kafka_sasl_username,
        password.get_secret_value(),
        ssl_context=context,
        use_ssl=context is not None,
    )


def kafka_client_options(settings: CommonSettings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client (producer, consumer, admin) of ``settings``."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap}
    options.update(parse_security(kafka_security(settings)))
    if options.get("ssl_context") is None:
        options.pop("ssl_context", None)
    return options
