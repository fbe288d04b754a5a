"""The CPUID a partition's VPs see, minus the processor features CreatePartition disabled
(HYPERCALLS.md 4.1, 4.15; HV_PARTITION_PROCESSOR_FEATURES banks 0 and 1,
HV_PARTITION_PROCESSOR_XSAVE_FEATURES).

Partitions are created with their disabled features in the CreatePartition input; what they see is
read back with GetVpCpuidValues and with the guest's own CPUID instruction (RAX-RDX afterwards, read
with GetVpRegisters). Expected CPUID bit positions are written out from the SDM, not taken from the
model's tables, except where a test sweeps every mapped feature. Leaf 0xD's XSAVE area sizes for an
XCR0 (XFEM) / IA32_XSS are computed here from the SDM's state-component table (``SDM_COMPONENTS``).

The hypervisor leaves 0x4000_0002-0x4000_000A are checked against the TLFS (feature discovery) and
the registers they mirror (HvRegisterHypervisorVersion, HvRegisterPrivilegesAndFeaturesInfo); leaf 1's
initial APIC ID and the x2APIC topology leaf 0xB per VP, against the SDM and each VP's
HvX64RegisterInitialApicId, on VP 0 and on an AP the root started.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvsim.actors.cpufeatures import ALSO_DISABLES, DISABLEABLE, MAPS, Bank, CpuidBit, Feature
from hvsim.actors.cpufeatures import Xsave as X
from hvsim.actors.cpuid import cpuid_model
from hvsim.actors.hvdef import (
    CPUID_QUERY,
    CPUID_RESULT_PARAMETERS,
    CREATE_PARTITION_INPUT,
    GET_VP_CPUID_VALUES_HEADER,
    HV_ANY_VP,
    HV_COMPATIBILITY_21_H2,
    INITIAL_VP_CONTEXT,
    PARTITION_ID_OUTPUT,
    REGISTER_INTERCEPT_RESULT_HEADER,
    SEGMENT,
    START_VIRTUAL_PROCESSOR_HEADER,
    TABLE,
    CpuidQuery,
    CpuidResultParameters,
    CreatePartitionInput,
    GetVpCpuidValuesHeader,
    HvStatus,
    HypercallCode,
    InitialVpContext,
    PropertyCode,
    RegisterInterceptResultHeader,
    StartVirtualProcessorHeader,
    X64Segment,
    X64Table,
    control,
)
from hvsim.actors.hvdef import (
    InterceptType as IT,
)
from hvsim.actors.hvdef import (
    PartitionPrivilege as PP,
)
from hvsim.actors.hvdef import (
    RegisterName as R,
)
from hvsim.actors.workload import Cpuid, Program
from hvsim.scenarios import Simulation
from hvsim.scenarios.host import PartitionSpec, ReferenceHost

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

S = HvStatus
EAX, EBX, ECX, EDX = range(4)
Values = tuple[int, int, int, int]
AES, SMEP, RDTSCP = 16, 23, 38  # HV_PARTITION_PROCESSOR_FEATURES bank-0 bits
# Bank-1 bits.
TSC_INVARIANT, LA57, PSFD, CET_SS, CET_IBT, SERIALIZE, TSC_ADJUST, FS_REP_STOSB = 1, 4, 7, 8, 9, 16, 18, 20

#: Every (leaf, subleaf) the tests read: the processor's leaves, a few beyond them, leaf 0xB's SMT,
#: core and first invalid level, leaf 0xD's subleaves up to the last state component (18), and the
#: hypervisor leaves up to the maximum, 0x4000_000A.
QUERIES: list[tuple[int, int]] = [
    (0x0, 0), (0x1, 0), (0x6, 0), (0x7, 0), (0x7, 1), (0x7, 2), (0x7, 3), (0xB, 0), (0xB, 1), (0xB, 2),
    *((0xD, n) for n in range(19)),
    *((0x4000_0000 + n, 0) for n in range(0xB)),
    (0x8000_0000, 0), (0x8000_0001, 0), (0x8000_0007, 0), (0x8000_0008, 0),
]  # fmt: skip
XSAVE_SUBLEAVES = [(0xD, n) for n in range(19)]


# --- helpers ------------------------------------------------------------------------------------
def new_child(
    world: World,
    disabled: tuple[int, int] = (0, 0),
    xsave: int = 0,
    guest: tuple[int, int] | None = None,
    *,
    vps: tuple[int, ...] = (0,),
    regs: Sequence[tuple[int, int]] = (),
    privileges: int | None = None,
    run: Sequence[int] = (0,),
    registered: Sequence[tuple[int, CpuidResultParameters]] = (),
) -> int:
    """An ACTIVE child of the root (with VPs *vps*) created with DisabledProcessorFeatures *disabled*
    and DisabledProcessorXsaveFeatures *xsave*, and given PrivilegeFlags *privileges* while CREATED;
    *regs* are written to the VPs *run* (default: VP 0) before they start, and the (VP, CPUID result)
    pairs *registered* are registered with RegisterInterceptResult; with *guest* = (leaf, subleaf),
    the VPs *run* (APs started with StartVirtualProcessor) run that one CPUID and halt."""
    data = CREATE_PARTITION_INPUT.pack(
        CreatePartitionInput(0, 0, HV_COMPATIBILITY_21_H2, 0, *disabled, xsave, 0)
    )
    res = world.call(control(HypercallCode.CreatePartition), data)
    assert res.status is S.SUCCESS, res.status
    pid = PARTITION_ID_OUTPUT.unpack(res.output).partition_id
    if privileges is not None:
        assert world.set_property(pid, PropertyCode.PrivilegeFlags, privileges) is S.SUCCESS
    if guest is not None:
        world.sim.load_guest(pid, Program(loop=(Cpuid(*guest),), max_loops=1))
    world.activate(pid, vps=vps)
    for vp in run if regs else ():
        assert world.set_registers(pid, vp, regs).status is S.SUCCESS
    for vp, params in registered:
        header = REGISTER_INTERCEPT_RESULT_HEADER.pack(RegisterInterceptResultHeader(pid, vp, IT.X64Cpuid))
        data = header + CPUID_RESULT_PARAMETERS.pack(params)
        assert world.simple(HypercallCode.RegisterInterceptResult, data) is S.SUCCESS
    if guest is not None:
        for vp in run:
            if vp:
                assert start_ap(world, pid, vp) is S.SUCCESS
            assert world.set_registers(pid, vp, [(R.ExplicitSuspend, 0)]).status is S.SUCCESS
        world.sim.run(world.sim.now_ns + 1_000_000)
    return pid


def start_ap(world: World, pid: int, vp: int) -> HvStatus:
    """StartVirtualProcessor on AP *vp* of *pid*: 64-bit mode, flat segments."""
    code = SEGMENT.pack(X64Segment(0, 0xFFFF_FFFF, 0x08, 0xA09B))
    data = SEGMENT.pack(X64Segment(0, 0xFFFF_FFFF, 0x10, 0xC093))
    tr = SEGMENT.pack(X64Segment(0, 0x67, 0x18, 0x8B))
    ldtr = SEGMENT.pack(X64Segment(0, 0, 0, 0x82))
    idtr = TABLE.pack(X64Table(0, 0, 0, 0xFFF, 0x2000))
    gdtr = TABLE.pack(X64Table(0, 0, 0, 0x1F, 0x3000))
    context = InitialVpContext(
        0x1000, 0x8000, 0x2, code, data, data, data, data, data, tr, ldtr, idtr, gdtr,
        0x500, 0x8000_0011, 0x4000, 0x20, 0x0007_0406_0007_0406,
    )  # fmt: skip
    header = START_VIRTUAL_PROCESSOR_HEADER.pack(StartVirtualProcessorHeader(pid, vp, 0, bytes(3)))
    return world.simple(HypercallCode.StartVirtualProcessor, header + INITIAL_VP_CONTEXT.pack(context))


def cpuid_values(
    world: World, pid: int, queries: list[tuple[int, int]] = QUERIES, *, vp: int = 0, flags: int = 0
) -> dict[tuple[int, int], Values]:
    """GetVpCpuidValues for VP *vp* of *pid* (HV_GET_VP_CPUID_VALUES_FLAGS *flags*): (leaf, subleaf)
    -> (EAX, EBX, ECX, EDX)."""
    header = GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(pid, vp, flags, 0, 0))
    body = b"".join(CPUID_QUERY.pack(CpuidQuery(leaf, subleaf, 0, 0)) for leaf, subleaf in queries)
    res = world.call(control(HypercallCode.GetVpCpuidValues, rep_count=len(queries)), header + body)
    assert res.status is S.SUCCESS and res.reps_completed == len(queries)
    return {q: struct.unpack_from("<IIII", res.output, 16 * i) for i, q in enumerate(queries)}


def guest_sees(
    world: World, leaf: int, subleaf: int = 0, disabled: tuple[int, int] = (0, 0), xsave: int = 0
) -> Values:
    """RAX-RDX after a guest of a partition created with these features ran CPUID *leaf* / *subleaf*."""
    pid = new_child(world, disabled, xsave, guest=(leaf, subleaf))
    actor = world.sim.vp_actor(pid, 0)
    assert actor is not None and actor.halted
    rax, rbx, rcx, rdx = (world.register(pid, 0, name) for name in (R.Rax, R.Rbx, R.Rcx, R.Rdx))
    assert actor.values == [rax]
    return rax, rbx, rcx, rdx


def vp_sees(world: World, pid: int, vp: int) -> Values:
    """RAX-RDX of VP *vp* of *pid* after its guest ran its one CPUID (``new_child``'s *guest*)."""
    actor = world.sim.vp_actor(pid, vp)
    assert actor is not None and actor.halted and len(actor.values) == 1
    rax, rbx, rcx, rdx = (world.register(pid, vp, name) for name in (R.Rax, R.Rbx, R.Rcx, R.Rdx))
    assert actor.values == [rax]
    return rax, rbx, rcx, rdx


def seen(values: dict[tuple[int, int], Values], where: CpuidBit) -> bool:
    return bool(values[where.leaf, where.subleaf][where.register] >> where.bit & 1)


def flag_bits(values: dict[tuple[int, int], Values]) -> set[CpuidBit]:
    """The set bits of every register outside leaf 0xD, plus the XSAVE feature flags (0xD.1 EAX):
    leaf 0xD's other registers are sizes and state-component masks (``check_xsave_leaf``)."""
    out: set[CpuidBit] = set()
    for (leaf, subleaf), regs in values.items():
        for register, value in enumerate(regs):
            if leaf != 0xD or (subleaf, register) == (1, EAX):
                out |= {CpuidBit(leaf, subleaf, register, b) for b in range(32) if value >> b & 1}
    return out


def dependents(feature: Feature) -> set[Feature]:
    """Everything ALSO_DISABLES takes away with *feature*, followed transitively."""
    found: set[Feature] = set()
    todo = [feature]
    while todo:
        for dependent in ALSO_DISABLES.get(todo.pop(), ()):
            if dependent not in found:
                found.add(dependent)
                todo.append(dependent)
    return found


def masks_for(features: set[Feature]) -> tuple[tuple[int, int], int]:
    banks = [0, 0, 0]
    for bank, bit in features:
        banks[bank] |= 1 << bit
    return (banks[0], banks[1]), banks[2]


def check_xsave_leaf(values: dict[tuple[int, int], Values]) -> None:
    """Leaf 0xD agrees with the features reported: no XSAVE, no leaf 0xD; otherwise a state
    component is enumerated exactly when a feature that uses it is on, and the sizes follow."""
    leaf1, leaf7 = values[0x1, 0], values[0x7, 0]
    if not leaf1[ECX] >> 26 & 1:
        assert all(values[q] == (0, 0, 0, 0) for q in XSAVE_SUBLEAVES)
        return
    xcr0 = values[0xD, 0][EAX] | values[0xD, 0][EDX] << 32
    xss = values[0xD, 1][ECX] | values[0xD, 1][EDX] << 32
    assert xcr0 & 0b11 == 0b11  # x87 and SSE always
    assert bool(xcr0 >> 2 & 1) == bool(leaf1[ECX] >> 28 & 1)  # YMM state iff AVX
    for component in (5, 6, 7):  # opmask, ZMM_Hi256, Hi16_ZMM iff AVX512F
        assert bool(xcr0 >> component & 1) == bool(leaf7[EBX] >> 16 & 1)
    for component in (17, 18):  # tile config and data iff AMX-TILE
        assert bool(xcr0 >> component & 1) == bool(leaf7[EDX] >> 24 & 1)
    cet = bool(leaf7[ECX] >> 7 & 1 or leaf7[EDX] >> 20 & 1)
    assert xss == (0b11 << 11 if cet else 0)  # CET_U, CET_S iff a CET feature
    assert not xss or values[0xD, 1][EAX] >> 3 & 1  # supervisor state needs XSAVES
    largest = 576
    for n in range(2, 19):
        size, offset, flags, _ = values[0xD, n]
        assert bool(size) == bool((xcr0 | xss) >> n & 1), n
        assert bool(flags & 1) == bool(xss >> n & 1), n  # supervisor components
        if size and not flags & 1:
            largest = max(largest, offset + size)
    assert values[0xD, 0][ECX] == largest


# --- the full processor ---------------------------------------------------------------------------
def test_every_mapped_feature_is_on_in_a_partition_that_disabled_nothing(world: World) -> None:
    full = cpuid_values(world, new_child(world))
    for bank, mapping in MAPS.items():
        for bit, where in mapping.items():
            assert seen(full, where), (bank.name, bit, where)
    check_xsave_leaf(full)


def test_the_full_processor_enumerates_its_leaves_consistently(world: World) -> None:
    full = cpuid_values(world, new_child(world))
    assert full[0x0, 0][EAX] == 0xD  # max basic leaf covers 6, 7, 0xB and 0xD
    assert full[0x8000_0000, 0][EAX] >= 0x8000_0007
    assert full[0x7, 0][EAX] == 2 and full[0x7, 3] == (0, 0, 0, 0)  # subleaves 0-2
    assert not full[0x1, 0][ECX] >> 27 & 1  # OSXSAVE: CR4.OSXSAVE is clear at reset
    assert full[0xD, 0] == (0x6_00E7, 576, 11008, 0)  # x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM tiles
    assert full[0xD, 1] == (0x1F, 576, 0x1800, 0)  # XSAVEOPT XSAVEC XGETBV1 XSAVES XFD; CET_U/S
    assert full[0xD, 2] == (256, 576, 0, 0) and full[0xD, 18] == (8192, 2816, 0b110, 0)
    assert full[0xD, 3] == (0, 0, 0, 0)  # no MPX
    pairs = [(0x1, 5), (0x6, 1), (0x8000_0001, 3), (0x4000_0000, 7)]  # leaves without subleaves
    other = cpuid_values(world, new_child(world), pairs)
    assert all(other[leaf, subleaf] == full[leaf, 0] for leaf, subleaf in pairs)


def test_unmapped_and_reserved_bits_hide_nothing(world: World) -> None:
    full = cpuid_values(world, new_child(world))
    unmapped = [~sum(1 << bit for bit in MAPS[bank]) & (2**64 - 1) for bank in Bank]
    assert cpuid_values(world, new_child(world, (unmapped[0], unmapped[1]), unmapped[2])) == full


# --- one feature at a time --------------------------------------------------------------------------
ALL_FEATURES = [Feature(bank, bit) for bank, mapping in MAPS.items() for bit in mapping]


@pytest.mark.parametrize("feature", ALL_FEATURES, ids=lambda f: f"{f.bank.name}-{f.bit}")
def test_a_disabled_feature_clears_its_bit_and_its_dependents_bits_only(
    world: World, feature: Feature
) -> None:
    full = cpuid_values(world, new_child(world))
    disabled, xsave = masks_for({feature})
    cut = cpuid_values(world, new_child(world, disabled, xsave))
    gone = {MAPS[f.bank][f.bit] for f in {feature} | dependents(feature)}
    assert flag_bits(full) - flag_bits(cut) == gone
    assert flag_bits(cut) <= flag_bits(full)
    check_xsave_leaf(cut)


def test_get_vp_cpuid_values_and_the_guest_see_bank_1(world: World) -> None:
    disabled = (
        0,
        1 << TSC_ADJUST | 1 << LA57 | 1 << SERIALIZE | 1 << TSC_INVARIANT | 1 << FS_REP_STOSB | 1 << PSFD,
    )
    cut = cpuid_values(world, new_child(world, disabled))
    assert not cut[0x7, 0][EBX] >> 1 & 1 and cut[0x7, 0][EBX] >> 0 & 1  # TSC_ADJUST off, FSGSBASE on
    assert not cut[0x7, 0][ECX] >> 16 & 1 and cut[0x7, 0][ECX] >> 5 & 1  # LA57 off, WAITPKG on
    assert not cut[0x7, 0][EDX] >> 14 & 1 and cut[0x7, 0][EDX] >> 16 & 1  # SERIALIZE off, TSXLDTRK on
    assert not cut[0x7, 1][EAX] >> 11 & 1 and cut[0x7, 1][EAX] >> 10 & 1  # fast short STOSB off, MOVSB on
    assert cut[0x7, 2][EDX] == 0  # PSFD off
    assert cut[0x8000_0007, 0][EDX] == 0  # invariant TSC off
    assert cut[0x1, 0][ECX] >> 24 & 1  # TSC deadline still on
    for leaf, subleaf in [(0x7, 0), (0x7, 1), (0x7, 2), (0x8000_0007, 0)]:
        assert guest_sees(world, leaf, subleaf, disabled) == cut[leaf, subleaf]


def test_get_vp_cpuid_values_and_the_guest_see_the_xsave_features(world: World) -> None:
    xsave = 1 << X.AVX512_FP16 | 1 << X.XSAVEOPT | 1 << X.AMX_INT8 | 1 << X.GFNI
    cut = cpuid_values(world, new_child(world, xsave=xsave))
    assert not cut[0x7, 0][EDX] >> 23 & 1 and cut[0x7, 0][EBX] >> 30 & 1  # AVX512_FP16 off, BW on
    assert not cut[0x7, 0][EDX] >> 25 & 1 and cut[0x7, 0][EDX] >> 24 & 1  # AMX-INT8 off, AMX-TILE on
    assert not cut[0x7, 0][ECX] >> 8 & 1 and cut[0x7, 0][ECX] >> 9 & 1  # GFNI off, VAES on
    assert cut[0xD, 1][EAX] == 0x1E  # XSAVEOPT off; XSAVEC XGETBV1 XSAVES XFD on
    assert cut[0x1, 0][ECX] >> 26 & 1 and cut[0x1, 0][ECX] >> 28 & 1  # XSAVE, AVX on
    for leaf, subleaf in [(0x1, 0), (0x7, 0), (0xD, 1)]:
        assert guest_sees(world, leaf, subleaf, xsave=xsave) == cut[leaf, subleaf]


def test_get_vp_cpuid_values_and_the_guest_see_the_partitions_features() -> None:
    """Bank 0 through the reference host's boot (PartitionSpec.disabled_features)."""
    sim = Simulation(0)
    host = ReferenceHost(sim)
    guest = Program(loop=(Cpuid(1), Cpuid(7), Cpuid(0x8000_0001)), max_loops=1)
    disabled = 1 << AES | 1 << SMEP | 1 << RDTSCP
    spec = PartitionSpec(vps=1, program=lambda _i: guest, disabled_features=(disabled, 0))
    pid = sim.run_process(host.boot(spec))
    sim.run(sim.now_ns + 1_000_000)
    header = GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(pid, 0, 0, 0, 0))
    body = b"".join(CPUID_QUERY.pack(CpuidQuery(leaf, 0, 0, 0)) for leaf in (1, 7, 0x8000_0001))
    res = sim.hypercall(control(HypercallCode.GetVpCpuidValues, rep_count=3), header + body)
    assert res.status is S.SUCCESS and res.reps_completed == 3
    leaf1, leaf7, ext = (struct.unpack_from("<IIII", res.output, 16 * i) for i in range(3))
    assert not leaf1[2] >> 25 & 1 and leaf1[2] >> 20 & 1  # AES off, SSE4.2 still on
    assert not leaf7[1] >> 7 & 1 and leaf7[1] >> 3 & 1  # SMEP off, BMI1 still on
    assert not ext[3] >> 27 & 1 and ext[3] >> 29 & 1  # RDTSCP off, long mode still on
    actor = sim.vp_actor(pid, 0)
    assert actor is not None and actor.values == [leaf1[0], leaf7[0], ext[0]]
    regs = sim.hv.partitions[pid].vps[0].regs
    assert (regs[R.Rax], regs[R.Rbx], regs[R.Rcx], regs[R.Rdx]) == ext  # the last CPUID's result


