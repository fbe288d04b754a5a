"""The hvsim command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HVSIM = [sys.executable, "-m", "hvsim.scenarios.cli"]


def hvsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVSIM, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_run_default_writes_log_and_summary(tmp_path: Path) -> None:
    res = hvsim("run", "--seed", "3", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "runs" / "lifecycle-3"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and summary["scenario"] == "lifecycle" and summary["seed"] == 3
    lines = (out / "events.jsonl").read_text().splitlines()
    assert len(lines) == summary["events"]
    assert json.loads(lines[0])["event"] == "sim.start"
    assert "lifecycle seed 3: OK" in res.stdout and "wrote runs/lifecycle-3/events.jsonl" in res.stdout


def test_check_determinism_compares_with_a_fresh_process(tmp_path: Path) -> None:
    res = hvsim("run", "churn", "--out", "o", "--check-determinism", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "determinism: OK" in res.stdout


def test_list_names_every_scenario(tmp_path: Path) -> None:
    res = hvsim("list", cwd=tmp_path)
    assert res.returncode == 0
    names = [line.split()[0] for line in res.stdout.splitlines()]
    assert names[:1] == ["lifecycle"] and {"boot-storm", "churn", "tight-memory", "recover"} <= set(names)


def _one_line_error(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("hvsim: error:"), res.stderr
    assert needle in res.stderr


def test_bad_flag_and_bad_values_are_one_line_errors(tmp_path: Path) -> None:
    _one_line_error(hvsim("run", "--frobnicate", cwd=tmp_path), "--frobnicate")
    _one_line_error(hvsim("run", "--seed", "minus-one", cwd=tmp_path), "--seed")
    _one_line_error(hvsim("run", "no-such-scenario", cwd=tmp_path), "no-such-scenario")
    _one_line_error(hvsim("fly", cwd=tmp_path), "fly")


def test_broken_scenario_script_is_a_one_line_error(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("def scenario(sim):\n    yield (\n")
    _one_line_error(hvsim("run", str(script), cwd=tmp_path), "broken.py")
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    _one_line_error(hvsim("run", str(empty), cwd=tmp_path), "defines no scenario(sim)")


def test_scenario_script_runs_and_failures_exit_1_with_files_kept(tmp_path: Path) -> None:
    script = tmp_path / "mine.py"
    script.write_text(
        '"""Boot one partition and leave it running (so the liveness check fails)."""\n'
        "from hvsim.scenarios.host import PartitionSpec, ReferenceHost\n"
        "def scenario(sim):\n"
        "    yield from ReferenceHost(sim).boot(PartitionSpec(vps=1))\n"
    )
    res = hvsim("run", str(script), "--out", "o", cwd=tmp_path)
    assert res.returncode == 1
    assert "all-reclaimed FAILED" in res.stdout
    assert "reproduce: hvsim run" in res.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["description"].startswith("Boot one partition") and not summary["ok"]
    assert (tmp_path / "o" / "events.jsonl").stat().st_size > 0


def test_bench_reports_ratios(tmp_path: Path) -> None:
    res = hvsim(
        "bench", "--calls", "5000", "--repeat", "1", "--chaos-seeds", "4", "--out", "b.json", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["simpy_store_round_trips_per_s"] > 0 and report["hypercalls_per_s_log_on"] > 0
    assert report["chaos_seeds"] == 4 and report["chaos_seeds_per_s_2_workers"] > 0
    expected = report["hypercalls_per_s_log_on"] / report["hypercalls_per_s_log_off"]
    assert abs(report["ratio_log_on_to_off"] - expected) < 1e-2
