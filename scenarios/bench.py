"""``hvsim bench``: throughput as ratios against a baseline measured in the same run.

* baseline: raw SimPy -- two processes ping-ponging over two ``simpy.Store`` s (a round trip is a put
  and a get each way), the cheapest message round trip SimPy offers;
* hvsim: hypercall round trips issued by guest VPs inside the simulation (two VPs of one partition
  running back-to-back GetVpRegisters on themselves), with the event log off and on;
* messages: SynIC messages per wall second between two children ping-ponging requests and
  responses through brokered message ports (PostMessage, transit, slot delivery, EOM), log on;
* a whole scenario: events per wall second for the default scenario;
* chaos: swarm seeds per wall second with 1 and 2 worker processes (target: >= 1.8x with 2).

Targets (issue "Foundation"): hypercalls >= 50% of the Store round-trip rate with logging off, and
the event log costing at most a third of throughput. Each figure is the best of *repeat* runs.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import simpy

from hvsim.actors.workload import Program, ReceiveMessage
from hvsim.scenarios.chaos import Campaign, run_campaign
from hvsim.scenarios.host import PartitionSpec, ReferenceHost
from hvsim.scenarios.library import DEFAULT_SCENARIO
from hvsim.scenarios.messaging import (
    GUEST_SINTS,
    MESSAGE_SINT,
    MSG_CONN,
    REQUEST,
    RESPONSE,
    broker_channel,
    offer,
)
from hvsim.scenarios.runner import run_scenario
from hvsim.scenarios.simulation import Simulation
from hvsim.scenarios.workload import enable_synic, hypercall_storm, post_message


@dataclass
class BenchReport:
    python: str
    machine: str
    calls: int
    repeat: int
    simpy_store_round_trips_per_s: float
    hypercalls_per_s_log_off: float
    hypercalls_per_s_log_on: float
    scenario_events_per_s: float
    #: SynIC messages delivered per wall second (ping-pong between two children, log on).
    messages_per_s: float
    ratio_messages_to_store: float
    ratio_hypercalls_to_store: float
    ratio_log_on_to_off: float
    #: Swarm chaos seeds per wall second with 1 and 2 worker processes (0: not measured).
    chaos_seeds: int = 0
    chaos_seeds_per_s_1_worker: float = 0.0
    chaos_seeds_per_s_2_workers: float = 0.0
    ratio_2_workers_to_1: float = 0.0
    target_ratio_2_workers_to_1: float = 1.8
    target_ratio_hypercalls_to_store: float = 0.5
    target_ratio_log_on_to_off: float = 2 / 3

    @property
    def meets_targets(self) -> bool:
        chaos_ok = not self.chaos_seeds or self.ratio_2_workers_to_1 >= self.target_ratio_2_workers_to_1
        return (
            self.ratio_hypercalls_to_store >= self.target_ratio_hypercalls_to_store
            and self.ratio_log_on_to_off >= self.target_ratio_log_on_to_off
            and chaos_ok
        )

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "meets_targets": self.meets_targets}, indent=2) + "\n"


def simpy_store_round_trips(n: int) -> float:
    env = simpy.Environment()
    there, back = simpy.Store(env), simpy.Store(env)

    def ping() -> Generator[simpy.Event, Any, None]:
        for i in range(n):
            yield there.put(i)
            yield back.get()

    def pong() -> Generator[simpy.Event, Any, None]:
        while True:
            item = yield there.get()
            yield back.put(item)

    env.process(ping())
    env.process(pong())
    start = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - start)


def vp_hypercalls(n: int, *, log: bool) -> float:
    """Hypercall round trips per wall second issued by guest VPs (boot excluded)."""
    sim = Simulation(0, log=log)
    sim.run_process(ReferenceHost(sim).boot(PartitionSpec(vps=2, program=hypercall_storm)))
    counts = sim.hv.call_counts
    first = sum(counts.values())
    start = time.perf_counter()
    while sum(counts.values()) - first < n:
        sim.run(sim.now_ns + 2_000_000)
    elapsed = time.perf_counter() - start
    done = sum(counts.values()) - first
    sim.close()
    return done / elapsed


def message_ping_pong(n: int) -> float:
    """SynIC messages delivered per wall second: a client and a server child exchange requests and
    responses as fast as they can (no compute between them), each message one PostMessage, one
    transit and one slot delivery taken by the guest."""
    sim = Simulation(0)
    setup = (*enable_synic(GUEST_SINTS), ReceiveMessage(MESSAGE_SINT))
    client = Program(setup, (post_message(MSG_CONN, REQUEST, b"ping"), ReceiveMessage(MESSAGE_SINT)))
    server = Program(setup, (ReceiveMessage(MESSAGE_SINT), post_message(MSG_CONN, RESPONSE, b"pong")))

    def boot() -> Generator[simpy.Event, Any, None]:
        host = ReferenceHost(sim)
        a = yield from host.boot(PartitionSpec(vps=1, program=lambda _i: client))
        b = yield from host.boot(PartitionSpec(vps=1, program=lambda _i: server))
        yield from broker_channel(host, a, b)
        yield from offer(host, b)
        yield from offer(host, a)

    sim.run_process(boot())
    first = sim.hv.next_message_id
    start = time.perf_counter()
    while sim.hv.next_message_id - first < n:
        sim.run(sim.now_ns + 2_000_000)
    elapsed = time.perf_counter() - start
    done = sim.hv.next_message_id - first - len(sim.hv.undelivered)
    sim.close()
    return done / elapsed


def scenario_events(seed: int = 0) -> float:
    result = run_scenario(DEFAULT_SCENARIO, seed)
    rate = result.summary["wall"]["events_per_second"]
    return float(rate or 0)


def chaos_seeds_per_s(seeds: int, jobs: int) -> float:
    """A swarm campaign on the default scenario in a throwaway folder; seeds per wall second."""
    with tempfile.TemporaryDirectory(prefix="hvsim-bench-") as tmp:
        start = time.perf_counter()
        run_campaign(Campaign(DEFAULT_SCENARIO, "swarm"), range(seeds), Path(tmp), jobs=jobs)
        return seeds / (time.perf_counter() - start)


def _best(repeat: int, fn: Callable[[], float]) -> float:
    return max(fn() for _ in range(repeat))


def run_benchmarks(
    calls: int = 200_000, repeat: int = 3, echo: Callable[[str], Any] = print, chaos_seeds: int = 40
) -> BenchReport:
    echo(f"hvsim bench: best of {repeat}, {calls} round trips each")
    store = _best(repeat, lambda: simpy_store_round_trips(calls))
    echo(f"  raw SimPy Store round trips : {store:12,.0f} /s")
    off = _best(repeat, lambda: vp_hypercalls(calls, log=False))
    echo(f"  VP hypercalls, log off      : {off:12,.0f} /s  ({off / store:.2f} x Store; target >= 0.50)")
    on = _best(repeat, lambda: vp_hypercalls(calls, log=True))
    echo(f"  VP hypercalls, log on       : {on:12,.0f} /s  ({on / off:.2f} x log off; target >= 0.67)")
    messages = _best(repeat, lambda: message_ping_pong(calls // 4))
    echo(f"  SynIC messages (ping-pong)  : {messages:12,.0f} /s  ({messages / store:.2f} x Store)")
    events = _best(repeat, scenario_events)
    echo(f"  default scenario            : {events:12,.0f} events/s")
    report = BenchReport(
        python=platform.python_version(),
        machine=platform.machine(),
        calls=calls,
        repeat=repeat,
        simpy_store_round_trips_per_s=round(store),
        hypercalls_per_s_log_off=round(off),
        hypercalls_per_s_log_on=round(on),
        scenario_events_per_s=round(events),
        messages_per_s=round(messages),
        ratio_messages_to_store=round(messages / store, 3),
        ratio_hypercalls_to_store=round(off / store, 3),
        ratio_log_on_to_off=round(on / off, 3),
    )
    if chaos_seeds:
        one = _best(repeat, lambda: chaos_seeds_per_s(chaos_seeds, 1))
        two = _best(repeat, lambda: chaos_seeds_per_s(chaos_seeds, 2))
        report.chaos_seeds = chaos_seeds
        report.chaos_seeds_per_s_1_worker = round(one, 2)
        report.chaos_seeds_per_s_2_workers = round(two, 2)
        report.ratio_2_workers_to_1 = round(two / one, 3)
        echo(f"  chaos, 1 worker             : {one:12,.2f} seeds/s")
        echo(f"  chaos, 2 workers            : {two:12,.2f} seeds/s  ({two / one:.2f} x; target >= 1.8)")
    echo("  targets met" if report.meets_targets else "  TARGETS MISSED")
    return report
