"""The CPUID a partition's VPs see without intercepts (HYPERCALLS.md 4.15): a generic x64 processor
with Hyper-V's hypervisor leaves, minus the features the partition was created without.

The processor is an Intel server core of the Sapphire Rapids generation (family 6, model 0x8F):
AVX-512 with FP16 and BF16, AMX, CET, XSAVEC/XSAVES/XFD; it reports leaves 0, 1, 6, 7 (subleaves
0-2), 0xB (x2APIC topology), 0xD (XSAVE: subleaves 0, 1 and one per state component), 0x8000_0001
and 0x8000_0007, and the hypervisor leaves 0x4000_0000-0x4000_000A. Leaves 7, 0xB and 0xD read their
subleaf (ECX); the others ignore it. The other leaves up to the maximum leaf 0 / 0x8000_0000 report
read as zeros: 2-5 (leaf 4, the deterministic cache parameters, among them: no cache is described),
8-0xA, 0xC, 0x8000_0002-0x8000_0006 (no brand string) and 0x8000_0008 (no address widths).

Per VP (``cpuid_model``'s *apic_id*, the VP's HvX64RegisterInitialApicId: the VP index at reset,
changeable with SetVpRegisters, and *vp_count*, the VPs the partition has when CPUID runs):

* leaf 1 EBX[31:24], the initial APIC ID: the low 8 bits of *apic_id*. EBX[23:16] stays 0 and
  EDX.HTT (bit 28) clear: leaf 0xB describes the topology.
* leaf 0xB, the x2APIC topology of one package with one logical processor per core: subleaf 0 is
  the SMT level (EAX shift 0, EBX 1 logical processor, ECX[15:8] level type 1), subleaf 1 the core
  level (EAX shift ceil(log2(*vp_count*)), EBX *vp_count*, ECX[15:8] type 2); subleaf 2 and above
  are the invalid level (EAX = EBX = 0, ECX[15:8] = 0). ECX[7:0] is the subleaf and EDX the x2APIC
  ID (*apic_id*, all 32 bits) at every subleaf, as the SDM has it. The shift follows the VP count,
  not the IDs: APIC IDs set at or beyond 2**shift put a VP in another "package" (x2APIC ID >>
  shift), as they would on hardware.

The hypervisor leaves (TLFS "Feature and Interface Discovery"; the constants are below):

* 0x4000_0000: max hypervisor leaf 0x4000_000A, "Microsoft Hv"; 0x4000_0001: "Hv#1".
* 0x4000_0002 (system identity): ``HYPERVISOR_VERSION`` of ``actors/registers.py`` as
  HvRegisterHypervisorVersion returns it: EAX build, EBX major.minor, ECX service pack, EDX service
  branch / number.
* 0x4000_0003 (features): EAX / EBX the partition's HV_PARTITION_PRIVILEGE_MASK as it is when CPUID
  runs (*privileges*; a parent changes it with PrivilegeFlags before InitializePartition).
  HvRegisterPrivilegesAndFeaturesInfo holds the same leaf as 128 bits (EAX in bits 31:0 ... EDX in
  127:96, ``features_info``). ECX (power management) 0. EDX
  (``HV_FEATURES_EDX``): only the optional features the simulator provides: bit 4, XMM registers for
  fast hypercall input (``actors/hypercall.py`` takes a fast call's input block of up to 112 bytes,
  RDX, R8 then XMM0-5); bit 15, hypercall output via XMM registers (a fast call's output comes back
  in the same block, input + output at most 112 bytes); bit 17, SINT polling mode (SINTx bit 18 is
  accepted, and a message or event on a polling SINT raises no interrupt: ``actors/messages.py``);
  bit 10, guest crash MSRs (RDMSR / WRMSR of 0x4000_0100 - 0x4000_0105 reach the crash registers
  HvRegisterGuestCrashP0-4 / Ctl: ``VIRTUAL_MSRS`` in ``actors/intercepts.py``). Left clear: the
  MWAIT bit 0 (deprecated), debugging, PMU, idle, timer-frequency, machine-check, NPIEP, extended
  GVA ranges (the flush list reads bits 11:0 as a page count only), hypercall-MSR lock and
  synthetic-timer bits: nothing of those exists here.
* 0x4000_0004 (recommendations, ``HV_RECOMMENDATIONS_EAX``): EAX bit 2 only, hypercalls for remote
  TLB flushes (FlushVirtualAddressSpace / List flush the named VPs' translation caches; a guest has
  no other way to reach another VP's TLB here). Not the Ex (sparse processor set) or
  SyntheticClusterIpi bits: those calls do not exist. EBX 0xFFFF_FFFF: never notify a long spin wait
  (there is no NotifyLongSpinWait). ECX (ImplementedPhysicalAddressBits) 0, "not reported", as leaf
  0x8000_0008 reports no address widths either.
* 0x4000_0005 (limits): EAX the most VPs a partition can have (*max_vps*: HvConfig.max_vp_index + 1,
  2048 by default; CreateVp refuses higher indices); EBX (logical processors) 0, "not exposed": the
  host has HvConfig.root_vps LPs but no supported maximum is modelled; ECX 0, no interrupt remapping.
* 0x4000_0006 (hardware features in use): 0. The model has no host hardware to detect (no APIC
  assist, MSR bitmaps, SLAT, IOMMU...), and hypervisor level 0: a child with CreatePartitions hosts
  its own children on this same hypervisor, not as a nested one.
* 0x4000_0007 / 0x4000_0008 (not described by the TLFS feature-discovery page): 0. 0x4000_0009 /
  0x4000_000A (nested hypervisor features, enlightened VMCS): 0, no nested virtualization is
  modelled. The maximum stays
  0x4000_000A, as before: a guest that reads the nested leaves finds "no nested features". (The TLFS
  asks for at least 0x4000_0005, so 0x4000_0006 would do as well; the intercept tests expect
  0x4000_000A in the default CPUID result they carry.)

Which features a partition can be created without, the CPUID bit of each and the features that
need them: ``actors/cpufeatures.py``. A disabled feature's bit reads clear; an XSAVE feature that
owns state also drops its state components from leaf 0xD.

Leaf 0xD's two size fields follow the XSAVE feature masks in force (``cpuid_model``'s *xfem*, the
XCR0 value, and *xss*, IA32_XSS), as the Intel SDM (vol. 1 13.2, 13.4.3) defines them; a component
counts only if the partition has it (enumerated in leaf 0xD after the disabled features), so a mask
bit naming a component the partition lacks, or one the processor never had, counts for nothing:

* subleaf 0 EBX, the standard-format size for XCR0: the largest offset + size over the user
  components enabled in *xfem*, at least 576 (the 512-byte x87/SSE legacy region and the 64-byte
  XSAVE header, present whatever XCR0 holds). Supervisor components have no standard-format offset
  and never count here.
* subleaf 1 EBX, the compacted-format (XSAVES) size for XCR0 | IA32_XSS: from 576, each component
  i >= 2 enabled in *xfem* | *xss*, in increasing i, is placed right after the previous one, first
  rounded up to a multiple of 64 if its alignment bit (ECX bit 1 of subleaf i) is set; the size is
  where the last one ends (576 if none). User and supervisor components are taken from the union
  alike (the hardware keeps user bits in XCR0 and supervisor bits in IA32_XSS; the inputs are not
  checked for that).
* Subleaf 0 ECX stays the largest standard-format size of every user component the partition has,
  whatever XCR0 enables, and subleaf 0 EAX/EDX and subleaf 1 ECX/EDX the supported masks.

The guest's CPUID instruction reads the VP's HvX64RegisterXfem (XCR0; x87 at reset) and
HvX64RegisterXss (IA32_XSS; 0 at reset); GetVpCpuidValues uses each query element's Xfem / Xss, or
with UseVpXfemXss those two registers of the VP. The defaults (*xfem* 1, *xss* 0) give the reset
sizes, 576 bytes.

Other register state the model does not track reads as at reset: CPUID.1:ECX.OSXSAVE (bit 27, a
mirror of CR4.OSXSAVE) stays clear.
"""

