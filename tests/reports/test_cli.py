"""``hvsim report`` / ``hvsim trace`` as click commands (the lead registers them on the hvsim group)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hvsim.reports.cli import report_command, trace_command


def test_report_prints_the_files_written(hand_run: Path) -> None:
    res = CliRunner().invoke(report_command, [str(hand_run)])
    assert res.exit_code == 0, res.output
    assert f"{hand_run / 'report.html'}" in res.output and f"{hand_run / 'report-latency.csv'}" in res.output
    assert (hand_run / "report.html").is_file() and (hand_run / "report.json").is_file()


def test_trace_prints_the_file_written(hand_run: Path) -> None:
    res = CliRunner().invoke(trace_command, [str(hand_run)])
    assert res.exit_code == 0, res.output
    assert f"wrote {hand_run / 'trace.json'}" in res.output and (hand_run / "trace.json").is_file()


def test_compare_writes_to_out(tmp_path: Path, make_run: Any, synthetic: Any) -> None:
    a, b = make_run("a", synthetic(800, seed=1)), make_run("b", synthetic(800, seed=1, cost_scale=3.0))
    out = tmp_path / "cmp"
    res = CliRunner().invoke(report_command, [str(a), str(b), "--compare", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out / 'compare.html'} and {out / 'compare.json'}" in res.output
    assert "metrics differ beyond noise" in res.output


def test_compare_default_out_is_in_the_working_folder(
    tmp_path: Path, make_run: Any, synthetic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_run("a", synthetic(500, seed=1)), make_run("b", synthetic(500, seed=2))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(report_command, [str(a), str(b), "--compare"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "compare-a-vs-b" / "compare.html").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/run"], "/nonexistent/run: no such folder"),
        ([], "expected one run folder, got 0"),
        (["a", "b"], "expected one run folder, got 2 (two need --compare)"),
        (["a", "--compare"], "--compare takes two run folders (A B), got 1"),
        (["a", "--out", "x"], "--out is for --compare"),
    ],
)
def test_report_usage_errors_are_one_line(args: list[str], message: str) -> None:
    res = CliRunner().invoke(report_command, args)
    assert res.exit_code == 2
    error_lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and message in error_lines[0], res.output


def test_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    for command in (report_command, trace_command):
        res = CliRunner().invoke(command, [str(tmp_path)])
        assert res.exit_code == 2 and "no events.jsonl here" in res.output
    res = CliRunner().invoke(report_command, [str(tmp_path), str(tmp_path / "x"), "--compare"])
    assert res.exit_code == 2 and "Error:" in res.output


def test_importing_the_commands_does_not_load_matplotlib() -> None:
    """The hvsim group imports these commands; `hvsim run` must not pay for the charts."""
    code = "import sys, hvsim.reports.cli; print('matplotlib' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr
