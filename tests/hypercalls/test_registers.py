"""HYPERCALLS.md 7.5: virtual processors and registers (cases 68-83, with StartVirtualProcessor 81-83).

C is an ACTIVE child of the root with VPs 0 and 1; VP 0 is started at reset (the BSP), VP 1 is an
AP waiting for StartVirtualProcessor. Both begin with HvRegisterExplicitSuspend = 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvsim.actors.hvdef import (
    CREATE_VP_INPUT,
    HV_PARTITION_ID_SELF,
    HV_VP_INDEX_SELF,
    INITIAL_VP_CONTEXT,
    REGISTER_ASSOC,
    SEGMENT,
    START_VIRTUAL_PROCESSOR_HEADER,
    TABLE,
    VP_REGISTERS_INPUT,
    CreateVpInput,
    HvStatus,
    HypercallCode,
    InitialVpContext,
    PartitionPrivilege,
    RegisterAssoc,
    RegisterName,
    StartVirtualProcessorHeader,
    VpRegistersInput,
    X64Segment,
    X64Table,
    control,
)

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
R = RegisterName
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF
U64 = 2**64 - 1


def with_privileges(world: World, *extra: PartitionPrivilege) -> int:
    mask = world.sim.config.child_default_privileges
    for p in extra:
        mask |= p
    return int(mask)


# --- CreateVp / DeleteVp -------------------------------------------------------------------------
def test_7_5_68_create_vp_in_active_succeeds_and_the_vp_starts_explicitly_suspended(world: World) -> None:
    c = world.active_child(vps=(), spare=world.page_costs.create_vp)
    assert world.create_vp(c, 0) is S.SUCCESS
    assert world.register(c, 0, R.ExplicitSuspend) == 1


def test_7_5_68_new_vp_has_the_architectural_reset_state(world: World, child: int) -> None:
    res = world.get_registers(child, 1, [R.Rip, R.Rflags, R.Cr0, R.InitialApicId, R.VpIndex])
    assert (res.status, res.reps_completed) == (S.SUCCESS, 5)
    values = [int.from_bytes(res.output[16 * i : 16 * i + 16], "little") for i in range(5)]
    assert values == [0xFFF0, 0x2, 0x6000_0010, 1, 1]


def test_7_5_69_create_vp_with_an_index_in_use_is_invalid_vp_index(world: World, child: int) -> None:
    before = world.balance(child)
    assert world.create_vp(child, 0) is S.INVALID_VP_INDEX
    assert world.balance(child) == before


def test_7_5_70_create_vp_above_the_maximum_index_is_invalid_vp_index(world: World, child: int) -> None:
    assert world.create_vp(child, 5000) is S.INVALID_VP_INDEX


def test_7_5_70_the_maximum_index_itself_is_accepted(world: World) -> None:
    c = world.active_child(vps=(), spare=world.page_costs.create_vp)
    top = world.sim.config.max_vp_index
    assert world.create_vp(c, top + 1) is S.INVALID_VP_INDEX
    assert world.create_vp(c, top) is S.SUCCESS
    assert world.register(c, top, R.VpIndex) == top


def test_7_5_71_create_vp_with_nonzero_flags_is_invalid_parameter(world: World, child: int) -> None:
    before = world.balance(child)
    assert world.create_vp(child, 2, flags=1) is S.INVALID_PARAMETER
    assert world.balance(child) == before


def test_7_5_71_create_vp_with_nonzero_reserved_bytes_is_invalid_parameter(world: World, child: int) -> None:
    data = CREATE_VP_INPUT.pack(CreateVpInput(child, 2, b"\x00\x01\x00", 0, 0, 0, 0))
    assert world.simple(C.CreateVp, data) is S.INVALID_PARAMETER


def test_7_5_72_create_vp_in_another_partitions_child_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    assert world.create_vp(child, 2, caller=intruder) is S.ACCESS_DENIED


def test_7_5_73_delete_of_a_nonexistent_vp_is_invalid_vp_index(world: World, child: int) -> None:
    assert world.delete_vp(child, 3) is S.INVALID_VP_INDEX


def test_7_5_74_delete_vp_returns_its_memory_to_the_childs_pool(world: World, child: int) -> None:
    before = world.balance(child)
    assert world.delete_vp(child, 0) is S.SUCCESS
    cost = world.page_costs.create_vp
    assert world.balance(child) == (before.pages_available + cost, before.pages_in_use - cost)
    assert world.get_registers(child, 0, [R.Rip]).status is S.INVALID_VP_INDEX
    # The index is free again.
    assert world.create_vp(child, 0) is S.SUCCESS


def test_7_5_74_delete_of_a_running_vp_stops_it(world: World, child: int) -> None:
    assert world.set_registers(child, 0, [(R.ExplicitSuspend, 0)]).status is S.SUCCESS
    world.sim.run(until_ns=world.sim.now_ns + 100_000)
    assert world.delete_vp(child, 0) is S.SUCCESS
    world.sim.run(until_ns=world.sim.now_ns + 100_000)
    # A new VP at the same index starts from reset: suspended, no run time.
    assert world.create_vp(child, 0) is S.SUCCESS
    world.sim.run(until_ns=world.sim.now_ns + 100_000)
    assert world.register(child, 0, R.ExplicitSuspend) == 1
    assert world.register(child, 0, R.VpRuntime) == 0


def test_7_5_74_delete_vp_of_another_partitions_child_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    assert world.delete_vp(child, 0, caller=intruder) is S.ACCESS_DENIED


# --- GetVpRegisters / SetVpRegisters --------------------------------------------------------------
def test_7_5_75_unknown_register_name_stops_get_at_its_index(world: World, child: int) -> None:
    res = world.get_registers(child, 0, [R.Rip, 0xDEADBEEF, R.Rsp])
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 1)
    assert int.from_bytes(res.output[:16], "little") == 0xFFF0  # element 0 is defined


def test_7_5_75_unknown_register_name_status_is_configurable(make_world: MakeWorld) -> None:
    world = make_world(unknown_register_status=S.UNKNOWN_REGISTER_NAME)
    child = world.active_child()
    res = world.get_registers(child, 0, [R.Rip, 0xDEADBEEF, R.Rsp])
    assert (res.status, res.reps_completed) == (S.UNKNOWN_REGISTER_NAME, 1)


def test_7_5_75_unknown_register_name_stops_set_at_its_index(world: World, child: int) -> None:
    res = world.set_registers(child, 0, [(R.Rax, 1), (0xDEADBEEF, 2), (R.Rbx, 3)])
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 1)
    assert world.register(child, 0, R.Rax) == 1
    assert world.register(child, 0, R.Rbx) == 0


def test_7_5_76_set_of_a_read_only_register_is_invalid_parameter(world: World, child: int) -> None:
    res = world.set_registers(child, 0, [(R.VpIndex, 7)])
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert world.register(child, 0, R.VpIndex) == 0


def test_7_5_76_read_only_register_status_is_configurable(make_world: MakeWorld) -> None:
    world = make_world(invalid_register_value_status=S.INVALID_REGISTER_VALUE)
    child = world.active_child()
    res = world.set_registers(child, 0, [(R.VpIndex, 7)])
    assert (res.status, res.reps_completed) == (S.INVALID_REGISTER_VALUE, 0)


def test_4_14_illegal_value_stops_set_at_its_index(world: World, child: int) -> None:
    # Rflags bit 1 is architecturally fixed to one: writing 0 is an illegal value.
    res = world.set_registers(child, 0, [(R.Rax, 5), (R.Rflags, 0x0), (R.Rbx, 6)])
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 1)
    assert world.register(child, 0, R.Rflags) == 0x2


def test_4_14_set_with_nonzero_reserved_element_bytes_is_invalid_parameter(world: World, child: int) -> None:
    header = VP_REGISTERS_INPUT.pack(VpRegistersInput(child, 0, 0, bytes(3)))
    element = REGISTER_ASSOC.pack(RegisterAssoc(R.Rax, b"\x01" + bytes(11), 5, 0))
    res = world.call(control(C.SetVpRegisters, rep_count=1), header + element)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)


def test_7_5_77_clearing_explicit_suspend_makes_the_vp_run(world: World, child: int) -> None:
    # Suspended: no run time accrues.
    world.sim.run(until_ns=world.sim.now_ns + 1_000_000)
    assert world.register(child, 0, R.VpRuntime) == 0
    res = world.set_registers(child, 0, [(R.ExplicitSuspend, 0)])
    assert (res.status, res.reps_completed) == (S.SUCCESS, 1)
    assert world.register(child, 0, R.ExplicitSuspend) == 0
    world.sim.run(until_ns=world.sim.now_ns + 1_000_000)
    assert world.register(child, 0, R.VpRuntime) >= 1_000_000 // 100  # 100 ns units


def test_7_5_77_an_ap_does_not_run_before_it_is_started(world: World, child: int) -> None:
    assert world.set_registers(child, 1, [(R.ExplicitSuspend, 0)]).status is S.SUCCESS
    world.sim.run(until_ns=world.sim.now_ns + 1_000_000)
    assert world.register(child, 1, R.VpRuntime) == 0


def test_7_5_78_setting_intercept_suspend_is_an_error(world: World, child: int) -> None:
    res = world.set_registers(child, 0, [(R.InterceptSuspend, 1)])
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert world.register(child, 0, R.InterceptSuspend) == 0


def test_7_5_78_clearing_intercept_suspend_is_allowed(world: World, child: int) -> None:
    res = world.set_registers(child, 0, [(R.InterceptSuspend, 0), (R.ExplicitSuspend, 0)])
    assert (res.status, res.reps_completed) == (S.SUCCESS, 2)


def test_7_5_79_get_registers_of_self_without_access_vp_registers_is_access_denied(
    world: World, child: int
) -> None:
    res = world.get_registers(SELF, HV_VP_INDEX_SELF, [R.VpIndex], caller=child)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)


def test_7_5_79_get_registers_of_self_with_access_vp_registers_succeeds(world: World) -> None:
    c = world.active_child(privileges=with_privileges(world, PP.AccessVpRegisters), vps=(0, 1))
    res = world.get_registers(SELF, HV_VP_INDEX_SELF, [R.VpIndex], caller=c, vp=1)
    assert (res.status, res.reps_completed) == (S.SUCCESS, 1)
    assert int.from_bytes(res.output[:16], "little") == 1  # VP_INDEX_SELF is the calling VP


def test_7_5_79_set_registers_of_self_with_access_vp_registers_succeeds(world: World) -> None:
    c = world.active_child(privileges=with_privileges(world, PP.AccessVpRegisters))
    assert world.set_registers(SELF, 0, [(R.Rax, 42)], caller=c).status is S.SUCCESS
    assert world.register(c, 0, R.Rax) == 42


def test_7_5_79_get_registers_of_another_partitions_child_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    assert world.get_registers(child, 0, [R.Rip], caller=intruder).status is S.ACCESS_DENIED


def test_7_5_80_nonzero_reserved_header_byte_is_invalid_parameter(world: World, child: int) -> None:
    res = world.get_registers(child, 0, [R.Rip], reserved=b"\x01\x00\x00")
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)


@pytest.mark.parametrize("target_vtl", [0x20, 0x80, 0x11], ids=["rsvd-bit5", "rsvd-bit7", "vtl1"])
def test_7_5_80_reserved_or_unavailable_target_vtl_is_invalid_parameter(
    world: World, child: int, target_vtl: int
) -> None:
    header = VP_REGISTERS_INPUT.pack(VpRegistersInput(child, 0, target_vtl, bytes(3)))
    res = world.call(control(C.GetVpRegisters, rep_count=1), header + world.u32s([R.Rip]))
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)


def test_7_5_80_use_target_vtl_0_is_accepted(world: World, child: int) -> None:
    header = VP_REGISTERS_INPUT.pack(VpRegistersInput(child, 0, 0x10, bytes(3)))
    res = world.call(control(C.GetVpRegisters, rep_count=1), header + world.u32s([R.Rip]))
    assert (res.status, res.reps_completed) == (S.SUCCESS, 1)


def test_4_13_get_registers_of_a_nonexistent_vp_is_invalid_vp_index(world: World, child: int) -> None:
    assert world.get_registers(child, 7, [R.Rip]).status is S.INVALID_VP_INDEX


def test_4_13_get_registers_in_created_is_invalid_partition_state(world: World, created: int) -> None:
    assert world.get_registers(created, 0, [R.Rip]).status is S.INVALID_PARTITION_STATE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from([R.Rax, R.R15, R.Rip, R.Cr2, R.KernelGsBase, R.Xmm0, R.Xmm15]),
    value=st.integers(0, 2**128 - 1),
)
def test_4_14_general_registers_round_trip(world: World, child: int, name: RegisterName, value: int) -> None:
    if name < R.Xmm0 or name > R.Xmm15:
        value &= U64
    assert world.set_registers(child, 0, [(name, value)]).status is S.SUCCESS
    assert world.register(child, 0, name) == value


def test_4_14_64_bit_register_rejects_bits_beyond_its_width(world: World, child: int) -> None:
    res = world.set_registers(child, 0, [(R.Rax, 1 << 64)])
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)


# --- StartVirtualProcessor (4.45) ---------------------------------------------------------------
def _context(*, rip: int = 0x1000, rflags: int = 0x2) -> InitialVpContext:
    code = SEGMENT.pack(X64Segment(0, 0xFFFF_FFFF, 0x08, 0xA09B))
    data = SEGMENT.pack(X64Segment(0, 0xFFFF_FFFF, 0x10, 0xC093))
    tr = SEGMENT.pack(X64Segment(0, 0x67, 0x18, 0x8B))
    ldtr = SEGMENT.pack(X64Segment(0, 0, 0, 0x82))
    idtr = TABLE.pack(X64Table(0, 0, 0, 0xFFF, 0x2000))
    gdtr = TABLE.pack(X64Table(0, 0, 0, 0x1F, 0x3000))
    return InitialVpContext(
        rip, 0x8000, rflags, code, data, data, data, data, data, tr, ldtr, idtr, gdtr,
        0x500, 0x8000_0011, 0x4000, 0x20, 0x0007_0406_0007_0406,
    )  # fmt: skip


def start_vp(
    world: World,
    partition_id: int,
    vp_index: int,
    *,
    caller: int | None = None,
    vtl: int = 0,
    ctx: InitialVpContext | None = None,
) -> HvStatus:
    header = START_VIRTUAL_PROCESSOR_HEADER.pack(
        StartVirtualProcessorHeader(partition_id, vp_index, vtl, bytes(3))
    )
    body = INITIAL_VP_CONTEXT.pack(ctx if ctx is not None else _context())
    return world.simple(C.StartVirtualProcessor, header + body, caller=caller)


def test_7_5_81_start_vp_without_the_privilege_is_access_denied(world: World, child: int) -> None:
    assert start_vp(world, SELF, 1, caller=child) is S.ACCESS_DENIED
    assert world.register(child, 1, R.InternalActivityState) != 0  # still waiting for startup


def test_7_5_81_start_vp_with_the_privilege_starts_its_own_ap(world: World) -> None:
    c = world.active_child(privileges=with_privileges(world, PP.StartVirtualProcessor), vps=(0, 1))
    assert start_vp(world, SELF, 1, caller=c) is S.SUCCESS
    assert world.register(c, 1, R.InternalActivityState) == 0


def test_7_5_81_start_vp_of_another_partitions_child_is_access_denied(
    world: World, child: int, intruder: int
) -> None:
    assert start_vp(world, child, 1, caller=intruder) is S.ACCESS_DENIED


def test_7_5_82_start_vp_on_a_created_partition_is_invalid_partition_state(
    world: World, created: int
) -> None:
    assert start_vp(world, created, 0) is S.INVALID_PARTITION_STATE


def test_7_5_82_start_vp_on_a_finalized_partition_is_invalid_partition_state(
    world: World, child: int
) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert start_vp(world, child, 1) is S.INVALID_PARTITION_STATE


def test_7_5_83_start_of_a_nonexistent_vp_is_invalid_vp_index(world: World, child: int) -> None:
    assert start_vp(world, child, 9) is S.INVALID_VP_INDEX


def test_4_45_start_vp_of_a_nonexistent_partition_is_invalid_partition_id(world: World) -> None:
    assert start_vp(world, 0x1234, 0) is S.INVALID_PARTITION_ID


def test_4_45_start_vp_loads_the_initial_context(world: World, child: int) -> None:
    assert start_vp(world, child, 1) is S.SUCCESS
    res = world.get_registers(child, 1, [R.Rip, R.Rsp, R.Cr0, R.Cr3, R.Efer, R.Cs])
    values = [int.from_bytes(res.output[16 * i : 16 * i + 16], "little") for i in range(6)]
    ctx = _context()
    assert values == [ctx.rip, ctx.rsp, ctx.cr0, ctx.cr3, ctx.efer, int.from_bytes(ctx.cs, "little")]
    assert world.register(child, 1, R.InternalActivityState) == 0


def test_4_45_started_ap_runs_once_explicit_suspend_is_cleared(world: World, child: int) -> None:
    assert start_vp(world, child, 1) is S.SUCCESS
    assert world.set_registers(child, 1, [(R.ExplicitSuspend, 0)]).status is S.SUCCESS
    world.sim.run(until_ns=world.sim.now_ns + 1_000_000)
    assert world.register(child, 1, R.VpRuntime) > 0


def test_4_45_starting_a_started_vp_is_invalid_vp_state(world: World, child: int) -> None:
    assert start_vp(world, child, 1) is S.SUCCESS
    assert start_vp(world, child, 1) is S.INVALID_VP_STATE


def test_4_45_the_bsp_is_started_at_reset(world: World, child: int) -> None:
    assert start_vp(world, child, 0) is S.INVALID_VP_STATE


def test_4_45_invalid_initial_context_is_invalid_register_value(world: World, child: int) -> None:
    assert start_vp(world, child, 1, ctx=_context(rflags=0)) is S.INVALID_REGISTER_VALUE
    assert world.register(child, 1, R.Rip) == 0xFFF0  # nothing loaded


@pytest.mark.parametrize("vtl", [1, 2])
def test_4_45_start_vp_in_a_higher_vtl_is_invalid_vtl_state(world: World, child: int, vtl: int) -> None:
    assert start_vp(world, child, 1, vtl=vtl) is S.INVALID_VTL_STATE
