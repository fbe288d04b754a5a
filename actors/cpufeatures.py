"""The processor features CreatePartition can disable (its DisabledProcessorFeatures
banks 0 and 1 and DisabledProcessorXsaveFeatures, HYPERCALLS.md 4.1, 5.3), the CPUID bit of each, and
the features that need them. ``actors/cpuid.py`` clears the bits of the features a partition lacks.

CreatePartition's properties name the features a partition is created without, and each mapped
feature's CPUID bit is cleared (feature bit -> ``CpuidBit(leaf, subleaf, register, bit)``):

* ``DISABLEABLE``: DisabledProcessorFeatures bank 0 (HV_PARTITION_PROCESSOR_FEATURES, 30 bits).
* ``DISABLEABLE_BANK1``: bank 1 (17 bits): the features with a CPUID bit the processor sets.
* ``XSAVE_DISABLEABLE``: DisabledProcessorXsaveFeatures (HV_PARTITION_PROCESSOR_XSAVE_FEATURES,
  bit 0 xsave, 1 xsaveopt, 2 avx, ... as in Linux's ``hv_partition_processor_xsave_features``; 29
  bits). An XSAVE feature that owns state also drops its state components from leaf 0xD (AVX:
  component 2; AVX-512: 5-7; AMX-TILE: 17-18; CET: supervisor components 11-12), so the sizes there
  stay consistent. Without XSAVE, leaf 0xD reads as zeros.

Features disabled there but not mapped clear nothing, for one of three reasons:

* no CPUID bit: bank 1's VMX/EPT capabilities (Mbec, VmxExceptionInject, VmxInsOutsExitInfo, Hlat,
  PerfGlobalCtrl, NptExecuteOnly, NptADFlags, Npt1GbPage), the IA32_ARCH_CAPABILITIES bits
  (SbdrSsdpNo, FbsdpNo, PsdpNo, FbClear) and NestedVirt (the simulation runs no nested hypervisor,
  so the processor reports no VMX to hide);
* AMD-only bits this Intel processor never sets: bank 1's ClZero, Rdpru, BtcNo, IbpbRsbFlush,
  StibpAlwaysOn (leaf 0x8000_0008 EBX), Sbpb, IbpbBrType, SrsoNo, SrsoUserKernelNo (0x8000_0021);
* features the processor lacks: bank 1's Cmpccxadd, PrefetchI, Sha512, SM3, SM4 (leaf 7.1); XSAVE
  bits mpx (7.0 EBX 14), avx512_vp2intersect (7.0 EDX 8), avx_ifma, avx_ne_convert, avx_vnni_int8,
  avx_vnni_int16, avx10_1_256/512, amx_fp16 (7.1), and apx, avx10_2 (bits 38-40 of newer headers).

Disabling a feature also disables the features that need it (``ALSO_DISABLES``, applied
transitively: ``DEPENDENTS``), as real hypervisors hide dependent features. Without XSAVE a guest
cannot enable any extended state, so XSAVEOPT/XSAVEC/XSAVES/XGETBV1/XFD and AVX go; with AVX go
AVX2, FMA, F16C (bank 0; VEX-encoded, needs YMM state), VAES, VPCLMULQDQ and AVX512F; AVX-512's
extensions need AVX512F (VBMI2, VNNI, BITALG, BF16 need AVX512VL and FP16 needs AVX512BW, as in
Linux's cpuid-deps.c); AVX-VNNI needs AVX2; AMX-TILE needs XFD and AMX-BF16/INT8 need AMX-TILE;
CET (bank 1 CetSs, CetIbt) needs XSAVES for its supervisor state. GFNI stands alone: it has
legacy-SSE forms.
"""

from __future__ import annotations

import functools
from enum import IntEnum
from typing import NamedTuple

EAX, EBX, ECX, EDX = range(4)


class Bank(IntEnum):
    """Where a disabled feature's bit sits in CreatePartition's properties."""

    FEATURES0 = 0  # DisabledProcessorFeatures, first 64 bits
    FEATURES1 = 1  # DisabledProcessorFeatures, second 64 bits
    XSAVE = 2  # DisabledProcessorXsaveFeatures


