"""A child given CreatePartitions as a virtualization host of its own (HYPERCALLS.md 4.1, 4.10-4.11):
its own children, deposits of its own RAM, withdrawals back into its GPA space, depth limits."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from hvsim.actors.config import HvConfig
from hvsim.actors.hvdef import HvStatus, MapGpaFlags, PartitionPrivilege
from hvsim.scenarios import HostApi, Simulation
from hvsim.scenarios.checkers import check_state
from hvsim.scenarios.host import GUEST_PRIVILEGES, PartitionSpec, ReferenceHost

S = HvStatus
F = MapGpaFlags
RAM = 600
HOST_PRIVILEGES = GUEST_PRIVILEGES | PartitionPrivilege.CreatePartitions | PartitionPrivilege.AccessMemoryPool


class Nested:
    """Root -> child L1 (a host: CreatePartitions, AccessMemoryPool, RAM mapped at GPA 0) ."""

    def __init__(self, max_depth: int = 3) -> None:
        self.sim = Simulation(0, config=HvConfig(max_depth=max_depth))
        self.host = ReferenceHost(self.sim)

        def prepare(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
            self.ram = self.sim.alloc_host_pages(RAM)
            out = yield from host.api.map_gpa_pages(pid, 0, self.ram, F.READABLE | F.WRITABLE)
            assert out.status is S.SUCCESS

        spec = PartitionSpec(vps=1, privileges=HOST_PRIVILEGES, prepare=prepare)
        self.l1 = self.sim.run_process(self.host.boot(spec))
        self.api = HostApi(self.sim, caller=self.l1)

    def run(self, gen: Generator[Any, Any, Any]) -> Any:
        return self.sim.run_process(gen)

    def grandchild(self, pages: list[int]) -> int:
        status, l2 = self.run(self.api.create_partition())
        assert status is S.SUCCESS
        assert self.run(self.api.deposit(l2, pages)).status is S.SUCCESS
        assert self.run(self.api.initialize_partition(l2)) is S.SUCCESS
        return int(l2)


def test_the_default_depth_limit_refuses_a_grandchild() -> None:
    world = Nested(max_depth=2)
    status, _ = world.run(world.api.create_partition())
    assert status is S.PARTITION_TOO_DEEP


def test_a_nested_host_builds_runs_and_reclaims_a_grandchild() -> None:
    world = Nested()
    gpa_pages = list(range(100, 400))
    l2 = world.grandchild(gpa_pages)
    assert world.run(world.api.create_vp(l2, 0)) is S.SUCCESS
    hv = world.sim.hv
    # Deposited RAM left L1's GPA space and sits in L2's pool, page by page.
    l1 = hv.partitions[world.l1]
    assert all(page not in l1.gpa for page in gpa_pages)
    pool = hv.partitions[l2].pool
    held = [page for pages in pool.charges.values() for page in pages]
    assert sorted(pool.available + held) == sorted(world.ram[p] for p in gpa_pages)
    assert check_state(hv) == []
    # The root cannot manage its grandchild.
    assert world.run(HostApi(world.sim).finalize_partition(l2)) is S.ACCESS_DENIED
    assert world.run(world.api.finalize_partition(l2)) is S.SUCCESS
    back: list[int] = []
    while True:
        status, pages = world.run(world.api.withdraw(l2))
        back += pages
        if status is not S.SUCCESS:
            break
    # Withdrawn pages come back as the same GPA pages of L1, mapped as before.
    assert sorted(back) == gpa_pages
    assert all(
        l1.gpa[p].spa == world.ram[p] and l1.gpa[p].flags == F.READABLE | F.WRITABLE for p in gpa_pages
    )
    assert world.run(world.api.delete_partition(l2)) is S.SUCCESS
    assert check_state(hv) == []


@pytest.mark.parametrize(
    ("what", "expected"),
    [("unmapped", S.OPERATION_DENIED), ("read-only", S.OPERATION_DENIED), ("shared", S.OPERATION_DENIED)],
)
def test_a_nested_host_deposits_only_its_own_private_writable_ram(what: str, expected: HvStatus) -> None:
    world = Nested()
    l2 = world.grandchild(list(range(100, 300)))
    root = HostApi(world.sim)
    if what == "unmapped":
        page = RAM + 5  # beyond L1's RAM
    elif what == "read-only":
        page = 20
        world.run(root.map_gpa_pages(world.l1, page, [world.ram[page]], F.READABLE))
    else:
        page = 30  # also mapped at a second GPA page: shared memory, not L1's alone
        world.run(root.map_gpa_pages(world.l1, RAM + 50, [world.ram[page]], F.READABLE | F.WRITABLE))
    out = world.run(world.api.deposit(l2, [page]))
    assert (out.status, out.reps_completed) == (expected, 0)
    assert check_state(world.sim.hv) == []


def test_a_nested_host_pays_for_its_children_from_its_own_pool() -> None:
    world = Nested()
    root = HostApi(world.sim)  # L1's parent sees L1's pool
    before = world.run(root.balance(world.l1))[1]
    status, _ = world.run(world.api.create_partition())
    assert status is S.SUCCESS
    after = world.run(root.balance(world.l1))[1]
    assert after.pages_in_use == before.pages_in_use + world.sim.config.page_costs.create_partition