# --- the hypervisor leaves (TLFS feature discovery, x64) --------------------------------------------
#: A privilege mask with bits in both halves: AccessSynicRegs (2) and AccessVpIndex (6) in EAX;
#: AccessPartitionId (33), PostMessages (36), SignalEvents (37) in EBX.
PRIVILEGES = int(
    PP.AccessSynicRegs | PP.AccessVpIndex | PP.AccessPartitionId | PP.PostMessages | PP.SignalEvents
)
U32 = 0xFFFF_FFFF


def words(value: int) -> Values:
    """A 128-bit register value as CPUID registers: EAX bits 31:0, EBX 63:32, ECX 95:64, EDX 127:96."""
    return value & U32, value >> 32 & U32, value >> 64 & U32, value >> 96 & U32


def test_leaf_0x40000002_is_hv_register_hypervisor_version(world: World) -> None:
    pid = new_child(world)
    identity = cpuid_values(world, pid)[0x4000_0002, 0]
    assert identity == words(world.register(pid, 0, R.HypervisorVersion))
    assert identity[EAX] and identity[EBX] >> 16  # a build number and a major version
    assert guest_sees(world, 0x4000_0002) == identity


def test_leaf_0x40000003_eax_ebx_are_the_privileges_the_partition_has(world: World) -> None:
    default = new_child(world)
    chosen = new_child(world, privileges=PRIVILEGES)
    none = new_child(world, privileges=0)
    for pid, mask in ((default, world.sim.config.child_default_privileges), (chosen, PRIVILEGES), (none, 0)):
        eax, ebx, ecx, edx = cpuid_values(world, pid)[0x4000_0003, 0]
        assert eax | ebx << 32 == mask
        # HvRegisterPrivilegesAndFeaturesInfo is the whole leaf in 128 bits, EAX lowest.
        assert world.register(pid, 0, R.PrivilegesAndFeaturesInfo) == eax | ebx << 32 | ecx << 64 | edx << 96
    assert cpuid_values(world, chosen)[0x4000_0003, 0][:2] == (1 << 2 | 1 << 6, 1 << 1 | 1 << 4 | 1 << 5)
    # An ACTIVE child's privileges are fixed (PrivilegeFlags is an early property): so is the leaf.
    assert world.set_property(chosen, PropertyCode.PrivilegeFlags, 0) is S.INVALID_PARTITION_STATE
    assert cpuid_values(world, chosen)[0x4000_0003, 0][:2] == (1 << 2 | 1 << 6, 1 << 1 | 1 << 4 | 1 << 5)
    guest = new_child(world, guest=(0x4000_0003, 0), privileges=PRIVILEGES)
    assert vp_sees(world, guest, 0) == cpuid_values(world, chosen)[0x4000_0003, 0]