class Feature(NamedTuple):
    bank: Bank
    bit: int


class CpuidBit(NamedTuple):
    leaf: int
    subleaf: int
    register: int
    bit: int


class Xsave(IntEnum):
    """HV_PARTITION_PROCESSOR_XSAVE_FEATURES bits the processor has."""

    XSAVE = 0
    XSAVEOPT = 1
    AVX = 2
    AVX2 = 3
    FMA = 4
    AVX512F = 6
    AVX512DQ = 7
    AVX512CD = 8
    AVX512BW = 9
    AVX512VL = 10
    XSAVEC = 11  # xsave_comp_support
    XSAVES = 12  # xsave_supervisor_support
    XGETBV1 = 13  # xcr1_support
    AVX512_BITALG = 14
    AVX512_IFMA = 15
    AVX512_VBMI = 16
    AVX512_VBMI2 = 17
    AVX512_VNNI = 18
    GFNI = 19
    VAES = 20
    AVX512_VPOPCNTDQ = 21
    VPCLMULQDQ = 22
    AVX512_BF16 = 23
    AVX512_FP16 = 25
    XFD = 26
    AMX_TILE = 27
    AMX_BF16 = 28
    AMX_INT8 = 29
    AVX_VNNI = 30


#: HV_PARTITION_PROCESSOR_FEATURES bank 0 bit -> the CPUID bit it removes.
DISABLEABLE: dict[int, CpuidBit] = {
    0: CpuidBit(0x1, 0, ECX, 0),  # Sse3
    1: CpuidBit(0x8000_0001, 0, ECX, 0),  # LahfSahf
    2: CpuidBit(0x1, 0, ECX, 9),  # Ssse3
    3: CpuidBit(0x1, 0, ECX, 19),  # Sse4_1
    4: CpuidBit(0x1, 0, ECX, 20),  # Sse4_2
    7: CpuidBit(0x1, 0, ECX, 23),  # PopCnt
    8: CpuidBit(0x1, 0, ECX, 13),  # Cmpxchg16b
    10: CpuidBit(0x8000_0001, 0, ECX, 5),  # Lzcnt
    15: CpuidBit(0x8000_0001, 0, EDX, 26),  # Page1Gb
    16: CpuidBit(0x1, 0, ECX, 25),  # Aes
    17: CpuidBit(0x1, 0, ECX, 1),  # Pclmulqdq
    18: CpuidBit(0x1, 0, ECX, 17),  # Pcid
    20: CpuidBit(0x1, 0, ECX, 29),  # F16C
    21: CpuidBit(0x1, 0, ECX, 30),  # RdRand
    22: CpuidBit(0x7, 0, EBX, 0),  # RdWrFsGs
    23: CpuidBit(0x7, 0, EBX, 7),  # Smep
    24: CpuidBit(0x7, 0, EBX, 9),  # EnhancedFastString
    25: CpuidBit(0x7, 0, EBX, 3),  # Bmi1
    26: CpuidBit(0x7, 0, EBX, 8),  # Bmi2
    29: CpuidBit(0x1, 0, ECX, 22),  # Movbe
    32: CpuidBit(0x7, 0, EBX, 18),  # RdSeed
    33: CpuidBit(0x7, 0, EBX, 19),  # Adx
    35: CpuidBit(0x7, 0, EBX, 20),  # Smap
    36: CpuidBit(0x7, 0, EBX, 4),  # Hle
    37: CpuidBit(0x7, 0, EBX, 11),  # Rtm
    38: CpuidBit(0x8000_0001, 0, EDX, 27),  # Rdtscp
    39: CpuidBit(0x7, 0, EBX, 23),  # Clflushopt
    40: CpuidBit(0x7, 0, EBX, 24),  # Clwb
    41: CpuidBit(0x7, 0, EBX, 29),  # Sha
    43: CpuidBit(0x7, 0, EBX, 10),  # Invpcid
}

