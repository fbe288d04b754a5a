"""hvsim chaos: parallel campaigns, resume after interruption, artifacts that replay, exit codes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hvsim.scenarios.chaos import Campaign, SeedResult, run_campaign

HVSIM = [sys.executable, "-m", "hvsim.scenarios.cli"]
BUGGY = '''
from hvsim.actors.hvdef import HvStatus as S
from hvsim.scenarios.host import ReferenceHost

class TrustsFirstNoResources(ReferenceHost):
    """Deletes after the first NO_RESOURCES without checking GetMemoryBalance."""
    def drain(self, partition_id):
        total = 0
        while True:
            status, pages = yield from self.api.withdraw(partition_id)
            self.sim.free_host_pages(pages)
            total += len(pages)
            if status is not S.SUCCESS:
                return total
'''
PLAN = """[[fault]]
kind = "hypercall.transient"
calls = ["WithdrawMemory"]
status = "NO_RESOURCES"
probability = 0.5
"""


def hvsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVSIM, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT seed, outcome, digest FROM seeds ORDER BY seed"))


def test_campaign_passes_and_records_every_seed(tmp_path: Path) -> None:
    res = hvsim(
        "chaos", "--seeds", "6", "--swarm", "--jobs", "2", "--out", "c", "--check-determinism", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "6 seeds: 6 pass" in res.stdout and "determinism: OK" in res.stdout
    assert [r[:2] for r in rows(tmp_path / "c" / "results.sqlite")] == [(s, "pass") for s in range(6)]


def test_interrupted_campaign_resumes_without_losing_or_repeating_a_seed(tmp_path: Path) -> None:
    campaign = Campaign("churn", "swarm")
    seen: list[int] = []

    def interrupt_after_three(r: SeedResult) -> None:
        seen.append(r.seed)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_campaign(campaign, range(8), tmp_path / "a", jobs=1, on_result=interrupt_after_three)
    assert [r[0] for r in rows(tmp_path / "a" / "results.sqlite")] == [0, 1, 2]
    resumed: list[int] = []
    run_campaign(campaign, range(8), tmp_path / "a", jobs=2, on_result=lambda r: resumed.append(r.seed))
    assert sorted(resumed) == [3, 4, 5, 6, 7]  # none lost, none run twice
    run_campaign(campaign, range(8), tmp_path / "b", jobs=2)
    assert rows(tmp_path / "a" / "results.sqlite") == rows(tmp_path / "b" / "results.sqlite")


def test_a_failing_seed_leaves_an_artifact_that_replays_exactly(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    (tmp_path / "plan.toml").write_text(PLAN)
    args = ["chaos", "churn", "--seeds", "3", "--faults", "plan.toml", "--jobs", "2", "--out", "c"]
    res = hvsim(*args, "--host", "buggy:TrustsFirstNoResources", cwd=tmp_path)
    assert res.returncode == 4, res.stdout + res.stderr  # a host error
    assert "host-error" in res.stdout and "reproduce: hvsim run churn --seed" in res.stdout
    failed = [r for r in rows(tmp_path / "c" / "results.sqlite") if r[1] != "pass"]
    seed, _, digest = failed[0]
    folder = tmp_path / "c" / "failures" / f"seed-{seed}"
    manifest = json.loads((folder / "manifest.json").read_text())
    again = hvsim(*manifest["repro"].split()[1:], "--out", "replay", cwd=tmp_path)
    assert again.returncode == 1

    replayed = (tmp_path / "replay" / "events.jsonl").read_text().rstrip("\n")
    assert hashlib.sha256(replayed.encode()).hexdigest() == digest


def test_a_different_campaign_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    assert hvsim("chaos", "--seeds", "1", "--jobs", "1", "--out", "c", cwd=tmp_path).returncode == 0
    res = hvsim("chaos", "--seeds", "1", "--jobs", "1", "--swarm", "--out", "c", cwd=tmp_path)
    assert (
        res.returncode == 2 and res.stderr.startswith("hvsim: error:") and "different campaign" in res.stderr
    )


def test_a_seed_over_the_time_limit_is_a_harness_error(tmp_path: Path) -> None:
    (tmp_path / "forever.py").write_text(
        "def scenario(sim):\n    while True:\n        yield sim.env.timeout(1)\n"
    )
    res = hvsim(
        "chaos", "forever.py", "--seeds", "1", "--jobs", "1", "--time-limit", "1", "--out", "c", cwd=tmp_path
    )
    assert res.returncode == 6, res.stdout + res.stderr
    assert "harness" in res.stdout and "exceeded 1 s" in res.stdout


def test_replay_reproduces_an_artifact_and_detects_a_changed_log(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    (tmp_path / "plan.toml").write_text(PLAN)
    args = ["chaos", "churn", "--seeds", "2", "--faults", "plan.toml", "--jobs", "1", "--out", "c"]
    assert hvsim(*args, "--host", "buggy:TrustsFirstNoResources", cwd=tmp_path).returncode == 4
    folder = next((tmp_path / "c" / "failures").iterdir())
    same = hvsim("replay", str(folder), cwd=tmp_path)
    assert same.returncode == 0 and "replay: identical" in same.stdout and "failed again" in same.stdout
    log = folder / "events.jsonl"
    lines = log.read_text().splitlines()
    lines[3] = lines[3].replace('"seq":3', '"seq":3,"tampered":true')
    log.write_text("\n".join(lines) + "\n")
    changed = hvsim("replay", str(folder), cwd=tmp_path)
    assert changed.returncode == 5 and "DIFFERENT at event 3" in changed.stderr
    missing = hvsim("replay", str(tmp_path), cwd=tmp_path)
    assert missing.returncode == 2 and "not a failure artifact" in missing.stderr


def test_campaign_coverage_counts_what_was_reached_and_flags_what_never_happened(tmp_path: Path) -> None:
    from hvsim.scenarios.chaos import SOMETIMES, campaign_coverage

    plain = campaign_coverage(run_campaign(Campaign("lifecycle", "none"), range(2), tmp_path / "a", jobs=1))
    assert plain["fault_kinds_fired"] == {}
    assert {"CREATED", "ACTIVE", "FINALIZED", "DELETED"} <= set(plain["partition_states"])
    assert "CreatePartition:INSUFFICIENT_MEMORY" in plain["call_status_pairs"]
    # The TLFS time budget splits big withdrawals even without faults: continuations happen.
    assert "continuation" not in plain["sometimes_never_hit"]
    assert {"host-crash-recovered", "vp-crashed"} <= set(plain["sometimes_never_hit"])
    crash = tmp_path / "crash.toml"
    crash.write_text(
        '[[fault]]\nkind = "host.crash"\nstep = "teardown.finalized"\n\n[[fault]]\nkind = "vp.crash"\n'
    )
    faulty = Campaign("lifecycle", crash.read_text())
    cov = campaign_coverage(run_campaign(faulty, range(2), tmp_path / "b", jobs=1))
    assert cov["fault_kinds_fired"] == {"host.crash": 2, "vp.crash": 2}
    assert set(cov["sometimes_never_hit"]) <= set(SOMETIMES) - {"host-crash-recovered", "vp-crashed"}


def test_promote_stores_a_case_the_corpus_runner_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hvsim.scenarios.chaos import run_corpus_case

    (tmp_path / "buggy.py").write_text(BUGGY)
    (tmp_path / "plan.toml").write_text(PLAN)
    args = ["chaos", "churn", "--seeds", "2", "--faults", "plan.toml", "--jobs", "1", "--out", "c"]
    assert hvsim(*args, "--host", "buggy:TrustsFirstNoResources", cwd=tmp_path).returncode == 4
    artifact = next((tmp_path / "c" / "failures").iterdir())
    res = hvsim("promote", str(artifact), "--corpus", "corpus", cwd=tmp_path)
    assert res.returncode == 0 and "promoted to" in res.stdout
    (case,) = (tmp_path / "corpus").iterdir()
    assert json.loads((case / "case.json").read_text())["host"] == "buggy:TrustsFirstNoResources"
    again = hvsim("promote", str(artifact), "--corpus", "corpus", cwd=tmp_path)
    assert again.returncode == 2 and "exists already" in again.stderr
    # The bug is still there, so the case fails; with the fixed (reference) host it passes.
    monkeypatch.chdir(tmp_path)
    assert not run_corpus_case(case).ok
    data = json.loads((case / "case.json").read_text())
    (case / "case.json").write_text(json.dumps({**data, "host": None}))
    assert run_corpus_case(case).ok


def test_shrink_finds_the_one_fault_that_matters_and_the_result_replays(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    noise = """
[[fault]]
kind = "hypercall.latency"
probability = 0.2

