"""Virtual interrupts, TLB flushes and CPUID queries from the caller's side: AssertVirtualInterrupt
and ClearVirtualInterrupt (HYPERCALLS.md 4.34-4.35, 5.13, conformance 7.7 99-103),
FlushVirtualAddressSpace / FlushVirtualAddressList (4.27-4.28) and GetVpCpuidValues (4.15).

Statuses are judged on the conftest world (P = the root, C = its ACTIVE child with VPs 0 and 1,
G = an unrelated partition). Delivery is judged on what the child's VPs see: their virtual APICs
(``VpActor.apic_pending`` / ``apic_taken`` / ``nmis``) and, for booted children, what a guest program
executing ``WaitInterrupt`` takes. The flush tests give a booted child RAM and 4-level page tables
(GVA pages 5-8 -> GPA pages 9-12); the guest reads through its translation cache, and a guest that
changed a page-table entry keeps the old translation until the flush. TranslateVirtualAddress with
TLB_FLUSH_INHIBIT locks a VP's TLB (TlbLocked); a guest flush naming it suspends the flushing VP
until the parent clears the lock, then completes (``flush_waits_for_tlb_lock = False`` ignores locks).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from hvsim.actors.hvdef import (
    ASSERT_VIRTUAL_INTERRUPT_INPUT,
    CPUID_QUERY,
    CPUID_RESULT_PARAMETERS,
    FLUSH_ALL_PROCESSORS,
    FLUSH_ALL_VIRTUAL_ADDRESS_SPACES,
    FLUSH_NON_GLOBAL_MAPPINGS_ONLY,
    FLUSH_USE_EXTENDED_RANGE_FORMAT,
    FLUSH_VIRTUAL_ADDRESS_INPUT,
    GET_VP_CPUID_VALUES_HEADER,
    HV_ANY_VP,
    HV_INTERRUPT_VECTOR_NONE,
    HV_PARTITION_ID_SELF,
    INTERRUPT_LEVEL,
    INTERRUPT_LOGICAL,
    PARTITION_ID_INPUT,
    REGISTER_INTERCEPT_RESULT_HEADER,
    SEGMENT,
    AssertVirtualInterruptInput,
    CpuidQuery,
    CpuidResultParameters,
    FlushVirtualAddressInput,
    GetVpCpuidValuesHeader,
    HvStatus,
    HypercallCode,
    InterceptType,
    InterruptType,
    MapGpaFlags,
    PartitionIdInput,
    RegisterInterceptResultHeader,
    RegisterName,
    TranslateGvaFlags,
    control,
)
from hvsim.actors.hypercall import HypercallResult
from hvsim.actors.vp import VpActor
from hvsim.actors.workload import (
    Compute,
    Cpuid,
    Halt,
    Hypercall,
    Op,
    Program,
    ReadMemory,
    WaitInterrupt,
    WriteMemory,
)
from hvsim.scenarios.host import PartitionSpec, ReferenceHost

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
IT = InterruptType
R = RegisterName
F = MapGpaFlags
SELF = HV_PARTITION_ID_SELF
NONE = HV_INTERRUPT_VECTOR_NONE
ALL_CPUS, ALL_SPACES = FLUSH_ALL_PROCESSORS, FLUSH_ALL_VIRTUAL_ADDRESS_SPACES
#: InternalActivityState of an AP waiting for SIPI.
STARTUP_SUSPEND = 1
#: Long enough for an asserted interrupt to reach the VP and a guest op or two to run.
SETTLE_NS = 100_000
_U64 = struct.Struct("<Q")
_CPUID_RESULT = struct.Struct("<IIII")


# --- raw calls ------------------------------------------------------------------------------------
def cached(vp: Any) -> dict[int, int]:
    """A VP's translation cache as GVA page -> GPA page (entries also record write permission)."""
    return {gva: entry[0] for gva, entry in vp.tlb.items()}


def assert_irq(
    w: World, pid: int, kind: int, vector: int = 0x30, dest: int = 0, *, level: bool = False,
    logical: bool = False, extra_control: int = 0, vtl: int = 0, z0: int = 0, z1: int = 0,
    caller: int | None = None,
) -> HvStatus:  # fmt: skip
    ctl = int(kind) | extra_control | INTERRUPT_LEVEL * level | INTERRUPT_LOGICAL * logical
    return w.simple(C.AssertVirtualInterrupt, assertion(pid, ctl, dest, vector, vtl, z0, z1), caller=caller)


def assertion(pid: int, ctl: int, dest: int, vector: int, vtl: int = 0, z0: int = 0, z1: int = 0) -> bytes:
    """An AssertVirtualInterrupt input block."""
    return ASSERT_VIRTUAL_INTERRUPT_INPUT.pack(
        AssertVirtualInterruptInput(pid, ctl, dest, vector, vtl, z0, z1)
    )


def clear_irq(w: World, pid: int, *, caller: int | None = None) -> HvStatus:
    return w.simple(C.ClearVirtualInterrupt, PARTITION_ID_INPUT.pack(PartitionIdInput(pid)), caller=caller)


def flush_space(w: World, caller: int, flags: int, mask: int = 0, space: int = 0, *, vp: int = 0) -> HvStatus:
    data = FLUSH_VIRTUAL_ADDRESS_INPUT.pack(FlushVirtualAddressInput(space, flags, mask))
    return w.call(control(C.FlushVirtualAddressSpace), data, caller=caller, vp=vp).status


def flush_list_input(flags: int, mask: int, entries: Sequence[int], space: int = 0) -> bytes:
    header = FLUSH_VIRTUAL_ADDRESS_INPUT.pack(FlushVirtualAddressInput(space, flags, mask))
    return header + b"".join(_U64.pack(e) for e in entries)


def flush_list(
    w: World, caller: int, flags: int, mask: int, entries: Sequence[int], space: int = 0
) -> HypercallResult:
    data = flush_list_input(flags, mask, entries, space)
    return w.call(control(C.FlushVirtualAddressList, rep_count=len(entries)), data, caller=caller)


def cpuid_values(
    w: World, pid: int, vp: int, queries: Sequence[tuple[int, int]], *, flags: int = 0,
    reserved: int = 0, padding: int = 0, rep_start: int = 0, caller: int | None = None,
) -> HypercallResult:  # fmt: skip
    header = GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(pid, vp, flags, reserved, padding))
    body = b"".join(CPUID_QUERY.pack(CpuidQuery(leaf, sub, 0, 0)) for leaf, sub in queries)
    ctl = control(C.GetVpCpuidValues, rep_count=len(queries), rep_start=rep_start)
    return w.call(ctl, header + body, caller=caller)


def cpuid_results(res: HypercallResult) -> list[tuple[int, int, int, int]]:
    assert res.status is S.SUCCESS, res.status
    return list(_CPUID_RESULT.iter_unpack(res.output))


def register_cpuid(
    w: World, pid: int, vp: int, leaf: int, values: tuple[int, int, int, int],
    masks: tuple[int, int, int, int] = (0xFFFF_FFFF,) * 4,
) -> None:  # fmt: skip
    header = REGISTER_INTERCEPT_RESULT_HEADER.pack(
        RegisterInterceptResultHeader(pid, vp, InterceptType.X64Cpuid)
    )
    pairs = [x for v, m in zip(values, masks, strict=True) for x in (v, m)]
    params = CPUID_RESULT_PARAMETERS.pack(CpuidResultParameters(leaf, 0, 0, 0, 0, *pairs))
    assert w.simple(C.RegisterInterceptResult, header + params) is S.SUCCESS


# --- helpers over the child's VPs ---------------------------------------------------------------------
def settle(w: World, ns: int = SETTLE_NS) -> None:
    w.sim.run(w.sim.now_ns + ns)