def test_leaf_0x40000003_edx_names_only_features_the_model_has(world: World) -> None:
    pid = new_child(world)
    _, _, ecx, edx = cpuid_values(world, pid)[0x4000_0003, 0]
    assert ecx == 0  # no power-management features
    assert edx == 1 << 4 | 1 << 10 | 1 << 15 | 1 << 17  # XMM fast input, crash MSRs, XMM fast output, polling
    # XMM fast calls: a fast GetVpCpuidValues of two queries (24-byte header and elements, 16-byte
    # results: 104 bytes) answers in the register block; three (144 bytes) do not fit its 112 bytes.
    queries = [(0x4000_0003, 0), (0x1, 0), (0x7, 0)]
    header = GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(pid, 0, 0, 0, 0))
    body = b"".join(CPUID_QUERY.pack(CpuidQuery(leaf, subleaf, 0, 0)) for leaf, subleaf in queries)
    fast = world.call(control(HypercallCode.GetVpCpuidValues, fast=True, rep_count=2), header + body[:48])
    assert fast.status is S.SUCCESS and fast.reps_completed == 2
    memory = cpuid_values(world, pid, queries[:2])
    assert [struct.unpack_from("<IIII", fast.output, 16 * i) for i in range(2)] == list(memory.values())
    ctl = control(HypercallCode.GetVpCpuidValues, fast=True, rep_count=3)
    assert world.call(ctl, header + body).status is S.INVALID_HYPERCALL_INPUT
    # SINT polling mode: a SINT takes the polling bit (18).
    assert world.set_registers(pid, 0, [(R.Sint0, 1 << 18 | 0x30)]).status is S.SUCCESS
    assert world.register(pid, 0, R.Sint0) == 1 << 18 | 0x30


