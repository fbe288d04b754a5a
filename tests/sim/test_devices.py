"""The ``devices`` scenario: a guest that builds its page tables and touches IO ports, an MSR, CPUID
and MMIO behind intercepts the reference host emulates (scenarios/devices.py)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from hvsim.scenarios.devices import MS, devices_session
from hvsim.scenarios.library import SCENARIOS, Scenario
from hvsim.scenarios.runner import RunResult, run_scenario
from hvsim.scenarios.simulation import Simulation

HVSIM = [sys.executable, "-m", "hvsim.scenarios.cli"]
LOOPS = 20
#: What one loop of the devices guest does (devices_guest): two GVA accesses, six serial bytes
#: and an LSR read, a scratch-MSR write and read, two CPUIDs (one intercepted), one MMIO read.
ACCESSES_PER_LOOP = 14
INTERCEPTS_PER_LOOP = {"io": 7, "msr": 2, "cpuid": 1, "mmio": 1}
#: Each access of a loop, in order, by what emulates it ("" for none: RAM by GVA, CPUID leaf 0).
LOOP_KINDS = ["", "", *["serial"] * 6, "io", "msr", "msr", "cpuid", "", "mmio"]
assert len(LOOP_KINDS) == ACCESSES_PER_LOOP
#: The guest's setup: four page-table writes by GPA (RAM: no intercept).
SETUP_ACCESSES = 4


def short(run_ns: int = 5 * MS, loops: int | None = None) -> Scenario:
    def main(sim: Simulation) -> Generator[Any, Any, None]:
        yield from devices_session(sim, run_ns, loops)

    return Scenario("devices-short", "the devices scenario, shortened", main, duration_ns=run_ns)


def digest(result: RunResult) -> str:
    return hashlib.sha256("\n".join(result.sim.log.lines).encode()).hexdigest()


@pytest.fixture(scope="module")
def bounded() -> RunResult:
    """5 ms with the guest limited to LOOPS loops (it halts long before the host stops serving)."""
    return run_scenario(short(loops=LOOPS), 0)


def test_the_builtin_scenario_is_registered() -> None:
    assert "devices" in SCENARIOS and SCENARIOS["devices"].duration_ns == 50 * MS


def test_short_run_passes_every_checker(bounded: RunResult) -> None:
    assert bounded.error is None
    assert bounded.violations == []
    summary = bounded.summary
    assert summary["ok"] and all(c["ok"] for c in summary["checkers"].values())
    assert "gpa-mappings" in summary["checkers"]
    assert summary["partitions"]["live"] == []


def test_counters_are_consistent_for_a_bounded_guest(bounded: RunResult) -> None:
    counters = bounded.sim.counters
    assert counters["serial_bytes"] == 6 * LOOPS
    for kind, per_loop in INTERCEPTS_PER_LOOP.items():
        assert counters[f"emulated_{kind}"] == per_loop * LOOPS, kind
    assert "emulated_unknown" not in counters
    assert counters["guest_accesses"] == SETUP_ACCESSES + ACCESSES_PER_LOOP * LOOPS
    assert counters["guest_intercepted"] == sum(INTERCEPTS_PER_LOOP.values()) * LOOPS
    assert counters["guest_faults"] == 0
    assert bounded.summary["counters"] == dict(sorted(counters.items()))


@pytest.mark.parametrize("run_ns", [3 * MS, 4_321_000, 5 * MS])
def test_counters_are_consistent_when_time_runs_out(run_ns: int) -> None:
    """Unbounded, the guest loops until the host stops serving. Its access count says exactly how
    far it got; every intercepted access up to there was emulated, except possibly the last one
    (still pending when the host stopped)."""
    result = run_scenario(short(run_ns), 0)
    assert result.ok, (result.error, result.violations)
    counters = result.sim.counters
    done = counters["guest_accesses"] - SETUP_ACCESSES
    assert done > 10 * ACCESSES_PER_LOOP
    trail = [LOOP_KINDS[i % ACCESSES_PER_LOOP] for i in range(done)]
    expected = Counter(kind for kind in trail if kind)
    assert counters["guest_intercepted"] == sum(expected.values())
    pending = counters["guest_intercepted"] - sum(v for k, v in counters.items() if k.startswith("emulated_"))
    assert pending in (0, 1)
    if pending:
        assert trail[-1], "only the last access can still wait for its parent"
        expected[trail[-1]] -= 1
    assert counters["serial_bytes"] == expected["serial"]
    emulated = {k: counters.get(f"emulated_{k}", 0) for k in ("io", "msr", "cpuid", "mmio")}
    assert emulated == {
        "io": expected["serial"] + expected["io"],
        "msr": expected["msr"],
        "cpuid": expected["cpuid"],
        "mmio": expected["mmio"],
    }
    assert counters["guest_faults"] == 0


def test_same_seed_same_event_log() -> None:
    a, b = run_scenario(short(2 * MS), 4), run_scenario(short(2 * MS), 4)
    assert a.ok and b.ok
    assert a.sim.log.lines == b.sim.log.lines
    assert digest(a) == digest(b)


def test_cli_run_devices_checks_determinism(tmp_path: Path) -> None:
    res = subprocess.run(
        [*HVSIM, "run", "devices", "--out", "o", "--check-determinism"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "scenario devices seed 0: OK" in res.stdout
    assert "determinism: OK" in res.stdout
