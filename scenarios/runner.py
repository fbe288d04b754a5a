"""Run a scenario for one seed: build the world, run the host, check, write the log and summary."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import simpy
from simpy.events import EventPriority

from hvsim.scenarios import checkers
from hvsim.scenarios.checkers import Violation
from hvsim.scenarios.library import Scenario, load
from hvsim.scenarios.simulation import Simulation
from hvsim.scenarios.summary import build_summary

#: Priority below SimPy's NORMAL (1): such an event runs only after every other event of its
#: instant, including ones scheduled during that instant -- a quiescent point.
QUIESCENT = EventPriority(2)


class _CheckerFailed(Exception):
    pass


@dataclass
class RunResult:
    scenario: str
    seed: int
    sim: Simulation
    wall_s: float
    violations: list[Violation] = field(default_factory=list)
    #: A host step that failed (e.g. "DeletePartition(3): OPERATION_DENIED ..."), or a crash.
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.violations


def _quiescent_checks(
    sim: Simulation, every_ns: int, found: list[Violation]
) -> Generator[simpy.Event, Any, None]:
    env = sim.env
    while True:
        point = simpy.Event(env)
        point._ok = True
        point._value = None
        env.schedule(point, QUIESCENT, every_ns)
        yield point
        bad = checkers.check_state(sim.hv)
        if bad:
            seq = sim.log.seq
            found.extend(Violation(v.checker, v.message, v.objects, sim.now_ns, seq) for v in bad)
            raise _CheckerFailed


def run_scenario(
    name_or_path: str | Scenario,
    seed: int = 0,
    *,
    out_dir: Path | None = None,
    log: bool = True,
    check_every_ns: int | None = 1_000_000,
) -> RunResult:
    """Run one scenario for one seed; write ``events.jsonl`` and ``summary.json`` to *out_dir*.

    State checkers run at a quiescent point every *check_every_ns* of simulated time (None: only at
    the end); the first violation stops the run. Files are written even when the run fails.
    """
    sc = name_or_path if isinstance(name_or_path, Scenario) else load(name_or_path)
    sim = Simulation(seed, config=sc.config, log=log)
    result = RunResult(sc.name, seed, sim, 0.0)
    wall_start = time.perf_counter()
    try:
        main = sim.process(sc.main(sim))
        if check_every_ns:
            sim.process(_quiescent_checks(sim, check_every_ns, result.violations))
        with sim.runtime.active():
            sim.env.run(until=main)
    except _CheckerFailed:
        pass
    except Exception as exc:  # the host under test failed: a result, not a crash of hvsim
        result.error = f"{type(exc).__name__}: {exc}"
    result.wall_s = time.perf_counter() - wall_start
    if not result.violations:
        result.violations = checkers.check_state(sim.hv)
    if log:
        result.violations += checkers.state_transitions(sim.log.records())
    if result.error is None and sc.expect_all_reclaimed:
        result.violations += checkers.all_reclaimed(sim.hv)
    for failure in sim.runtime.failures:
        result.error = result.error or f"actor {failure[0]} failed: {failure[1]!r}"
    result.summary = build_summary(sc, result.sim, result.wall_s, result.violations, result.error)
    sim.close()
    if out_dir is not None:
        write_outputs(result, out_dir)
    return result


def write_outputs(result: RunResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    result.sim.log.write(out_dir / "events.jsonl")
    (out_dir / "summary.json").write_bytes(
        orjson.dumps(result.summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


__all__ = ["RunResult", "run_scenario", "write_outputs"]