@pytest.mark.parametrize("max_vp_index", [2047, 63])
def test_the_recommendation_limit_and_hardware_leaves(make_world: MakeWorld, max_vp_index: int) -> None:
    world = make_world(max_vp_index=max_vp_index)
    pid = new_child(world, vps=(0, max_vp_index))
    values = cpuid_values(world, pid)
    assert values[0x4000_0000, 0][EAX] == 0x4000_000A  # at least 0x4000_0005 (TLFS)
    assert values[0x4000_0004, 0] == (1 << 2, U32, 0, 0)  # remote flushes by hypercall; never notify
    assert values[0x4000_0005, 0] == (max_vp_index + 1, 0, 0, 0)  # VPs; LPs and vectors not exposed
    assert world.create_vp(pid, max_vp_index + 1) is S.INVALID_VP_INDEX  # the limit CreateVp keeps
    for leaf in range(0x4000_0006, 0x4000_000B):  # hardware features, root-only and nested leaves
        assert values[leaf, 0] == (0, 0, 0, 0), hex(leaf)
    guest = new_child(world, guest=(0x4000_0005, 0))
    assert vp_sees(world, guest, 0) == values[0x4000_0005, 0]


def test_disabled_features_leave_the_hypervisor_and_topology_leaves_alone(world: World) -> None:
    full = cpuid_values(world, new_child(world))
    cut = cpuid_values(world, new_child(world, (2**64 - 1, 2**64 - 1), 2**64 - 1))
    for query in [*((0x4000_0000 + n, 0) for n in range(0xB)), (0xB, 0), (0xB, 1), (0xB, 2)]:
        assert cut[query] == full[query], query


# --- per-VP leaves: the initial APIC ID and the x2APIC topology ------------------------------------
TOPOLOGY: list[tuple[int, int]] = [(0x1, 0), (0xB, 0), (0xB, 1), (0xB, 2), (0xB, 7)]
SMT, CORE = 1 << 8, 2 << 8  # CPUID.0xB ECX[15:8] level types


@pytest.mark.parametrize(
    ("vps", "shift"),
    [((0,), 0), ((0, 1), 1), ((0, 1, 2), 2), ((0, 1, 2, 3), 2), ((0, 1, 2, 3, 4), 3), ((0, 9), 1)],
)
def test_each_vp_sees_its_apic_id_and_the_partitions_topology(
    world: World, vps: tuple[int, ...], shift: int
) -> None:
    pid = new_child(world, vps=vps)
    first = cpuid_values(world, pid, vp=0)
    for vp in vps:
        values = cpuid_values(world, pid, TOPOLOGY, vp=vp)
        eax, ebx, ecx, edx = values[0x1, 0]
        assert ebx >> 24 == vp  # initial APIC ID = VP index at reset
        assert (eax, ebx & 0xFF_FFFF, ecx, edx) == (*first[0x1, 0][:1], 0x800, *first[0x1, 0][2:])
        assert not edx >> 28 & 1  # no HTT: EBX[23:16] stays 0
        assert values[0xB, 0] == (0, 1, 0 | SMT, vp)  # one logical processor per core
        assert values[0xB, 1] == (shift, len(vps), 1 | CORE, vp)  # ceil(log2(VP count))
        assert values[0xB, 2] == (0, 0, 2, vp) and values[0xB, 7] == (0, 0, 7, vp)  # invalid level
    assert first[0x0, 0][EAX] >= 0xB


