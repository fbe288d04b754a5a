"""Built-in scenarios and scenario scripts.

A scenario is a function ``main(sim) -> generator`` run as the host's top-level process; it may
start more processes (hosts on other root VPs). A scenario *script* is a Python file defining
``scenario(sim)`` the same way, and optionally ``CONFIG`` (an HvConfig) and ``DESCRIPTION``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import simpy

from hvsim.actors.config import HvConfig, PageCosts
from hvsim.scenarios.host import PartitionSpec, new_host
from hvsim.scenarios.simulation import Simulation

Main = Callable[[Simulation], Generator[simpy.Event, Any, Any]]


class ScenarioError(Exception):
    """A scenario name or script that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    main: Main
    config: HvConfig | None = None
    #: Checked after the run: every child torn down and every page back with the host.
    expect_all_reclaimed: bool = True
    #: Simulated time the scenario's job takes undisturbed (its partitions run this long): under
    #: faults, the host's liveness deadline is measured from the later of this and the heal.
    duration_ns: int = 0


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, description: str, *, config: HvConfig | None = None, duration_ns: int = 0
) -> Callable[[Main], Main]:
    def register(main: Main) -> Main:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} is defined twice")
        SCENARIOS[name] = Scenario(name, description, main, config, duration_ns=duration_ns)
        return main

    return register


def limited(sim: Simulation, specs: list[PartitionSpec]) -> list[PartitionSpec]:
    """*specs* cut to the run's workload limits (partitions, VPs each)."""
    return [
        replace(s, vps=sim.limits.cap("vps", s.vps))
        for s in specs[: sim.limits.cap("partitions", len(specs))]
    ]


def _concurrent_lifecycles(
    sim: Simulation, specs: list[PartitionSpec], run_ns: int
) -> Generator[simpy.Event, Any, Any]:
    specs, run_ns = limited(sim, specs), sim.limits.cap("run_ns", run_ns)
    hosts = [new_host(sim, vp=i % sim.config.root_vps) for i in range(len(specs))]
    procs = [sim.process(host.lifecycle(spec, run_ns)) for host, spec in zip(hosts, specs, strict=True)]
    yield sim.env.all_of(procs)


@scenario("lifecycle", "the default: 3-4 partitions with 2-4 VPs boot at once, run 20 ms, tear down")
def lifecycle(sim: Simulation) -> Generator[simpy.Event, Any, Any]:
    rng = sim.rng("scenario")
    specs = [PartitionSpec(vps=rng.randint(2, 4)) for _ in range(rng.randint(3, 4))]
    yield from _concurrent_lifecycles(sim, specs, run_ns=20_000_000)


@scenario("boot-storm", "12 partitions x 4 VPs boot at once on every root VP, run 5 ms, tear down")
def boot_storm(sim: Simulation) -> Generator[simpy.Event, Any, Any]:
    yield from _concurrent_lifecycles(sim, [PartitionSpec(vps=4) for _ in range(12)], run_ns=5_000_000)


@scenario("churn", "40 short-lived partitions, one after another: pools drained and reused")
def churn(sim: Simulation) -> Generator[simpy.Event, Any, Any]:
    rng = sim.rng("scenario")
    host = new_host(sim)
    specs = [PartitionSpec(vps=rng.randint(1, 3), initial_pages=rng.choice([0, 64, 256])) for _ in range(40)]
    for spec in limited(sim, specs):
        yield from host.lifecycle(spec, sim.limits.cap("run_ns", 200_000))


@scenario(
    "tight-memory",
    "a 16 MiB host with tiny deposits: every structure arrives through INSUFFICIENT_MEMORY and retry",
    config=HvConfig(
        host_pages=4096, page_costs=PageCosts(create_partition=4, initialize_partition=200, create_vp=90)
    ),
)
def tight_memory(sim: Simulation) -> Generator[simpy.Event, Any, Any]:
    specs = limited(sim, [PartitionSpec(vps=4, initial_pages=0) for _ in range(4)])
    hosts = [new_host(sim, vp=i % sim.config.root_vps, retry_pages=1) for i in range(len(specs))]
    run_ns = sim.limits.cap("run_ns", 2_000_000)
    procs = [sim.process(h.lifecycle(s, run_ns)) for h, s in zip(hosts, specs, strict=True)]
    yield sim.env.all_of(procs)


@scenario(
    "recover", "a host boots 3 partitions and forgets them; a restarted host rediscovers and reclaims them"
)
def recover(sim: Simulation) -> Generator[simpy.Event, Any, Any]:
    first = new_host(sim)
    for spec in limited(sim, [PartitionSpec(vps=vps) for vps in (1, 2, 3)]):
        yield from first.boot(spec)
    yield sim.env.timeout(sim.limits.cap("run_ns", 1_000_000))
    restarted = new_host(sim, vp=1)  # knows nothing: must use GetNextChildPartition
    yield from restarted.reclaim_all()


DEFAULT_SCENARIO = "lifecycle"

# The messaging scenarios register themselves with the decorator above.
from hvsim.scenarios import devices, messaging  # noqa: E402, F401


def load(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario script by path."""
    if name_or_path in SCENARIOS:
        return SCENARIOS[name_or_path]
    path = Path(name_or_path)
    if path.suffix != ".py":
        known = ", ".join(sorted(SCENARIOS))
        raise ScenarioError(
            f"unknown scenario {name_or_path!r} (built-in: {known}; or a path to a .py script)"
        )
    if not path.is_file():
        raise ScenarioError(f"scenario script {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"hvsim_scenario_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"scenario script {path} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        line = getattr(exc, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        raise ScenarioError(f"scenario script {where}: {type(exc).__name__}: {exc}") from None
    main = getattr(module, "scenario", None)
    if not callable(main):
        raise ScenarioError(f"scenario script {path} defines no scenario(sim) function")
    config = getattr(module, "CONFIG", None)
    if config is not None and not isinstance(config, HvConfig):
        raise ScenarioError(f"scenario script {path}: CONFIG must be an hvsim.actors.HvConfig")
    description = str(getattr(module, "DESCRIPTION", module.__doc__ or "")).strip().splitlines()
    return Scenario(str(path), description[0] if description else "", main, config)
