"""Run a scenario for one seed: build the world, run the host, check, write the log and summary."""

from __future__ import annotations

import itertools
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import simpy
from simpy.events import EventPriority

from hvsim.faults.inject import FaultInjector, HostCrashed
from hvsim.faults.plan import FaultPlan
from hvsim.scenarios import checkers, faulting
from hvsim.scenarios.checkers import Violation
from hvsim.scenarios.library import Scenario, load
from hvsim.scenarios.simulation import Limits, Simulation
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
    plan: FaultPlan = field(default_factory=FaultPlan)
    injector: FaultInjector | None = None
    #: Steps at which the host crashed (host.crash faults), in order.
    crashes: list[str] = field(default_factory=list)
    liveness: list[Violation] = field(default_factory=list)
    #: The event log decoded once, for the log checkers and anyone else who reads records.
    records: list[dict[str, Any]] = field(default_factory=list)

    def fault_summary(self) -> dict[str, Any] | None:
        if self.injector is None:
            return None
        return {
            "plan": self.plan.name,
            "faults": [f.kind for f in self.plan.faults],
            "fired": dict(sorted(self.injector.fired.items())),
            "host_crashes": self.crashes,
            "healed": self.injector.healed,
        }

    @property
    def ok(self) -> bool:
        return self.error is None and not self.violations


#: Every this many quiescent points the full state check runs even if memory looked unchanged.
FULL_CHECK_EVERY = 100


def _quiescent_checks(
    sim: Simulation, every_ns: int, found: list[Violation], injector: FaultInjector | None = None
) -> Generator[simpy.Event, Any, None]:
    env = sim.env
    last: tuple[int, ...] = ()
    progress = checkers.MessageProgress()
    for n in itertools.count(1):
        point = simpy.Event(env)
        point._ok = True
        point._value = None
        env.schedule(point, QUIESCENT, every_ns)
        yield point
        # The page checkers walk every pool (and count host RAM): in long quiet stretches, only
        # re-run them when memory changed, plus every FULL_CHECK_EVERY-th point regardless.
        key = checkers.memory_fingerprint(sim.hv)
        if key != last or n % FULL_CHECK_EVERY == 0:
            bad = checkers.check_state(sim.hv)
        else:
            bad = checkers.message_buffers(sim.hv)
        last = key
        if injector is None or injector.healed:  # faults may hold slots busy or pause receivers
            bad += progress(sim.hv)
        if bad:
            seq = sim.log.seq
            found.extend(Violation(v.checker, v.message, v.objects, sim.now_ns, seq) for v in bad)
            raise _CheckerFailed


def _after(
    sim: Simulation, at_ns: int, then: Generator[simpy.Event, Any, None]
) -> Generator[simpy.Event, Any, None]:
    yield sim.env.timeout(at_ns)
    yield from then


def run_scenario(
    name_or_path: str | Scenario,
    seed: int = 0,
    *,
    out_dir: Path | None = None,
    log: bool = True,
    check_every_ns: int | None = 1_000_000,
    plan: FaultPlan | None = None,
    host_class: type | None = None,
    limits: Limits | None = None,
) -> RunResult:
    """Run one scenario for one seed; write ``events.jsonl`` and ``summary.json`` to *out_dir*.

    Safety: state checkers run at a quiescent point every *check_every_ns* of simulated time (None:
    only at the end); the first violation stops the run. With a fault *plan*, faults act until the
    plan's ``heal_at_ns``; a host crash ends every host process and a fresh *host_class* host
    recovers. Liveness: the host's job must finish within ``liveness_bound_ns`` after healing, VPs
    that may run must run, and (for scenarios that tear down) everything must be reclaimed.
    *limits* caps the scenario's workload (see :class:`Limits`). Files are written even when the
    run fails.
    """
    sc = name_or_path if isinstance(name_or_path, Scenario) else load(name_or_path)
    sim = Simulation(seed, config=sc.config, log=log, limits=limits)
    sim.host_class = host_class
    plan = plan or FaultPlan()
    result = RunResult(sc.name, seed, sim, 0.0, plan=plan)
    wall_start = time.perf_counter()
    with sim.runtime.active():
        injector = faulting.install(sim, plan)
        result.injector = injector
        if check_every_ns:
            sim.env.process(_quiescent_checks(sim, check_every_ns, result.violations, injector))
        if injector is not None:
            sim.env.process(
                _after(sim, plan.heal_at_ns, faulting.vps_make_progress(sim, 5_000_000, result.liveness))
            )
        try:
            _run_host(sim, sc, plan, injector, result)
        except _CheckerFailed:
            pass
        except Exception as exc:  # the host under test failed: a result, not a crash of hvsim
            result.error = f"{type(exc).__name__}: {exc}"
        if injector is not None:
            injector.heal_all(faulting.vp_control(sim))
    result.wall_s = time.perf_counter() - wall_start
    _judge(sim, sc, result, log)
    result.summary = build_summary(
        sc, sim, result.wall_s, result.violations, result.error, result.fault_summary(), result.records
    )
    sim.close()
    if out_dir is not None:
        write_outputs(result, out_dir)
    return result


def _run_host(
    sim: Simulation, sc: Scenario, plan: FaultPlan, injector: FaultInjector | None, result: RunResult
) -> None:
    """Run the scenario's host to completion, restarting it after each crash."""
    env = sim.env
    job = sim.process(sc.main(sim))
    # The host has liveness_bound_ns after the later of the heal and the scenario's own duration.
    busy_until = max(plan.heal_at_ns, sim.limits.cap("run_ns", sc.duration_ns))
    deadline = None if injector is None else env.timeout(busy_until + plan.liveness_bound_ns)
    while True:
        try:
            env.run(until=job if deadline is None else env.any_of([job, deadline]))
        except HostCrashed as crash:
            ended = faulting.end_host(sim)
            freed = faulting.reclaim_host_memory(sim)
            result.crashes.append(crash.step)
            sim.log.emit("host.crashed", step=crash.step, processes_ended=ended, host_pages_freed=freed)
            job = sim.process(faulting.restart(sim, crash, faulting.restart_delay(plan, crash)))
            continue
        if not job.triggered:
            result.liveness.append(
                Violation(
                    "host-finishes",
                    f"the host had not finished {plan.liveness_bound_ns} ns after faults healed "
                    "(and the scenario's own duration)",
                    {},
                    sim.now_ns,
                    sim.log.seq,
                )
            )
        return


def _judge(sim: Simulation, sc: Scenario, result: RunResult, log: bool) -> None:
    if not result.violations:
        result.violations = checkers.check_state(sim.hv)
    if log:
        records = result.records = sim.log.records()
        result.violations += checkers.state_transitions(records) + checkers.no_use_after_delete(records)
        result.violations += checkers.message_accounting(records, sim.hv)
    result.violations += result.liveness
    if result.error is None and sc.expect_all_reclaimed and not result.liveness:
        result.violations += checkers.all_reclaimed(sim.hv) + checkers.host_pages_returned(sim.hv)
    for name, exc in sim.runtime.failures:
        result.error = result.error or f"actor {name} failed: {exc!r}"


def write_outputs(result: RunResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    result.sim.log.write(out_dir / "events.jsonl")
    (out_dir / "summary.json").write_bytes(
        orjson.dumps(result.summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


__all__ = ["RunResult", "run_scenario", "write_outputs"]