def test_the_topology_counts_the_vps_the_partition_has_now(world: World) -> None:
    pid = new_child(world, vps=(0, 1))
    assert cpuid_values(world, pid, [(0xB, 1)])[0xB, 1] == (1, 2, 1 | CORE, 0)
    world.fund(pid, world.page_costs.create_vp)
    assert world.create_vp(pid, 2) is S.SUCCESS
    assert cpuid_values(world, pid, [(0xB, 1)])[0xB, 1] == (2, 3, 1 | CORE, 0)
    assert cpuid_values(world, pid, [(0xB, 1)], vp=2)[0xB, 1] == (2, 3, 1 | CORE, 2)


def test_the_apic_id_follows_set_vp_registers(world: World) -> None:
    pid = new_child(world, vps=(0, 1, 2))
    assert world.set_registers(pid, 1, [(R.InitialApicId, 0x1_0207)]).status is S.SUCCESS
    moved = cpuid_values(world, pid, TOPOLOGY, vp=1)
    assert moved[0x1, 0][EBX] >> 24 == 0x07  # the low 8 bits
    assert [moved[q][EDX] for q in TOPOLOGY[1:]] == [0x1_0207] * 4  # the whole x2APIC ID
    assert moved[0xB, 1][:3] == (2, 3, 1 | CORE)  # the shape does not follow the IDs
    assert cpuid_values(world, pid, TOPOLOGY, vp=2)[0x1, 0][EBX] >> 24 == 2  # the others keep theirs


@pytest.mark.parametrize("query", TOPOLOGY[:4], ids=lambda q: f"{q[0]:#x}.{q[1]}")
def test_the_guest_on_each_vp_sees_what_get_vp_cpuid_values_reports(
    world: World, query: tuple[int, int]
) -> None:
    pid = new_child(world, guest=query, vps=(0, 1, 2), run=(0, 2))  # VP 2: an AP
    for vp in (0, 2):
        seen_by_guest = vp_sees(world, pid, vp)
        assert seen_by_guest == cpuid_values(world, pid, [query], vp=vp)[query]
        assert (seen_by_guest[EBX] >> 24 if query == (0x1, 0) else seen_by_guest[EDX]) == vp
    moved = new_child(world, guest=query, vps=(0, 1, 2), run=(2,), regs=[(R.InitialApicId, 0x1_0207)])
    seen_by_guest = vp_sees(world, moved, 2)
    assert seen_by_guest == cpuid_values(world, moved, [query], vp=2)[query]
    assert (seen_by_guest[EBX] >> 24 if query == (0x1, 0) else seen_by_guest[EDX]) == (
        0x07 if query == (0x1, 0) else 0x1_0207
    )


def test_registered_results_apply_on_top_of_the_new_leaves(world: World) -> None:
    def result(
        leaf: int, subleaf: int, specific: int, values: Values, masks: Values
    ) -> CpuidResultParameters:
        pairs = [x for v, m in zip(values, masks, strict=True) for x in (v, m)]
        return CpuidResultParameters(leaf, subleaf, specific, 0, 0, *pairs)

    apic_42 = result(0x1, 0, 0, (0, 0x4200_0000, 0, 0), (0, 0xFF00_0000, 0, 0))  # VP 1 only
    eight_cores = result(0xB, 1, 1, (0, 8, 0, 0), (0, 0xFFFF, 0, 0))  # subleaf 1 only
    no_xmm = result(0x4000_0003, 0, 0, (0, 0, 0, 0), (0, 0, 0, 1 << 4 | 1 << 15))
    registered = [(1, apic_42), (HV_ANY_VP, eight_cores), (HV_ANY_VP, no_xmm)]
    pid = new_child(world, vps=(0, 1, 2), privileges=PRIVILEGES, registered=registered)
    queries = [(0x1, 0), (0xB, 0), (0xB, 1), (0x4000_0003, 0)]
    for vp in (0, 1, 2):
        plain = cpuid_values(world, pid, queries, vp=vp)
        applied = cpuid_values(world, pid, queries, vp=vp, flags=APPLY_REGISTERED)
        assert plain[0x1, 0][EBX] >> 24 == vp and plain[0xB, 1] == (2, 3, 1 | CORE, vp)
        assert applied[0x1, 0][EBX] >> 24 == (0x42 if vp == 1 else vp)
        assert applied[0x1, 0][EBX] & 0xFF_FFFF == plain[0x1, 0][EBX] & 0xFF_FFFF
        assert applied[0xB, 0] == plain[0xB, 0]
        assert applied[0xB, 1] == (2, 8, 1 | CORE, vp)  # the count replaced; the x2APIC ID is the VP's
        assert applied[0x4000_0003, 0] == (*words(PRIVILEGES)[:2], 0, 1 << 10 | 1 << 17)
    guest = new_child(world, guest=(0x1, 0), vps=(0, 1), run=(1,), registered=[(1, apic_42)])
    assert vp_sees(world, guest, 1)[EBX] >> 24 == 0x42


# --- dependencies ---------------------------------------------------------------------------------
def test_disabling_xsave_hides_everything_that_needs_it(world: World) -> None:
    cut = cpuid_values(world, new_child(world, xsave=1 << X.XSAVE))
    leaf1, leaf7, leaf7_1 = cut[0x1, 0], cut[0x7, 0], cut[0x7, 1]
    for bit in (26, 28, 12, 29):  # XSAVE, AVX, FMA, F16C (bank 0, but VEX-encoded)
        assert not leaf1[ECX] >> bit & 1, bit
    for bit in (5, 16, 17, 21, 28, 30, 31):  # AVX2, AVX512 F DQ IFMA CD BW VL
        assert not leaf7[EBX] >> bit & 1, bit
    for bit in (1, 6, 7, 9, 10, 11, 12, 14):  # VBMI VBMI2 CET_SS VAES VPCLMULQDQ VNNI BITALG VPOPCNTDQ
        assert not leaf7[ECX] >> bit & 1, bit
    for bit in (20, 22, 23, 24, 25):  # CET_IBT AMX-BF16 AVX512_FP16 AMX-TILE AMX-INT8
        assert not leaf7[EDX] >> bit & 1, bit
    assert not leaf7_1[EAX] >> 4 & 1 and not leaf7_1[EAX] >> 5 & 1  # AVX-VNNI, AVX512_BF16
    assert all(cut[q] == (0, 0, 0, 0) for q in XSAVE_SUBLEAVES)  # no XSAVE leaf at all
    # Untouched: SSE4.2 AES TSC-deadline; BMI1 SMEP; GFNI (legacy-SSE forms) LA57; SERIALIZE; FSRS.
    assert leaf1[ECX] >> 20 & 1 and leaf1[ECX] >> 25 & 1 and leaf1[ECX] >> 24 & 1
    assert leaf7[EBX] >> 3 & 1 and leaf7[EBX] >> 7 & 1
    assert leaf7[ECX] >> 8 & 1 and leaf7[ECX] >> 16 & 1 and leaf7[EDX] >> 14 & 1
    assert leaf7_1[EAX] >> 11 & 1
    assert guest_sees(world, 0x1, xsave=1 << X.XSAVE) == leaf1
    assert guest_sees(world, 0xD, 0, xsave=1 << X.XSAVE) == (0, 0, 0, 0)


