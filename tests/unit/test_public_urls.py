"""One public base URL per service (issue 17, item 1): the notifier's is in every
message's link, so it must be the address of the notifier, in the settings' defaults, in
`vigil dev` and in docker-compose.yml; the old name still works, with a warning."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.settings import VigilSettings
from shared.yaml_files import load_yaml
from tests.support.services import REPO
from vigil.devstack.console import ready_lines
from vigil.devstack.stack import DevPorts, build_stack
from vigil.devstack.supervisor import ManagedProcess

COMPOSE = load_yaml((REPO / "docker-compose.yml").read_text())


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No VIGIL_ variable from the machine: each test sets its own."""
    for name in [n for n in os.environ if n.startswith("VIGIL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_the_notifier_s_public_url_is_the_notifier_s_own_port_by_default(
    environ: pytest.MonkeyPatch,
) -> None:
    settings = VigilSettings()
    assert settings.notifier_public_url == f"http://localhost:{settings.notifier_port}"
    assert settings.ingest_public_url == f"http://localhost:{settings.ingest_port}"
    assert settings.deprecated_settings() == []


def test_the_old_name_still_sets_the_notifier_s_address_and_is_warned_about(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("VIGIL_PUBLIC_BASE_URL", "https://vigil.example.org/")
    old = VigilSettings()
    assert old.notifier_public_url == "https://vigil.example.org"  # no trailing slash
    (warning,) = old.deprecated_settings()
    assert "VIGIL_PUBLIC_BASE_URL is deprecated" in warning
    assert "VIGIL_NOTIFIER_PUBLIC_URL" in warning

    environ.setenv("VIGIL_NOTIFIER_PUBLIC_URL", "https://workspace.vigil.example.org")
    both = VigilSettings()
    assert both.notifier_public_url == "https://workspace.vigil.example.org"  # the new wins
    (warning,) = both.deprecated_settings()
    assert "ignored" in warning


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VIGIL_NOTIFIER_PUBLIC_URL", "localhost:8082"),
        ("VIGIL_NOTIFIER_PUBLIC_URL", "ftp://vigil.example.org"),
        ("VIGIL_NOTIFIER_PUBLIC_URL", "https://vigil.example.org/?next=x"),
        ("VIGIL_PUBLIC_BASE_URL", "vigil.example.org"),
        ("VIGIL_INGEST_PUBLIC_URL", "http://"),
    ],
)
def test_a_public_url_that_cannot_make_a_link_is_refused_naming_the_setting(
    environ: pytest.MonkeyPatch, name: str, value: str
) -> None:
    environ.setenv(name, value)
    with pytest.raises(ValidationError, match=f"{name} must be an absolute http"):
        VigilSettings()


