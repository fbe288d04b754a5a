"""Built-in scenarios run clean for several seeds, and the reference host does what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hvsim.actors.hvdef import HvStatus, RegisterName
from hvsim.scenarios import HostApi, Simulation
from hvsim.scenarios.host import HostError, PartitionSpec, ReferenceHost
from hvsim.scenarios.library import SCENARIOS, Scenario
from hvsim.scenarios.messaging import doorbell_session, vmbus_session
from hvsim.scenarios.runner import run_scenario
from hvsim.scenarios.workload import guest_os

R = RegisterName


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("seed", [0, 11])
def test_builtin_scenario_passes_every_checker(name: str, seed: int) -> None:
    result = run_scenario(name, seed)
    assert result.error is None
    assert result.violations == []
    summary = result.summary
    assert summary["ok"] and all(c["ok"] for c in summary["checkers"].values())
    assert summary["partitions"]["live"] == []
    if name == "vmbus":
        assert summary["sim_time_ns"] >= 60_000_000_000  # a simulated minute
    assert (
        summary["host_memory"]["in_pools"]
        == summary["pools"][str(result.sim.root_id)]["available"]
        + summary["pools"][str(result.sim.root_id)]["in_use"]
    )


def test_default_scenario_exercises_the_memory_protocols() -> None:
    calls = run_scenario("lifecycle", 0).summary["hypercalls"]["by_call"]
    assert calls["CreatePartition"]["INSUFFICIENT_MEMORY"] >= 1  # root pool starts empty
    assert calls["WithdrawMemory"]["NO_RESOURCES"] >= 3  # every teardown drains to the end
    assert calls["StartVirtualProcessor"]["SUCCESS"] >= 3  # guests start their APs
    assert calls["GetVpRegisters"]["SUCCESS"] > 100  # guests run


def test_tight_memory_host_builds_everything_through_retries() -> None:
    calls = run_scenario("tight-memory", 0).summary["hypercalls"]["by_call"]
    assert calls["InitializePartition"]["INSUFFICIENT_MEMORY"] > 100
    assert calls["CreateVp"]["INSUFFICIENT_MEMORY"] > 100


def _booted(vps: int = 3) -> tuple[Simulation, ReferenceHost, int]:
    sim = Simulation(seed=1)
    host = ReferenceHost(sim)
    pid = sim.run_process(host.boot(PartitionSpec(vps=vps)))
    return sim, host, pid


def test_booted_guest_starts_its_aps_and_runs() -> None:
    sim, _host, pid = _booted(vps=3)
    sim.run(sim.now_ns + 5_000_000)
    vps = sim.hv.partitions[pid].vps
    assert all(vp.started and vp.runnable for vp in vps.values())
    api = HostApi(sim)
    status, values = sim.run_process(api.get_registers(pid, 2, [R.VpRuntime, R.InternalActivityState]))
    assert status is HvStatus.SUCCESS
    assert values[0] > 0 and values[1] == 0  # AP 2 has run; no longer waiting for startup
    started = [r for r in sim.log.records() if r["event"] == "vp.started" and r["partition"] == pid]
    assert sorted(r["vp"] for r in started) == [1, 2]


def test_explicit_suspend_stops_guest_hypercalls() -> None:
    sim, host, pid = _booted(vps=1)
    sim.run(sim.now_ns + 2_000_000)
    sim.run_process(host.stop_vps(pid, 1))
    before = sum(n for (code, _), n in sim.hv.call_counts.items() if code != 0x51)
    sim.run(sim.now_ns + 5_000_000)
    after = sum(n for (code, _), n in sim.hv.call_counts.items() if code != 0x51)
    assert after - before <= 1  # at most the call already in flight
    _, values = sim.run_process(HostApi(sim).get_registers(pid, 0, [R.VpRuntime]))
    runtime_then = values[0]
    sim.run(sim.now_ns + 1_000_000)
    assert sim.run_process(HostApi(sim).get_registers(pid, 0, [R.VpRuntime]))[1][0] == runtime_then


def test_a_host_that_forgets_to_withdraw_is_stopped_by_delete() -> None:
    class Forgetful(ReferenceHost):
        def drain(self, partition_id: int):  # type: ignore[no-untyped-def]
            return 0
            yield

    sim = Simulation(seed=2)
    host = Forgetful(sim)
    pid = sim.run_process(host.boot(PartitionSpec(vps=1)))
    with pytest.raises(HostError, match=r"DeletePartition.*OPERATION_DENIED"):
        sim.run_process(host.teardown(pid))


def test_restarted_host_rediscovers_children_in_every_state() -> None:
    sim = Simulation(seed=4)
    host = ReferenceHost(sim)
    api = HostApi(sim)
    active = sim.run_process(host.boot(PartitionSpec(vps=2)))
    finalized = sim.run_process(host.boot(PartitionSpec(vps=1)))
    assert sim.run_process(api.finalize_partition(finalized)) is HvStatus.SUCCESS
    _, created = sim.run_process(host.with_memory(api.create_partition, 0xFFFF_FFFF_FFFF_FFFF, "create"))
    restarted = ReferenceHost(sim, vp=1)
    assert sim.run_process(restarted.reclaim_all()) == [active, finalized, created]
    assert sim.hv.root.children == []
    assert sum(p.pool.total for p in sim.hv.partitions.values() if not p.is_root) == 0


def test_guest_programs_are_a_function_of_the_seed() -> None:
    a = Simulation(seed=9).rng("workload", 2, 0)
    b = Simulation(seed=9).rng("workload", 2, 0)
    assert guest_os(a, 0, 2) == guest_os(b, 0, 2)
    assert guest_os(Simulation(seed=10).rng("workload", 2, 0), 0, 2) != guest_os(
        Simulation(seed=9).rng("workload", 2, 0), 0, 2
    )


def test_close_stops_every_actor_cleanly() -> None:
    sim, _host, _pid = _booted(vps=2)
    sim.run(sim.now_ns + 1_000_000)
    sim.close()
    assert sim.runtime.failures == []
    assert sim.vp_actors() == []


# --- messaging scenarios ------------------------------------------------------------------------------
MS = 1_000_000
HVSIM = [sys.executable, "-m", "hvsim.scenarios.cli"]
SHORT_VMBUS = Scenario(
    "vmbus-30ms", "vmbus for 30 ms", lambda sim: vmbus_session(sim, 30 * MS, think_ns=200_000)
)
SHORT_DOORBELL = Scenario("doorbell-30ms", "doorbell for 30 ms", lambda sim: doorbell_session(sim, 30 * MS))


def messages_balance(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's messages section: every post ended (delivered, freed or dropped) or is still held."""
    counts = summary["messages"]
    assert (
        counts["posted"] == counts["delivered"] + counts["freed"] + counts["dropped"] + counts["undelivered"]
    )
    ok = {call: per.get("SUCCESS", 0) for call, per in counts["attempts"].items()}
    assert counts["refused"] == sum(n for per in counts["attempts"].values() for n in per.values()) - sum(
        ok.values()
    )
    return counts