def actor(w: World, pid: int, vp: int = 0) -> VpActor:
    a = w.sim.vp_actor(pid, vp)
    assert a is not None
    return a


def pending(w: World, pid: int, vps: Sequence[int]) -> list[list[int]]:
    settle(w, 10_000)
    return [list(actor(w, pid, i).apic_pending) for i in vps]


def set_regs(w: World, pid: int, vp: int, values: dict[int, int]) -> None:
    out = w.run(w.api.set_registers(pid, vp, values))
    assert out.status is S.SUCCESS, out


def boot(
    w: World,
    programs: Program | Callable[[int], Program],
    *,
    vps: int = 1,
    prepare: Callable[[ReferenceHost, int], Generator[Any, Any, None]] | None = None,
) -> int:
    """A child booted by the reference host: VP 0 runs *programs*; the APs wait for SIPI."""
    program = programs if callable(programs) else (lambda _i: programs)
    spec = PartitionSpec(vps=vps, program=program, prepare=prepare)
    return w.run(ReferenceHost(w.sim).boot(spec))


def guest(*ops: Op) -> Program:
    return Program(setup=ops, loop=(Halt(),), name="interrupt-test")


# --- conformance 7.7 99-103 ---------------------------------------------------------------------------
def test_7_7_99_fixed_interrupt_to_apic_0_succeeds_and_is_pending_on_vp_0(world: World, child: int) -> None:
    assert assert_irq(world, child, IT.Fixed, 0x30, 0) is S.SUCCESS
    assert pending(world, child, (0, 1)) == [[0x30], []]


@pytest.mark.parametrize("vector", [256, 300, 0xFFFF, 0xFFFF_FFFE])
def test_7_7_100_vector_outside_0_255_is_invalid_parameter(world: World, child: int, vector: int) -> None:
    assert assert_irq(world, child, IT.Fixed, vector) is S.INVALID_PARAMETER
    assert pending(world, child, (0, 1)) == [[], []]


@pytest.mark.parametrize("dest", [1, 2, 0xFF])
def test_7_7_101_extint_to_a_destination_other_than_0_is_invalid_vp_index(
    world: World, child: int, dest: int
) -> None:
    assert assert_irq(world, child, IT.ExtInt, 0x20, dest) is S.INVALID_VP_INDEX
    assert clear_irq(world, child) is S.NOT_ACKNOWLEDGED  # nothing was latched


def test_7_7_102_extint_again_after_acknowledgement_is_acknowledged_until_cleared(world: World) -> None:
    pid = boot(world, guest(WaitInterrupt()))
    assert assert_irq(world, pid, IT.ExtInt, 0x20) is S.SUCCESS
    settle(world)  # VP 0 runs: it takes the ExtInt (INTA)
    assert actor(world, pid).apic_taken == [0x20]
    assert assert_irq(world, pid, IT.ExtInt, 0x21) is S.ACKNOWLEDGED
    assert assert_irq(world, pid, IT.ExtInt, 0x21) is S.ACKNOWLEDGED
    assert clear_irq(world, pid) is S.SUCCESS
    assert clear_irq(world, pid) is S.NOT_ACKNOWLEDGED  # the latch is clear now
    assert assert_irq(world, pid, IT.ExtInt, 0x21) is S.SUCCESS  # a new assertion
    assert pending(world, pid, (0,)) == [[0x21]]  # the guest waits for one interrupt only


def test_7_7_103_clear_with_nothing_acknowledged_is_not_acknowledged(world: World, child: int) -> None:
    assert clear_irq(world, child) is S.NOT_ACKNOWLEDGED
    assert assert_irq(world, child, IT.Fixed, 0x30) is S.SUCCESS  # a fixed interrupt latches nothing
    assert clear_irq(world, child) is S.NOT_ACKNOWLEDGED


# --- AssertVirtualInterrupt / ClearVirtualInterrupt statuses -------------------------------------------
def test_assert_and_clear_target_statuses(world: World, child: int, intruder: int) -> None:
    assert assert_irq(world, child, IT.Fixed, caller=intruder) is S.ACCESS_DENIED
    assert clear_irq(world, child, caller=intruder) is S.ACCESS_DENIED
    assert assert_irq(world, SELF, IT.Fixed) is S.ACCESS_DENIED  # the root has no parent
    assert clear_irq(world, SELF) is S.ACCESS_DENIED
    assert assert_irq(world, child, IT.Fixed, caller=child) is S.ACCESS_DENIED  # not its own parent
    assert assert_irq(world, 0x1234, IT.Fixed) is S.INVALID_PARTITION_ID
    assert clear_irq(world, 0x1234) is S.INVALID_PARTITION_ID
    created = world.new_child()
    assert assert_irq(world, created, IT.Fixed) is S.INVALID_PARTITION_STATE
    assert clear_irq(world, created) is S.INVALID_PARTITION_STATE
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert assert_irq(world, child, IT.Fixed) is S.INVALID_PARTITION_STATE
    assert clear_irq(world, child) is S.INVALID_PARTITION_STATE


BAD_ASSERTS: dict[str, dict[str, Any]] = {
    "control-bit-34": {"kind": IT.Fixed, "extra_control": 1 << 34},
    "control-bit-63": {"kind": IT.Fixed, "extra_control": 1 << 63},
    "unknown-type-10": {"kind": 10},
    "unknown-type-0xFFFF": {"kind": 0xFFFF},
    "unknown-type-high-bits": {"kind": 1 << 31},
    "vector-256": {"kind": IT.LowestPriority, "vector": 256},
    "sipi-vector-0x100": {"kind": IT.Sipi, "vector": 0x100, "dest": 1},
    "nmi-with-vector": {"kind": IT.Nmi, "vector": 2},
    "init-with-vector": {"kind": IT.Init, "vector": 1, "dest": 1},
    "smi-with-vector": {"kind": IT.Smi, "vector": 0x30},
    "remote-read-with-vector": {"kind": IT.RemoteRead, "vector": 0x30},
    "localint0-with-vector": {"kind": IT.LocalInt0, "vector": 0x30},
    "localint1-with-vector": {"kind": IT.LocalInt1, "vector": 0x30},
    "reserved-z0": {"kind": IT.Fixed, "z0": 1},
    "reserved-z1": {"kind": IT.Fixed, "z1": 0x8000},
    "target-vtl-1": {"kind": IT.Fixed, "vtl": 1},
    "extint-reserved-z1": {"kind": IT.ExtInt, "vector": 0x20, "z1": 1},
}


@pytest.mark.parametrize("args", list(BAD_ASSERTS.values()), ids=list(BAD_ASSERTS))
def test_bad_assertions_are_invalid_parameter_and_deliver_nothing(
    world: World, child: int, args: dict[str, Any]
) -> None:
    assert assert_irq(world, child, **args) is S.INVALID_PARAMETER
    assert pending(world, child, (0, 1)) == [[], []]
    assert [actor(world, child, i).nmis for i in (0, 1)] == [0, 0]
    assert world.sim.hv.partitions[child].vps[1].started is False  # no SIPI got through


GOOD_ASSERTS: dict[str, dict[str, Any]] = {
    "fixed-vector-0": {"kind": IT.Fixed, "vector": 0},
    "fixed-vector-255": {"kind": IT.Fixed, "vector": 255},
    "fixed-vector-none": {"kind": IT.Fixed, "vector": NONE},
    "lowest-priority": {"kind": IT.LowestPriority, "vector": 0x41},
    "nmi-vector-0": {"kind": IT.Nmi, "vector": 0},
    "nmi-vector-none": {"kind": IT.Nmi, "vector": NONE, "level": True},
    "init-ap": {"kind": IT.Init, "vector": 0, "dest": 1},
    "level-logical": {"kind": IT.Fixed, "vector": 0x42, "level": True, "logical": True, "dest": 0b11},
}


