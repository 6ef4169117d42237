"""What every server and tool process sets before it imports Rasa (faqbot.core.startup)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from faqbot.core.paths import PROJECT_DIR


@pytest.mark.parametrize("package", ["faqbot.server", "faqbot.tools"])
def test_rasa_telemetry_is_off_unless_the_operator_turns_it_on(package, tmp_path):
    # As on a machine where Rasa ran before: its global config has telemetry switched on.
    (tmp_path / ".config" / "rasa").mkdir(parents=True)
    (tmp_path / ".config" / "rasa" / "global.yml").write_text("metrics:\n  enabled: true\n", encoding="utf-8")
    code = f"import {package}; from rasa import telemetry; print(telemetry.is_telemetry_enabled())"
    env = {key: value for key, value in os.environ.items() if key != "RASA_TELEMETRY_ENABLED"}
    env["HOME"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "False", run.stderr
    env["RASA_TELEMETRY_ENABLED"] = "true"
    run = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "True", run.stderr
