"""The rules of the house on imports (docs/architecture.md), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

# package or module -> modules it must never import (each with its submodules)
FORBIDDEN: dict[str, set[str]] = {
    "rollout": {"temporalio", "workflows", "activities", "cli", "devstack", "placesim"},
    "workflows": {"sqlalchemy", "asyncpg", "httpx", "cli", "devstack", "placesim"},
    "activities": {"workflows", "cli", "devstack", "placesim"},
    "worker.py": {"devstack", "placesim", "cli"},
    "devstack": {"workflows", "activities"},
    # The emulator referees the client's billing, so it must not price with the client's code.
    "placesim": {"rollout.places"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from rollout import places` imports rollout.places.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_forbidden(module: str, forbidden: set[str]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in forbidden)


def sources(where: str) -> list[Path]:
    path = PROJECT_ROOT / where
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_layers_import_only_what_they_may(where: str) -> None:
    files = sources(where)
    assert files, f"nothing found at {where}"
    broken = [
        f"{path.relative_to(PROJECT_ROOT)} imports {module}"
        for path in files
        for module in sorted(imported_modules(path))
        if is_forbidden(module, FORBIDDEN[where])
    ]
    assert broken == []


def test_workflows_call_activities_and_children_by_reference() -> None:
    """No activity, child workflow or signal by a string literal name in workflow code."""
    by_name = []
    for path in sources("workflows"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr not in {
                "execute_activity",
                "start_activity",
                "execute_child_workflow",
                "start_child_workflow",
                "signal",
            }:
                continue
            if node.args and isinstance(node.args[0], ast.Constant):
                by_name.append(
                    f"{path.name}:{node.lineno} {node.func.attr}({node.args[0].value!r})"
                )
    assert by_name == []
