"""ruff and mypy stay clean: run as part of the suite so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["hvsim.actors", "hvsim.faults", "hvsim.scenarios", "hvsim.reports"]
#: Python sources only: ruff would also reformat the README's aligned example comments.
SOURCES = ["actors", "faults", "scenarios", "reports", "tests"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_check_is_clean() -> None:
    res = _run("ruff", "check", *SOURCES)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format_is_clean() -> None:
    res = _run("ruff", "format", "--check", *SOURCES)
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict_is_clean() -> None:
    pytest.importorskip("mypy")
    res = _run("mypy", *(arg for p in PACKAGES for arg in ("-p", p)))
    assert res.returncode == 0, res.stdout + res.stderr
