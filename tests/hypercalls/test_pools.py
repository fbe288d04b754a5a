"""HYPERCALLS.md 7.4: memory pools (cases 53-67).

Cases 57, 58, 60 and 67 need GPA mapping (MapGpaPages, guest memory contents), which this build
does not implement yet; they are listed below as skipped tests so the gap stays visible.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import pytest

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    HvStatus,
    HypercallCode,
    PartitionPrivilege,
    RegisterName,
    proximity_info,
)
from hvsim.actors.hypercall import HypercallResult

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF
NEEDS_GPA_MAPPING = "needs GPA mapping (MapGpaPages), not implemented in this build yet"


def returned_pages(res: HypercallResult) -> list[int]:
    """The GPA page numbers a WithdrawMemory wrote: only [rep start, reps completed) is defined."""
    return [p for (p,) in struct.iter_unpack("<Q", res.output[: 8 * res.reps_completed])]


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


@pytest.mark.skip(reason=NEEDS_GPA_MAPPING)
def test_7_4_57_mapping_a_deposited_page_is_operation_denied() -> None:
    """After depositing g1, MapGpaPages(C, g1) -> OPERATION_DENIED (source deposited)."""


@pytest.mark.skip(reason=NEEDS_GPA_MAPPING)
def test_7_4_58_depositing_a_page_mapped_into_a_child_is_operation_denied() -> None:
    """MapGpaPages(C, g2, RW) then DepositMemory(C, [g2]) -> OPERATION_DENIED, reps completed 0."""


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


@pytest.mark.skip(reason=NEEDS_GPA_MAPPING + " (page contents); re-deposit is covered by 61")
def test_7_4_60_withdrawn_pages_are_zero_filled_and_accessible_again() -> None:
    """Withdrawn pages are zeroed and regain RWX access for the caller."""


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


@pytest.mark.skip(reason=NEEDS_GPA_MAPPING)
def test_7_4_67_map_gpa_pages_with_short_pool_completes_after_deposit_and_continuation() -> None:
    """MapGpaPages(C, 1024 pages), pool for ~half -> INSUFFICIENT_MEMORY at k > 0; deposit, resume."""


# --- conservation across a deposit/withdraw sequence (6.6) ---------------------------------------
def test_6_6_deposit_withdraw_round_trip_conserves_pages(world: World, created: int) -> None:
    pages = world.host_pages(600)  # more than one call carries: HostApi splits and continues
    out = world.run(world.api.deposit(created, pages))
    assert (out.status, out.reps_completed) == (S.SUCCESS, 600)
    assert world.balance(created) == (600, 0)
    assert sorted(world.drain(created)) == sorted(pages)
    assert world.balance(created) == (0, 0)
