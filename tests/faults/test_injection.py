"""Fault injection: every kind fires, does what it says, and heals; the reference host survives it.

Runs are small explicit plans on the built-in scenarios with fixed seeds (lifecycle boots its
partitions in the first millisecond and tears them down at about 20 ms; churn builds partitions one
after another for about 28 ms), plus custom scenarios where a kind needs a precise observation.
Message kinds need messages: they fire and heal on a 30 ms vmbus session instead (the kinds
themselves are exercised in test_message_faults.py).
"""

from __future__ import annotations

import functools
import itertools
import logging
import random
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import simpy

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    PARTITION_ID_INPUT,
    HvStatus,
    HypercallCode,
    PartitionIdInput,
    RegisterName,
    control,
)
from hvsim.actors.vp import CRASH_NOTIFY
from hvsim.actors.workload import Compute, Program
from hvsim.faults import FAULT_KINDS, FaultPlan, load_plan, parse_plan, swarm_plan
from hvsim.faults.inject import DRAIN_KEY, FaultInjector
from hvsim.scenarios import faulting
from hvsim.scenarios.host import HOST_STEPS, PartitionSpec, ReferenceHost
from hvsim.scenarios.hostapi import HostApi
from hvsim.scenarios.library import Scenario
from hvsim.scenarios.messaging import vmbus_session
from hvsim.scenarios.runner import RunResult, run_scenario
from hvsim.scenarios.simulation import Simulation
from hvsim.scenarios.workload import GET_PARTITION_ID, start_ap

C = HypercallCode
S = HvStatus
R = RegisterName
MS = 1_000_000
SELF = HV_PARTITION_ID_SELF
HVSIM = [sys.executable, "-m", "hvsim.scenarios.cli"]
#: Calls that charge pool pages in the built-in scenarios (no VirtualTlbPageCount there).
CHARGING_CALLS = {"CreatePartition", "InitializePartition", "CreateVp"}


def make_plan(*faults: dict[str, Any], heal_at_ns: int = 50 * MS, name: str = "test") -> FaultPlan:
    return FaultPlan.model_validate({"name": name, "heal_at_ns": heal_at_ns, "fault": list(faults)})


@functools.cache
def _run_cached(scenario: str, seed: int, plan_toml: str) -> RunResult:
    return run_scenario(scenario, seed, plan=parse_plan(plan_toml))


def run(scenario: str | Scenario, seed: int, plan: FaultPlan | None = None) -> RunResult:
    if isinstance(scenario, str) and plan is not None:
        return _run_cached(scenario, seed, plan.to_toml())
    return run_scenario(scenario, seed, plan=plan)


def records(result: RunResult) -> list[dict[str, Any]]:
    """The run's decoded event log (decoded once per run, kept on the result)."""
    cached: list[dict[str, Any]] | None = getattr(result, "_decoded_records", None)
    if cached is None:
        cached = result.sim.log.records()
        setattr(result, "_decoded_records", cached)  # noqa: B010
    return cached


def calls(result: RunResult, name: str | None = None) -> list[dict[str, Any]]:
    return [r for r in records(result) if r["event"] == "hypercall" and (name is None or r["call"] == name)]


def fault_records(result: RunResult, kind: str) -> list[dict[str, Any]]:
    return [r for r in records(result) if r["event"] == "fault" and r["kind"] == kind]


def describe(result: RunResult) -> str:
    return f"error={result.error!r} violations={[(v.checker, v.message) for v in result.violations]}"


def one_vp_scenario(program: Program, run_ns: int, probe: Any = None, *, vps: int = 1) -> Scenario:
    """Boot one partition running *program* on every VP (VP 0 first starts the others), call
    *probe(sim, host, pid)* (a generator) if given, run until *run_ns*, tear down."""

    def per_vp(index: int) -> Program:
        if index:
            return program
        starts = tuple(start_ap(ap, rip=0x10_0000, rsp=0x20_0000) for ap in range(1, vps))
        return Program(setup=starts + program.setup, loop=program.loop, name=program.name)

    def main(sim: Simulation) -> Generator[simpy.Event, Any, None]:
        host = ReferenceHost(sim)
        pid = yield from host.boot(PartitionSpec(vps=vps, program=per_vp))
        if probe is not None:
            yield from probe(sim, host, pid)
        yield sim.env.timeout(max(0, run_ns - sim.now_ns))
        yield from host.teardown(pid)

    return Scenario("one-vp", "one partition with a fixed program", main)


#: A guest that computes 100 us, then asks for its partition id, forever: hypercall records from it
#: are exactly 100_300 ns apart (GetPartitionId costs 300 ns) when nothing disturbs it.
TICKER = Program(loop=(Compute(100_000), GET_PARTITION_ID), name="ticker")
TICK_NS = 100_300


def ticks(result: RunResult, partition: int = 2, vp: int = 0) -> list[int]:
    return [r["t"] for r in calls(result) if r["caller"] == partition and r["vp"] == vp]