@pytest.mark.parametrize("args", list(GOOD_ASSERTS.values()), ids=list(GOOD_ASSERTS))
def test_legal_assertions_succeed(world: World, child: int, args: dict[str, Any]) -> None:
    assert assert_irq(world, child, **args) is S.SUCCESS


@pytest.mark.parametrize(
    ("dest", "logical"),
    [(2, False), (0xFE, False), (0, True), (0b100, True), (1 << 63, True)],
    ids=["apic-2", "apic-0xFE", "logical-empty", "logical-apic-2", "logical-apic-63"],
)
def test_a_destination_with_no_vp_is_invalid_vp_index(
    world: World, child: int, dest: int, logical: bool
) -> None:
    assert assert_irq(world, child, IT.Fixed, 0x30, dest, logical=logical) is S.INVALID_VP_INDEX
    assert assert_irq(world, child, IT.Nmi, 0, dest, logical=logical) is S.INVALID_VP_INDEX
    assert pending(world, child, (0, 1)) == [[], []]


def test_extint_without_a_vp_0_is_invalid_vp_index(world: World) -> None:
    pid = world.active_child(vps=(1,))
    assert assert_irq(world, pid, IT.ExtInt, 0x20, 0) is S.INVALID_VP_INDEX
    assert assert_irq(world, pid, IT.Fixed, 0x30, 1) is S.SUCCESS  # VP 1 is there (APIC ID 1)


# --- delivery ---------------------------------------------------------------------------------------
def test_a_guest_waiting_for_an_interrupt_takes_a_fixed_one(world: World) -> None:
    pid = boot(world, guest(WaitInterrupt(), WaitInterrupt(0x42)))
    settle(world)
    a = actor(world, pid)
    assert a.waiting and a.apic_taken == []
    assert assert_irq(world, pid, IT.Fixed, 0x41) is S.SUCCESS
    settle(world)
    assert a.apic_taken == [0x41] and a.apic_pending == []
    assert a.waiting  # now waiting for 0x42 only
    assert assert_irq(world, pid, IT.Fixed, 0x40) is S.SUCCESS
    settle(world)
    assert a.apic_taken == [0x41] and a.apic_pending == [0x40] and a.waiting
    assert assert_irq(world, pid, IT.Fixed, 0x42) is S.SUCCESS
    settle(world)
    assert a.apic_taken == [0x41, 0x42] and a.apic_pending == [0x40]
    assert a.halted and not a.waiting


def test_lowest_priority_goes_to_the_lowest_vp_of_the_set(world: World) -> None:
    pid = world.active_child(vps=(0, 1, 2, 3))
    assert assert_irq(world, pid, IT.LowestPriority, 0x51, 0b1100, logical=True) is S.SUCCESS
    assert pending(world, pid, range(4)) == [[], [], [0x51], []]
    assert assert_irq(world, pid, IT.LowestPriority, 0x52, 0b1010, logical=True) is S.SUCCESS
    assert assert_irq(world, pid, IT.LowestPriority, 0x53, 0xFF) is S.SUCCESS  # broadcast: all of them
    assert assert_irq(world, pid, IT.LowestPriority, 0x54, 3) is S.SUCCESS  # physical: that one
    assert pending(world, pid, range(4)) == [[0x53], [0x52], [0x51], [0x54]]


def test_broadcast_reaches_every_vp(world: World) -> None:
    pid = world.active_child(vps=(0, 1, 2))
    assert assert_irq(world, pid, IT.Fixed, 0x60, 0xFF) is S.SUCCESS
    assert pending(world, pid, range(3)) == [[0x60]] * 3
    assert assert_irq(world, pid, IT.Nmi, 0, 0xFF) is S.SUCCESS
    assert [actor(world, pid, i).nmis for i in range(3)] == [1, 1, 1]


def test_destinations_are_apic_ids_physical_or_a_logical_mask(world: World, child: int) -> None:
    set_regs(world, child, 0, {R.InitialApicId: 4})
    set_regs(world, child, 1, {R.InitialApicId: 5})
    assert assert_irq(world, child, IT.Fixed, 0x30, 0) is S.INVALID_VP_INDEX  # no VP has APIC ID 0
    assert assert_irq(world, child, IT.Fixed, 0x31, 1) is S.INVALID_VP_INDEX  # nor 1
    assert assert_irq(world, child, IT.Fixed, 0x32, 4) is S.SUCCESS
    assert assert_irq(world, child, IT.Fixed, 0x33, 1 << 5, logical=True) is S.SUCCESS
    assert assert_irq(world, child, IT.Fixed, 0x34, 1 << 4 | 1 << 5, logical=True) is S.SUCCESS
    assert assert_irq(world, child, IT.Fixed, 0x35, 0b11, logical=True) is S.INVALID_VP_INDEX
    assert pending(world, child, (0, 1)) == [[0x32, 0x34], [0x33, 0x34]]


def test_an_apic_id_beyond_the_logical_mask_is_reached_only_physically(world: World, child: int) -> None:
    set_regs(world, child, 1, {R.InitialApicId: 70})
    assert assert_irq(world, child, IT.Fixed, 0x30, 70) is S.SUCCESS
    assert assert_irq(world, child, IT.Fixed, 0x31, (1 << 64) - 1, logical=True) is S.SUCCESS  # VP 0 only
    assert pending(world, child, (0, 1)) == [[0x31], [0x30]]


def test_nmis_are_counted_not_queued(world: World, child: int) -> None:
    for _ in range(3):
        assert assert_irq(world, child, IT.Nmi, 0, 1) is S.SUCCESS
    assert [actor(world, child, i).nmis for i in (0, 1)] == [0, 3]
    assert pending(world, child, (0, 1)) == [[], []]


def _ap_state(w: World, pid: int, vp: int = 1) -> tuple[bool, int]:
    return w.sim.hv.partitions[pid].vps[vp].runnable, w.register(pid, vp, R.InternalActivityState)


def test_sipi_starts_a_waiting_ap_at_vector_shl_12_and_init_sends_it_back(world: World) -> None:
    pid = boot(world, guest(), vps=2)
    assert _ap_state(world, pid) == (False, STARTUP_SUSPEND)  # an AP waits for SIPI
    assert assert_irq(world, pid, IT.Sipi, 0x9A, 1) is S.SUCCESS
    settle(world)
    assert _ap_state(world, pid) == (True, 0)
    assert world.register(pid, 1, R.Rip) == 0
    cs = SEGMENT.unpack(world.register(pid, 1, R.Cs).to_bytes(16, "little"))
    assert (cs.base, cs.selector) == (0x9A000, 0x9A00)
    # A second SIPI to a running AP does nothing.
    set_regs(world, pid, 1, {R.Rip: 0x1234})
    assert assert_irq(world, pid, IT.Sipi, 0x10, 1) is S.SUCCESS
    assert world.register(pid, 1, R.Rip) == 0x1234
    assert SEGMENT.unpack(world.register(pid, 1, R.Cs).to_bytes(16, "little")).base == 0x9A000
    # INIT: back to wait-for-SIPI, not runnable.
    assert assert_irq(world, pid, IT.Init, 0, 1) is S.SUCCESS
    settle(world)
    assert _ap_state(world, pid) == (False, STARTUP_SUSPEND)
    # ... and the next SIPI starts it again, at the new vector.
    assert assert_irq(world, pid, IT.Sipi, 0x10, 1) is S.SUCCESS
    assert _ap_state(world, pid) == (True, 0)
    assert SEGMENT.unpack(world.register(pid, 1, R.Cs).to_bytes(16, "little")).base == 0x10000
    assert world.sim.hv.partitions[pid].vps[0].runnable  # VP 0 was never disturbed


