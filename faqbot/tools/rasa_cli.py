"""Rasa's own command line, started as every process of the project is started.

    python -m faqbot.tools.rasa_cli train ...   # the same as `rasa train ...`

Importing ``faqbot.tools`` first switches Rasa's telemetry off (unless the operator turned
it on) and filters the known deprecation notices of Rasa's dependencies
(``faqbot.core.startup``); ``faqbot.tools.train`` trains through it.
"""

from __future__ import annotations

import sys


def main() -> None:
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", *sys.argv[1:]]
    rasa_main()


if __name__ == "__main__":
    main()
