"""The import graph points down: engine below store and settings, those below the builder and
the front ends (issue 12). Each check imports a layer in a fresh interpreter and lists what
it pulled in."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import novaconsole

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
for name in {roots!r}:
    module = importlib.import_module(name)
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, name + "."):
            if ".migrations." not in info.name:  # Alembic's scripts run inside Alembic only
                importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""

LAYERS = {
    "novaconsole.engine": (
        "novaconsole.settings",
        "novaconsole.store",
        "novaconsole.builder",
        "novaconsole.console",
        "novaconsole.headless",
        "novaconsole.cli",
        "novaconsole.demo",
        "textual",
    ),
    "novaconsole.store": (
        "novaconsole.settings",
        "novaconsole.builder",
        "novaconsole.console",
        "novaconsole.headless",
        "novaconsole.cli",
        "textual",
    ),
    "novaconsole.settings": (
        "novaconsole.store",
        "novaconsole.builder",
        "novaconsole.console",
        "novaconsole.cli",
        "textual",
    ),
}


def imported_by(*roots: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL.format(roots=roots)],
        capture_output=True,
        text=True,
        check=True,
    )
    modules: list[str] = json.loads(result.stdout)
    return modules


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_layer_never_imports_one_above_it(layer: str) -> None:
    above = LAYERS[layer]
    upward = [m for m in imported_by(layer) if m.startswith(above)]
    assert upward == [], f"importing {layer} pulls in {upward}"


def imports_in(path: Path) -> set[str]:
    """Every module an ``import`` statement in ``path`` names, in functions and
    ``TYPE_CHECKING`` blocks too (a lazy import is still an upward dependency)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_no_module_of_a_layer_names_one_above_it(layer: str) -> None:
    root = Path(novaconsole.__file__).parent
    relative = layer.split(".", 1)[1].replace(".", "/")
    files = sorted((root / relative).rglob("*.py")) or [root / f"{relative}.py"]
    upward = {
        f"{path.relative_to(root)}: {name}"
        for path in files
        for name in imports_in(path)
        if name.startswith(LAYERS[layer])
    }
    assert not upward, f"upward imports: {sorted(upward)}"


def test_the_engine_package_alone_pulls_in_no_settings_store_or_textual() -> None:
    code = (
        "import novaconsole.engine, sys; "
        "print([m for m in sys.modules "
        "if m.startswith(('novaconsole.settings', 'novaconsole.store', 'textual'))])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_public_builder_is_still_importable_from_the_package() -> None:
    code = "from novaconsole import BackgroundProcessing; print(BackgroundProcessing.__module__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "novaconsole.builder"