from __future__ import annotations

from hvsim.actors.cpufeatures import (
    AMX_TILE,
    AVX,
    AVX512F,
    CET_IBT,
    CET_SS,
    EAX,
    EBX,
    MAPS,
    XSAVE,
    Feature,
    effective_disabled,
)
from hvsim.actors.hvdef import HV_MAXIMUM_PROCESSORS
from hvsim.actors.hvdef import RegisterName as R
from hvsim.actors.model import Partition, Vp
from hvsim.actors.registers import HYPERVISOR_VERSION

_U32 = 0xFFFF_FFFF

#: CPUID 0x4000_0003 EDX, the optional features the simulator provides (the module docstring says
#: where each is honoured): XMM fast hypercall input (4), XMM fast output (15), SINT polling (17).
HV_FEATURES_EDX = 1 << 4 | 1 << 10 | 1 << 15 | 1 << 17
#: CPUID 0x4000_0003 ECX: no power-management features.
HV_FEATURES_ECX = 0
#: CPUID 0x4000_0004 EAX: recommend hypercalls for remote TLB flushes (2).
HV_RECOMMENDATIONS_EAX = 1 << 2
#: CPUID 0x4000_0004 EBX: never notify the hypervisor of a long spin wait.
HV_SPIN_NEVER_NOTIFY = 0xFFFF_FFFF


