"""Test helper: start the Rasa server as if its patches were written for another library version.

    python tests/rasa_server_written_for.py RASA_VERSION=3.6.20 run [any options of rasa run]

Sets the constant in faqbot.server.patches, then runs ``python -m faqbot.server.rasa_server``'s
``main()`` (what ``make run`` starts), so the start-up checks see a version mismatch.
"""

from __future__ import annotations

import sys

from faqbot.server import patches

name, _, version = sys.argv.pop(1).partition("=")
if not hasattr(patches, name):
    raise SystemExit(f"faqbot.server.patches has no {name}")
setattr(patches, name, version)

from faqbot.server.rasa_server import main  # noqa: E402  (after the constant is changed)

main()
