"""The layout's rule: dependencies point one way (README, "Project layout").

core imports nothing else of the project; the server part and the NLU components (loaded by
Rasa from config.yml) use only the core; the cluster
part (several instances on one machine) uses the core and the server part; the tools use
those (to start servers), never the actions; the actions use only the core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from faqbot.core.paths import PROJECT_DIR

ALLOWED = {
    "faqbot.core": {"faqbot.core"},
    "faqbot.server": {"faqbot.core", "faqbot.server"},
    "faqbot.nlu": {"faqbot.core", "faqbot.nlu"},
    "faqbot.cluster": {"faqbot.core", "faqbot.server", "faqbot.cluster"},
    "faqbot.tools": {"faqbot.core", "faqbot.server", "faqbot.cluster", "faqbot.tools"},
    "actions": {"faqbot.core", "actions"},
    "rasa_sdk_plugins": {"faqbot.server"},
}
PROJECT_PACKAGES = ("faqbot", "actions", "rasa_sdk_plugins")


def part_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "faqbot" and len(parts) > 1 else parts[0]


def project_imports(path: Path) -> set[str]:
    """The project modules a file imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PROJECT_PACKAGES and name != "faqbot"}


def modules() -> dict[str, Path]:
    files = [path for package in PROJECT_PACKAGES for path in (PROJECT_DIR / package).rglob("*.py")]
    return {".".join(path.relative_to(PROJECT_DIR).with_suffix("").parts): path for path in files}


@pytest.mark.parametrize("module", sorted(name for name in modules() if part_of(name) in ALLOWED))
def test_dependencies_point_one_way(module):
    allowed = ALLOWED[part_of(module)]
    wrong = sorted(name for name in project_imports(modules()[module]) if part_of(name) not in allowed)
    assert not wrong, f"{module} imports {wrong}; allowed: {sorted(allowed)}"


def test_every_module_belongs_to_a_part():
    assert {part_of(name) for name in modules()} - set(ALLOWED) == {"faqbot.__init__"}