#: HV_PARTITION_PROCESSOR_FEATURES bank 1 bit -> the CPUID bit it removes.
DISABLEABLE_BANK1: dict[int, CpuidBit] = {
    0: CpuidBit(0x6, 0, ECX, 0),  # ACountMCount (APERF/MPERF)
    1: CpuidBit(0x8000_0007, 0, EDX, 8),  # TscInvariant
    4: CpuidBit(0x7, 0, ECX, 16),  # La57
    7: CpuidBit(0x7, 2, EDX, 0),  # Psfd
    8: CpuidBit(0x7, 0, ECX, 7),  # CetSs
    9: CpuidBit(0x7, 0, EDX, 20),  # CetIbt
    12: CpuidBit(0x7, 0, ECX, 5),  # UmwaitTpause (WAITPKG)
    13: CpuidBit(0x7, 0, ECX, 27),  # Movdiri
    14: CpuidBit(0x7, 0, ECX, 28),  # Movdir64b
    15: CpuidBit(0x7, 0, ECX, 25),  # Cldemote
    16: CpuidBit(0x7, 0, EDX, 14),  # Serialize
    17: CpuidBit(0x1, 0, ECX, 24),  # TscDeadlineTmr
    18: CpuidBit(0x7, 0, EBX, 1),  # TscAdjust
    19: CpuidBit(0x7, 1, EAX, 10),  # FZLRepMovsb
    20: CpuidBit(0x7, 1, EAX, 11),  # FSRepStosb
    21: CpuidBit(0x7, 1, EAX, 12),  # FSRepCmpsb
    22: CpuidBit(0x7, 0, EDX, 16),  # TsxLdTrk
}

#: HV_PARTITION_PROCESSOR_XSAVE_FEATURES bit -> the CPUID bit it removes.
XSAVE_DISABLEABLE: dict[int, CpuidBit] = {
    Xsave.XSAVE: CpuidBit(0x1, 0, ECX, 26),
    Xsave.XSAVEOPT: CpuidBit(0xD, 1, EAX, 0),
    Xsave.AVX: CpuidBit(0x1, 0, ECX, 28),
    Xsave.AVX2: CpuidBit(0x7, 0, EBX, 5),
    Xsave.FMA: CpuidBit(0x1, 0, ECX, 12),
    Xsave.AVX512F: CpuidBit(0x7, 0, EBX, 16),
    Xsave.AVX512DQ: CpuidBit(0x7, 0, EBX, 17),
    Xsave.AVX512CD: CpuidBit(0x7, 0, EBX, 28),
    Xsave.AVX512BW: CpuidBit(0x7, 0, EBX, 30),
    Xsave.AVX512VL: CpuidBit(0x7, 0, EBX, 31),
    Xsave.XSAVEC: CpuidBit(0xD, 1, EAX, 1),
    Xsave.XSAVES: CpuidBit(0xD, 1, EAX, 3),
    Xsave.XGETBV1: CpuidBit(0xD, 1, EAX, 2),
    Xsave.AVX512_BITALG: CpuidBit(0x7, 0, ECX, 12),
    Xsave.AVX512_IFMA: CpuidBit(0x7, 0, EBX, 21),
    Xsave.AVX512_VBMI: CpuidBit(0x7, 0, ECX, 1),
    Xsave.AVX512_VBMI2: CpuidBit(0x7, 0, ECX, 6),
    Xsave.AVX512_VNNI: CpuidBit(0x7, 0, ECX, 11),
    Xsave.GFNI: CpuidBit(0x7, 0, ECX, 8),
    Xsave.VAES: CpuidBit(0x7, 0, ECX, 9),
    Xsave.AVX512_VPOPCNTDQ: CpuidBit(0x7, 0, ECX, 14),
    Xsave.VPCLMULQDQ: CpuidBit(0x7, 0, ECX, 10),
    Xsave.AVX512_BF16: CpuidBit(0x7, 1, EAX, 5),
    Xsave.AVX512_FP16: CpuidBit(0x7, 0, EDX, 23),
    Xsave.XFD: CpuidBit(0xD, 1, EAX, 4),
    Xsave.AMX_TILE: CpuidBit(0x7, 0, EDX, 24),
    Xsave.AMX_BF16: CpuidBit(0x7, 0, EDX, 22),
    Xsave.AMX_INT8: CpuidBit(0x7, 0, EDX, 25),
    Xsave.AVX_VNNI: CpuidBit(0x7, 1, EAX, 4),
}