#: (Leaf, subleaf) -> (EAX, EBX, ECX, EDX) of the full processor (leaf 0xD is computed: _xsave_leaf).
_LEAVES: dict[tuple[int, int], tuple[int, int, int, int]] = {
    (0x0, 0): (0xD, 0x756E_6547, 0x6C65_746E, 0x4965_6E69),  # max leaf 0xD, "GenuineIntel"
    # Family 6 model 0x8F stepping 8. ECX: SSE3 PCLMUL SSSE3 FMA CX16 PCID SSE4.1 SSE4.2 MOVBE
    # POPCNT TSC-deadline AES XSAVE AVX F16C RDRAND, hypervisor (bit 31); OSXSAVE (27) clear.
    (0x1, 0): (0x0008_06F8, 0x0000_0800, 0xF7DA_3203, 0x078B_FBFF),
    (0x6, 0): (0, 0, 0x1, 0),  # APERF/MPERF
    # EAX: max subleaf 2. EBX: FSGSBASE TSC_ADJUST BMI1 HLE AVX2 SMEP BMI2 ERMS INVPCID RTM AVX512F
    # AVX512DQ RDSEED ADX SMAP AVX512_IFMA CLFLUSHOPT CLWB AVX512CD SHA AVX512BW AVX512VL.
    # ECX: AVX512_VBMI WAITPKG AVX512_VBMI2 CET_SS GFNI VAES VPCLMULQDQ AVX512_VNNI AVX512_BITALG
    # AVX512_VPOPCNTDQ LA57 CLDEMOTE MOVDIRI MOVDIR64B. EDX: SERIALIZE TSXLDTRK CET_IBT AMX_BF16
    # AVX512_FP16 AMX_TILE AMX_INT8.
    (0x7, 0): (2, 0xF1BF_0FBB, 0x1A01_5FE2, 0x03D1_4000),
    # EAX: AVX_VNNI AVX512_BF16, fast zero-length MOVSB, fast short STOSB, fast short CMPSB/SCASB.
    (0x7, 1): (0x0000_1C30, 0, 0, 0),
    (0x7, 2): (0, 0, 0, 0x1),  # EDX: PSFD
    (0x4000_0000, 0): (0x4000_000A, 0x7263_694D, 0x666F_736F, 0x7648_2074),  # "Microsoft Hv"
    (0x4000_0001, 0): (0x3123_7648, 0, 0, 0),  # "Hv#1"
    # Build, major.minor, service pack, service branch / number: HvRegisterHypervisorVersion.
    (0x4000_0002, 0): (
        HYPERVISOR_VERSION & _U32,
        HYPERVISOR_VERSION >> 32 & _U32,
        HYPERVISOR_VERSION >> 64 & _U32,
        HYPERVISOR_VERSION >> 96 & _U32,
    ),
    (0x4000_0003, 0): (0, 0, HV_FEATURES_ECX, HV_FEATURES_EDX),  # EAX / EBX: the privilege mask (cpuid_model)
    (0x4000_0004, 0): (HV_RECOMMENDATIONS_EAX, HV_SPIN_NEVER_NOTIFY, 0, 0),
    (0x4000_0005, 0): (0, 0, 0, 0),  # EAX: the VP limit (cpuid_model); no LP limit, no remapping
    (0x4000_0006, 0): (0, 0, 0, 0),  # no hardware features in use; not nested
    (0x8000_0000, 0): (0x8000_0008, 0, 0, 0),
    # LAHF/SAHF, LZCNT; NX, 1 GiB pages, RDTSCP, long mode.
    (0x8000_0001, 0): (0, 0, 0x0000_0021, 0x2C10_0800),
    (0x8000_0007, 0): (0, 0, 0, 0x100),  # invariant TSC
}