# --- every kind fires and heals ------------------------------------------------------------------
HEAL = 10 * MS
KIND_KNOBS: dict[str, dict[str, Any]] = {
    "pool.cap": {"max_in_use_pages": 300},
    "pool.fail_nth": {"n": 3, "every": True},
    "pool.fail_probability": {"probability": 0.3},
    "pool.refuse_large": {"min_pages": 100},
    "pool.drain": {"pages_per_step": 8, "step_ns": 100_000},
    "hypercall.partial": {"calls": ["DepositMemory", "GetVpRegisters", "SetVpRegisters", "WithdrawMemory"]},
    "hypercall.latency": {"extra_ns": 7_777},
    "hypercall.transient": {"calls": ["CreateVp"], "status": "NO_RESOURCES", "probability": 0.5},
    "host.crash": {"step": "boot.vps_created"},
    "vp.pause": {"start_ns": 2 * MS, "duration_ns": 3 * MS},
    "vp.crash": {"start_ns": 2 * MS, "vp": 1},
    "vp.slow": {"start_ns": 2 * MS, "factor": 3.0},
    "message.delay": {"extra_ns": 33_000},
    "message.reorder": {"window_ns": 500_000},
    "message.drop": {"probability": 0.2},
    "message.duplicate": {"probability": 0.2, "after_ns": 10_000},
    "synic.busy_slot": {"start_ns": 2 * MS, "end_ns": 4 * MS},
    "port.exhaust_buffers": {"buffers": 0, "start_ns": 2 * MS},
}
POOL_KINDS = sorted(k for k in FAULT_KINDS if k.startswith("pool."))
#: Kinds that act on SynIC messages: lifecycle sends none, so they never fire there.
MESSAGE_KINDS = {
    "message.delay",
    "message.reorder",
    "message.drop",
    "message.duplicate",
    "synic.busy_slot",
    "port.exhaust_buffers",
}
#: A vmbus session (a request/response every ~0.25 ms between client 2 and server 3) cut to 30 ms.
VMBUS_RUN_NS = 30 * MS
VMBUS = Scenario(
    "vmbus-30ms", "vmbus for 30 ms", lambda sim: vmbus_session(sim, VMBUS_RUN_NS, think_ns=200_000)
)


def test_the_fire_and_heal_table_covers_every_kind() -> None:
    assert set(KIND_KNOBS) == set(FAULT_KINDS)


def check_fired_and_healed(result: RunResult, plan: FaultPlan, kind: str) -> None:
    assert result.ok, describe(result)
    fired = fault_records(result, kind)
    assert fired, f"{kind} never fired"
    assert result.summary["faults"]["fired"][kind] == len(fired) == result.injector.fired[kind] > 0  # type: ignore[union-attr]
    assert (
        result.summary["faults"]["healed"] is True and result.injector is not None and result.injector.healed
    )
    start = plan.faults[0].start_ns
    assert all(start <= r["t"] < plan.heal_at_ns for r in fired)
    (healed,) = [r for r in records(result) if r["event"] == "fault.healed"]
    assert healed["t"] == min(plan.heal_at_ns, result.sim.now_ns)
    assert healed["fired"] == {kind: len(fired)}
    # Nothing is disturbed after the heal: no fault fires, no hypercall carries a fault.
    after = [r for r in records(result) if r["t"] >= plan.heal_at_ns]
    assert not [r for r in after if r["event"] == "fault"]
    assert not [r for r in after if r["event"] == "hypercall" and "fault" in r]
    # Drained pages went back; nothing is charged to the drain any more.
    assert all(p.pool.charged(DRAIN_KEY) == 0 for p in result.sim.hv.partitions.values())
    injector = result.injector
    assert all(not injector.active(i) for i in range(len(plan.faults)))


@pytest.mark.parametrize("kind", sorted(set(KIND_KNOBS) - MESSAGE_KINDS))
def test_each_kind_fires_and_heals_on_lifecycle(kind: str) -> None:
    plan = make_plan({"kind": kind, **KIND_KNOBS[kind]}, heal_at_ns=HEAL)
    result = run("lifecycle", 1, plan)
    check_fired_and_healed(result, plan, kind)
    if kind != "host.crash":
        # The run went on past the heal (teardown at ~20 ms), with hypercalls, none disturbed.
        assert result.sim.now_ns > HEAL and [r for r in calls(result) if r["t"] > HEAL]


def message_records(result: RunResult, event: str) -> list[dict[str, Any]]:
    return [r for r in records(result) if r["event"] == event]


@pytest.mark.parametrize("kind", sorted(MESSAGE_KINDS))
def test_each_message_kind_fires_and_heals_on_vmbus(kind: str) -> None:
    plan = make_plan({"kind": kind, **KIND_KNOBS[kind]}, heal_at_ns=HEAL)
    result = run(VMBUS, 1, plan)
    check_fired_and_healed(result, plan, kind)
    # Every message ended: delivered, dropped by the fault, or freed by the teardown.
    counts = result.summary["messages"]
    assert counts["posted"] == counts["delivered"] + counts["freed"] + counts["dropped"]
    assert counts["undelivered"] == 0
    # Messages posted after the heal carry no fault, and the channel still works then.
    posted = message_records(result, "message.posted")
    assert [r for r in posted if "fault" in r and r["t"] < HEAL] or kind in {
        "synic.busy_slot",
        "port.exhaust_buffers",
    }
    assert not [r for r in posted if "fault" in r and r["t"] >= HEAL]
    assert not [r for r in message_records(result, "message.dropped") if r["t"] >= HEAL]
    late = [r for r in message_records(result, "message.delivered") if r["t"] > HEAL]
    assert {(r["dst_partition"], r["port"]) for r in late} >= {(2, 1), (3, 1), (2, 2)}
    # Both sides still get requests and responses through. (After duplicates, the client -- which
    # takes one response per request -- stays behind by the extra copies, so the server may keep
    # meeting full buffers and retrying; that is the guest's protocol, not a fault still acting.)
    # (From 30 ms the children are torn down: a post to a deleted port answers INVALID_PORT_ID.)
    late_posts = [r for r in calls(result, "PostMessage") if HEAL + MS < r["t"] < VMBUS_RUN_NS]
    assert {r["caller"] for r in late_posts if r["status"] == "SUCCESS"} == {2, 3}
    assert {r["status"] for r in late_posts} <= {"SUCCESS", "INSUFFICIENT_BUFFERS"}


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_pool_kinds_fire_and_heal_on_churn(kind: str) -> None:
    """On churn, partitions are built after the heal too: their charges are never refused."""
    plan = make_plan({"kind": kind, **KIND_KNOBS[kind]}, heal_at_ns=HEAL)
    result = run("churn", 2, plan)
    check_fired_and_healed(result, plan, kind)
    late = [r for r in calls(result) if r["t"] >= HEAL and r["call"] in CHARGING_CALLS]
    assert len([r for r in late if r["status"] == "SUCCESS"]) > 20