def test_disabling_avx_keeps_xsave_and_amx_but_hides_the_vector_extensions(world: World) -> None:
    cut = cpuid_values(world, new_child(world, xsave=1 << X.AVX))
    leaf1, leaf7 = cut[0x1, 0], cut[0x7, 0]
    assert leaf1[ECX] >> 26 & 1 and not leaf1[ECX] >> 28 & 1  # XSAVE on, AVX off
    assert not leaf1[ECX] >> 12 & 1 and not leaf1[ECX] >> 29 & 1  # FMA, F16C off
    assert leaf7[EBX] & (1 << 5 | 1 << 16 | 1 << 31) == 0  # AVX2, AVX512F, AVX512VL off
    assert leaf7[ECX] & (1 << 9 | 1 << 10) == 0 and leaf7[ECX] >> 8 & 1  # VAES VPCLMULQDQ off; GFNI on
    assert leaf7[EDX] >> 24 & 1 and not leaf7[EDX] >> 23 & 1  # AMX-TILE on, AVX512_FP16 off
    assert cut[0x7, 1][EAX] & 0b11_0000 == 0  # AVX-VNNI, AVX512_BF16 off
    assert cut[0xD, 0] == (0x6_0003, 576, 11008, 0)  # x87 SSE and the tiles: no YMM/ZMM state
    assert cut[0xD, 1][EAX] == 0x1F  # the XSAVE instructions stay
    assert cut[0xD, 2] == cut[0xD, 5] == cut[0xD, 7] == (0, 0, 0, 0)
    assert guest_sees(world, 0xD, 0, xsave=1 << X.AVX) == cut[0xD, 0]


def test_disabling_avx512f_hides_every_avx512_extension_and_its_state(world: World) -> None:
    cut = cpuid_values(world, new_child(world, xsave=1 << X.AVX512F))
    leaf7 = cut[0x7, 0]
    assert leaf7[EBX] & (1 << 16 | 1 << 17 | 1 << 21 | 1 << 28 | 1 << 30 | 1 << 31) == 0
    assert leaf7[ECX] & (1 << 1 | 1 << 6 | 1 << 11 | 1 << 12 | 1 << 14) == 0
    assert not leaf7[EDX] >> 23 & 1 and not cut[0x7, 1][EAX] >> 5 & 1  # FP16, BF16
    assert leaf7[EBX] >> 5 & 1 and cut[0x7, 1][EAX] >> 4 & 1  # AVX2 and AVX-VNNI stay
    assert leaf7[ECX] & (1 << 8 | 1 << 9 | 1 << 10) == 0b111 << 8  # GFNI VAES VPCLMULQDQ stay
    assert cut[0xD, 0] == (0x6_0007, 576, 11008, 0)


def test_disabling_xsaves_hides_cet_and_its_supervisor_state(world: World) -> None:
    cut = cpuid_values(world, new_child(world, xsave=1 << X.XSAVES))
    assert cut[0xD, 1] == (0x17, 576, 0, 0)  # no XSAVES, no IA32_XSS components
    assert not cut[0x7, 0][ECX] >> 7 & 1 and not cut[0x7, 0][EDX] >> 20 & 1  # CET_SS, CET_IBT
    assert cut[0xD, 11] == cut[0xD, 12] == (0, 0, 0, 0)


def test_disabling_one_cet_feature_keeps_the_cet_state_for_the_other(world: World) -> None:
    cut = cpuid_values(world, new_child(world, (0, 1 << CET_SS)))
    assert cut[0xD, 1][ECX] == 0x1800 and cut[0x7, 0][EDX] >> 20 & 1
    both = cpuid_values(world, new_child(world, (0, 1 << CET_SS | 1 << CET_IBT)))
    assert both[0xD, 1] == (0x1F, 576, 0, 0) and both[0xD, 11] == (0, 0, 0, 0)


def test_disabling_xfd_hides_amx_and_the_tile_state(world: World) -> None:
    cut = cpuid_values(world, new_child(world, xsave=1 << X.XFD))
    assert cut[0x7, 0][EDX] & (1 << 22 | 1 << 24 | 1 << 25) == 0  # AMX-BF16, AMX-TILE, AMX-INT8
    assert cut[0x7, 0][EDX] >> 23 & 1  # AVX512_FP16 stays
    assert cut[0xD, 0] == (0xE7, 576, 2688, 0)  # state up to Hi16_ZMM
    assert cut[0xD, 1][EAX] == 0x0F and cut[0xD, 17] == cut[0xD, 18] == (0, 0, 0, 0)