def test_an_ap_started_by_sipi_runs_its_program(world: World) -> None:
    programs = {0: guest(), 1: guest(WaitInterrupt(0x77))}
    pid = boot(world, lambda i: programs[i], vps=2)
    assert assert_irq(world, pid, IT.Fixed, 0x77, 1) is S.SUCCESS  # pending while the AP waits for SIPI
    settle(world)
    assert actor(world, pid, 1).apic_taken == []
    assert assert_irq(world, pid, IT.Sipi, 0x08, 1) is S.SUCCESS
    settle(world)
    assert actor(world, pid, 1).apic_taken == [0x77] and actor(world, pid, 1).halted


def _ap_program(*ops: Op) -> Callable[[int], Program]:
    return lambda i: guest() if i == 0 else guest(*ops)


def test_init_abandons_an_aps_program_and_the_next_sipi_runs_it_from_the_start(world: World) -> None:
    pid = boot(world, _ap_program(Hypercall(control(C.GetPartitionId)), WaitInterrupt(0x77)), vps=2)
    ap = actor(world, pid, 1)
    assert assert_irq(world, pid, IT.Sipi, 0x08, 1) is S.SUCCESS
    settle(world)
    assert (ap.hypercalls, ap.waiting) == (1, True)  # first run: called, now waiting for 0x77
    assert assert_irq(world, pid, IT.Init, 0, 1) is S.SUCCESS
    settle(world)
    assert (ap.hypercalls, ap.waiting, ap.inits) == (1, False, 1)
    assert _ap_state(world, pid) == (False, STARTUP_SUSPEND)
    assert assert_irq(world, pid, IT.Fixed, 0x77, 1) is S.SUCCESS  # pending; the AP is not running
    assert assert_irq(world, pid, IT.Sipi, 0x09, 1) is S.SUCCESS
    settle(world)
    assert ap.hypercalls == 2  # the program ran again from its first op
    assert ap.apic_taken == [0x77] and ap.halted


def test_init_restarts_a_halted_ap_and_one_in_the_middle_of_an_op(world: World) -> None:
    pid = boot(world, _ap_program(Compute(1_000_000), Hypercall(control(C.GetPartitionId))), vps=2)
    ap = actor(world, pid, 1)
    assert assert_irq(world, pid, IT.Sipi, 0x08, 1) is S.SUCCESS
    settle(world, 500_000)  # half-way through the compute
    assert assert_irq(world, pid, IT.Init, 0, 1) is S.SUCCESS
    settle(world, 2_000_000)
    assert (ap.hypercalls, ap.halted) == (0, False)  # the interrupted run never made its call
    assert assert_irq(world, pid, IT.Sipi, 0x08, 1) is S.SUCCESS
    settle(world, 2_000_000)
    assert (ap.hypercalls, ap.halted) == (1, True)
    assert assert_irq(world, pid, IT.Init, 0, 1) is S.SUCCESS  # halted: INIT wakes it into wait-for-SIPI
    assert assert_irq(world, pid, IT.Sipi, 0x08, 1) is S.SUCCESS
    settle(world, 2_000_000)
    assert (ap.hypercalls, ap.halted, ap.inits) == (2, True, 2)


def test_init_clears_the_aps_pending_interrupts(world: World) -> None:
    pid = boot(world, _ap_program(WaitInterrupt(0x77)), vps=2)
    assert assert_irq(world, pid, IT.Sipi, 0x08, 1) is S.SUCCESS
    assert assert_irq(world, pid, IT.Fixed, 0x55, 1) is S.SUCCESS
    assert pending(world, pid, (1,)) == [[0x55]]
    assert assert_irq(world, pid, IT.Init, 0, 1) is S.SUCCESS
    assert pending(world, pid, (1,)) == [[]]


def test_init_on_vp_0_restarts_its_program_at_once_from_the_reset_vector(world: World) -> None:
    pid = boot(world, guest(Hypercall(control(C.GetPartitionId)), WaitInterrupt(STEP)), vps=2)
    settle(world)
    bsp = actor(world, pid, 0)
    assert bsp.hypercalls == 1
    set_regs(world, pid, 0, {R.Rip: 0x1234})
    assert assert_irq(world, pid, IT.Init, 0, 0) is S.SUCCESS
    settle(world)
    assert (bsp.hypercalls, bsp.inits, bsp.waiting) == (2, 1, True)
    assert world.sim.hv.partitions[pid].vps[0].runnable  # VP 0 does not wait for SIPI
    assert world.register(pid, 0, R.Rip) == 0xFFF0
    cs = SEGMENT.unpack(world.register(pid, 0, R.Cs).to_bytes(16, "little"))
    assert (cs.base, cs.selector) == (0xFFFF_0000, 0xF000)
    assert _ap_state(world, pid) == (False, STARTUP_SUSPEND)  # the AP was not touched


def test_sipi_with_vector_none_does_not_start_an_ap(world: World) -> None:
    pid = boot(world, guest(), vps=2)
    assert assert_irq(world, pid, IT.Sipi, NONE, 1) is S.SUCCESS
    assert world.get_registers(pid, 1, [R.Cs]).status is S.SUCCESS
    assert _ap_state(world, pid) == (False, STARTUP_SUSPEND)


@pytest.mark.parametrize(
    ("kind", "level"),
    [
        (IT.Nmi, False),
        (IT.Nmi, True),
        (IT.Init, False),
        (IT.Init, True),
    ],
    ids=["nmi-edge", "nmi-level", "init-edge", "init-level"],
)
def test_a_de_assertion_delivers_nothing(world: World, kind: IT, level: bool) -> None:
    pid = boot(world, guest(), vps=2)
    assert assert_irq(world, pid, IT.Sipi, 0x10, 1) is S.SUCCESS  # the AP runs
    assert assert_irq(world, pid, kind, NONE, 1, level=level) is S.SUCCESS
    settle(world)
    assert (actor(world, pid, 1).nmis, _ap_state(world, pid)) == (0, (True, 0))


def test_a_vector_asserted_again_while_pending_is_pending_once(world: World, child: int) -> None:
    for vector in (0x30, 0x31, 0x30, 0x30):
        assert assert_irq(world, child, IT.Fixed, vector, 0) is S.SUCCESS
    assert assert_irq(world, child, IT.LowestPriority, 0x31, 0b11, logical=True) is S.SUCCESS
    assert pending(world, child, (0, 1)) == [[0x30, 0x31], []]  # one IRR bit per vector


def test_level_triggered_vector_none_withdraws_a_pending_interrupt_edge_does_not(
    world: World, child: int
) -> None:
    assert assert_irq(world, child, IT.Fixed, 0x50, 0) is S.SUCCESS
    assert assert_irq(world, child, IT.Fixed, NONE, 0) is S.SUCCESS  # edge-triggered: nothing withdrawn
    assert pending(world, child, (0, 1)) == [[0x50], []]
    assert assert_irq(world, child, IT.Fixed, NONE, 0, level=True) is S.SUCCESS
    assert pending(world, child, (0, 1)) == [[], []]