[[fault]]
kind = "vp.slow"
factor = 3.0

[[fault]]
kind = "pool.fail_probability"
probability = 0.1
"""
    (tmp_path / "plan.toml").write_text(noise + PLAN + noise.replace("0.2", "0.05"))
    args = ["chaos", "churn", "--seeds", "1", "--faults", "plan.toml", "--jobs", "1", "--out", "c"]
    assert hvsim(*args, "--host", "buggy:TrustsFirstNoResources", cwd=tmp_path).returncode == 4
    artifact = next((tmp_path / "c" / "failures").iterdir())
    res = hvsim("shrink", str(artifact), "--out", "min", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "faults 7 -> 1" in res.stdout and "DeletePartition: OPERATION_DENIED" in res.stdout
    plan = (tmp_path / "min" / "plan.toml").read_text()
    assert plan.count("[[fault]]") == 1 and 'kind = "hypercall.transient"' in plan
    again = hvsim("replay", "min", cwd=tmp_path)
    assert again.returncode == 0 and "identical" in again.stdout


def test_shrink_cuts_a_long_failing_run_to_one_fault_and_a_tiny_workload(tmp_path: Path) -> None:
    """The planted-bug target: a 60 s vmbus run (10,000+ events) under five faults, failing at its
    teardown, shrinks to the one fault and a workload of a few dozen hypercalls, in under 30 s."""
    (tmp_path / "buggy.py").write_text(BUGGY)
    noise = """
