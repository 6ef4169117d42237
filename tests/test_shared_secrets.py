"""faqbot.core.shared_secrets: the servers' shared secrets, from the environment or made once."""

from __future__ import annotations

import stat

import pytest

from faqbot.core import shared_secrets


def test_missing_secrets_are_made_once_readable_only_by_their_owner(tmp_path, monkeypatch):
    monkeypatch.setenv("FAQBOT_SECRETS_DIR", str(tmp_path / "secrets"))
    for name in shared_secrets.LOCAL_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAQBOT_NLU_TOKEN", "n" * 40)  # set by the operator: kept
    shared_secrets.ensure_environment()
    made = tmp_path / "secrets" / "FAQBOT_ACTION_TOKEN"
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.parent.stat().st_mode) == 0o700
    assert shared_secrets.require("FAQBOT_ACTION_TOKEN") == made.read_text().strip()
    assert len(shared_secrets.require("FAQBOT_SESSION_SECRET")) >= shared_secrets.MIN_CHARS
    assert shared_secrets.require("FAQBOT_NLU_TOKEN") == "n" * 40
    assert not (tmp_path / "secrets" / "FAQBOT_NLU_TOKEN").exists()
    first = made.read_text()
    monkeypatch.delenv("FAQBOT_ACTION_TOKEN")
    shared_secrets.ensure_environment()  # a restart uses the same value
    assert made.read_text() == first and shared_secrets.require("FAQBOT_ACTION_TOKEN") == first.strip()


def test_short_or_missing_secrets_stop_the_start(monkeypatch):
    monkeypatch.setenv("FAQBOT_ACTION_TOKEN", "geheim")
    with pytest.raises(SystemExit, match="FAQBOT_ACTION_TOKEN ist zu kurz"):
        shared_secrets.require("FAQBOT_ACTION_TOKEN")
    monkeypatch.delenv("FAQBOT_ACTION_TOKEN")
    with pytest.raises(SystemExit, match="nicht gesetzt"):
        shared_secrets.require("FAQBOT_ACTION_TOKEN")


def test_comparison_accepts_only_the_exact_secret():
    assert shared_secrets.matches("a" * 40, "a" * 40)
    assert not shared_secrets.matches("a" * 39, "a" * 40)
    assert not shared_secrets.matches(None, "a" * 40)
    assert not shared_secrets.matches("ä" * 40, "a" * 40)