def test_a_guest_never_takes_a_level_interrupt_withdrawn_before_it_ran(world: World) -> None:
    def prepare(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
        for vector, level in ((0x50, True), (NONE, True)):
            ctl = IT.Fixed | INTERRUPT_LEVEL * level
            data = assertion(pid, ctl, 0, vector)
            res = yield from host.api.simple(C.AssertVirtualInterrupt, data)
            assert res.status is S.SUCCESS

    pid = boot(world, guest(WaitInterrupt(timeout_ns=50_000)), prepare=prepare)
    settle(world)
    a = actor(world, pid)
    assert (a.apic_taken, a.wait_timeouts, a.halted) == ([], 1, True)


def test_an_edge_interrupt_survives_an_edge_none_and_the_guest_takes_it(world: World) -> None:
    def prepare(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
        for vector in (0x50, NONE):
            data = assertion(pid, IT.Fixed, 0, vector)
            res = yield from host.api.simple(C.AssertVirtualInterrupt, data)
            assert res.status is S.SUCCESS

    pid = boot(world, guest(WaitInterrupt(timeout_ns=50_000)), prepare=prepare)
    settle(world)
    a = actor(world, pid)
    assert (a.apic_taken, a.wait_timeouts) == ([0x50], 0)


def _resume(w: World, pid: int, vp: int = 0, suspend: int = 0) -> None:
    set_regs(w, pid, vp, {R.ExplicitSuspend: suspend})
    settle(w)


def test_extint_is_not_acknowledged_while_vp_0_is_suspended_and_is_once_it_runs(
    world: World, child: int
) -> None:
    assert not world.sim.hv.partitions[child].vps[0].runnable  # created, ExplicitSuspend set
    assert assert_irq(world, child, IT.ExtInt, 0x20) is S.SUCCESS
    settle(world)
    assert clear_irq(world, child) is S.NOT_ACKNOWLEDGED
    assert assert_irq(world, child, IT.ExtInt, 0x20) is S.SUCCESS  # not acknowledged: no latch yet
    _resume(world, child)  # VP 0 runs and takes it
    assert assert_irq(world, child, IT.ExtInt, 0x21) is S.ACKNOWLEDGED
    assert clear_irq(world, child) is S.SUCCESS
    # Suspended again: a new ExtInt waits for VP 0 once more.
    _resume(world, child, suspend=1)
    assert assert_irq(world, child, IT.ExtInt, 0x22) is S.SUCCESS
    settle(world)
    assert assert_irq(world, child, IT.ExtInt, 0x22) is S.SUCCESS
    assert clear_irq(world, child) is S.NOT_ACKNOWLEDGED
    _resume(world, child)
    assert clear_irq(world, child) is S.SUCCESS


def test_extint_de_asserted_before_acknowledgement_latches_nothing(world: World, child: int) -> None:
    assert assert_irq(world, child, IT.ExtInt, 0x20) is S.SUCCESS
    assert assert_irq(world, child, IT.ExtInt, NONE) is S.SUCCESS
    _resume(world, child)
    assert clear_irq(world, child) is S.NOT_ACKNOWLEDGED
    assert assert_irq(world, child, IT.ExtInt, 0x21) is S.SUCCESS  # a fresh assertion, taken at once
    settle(world)
    assert assert_irq(world, child, IT.ExtInt, 0x21) is S.ACKNOWLEDGED


@pytest.mark.parametrize("clearing", ["init", "level-withdrawal"])
def test_an_extint_cleared_from_the_apic_before_vp_0_ran_is_never_acknowledged(
    world: World, child: int, clearing: str
) -> None:
    assert assert_irq(world, child, IT.ExtInt, 0x20) is S.SUCCESS  # VP 0 suspended: not taken yet
    if clearing == "init":
        assert assert_irq(world, child, IT.Init, 0, 0) is S.SUCCESS
    else:
        assert assert_irq(world, child, IT.Fixed, NONE, 0, level=True) is S.SUCCESS
    _resume(world, child)
    assert pending(world, child, (0,)) == [[]]
    assert clear_irq(world, child) is S.NOT_ACKNOWLEDGED  # no one took it (HYPERCALLS.md 4.35)
    assert assert_irq(world, child, IT.ExtInt, 0x21) is S.SUCCESS  # not ACKNOWLEDGED: a new one
    settle(world)
    assert assert_irq(world, child, IT.ExtInt, 0x22) is S.ACKNOWLEDGED  # that one VP 0 took


def test_a_guest_never_takes_an_extint_de_asserted_before_it_ran(world: World) -> None:
    def prepare(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
        for vector in (0x20, NONE):
            data = assertion(pid, IT.ExtInt, 0, vector)
            res = yield from host.api.simple(C.AssertVirtualInterrupt, data)
            assert res.status is S.SUCCESS

    pid = boot(world, guest(WaitInterrupt(timeout_ns=50_000)), prepare=prepare)
    settle(world)
    assert actor(world, pid).apic_taken == []


# --- TLB flushes: statuses ------------------------------------------------------------------------------
BAD_FLUSHES: dict[str, tuple[int, int, int]] = {  # flags, processor mask, address space
    "reserved-flag-0x10": (ALL_CPUS | ALL_SPACES | 0x10, 0, 0),
    "reserved-flag-63": (ALL_CPUS | ALL_SPACES | 1 << 63, 0, 0),
    "empty-mask": (ALL_SPACES, 0, 0),
    "address-space-beyond-maxphyaddr": (ALL_CPUS, 0, 1 << 46),
    "address-space-bit-63": (ALL_CPUS, 0, 1 << 63),
}


@pytest.mark.parametrize(("flags", "mask", "space"), list(BAD_FLUSHES.values()), ids=list(BAD_FLUSHES))
def test_bad_flushes_are_invalid_parameter(
    world: World, child: int, flags: int, mask: int, space: int
) -> None:
    vps = world.sim.hv.partitions[child].vps
    assert flush_space(world, child, flags, mask, space) is S.INVALID_PARAMETER
    res = flush_list(world, child, flags, mask, [5 << 12, 6 << 12], space)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert [vp.tlb_flushes for vp in vps.values()] == [0, 0]


def test_flush_option_rules(world: World, child: int) -> None:
    assert flush_space(world, child, ALL_SPACES, 0b1) is S.SUCCESS
    assert flush_space(world, child, ALL_CPUS) is S.SUCCESS  # mask ignored; address space 0 is a CR3
    assert flush_space(world, child, ALL_CPUS | ALL_SPACES, 0, (1 << 46) | 0x1000) is S.SUCCESS  # ignored
    assert flush_space(world, child, ALL_CPUS, 0, (1 << 46) - 0x1000) is S.SUCCESS
    assert flush_space(world, child, ALL_CPUS | FLUSH_NON_GLOBAL_MAPPINGS_ONLY) is S.SUCCESS
    assert flush_space(world, child, ALL_CPUS | FLUSH_USE_EXTENDED_RANGE_FORMAT) is S.INVALID_PARAMETER
    res = flush_list(world, child, ALL_CPUS | FLUSH_NON_GLOBAL_MAPPINGS_ONLY, 0, [5 << 12])
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    res = flush_list(world, child, ALL_CPUS | FLUSH_USE_EXTENDED_RANGE_FORMAT, 0, [5 << 12])
    assert (res.status, res.reps_completed) == (S.SUCCESS, 1)
    res = flush_list(world, child, ALL_SPACES, 0b10, [5 << 12, 0xFFFF_FFFF_FFFF_F000, 7 << 12 | 0xFFF])
    assert (res.status, res.reps_completed) == (S.SUCCESS, 3)  # GVAs beyond the space are ignored


def test_flush_call_classes(world: World, child: int) -> None:
    data = flush_list_input(ALL_CPUS | ALL_SPACES, 0, [5 << 12])
    res = world.call(control(C.FlushVirtualAddressSpace, rep_count=1), data, caller=child)
    assert res.status is S.INVALID_HYPERCALL_INPUT  # a simple call
    res = world.call(control(C.FlushVirtualAddressList), data, caller=child)
    assert res.status is S.INVALID_HYPERCALL_INPUT  # a rep call needs a rep count


def test_flushes_count_on_the_vps_they_name_and_only_the_callers(world: World, child: int) -> None:
    vps = world.sim.hv.partitions[child].vps
    root_vps = world.sim.hv.root.vps

    def counts() -> tuple[list[int], list[int]]:
        return [vp.tlb_flushes for vp in vps.values()], [vp.tlb_flushes for vp in root_vps.values()]

    assert flush_space(world, child, ALL_SPACES, 0b01) is S.SUCCESS
    assert counts() == ([1, 0], [0, 0])
    assert flush_space(world, child, ALL_SPACES, 0b10, vp=0) is S.SUCCESS  # any VP may flush another
    assert counts() == ([1, 1], [0, 0])
    assert flush_space(world, child, ALL_CPUS | ALL_SPACES) is S.SUCCESS
    assert counts() == ([2, 2], [0, 0])
    assert flush_space(world, child, ALL_SPACES, 0b100) is S.SUCCESS  # no VP 2: nothing to flush
    assert counts() == ([2, 2], [0, 0])
    assert flush_list(world, child, ALL_SPACES, 0b11, [5 << 12, 9 << 12]).status is S.SUCCESS
    assert counts() == ([3, 3], [0, 0])  # one flush per invocation, not per element
    assert flush_space(world, world.root, ALL_CPUS | ALL_SPACES) is S.SUCCESS  # the root: its own VPs
    assert counts() == ([3, 3], [1, 1])
    assert flush_space(world, child, ALL_SPACES | 0x10, 0b11) is S.INVALID_PARAMETER
    assert counts() == ([3, 3], [1, 1])


# --- TLB flushes: a guest with page tables --------------------------------------------------------------
RAM_PAGES = 32
PML4, PDPT, PD, PT = 0x1000, 0x2000, 0x3000, 0x4000
#: GVA page n -> GPA page n + 4 for n in 5..8; GPA pages 13-16 are spare targets.
GVA_PAGES = (5, 6, 7, 8)
STEP = 0xEE


def _data(gpa_page: int) -> int:
    return 0x1111_0000 + gpa_page


def _pte(gpa_page: int) -> int:
    return gpa_page << 12 | 7


def paged_guest(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
    """Host preparation: RAM at GPA 0, 4-level page tables, every data page tagged with its number."""
    api = host.api
    pages = host.sim.alloc_host_pages(RAM_PAGES)
    host.guest_ram[pid] = pages
    out = yield from api.map_gpa_pages(pid, 0, pages, F.PERMISSIONS)
    assert out.status is S.SUCCESS
    for gpa, value in (
        (PML4, PDPT | 7), (PDPT, PD | 7), (PD, PT | 7),
        *((PT + 8 * n, _pte(n + 4)) for n in GVA_PAGES),
        *((page << 12, _data(page)) for page in range(9, 17)),
    ):  # fmt: skip
        api.write_guest(pid, gpa, value.to_bytes(8, "little"))
    out = yield from api.set_registers(pid, 0, {R.Cr3: PML4, R.Cr4: 0x20, R.Efer: 0x500, R.Cr0: 0x8001_0011})
    assert out.status is S.SUCCESS


def boot_paged(w: World, *ops: Op) -> int:
    return boot(w, guest(*ops), prepare=paged_guest)


def step(w: World, pid: int) -> None:
    """Let a guest blocked in ``WaitInterrupt(STEP)`` go on to its next wait."""
    assert assert_irq(w, pid, IT.Fixed, STEP, 0) is S.SUCCESS
    settle(w)


def read(n: int) -> ReadMemory:
    return ReadMemory(n << 12, 8, virtual=True)


def test_a_guest_keeps_its_cached_translation_until_it_flushes(world: World) -> None:
    flush = FLUSH_VIRTUAL_ADDRESS_INPUT.pack(FlushVirtualAddressInput(0, ALL_CPUS | ALL_SPACES, 0))
    pid = boot_paged(
        world,
        read(5),
        WriteMemory(PT + 8 * 5, _pte(13)),  # the guest's kernel repoints GVA page 5
        read(5),
        Hypercall(control(C.FlushVirtualAddressSpace), flush),
        read(5),
    )
    settle(world)
    a = actor(world, pid)
    assert a.halted and a.faults == 0
    assert a.values == [_data(9), _data(9), _data(13)]  # stale until the flush
    assert a.last_result is not None and a.last_result.status is S.SUCCESS
    vp = world.sim.hv.partitions[pid].vps[0]
    assert vp.tlb_flushes == 1 and cached(vp) == {5: 13}


def test_a_flush_by_the_child_partition_empties_its_vps_cache(world: World) -> None:
    pid = boot_paged(world, read(5), read(6), WaitInterrupt(STEP), read(5), read(6))
    settle(world)
    vp = world.sim.hv.partitions[pid].vps[0]
    assert cached(vp) == {5: 9, 6: 10}
    # The guest's page tables change behind its back (its other CPU, say).
    world.api.write_guest(pid, PT + 8 * 5, _pte(13).to_bytes(8, "little"))
    world.api.write_guest(pid, PT + 8 * 6, _pte(14).to_bytes(8, "little"))
    assert flush_space(world, pid, ALL_SPACES, 0b1, PML4) is S.SUCCESS  # caller = the child, VP 0
    assert cached(vp) == {} and vp.tlb_flushes == 1
    step(world, pid)
    assert actor(world, pid).values == [_data(9), _data(10), _data(13), _data(14)]


def test_a_cr3_write_by_the_host_empties_the_cache(world: World) -> None:
    pid = boot_paged(world, read(5), WaitInterrupt(STEP), read(5), WaitInterrupt(STEP), read(5))
    settle(world)
    world.api.write_guest(pid, PT + 8 * 5, _pte(13).to_bytes(8, "little"))
    step(world, pid)  # still the cached translation
    set_regs(world, pid, 0, {R.Cr3: PML4})  # MOV CR3 (same value) flushes
    assert cached(world.sim.hv.partitions[pid].vps[0]) == {}
    step(world, pid)
    assert actor(world, pid).values == [_data(9), _data(9), _data(13)]


def test_the_list_call_drops_only_the_listed_pages(world: World) -> None:
    reads = [read(n) for n in GVA_PAGES]
    pid = boot_paged(world, *reads, WaitInterrupt(STEP), *reads)
    settle(world)
    vp = world.sim.hv.partitions[pid].vps[0]
    assert cached(vp) == {5: 9, 6: 10, 7: 11, 8: 12}
    for n in GVA_PAGES:  # repoint every page to GPA n + 8
        world.api.write_guest(pid, PT + 8 * n, _pte(n + 8).to_bytes(8, "little"))
    # Pages 6 and 7 (one additional page), and a page the VP never cached.
    res = flush_list(world, pid, ALL_SPACES, 0b1, [6 << 12 | 1, 0x40 << 12])
    assert (res.status, res.reps_completed) == (S.SUCCESS, 2)
    assert cached(vp) == {5: 9, 8: 12} and vp.tlb_flushes == 1
    step(world, pid)
    assert actor(world, pid).values[4:] == [_data(9), _data(14), _data(15), _data(12)]


def test_the_list_call_counts_additional_pages_from_bits_11_0(world: World) -> None:
    reads = [read(n) for n in GVA_PAGES]
    pid = boot_paged(world, *reads)
    settle(world)
    vp = world.sim.hv.partitions[pid].vps[0]
    assert flush_list(world, pid, ALL_CPUS | ALL_SPACES, 0, [5 << 12 | 2]).status is S.SUCCESS
    assert cached(vp) == {8: 12}
    assert flush_list(world, pid, ALL_CPUS | ALL_SPACES, 0, [0 << 12 | 0xFFF]).status is S.SUCCESS
    assert cached(vp) == {}


def test_a_flush_naming_other_vps_leaves_the_callers_cache(world: World) -> None:
    pid = boot_paged(world, read(5))
    settle(world)
    vp = world.sim.hv.partitions[pid].vps[0]
    assert cached(vp) == {5: 9}
    assert flush_space(world, pid, ALL_SPACES, 0b10) is S.SUCCESS  # VP 1 does not exist
    assert flush_list(world, pid, ALL_SPACES, 0b10, [5 << 12]).status is S.SUCCESS
    assert cached(vp) == {5: 9} and vp.tlb_flushes == 0


def _read_only_page_7(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
    yield from paged_guest(host, pid)
    host.api.write_guest(pid, PT + 8 * 7, (_pte(11) & ~2).to_bytes(8, "little"))  # present, not writable


def write(n: int, value: int) -> WriteMemory:
    return WriteMemory(n << 12, value, 8, virtual=True)


def test_a_write_to_a_read_only_page_faults(world: World) -> None:
    pid = boot(world, guest(write(7, 1), read(7)), prepare=_read_only_page_7)
    settle(world)
    a = actor(world, pid)
    assert (a.faults, a.values) == (1, [_data(11)])


def test_a_write_through_a_cached_read_only_translation_still_faults(world: World) -> None:
    pid = boot(world, guest(read(7), write(7, 2)), prepare=_read_only_page_7)
    settle(world)
    a = actor(world, pid)
    assert (a.faults, a.values) == (1, [_data(11)])
    assert int.from_bytes(world.api.read_guest(pid, 11 << 12, 8), "little") == _data(11)


def test_a_write_through_a_cached_translation_sets_the_dirty_bit(world: World) -> None:
    pid = boot(world, guest(read(6), write(6, 3)), prepare=paged_guest)
    settle(world)
    assert actor(world, pid).faults == 0
    assert int.from_bytes(world.api.read_guest(pid, 10 << 12, 8), "little") == 3
    pte = int.from_bytes(world.api.read_guest(pid, PT + 8 * 6, 8), "little")
    assert pte & 0x60 == 0x60  # accessed and dirty


# --- GetVpCpuidValues -------------------------------------------------------------------------------
LEAVES = [(0, 0), (1, 0), (0x4000_0000, 0), (0x4000_0001, 0), (7, 0), (0x8000_0000, 0)]


def test_cpuid_values_have_one_result_per_rep(world: World, child: int) -> None:
    res = cpuid_values(world, child, 0, LEAVES)
    assert (res.reps_completed, len(res.output)) == (len(LEAVES), 16 * len(LEAVES))
    values = cpuid_results(res)
    assert values[0][1:] == (0x756E_6547, 0x6C65_746E, 0x4965_6E69)  # "GenuineIntel" (EBX, ECX, EDX)
    assert values[2][1:] == (0x7263_694D, 0x666F_736F, 0x7648_2074)  # "Microsoft Hv"
    assert values[3][0] == 0x3123_7648  # "Hv#1"
    vp1 = cpuid_results(cpuid_values(world, child, 1, LEAVES))
    assert (values[1][1] >> 24, vp1[1][1] >> 24) == (0, 1)  # leaf 1 EBX[31:24]: the initial APIC ID
    vp1[1] = (vp1[1][0], vp1[1][1] & 0xFF_FFFF, *vp1[1][2:])
    values[1] = (values[1][0], values[1][1] & 0xFF_FFFF, *values[1][2:])
    assert vp1 == values  # VP 1 sees the same otherwise


def test_cpuid_values_continue_from_rep_start(world: World, child: int) -> None:
    full = cpuid_results(cpuid_values(world, child, 0, LEAVES))
    res = cpuid_values(world, child, 0, LEAVES, rep_start=2)
    assert res.reps_completed == len(LEAVES)
    assert cpuid_results(res)[2:] == full[2:]
    res = world.call(control(C.GetVpCpuidValues), GET_VP_CPUID_VALUES_HEADER.pack((child, 0, 0, 0, 0)))
    assert res.status is S.INVALID_HYPERCALL_INPUT  # a rep call with no reps


def test_cpuid_values_statuses(world: World, child: int, intruder: int) -> None:
    def status(pid: int, vp: int = 0, **kw: Any) -> tuple[HvStatus, int]:
        res = cpuid_values(world, pid, vp, LEAVES[:2], **kw)
        return res.status, res.reps_completed

    assert status(child, caller=intruder) == (S.ACCESS_DENIED, 0)
    assert status(SELF) == (S.ACCESS_DENIED, 0)
    assert status(SELF, caller=child) == (S.ACCESS_DENIED, 0)
    assert status(0x1234) == (S.INVALID_PARTITION_ID, 0)
    assert status(world.new_child()) == (S.INVALID_PARTITION_STATE, 0)
    assert status(child, 2) == (S.INVALID_VP_INDEX, 0)
    assert status(child, HV_ANY_VP) == (S.INVALID_VP_INDEX, 0)
    for kw in ({"flags": 0x4}, {"flags": 1 << 31}, {"reserved": 1}, {"padding": 1}):
        assert status(child, **kw) == (S.INVALID_PARAMETER, 0), kw
    for flags in (0x1, 0x2, 0x3):
        assert status(child, flags=flags) == (S.SUCCESS, 2)


def test_cpuid_values_are_what_the_guest_gets(world: World) -> None:
    ops: list[Op] = []
    for leaf, subleaf in LEAVES:
        ops += [Cpuid(leaf, subleaf), WaitInterrupt(STEP)]
    pid = boot(world, guest(*ops))
    register_cpuid(world, pid, 0, 1, (0, 0, 0x8000_0000, 0), (0, 0, 0x8000_0000, 0))  # the hypervisor bit
    expected = cpuid_results(cpuid_values(world, pid, 0, LEAVES, flags=0x2))
    settle(world)
    seen = []
    for _ in LEAVES:
        status, regs = world.run(world.api.get_registers(pid, 0, [R.Rax, R.Rbx, R.Rcx, R.Rdx]))
        assert status is S.SUCCESS
        seen.append(tuple(regs))
        step(world, pid)
    assert seen == expected
    assert actor(world, pid).values == [e[0] for e in expected]


def test_apply_registered_values_overlays_a_registered_result(world: World, child: int) -> None:
    leaf = 0x4000_0001
    model = cpuid_results(cpuid_values(world, child, 0, [(leaf, 0)]))[0]
    register_cpuid(world, child, 0, leaf, (0x1234_5678, 0xAB00, 0, 0), (0xFFFF_FFFF, 0xFF00, 0, 0))
    assert cpuid_results(cpuid_values(world, child, 0, [(leaf, 0)], flags=0x2)) == [
        (0x1234_5678, (model[1] & ~0xFF00) | 0xAB00, model[2], model[3])
    ]
    assert cpuid_results(cpuid_values(world, child, 0, [(leaf, 0)])) == [model]  # not asked to apply
    assert cpuid_results(cpuid_values(world, child, 1, [(leaf, 0)], flags=0x2)) == [model]  # VP 0 only
    register_cpuid(world, child, HV_ANY_VP, leaf, (0x9, 0, 0, 0), (0xF, 0, 0, 0))
    assert cpuid_results(cpuid_values(world, child, 1, [(leaf, 0)], flags=0x2))[0][0] == (model[0] & ~0xF) | 9
    assert cpuid_results(cpuid_values(world, child, 0, [(leaf, 0)], flags=0x3))[0][0] == 0x1234_5678


# --- TlbLocked: flushes held by a locked TLB (4.20, 4.27-4.28, 5.9) ------------------------------------
LOCKED, SUSPENDED = 0x2, 0x1  # InterceptSuspend bits


def flush_call(mask: int = 0, *, everyone: bool = True) -> Hypercall:
    flags = ALL_SPACES | (ALL_CPUS if everyone else 0)
    return Hypercall(
        control(C.FlushVirtualAddressSpace),
        FLUSH_VIRTUAL_ADDRESS_INPUT.pack(FlushVirtualAddressInput(0, flags, mask)),
    )


def _paged_two_vp_guest(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
    yield from host.deposit(pid, 8)  # two VPs used the initial pages: the mapping needs one more
    yield from paged_guest(host, pid)


def boot_two(w: World, *ops: Op) -> int:
    return boot(w, guest(*ops), vps=2, prepare=_paged_two_vp_guest)


def lock_tlb(w: World, pid: int, vp: int) -> None:
    status, result, _ = w.run(
        w.api.translate(pid, vp, 5, TranslateGvaFlags.VALIDATE_READ | TranslateGvaFlags.TLB_FLUSH_INHIBIT)
    )
    assert status is S.SUCCESS and result & 0xFFFF_FFFF == 0  # translated: the lock is taken
    assert intercept_suspend(w, pid, vp) & LOCKED


def intercept_suspend(w: World, pid: int, vp: int) -> int:
    status, values = w.run(w.api.get_registers(pid, vp, [R.InterceptSuspend]))
    assert status is S.SUCCESS
    return values[0]


def unlock(w: World, pid: int, vp: int) -> None:
    value = intercept_suspend(w, pid, vp) & ~LOCKED
    out = w.run(w.api.set_registers(pid, vp, {R.InterceptSuspend: value}))
    assert out.status is S.SUCCESS


def test_a_flush_naming_a_locked_vp_waits_for_the_parent_to_unlock_it(world: World) -> None:
    pid = boot_two(world, read(5), WaitInterrupt(STEP), flush_call(), read(5))
    settle(world)
    vps = world.sim.hv.partitions[pid].vps
    lock_tlb(world, pid, 1)
    world.api.write_guest(pid, PT + 8 * 5, _pte(13).to_bytes(8, "little"))
    step(world, pid)  # VP 0 flushes: held by VP 1's lock
    a = actor(world, pid)
    assert vps[0].flush_wait == (1,) and not vps[0].runnable
    assert (vps[0].tlb_flushes, vps[1].tlb_flushes) == (0, 0)
    assert a.values == [_data(9)] and a.hypercalls == 0  # the guest is still inside its call
    held = [e for e in world.sim.log.records() if e["event"] == "tlb.flush_held"]
    assert [(e["partition"], e["vp"], e["locked"]) for e in held] == [(pid, 0, [1])]

    unlock(world, pid, 1)
    settle(world)
    assert vps[0].flush_wait == () and vps[0].runnable
    assert (vps[0].tlb_flushes, vps[1].tlb_flushes) == (1, 1)  # the re-issued call flushed both
    assert a.last_result is not None and a.last_result.status is S.SUCCESS
    assert a.hypercalls == 1 and vps[0].hypercalls == 1  # one call as the guest and the stats see it
    assert a.values == [_data(9), _data(13)]  # the flush took: the new translation is read


def test_clearing_only_the_suspended_bit_keeps_the_flush_held(world: World) -> None:
    pid = boot_two(world, WaitInterrupt(STEP), flush_call())
    settle(world)
    lock_tlb(world, pid, 1)
    step(world, pid)
    vps = world.sim.hv.partitions[pid].vps
    assert vps[0].flush_wait == (1,)
    out = world.run(world.api.set_registers(pid, 1, {R.InterceptSuspend: LOCKED}))  # bit 0 clear already
    assert out.status is S.SUCCESS
    settle(world)
    assert vps[0].flush_wait == (1,) and vps[0].tlb_flushes == 0


def test_a_flush_naming_only_unlocked_vps_is_not_held(world: World) -> None:
    pid = boot_two(world, WaitInterrupt(STEP), flush_call(0b1, everyone=False), read(5))
    settle(world)
    lock_tlb(world, pid, 1)
    step(world, pid)
    vps = world.sim.hv.partitions[pid].vps
    assert vps[0].flush_wait == () and vps[0].tlb_flushes == 1 and vps[1].tlb_flushes == 0


def test_a_vps_own_lock_does_not_hold_its_own_flush(world: World) -> None:
    pid = boot_two(world, WaitInterrupt(STEP), flush_call(0b1, everyone=False))
    settle(world)
    lock_tlb(world, pid, 0)
    step(world, pid)
    vps = world.sim.hv.partitions[pid].vps
    assert vps[0].flush_wait == () and vps[0].tlb_flushes == 1
    assert intercept_suspend(world, pid, 0) & LOCKED  # the lock itself stays until the parent clears it


def test_deleting_the_locked_vp_releases_the_flush(world: World) -> None:
    pid = boot_two(world, WaitInterrupt(STEP), flush_call())
    settle(world)
    lock_tlb(world, pid, 1)
    step(world, pid)
    vps = world.sim.hv.partitions[pid].vps
    assert vps[0].flush_wait == (1,)
    assert world.run(world.api.delete_vp(pid, 1)) is S.SUCCESS
    settle(world)
    assert vps[0].flush_wait == () and vps[0].tlb_flushes == 1
    assert actor(world, pid).last_result is not None


def test_the_list_call_is_held_too_and_completes_every_rep(world: World) -> None:
    entries = [5 << 12, 6 << 12 | 1]
    data = FLUSH_VIRTUAL_ADDRESS_INPUT.pack(FlushVirtualAddressInput(0, ALL_SPACES | ALL_CPUS, 0))
    data += b"".join(e.to_bytes(8, "little") for e in entries)
    flush = Hypercall(control(C.FlushVirtualAddressList, rep_count=len(entries)), data)
    pid = boot_two(world, WaitInterrupt(STEP), flush)
    settle(world)
    lock_tlb(world, pid, 1)
    step(world, pid)
    a = actor(world, pid)
    assert a.last_result is None
    unlock(world, pid, 1)
    settle(world)
    assert a.last_result is not None
    assert (a.last_result.status, a.last_result.reps_completed) == (S.SUCCESS, 2)


def test_the_caller_sees_no_result_while_held(world: World) -> None:
    """From the ABI: the held call returns to no one; the VP is suspended and re-executes it."""
    pid = boot_two(world, WaitInterrupt(STEP))
    settle(world)
    lock_tlb(world, pid, 1)
    data = FLUSH_VIRTUAL_ADDRESS_INPUT.pack(FlushVirtualAddressInput(0, ALL_SPACES | ALL_CPUS, 0))
    res = world.call(control(C.FlushVirtualAddressSpace), data, caller=pid, vp=0)
    assert res.reissue and res.status is S.SUCCESS
    assert world.sim.hv.partitions[pid].vps[0].flush_wait == (1,)


def test_locks_can_be_ignored_by_configuration(make_world: MakeWorld) -> None:
    w = make_world(flush_waits_for_tlb_lock=False)
    pid = boot_two(w, WaitInterrupt(STEP), flush_call())
    settle(w)
    lock_tlb(w, pid, 1)
    step(w, pid)
    vps = w.sim.hv.partitions[pid].vps
    assert vps[0].flush_wait == () and (vps[0].tlb_flushes, vps[1].tlb_flushes) == (1, 1)