def test_a_fault_with_its_own_end_heals_then() -> None:
    plan = make_plan({"kind": "hypercall.latency", "extra_ns": 5_000, "end_ns": 5 * MS}, heal_at_ns=40 * MS)
    result = run("lifecycle", 0, plan)
    assert result.ok, describe(result)
    faulted = [r for r in calls(result) if "fault" in r]
    assert faulted and max(r["t"] for r in faulted) < 5 * MS
    assert [r for r in calls(result) if r["t"] >= 5 * MS]


def test_a_fault_starting_after_the_heal_never_fires() -> None:
    plan = make_plan({"kind": "hypercall.latency", "start_ns": 15 * MS}, heal_at_ns=10 * MS)
    result = run("lifecycle", 0, plan)
    assert result.ok and not fault_records(result, "hypercall.latency")
    assert result.summary["faults"]["fired"] == {}


# --- faults off: byte-identical -----------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["lifecycle", "churn", "boot-storm", "recover"])
def test_faults_off_is_byte_identical(scenario: str) -> None:
    for seed in (0, 1, 7):
        plain = run_scenario(scenario, seed)
        empty = run_scenario(scenario, seed, plan=FaultPlan())
        renamed = run_scenario(scenario, seed, plan=FaultPlan(name="nothing", heal_at_ns=1))
        assert plain.sim.log.lines == empty.sim.log.lines == renamed.sim.log.lines
        assert plain.injector is None and empty.injector is None
        assert plain.summary["faults"] is None and empty.summary["faults"] is None
        assert not any('"fault' in line for line in empty.sim.log.lines)


# --- determinism --------------------------------------------------------------------------------
RICH_PLAN = make_plan(
    {"kind": "pool.fail_probability", "probability": 0.2},
    {"kind": "pool.drain", "pages_per_step": 4, "step_ns": 300_000},
    {"kind": "hypercall.partial", "calls": ["DepositMemory", "WithdrawMemory"], "max_reps": 5,
     "probability": 0.5},
    {"kind": "hypercall.latency", "probability": 0.1, "extra_ns": 50_000},
    {"kind": "hypercall.transient", "calls": ["CreateVp"], "status": "NO_RESOURCES", "probability": 0.3},
    {"kind": "host.crash", "step": "teardown.withdrew", "occurrence": 2},
    {"kind": "vp.pause", "start_ns": 3 * MS, "duration_ns": 2 * MS},
    {"kind": "vp.crash", "start_ns": 4 * MS, "vp": 1},
    {"kind": "vp.slow", "start_ns": 1 * MS, "factor": 2.0},
    heal_at_ns=30 * MS,
)  # fmt: skip


def test_a_faulted_run_is_deterministic() -> None:
    first = run_scenario("lifecycle", 3, plan=RICH_PLAN)
    second = run_scenario("lifecycle", 3, plan=RICH_PLAN)
    assert first.ok, describe(first)
    assert first.crashes == ["teardown.withdrew"]
    assert first.sim.log.lines == second.sim.log.lines
    assert len(first.summary["faults"]["fired"]) >= 7
    # A different seed is a different run under the same plan.
    assert run_scenario("lifecycle", 4, plan=RICH_PLAN).sim.log.lines != first.sim.log.lines


@pytest.mark.parametrize("seed", [5, 11, 23])
def test_swarm_runs_are_deterministic(seed: int) -> None:
    plan = swarm_plan(random.Random(f"swarm:{seed}"), name=f"swarm-{seed}")
    assert run_scenario("lifecycle", seed, plan=plan).sim.log.lines == (
        run_scenario("lifecycle", seed, plan=plan).sim.log.lines
    )


def hvsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVSIM, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def cli_swarm_plan(seed: int) -> FaultPlan:
    """The plan `hvsim run --swarm --seed SEED` draws."""
    return swarm_plan(random.Random(f"swarm:{seed}"), name=f"swarm-{seed}")


def first_swarm_seed_crashing_in_teardown() -> tuple[int, RunResult]:
    """The first seed whose swarm plan crashes the host in a lifecycle teardown, with its in-process
    run (searched, so that new fault kinds changing the draws do not void the test)."""
    for seed in range(100):
        plan = cli_swarm_plan(seed)
        crash = [f for f in plan.faults if f.kind == "host.crash" and f.step.startswith("teardown.")]
        if not crash or len(plan.faults) < 3:
            continue
        result = run_scenario("lifecycle", seed, plan=plan)
        if result.crashes:
            return seed, result
    raise AssertionError("no swarm seed in 0-99 crashes the host in a teardown")


