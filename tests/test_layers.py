"""The layers point one way (docs/design.md "Layers"): a module imports only its own layer and
the layers below it, and siblings on one layer do not import each other. Read from the source
(every ``import`` and ``from`` statement, those under ``TYPE_CHECKING`` and inside functions
included), so nothing has to be imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

NODE = Path(__file__).resolve().parent.parent / "node"

# Bottom first. Each entry is one layer: the modules or packages on it (dotted, under ``node``).
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "node",
        "node.errors",
        "node.canonical",
        "node.timestamps",
        "node.private_files",
        "node.kubo",
        "node.metrics",
        "node.logs",
    ),
    ("node.memory",),
    ("node.identity",),
    ("node.records", "node.config"),
    ("node.services",),
    ("node.pixels",),
    ("node.media",),
    ("node.sync",),
    ("node.store",),
    ("node.federation",),
    ("node.auth", "node.executor"),
    ("node.assembly",),
    ("node.http", "node.verify_cli", "node.reexecute_cli"),
    ("node.__main__", "node.testing"),
)
# The ``artdag`` client talks to a node over HTTP only: it imports nothing of the node's.
ALONE = ("node.cli",)


def _unit(module: str) -> str:
    """The layer entry a dotted module name belongs to (its package, or itself)."""
    for unit in sorted([u for layer in LAYERS for u in layer] + list(ALONE), key=len, reverse=True):
        if module == unit or (unit != "node" and module.startswith(unit + ".")):
            return unit
    raise AssertionError(f"{module} is on no layer: add it to LAYERS in tests/test_layers.py")


def _rank(unit: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if unit in layer:
            return rank
    return -1  # ALONE


def _allowed(importer: str, target: str) -> bool:
    """Whether layer entry ``importer`` may import from ``target`` (another entry)."""
    if importer in ALONE or target in ALONE:
        return False
    return _rank(target) < _rank(importer)


def _module_name(path: Path) -> str:
    parts = path.relative_to(NODE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``node...`` module the file imports, ``from node.x import y`` read as ``node.x.y``
    when ``y`` is a module or a package, otherwise as ``node.x``."""
    found: set[str] = set()
    for statement in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(statement, ast.Import):
            found.update(alias.name for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom) and statement.module and statement.level == 0:
            for alias in statement.names:
                submodule = f"{statement.module}.{alias.name}"
                where = NODE.parent / submodule.replace(".", "/")
                is_module = where.with_suffix(".py").exists() or (where / "__init__.py").exists()
                found.add(submodule if is_module else statement.module)
    return {name for name in found if name == "node" or name.startswith("node.")}


def _violations() -> list[str]:
    found: list[str] = []
    for path in sorted(NODE.rglob("*.py")):
        importer = _unit(_module_name(path))
        for imported in sorted(_imports(path)):
            target = _unit(imported)
            if target != importer and not _allowed(importer, target):
                found.append(f"{_module_name(path)} imports {imported} ({importer} -> {target})")
    return found


def test_every_module_is_on_a_layer() -> None:
    for path in NODE.rglob("*.py"):
        _unit(_module_name(path))


def test_imports_point_down_the_layers() -> None:
    assert _violations() == []


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("node.http", "node.executor", True),
        ("node.executor", "node.http", False),
        ("node.store", "node.federation", False),
        ("node.media", "node.executor", False),
        ("node.executor", "node.auth", False),  # siblings
        ("node.cli", "node.errors", False),
        ("node.pixels", "node.media", False),
    ],
)
def test_the_rule_itself(importer: str, imported: str, allowed: bool) -> None:
    """The check says no to imports against the layers (so an empty list above means something)."""
    assert _allowed(_unit(importer), _unit(imported)) is allowed
