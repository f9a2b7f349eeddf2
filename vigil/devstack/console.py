"""What ``vigil dev`` tells its children about their public addresses, and what it prints
once the stack is up.

Each service has one public base URL: the notifier's goes into every message's link
(``VIGIL_NOTIFIER_PUBLIC_URL``), ingest's is where senders reach it
(``VIGIL_INGEST_PUBLIC_URL``). On one machine both are loopback addresses on the ports
the stack actually runs the services on, so the first click in a development e-mail
opens the workspace.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

from services.settings import VigilSettings
from vigil.devstack.demo_users import sign_in_lines

#: the variables a person may set to put the stack behind another address; ``vigil dev``
#: then leaves that service's URL as given (the old name counts for the notifier)
NOTIFIER_URL_SETTINGS = ("VIGIL_NOTIFIER_PUBLIC_URL", "VIGIL_PUBLIC_BASE_URL")
INGEST_URL_SETTINGS = ("VIGIL_INGEST_PUBLIC_URL",)


def loopback_host(bind_host: str) -> str:
    """The host a browser on this machine uses to reach services bound to ``bind_host``
    (an address that listens everywhere is reached on loopback)."""
    if bind_host in {"", "0.0.0.0", "::"}:  # noqa: S104 - read, not bound
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(bind_host)
    except ValueError:
        return bind_host  # a host name
    return f"[{address}]" if address.version == 6 else str(address)


def local_url(settings: VigilSettings, port: int) -> str:
    return f"http://{loopback_host(settings.bind_host)}:{port}"


def public_url_env(settings: VigilSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The public URLs the children get: each service's on the port it runs on, unless
    the person set that service's URL themselves."""
    env = {}
    if not any(name in environ for name in NOTIFIER_URL_SETTINGS):
        env["VIGIL_NOTIFIER_PUBLIC_URL"] = local_url(settings, settings.notifier_port)
    if not any(name in environ for name in INGEST_URL_SETTINGS):
        env["VIGIL_INGEST_PUBLIC_URL"] = local_url(settings, settings.ingest_port)
    return env


def children_settings(settings: VigilSettings, env: Mapping[str, str]) -> VigilSettings:
    """The settings as the children read them (the stack's own variables on top)."""
    return settings.model_copy(
        update={
            "notifier_public_url": env.get(
                "VIGIL_NOTIFIER_PUBLIC_URL", settings.notifier_public_url
            ),
            "ingest_public_url": env.get("VIGIL_INGEST_PUBLIC_URL", settings.ingest_public_url),
        }
    )


def ready_lines(settings: VigilSettings, *, state_dir: Path, mail: str) -> list[str]:
    """What ``vigil dev`` prints once every child is ready: where each thing is.
    ``settings`` are the children's (:func:`children_settings`)."""
    notifier = settings.notifier_public_url
    return [
        "ready. Ctrl-C stops everything.",
        f"Ingest API: {settings.ingest_public_url}/docs",
        f"Workspace: {notifier}/workspace/",
        *sign_in_lines(state_dir),
        f"Notifier: {notifier}/healthz (links in messages lead to {notifier}/workspace/)",
        f"Logs: {state_dir / 'logs'}",
        f"Mail: {mail}",
    ]