def _children(
    environ: pytest.MonkeyPatch, tmp_path: Path, **variables: str
) -> dict[str, ManagedProcess]:
    """The services `vigil dev` would start, with ``variables`` in its environment
    (a database and broker of the person's own, so nothing is started or migrated)."""
    environ.setenv("VIGIL_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    environ.setenv("VIGIL_SMTP_URL", "smtp://127.0.0.1:1")
    environ.setenv("VIGIL_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    for name, value in variables.items():
        environ.setenv(name, value)
    environ.setattr("vigil.devstack.stack.upgrade", _no_upgrade)
    environ.setattr("vigil.devstack.stack.issue_dev_key", lambda *_: None)
    environ.setattr("vigil.devstack.stack.issue_workspace_users", lambda *_: None)
    children = build_stack(VigilSettings(), state_dir=tmp_path, demo=False, ports=DevPorts())
    return {c.name: c for c in children if isinstance(c, ManagedProcess)}


async def _no_upgrade(*_: object, **__: object) -> None:
    return None


def test_vigil_dev_gives_the_notifier_the_url_of_the_port_it_runs_it_on(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    children = _children(environ, tmp_path, VIGIL_NOTIFIER_PORT="18082", VIGIL_INGEST_PORT="18080")
    notifier, ingest = children["notifier"], children["ingest"]
    assert notifier.env["VIGIL_NOTIFIER_PUBLIC_URL"] == "http://127.0.0.1:18082"
    assert ingest.env["VIGIL_INGEST_PUBLIC_URL"] == "http://127.0.0.1:18080"
    # the same address the stack waits on for the notifier to be ready
    assert notifier.ready is not None
    assert _port_checked(notifier) == 18082
    # every child reads the same settings: the links rules or ingest might make agree
    assert {c.env["VIGIL_NOTIFIER_PUBLIC_URL"] for c in children.values()} == {
        "http://127.0.0.1:18082"
    }


def _port_checked(child: ManagedProcess) -> int:
    """The port of the URL the child's readiness check polls (a closure over it)."""
    assert child.ready is not None
    cells = [cell.cell_contents for cell in child.ready.__closure__ or ()]
    (url,) = [c for c in cells if isinstance(c, str) and c.startswith("http")]
    found = re.search(r":(\d+)/", url)
    assert found is not None
    return int(found.group(1))


def test_vigil_dev_reaches_services_bound_everywhere_on_loopback(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    children = _children(environ, tmp_path, VIGIL_BIND_HOST="0.0.0.0")  # noqa: S104
    assert children["notifier"].env["VIGIL_NOTIFIER_PUBLIC_URL"] == "http://127.0.0.1:8082"
    ipv6 = _children(environ, tmp_path, VIGIL_BIND_HOST="::1")
    assert ipv6["notifier"].env["VIGIL_NOTIFIER_PUBLIC_URL"] == "http://[::1]:8082"


@pytest.mark.parametrize("name", ["VIGIL_NOTIFIER_PUBLIC_URL", "VIGIL_PUBLIC_BASE_URL"])
def test_vigil_dev_keeps_the_notifier_url_a_person_set(
    environ: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    children = _children(environ, tmp_path, **{name: "https://tunnel.example.org"})
    # not overridden: the child inherits the person's variable as it is
    assert "VIGIL_NOTIFIER_PUBLIC_URL" not in children["notifier"].env
    assert children["ingest"].env["VIGIL_INGEST_PUBLIC_URL"] == "http://127.0.0.1:8080"


def test_vigil_dev_prints_the_workspace_beside_its_other_addresses(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = VigilSettings().model_copy(
        update={
            "notifier_public_url": "http://127.0.0.1:8082",
            "ingest_public_url": "http://127.0.0.1:8080",
        }
    )
    (tmp_path / "dev-users").write_text(
        "inv-0101\tpw-one\tinvestigator\tPKUPH-01\nmm-01\tpw-two\tmedical_monitor\tNCT05262686\n"
    )
    lines = ready_lines(settings, state_dir=tmp_path, mail="stored in .vigil/mail")
    assert "Workspace: http://127.0.0.1:8082/workspace/" in lines
    assert "Ingest API: http://127.0.0.1:8080/docs" in lines
    workspace = lines.index("Workspace: http://127.0.0.1:8082/workspace/")
    # the demo users' sign-in lines (issue 17, item 2) go right under the workspace
    assert lines[workspace + 1 : workspace + 3] == [
        "Workspace sign-in: inv-0101 / pw-one (investigator, PKUPH-01)",
        "Workspace sign-in: mm-01 / pw-two (medical_monitor, NCT05262686)",
    ]


# --- docker-compose.yml ------------------------------------------------------------------


def interpolated(value: str, env: Mapping[str, str]) -> str:
    """``value`` as compose interpolates it: ``${NAME}``, ``${NAME:-default}`` (the
    default itself interpolated, so defaults nest), ``$$``."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(value[j], 0)
                j += 1
            inner = value[i + 2 : j - 1]
            name, sep, default = inner.partition(":-")
            given = env.get(name, "")
            out.append(given if given or not sep else interpolated(default, env))
            i = j
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def test_the_interpolation_reads_nested_defaults_as_compose_does() -> None:
    value = "${A:-${B:-http://x:1}}/p"
    assert interpolated(value, {}) == "http://x:1/p"
    assert interpolated(value, {"B": "http://b"}) == "http://b/p"
    assert interpolated(value, {"A": "http://a", "B": "http://b"}) == "http://a/p"
    assert interpolated("$${NOT}", {"NOT": "no"}) == "${NOT}"


def _published_port(service: Mapping[str, object], container_port: str) -> int:
    ports = service["ports"]
    assert isinstance(ports, list)
    (mapping,) = [p for p in ports if str(p).split("#")[0].strip().endswith(f":{container_port}")]
    return int(str(mapping).split(":")[-2])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),  # the notifier's own published port
        ({"VIGIL_PUBLIC_BASE_URL": "https://old.example.org"}, "https://old.example.org"),
        (
            {
                "VIGIL_PUBLIC_BASE_URL": "https://old.example.org",
                "VIGIL_NOTIFIER_PUBLIC_URL": "https://new.example.org",
            },
            "https://new.example.org",
        ),
    ],
)
def test_compose_gives_every_service_the_notifier_s_published_address(
    env: dict[str, str], expected: str | None
) -> None:
    services = COMPOSE["services"]
    notifier = services["notifier"]
    port = notifier["environment"]["VIGIL_NOTIFIER_PORT"]
    published = f"http://localhost:{_published_port(notifier, port)}"
    for name in ("ingest", "safety-rules", "notifier"):
        environment = services[name]["environment"]
        url = interpolated(environment["VIGIL_NOTIFIER_PUBLIC_URL"], env)
        assert url == (expected or published), name
        assert "VIGIL_PUBLIC_BASE_URL" not in environment, name  # only through the default
        ingest_url = interpolated(environment["VIGIL_INGEST_PUBLIC_URL"], env)
        ingest_port = services["ingest"]["environment"].get("VIGIL_INGEST_PORT", "8080")
        assert ingest_url == f"http://localhost:{_published_port(services['ingest'], ingest_port)}"
    assert published == "http://localhost:8082"
