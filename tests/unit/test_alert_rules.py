"""The shipped alert rules, unit-tested by promtool (Debian's prometheus package; the
helper installs it when missing): the alert on undelivered signals fires when a signal
has reached nobody for five minutes and stays quiet otherwise, a task down or stuck
pages, a diverged projection warns."""

from __future__ import annotations

import subprocess

from tests.support.prometheus import ALERT_RULES, promtool
from tests.support.services import REPO

UNIT_TESTS = REPO / "tests" / "data" / "prometheus" / "alerts_test.yml"


def test_the_alert_rules_pass_promtool_check() -> None:
    done = subprocess.run(
        [str(promtool()), "check", "rules", str(ALERT_RULES)], capture_output=True, text=True
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    done = subprocess.run(
        [str(promtool()), "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
