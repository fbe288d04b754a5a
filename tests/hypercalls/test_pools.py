"""HYPERCALLS.md 7.4: memory pools (cases 53-67).

Cases 57, 58, 60 and 67 meet GPA mapping (MapGpaPages, guest memory contents); the mapping calls
themselves are tested in test_gpa.py.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    MAP_GPA_PAGES_HEADER,
    HvStatus,
    HypercallCode,
    MapGpaFlags,
    MapGpaPagesHeader,
    PartitionPrivilege,
    RegisterName,
    control,
    proximity_info,
)
from hvsim.actors.hypercall import HypercallResult
from hvsim.scenarios.checkers import gpa_mappings

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF
RW = MapGpaFlags.READABLE | MapGpaFlags.WRITABLE


def returned_pages(res: HypercallResult) -> list[int]:
    """The GPA page numbers a WithdrawMemory wrote: only [rep start, reps completed) is defined."""
    return [p for (p,) in struct.iter_unpack("<Q", res.output[: 8 * res.reps_completed])]


def map_gpa(
    world: World, partition_id: int, base: int, sources: list[int], *, rep_start: int = 0
) -> HypercallResult:
    """One MapGpaPages invocation (read/write), no continuation."""
    header = MAP_GPA_PAGES_HEADER.pack(MapGpaPagesHeader(partition_id, base, RW, 0))
    ctl = control(C.MapGpaPages, rep_count=len(sources), rep_start=rep_start)
    return world.call(ctl, header + world.u64s(sources))


# --- DepositMemory -----------------------------------------------------------------------------
def test_7_4_53_deposit_without_access_memory_pool_is_access_denied(
    world: World, child: int, unrelated: int
) -> None:
    before = world.balance(child)
    res = world.deposit(child, [1, 2], caller=unrelated)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)
    assert world.balance(child) == before


def test_7_4_53_deposit_into_another_partitions_child_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    res = world.deposit(child, [1], caller=intruder)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)


def test_7_4_53_child_cannot_deposit_into_itself(world: World) -> None:
    pool_user = int(world.sim.config.child_default_privileges | PP.AccessMemoryPool)
    c = world.active_child(privileges=pool_user)
    res = world.deposit(SELF, [1], caller=c)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)


def test_7_4_54_deposit_adds_to_the_available_balance(world: World, created: int) -> None:
    pages = world.host_pages(4)
    res = world.deposit(created, pages)
    assert (res.status, res.reps_completed) == (S.SUCCESS, 4)
    assert world.balance(created) == (4, 0)


def test_7_4_54_deposit_into_an_active_child(world: World, child: int) -> None:
    before = world.balance(child)
    res = world.deposit(child, world.host_pages(4))
    assert (res.status, res.reps_completed) == (S.SUCCESS, 4)
    assert world.balance(child) == (before.pages_available + 4, before.pages_in_use)


def test_7_4_54_root_deposits_into_itself(bare: World) -> None:
    res = bare.deposit(SELF, bare.host_pages(4))
    assert (res.status, res.reps_completed) == (S.SUCCESS, 4)
    assert bare.balance(SELF) == (4, 0)


def test_7_4_55_depositing_a_page_twice_is_operation_denied_at_its_index(world: World, created: int) -> None:
    first, fresh = world.host_pages(2)
    assert world.deposit(created, [first]).status is S.SUCCESS
    res = world.deposit(created, [fresh, first])
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 1)
    assert world.balance(created) == (2, 0)


def test_7_4_55_a_page_deposited_elsewhere_is_operation_denied(world: World, created: int) -> None:
    other = world.new_child()
    (page,) = world.host_pages(1)
    assert world.deposit(other, [page]).status is S.SUCCESS
    res = world.deposit(created, [page])
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 0)


def test_7_4_55_the_same_page_twice_in_one_call_is_operation_denied(world: World, created: int) -> None:
    (page,) = world.host_pages(1)
    res = world.deposit(created, [page, page])
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 1)
    assert world.balance(created) == (1, 0)


def test_7_4_56_unmapped_page_stops_the_rep_and_earlier_pages_stay_deposited(
    world: World, created: int
) -> None:
    g1, g2, g3 = world.host_pages(3)
    g_bad = world.sim.config.host_pages + 7  # beyond host RAM: not in the root's GPA space
    res = world.deposit(created, [g1, g2, g_bad, g3])
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 2)
    assert world.balance(created) == (2, 0)
    # g1 and g2 are in C's pool now (a second deposit is refused); g3 was never taken.
    assert world.deposit(created, [g1]).status is S.OPERATION_DENIED
    assert world.deposit(created, [g3]).status is S.SUCCESS


def test_7_4_57_mapping_a_deposited_page_is_operation_denied(world: World, child: int) -> None:
    g1, g2 = world.host_pages(2)
    assert world.deposit(child, [g1]).status is S.SUCCESS
    before = world.balance(child)
    res = map_gpa(world, child, 0x10, [g2, g1])
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 1)
    # g1 did not leak into C's address space; g2's mapping paid its region's page table.
    assert world.sim.hv.memory.mapped[g1] == 0 and world.sim.hv.memory.mapped[g2] == 1
    table = world.page_costs.gpa_table
    assert world.balance(child) == (before.pages_available - table, before.pages_in_use + table)
    assert gpa_mappings(world.sim.hv) == []


def test_7_4_58_depositing_a_page_mapped_into_a_child_is_operation_denied(world: World, child: int) -> None:
    g1, g2 = world.host_pages(2)
    assert map_gpa(world, child, 0x10, [g2]).status is S.SUCCESS
    before = world.balance(child)
    res = world.deposit(child, [g2])
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 0)
    res = world.deposit(child, [g1, g2])
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 1)
    assert world.balance(child) == (before.pages_available + 1, before.pages_in_use)
    assert gpa_mappings(world.sim.hv) == []


# --- WithdrawMemory ----------------------------------------------------------------------------
def test_7_4_59_withdraw_more_than_available_is_no_resources_with_what_there_was(
    world: World, created: int
) -> None:
    deposited = world.host_pages(4)
    assert world.deposit(created, deposited).status is S.SUCCESS
    res = world.withdraw(created, 10)
    assert (res.status, res.reps_completed) == (S.NO_RESOURCES, 4)
    assert sorted(returned_pages(res)) == sorted(deposited)
    assert world.balance(created) == (0, 0)


def test_7_4_59_withdraw_from_an_empty_pool_is_no_resources_with_zero_reps(
    world: World, created: int
) -> None:
    res = world.withdraw(created, 1)
    assert (res.status, res.reps_completed) == (S.NO_RESOURCES, 0)


def test_7_4_60_withdrawn_pages_are_zero_filled_and_accessible_again(world: World, child: int) -> None:
    pages = world.host_pages(3)
    # Give the pages contents through a mapping, then hand them to a pool.
    assert map_gpa(world, child, 0x10, pages).status is S.SUCCESS
    world.api.write_guest(child, 0x10 << 12, b"\xa5" * (3 * 4096))
    assert world.run(world.api.unmap_gpa_pages(child, 0x10, 3)).status is S.SUCCESS
    created = world.new_child()
    assert world.deposit(created, pages).status is S.SUCCESS
    res = world.withdraw(created, 3)
    assert (res.status, res.reps_completed) == (S.SUCCESS, 3)
    assert sorted(returned_pages(res)) == sorted(pages)
    # Accessible to P again: mapped into C they read as zeros, and they can be deposited again.
    assert map_gpa(world, child, 0x20, returned_pages(res)).status is S.SUCCESS
    assert world.api.read_guest(child, 0x20 << 12, 3 * 4096) == bytes(3 * 4096)
    assert world.run(world.api.unmap_gpa_pages(child, 0x20, 3)).status is S.SUCCESS
    assert world.deposit(SELF, returned_pages(res)).status is S.SUCCESS
    assert gpa_mappings(world.sim.hv) == []


def test_7_4_61_withdraw_on_created_returns_every_deposited_page(world: World, created: int) -> None:
    deposited = world.host_pages(37)
    assert world.deposit(created, deposited).status is S.SUCCESS
    res = world.withdraw(created, 512)
    assert (res.status, res.reps_completed) == (S.NO_RESOURCES, 37)
    assert sorted(returned_pages(res)) == sorted(deposited)
    # The pages are the host's again: they can be deposited once more.
    again = world.deposit(SELF, returned_pages(res))
    assert (again.status, again.reps_completed) == (S.SUCCESS, 37)


def test_7_4_62_withdraw_with_reserved_proximity_flag_is_invalid_parameter(
    world: World, created: int
) -> None:
    world.fund(created, 2)
    proximity = proximity_info(0) | (1 << 5) << 32
    res = world.withdraw(created, 2, proximity=proximity)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert world.balance(created) == (2, 0)


def test_7_4_62_withdraw_with_a_valid_proximity_domain_is_accepted(world: World, created: int) -> None:
    world.fund(created, 2)
    res = world.withdraw(created, 2, proximity=proximity_info(0, valid=True))
    assert (res.status, res.reps_completed) == (S.SUCCESS, 2)


def test_7_4_62_balance_with_out_of_range_proximity_domain_is_invalid_parameter(
    world: World, created: int
) -> None:
    status, _ = world.balance_call(created, proximity=proximity_info(64, valid=True))
    assert status is S.INVALID_PARAMETER


def test_7_4_63_withdraw_never_takes_pages_in_use(world: World, child: int) -> None:
    before = world.balance(child)
    assert before.pages_in_use > 0 and before.pages_available > 0
    res = world.withdraw(child, 512)
    assert (res.status, res.reps_completed) == (S.NO_RESOURCES, before.pages_available)
    assert world.balance(child) == (0, before.pages_in_use)
    # The VPs built from the in-use pages still work.
    assert world.register(child, 1, RegisterName.VpIndex) == 1


def test_7_4_63_withdraw_in_active_leaves_the_configured_reserve(make_world: MakeWorld) -> None:
    world = make_world(withdraw_reserve_active_pages=3)
    child = world.active_child(spare=10)
    res = world.withdraw(child, 512)
    assert (res.status, res.reps_completed) == (S.NO_RESOURCES, 7)
    assert world.balance(child).pages_available == 3


# --- GetMemoryBalance ----------------------------------------------------------------------------
def test_7_4_64_balance_by_an_unrelated_partition_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    status, _ = world.balance_call(child, caller=intruder)
    assert status is S.ACCESS_DENIED


def test_7_4_64_balance_of_a_nonexistent_partition_is_invalid_partition_id(world: World) -> None:
    status, _ = world.balance_call(0x1234)
    assert status is S.INVALID_PARTITION_ID


def test_7_4_64_withdraw_by_an_unrelated_partition_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    before = world.balance(child)
    res = world.withdraw(child, 1, caller=intruder)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)
    assert world.balance(child) == before


# --- finalize and CreateVp -----------------------------------------------------------------------
def test_7_4_65_finalize_moves_every_in_use_page_to_available(world: World, child: int) -> None:
    before = world.balance(child)
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert world.balance(child) == (sum(before), 0)


def test_7_4_65_after_finalize_repeated_withdraw_drains_the_pool(world: World, child: int) -> None:
    total = sum(world.balance(child))
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    got: list[int] = []
    while True:
        res = world.withdraw(child, 64)
        got += returned_pages(res)
        if res.status is S.NO_RESOURCES:
            break
        assert res.status is S.SUCCESS
    assert len(got) == len(set(got)) == total
    assert world.balance(child) == (0, 0)


def test_7_4_66_create_vp_with_short_pool_is_insufficient_memory_and_creates_nothing(world: World) -> None:
    c = world.active_child(vps=())
    assert world.balance(c).pages_available == 0
    world.fund(c, world.page_costs.create_vp - 1)
    assert world.create_vp(c, 0) is S.INSUFFICIENT_MEMORY
    assert world.get_registers(c, 0, [RegisterName.VpIndex]).status is S.INVALID_VP_INDEX
    assert world.balance(c) == (world.page_costs.create_vp - 1, world.page_costs.initialize_partition)
    world.fund(c, 1)
    assert world.create_vp(c, 0) is S.SUCCESS
    assert world.register(c, 0, RegisterName.VpIndex) == 0


def test_7_4_67_map_gpa_pages_with_short_pool_completes_after_deposit_and_continuation(
    world: World,
) -> None:
    """1024 pages span two 2 MiB regions and the pool pays one region's page table, so mapping stops
    at page 512. A rep list that long takes several invocations (a parameter page holds 509
    elements, and the time budget cuts each invocation short): map as Linux does, re-issuing each
    call with rep start = reps completed while it returns SUCCESS with fewer reps."""
    c = world.active_child(spare=world.page_costs.gpa_table)
    sources = world.host_pages(1024)
    per_call = (4096 - MAP_GPA_PAGES_HEADER.size) // 8

    def map_from(base: int, start: int = 0) -> tuple[HvStatus, int]:
        """Map sources[base + start:] onto GPA pages base + start.. in invocations of per_call
        elements, the first one re-issued with rep start *start*; (status, pages mapped overall)."""
        done = base + start
        while done < len(sources):
            batch = sources[base : base + per_call]
            while start < len(batch):
                res = map_gpa(world, c, base, batch, rep_start=start)
                assert start <= res.reps_completed <= len(batch)
                done = base + res.reps_completed
                if res.status is not S.SUCCESS:
                    return res.status, done
                start = res.reps_completed
            base, start = done, 0
        return S.SUCCESS, done

    assert map_from(0) == (S.INSUFFICIENT_MEMORY, 512)
    assert world.balance(c).pages_available == 0
    assert sorted(world.sim.hv.partitions[c].gpa) == list(range(512))
    assert gpa_mappings(world.sim.hv) == []
    # The invocation that failed covers [base, base + per_call); re-issued with rep start = k it is
    # still short until the host deposits, then it (and the rest) complete.
    base = 512 - 512 % per_call
    assert map_from(base, 512 - base) == (S.INSUFFICIENT_MEMORY, 512)
    world.fund(c, world.page_costs.gpa_table)
    assert map_from(base, 512 - base) == (S.SUCCESS, 1024)
    assert sorted(world.sim.hv.partitions[c].gpa) == list(range(1024))
    assert all(world.sim.hv.memory.mapped[p] == 1 for p in sources)
    assert gpa_mappings(world.sim.hv) == []


# --- conservation across a deposit/withdraw sequence (6.6) ---------------------------------------
def test_6_6_deposit_withdraw_round_trip_conserves_pages(world: World, created: int) -> None:
    pages = world.host_pages(600)  # more than one call carries: HostApi splits and continues
    out = world.run(world.api.deposit(created, pages))
    assert (out.status, out.reps_completed) == (S.SUCCESS, 600)
    assert world.balance(created) == (600, 0)
    assert sorted(world.drain(created)) == sorted(pages)
    assert world.balance(created) == (0, 0)