#: Leaves whose result depends on the subleaf; the others read as subleaf 0.
SUBLEAF_LEAVES = frozenset({0x7, 0xB, 0xD})

#: XSAVE state component -> (size, offset in the standard format (0: supervisor), CPUID.(0xD, n)
#: ECX flags (bit 0 supervisor, 1 64-byte aligned when compacted, 2 XFD-capable), the features of
#: which one enabled keeps it).
_COMPONENTS: dict[int, tuple[int, int, int, tuple[Feature, ...]]] = {
    2: (256, 576, 0, (AVX,)),  # YMM_Hi128
    5: (64, 1088, 0, (AVX512F,)),  # opmask
    6: (512, 1152, 0, (AVX512F,)),  # ZMM_Hi256
    7: (1024, 1664, 0, (AVX512F,)),  # Hi16_ZMM
    11: (16, 0, 1, (CET_SS, CET_IBT)),  # CET_U
    12: (24, 0, 1, (CET_SS, CET_IBT)),  # CET_S
    17: (64, 2752, 2, (AMX_TILE,)),  # XTILECFG
    18: (8192, 2816, 6, (AMX_TILE,)),  # XTILEDATA
}
#: The x87/SSE legacy region plus the XSAVE header: the area's size with no other component.
_XSAVE_BASE_SIZE = 576


def _index() -> dict[tuple[int, int], list[tuple[Feature, int, int]]]:
    at: dict[tuple[int, int], list[tuple[Feature, int, int]]] = {}
    for bank, mapping in MAPS.items():
        for bit, where in mapping.items():
            at.setdefault((where.leaf, where.subleaf), []).append(
                (Feature(bank, bit), where.register, where.bit)
            )
    return at


#: (Leaf, subleaf) -> the mapped features whose bits live there: (feature, register, bit).
_AT = _index()


def standard_size(kept: dict[int, tuple[int, int, int, tuple[Feature, ...]]], xcr0: int) -> int:
    """The standard-format XSAVE area for the user components of *kept* enabled in *xcr0*: where the
    last of them ends, at least the legacy region and header (576)."""
    ends = [size + offset for c, (size, offset, flags, _) in kept.items() if xcr0 >> c & 1 and not flags & 1]
    return max([_XSAVE_BASE_SIZE, *ends])