def test_cli_swarm_writes_a_plan_that_replays_identically(tmp_path: Path) -> None:
    found, in_process = first_swarm_seed_crashing_in_teardown()
    seed = str(found)  # its plan crashes the host at a teardown step, among other faults
    first = hvsim("run", "--swarm", "--seed", seed, "--out", "a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    plan_file = tmp_path / "a" / "plan.toml"
    plan = load_plan(plan_file)
    assert plan.name == f"swarm-{seed}" and len(plan.faults) >= 3
    assert plan_file.read_text() == hvsim("faults", "swarm", "--seed", seed, cwd=tmp_path).stdout
    replay = hvsim("run", "--faults", str(plan_file), "--seed", seed, "--out", "b", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    events_a = (tmp_path / "a" / "events.jsonl").read_bytes()
    assert events_a == (tmp_path / "b" / "events.jsonl").read_bytes()
    assert b'"event":"fault"' in events_a and b'"event":"fault.healed"' in events_a
    assert b'"event":"host.crashed"' in events_a and b'"event":"host.restarted"' in events_a
    # And in-process, the same plan gives the same bytes again.
    assert plan == cli_swarm_plan(found)
    assert in_process.sim.log.lines == events_a.decode().splitlines()


def test_cli_swarm_check_determinism_in_a_fresh_process(tmp_path: Path) -> None:
    res = hvsim("run", "--swarm", "--seed", "3", "--out", "o", "--check-determinism", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "determinism: OK" in res.stdout


# --- pool faults --------------------------------------------------------------------------------
def test_pool_cap_never_lets_in_use_exceed_the_cap_while_active() -> None:
    cap = 300  # initialize (160) + 2 VPs (96) fit; a third VP (48) does not
    plan = make_plan({"kind": "pool.cap", "max_in_use_pages": cap}, heal_at_ns=HEAL)
    result = run("lifecycle", 1, plan)
    assert result.ok, describe(result)
    pools = [r for r in records(result) if r["event"] == "pool" and r["partition"] != result.sim.root_id]
    assert pools and all(r["in_use"] <= cap for r in pools if r["t"] < HEAL)
    refused = fault_records(result, "pool.cap")
    assert refused and {r["structure"] for r in refused} == {"vp:2"} | (
        {"vp:3"} & {r["structure"] for r in refused}
    )
    # After the heal the third VP gets built: the cap was what stopped it.
    assert any(r["in_use"] > cap for r in pools if r["t"] >= HEAL)
    late_vps = [r for r in calls(result, "CreateVp") if r["t"] >= HEAL]
    assert late_vps and all(r["status"] == "SUCCESS" for r in late_vps)


@pytest.mark.parametrize(("n", "every"), [(3, False), (3, True), (1, False), (4, True)])
def test_pool_fail_nth_refuses_exactly_the_nth_charge(n: int, every: bool) -> None:
    plan = make_plan({"kind": "pool.fail_nth", "n": n, "every": every})
    result = run("lifecycle", 2, plan)
    assert result.ok, describe(result)
    # Replay the charges in order: a charging call that succeeded was allowed; a fault record is a
    # refusal (the call then answers INSUFFICIENT_MEMORY). Shortage refusals never reach the seam.
    count, refused_at = 0, []
    for r in records(result):
        if r["event"] == "fault" and r["kind"] == "pool.fail_nth":
            count += 1
            refused_at.append(count)
        elif r["event"] == "hypercall" and r["call"] in CHARGING_CALLS and r["status"] == "SUCCESS":
            count += 1
    assert count > 3 * n
    assert refused_at == (list(range(n, count + 1, n)) if every else [n])


def test_pool_fail_nth_refusal_is_insufficient_memory_without_side_effect() -> None:
    sim = Simulation(0)
    faulting.install(sim, make_plan({"kind": "pool.fail_nth", "n": 2, "every": True, "target": "root"}))
    api = HostApi(sim)
    sim.run_process(api.deposit(SELF, sim.alloc_host_pages(64)))
    statuses = []
    for _ in range(6):
        before = (len(sim.hv.root.pool.available), sim.hv.root.pool.in_use, len(sim.hv.partitions))
        status, _pid = sim.run_process(api.create_partition())
        statuses.append(status)
        if status is S.INSUFFICIENT_MEMORY:
            assert (
                len(sim.hv.root.pool.available),
                sim.hv.root.pool.in_use,
                len(sim.hv.partitions),
            ) == before
    assert statuses == [S.SUCCESS, S.INSUFFICIENT_MEMORY] * 3
    sim.close()


@pytest.mark.parametrize("min_pages", [100, 160])
def test_pool_refuse_large_refuses_only_large_charges(min_pages: int) -> None:
    plan = make_plan({"kind": "pool.refuse_large", "min_pages": min_pages}, heal_at_ns=5 * MS)
    result = run("lifecycle", 0, plan)
    assert result.ok, describe(result)
    refused = fault_records(result, "pool.refuse_large")
    assert refused and all(r["pages"] >= min_pages for r in refused)
    assert {r["structure"] for r in refused} == {"init"}  # 160 pages; creation (2) and VPs (48) are small
    active = [r for r in calls(result) if r["t"] < 5 * MS and r["status"] == "SUCCESS"]
    assert [r for r in active if r["call"] == "CreatePartition"]  # small charges go through
    assert not [r for r in active if r["call"] == "InitializePartition"]
    assert [r for r in calls(result, "InitializePartition") if r["status"] == "SUCCESS"]


def test_pool_refuse_large_above_every_charge_never_fires() -> None:
    plan = make_plan({"kind": "pool.refuse_large", "min_pages": 161})
    result = run("lifecycle", 0, plan)
    assert result.ok and result.summary["faults"]["fired"] == {}
    body = [line for line in result.sim.log.lines if '"fault' not in line]
    plain = run_scenario("lifecycle", 0).sim.log.lines
    # Apart from the plan/heal records (which shift sequence numbers), the same calls in the same order.
    strip = [line.split(',"event"', 1)[1] for line in body]
    assert strip == [line.split(',"event"', 1)[1] for line in plain]


def test_pool_drain_takes_pages_only_from_active_partitions_and_gives_them_back() -> None:
    seen: dict[str, Any] = {}
    heal = 6 * MS

    def main(sim: Simulation) -> Generator[simpy.Event, Any, None]:
        host = ReferenceHost(sim)
        active = yield from host.boot(PartitionSpec(vps=1, initial_pages=400))
        # A second child stays CREATED, with free pages in its pool: never drained.
        status, created = yield from host.api.create_partition()
        if status is S.INSUFFICIENT_MEMORY:
            yield from host.deposit(SELF, 16)
            status, created = yield from host.api.create_partition()
        assert status is S.SUCCESS
        yield from host.deposit(created, 100)
        yield sim.env.timeout(4 * MS - sim.now_ns)
        pools = sim.hv.partitions
        seen["during"] = {pid: pools[pid].pool.charged(DRAIN_KEY) for pid in (active, created)}
        seen["in_use_during"] = pools[active].pool.in_use
        yield sim.env.timeout(heal + 1 - sim.now_ns)
        seen["after"] = {pid: pools[pid].pool.charged(DRAIN_KEY) for pid in (active, created)}
        seen["in_use_after"] = pools[active].pool.in_use
        seen["ids"] = (active, created)
        yield from host.reclaim_all()

    plan = make_plan(
        {"kind": "pool.drain", "pages_per_step": 10, "step_ns": 1 * MS, "max_pages": 25, "start_ns": 1 * MS},
        heal_at_ns=heal,
    )
    result = run_scenario(Scenario("drain", "", main), 0, plan=plan)
    assert result.ok, describe(result)
    active, created = seen["ids"]
    assert seen["during"] == {active: 25, created: 0}  # 10 + 10 + 5 (max_pages), by 4 ms
    assert seen["after"] == {active: 0, created: 0}
    assert seen["in_use_during"] - seen["in_use_after"] == 25
    drained = fault_records(result, "pool.drain")
    assert [(r["partition"], r["pages"]) for r in drained] == [(active, 10), (active, 10), (active, 5)]
    # The give-back is recorded: a pool record at the heal with the pages back in available.
    at_heal = [
        r for r in records(result) if r["event"] == "pool" and r["t"] == heal and r["partition"] == active
    ]
    assert at_heal and at_heal[-1]["in_use"] == seen["in_use_after"]


def test_pool_drain_records_only_active_partitions_in_a_scenario() -> None:
    plan = make_plan({"kind": "pool.drain", "pages_per_step": 16, "step_ns": 100_000})
    result = run("churn", 0, plan)
    assert result.ok, describe(result)
    state: dict[int, str | None] = {}
    drained = 0
    for r in records(result):
        if r["event"] == "partition.state":
            state[r["partition"]] = r["new"]
        elif r["event"] == "fault" and r["kind"] == "pool.drain":
            assert state.get(r["partition"]) == "ACTIVE", r
            drained += 1
    assert drained > 10


# --- hypercall faults -----------------------------------------------------------------------------
def test_hypercall_partial_returns_success_with_fewer_reps_and_continuations_complete() -> None:
    sim = Simulation(0)
    faulting.install(sim, make_plan({"kind": "hypercall.partial", "calls": ["DepositMemory"], "max_reps": 3}))
    api = HostApi(sim)
    pages = sim.alloc_host_pages(10)
    header = PARTITION_ID_INPUT.pack(PartitionIdInput(SELF))
    body = b"".join(struct.pack("<Q", p) for p in pages)
    res = sim.run_process(api.invoke(control(C.DepositMemory, rep_count=10), header + body))
    assert (res.status, res.reps_completed) == (S.SUCCESS, 3)
    res = sim.run_process(api.invoke(control(C.DepositMemory, rep_count=10, rep_start=3), header + body))
    assert (res.status, res.reps_completed) == (S.SUCCESS, 6)
    assert len(sim.hv.root.pool.available) == 6
    # The helper continues from reps completed to the end: 6 -> 9 -> 10.
    out = sim.run_process(
        api.rep(C.DepositMemory, header, [body[8 * i : 8 * i + 8] for i in range(10)], rep_start=6)
    )
    assert (out.status, out.reps_completed, out.invocations) == (S.SUCCESS, 10, 2)
    assert sorted(sim.hv.root.pool.available) == sorted(pages)
    more = sim.alloc_host_pages(20)
    outcome = sim.run_process(api.deposit(SELF, more))
    assert (outcome.status, outcome.reps_completed, outcome.invocations) == (S.SUCCESS, 20, 7)
    assert len(sim.hv.root.pool.available) == 30 and sum(sim.hv.memory.host_allocated) == 0
    sim.close()


def pool_totals(result: RunResult) -> dict[int, int]:
    most: dict[int, int] = {}
    for r in records(result):
        if r["event"] == "pool" and r["partition"] != result.sim.root_id:
            most[r["partition"]] = max(most.get(r["partition"], 0), r["available"] + r["in_use"])
    return most


def test_hypercall_partial_in_a_scenario_host_deposits_and_withdraws_everything() -> None:
    max_reps = 7
    plan = make_plan(
        {"kind": "hypercall.partial", "calls": ["DepositMemory", "WithdrawMemory"], "max_reps": max_reps}
    )
    result = run("lifecycle", 1, plan)
    plain = run_scenario("lifecycle", 1)
    assert result.ok, describe(result)  # all-reclaimed and host-pages-returned included
    for call in ("DepositMemory", "WithdrawMemory"):
        cut = [r for r in calls(result, call) if "fault" in r]
        assert len(calls(result, call)) > 3 * len(calls(plain, call))
        # Cut short: SUCCESS with fewer reps than asked (a withdraw may also run dry within the cap).
        assert [r for r in cut if r["status"] == "SUCCESS" and r["reps"] > 0]
        assert {r["status"] for r in cut} <= {"SUCCESS", "NO_RESOURCES"}
    assert all(r["status"] == "SUCCESS" for r in calls(result, "DepositMemory") if "fault" in r)
    # Deposits of 256 pages went in 7 at a time: absolute reps completed are multiples of 7.
    assert all(r["reps"] % max_reps == 0 for r in calls(result, "DepositMemory") if "fault" in r)
    # Every partition ended up with exactly the memory it had without the fault.
    assert pool_totals(result) == pool_totals(plain)


def test_hypercall_latency_adds_exactly_extra_ns() -> None:
    extra = 12_345
    base = Simulation(0).config.cost(C.CreateVp).base_ns
    plan = make_plan(
        {"kind": "hypercall.latency", "calls": ["CreateVp"], "extra_ns": extra}, heal_at_ns=10 * MS
    )
    result = run("churn", 0, plan)
    assert result.ok, describe(result)
    early = [r for r in calls(result, "CreateVp") if r["t"] < 10 * MS]
    late = [r for r in calls(result, "CreateVp") if r["t"] >= 10 * MS]
    assert early and late
    assert all(r["cost_ns"] == base + extra and r["fault"] == "hypercall.latency#0" for r in early)
    assert all(r["cost_ns"] == base and "fault" not in r for r in late)
    assert len(fault_records(result, "hypercall.latency")) == len(early)
    # Other calls are untouched.
    assert not [r for r in calls(result) if "fault" in r and r["call"] != "CreateVp"]
    # The caller sees the result only after cost_ns: its next call is no earlier.
    recs = calls(result)
    for i, r in enumerate(recs):
        if "fault" in r:
            nxt = next(x for x in recs[i + 1 :] if (x["caller"], x["vp"]) == (r["caller"], r["vp"]))
            assert nxt["t"] >= r["t"] + base + extra


def test_hypercall_latency_with_caller_filter_spares_other_callers() -> None:
    plan = make_plan({"kind": "hypercall.latency", "caller": "child", "extra_ns": 1_000, "probability": 0.5})
    result = run("lifecycle", 0, plan)
    assert result.ok, describe(result)
    faulted = [r for r in calls(result) if "fault" in r]
    assert faulted and all(r["caller"] != result.sim.root_id for r in faulted)


@pytest.mark.parametrize(
    ("call", "status"),
    [("CreatePartition", S.INSUFFICIENT_MEMORY), ("CreateVp", S.NO_RESOURCES),
     ("WithdrawMemory", S.NO_RESOURCES), ("InitializePartition", S.INSUFFICIENT_MEMORY)],
)  # fmt: skip
def test_hypercall_transient_answers_the_status_with_no_side_effect(call: str, status: HvStatus) -> None:
    sim = Simulation(0)
    api = HostApi(sim)
    # Build an ACTIVE child with one VP and free pool pages before the fault starts (at 1 ms).
    sim.run_process(api.deposit(SELF, sim.alloc_host_pages(16)))
    _, pid = sim.run_process(api.create_partition())
    sim.run_process(api.deposit(pid, sim.alloc_host_pages(400)))
    _, blank = sim.run_process(api.create_partition())
    assert sim.run_process(api.initialize_partition(pid)) is S.SUCCESS
    assert sim.run_process(api.create_vp(pid, 0)) is S.SUCCESS
    injector = faulting.install(
        sim, make_plan({"kind": "hypercall.transient", "calls": [call], "status": status.name, "start_ns": 0})
    )
    assert injector is not None

    def snapshot() -> Any:
        hv = sim.hv
        return (
            sorted(hv.partitions),
            {
                p: (list(q.pool.available), q.pool.in_use, sorted(q.vps), q.state)
                for p, q in hv.partitions.items()
            },
            bytes(hv.memory.host_allocated),
            hv.memory.host_free,
        )

    before = snapshot()
    if call == "CreatePartition":
        got, _ = sim.run_process(api.create_partition())
    elif call == "CreateVp":
        got = sim.run_process(api.create_vp(pid, 1))
    elif call == "InitializePartition":
        got = sim.run_process(api.initialize_partition(blank))
    else:
        got, pages = sim.run_process(api.withdraw(pid, 8))
        assert pages == []
    assert got is status
    assert snapshot() == before
    (rec,) = [r for r in sim.log.records() if r["event"] == "hypercall" and r["call"] == call][-1:]
    assert rec["status"] == status.name and rec["fault"] == "hypercall.transient#0" and rec["reps"] == 0
    assert injector.fired["hypercall.transient"] == 1
    sim.close()


def test_hypercall_transient_in_a_scenario_every_vp_still_gets_built() -> None:
    plan = make_plan(
        {"kind": "hypercall.transient", "calls": ["CreateVp"], "status": "NO_RESOURCES", "probability": 0.6}
    )
    result = run("lifecycle", 0, plan)
    plain = run_scenario("lifecycle", 0)
    assert result.ok, describe(result)
    faulted = [r for r in calls(result, "CreateVp") if "fault" in r]
    assert faulted and all(r["status"] == "NO_RESOURCES" for r in faulted)
    created = Counter(r["event"] for r in records(result))["vp.created"]
    assert created == Counter(r["event"] for r in records(plain))["vp.created"]


def test_reference_host_survives_transient_insufficient_memory_on_set_property() -> None:
    plan = make_plan(
        {"kind": "hypercall.transient", "calls": ["SetPartitionProperty"], "status": "INSUFFICIENT_MEMORY"},
        heal_at_ns=5 * MS,
    )
    result = run("lifecycle", 0, plan)
    assert result.ok, describe(result)


# --- host crashes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("step", HOST_STEPS)
def test_host_crash_at_each_step_is_recovered(step: str) -> None:
    # Only a recovering host reclaims: the recover scenario reaches "reclaim" without a crash.
    scenario = "recover" if step == "reclaim" else "lifecycle"
    plan = make_plan({"kind": "host.crash", "step": step, "restart_after_ns": 500_000})
    result = run(scenario, 0, plan)
    assert result.ok, describe(result)
    assert result.crashes == [step]
    assert result.summary["faults"]["host_crashes"] == [step]
    recs = records(result)
    (crashed,) = [r for r in recs if r["event"] == "host.crashed"]
    (restarted,) = [r for r in recs if r["event"] == "host.restarted"]
    assert crashed["step"] == step and restarted["after_step"] == step
    assert restarted["t"] == crashed["t"] + 500_000 and restarted["seq"] > crashed["seq"]
    (fired,) = fault_records(result, "host.crash")
    assert fired["step"] == step and fired["t"] == crashed["t"]
    reclaims = [r for r in recs if r["event"] == "host.reclaim" and r["seq"] > restarted["seq"]]
    assert reclaims, "the restarted host did not reclaim"
    # Everything was reclaimed: no child left, every page back with the host.
    hv = result.sim.hv
    assert hv.root.children == [] and list(hv.partitions) == [hv.root.id]
    assert sum(hv.memory.host_allocated) == 0
    assert result.summary["checkers"]["all-reclaimed"]["ok"]
    assert result.summary["checkers"]["host-pages-returned"]["ok"]


def test_host_crash_occurrence_counts_visits_of_the_step() -> None:
    plan = make_plan({"kind": "host.crash", "step": "teardown.begin", "occurrence": 3, "restart_after_ns": 0})
    result = run("churn", 0, plan)
    assert result.ok, describe(result)
    assert result.crashes == ["teardown.begin"]
    begins = [r for r in records(result) if r["event"] == "host.teardown.begin"]
    (crashed,) = [r for r in records(result) if r["event"] == "host.crashed"]
    assert [r["t"] for r in begins].index(crashed["t"]) == 2  # the third visit


def test_host_crash_after_heal_does_not_happen() -> None:
    plan = make_plan({"kind": "host.crash", "step": "teardown.begin"}, heal_at_ns=10 * MS)
    result = run("lifecycle", 0, plan)  # teardown begins at ~20 ms
    assert result.ok and result.crashes == [] and not fault_records(result, "host.crash")


# --- VP faults --------------------------------------------------------------------------------------
def test_vp_pause_stops_the_vp_for_exactly_the_duration() -> None:
    plan = make_plan({"kind": "vp.pause", "start_ns": 2 * MS, "duration_ns": 1_500_000}, heal_at_ns=6 * MS)
    result = run_scenario(one_vp_scenario(TICKER, 8 * MS), 0, plan=plan)
    assert result.ok, describe(result)
    t = ticks(result)
    assert not [x for x in t if 2 * MS < x < 3_500_000]
    assert 3_500_000 in t  # the op due during the pause runs the instant it ends
    gaps = {b - a for a, b in itertools.pairwise(t)}
    assert gaps == {TICK_NS, 3_500_000 - max(x for x in t if x <= 2 * MS)}
    (fired,) = fault_records(result, "vp.pause")
    assert (fired["partition"], fired["vp"], fired["duration_ns"]) == (2, 0, 1_500_000)


def test_vp_pause_ends_at_the_heal() -> None:
    plan = make_plan({"kind": "vp.pause", "start_ns": 2 * MS, "duration_ns": 50 * MS}, heal_at_ns=3 * MS)
    result = run_scenario(one_vp_scenario(TICKER, 8 * MS), 0, plan=plan)
    assert result.ok, describe(result)
    t = ticks(result)
    assert not [x for x in t if 2 * MS < x < 3 * MS] and 3 * MS in t
    assert [x for x in t if x > 3 * MS]


def test_vp_pause_in_lifecycle_silences_only_the_paused_vps() -> None:
    start, duration = 5 * MS, 3 * MS
    plan = make_plan(
        {"kind": "vp.pause", "start_ns": start, "duration_ns": duration, "vp": 1}, heal_at_ns=HEAL
    )
    result = run("lifecycle", 1, plan)
    assert result.ok, describe(result)
    paused = {(r["partition"], r["vp"]) for r in fault_records(result, "vp.pause")}
    assert paused and all(vp == 1 for _, vp in paused)
    window = [r for r in calls(result) if start < r["t"] < start + duration]
    assert not [r for r in window if (r["caller"], r["vp"]) in paused]
    assert [r for r in window if r["caller"] != result.sim.root_id]  # the others keep running
    after = [r for r in calls(result) if start + duration <= r["t"] < HEAL]
    assert paused <= {(r["caller"], r["vp"]) for r in after}


PAUSE_BUG = (
    "BUG actors/vp.py VpActor._execute: after waiting out a Pause the VP executes its next op without "
    "re-checking `runnable` / `actor_stopped`, so a VP suspended (or deleted) during a vp.pause runs once "
    "more"
)


def test_a_vp_suspended_during_a_pause_stays_suspended() -> None:
    marks: dict[str, int] = {}

    def suspend(sim: Simulation, host: ReferenceHost, pid: int) -> Generator[simpy.Event, Any, None]:
        yield sim.env.timeout(1_500_000 - sim.now_ns)  # the pause (1 .. 3 ms) is in progress
        yield from host.stop_vps(pid, 1)  # ExplicitSuspend = 1
        marks["suspended"] = sim.now_ns
        yield sim.env.timeout(5 * MS - sim.now_ns)
        marks["resume"] = sim.now_ns

    plan = make_plan({"kind": "vp.pause", "start_ns": 1 * MS, "duration_ns": 2 * MS}, heal_at_ns=10 * MS)
    result = run_scenario(one_vp_scenario(TICKER, 6 * MS, suspend), 0, plan=plan)
    assert result.ok, describe(result)
    ran = [t for t in ticks(result) if marks["suspended"] < t < marks["resume"]]
    assert ran == [], f"the suspended VP executed hypercalls at {ran}"


def test_a_vp_deleted_during_a_pause_executes_nothing() -> None:
    plan = make_plan({"kind": "vp.pause", "start_ns": 19_900_000, "duration_ns": 1 * MS})
    result = run("churn", 0, plan)
    assert result.error is None, result.error  # before c429d5f: "ValueError: no VP 0 in partition 31 ..."
    paused = fault_records(result, "vp.pause")[0]  # the first partition it reached
    deleted = next(
        r["t"] for r in records(result)
        if r["event"] == "partition.state" and r["partition"] == paused["partition"] and r["new"] is None
    )  # fmt: skip
    assert deleted < paused["t"] + paused["duration_ns"]  # the partition went away during the pause
    orphaned = [r for r in records(result) if r["event"] == "hypercall.orphaned"]
    assert orphaned == [], f"a deleted VP executed a hypercall: {orphaned}"


def test_vp_crash_writes_the_crash_registers_the_host_can_read() -> None:
    seen: dict[str, Any] = {}
    names = [R.GuestCrashCtl, R.GuestCrashP0, R.GuestCrashP1]

    def probe(sim: Simulation, host: ReferenceHost, pid: int) -> Generator[simpy.Event, Any, None]:
        seen["before"] = yield from host.api.get_registers(pid, 1, names)
        yield sim.env.timeout(3 * MS - sim.now_ns)
        seen["crashed"] = yield from host.api.get_registers(pid, 1, names)
        seen["other"] = yield from host.api.get_registers(pid, 0, names)

    plan = make_plan({"kind": "vp.crash", "start_ns": 2 * MS, "vp": 1}, heal_at_ns=HEAL)
    result = run_scenario(one_vp_scenario(TICKER, 5 * MS, probe, vps=2), 0, plan=plan)
    assert result.ok, describe(result)
    assert seen["before"] == (S.SUCCESS, [0, 0, 0])
    status, (ctl, p0, p1) = seen["crashed"]
    assert status is S.SUCCESS and ctl & CRASH_NOTIFY and ctl >> 63 == 1
    assert (p0, p1) == (0xDEAD, 1)  # the crash code and the VP index
    assert seen["other"] == (S.SUCCESS, [0, 0, 0])
    (fired,) = fault_records(result, "vp.crash")
    assert (fired["partition"], fired["vp"]) == (2, 1)
    # The crashed VP's last act is the SetVpRegisters of its bugcheck; then it executes nothing.
    own = [r for r in calls(result) if (r["caller"], r["vp"]) == (2, 1)]
    last = own[-1]
    assert (last["call"], last["reps"], last["status"]) == ("SetVpRegisters", 3, "SUCCESS")
    assert last["t"] <= 2 * MS + TICK_NS
    # ...while VP 0 keeps running.
    assert [t for t in ticks(result, 2, 0) if t > 3 * MS]


def test_vp_crash_in_lifecycle_only_the_crashed_vps_stop() -> None:
    plan = make_plan({"kind": "vp.crash", "start_ns": 2 * MS, "vp": 0}, heal_at_ns=HEAL)
    result = run("lifecycle", 0, plan)
    assert result.ok, describe(result)  # vps-run excuses crashed VPs
    crashed = {(r["partition"], r["vp"]) for r in fault_records(result, "vp.crash")}
    assert len(crashed) >= 3
    later = {(r["caller"], r["vp"]) for r in calls(result) if 3 * MS < r["t"] < 19 * MS}
    assert not crashed & later
    assert later - {(result.sim.root_id, v) for v in range(8)}


def test_vp_slow_stretches_compute_by_the_factor_until_the_heal() -> None:
    plan = make_plan({"kind": "vp.slow", "start_ns": 2 * MS, "factor": 4.0}, heal_at_ns=5 * MS)
    result = run_scenario(one_vp_scenario(TICKER, 8 * MS), 0, plan=plan)
    assert result.ok, describe(result)
    t = ticks(result)
    gaps = [(a, b - a) for a, b in itertools.pairwise(t)]
    slow = [a for a, gap in gaps if gap != TICK_NS]
    assert {gap for _, gap in gaps} == {TICK_NS, 400_000 + 300}
    # Every compute that started inside [2 ms, 5 ms) took four times as long; none outside did.
    assert slow and min(slow) >= 2 * MS and max(slow) < 5 * MS
    assert [a for a, gap in gaps if a > 5 * MS + 400_300] and all(
        gap == TICK_NS for a, gap in gaps if a > 5_500_000
    )


def test_vp_slow_in_lifecycle_slows_guest_activity() -> None:
    plan = make_plan({"kind": "vp.slow", "start_ns": 2 * MS, "factor": 10.0}, heal_at_ns=HEAL)
    result = run("lifecycle", 0, plan)
    plain = run_scenario("lifecycle", 0)
    assert result.ok, describe(result)

    def guest_calls(r: RunResult, lo: int, hi: int) -> int:
        return len([x for x in calls(r) if x["caller"] != r.sim.root_id and lo <= x["t"] < hi])

    assert guest_calls(result, 3 * MS, 9 * MS) * 5 < guest_calls(plain, 3 * MS, 9 * MS)
    assert guest_calls(result, 12 * MS, 19 * MS) > 0.8 * guest_calls(plain, 12 * MS, 19 * MS)


def test_vp_slow_heal_does_not_cause_a_false_liveness_violation() -> None:
    plan = make_plan({"kind": "vp.slow", "start_ns": 1 * MS, "factor": 50.0}, heal_at_ns=10 * MS)
    result = run("lifecycle", 0, plan)
    assert result.ok, describe(result)


def test_injector_is_the_hypervisor_seam_and_heal_all_is_idempotent() -> None:
    sim = Simulation(0)
    injector = faulting.install(sim, make_plan({"kind": "pool.fail_probability", "probability": 1.0}))
    assert isinstance(injector, FaultInjector) and sim.hv.interposer is injector
    assert injector.allow_charge(sim.root_id, "x", 1) is False
    injector.heal_all()
    assert injector.allow_charge(sim.root_id, "x", 1) is True
    assert injector.on_hypercall(sim.root_id, 0, int(C.CreatePartition), 0, 0) is None
    injector.heal_all()
    assert [r["event"] for r in sim.log.records()].count("fault.healed") == 1
    assert faulting.install(Simulation(0), FaultPlan()) is None
    sim.close()


def test_the_readme_example_plan_is_survived() -> None:
    """The README's example plan, on churn (its crash is at a teardown before heal_at_ns = 15 ms; on
    lifecycle, whose teardowns start at ~20 ms, the host.crash of that example never fires)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (text,) = [b.split("```", 1)[0] for b in readme.split("```toml\n")[1:] if "[[fault]]" in b][:1]
    plan = parse_plan(text, "README.md")
    for seed in (0, 1):
        result = run_scenario("churn", seed, plan=plan)
        assert result.ok, describe(result)
        assert result.crashes == ["teardown.withdrew"]
        assert run_scenario("lifecycle", seed, plan=plan).ok


def test_closing_a_run_logs_no_unhandled_actor_exception(caplog: pytest.LogCaptureFixture) -> None:
    """Regression (fixed in ff302e1): Simulation.close() stopped actors outside the runtime, and pykka
    logged RuntimeError('no active hvsim runtime') from PartitionActor.on_stop on every run."""
    with caplog.at_level(logging.ERROR):
        sim = Simulation(0)
        sim.run(1)
        sim.close()
        run_scenario("lifecycle", 0, plan=make_plan({"kind": "host.crash", "step": "boot.end"}))
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