# --- any masks --------------------------------------------------------------------------------------
def _masks(mapping: dict[int, CpuidBit]) -> st.SearchStrategy[int]:
    few = st.sets(st.sampled_from(sorted(mapping)), max_size=4).map(lambda bits: sum(1 << b for b in bits))
    return st.one_of(few, st.integers(0, 2**64 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bank0=_masks(DISABLEABLE), bank1=_masks(MAPS[Bank.FEATURES1]), xsave=_masks(MAPS[Bank.XSAVE]))
def test_any_disabled_masks_leave_a_consistent_subset_of_the_processor(
    make_world: MakeWorld, bank0: int, bank1: int, xsave: int
) -> None:
    world = make_world()
    full = cpuid_values(world, new_child(world))
    pid = new_child(world, (bank0, bank1), xsave)
    cut = cpuid_values(world, pid)
    for query in QUERIES:
        if query[0] != 0xD:
            assert all(c & ~f == 0 for c, f in zip(cut[query], full[query], strict=True)), query
        elif query[1] >= 2:
            assert cut[query] in (full[query], (0, 0, 0, 0)), query  # a component stays or goes
    for subleaf, masks in ((0, (EAX, EDX)), (1, (EAX, ECX, EDX))):  # XCR0 / flags and IA32_XSS
        got, whole = cut[0xD, subleaf], full[0xD, subleaf]
        assert all(got[r] & ~whole[r] == 0 for r in masks), subleaf
        assert got[EBX] in (whole[EBX], 0)  # the size at reset, or nothing without XSAVE
    assert cut[0xD, 0][ECX] <= full[0xD, 0][ECX]  # the largest area only shrinks
    asked = (bank0, bank1, xsave)
    for bank, mapping in MAPS.items():
        for bit, where in mapping.items():
            if asked[bank] >> bit & 1:
                assert not seen(cut, where), (bank.name, bit)
    for need, needers in ALSO_DISABLES.items():  # what is seen is closed under the dependencies
        if not seen(cut, MAPS[need.bank][need.bit]):
            assert not any(seen(cut, MAPS[f.bank][f.bit]) for f in needers), need
    check_xsave_leaf(cut)
    privileges = world.register(pid, 0, R.PrivilegesAndFeaturesInfo) & (2**64 - 1)
    assert cut == {q: cpuid_model(*q, (bank0, bank1), xsave, privileges=privileges) for q in QUERIES}


# --- XSAVE area sizes for the XFEM / XSS in force ---------------------------------------------------
#: The SDM's state components (vol. 1 13.2-13.5, table 13-1 sizes): n -> (size, standard-format offset
#: (0: supervisor, none), 64-byte aligned when compacted). PKRU (9) is listed though this processor has
#: no PKU: a mask naming it counts nothing.
SDM_COMPONENTS: dict[int, tuple[int, int, bool]] = {
    2: (256, 576, False),  # AVX: YMM_Hi128
    5: (64, 1088, False),  # AVX-512 opmask
    6: (512, 1152, False),  # ZMM_Hi256
    7: (1024, 1664, False),  # Hi16_ZMM
    9: (8, 2688, False),  # PKRU
    11: (16, 0, False),  # CET_U (supervisor)
    12: (24, 0, False),  # CET_S (supervisor)
    17: (64, 2752, True),  # AMX TILECFG
    18: (8192, 2816, True),  # AMX TILEDATA
}
X87_SSE, AVX_STATE, AVX512_STATE, AMX_STATE, PKRU_STATE = 0b11, 1 << 2, 0b111 << 5, 0b11 << 17, 1 << 9
CET_STATE = 0b11 << 11
USE_VP_XFEM_XSS, APPLY_REGISTERED = 0x1, 0x2  # HV_GET_VP_CPUID_VALUES_FLAGS


def expected_sizes(xfem: int, xss: int, values: dict[tuple[int, int], Values]) -> tuple[int, int]:
    """Leaf 0xD EBX of subleaves 0 and 1 from the SDM table, for the components the partition
    enumerates (its XCR0 / IA32_XSS support masks in *values*): the standard-format area for the user
    components in *xfem*, the compacted area for the components in *xfem* | *xss*."""
    has = values[0xD, 0][EAX] | values[0xD, 0][EDX] << 32 | values[0xD, 1][ECX] | values[0xD, 1][EDX] << 32
    standard = 512 + 64  # legacy region and header, whatever XCR0 holds
    for n, (size, offset, _) in SDM_COMPONENTS.items():
        if offset and has >> n & 1 and xfem >> n & 1:
            standard = max(standard, offset + size)
    compacted = 512 + 64
    for n, (size, _, aligned) in sorted(SDM_COMPONENTS.items()):
        if has >> n & 1 and (xfem | xss) >> n & 1:
            compacted = (compacted + 63) // 64 * 64 if aligned else compacted
            compacted += size
    return standard, compacted


def xsave_sizes(
    world: World, pid: int, xfem: int, xss: int = 0, *, flags: int = 0, vp: int = 0
) -> tuple[int, int]:
    """Leaf 0xD EBX of subleaves 0 and 1 from GetVpCpuidValues for VP *vp* of *pid*, with the
    elements' Xfem *xfem* and Xss *xss*."""
    header = GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(pid, vp, flags, 0, 0))
    body = b"".join(CPUID_QUERY.pack(CpuidQuery(0xD, n, xfem, xss)) for n in (0, 1))
    res = world.call(control(HypercallCode.GetVpCpuidValues, rep_count=2), header + body)
    assert res.status is S.SUCCESS and res.reps_completed == 2
    standard, compacted = struct.unpack_from("<4xI12xI8x", res.output)
    return standard, compacted


def test_the_model_enumerates_the_sdm_state_components(world: World) -> None:
    full = cpuid_values(world, new_child(world))
    for n, (size, offset, aligned) in SDM_COMPONENTS.items():
        eax, ebx, ecx, edx = full[0xD, n]
        if n == 9:
            assert (eax, ebx, ecx, edx) == (0, 0, 0, 0) and not full[0x7, 0][ECX] >> 3 & 1  # no PKU
            continue
        assert (eax, ebx, ecx >> 1 & 1, ecx & 1, edx) == (size, offset, aligned, offset == 0, 0), n


XFEM_SIZES = [
    # XFEM, subleaf 0 EBX (standard), subleaf 1 EBX (compacted), both with XSS 0.
    (0, 576, 576),
    (1, 576, 576),  # the reset value: x87
    (X87_SSE, 576, 576),
    (X87_SSE | AVX_STATE, 832, 832),
    (X87_SSE | AVX_STATE | AVX512_STATE, 2688, 2432),  # 1664 + 1024; 832 + 64 + 512 + 1024
    (X87_SSE | AVX_STATE | AVX512_STATE | AMX_STATE, 11008, 10688),  # 2816 + 8192; 2432 + 64 + 8192
    (X87_SSE | AMX_STATE, 11008, 8832),  # standard offsets are fixed; compacted: 576 + 64 + 8192
    (X87_SSE | 1 << 5, 1152, 640),  # opmask alone
    (X87_SSE | AVX_STATE | PKRU_STATE, 832, 832),  # no PKRU on this processor
]


@pytest.mark.parametrize(
    ("xfem", "standard", "compacted"), XFEM_SIZES, ids=[hex(x) for x, _, _ in XFEM_SIZES]
)
def test_the_xsave_sizes_follow_the_elements_xfem(
    world: World, xfem: int, standard: int, compacted: int
) -> None:
    pid = new_child(world)
    full = cpuid_values(world, pid)
    assert xsave_sizes(world, pid, xfem) == (standard, compacted) == expected_sizes(xfem, 0, full)
    assert (
        cpuid_model(0xD, 0, xfem=xfem)[EBX] == standard and cpuid_model(0xD, 1, xfem=xfem)[EBX] == compacted
    )
    assert cpuid_values(world, pid) == full  # an element's XFEM holds for that element only


XSS_SIZES = [
    # XFEM, XSS, subleaf 0 EBX, subleaf 1 EBX.
    (X87_SSE, CET_STATE, 576, 616),  # 576 + 16 + 24: CET_U and CET_S are not aligned
    (X87_SSE, 1 << 11, 576, 592),
    (X87_SSE | AVX_STATE | AVX512_STATE, CET_STATE, 2688, 2472),  # 2432 + 16 + 24
    # CET ends at 2472: TILECFG goes up to 2496 (aligned), TILEDATA follows at 2560.
    (X87_SSE | AVX_STATE | AVX512_STATE | AMX_STATE, CET_STATE, 11008, 10752),
    (X87_SSE, 1 << 8 | 1 << 10 | 1 << 15, 576, 576),  # PT, PASID, LBR: not on this processor
]


@pytest.mark.parametrize(("xfem", "xss", "standard", "compacted"), XSS_SIZES)
def test_the_compacted_size_counts_the_supervisor_state_in_xss(
    world: World, xfem: int, xss: int, standard: int, compacted: int
) -> None:
    pid = new_child(world)
    full = cpuid_values(world, pid)
    assert xsave_sizes(world, pid, xfem, xss) == (standard, compacted) == expected_sizes(xfem, xss, full)
    assert xsave_sizes(world, pid, xfem, xss)[0] == xsave_sizes(world, pid, xfem)[0]  # XSS: subleaf 1 only


