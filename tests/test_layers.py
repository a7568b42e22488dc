"""Arrows point down (DESIGN.md): the packages under perception import only what lies below them, in the order
errors < storage < config < engine < scoring < sources < dataset, lazy imports inside functions included. (`engine`
imported `dataset` for the names of its call counters until #24.)"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "chronoedit_sim"
ORDER = ["errors", "storage", "config", "engine", "scoring", "sources", "dataset"]


def imported_packages(path: Path) -> set[str]:
    """The top-level parts of chronoedit_sim a module imports, relative or absolute."""
    here = path.relative_to(PACKAGE).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = list(here[: len(here) - node.level + 1]) + (node.module.split(".") if node.module else [])
            # `from . import x` names a module of this package; `from .. import x` one of chronoedit_sim
            names = parts or [alias.name for alias in node.names]
            found.update(names[:1] if parts else names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chronoedit_sim."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("chronoedit_sim."))
    return found


def test_no_package_below_perception_imports_one_above_it_or_beside_it_upwards():
    upward = []
    for rank, package in enumerate(ORDER):
        files = [PACKAGE / f"{package}.py"] if package in ("errors", "storage") else sorted((PACKAGE / package).rglob("*.py"))
        for path in files:
            for target in imported_packages(path) - {package}:
                if target not in ORDER[:rank]:
                    upward.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert upward == []