[[fault]]
kind = "hypercall.latency"
probability = 0.2

[[fault]]
kind = "vp.slow"
factor = 3.0

[[fault]]
kind = "hypercall.partial"
calls = ["DepositMemory"]
max_reps = 7
probability = 0.5
"""
    culprit = PLAN.replace("probability = 0.5", "probability = 1.0")
    plan = "heal_at_ns = 61_000_000_000\n" + noise + culprit + noise.replace("0.2", "0.05")
    (tmp_path / "plan.toml").write_text(plan)
    args = ["chaos", "vmbus", "--seeds", "1", "--faults", "plan.toml", "--jobs", "1", "--out", "c"]
    assert hvsim(*args, "--host", "buggy:TrustsFirstNoResources", cwd=tmp_path).returncode == 4
    artifact = tmp_path / "c" / "failures" / "seed-0"
    recorded = (artifact / "events.jsonl").read_text().count("\n")
    assert recorded >= 10_000
    start = time.perf_counter()
    res = hvsim("shrink", str(artifact), "--out", "min", cwd=tmp_path)
    took = time.perf_counter() - start
    assert res.returncode == 0, res.stdout + res.stderr
    assert "faults 7 -> 1" in res.stdout and took < 30, (took, res.stdout)
    manifest = json.loads((tmp_path / "min" / "manifest.json").read_text())
    assert manifest["limits"] and "--limit" in manifest["repro"]
    events = (tmp_path / "min" / "events.jsonl").read_text().count("\n")
    assert events <= 200, events
    plan_text = (tmp_path / "min" / "plan.toml").read_text()
    assert plan_text.count("[[fault]]") == 1 and 'kind = "hypercall.transient"' in plan_text
    again = hvsim("replay", "min", cwd=tmp_path)
    assert again.returncode == 0 and f"identical, {events} events" in again.stdout
    # The repro command the manifest prints is a real command line that fails the same way.
    rerun = hvsim(*manifest["repro"].split()[1:], "--out", "rerun", "--no-report", cwd=tmp_path)
    assert rerun.returncode == 1 and "DeletePartition" in rerun.stdout + rerun.stderr
