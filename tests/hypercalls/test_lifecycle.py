"""HYPERCALLS.md 7.2: partition lifecycle (cases 17-44).

P is the root, C its child, G an unrelated partition (another child of the root). Calls "as G" or
"as C" are issued from that partition's VP 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_INVALID,
    HV_PARTITION_ID_SELF,
    START_VIRTUAL_PROCESSOR_HEADER,
    HvStatus,
    HypercallCode,
    PartitionPrivilege,
    PropertyCode,
    RegisterName,
    StartVirtualProcessorHeader,
    proximity_info,
)

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF
INVALID = HV_PARTITION_ID_INVALID


def can_create(world: World) -> int:
    """Privileges of a child that may create partitions of its own."""
    return int(world.sim.config.child_default_privileges | PP.CreatePartitions)


# --- CreatePartition ---------------------------------------------------------------------------
def test_7_2_17_create_partition_without_create_partitions_privilege_is_access_denied(
    world: World, unrelated: int
) -> None:
    status, _ = world.create_partition(caller=unrelated)
    assert status is S.ACCESS_DENIED


def test_7_2_18_create_partition_with_undefined_flag_bit_2_is_invalid_parameter(world: World) -> None:
    status, _ = world.create_partition(flags=1 << 2)
    assert status is S.INVALID_PARAMETER
    assert world.next_child(SELF, INVALID) == (S.SUCCESS, INVALID)


def test_7_2_19_create_partition_with_reserved_proximity_flag_is_invalid_parameter(world: World) -> None:
    proximity = proximity_info(0) | (1 << 5) << 32  # Flags is the u32 at offset 4
    status, _ = world.create_partition(proximity=proximity)
    assert status is S.INVALID_PARAMETER
    assert world.next_child(SELF, INVALID) == (S.SUCCESS, INVALID)


def test_7_2_20_create_partition_with_empty_own_pool_is_insufficient_memory_until_deposit(
    bare: World,
) -> None:
    status, _ = bare.create_partition()
    assert status is S.INSUFFICIENT_MEMORY
    assert bare.next_child(SELF, INVALID) == (S.SUCCESS, INVALID)  # nothing half-created
    bare.fund(SELF, bare.page_costs.create_partition)
    status, pid = bare.create_partition()
    assert status is S.SUCCESS
    assert bare.next_child(SELF, INVALID) == (S.SUCCESS, pid)


def test_7_2_20_create_partition_charges_the_callers_pool(world: World) -> None:
    before = world.balance(SELF)
    assert world.create_partition()[0] is S.SUCCESS
    after = world.balance(SELF)
    cost = world.page_costs.create_partition
    assert after == (before.pages_available - cost, before.pages_in_use + cost)


def test_7_2_21_create_partition_beyond_max_depth_is_partition_too_deep(make_world: MakeWorld) -> None:
    world = make_world(max_depth=2)
    c = world.active_child(privileges=can_create(world), spare=8)
    status, _ = world.create_partition(caller=c)
    assert status is S.PARTITION_TOO_DEEP


def test_7_2_21_create_partition_within_max_depth_succeeds(make_world: MakeWorld) -> None:
    world = make_world(max_depth=3)
    c = world.active_child(privileges=can_create(world), spare=8)
    status, grandchild = world.create_partition(caller=c)
    assert status is S.SUCCESS
    assert world.next_child(SELF, INVALID, caller=c) == (S.SUCCESS, grandchild)


def test_7_2_22_partition_ids_are_distinct_and_not_invalid_or_self(world: World) -> None:
    s1, c1 = world.create_partition()
    s2, c2 = world.create_partition()
    assert s1 is s2 is S.SUCCESS
    assert c1 != c2
    assert {c1, c2}.isdisjoint({INVALID, SELF, world.root})


def test_7_2_23_new_partition_pool_is_empty(world: World, created: int) -> None:
    assert world.balance_call(created) == (S.SUCCESS, (0, 0))


# --- InitializePartition -------------------------------------------------------------------------
def test_7_2_24_create_vp_in_created_is_invalid_partition_state(world: World, created: int) -> None:
    world.fund(created, world.page_costs.create_vp)
    assert world.create_vp(created, 0) is S.INVALID_PARTITION_STATE


def test_7_2_25_initialize_with_empty_pool_is_insufficient_memory(world: World, created: int) -> None:
    assert world.by_id(C.InitializePartition, created) is S.INSUFFICIENT_MEMORY
    # Nothing charged, and C is still CREATED: an early property is still settable, a VP is not.
    assert world.balance(created) == (0, 0)
    assert world.set_property(created, PropertyCode.PrivilegeFlags, 0) is S.SUCCESS
    world.fund(created, world.page_costs.create_vp)
    assert world.create_vp(created, 0) is S.INVALID_PARTITION_STATE


def test_7_2_25_initialize_one_page_short_is_insufficient_memory(world: World, created: int) -> None:
    world.fund(created, world.page_costs.initialize_partition - 1)
    assert world.by_id(C.InitializePartition, created) is S.INSUFFICIENT_MEMORY
    assert world.balance(created) == (world.page_costs.initialize_partition - 1, 0)


def test_7_2_26_initialize_after_deposit_succeeds_and_charges_the_child(world: World, created: int) -> None:
    world.fund(created, world.page_costs.initialize_partition + 5)
    assert world.by_id(C.InitializePartition, created) is S.SUCCESS
    assert world.balance(created) == (5, world.page_costs.initialize_partition)


def test_7_2_26_second_initialize_is_invalid_partition_state(world: World, child: int) -> None:
    assert world.by_id(C.InitializePartition, child) is S.INVALID_PARTITION_STATE


def test_7_2_27_initialize_of_another_partitions_child_is_access_denied(
    world: World, created: int, intruder: int
) -> None:
    world.fund(created, world.page_costs.initialize_partition)
    assert world.by_id(C.InitializePartition, created, caller=intruder) is S.ACCESS_DENIED
    # Still CREATED: its parent can initialize it.
    assert world.by_id(C.InitializePartition, created) is S.SUCCESS


def test_7_2_28_initialize_of_nonexistent_partition_is_invalid_partition_id(world: World) -> None:
    assert world.by_id(C.InitializePartition, 0x1234) is S.INVALID_PARTITION_ID


# --- FinalizePartition -------------------------------------------------------------------------
def test_7_2_29_finalize_in_created_is_invalid_partition_state(world: World, created: int) -> None:
    assert world.by_id(C.FinalizePartition, created) is S.INVALID_PARTITION_STATE


def test_7_2_30_finalize_of_a_partition_with_children_is_operation_denied(make_world: MakeWorld) -> None:
    world = make_world(max_depth=3)
    c = world.active_child(privileges=can_create(world), spare=8)
    status, _grandchild = world.create_partition(caller=c)
    assert status is S.SUCCESS
    assert world.by_id(C.FinalizePartition, c) is S.OPERATION_DENIED
    # C is still ACTIVE, VPs and all.
    assert world.get_registers(c, 0, [RegisterName.VpIndex]).status is S.SUCCESS


def test_7_2_30_finalize_succeeds_once_the_grandchild_is_deleted(make_world: MakeWorld) -> None:
    world = make_world(max_depth=3)
    c = world.active_child(privileges=can_create(world), spare=8)
    _, grandchild = world.create_partition(caller=c)
    assert world.by_id(C.DeletePartition, grandchild, caller=c) is S.SUCCESS
    assert world.by_id(C.FinalizePartition, c) is S.SUCCESS


def test_7_2_31_finalize_active_succeeds_and_removes_the_vps(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    for index in (0, 1):
        res = world.get_registers(child, index, [RegisterName.ExplicitSuspend])
        assert res.status is S.INVALID_PARTITION_STATE
    assert world.delete_vp(child, 0) is S.INVALID_PARTITION_STATE
    assert world.balance(child).pages_in_use == 0  # no VP structure left


def test_7_2_31_finalize_with_running_vps_succeeds_and_they_stop(world: World, child: int) -> None:
    res = world.set_registers(child, 0, [(RegisterName.ExplicitSuspend, 0)])
    assert res.status is S.SUCCESS
    world.sim.run(until_ns=world.sim.now_ns + 100_000)
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    world.sim.run(until_ns=world.sim.now_ns + 100_000)
    assert world.balance(child).pages_in_use == 0
    world.drain(child)
    assert world.by_id(C.DeletePartition, child) is S.SUCCESS


def test_7_2_32_second_finalize_is_invalid_partition_state(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert world.by_id(C.FinalizePartition, child) is S.INVALID_PARTITION_STATE


def test_7_2_33_deposit_after_finalize_is_invalid_partition_state(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    before = world.balance(child)
    res = world.deposit(child, world.host_pages(2))
    assert (res.status, res.reps_completed) == (S.INVALID_PARTITION_STATE, 0)
    assert world.balance(child) == before


# --- DeletePartition ---------------------------------------------------------------------------
def test_7_2_34_delete_active_is_invalid_partition_state(world: World, child: int) -> None:
    assert world.by_id(C.DeletePartition, child) is S.INVALID_PARTITION_STATE


def test_7_2_35_delete_finalized_with_pages_left_is_operation_denied(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert world.by_id(C.DeletePartition, child) is S.OPERATION_DENIED
    # Still there and still FINALIZED: its pages can be withdrawn.
    assert world.balance(child).pages_available > 0


def test_7_2_35_delete_finalized_with_one_page_left_is_operation_denied(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    total = sum(world.balance(child))
    res = world.withdraw(child, total - 1)
    assert (res.status, res.reps_completed) == (S.SUCCESS, total - 1)
    assert world.by_id(C.DeletePartition, child) is S.OPERATION_DENIED


def test_7_2_36_delete_finalized_and_drained_succeeds(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    world.drain(child)
    assert world.by_id(C.DeletePartition, child) is S.SUCCESS


def _deleted(world: World, child: int) -> int:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    world.drain(child)
    assert world.by_id(C.DeletePartition, child) is S.SUCCESS
    return child


@pytest.mark.parametrize(
    "name",
    [
        "InitializePartition",
        "FinalizePartition",
        "DeletePartition",
        "GetMemoryBalance",
        "DepositMemory",
        "WithdrawMemory",
        "SetPartitionProperty",
        "GetPartitionProperty",
        "CreateVp",
        "DeleteVp",
        "GetVpRegisters",
        "SetVpRegisters",
        "GetNextChildPartition(previous)",
        "GetNextChildPartition(parent)",
        "StartVirtualProcessor",
    ],
)
def test_7_2_36_any_call_naming_a_deleted_partition_is_invalid_partition_id(
    world: World, child: int, name: str
) -> None:
    gone = _deleted(world, child)
    if name in ("InitializePartition", "FinalizePartition", "DeletePartition"):
        status = world.by_id(C.__members__[name], gone)
    elif name == "GetMemoryBalance":
        status = world.balance_call(gone)[0]
    elif name == "DepositMemory":
        status = world.deposit(gone, world.host_pages(1)).status
    elif name == "WithdrawMemory":
        status = world.withdraw(gone, 1).status
    elif name == "SetPartitionProperty":
        status = world.set_property(gone, PropertyCode.CpuWeight, 100)
    elif name == "GetPartitionProperty":
        status = world.get_property(gone, PropertyCode.PrivilegeFlags)[0]
    elif name == "CreateVp":
        status = world.create_vp(gone, 0)
    elif name == "DeleteVp":
        status = world.delete_vp(gone, 0)
    elif name == "GetVpRegisters":
        status = world.get_registers(gone, 0, [RegisterName.Rip]).status
    elif name == "SetVpRegisters":
        status = world.set_registers(gone, 0, [(RegisterName.Rax, 1)]).status
    elif name == "GetNextChildPartition(previous)":
        status = world.next_child(SELF, gone)[0]
    elif name == "GetNextChildPartition(parent)":
        status = world.next_child(gone, INVALID)[0]
    else:
        header = START_VIRTUAL_PROCESSOR_HEADER.pack(StartVirtualProcessorHeader(gone, 1, 0, bytes(3)))
        status = world.simple(C.StartVirtualProcessor, header)
    assert status is S.INVALID_PARTITION_ID


def test_7_2_37_delete_created_with_empty_pool_succeeds(world: World, created: int) -> None:
    assert world.by_id(C.DeletePartition, created) is S.SUCCESS
    assert world.balance_call(created)[0] is S.INVALID_PARTITION_ID


def test_7_2_37_delete_created_with_deposited_pages_is_operation_denied(world: World, created: int) -> None:
    world.fund(created, 3)
    assert world.by_id(C.DeletePartition, created) is S.OPERATION_DENIED
    world.drain(created)
    assert world.by_id(C.DeletePartition, created) is S.SUCCESS


def test_7_2_38_delete_self_is_access_denied(world: World) -> None:
    assert world.by_id(C.DeletePartition, SELF) is S.ACCESS_DENIED


def test_7_2_38_delete_self_by_a_child_is_access_denied(world: World, child: int) -> None:
    assert world.by_id(C.DeletePartition, SELF, caller=child) is S.ACCESS_DENIED


def test_7_2_39_delete_refunds_the_creation_charge_to_the_parent(world: World) -> None:
    before = world.balance(SELF)
    status, pid = world.create_partition()
    assert status is S.SUCCESS
    assert world.balance(SELF) != before
    assert world.by_id(C.DeletePartition, pid) is S.SUCCESS
    assert world.balance(SELF) == before


def test_7_2_39_delete_after_finalize_refunds_the_creation_charge(world: World) -> None:
    before = world.balance(SELF)
    c = world.active_child()
    assert world.by_id(C.FinalizePartition, c) is S.SUCCESS
    world.drain(c)
    assert world.by_id(C.DeletePartition, c) is S.SUCCESS
    assert world.balance(SELF) == before


def test_7_2_delete_of_another_partitions_child_is_access_denied(
    world: World, created: int, intruder: int
) -> None:
    assert world.by_id(C.DeletePartition, created, caller=intruder) is S.ACCESS_DENIED


def test_7_2_finalize_of_another_partitions_child_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    assert world.by_id(C.FinalizePartition, child, caller=intruder) is S.ACCESS_DENIED


# --- GetNextChildPartition -----------------------------------------------------------------------
def test_7_2_40_next_child_with_no_children_is_invalid(world: World) -> None:
    assert world.next_child(SELF, INVALID) == (S.SUCCESS, INVALID)
    assert world.next_child(world.root, INVALID) == (S.SUCCESS, INVALID)


def test_7_2_41_next_child_enumerates_in_creation_order(world: World) -> None:
    _, c1 = world.create_partition()
    _, c2 = world.create_partition()
    assert world.next_child(SELF, INVALID) == (S.SUCCESS, c1)
    assert world.next_child(SELF, c1) == (S.SUCCESS, c2)
    assert world.next_child(SELF, c2) == (S.SUCCESS, INVALID)


def test_7_2_41_children_helper_sees_every_child(world: World) -> None:
    ids = [world.create_partition()[1] for _ in range(4)]
    assert world.run(world.api.children()) == ids


def test_7_2_42_next_child_after_a_deleted_child_is_invalid_partition_id(world: World) -> None:
    _, c1 = world.create_partition()
    _, c2 = world.create_partition()
    assert world.by_id(C.DeletePartition, c1) is S.SUCCESS
    assert world.next_child(SELF, c1)[0] is S.INVALID_PARTITION_ID
    assert world.next_child(SELF, INVALID) == (S.SUCCESS, c2)


def test_7_2_43_next_child_of_another_partition_is_access_denied(world: World, intruder: int) -> None:
    assert world.next_child(world.root, INVALID, caller=intruder)[0] is S.ACCESS_DENIED


def test_7_2_44_finalized_child_is_still_enumerated(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert world.next_child(SELF, INVALID) == (S.SUCCESS, child)


# --- a whole lifecycle, as Linux's mshv drives it ------------------------------------------------
def test_7_2_full_lifecycle_returns_every_page_to_the_host(world: World) -> None:
    root_before = world.balance(SELF)
    c = world.active_child(vps=(0, 1, 2), spare=4)
    deposited = world.page_costs.initialize_partition + 3 * world.page_costs.create_vp + 4
    assert sum(world.balance(c)) == deposited
    assert world.by_id(C.FinalizePartition, c) is S.SUCCESS
    assert world.balance(c) == (deposited, 0)
    withdrawn = world.drain(c)
    assert len(withdrawn) == len(set(withdrawn)) == deposited
    assert world.by_id(C.DeletePartition, c) is S.SUCCESS
    assert world.balance(SELF) == root_before
    # The withdrawn pages are the host's again: they can be deposited once more.
    res = world.deposit(SELF, withdrawn[:4])
    assert (res.status, res.reps_completed) == (S.SUCCESS, 4)