def test_the_guests_cpuid_reads_the_vps_xfem(world: World) -> None:
    xfem = X87_SSE | AVX_STATE | AVX512_STATE
    assert guest_sees(world, 0xD, 0)[EBX] == 576  # Xfem at reset: x87
    for subleaf, size in ((0, 2688), (1, 2432)):
        pid = new_child(world, guest=(0xD, subleaf), regs=[(R.Xfem, xfem)])
        assert world.register(pid, 0, R.Xfem) == xfem
        assert world.register(pid, 0, R.Rbx) == size


def test_use_vp_xfem_xss_reads_the_vps_xfem_and_ignores_the_elements(world: World) -> None:
    pid = new_child(world, vps=(0, 1))
    xfem = X87_SSE | AVX_STATE | AVX512_STATE | AMX_STATE
    assert world.set_registers(pid, 1, [(R.Xfem, xfem)]).status is S.SUCCESS
    assert world.register(pid, 0, R.Xfem) == 1 and world.register(pid, 1, R.Xfem) == xfem
    # The elements' Xfem / Xss without the flag.
    assert xsave_sizes(world, pid, X87_SSE, CET_STATE, vp=1) == (576, 616)
    # With it, the VP's: VP 1's XFEM, and its XSS (0 at reset).
    for flags in (USE_VP_XFEM_XSS, USE_VP_XFEM_XSS | APPLY_REGISTERED):
        assert xsave_sizes(world, pid, X87_SSE, CET_STATE, flags=flags, vp=1) == (11008, 10688)
        assert xsave_sizes(world, pid, xfem, CET_STATE, flags=flags, vp=0) == (576, 576)  # VP 0: reset
    assert world.set_registers(pid, 1, [(R.Xfem, X87_SSE | AVX_STATE)]).status is S.SUCCESS
    assert xsave_sizes(world, pid, 0, 0, flags=USE_VP_XFEM_XSS, vp=1) == (832, 832)  # the current value
    assert world.set_registers(pid, 1, [(R.Xss, CET_STATE)]).status is S.SUCCESS
    assert xsave_sizes(world, pid, 0, 0, flags=USE_VP_XFEM_XSS, vp=1) == (832, 872)  # + CET_U, CET_S
    # Reserved flag bits still fail alongside UseVpXfemXss.
    header = GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(pid, 1, USE_VP_XFEM_XSS | 0x4, 0, 0))
    body = CPUID_QUERY.pack(CpuidQuery(0xD, 0, 0, 0))
    res = world.call(control(HypercallCode.GetVpCpuidValues, rep_count=1), header + body)
    assert res.status is S.INVALID_PARAMETER


def test_ia32_xss_takes_only_the_supervisor_components_the_processor_has(world: World) -> None:
    pid = new_child(world)
    assert world.register(pid, 0, R.Xss) == 0
    assert world.set_registers(pid, 0, [(R.Xss, CET_STATE)]).status is S.SUCCESS
    for bad in (1 << 8, 1 << 13, 1):  # PT and HDC state (not on this processor), x87 (a user component)
        assert world.set_registers(pid, 0, [(R.Xss, bad)]).status is not S.SUCCESS
    assert world.register(pid, 0, R.Xss) == CET_STATE


def test_the_guests_cpuid_reads_the_vps_xss(world: World) -> None:
    pid = new_child(world, guest=(0xD, 1), regs=[(R.Xfem, X87_SSE | AVX_STATE), (R.Xss, CET_STATE)])
    assert world.register(pid, 0, R.Rbx) == 872


ALL_STATE = X87_SSE | AVX_STATE | AVX512_STATE | PKRU_STATE | AMX_STATE


@pytest.mark.parametrize(
    ("disabled", "xsave", "standard", "compacted"),
    [
        ((0, 0), 1 << X.AVX512F, 11008, 9152),  # tiles keep their offsets; 872 (CET) -> 896 + 64 + 8192
        ((0, 0), 1 << X.AMX_TILE, 2688, 2472),  # 2432 + 16 + 24
        ((0, 0), 1 << X.XFD, 2688, 2472),  # AMX-TILE needs XFD
        ((0, 0), 1 << X.AVX, 11008, 8896),  # AVX takes AVX-512 along; 616 -> 640 + 64 + 8192
        ((0, 1 << CET_SS | 1 << CET_IBT), 0, 11008, 10688),  # no CET state to count
        ((0, 1 << CET_SS), 0, 11008, 10752),  # CET_IBT keeps it
        ((0, 0), 1 << X.XSAVES, 11008, 10688),  # CET needs XSAVES
        ((0, 0), 1 << X.XSAVE, 0, 0),  # no leaf 0xD at all
    ],
)
def test_a_disabled_features_components_do_not_count_even_if_xfem_names_them(
    world: World, disabled: tuple[int, int], xsave: int, standard: int, compacted: int
) -> None:
    pid = new_child(world, disabled, xsave)
    assert xsave_sizes(world, pid, ALL_STATE, CET_STATE) == (standard, compacted)
    if xsave != 1 << X.XSAVE:
        assert (standard, compacted) == expected_sizes(ALL_STATE, CET_STATE, cpuid_values(world, pid))


_STATE_BITS = sorted({0, 1, *SDM_COMPONENTS, 3, 8, 10, 13, 15, 16, 19, 63})
_state_masks = st.one_of(
    st.sets(st.sampled_from(_STATE_BITS)).map(lambda bits: sum(1 << b for b in bits)),
    st.integers(0, 2**64 - 1),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    xfem=_state_masks,
    more=_state_masks,
    xss=_state_masks,
    more_xss=_state_masks,
    xsave=_masks(MAPS[Bank.XSAVE]),
    bank1=st.sampled_from([0, 1 << CET_SS, 1 << CET_SS | 1 << CET_IBT]),
)
def test_the_xsave_sizes_grow_with_the_enabled_state(
    make_world: MakeWorld, xfem: int, more: int, xss: int, more_xss: int, xsave: int, bank1: int
) -> None:
    world = make_world()
    pid = new_child(world, (0, bank1), xsave)
    values = cpuid_values(world, pid)
    small, large = xsave_sizes(world, pid, xfem, xss), xsave_sizes(world, pid, xfem | more, xss | more_xss)
    if not values[0x1, 0][ECX] >> 26 & 1:  # no XSAVE: no sizes
        assert small == large == (0, 0)
        return
    assert small == expected_sizes(xfem, xss, values) and large == expected_sizes(
        xfem | more, xss | more_xss, values
    )
    assert small[0] <= large[0] and small[1] <= large[1]  # monotone in the XFEM (and XSS) bits
    assert small[0] >= 576 and small[1] >= 576
    assert small[0] <= values[0xD, 0][ECX]  # never beyond the largest area (every user component)
    assert xsave_sizes(world, pid, xfem, xss | more_xss)[0] == small[0]  # XSS: subleaf 1 only
    model = (
        cpuid_model(0xD, 0, (0, bank1), xsave, xfem=xfem, xss=xss),
        cpuid_model(0xD, 1, (0, bank1), xsave, xfem=xfem, xss=xss),
    )
    assert (model[0][EBX], model[1][EBX]) == small
