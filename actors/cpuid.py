"""The CPUID a partition's VPs see without intercepts (HYPERCALLS.md 4.15): a generic x64 processor
with Hyper-V's hypervisor leaves, minus the features the partition was created without.

CreatePartition's DisabledProcessorFeatures (HV_PARTITION_PROCESSOR_FEATURES, bank 0) clears the
CPUID bits of the features it names; ``DISABLEABLE`` lists the bits this model maps (feature bit ->
leaf, register, CPUID bit).
"""

from __future__ import annotations

EAX, EBX, ECX, EDX = range(4)

#: Leaf -> (EAX, EBX, ECX, EDX) of the full processor (subleaf 0 where a leaf has subleaves).
_LEAVES: dict[int, tuple[int, int, int, int]] = {
    0x0: (0xD, 0x756E_6547, 0x6C65_746E, 0x4965_6E69),  # max leaf 0xD, "GenuineIntel"
    # SSE3 PCLMUL SSSE3 CX16 SSE4.1 SSE4.2 MOVBE POPCNT AES F16C RDRAND PCID, hypervisor (bit 31).
    0x1: (0x000A_0671, 0x0000_0800, 0xF2DA_2203, 0x078B_FBFF),
    # FSGSBASE BMI1 HLE SMEP BMI2 ERMS INVPCID RTM RDSEED ADX SMAP CLFLUSHOPT CLWB SHA.
    0x7: (0, 0x219C_0F99, 0, 0),
    0x4000_0000: (0x4000_000A, 0x7263_694D, 0x666F_736F, 0x7648_2074),  # "Microsoft Hv"
    0x4000_0001: (0x3123_7648, 0, 0, 0),  # "Hv#1"
    0x8000_0000: (0x8000_0008, 0, 0, 0),
    # LAHF/SAHF, LZCNT; NX, 1 GiB pages, RDTSCP, long mode.
    0x8000_0001: (0, 0, 0x0000_0021, 0x2C10_0800),
}

#: HV_PARTITION_PROCESSOR_FEATURES bank 0 bit -> (leaf, register, bit) it removes from CPUID.
DISABLEABLE: dict[int, tuple[int, int, int]] = {
    0: (0x1, ECX, 0),  # Sse3
    1: (0x8000_0001, ECX, 0),  # LahfSahf
    2: (0x1, ECX, 9),  # Ssse3
    3: (0x1, ECX, 19),  # Sse4_1
    4: (0x1, ECX, 20),  # Sse4_2
    7: (0x1, ECX, 23),  # PopCnt
    8: (0x1, ECX, 13),  # Cmpxchg16b
    10: (0x8000_0001, ECX, 5),  # Lzcnt
    15: (0x8000_0001, EDX, 26),  # Page1Gb
    16: (0x1, ECX, 25),  # Aes
    17: (0x1, ECX, 1),  # Pclmulqdq
    18: (0x1, ECX, 17),  # Pcid
    20: (0x1, ECX, 29),  # F16C
    21: (0x1, ECX, 30),  # RdRand
    22: (0x7, EBX, 0),  # RdWrFsGs
    23: (0x7, EBX, 7),  # Smep
    24: (0x7, EBX, 9),  # EnhancedFastString
    25: (0x7, EBX, 3),  # Bmi1
    26: (0x7, EBX, 8),  # Bmi2
    29: (0x1, ECX, 22),  # Movbe
    32: (0x7, EBX, 18),  # RdSeed
    33: (0x7, EBX, 19),  # Adx
    35: (0x7, EBX, 20),  # Smap
    36: (0x7, EBX, 4),  # Hle
    37: (0x7, EBX, 11),  # Rtm
    38: (0x8000_0001, EDX, 27),  # Rdtscp
    39: (0x7, EBX, 23),  # Clflushopt
    40: (0x7, EBX, 24),  # Clwb
    41: (0x7, EBX, 29),  # Sha
    43: (0x7, EBX, 10),  # Invpcid
}


def cpuid_model(leaf: int, subleaf: int, disabled: int = 0) -> tuple[int, int, int, int]:
    """EAX, EBX, ECX, EDX for *leaf* / *subleaf* on a partition whose bank-0 disabled features are
    *disabled*."""
    if leaf == 0x7 and subleaf:
        return 0, 0, 0, 0  # leaf 7 has only subleaf 0 here
    values = list(_LEAVES.get(leaf, (0, 0, 0, 0)))
    for bit, (at_leaf, register, cpuid_bit) in DISABLEABLE.items():
        if at_leaf == leaf and disabled >> bit & 1:
            values[register] &= ~(1 << cpuid_bit)
    return values[0], values[1], values[2], values[3]
