"""Wiring a fault plan into a simulation: the injector, host crashes and restarts, VP liveness.

The only place that composes ``hvsim.faults`` with a world. With an empty plan nothing is installed,
so the run is byte-identical to one without a plan.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from hvsim.actors.vp import Crash, Pause, SetSpeed
from hvsim.faults.inject import FaultInjector, HostCrashed, VpControl
from hvsim.faults.plan import FaultPlan
from hvsim.scenarios.checkers import Violation
from hvsim.scenarios.host import new_host
from hvsim.scenarios.simulation import Simulation


def vp_control(sim: Simulation) -> VpControl:
    def slow(partition_id: int, factor: float) -> None:
        partition = sim.hv.partitions.get(partition_id)
        for index in list(partition.vps) if partition is not None else []:
            sim.tell_vp(partition_id, index, SetSpeed(factor))

    return VpControl(
        pause=lambda pid, vp, ns: sim.tell_vp(pid, vp, Pause(ns)),
        crash=lambda pid, vp: sim.tell_vp(pid, vp, Crash()),
        slow=slow,
    )


def install(sim: Simulation, plan: FaultPlan) -> FaultInjector | None:
    """Install *plan*'s injector (its streams derive from the world seed); None for an empty plan."""
    if not plan.faults:
        return None
    seed = sim.rng("faults").getrandbits(64)
    injector = FaultInjector(plan, seed, sim.env, sim.hv, sim.log)
    sim.hv.interposer = injector
    controls = vp_control(sim)

    def crash_at(step: str) -> None:
        fault = injector.on_host_step(step)
        if fault is not None:
            raise HostCrashed(step, fault.occurrence)

    sim.host_step_hooks.append(crash_at)
    sim.log.emit("fault.plan", name=plan.name, faults=len(plan.faults), heal_at_ns=plan.heal_at_ns)
    with sim.runtime.active():
        for proc in injector.processes(controls):
            sim.env.process(proc)
    return injector


def end_host(sim: Simulation) -> int:
    """A host crash ends every host process (the host service is gone); guests keep running."""
    ended = 0
    for proc in sim.host_processes:
        if proc.is_alive and proc is not sim.env.active_process:
            proc.callbacks.append(_defuse)
            proc.interrupt("host crashed")
            ended += 1
    sim.host_processes.clear()
    return ended


def reclaim_host_memory(sim: Simulation) -> int:
    """The dead host's memory returns to the root's allocator; pool pages stay where they are."""
    return sim.hv.memory.release_host_allocations()


def _defuse(event: simpy.Event) -> None:
    event.defused = True


def restart(sim: Simulation, crash: HostCrashed, delay_ns: int) -> Generator[simpy.Event, Any, Any]:
    """A fresh host (knowing nothing) starts after *delay_ns* and recovers."""
    yield sim.env.timeout(delay_ns)
    host = new_host(sim)
    sim.log.emit("host.restarted", after_step=crash.step)
    return (yield from host.recover())


def restart_delay(plan: FaultPlan, crash: HostCrashed) -> int:
    for f in plan.faults:
        if f.kind == "host.crash" and f.step == crash.step:
            return int(f.restart_after_ns)
    return 1_000_000


def vps_make_progress(
    sim: Simulation, window_ns: int, found: list[Violation]
) -> Generator[simpy.Event, Any, None]:
    """Liveness: every VP that may run when faults heal executes within *window_ns* (crashed VPs,
    halted VPs, VPs idle waiting for a message or event, and VPs torn down meanwhile excepted)."""
    before = {(a.partition_id, a.index): a.compute_ns + a.hypercalls for a in sim.vp_actors()}
    yield sim.env.timeout(window_ns)
    for actor in sim.vp_actors():
        key = (actor.partition_id, actor.index)
        if key not in before or actor.crashed or actor.halted or actor.waiting or not actor.runnable:
            continue
        if actor.partition_id == sim.root_id:
            continue
        if actor.compute_ns + actor.hypercalls == before[key] and actor.busy_until_ns <= sim.now_ns:
            found.append(
                Violation(
                    "vps-run",
                    f"VP {actor.index} of partition {actor.partition_id} may run but executed nothing "
                    f"in the {window_ns} ns after faults healed",
                    {"partition": actor.partition_id, "vp": actor.index},
                    sim.now_ns,
                    sim.log.seq,
                )
            )
