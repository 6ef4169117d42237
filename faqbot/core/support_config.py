"""support.yml: where tickets are delivered, retries, support hours (README, "Escalation").

Environment variables override single values (``faqbot.core.delivery``); secrets belong
only in the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from faqbot.core.paths import SUPPORT_CONFIG_FILE


def read_support_config(path: Path | None = None) -> dict[str, Any]:
    """support.yml (or the file named by FAQBOT_SUPPORT_CONFIG); empty if there is none."""
    path = Path(os.environ.get("FAQBOT_SUPPORT_CONFIG") or path or SUPPORT_CONFIG_FILE)
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}