@pytest.mark.parametrize("seed", [0, 11])
def test_short_vmbus_session_round_trips_every_request(seed: int) -> None:
    result = run_scenario(SHORT_VMBUS, seed)
    assert result.ok, (result.error, result.violations)
    c = result.summary["counters"]
    assert set(c) == {
        "requests_sent",
        "requests_served",
        "responses_received",
        "completions_seen",
        "client_timeouts",
    }
    assert c["responses_received"] > 50 and c["client_timeouts"] == 0
    assert round_trips_balance(c)
    counts = messages_balance(result.summary)
    # Nothing lost, nothing left: the two offers, then a request, a response and a completion each.
    assert counts["dropped"] == counts["duplicates"] == counts["undelivered"] == 0
    assert counts["attempts"]["PostMessageDirect"] == {"SUCCESS": 2}
    posts, signals = counts["attempts"]["PostMessage"], counts["attempts"]["SignalEvent"]
    assert counts["posted"] == counts["delivered"] == 2 + posts["SUCCESS"] + signals["SUCCESS"]
    sent, answered = c["requests_sent"], c["responses_received"]
    assert sent + answered <= posts["SUCCESS"] <= sent + answered + 1
    assert c["completions_seen"] <= signals["SUCCESS"] <= c["completions_seen"] + 1
    # The only refusal: the server answering a last request after the client's ports were deleted.
    for per in (posts, signals):
        assert set(per) <= {"SUCCESS", "INVALID_PORT_ID"} and per.get("INVALID_PORT_ID", 0) <= 1


def round_trips_balance(c: dict[str, int]) -> bool:
    """Every request sent was served and answered, and every answer's completion seen. The session
    reads its counters while the guests still run, so one exchange may be under way then (sent but
    not yet served, or completed but the response not yet taken): the counts may trail by one."""
    sent, served, answered, seen = (
        c["requests_sent"],
        c["requests_served"],
        c["responses_received"],
        c["completions_seen"],
    )
    return sent - 1 <= answered <= served <= sent and answered <= seen <= answered + 1


@pytest.mark.parametrize("seed", [0, 11])
def test_short_doorbell_session_answers_every_notification(seed: int) -> None:
    result = run_scenario(SHORT_DOORBELL, seed)
    assert result.ok, (result.error, result.violations)
    c = result.summary["counters"]
    assert set(c) == {
        "doorbell_writes",
        "notifications",
        "completions_signaled",
        "doorbells_rung",
        "doorbells_coalesced",
        "doorbells_lost",
    }
    assert c["notifications"] == c["completions_signaled"] > 50
    assert c["doorbells_rung"] + c["doorbells_coalesced"] + c["doorbells_lost"] <= c["doorbell_writes"]
    assert c["notifications"] <= c["doorbells_rung"]
    counts = messages_balance(result.summary)
    assert counts["dropped"] == counts["duplicates"] == counts["undelivered"] == 0
    # Each ring is one doorbell message to the host; each completion one event signal to the guest.
    assert counts["attempts"] == {"SignalEvent": {"SUCCESS": c["completions_signaled"]}}
    assert counts["posted"] == c["doorbells_rung"] + c["completions_signaled"]


def test_every_doorbell_guest_vp_rings() -> None:
    result = run_scenario(SHORT_DOORBELL, 0)
    assert result.ok
    rang = {r["src_vp"] for r in result.records if r["event"] == "message.posted" and r["kind"] == "doorbell"}
    assert rang == {0, 1}


def test_hvsim_list_names_the_messaging_scenarios(tmp_path: Path) -> None:
    res = subprocess.run([*HVSIM, "list"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    listed = {line.split()[0]: line for line in res.stdout.splitlines() if line.strip()}
    assert {"vmbus", "doorbell"} <= set(listed)
    assert SCENARIOS["vmbus"].description in listed["vmbus"]
    assert SCENARIOS["doorbell"].description in listed["doorbell"]


@pytest.mark.slow
def test_builtin_vmbus_simulates_a_minute(request: pytest.FixtureRequest) -> None:
    """The full built-in session (about 5 s of wall time; select with ``-m slow``)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: select with -m slow")
    result = run_scenario("vmbus", 0)
    assert result.ok, (result.error, result.violations)
    assert result.summary["sim_time_ns"] >= 60_000 * MS
    c = result.summary["counters"]
    assert c["responses_received"] > 10_000 and c["client_timeouts"] == 0
    assert round_trips_balance(c)
    messages_balance(result.summary)
