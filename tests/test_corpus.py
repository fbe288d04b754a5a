"""Replay the regression corpus (tests/corpus/*): every promoted case must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvsim.scenarios.chaos import run_corpus_case

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = sorted(p for p in CORPUS.iterdir() if (p / "case.json").is_file()) if CORPUS.is_dir() else []


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_corpus_case_passes(case: Path) -> None:
    result = run_corpus_case(case)
    assert result.ok, f"{case.name}: {result.error or result.violations[0].message}"
