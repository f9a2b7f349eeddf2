"""``vigil dev``: the embedded stack a first-time user starts with ``make run``."""

from __future__ import annotations

import email
import email.policy
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support import components
from tests.support.services import REPO
from vigil.devstack.ports import free_port, is_listening

pytestmark = pytest.mark.integration
WORKSPACE_LINK = re.compile(r"https?://[^\s\"<>]+/workspace/signals/[0-9a-f-]{36}")


def _text(eml: Path) -> str:
    """Every text part of a stored e-mail, decoded."""
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    return "\n".join(
        str(part.get_content()) for part in message.walk() if part.get_content_maintype() == "text"
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return {**env, **extra}


def read_lines(process: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.put(line.rstrip("\n"))


def test_demo_shows_haemoglobin_alerts_from_every_channel_and_ctrl_c_stops_everything() -> None:
    state = components.scratch_dir("vigil-test-dev-")
    ports = {
        name: free_port() for name in ("pg", "kafka", "smtp", "ingest", "rules", "notifier", "mllp")
    }
    env = clean_env(
        VIGIL_DEV_PG_PORT=str(ports["pg"]),
        VIGIL_DEV_KAFKA_PORT=str(ports["kafka"]),
        VIGIL_DEV_SMTP_PORT=str(ports["smtp"]),
        VIGIL_INGEST_PORT=str(ports["ingest"]),
        VIGIL_MLLP_PORT=str(ports["mllp"]),
        VIGIL_RULES_PORT=str(ports["rules"]),
        VIGIL_NOTIFIER_PORT=str(ports["notifier"]),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "vigil", "dev", "--demo", "--state-dir", str(state)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(process, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60  # "within a minute" of `make run`
        alert = None
        while alert is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert process.poll() is None, "\n".join(seen)
                continue
            seen.append(line)
            if line.startswith("mail to") and "haemoglobin" in line:
                alert = line
        assert alert is not None, "no alert within a minute:\n" + "\n".join(seen)
        assert "anaemia-hb-le-9" in alert  # the demo feed's results were accepted
        assert list((state / "mail").glob("*.eml"))
        # the other two scripted drops come over HL7 v2 (MLLP) and FHIR, each naming the
        # subject by the study's identifier system (the HL7 one after a hospital MRN)
        waiting = {"02-014", "01-007"}
        deadline = time.monotonic() + 30
        while waiting and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith("mail to") and "haemoglobin" in line:
                waiting -= {subject for subject in waiting if f"subject {subject}:" in line}
        assert not waiting, f"no alert for {waiting}:\n" + "\n".join(seen)
        key_file = state / "dev-api-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert key.startswith("vgk_")
        assert any("development API key issued" in line and key in line for line in seen)
        # the first click: the link in a stored alert leads to this stack's notifier
        notifier = f"http://127.0.0.1:{ports['notifier']}"
        links = {
            link
            for eml in (state / "mail").glob("*.eml")
            for link in re.findall(
                r"https?://[^\s\"<>]+/workspace/signals/[0-9a-f-]{36}", _text(eml)
            )
        }
        assert links, "no workspace link in any stored e-mail"
        assert all(link.startswith(f"{notifier}/workspace/signals/") for link in links), links
        opened = httpx.get(sorted(links)[0], timeout=30)
        # answered by the notifier's workspace (only it sends this policy), not ingest
        assert "script-src 'self'" in opened.headers.get("content-security-policy", "")
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    while not lines.empty():
        seen.append(lines.get())
    assert code == 0, "\n".join(seen)
    assert "vigil dev | stopping postgresql" in seen
    # beside the other addresses, where the workspace is (the port the notifier runs on)
    assert f"vigil dev | Workspace: http://127.0.0.1:{ports['notifier']}/workspace/" in seen
    assert f"vigil dev | Ingest API: http://127.0.0.1:{ports['ingest']}/docs" in seen
    for port in ports.values():
        assert not is_listening(port), f"port {port} still in use after Ctrl-C"


def test_missing_postgresql_binaries_say_how_to_install_them(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vigil", "dev", "--state-dir", str(tmp_path)],
        cwd=REPO,
        env=clean_env(VIGIL_PG_BINDIR=str(tmp_path / "nowhere")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "apt-get install" in result.stderr
    assert "VIGIL_DATABASE_URL" in result.stderr