#: Every mapped feature, by bank.
MAPS: dict[Bank, dict[int, CpuidBit]] = {
    Bank.FEATURES0: DISABLEABLE,
    Bank.FEATURES1: DISABLEABLE_BANK1,
    Bank.XSAVE: XSAVE_DISABLEABLE,
}


def _x(*bits: Xsave) -> tuple[Feature, ...]:
    return tuple(Feature(Bank.XSAVE, bit) for bit in bits)


X = Xsave
XSAVE, XSAVES, XFD = _x(X.XSAVE, X.XSAVES, X.XFD)
AVX, AVX2, AVX512F, AVX512BW, AVX512VL, AMX_TILE = _x(
    X.AVX, X.AVX2, X.AVX512F, X.AVX512BW, X.AVX512VL, X.AMX_TILE
)
F16C = Feature(Bank.FEATURES0, 20)
CET_SS, CET_IBT = Feature(Bank.FEATURES1, 8), Feature(Bank.FEATURES1, 9)

#: Feature -> the features that need it directly and go when it is disabled (the module docstring
#: says why); ``DEPENDENTS`` is its transitive closure.
ALSO_DISABLES: dict[Feature, tuple[Feature, ...]] = {
    XSAVE: (*_x(X.XSAVEOPT, X.XSAVEC, X.XSAVES, X.XGETBV1, X.XFD), AVX),
    AVX: (AVX2, *_x(X.FMA), AVX512F, *_x(X.VAES, X.VPCLMULQDQ), F16C),
    AVX2: _x(X.AVX_VNNI),
    AVX512F: (
        AVX512BW,
        AVX512VL,
        *_x(X.AVX512DQ, X.AVX512CD, X.AVX512_IFMA, X.AVX512_VBMI, X.AVX512_VPOPCNTDQ),
    ),
    AVX512VL: _x(X.AVX512_VBMI2, X.AVX512_VNNI, X.AVX512_BITALG, X.AVX512_BF16),
    AVX512BW: _x(X.AVX512_FP16),
    XFD: (AMX_TILE,),
    AMX_TILE: _x(X.AMX_BF16, X.AMX_INT8),
    XSAVES: (CET_SS, CET_IBT),
}


def _dependents() -> dict[Feature, frozenset[Feature]]:
    """Feature -> every feature that needs it, directly or through others."""
    closure: dict[Feature, frozenset[Feature]] = {}
    for root in ALSO_DISABLES:
        seen: set[Feature] = set()
        todo = [root]
        while todo:
            for dependent in ALSO_DISABLES.get(todo.pop(), ()):
                if dependent not in seen:
                    seen.add(dependent)
                    todo.append(dependent)
        closure[root] = frozenset(seen)
    return closure


#: Feature -> everything that goes with it when it is disabled.
DEPENDENTS = _dependents()


@functools.lru_cache(maxsize=256)
def effective_disabled(disabled: tuple[int, int] = (0, 0), disabled_xsave: int = 0) -> frozenset[Feature]:
    """The mapped features a partition created with these masks lacks: those it disabled and every
    feature that needs one of them."""
    masks = (*disabled, disabled_xsave)
    off: set[Feature] = set()
    for bank, mapping in MAPS.items():
        for bit in mapping:
            if masks[bank] >> bit & 1:
                feature = Feature(bank, bit)
                off |= {feature} | DEPENDENTS.get(feature, frozenset())
    return frozenset(off)
