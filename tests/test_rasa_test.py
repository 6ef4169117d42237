"""Conversation stories with `rasa test`, and the held-out NLU evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from faqbot.core.paths import PROJECT_DIR

# The bar for the held-out set (tests/nlu_heldout.yml, never trained on). README has the
# measured figures and the targets (faqbot.tools.evaluate.TARGETS, printed by the
# evaluation); these thresholds sit just below the measured figures, with room for
# run-to-run noise (one held-out FAQ phrasing is 0.3 points, one other message 1 point).
MIN_HELD_OUT_ACCURACY = 0.955
# FAQ phrasings answered right at once, and at once or through the "Meinten Sie …?" buttons.
MIN_FAQ_RIGHT_AT_ONCE = 0.945
MIN_FAQ_RESOLVED = 0.985
# A wrong answer is worse than an offer to ask the support team.
MAX_WRONG_ANSWERS = 0.01
MAX_OTHER_GOT_FAQ_ANSWER = 0.03


def rasa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rasa", *args], cwd=PROJECT_DIR, capture_output=True, text=True)


def test_conversation_stories_pass(model_path: Path, tmp_path: Path):
    result = rasa(
        "test",
        "core",
        "--model",
        str(model_path),
        "--stories",
        "tests/test_stories.yml",
        "--out",
        str(tmp_path),
        "--fail-on-prediction-errors",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "story_report.json").read_text())
    assert report["accuracy"] == 1.0 or report.get("conversation_accuracy", {}).get("accuracy") == 1.0


def test_held_out_evaluation(model_path: Path, tmp_path: Path):
    """Intent accuracy on phrasings the model never saw, and what the customer gets."""
    report = tmp_path / "evaluation.json"
    result = subprocess.run(
        [sys.executable, "-m", "faqbot.tools.evaluate", "--model", str(model_path), "--json", str(report), "--errors"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(report.read_text())
    assert figures["intent_accuracy"] >= MIN_HELD_OUT_ACCURACY
    assert figures["faq_answered_right"] >= MIN_FAQ_RIGHT_AT_ONCE
    assert figures["faq_resolved"] >= MIN_FAQ_RESOLVED
    assert figures["faq_wrong_answer"] <= MAX_WRONG_ANSWERS
    assert figures["other_got_faq_answer"] <= MAX_OTHER_GOT_FAQ_ANSWER
