"""The architecture, read from the code so that it stays true (issue 16).

- One name space: the packages are ``kiwoom_tape.schemas``, ``kiwoom_tape.recorder``, ``kiwoom_tape.replay``
  (setuptools package-dir over the folders ``schemas/``, ``recorder/``, ``replay/``), and an installed
  kiwoom-tape puts no ``schemas``, ``recorder`` or ``replay`` of its own on the import path.
- Arrows one way: ``recorder -> schemas <- replay``; recorder and replay never import each other nor the
  command layer above them (``kiwoom_tape.cli``, ``demo``, ``verify``, ...), only the leaf modules beside it
  (:data:`LEAVES`, which import only schemas). ``schemas`` is pure: it imports no I/O module.
- No import cycle among the modules at run time (imports under ``if TYPE_CHECKING:`` are not run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"kiwoom_tape": "kiwoom_tape", "schemas": "kiwoom_tape.schemas", "recorder": "kiwoom_tape.recorder",
           "replay": "kiwoom_tape.replay"}
"""Repository folder -> the package it is (pyproject.toml ``[tool.setuptools.package-dir]``)."""
LAYERS = ("kiwoom_tape.schemas", "kiwoom_tape.recorder", "kiwoom_tape.replay")
LEAVES = {"kiwoom_tape.clikit", "kiwoom_tape.objstore", "kiwoom_tape.portable"}
"""Shared helpers of both CLIs (option types, logging, platform calls): of the project they import only schemas."""
IO_MODULES = {"asyncio", "socket", "subprocess", "threading", "shutil", "tempfile", "os", "pathlib", "io", "http",
              "urllib", "websockets", "duckdb", "pyarrow.parquet", "pyarrow.dataset", "pyarrow.fs", "signal"}
"""What ``schemas`` may not import: it decodes, validates and builds; reading and writing is its callers' job."""


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            mods[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return mods


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, at run time?) for every import in the module, project modules resolved by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod when there is one (pkg's __init__ runs too, but
            # the dependency is on the module)
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            targets = submodules or [base]
        else:
            continue
        found.extend((t, id(node) not in typing_only) for t in targets)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    return next((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), None)


def test_the_modules_are_found() -> None:
    """The reader below sees the packages (a test over no module would pass for nothing)."""
    assert {"kiwoom_tape.schemas.protocol", "kiwoom_tape.recorder.store", "kiwoom_tape.replay.server",
            "kiwoom_tape.cli", "kiwoom_tape.clikit"} <= set(MODULES)
    assert any(t == "kiwoom_tape.schemas.tables" for t, _ in GRAPH["kiwoom_tape.recorder.store"])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_arrows_point_one_way(module: str) -> None:
    layer = _layer(module)
    allowed = {layer, "kiwoom_tape.schemas"}
    for target, _ in GRAPH[module]:
        if not target.startswith("kiwoom_tape"):
            continue
        if target in LEAVES and layer != "kiwoom_tape.schemas":
            continue
        assert _layer(target) in allowed, (
            f"{module} imports {target}: {layer} may import only {sorted(allowed)}"
            + ("" if layer == "kiwoom_tape.schemas" else f" and the leaf modules {sorted(LEAVES)}")
            + "; move the shared code down (into schemas, or a leaf module) instead")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "kiwoom_tape.schemas"))
def test_schemas_is_pure(module: str) -> None:
    io = sorted({t for t, _ in GRAPH[module] if t in IO_MODULES or t.split(".")[0] in IO_MODULES - {"pyarrow"}})
    assert not io, f"{module} imports {io}: schemas does no I/O; do it in recorder/, replay/ or kiwoom_tape/"


@pytest.mark.parametrize("module", sorted(LEAVES & set(MODULES)))
def test_leaf_modules_import_only_schemas(module: str) -> None:
    ours = sorted({t for t, _ in GRAPH[module] if t.startswith("kiwoom_tape") and _layer(t) != "kiwoom_tape.schemas"})
    assert not ours, f"{module} is a leaf (both CLIs import it) but imports {ours}"


def test_no_import_cycle_at_run_time() -> None:
    edges = {m: sorted({t for t, runtime in deps if runtime and t in MODULES and t != m}) for m, deps in GRAPH.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t):], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_install_puts_only_kiwoom_tape_on_the_path(tmp_path: Path) -> None:
    """Outside the repository, only the one name space imports: no ``schemas``, ``recorder`` or ``replay``."""
    code = (
        "import importlib, importlib.metadata as md\n"
        "for name in ('schemas', 'recorder', 'replay'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        print('absent', name)\n"
        "import kiwoom_tape.schemas.tables, kiwoom_tape.recorder.store, kiwoom_tape.replay.server\n"
        "eps = md.entry_points()\n"
        "for ep in [*eps.select(group='console_scripts'), *eps.select(group='pytest11')]:\n"
        "    if ep.value.startswith('kiwoom_tape'):\n"
        "        ep.load(); print('loads', ep.name)\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    assert {"absent schemas", "absent recorder", "absent replay"} <= set(out)
    assert {"loads record", "loads replay", "loads kiwoom-tape", "loads kiwoom_tape"} <= set(out)
