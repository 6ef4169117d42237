"""Warnings of Rasa 3.6's dependencies that nobody running this bot can act on.

Each filter names the warning's text and the module that raises it, so every other
warning, including new ones after an upgrade, still shows. The entry points apply them
before Rasa is imported (``faqbot/server/__init__.py``, ``faqbot/tools/__init__.py``).
"""

from __future__ import annotations

import warnings

# (message regex, module regex where the warning is raised): all deprecation notices of
# libraries Rasa 3.6.21 pins; categories are matched as Warning because several are the
# libraries' own subclasses (SQLAlchemy's MovedIn20Warning, pyparsing's), which must not
# be imported just to name them.
KNOWN_WARNINGS = [
    (r"distutils Version classes are deprecated", r"sanic_cors\."),
    (r"pkg_resources is deprecated as an API", r"(apscheduler|google\.rpc|rasa)"),
    (r"Deprecated call to `pkg_resources\.declare_namespace", r"pkg_resources"),
    (r"jax\.xla_computation is deprecated", r"tensorflow\."),
    (r"Deprecated API features detected! These feature\(s\) are not compatible with SQLAlchemy 2\.0", r"rasa\."),
    (r"Calling URL\(\) directly is deprecated", r"rasa\."),
    (r"'\w+' deprecated - use '\w+'", r"(matplotlib|packaging)\."),  # pyparsing 3.2's renames
]


def ignore_known_warnings() -> None:
    # Importing Sanic switches every DeprecationWarning on ("once", sanic/app.py, first in
    # the filter list); import it first, so these filters come before its.
    import sanic  # noqa: F401

    for message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=Warning, module=module)
