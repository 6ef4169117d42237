"""Where the project's files are."""

from __future__ import annotations

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_DIR / "data"
VAR_DIR = PROJECT_DIR / "var"  # run-time data: conversations, tickets, review queue
FAQ_FILE = DATA_DIR / "faq.yml"
SUPPORT_CONFIG_FILE = PROJECT_DIR / "support.yml"
WEBSITE_CONFIG_FILE = PROJECT_DIR / "website.yml"  # contact channels and place links of the page