def compacted_size(kept: dict[int, tuple[int, int, int, tuple[Feature, ...]]], enabled: int) -> int:
    """The compacted-format XSAVE area for the components of *kept* enabled in *enabled* (XCR0 |
    IA32_XSS): each placed after the previous one, at the next multiple of 64 if 64-byte aligned."""
    end = _XSAVE_BASE_SIZE
    for c in sorted(kept):
        size, _, flags, _ = kept[c]
        if enabled >> c & 1:
            if flags & 2:
                end = -(-end // 64) * 64
            end += size
    return end


def _xsave_leaf(subleaf: int, off: frozenset[Feature], xfem: int, xss: int) -> tuple[int, int, int, int]:
    """CPUID.(0xD, *subleaf*) with the state components the features left on keep, the sizes for
    XCR0 = *xfem* and IA32_XSS = *xss*."""
    if XSAVE in off:
        return 0, 0, 0, 0
    kept = {c: v for c, v in _COMPONENTS.items() if any(f not in off for f in v[3])}
    if subleaf == 0:
        xcr0 = 0b11 | sum(1 << c for c, v in kept.items() if not v[2] & 1)  # x87, SSE and the rest
        largest = standard_size(kept, xcr0)
        return xcr0 & 0xFFFF_FFFF, standard_size(kept, xfem), largest, xcr0 >> 32
    if subleaf == 1:  # XSAVEOPT XSAVEC XGETBV1 XSAVES XFD (cleared bit by bit); IA32_XSS bits
        supervisor = sum(1 << c for c, v in kept.items() if v[2] & 1)
        return 0x1F, compacted_size(kept, xfem | xss), supervisor & 0xFFFF_FFFF, supervisor >> 32
    if subleaf not in kept:
        return 0, 0, 0, 0
    size, offset, flags, _ = kept[subleaf]
    return size, offset, flags, 0  # an XFD-capable component (tile data) is kept only with XFD on


def _topology_leaf(subleaf: int, apic_id: int, vp_count: int) -> tuple[int, int, int, int]:
    """CPUID.(0xB, *subleaf*) on the VP with x2APIC ID *apic_id* of a partition with *vp_count* VPs:
    one package of *vp_count* cores, one logical processor each."""
    x2apic_id = apic_id & _U32
    if subleaf == 0:  # SMT level: one thread per core, so the core ID is the x2APIC ID
        return 0, 1, 0 | 1 << 8, x2apic_id
    if subleaf == 1:  # core level: every VP of the partition
        count = max(1, vp_count)
        return (count - 1).bit_length(), count & 0xFFFF, 1 | 2 << 8, x2apic_id
    return 0, 0, subleaf & 0xFF, x2apic_id  # the invalid level, and every subleaf after it


def features_info(privileges: int) -> int:
    """HvRegisterPrivilegesAndFeaturesInfo: CPUID 0x4000_0003 packed in 128 bits (EAX lowest)."""
    return privileges | HV_FEATURES_ECX << 64 | HV_FEATURES_EDX << 96


def cpuid_model(
    leaf: int,
    subleaf: int,
    disabled: tuple[int, int] = (0, 0),
    disabled_xsave: int = 0,
    *,
    xfem: int = 1,
    xss: int = 0,
    privileges: int = 0,
    apic_id: int = 0,
    vp_count: int = 1,
    max_vps: int = HV_MAXIMUM_PROCESSORS,
) -> tuple[int, int, int, int]:
    """EAX, EBX, ECX, EDX for *leaf* / *subleaf* on a partition created with DisabledProcessorFeatures
    banks *disabled* and DisabledProcessorXsaveFeatures *disabled_xsave*, with XCR0 = *xfem* and
    IA32_XSS = *xss* in force (they set leaf 0xD's sizes; the defaults are the reset values).

    The partition and VP the leaf is read on: *privileges*, the partition's HV_PARTITION_PRIVILEGE_MASK
    now (leaf 0x4000_0003 EAX / EBX); *apic_id*, the VP's HvX64RegisterInitialApicId (leaf 1 EBX[31:24],
    leaf 0xB EDX); *vp_count*, the VPs the partition has (leaf 0xB's core level); *max_vps*, the most
    VPs a partition can have (leaf 0x4000_0005 EAX). The defaults describe VP 0 of a one-VP partition
    without privileges."""
    if leaf not in SUBLEAF_LEAVES:
        subleaf = 0
    off = effective_disabled(disabled, disabled_xsave)
    if leaf == 0xD:
        values = list(_xsave_leaf(subleaf, off, xfem, xss))
    elif leaf == 0xB:
        values = list(_topology_leaf(subleaf, apic_id, vp_count))
    else:
        values = list(_LEAVES.get((leaf, subleaf), (0, 0, 0, 0)))
    if leaf == 0x1:
        values[EBX] |= (apic_id & 0xFF) << 24  # initial APIC ID
    elif leaf == 0x4000_0003:
        values[EAX], values[EBX] = privileges & _U32, privileges >> 32 & _U32
    elif leaf == 0x4000_0005:
        values[EAX] = max_vps & _U32
    for feature, register, bit in _AT.get((leaf, subleaf), ()):
        if feature in off:
            values[register] &= ~(1 << bit)
    return values[0], values[1], values[2], values[3]


def vp_cpuid(
    p: Partition, vp: Vp, leaf: int, subleaf: int, max_vps: int, xfem_xss: tuple[int, int] | None = None
) -> tuple[int, int, int, int]:
    """What *vp* of *p* reads for CPUID *leaf* / *subleaf* (no registered results applied): the
    partition's disabled features and privileges, the VP's APIC ID, and XCR0 / IA32_XSS from the VP's
    HvX64RegisterXfem / HvX64RegisterXss unless *xfem_xss* gives them (GetVpCpuidValues' elements)."""
    regs = vp.regs
    xfem, xss = xfem_xss if xfem_xss is not None else (regs[R.Xfem], regs[R.Xss])
    return cpuid_model(
        leaf,
        subleaf,
        p.disabled_processor_features,
        p.disabled_xsave_features,
        xfem=xfem,
        xss=xss,
        privileges=p.privileges,
        apic_id=regs[R.InitialApicId],
        vp_count=len(p.vps),
        max_vps=max_vps,
    )
