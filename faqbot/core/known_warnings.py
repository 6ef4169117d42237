"""Warnings of Rasa 3.6's dependencies that nobody running this bot can act on.

Each filter names the warning's text and the module that raises it, so every other
warning, including new ones after an upgrade, still shows. Every process applies them
before it imports Rasa (``faqbot.core.startup``).
"""

from __future__ import annotations

import warnings

# (message regex, module regex where the warning is raised): deprecation notices of
# libraries Rasa 3.6.21 pins; categories are matched as Warning because some are the
# libraries' own subclasses (SQLAlchemy's MovedIn20Warning), which must not be imported
# just to name them. (pyparsing is pinned below 3.3, whose renamed-API notices are
# UserWarnings that Rasa's own "once" filter for UserWarning would show anyway.)
KNOWN_WARNINGS = [
    (r"distutils Version classes are deprecated", r"sanic_cors\."),
    (r"pkg_resources is deprecated as an API", r"(apscheduler|google\.rpc|rasa|spacy)"),
    (r"Deprecated call to `pkg_resources\.declare_namespace", r"pkg_resources"),
    (r"jax\.xla_computation is deprecated", r"tensorflow\."),
    # Sanic 21.12's websocket handling (the widget's Socket.IO connection) on Python 3.10.
    (r"The explicit passing of coroutine objects to asyncio\.wait\(\) is deprecated", r"sanic\."),
    (r"Deprecated API features detected! These feature\(s\) are not compatible with SQLAlchemy 2\.0", r"rasa\."),
    (r"Calling URL\(\) directly is deprecated", r"rasa\."),
    # Rasa says this on every domain load, whatever the slots (rasa.shared.core.slot_mappings).
    (r"Slot auto-fill has been removed in 3\.0", r"rasa\."),
    # Python 3.10's import system, when pykwalify (Rasa's YAML schema check, on every load of
    # training data) loads its extensions with SourceFileLoader.load_module().
    (r"the load_module\(\) method is deprecated", r"importlib\._bootstrap"),
]


def ignore_known_warnings() -> None:
    _ignore()
    # Importing Sanic switches every DeprecationWarning on ("once", sanic/app.py, put first
    # in the filter list): import it now and put these filters in front of its filter again.
    import sanic  # noqa: F401

    _ignore()


def _ignore() -> None:
    for message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=Warning, module=module)
