"""Project tidiness, checked as a test (in the spirit of TigerBeetle's tidy.zig).

* the packages pyproject installs are exactly the package folders on disk;
* ``actors/`` (the modelled system) never imports the layers built on top of it;
* ``actors/`` and ``faults/`` draw no time, randomness or identity from outside the simulation;
* modules stay small (``actors/hvdef.py``, flat ABI data, is the one exception);
* nothing imports the bare folder names (``actors``...), which would load a second copy of a module.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("actors", "faults", "scenarios", "reports")
MAX_MODULE_LINES = 450
LONG_MODULES_ALLOWED = {"actors/hvdef.py"}  # flat data transcribed from the spec
SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "__pycache__", "node_modules"}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def python_files(*tops: str) -> Iterator[Path]:
    """Every ``.py`` file under *tops* (or the whole repo), skipping build output and caches."""
    bases = [ROOT / top for top in tops] if tops else [ROOT]
    for base in bases:
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(ROOT).parts[:-1]
            if any(p in SKIP_DIRS or p.startswith(".") or p.endswith(".egg-info") for p in parts):
                continue
            yield path


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` for every absolute import, including ``from pkg import sub`` as ``pkg.sub``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
        ):
            yield node.lineno, node.args[0].value


def test_the_scans_see_the_source_tree() -> None:
    assert (ROOT / "pyproject.toml").is_file()
    assert ROOT / "actors" / "runtime.py" in set(python_files("actors"))


# --- (a) packages ---------------------------------------------------------------------------------
def test_pyproject_packages_are_exactly_the_package_folders() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    on_disk = {
        "hvsim." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in TOP_PACKAGES
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert {f"hvsim.{top}" for top in TOP_PACKAGES} <= on_disk, "each top-level folder needs __init__.py"
    declared = setuptools["packages"]
    assert len(declared) == len(set(declared)), "duplicate entry in [tool.setuptools] packages"
    assert set(declared) == on_disk
    assert setuptools["package-dir"] == {f"hvsim.{top}": top for top in TOP_PACKAGES}


# --- (b) layering ---------------------------------------------------------------------------------
FORBIDDEN_FROM_ACTORS = ("hvsim.faults", "hvsim.scenarios", "hvsim.reports")


def test_actors_never_import_the_layers_above() -> None:
    offenders = [
        f"{rel(path)}:{line}: {name}"
        for path in python_files("actors")
        for line, name in imported_modules(parse(path))
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_FROM_ACTORS)
    ]
    assert offenders == []


# --- (c) determinism -----------------------------------------------------------------------------
BANNED_CALLS = {
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.perf_counter_ns",
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.datetime.today",
    "datetime.date.today",
}
RANDOM_ALLOWED = {"random.Random"}  # a seeded instance per component is the way


def qualified_uses(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Dotted names as used in the code, with import aliases resolved to their module paths.

    ``import time as t; t.monotonic()`` yields ``time.monotonic``; ``from datetime import datetime;
    datetime.now()`` yields ``datetime.datetime.now``; ``from random import choice`` yields ``random.choice``.
    """
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    aliases[head] = head
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = full
                yield node.lineno, full
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name) and not isinstance(
            getattr(node, "ctx", None), ast.Store
        ):
            chain: list[str] = []
            cur: ast.expr = node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in aliases:
                yield node.lineno, ".".join([aliases[cur.id], *reversed(chain)])


def nondeterminism(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, what)`` for each wall-clock read, module-level random function or uuid import."""
    found = []
    for line, name in imported_modules(tree):
        if name == "uuid" or name.startswith("uuid."):
            found.append((line, "uuid"))
    for line, name in qualified_uses(tree):
        parts = name.split(".")
        if name in BANNED_CALLS:
            found.append((line, name))
        elif parts[0] == "random" and len(parts) >= 2 and ".".join(parts[:2]) not in RANDOM_ALLOWED:
            found.append((line, ".".join(parts[:2])))
    return sorted(set(found))


def test_actors_and_faults_use_no_wall_clock_global_random_or_uuid() -> None:
    offenders = [
        f"{rel(path)}:{line}: {what}"
        for path in python_files("actors", "faults")
        for line, what in nondeterminism(parse(path))
    ]
    assert offenders == [], "use simulated time (env.now), a seeded random.Random, counters for ids"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time\nt = time.time()", ["time.time"]),
        ("import time as clock\nt = clock.monotonic()", ["time.monotonic"]),
        ("from time import perf_counter\nt = perf_counter()", ["time.perf_counter"]),
        ("import datetime\nd = datetime.datetime.now()", ["datetime.datetime.now"]),
        ("from datetime import datetime\nd = datetime.now()", ["datetime.datetime.now"]),
        ("import uuid\nu = uuid.uuid4()", ["uuid"]),
        ("from uuid import uuid4", ["uuid"]),
        ("import random\nx = random.random()", ["random.random"]),
        ("import random as r\nx = r.choice([1])", ["random.choice"]),
        ("from random import shuffle", ["random.shuffle"]),
        ("import random\nrng = random.Random(7)\nx = rng.random()", []),
        ("from random import Random\nrng = Random(7)", []),
        ("import random\ndef f(r: random.Random) -> None: ...", []),
        ("import time\nt = time.sleep", []),
        ("now = 3\nx = now", []),
    ],
)
def test_the_nondeterminism_scan_itself(source: str, expected: list[str]) -> None:
    assert sorted({what for _, what in nondeterminism(ast.parse(source))}) == expected


# --- (d) module size -----------------------------------------------------------------------------
def test_modules_stay_small() -> None:
    too_long = {}
    for path in python_files(*TOP_PACKAGES):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES and rel(path) not in LONG_MODULES_ALLOWED:
            too_long[rel(path)] = n
    assert too_long == {}, f"split these modules (limit {MAX_MODULE_LINES} lines)"


# --- (e) no bare top-level imports -------------------------------------------------------------------
def test_nothing_imports_the_bare_folder_names() -> None:
    offenders = [
        f"{rel(path)}:{line}: {name}"
        for path in python_files()
        for line, name in imported_modules(parse(path))
        if name.split(".")[0] in TOP_PACKAGES
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "bare", "layer_breach"),
    [
        ("import actors.runtime", True, False),
        ("from faults import x", True, False),
        ("from scenarios.host import Host", True, False),
        ("import importlib\nm = importlib.import_module('reports.text')", True, False),
        ("from hvsim import faults", False, True),
        ("import hvsim.scenarios.host as h", False, True),
        ("if True:\n    from hvsim.reports.text import render", False, True),
        ("from hvsim.actors import runtime", False, False),
        ("from hvsim.actors.hvdef import HvStatus", False, False),
        ("from . import sibling", False, False),
    ],
)
def test_the_import_scan_itself(source: str, bare: bool, layer_breach: bool) -> None:
    names = [name for _, name in imported_modules(ast.parse(source))]
    assert any(n.split(".")[0] in TOP_PACKAGES for n in names) is bare
    assert any(n == f or n.startswith(f + ".") for n in names for f in FORBIDDEN_FROM_ACTORS) is layer_breach
