"""HYPERCALLS.md 7.3: partition properties (cases 45-52), plus the [inferred] state rules of 3.4.

Early properties (PrivilegeFlags, PhysicalAddressWidth, ...) are set in CREATED and frozen by
InitializePartition; the others are set in ACTIVE; nothing is set after finalize.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    PARTITION_PROPERTY_EX_INPUT,
    SET_PARTITION_PROPERTY_INPUT,
    HvStatus,
    HypercallCode,
    PartitionPrivilege,
    PartitionPropertyExInput,
    PropertyCode,
    RegisterName,
    SetPartitionPropertyInput,
    control,
)

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
PC = PropertyCode
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF


def test_7_3_45_set_privilege_flags_in_created_succeeds(world: World, created: int) -> None:
    privileges = int(PP.AccessPartitionId | PP.AccessVpRegisters | PP.CreatePartitions)
    assert world.set_property(created, PC.PrivilegeFlags, privileges) is S.SUCCESS
    assert world.get_property(created, PC.PrivilegeFlags) == (S.SUCCESS, privileges)


def test_7_3_45_privilege_flags_set_in_created_take_effect_once_active(world: World, created: int) -> None:
    assert world.set_property(created, PC.PrivilegeFlags, int(PP.AccessVpRegisters)) is S.SUCCESS
    world.activate(created)
    # The child sees its mask in HvRegisterPrivilegesAndFeaturesInfo (CPUID 0x40000003).
    value = world.register(SELF, 0, RegisterName.PrivilegesAndFeaturesInfo, caller=created)
    assert value & (2**64 - 1) == int(PP.AccessVpRegisters)  # EAX / EBX; ECX / EDX: the features


def test_7_3_46_set_regular_property_in_created_is_invalid_partition_state(
    world: World, created: int
) -> None:
    assert world.set_property(created, PC.CpuWeight, 200) is S.INVALID_PARTITION_STATE


def test_7_3_46_set_regular_property_in_active_succeeds(world: World, child: int) -> None:
    assert world.set_property(child, PC.CpuWeight, 200) is S.SUCCESS
    assert world.get_property(child, PC.CpuWeight) == (S.SUCCESS, 200)


def test_7_3_47_set_early_property_after_initialize_is_invalid_partition_state(
    world: World, child: int
) -> None:
    _, width = world.get_property(child, PC.PhysicalAddressWidth)
    assert world.set_property(child, PC.PhysicalAddressWidth, 40) is S.INVALID_PARTITION_STATE
    assert world.get_property(child, PC.PhysicalAddressWidth) == (S.SUCCESS, width)


def test_7_3_47_privilege_flags_are_frozen_after_initialize(world: World, child: int) -> None:
    _, mask = world.get_property(child, PC.PrivilegeFlags)
    status = world.set_property(child, PC.PrivilegeFlags, int(PP.CreatePartitions))
    assert status is S.INVALID_PARTITION_STATE
    assert world.get_property(child, PC.PrivilegeFlags) == (S.SUCCESS, mask)


def test_7_3_47_set_early_property_in_created_succeeds(world: World, created: int) -> None:
    assert world.set_property(created, PC.PhysicalAddressWidth, 40) is S.SUCCESS
    world.activate(created)
    assert world.get_property(created, PC.PhysicalAddressWidth) == (S.SUCCESS, 40)


def test_7_3_48_set_unknown_property_is_unknown_property(world: World, child: int) -> None:
    assert world.set_property(child, 0x00050099, 1) is S.UNKNOWN_PROPERTY


def test_7_3_49_get_unknown_property_is_unknown_property(world: World, child: int) -> None:
    assert world.get_property(child, 0x7FFF0000)[0] is S.UNKNOWN_PROPERTY


def test_7_3_50_virtual_tlb_page_count_is_clamped_to_the_maximum(world: World, child: int) -> None:
    maximum = world.sim.config.virtual_tlb_pages_max
    world.fund(child, maximum)
    before = world.balance(child)
    assert world.set_property(child, PC.VirtualTlbPageCount, 2**40) is S.SUCCESS
    assert world.get_property(child, PC.VirtualTlbPageCount) == (S.SUCCESS, maximum)
    # The pages are reserved from the child's pool.
    after = world.balance(child)
    assert after == (before.pages_available - maximum, before.pages_in_use + maximum)


def test_7_3_50_virtual_tlb_page_count_below_the_maximum_is_kept(make_world: MakeWorld) -> None:
    world = make_world(virtual_tlb_pages_max=16)
    child = world.active_child(spare=16)
    assert world.set_property(child, PC.VirtualTlbPageCount, 5) is S.SUCCESS
    assert world.get_property(child, PC.VirtualTlbPageCount) == (S.SUCCESS, 5)
    assert world.set_property(child, PC.VirtualTlbPageCount, 1000) is S.SUCCESS
    assert world.get_property(child, PC.VirtualTlbPageCount) == (S.SUCCESS, 16)


def test_7_3_51_set_property_of_another_partitions_child_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    assert world.set_property(child, PC.CpuWeight, 200, caller=intruder) is S.ACCESS_DENIED
    assert world.get_property(child, PC.CpuWeight) == (S.SUCCESS, 100)  # unchanged default


def test_7_3_51_get_property_of_another_partitions_child_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    assert world.get_property(child, PC.CpuWeight, caller=intruder)[0] is S.ACCESS_DENIED


def test_7_3_52_set_property_in_finalized_is_invalid_partition_state(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert world.set_property(child, PC.CpuWeight, 200) is S.INVALID_PARTITION_STATE


def test_7_3_52_set_early_property_in_finalized_is_invalid_partition_state(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert world.set_property(child, PC.PrivilegeFlags, 0) is S.INVALID_PARTITION_STATE


# --- 3.4 / 8.4: GetPartitionProperty outside ACTIVE ([inferred], HvConfig.get_property_in_created) ---
def test_3_4_get_property_in_created_is_allowed_by_default(world: World, created: int) -> None:
    assert world.get_property(created, PC.PrivilegeFlags) == (
        S.SUCCESS,
        int(world.sim.config.child_default_privileges),
    )


def test_3_4_get_property_in_created_is_invalid_partition_state_in_legacy_mode(make_world: MakeWorld) -> None:
    world = make_world(get_property_in_created=False)
    created = world.new_child()
    assert world.get_property(created, PC.PrivilegeFlags)[0] is S.INVALID_PARTITION_STATE


def test_3_4_get_property_in_finalized_is_invalid_partition_state(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert world.get_property(child, PC.CpuWeight)[0] is S.INVALID_PARTITION_STATE


# --- other documented choices --------------------------------------------------------------------
def test_4_2_set_read_only_property_is_invalid_parameter(world: World, child: int) -> None:
    _, vendor = world.get_property(child, PC.ProcessorVendor)
    assert world.set_property(child, PC.ProcessorVendor, vendor + 1) is S.INVALID_PARAMETER


def test_4_2_set_property_with_nonzero_padding_is_invalid_parameter(world: World, child: int) -> None:
    data = SET_PARTITION_PROPERTY_INPUT.pack(SetPartitionPropertyInput(child, PC.CpuWeight, 1, 200))
    assert world.simple(C.SetPartitionProperty, data) is S.INVALID_PARAMETER


def test_4_2_out_of_range_value_is_property_value_out_of_range(world: World, child: int) -> None:
    assert world.set_property(child, PC.CpuWeight, 0) is S.PROPERTY_VALUE_OUT_OF_RANGE
    assert world.get_property(child, PC.CpuWeight) == (S.SUCCESS, 100)


def test_4_2_parent_cannot_grant_a_privilege_it_does_not_hold(make_world: MakeWorld) -> None:
    world = make_world(max_depth=3)
    host = int(world.sim.config.child_default_privileges | PP.CreatePartitions)
    c = world.active_child(privileges=host, spare=8)
    _, grandchild = world.create_partition(caller=c)
    status = world.set_property(grandchild, PC.PrivilegeFlags, int(PP.AccessVSM), caller=c)
    assert status is S.PROPERTY_VALUE_OUT_OF_RANGE
    assert world.set_property(grandchild, PC.PrivilegeFlags, int(PP.CreatePartitions), caller=c) is S.SUCCESS


def test_4_2_root_reads_its_own_properties(world: World) -> None:
    status, mask = world.get_property(SELF, PC.PrivilegeFlags)
    assert status is S.SUCCESS
    assert mask & PP.CreatePartitions


def test_4_3_set_partition_property_ex_without_variable_header_is_invalid_parameter(
    world: World, created: int
) -> None:
    header = PARTITION_PROPERTY_EX_INPUT.pack(PartitionPropertyExInput(created, PC.PrivilegeFlags, 0, 0))
    assert world.call(control(C.SetPartitionPropertyEx), header).status is S.INVALID_PARAMETER


def test_8_5_a_new_childs_default_privileges_are_within_its_parents(make_world: MakeWorld) -> None:
    world = make_world(max_depth=3)
    c = world.active_child(privileges=int(PP.CreatePartitions | PP.AccessPartitionId), spare=8)
    _, grandchild = world.create_partition(caller=c)
    status, mask = world.get_property(grandchild, PC.PrivilegeFlags, caller=c)
    assert status is S.SUCCESS
    assert mask == world.sim.config.child_default_privileges & int(PP.CreatePartitions | PP.AccessPartitionId)
    # ... so the parent can write back exactly what it reads.
    assert world.set_property(grandchild, PC.PrivilegeFlags, mask, caller=c) is S.SUCCESS
