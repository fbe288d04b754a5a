"""The checkers catch the corruptions they exist for (a checker that cannot fail proves nothing)."""

from __future__ import annotations

from hvsim.scenarios import checkers
from hvsim.scenarios.host import PartitionSpec, ReferenceHost
from hvsim.scenarios.simulation import Simulation


def _world() -> tuple[Simulation, int]:
    sim = Simulation(seed=0)
    pid = sim.run_process(ReferenceHost(sim).boot(PartitionSpec(vps=2, initial_pages=400)))
    assert checkers.check_state(sim.hv) == []
    return sim, pid


def test_page_in_two_pools_is_caught() -> None:
    sim, pid = _world()
    page = sim.hv.partitions[pid].pool.available[0]
    sim.hv.root.pool.available.append(page)
    found = checkers.page_conservation(sim.hv)
    assert any(f"page {page} is in" in v.message for v in found)


def test_page_leaked_out_of_a_pool_is_caught() -> None:
    sim, pid = _world()
    sim.hv.partitions[pid].pool.available.pop()  # the page vanishes: still marked pool-owned
    assert any("marked pool-owned" in v.message for v in checkers.page_conservation(sim.hv))


def test_page_returned_to_host_while_still_in_a_pool_is_caught() -> None:
    sim, pid = _world()
    page = sim.hv.partitions[pid].pool.available[-1]
    sim.hv.memory.owner[page] = 0
    assert any("owner is 0" in v.message for v in checkers.page_conservation(sim.hv))


def test_in_use_count_that_disagrees_with_charges_is_caught() -> None:
    sim, pid = _world()
    sim.hv.partitions[pid].pool.in_use += 1
    assert [v.checker for v in checkers.pool_balances(sim.hv)] == ["pool-balance"]


def test_illegal_transition_in_the_log_is_caught() -> None:
    records = [
        {"t": 0, "seq": 0, "event": "partition.state", "partition": 2, "old": None, "new": "CREATED"},
        {"t": 5, "seq": 1, "event": "partition.state", "partition": 2, "old": "CREATED", "new": "FINALIZED"},
    ]
    (v,) = checkers.state_transitions(records)
    assert v.seq == 1 and v.t_ns == 5 and "CREATED -> FINALIZED" in v.message


def test_leftover_child_fails_the_liveness_check() -> None:
    sim, pid = _world()
    (v,) = [v for v in checkers.all_reclaimed(sim.hv) if "children" in v.message]
    assert v.objects == {"children": [pid]}


def test_use_of_a_deleted_partition_is_caught() -> None:
    records = [
        {"t": 0, "seq": 0, "event": "partition.state", "partition": 2, "old": None, "new": "CREATED"},
        {"t": 1, "seq": 1, "event": "partition.state", "partition": 2, "old": "CREATED", "new": None},
        {"t": 2, "seq": 2, "event": "pool", "partition": 2, "available": 1, "in_use": 0},
    ]
    (v,) = checkers.no_use_after_delete(records)
    assert v.seq == 2 and "after its deletion" in v.message
    assert checkers.no_use_after_delete(records[:2]) == []
