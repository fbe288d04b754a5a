"""The x64 VP register file: reset values and per-register write validation.

The TLFS rule for SetVpRegisters: reserved bits must be zero, architecturally fixed bits must hold
their fixed value, bits beyond the register's width must be zero, read-only registers cannot be
written. Side effects of a write (exceptions, TLB flushes) are not performed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from hvsim.actors.hvdef import SEGMENT_ATTRIBUTES_RESERVED, RegisterName, X64Segment

R = RegisterName
_U64 = (1 << 64) - 1


class RegSpec(NamedTuple):
    """How one register behaves: its width, reserved bits, fixed-one bits and reset value."""

    width_bits: int = 64
    reserved_mask: int = 0
    fixed_ones: int = 0
    read_only: bool = False
    reset: int = 0
    #: Extra check on the whole value (e.g. PAT memory types); True means valid.
    check: Callable[[int], bool] | None = None


def _pat_ok(value: int) -> bool:
    return all(((value >> (8 * i)) & 0xFF) in (0, 1, 4, 5, 6, 7) for i in range(8))


def _segment_ok(value: int) -> bool:
    return not (X64Segment.from_value(value).attributes & SEGMENT_ATTRIBUTES_RESERVED)


def _table_ok(value: int) -> bool:
    return value & 0xFFFF_FFFF_FFFF == 0  # Pad u16[3] must be zero


def _sint_ok(value: int) -> bool:
    masked = value & (1 << 16)
    return bool(masked) or (value & 0xFF) >= 16  # valid vectors are 16-255


def _seg(base: int, limit: int, selector: int, attributes: int) -> int:
    return X64Segment(base, limit, selector, attributes).to_value()


def _table(limit: int, base: int = 0) -> int:
    return (limit << 48) | (base << 64)


# Architectural reset state (Intel SDM 9.1.1), used for every new VP.
_CR0_DEFINED = 0x3F | 1 << 16 | 1 << 18 | 1 << 29 | 1 << 30 | 1 << 31  # PE MP EM TS ET NE, WP, AM, NW CD PG
_CR0_RESERVED = _U64 & ~_CR0_DEFINED
_CR4_RESERVED = (_U64 & ~((1 << 25) - 1)) | (1 << 15)
_EFER_RESERVED = _U64 & ~(1 << 0 | 1 << 8 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 15)
_RFLAGS_RESERVED = (_U64 & ~((1 << 22) - 1)) | (1 << 3) | (1 << 5) | (1 << 15)
_APIC_BASE_RESERVED = 0xFF | (1 << 9) | (_U64 & ~((1 << 52) - 1))
_PAGE_REG_RESERVED = 0xFFE  # enable bit 0, bits 11:1 reserved, GPA page in 63:12

SPECS: dict[int, RegSpec] = {
    R.ExplicitSuspend: RegSpec(reserved_mask=_U64 & ~1, reset=1),
    R.InterceptSuspend: RegSpec(reserved_mask=_U64 & ~3),
    R.InstructionEmulationHints: RegSpec(),
    R.DispatchSuspend: RegSpec(reserved_mask=_U64 & ~1),
    R.InternalActivityState: RegSpec(read_only=True),
    R.HypervisorVersion: RegSpec(width_bits=128, read_only=True),
    R.PrivilegesAndFeaturesInfo: RegSpec(width_bits=128, read_only=True),
    R.GuestCrashP0: RegSpec(),
    R.GuestCrashP1: RegSpec(),
    R.GuestCrashP2: RegSpec(),
    R.GuestCrashP3: RegSpec(),
    R.GuestCrashP4: RegSpec(),
    R.GuestCrashCtl: RegSpec(reserved_mask=_U64 & ~(3 << 62)),
    R.PendingInterruption: RegSpec(),
    R.InterruptState: RegSpec(reserved_mask=_U64 & ~3),
    R.PendingEvent0: RegSpec(width_bits=128),
    R.PendingEvent1: RegSpec(width_bits=128),
    **{R(R.Rax + i): RegSpec() for i in range(16)},
    R.Rip: RegSpec(reset=0xFFF0),
    R.Rflags: RegSpec(reserved_mask=_RFLAGS_RESERVED, fixed_ones=0x2, reset=0x2),
    **{R(R.Xmm0 + i): RegSpec(width_bits=128) for i in range(16)},
    R.Cr0: RegSpec(reserved_mask=_CR0_RESERVED, fixed_ones=0x10, reset=0x6000_0010),  # ET is fixed 1
    R.Cr2: RegSpec(),
    R.Cr3: RegSpec(reserved_mask=_U64 & ~((1 << 52) - 1)),
    R.Cr4: RegSpec(reserved_mask=_CR4_RESERVED),
    R.Cr8: RegSpec(reserved_mask=_U64 & ~0xF),
    R.Xfem: RegSpec(fixed_ones=1, reset=1),
    R.Dr0: RegSpec(),
    R.Dr1: RegSpec(),
    R.Dr2: RegSpec(),
    R.Dr3: RegSpec(),
    R.Dr6: RegSpec(reserved_mask=_U64 & ~0xFFFF_FFFF, reset=0xFFFF_0FF0),
    R.Dr7: RegSpec(reserved_mask=_U64 & ~0xFFFF_FFFF, fixed_ones=0x400, reset=0x400),
    R.Es: RegSpec(width_bits=128, reset=_seg(0, 0xFFFF, 0, 0x93), check=_segment_ok),
    R.Cs: RegSpec(width_bits=128, reset=_seg(0xFFFF_0000, 0xFFFF, 0xF000, 0x9B), check=_segment_ok),
    R.Ss: RegSpec(width_bits=128, reset=_seg(0, 0xFFFF, 0, 0x93), check=_segment_ok),
    R.Ds: RegSpec(width_bits=128, reset=_seg(0, 0xFFFF, 0, 0x93), check=_segment_ok),
    R.Fs: RegSpec(width_bits=128, reset=_seg(0, 0xFFFF, 0, 0x93), check=_segment_ok),
    R.Gs: RegSpec(width_bits=128, reset=_seg(0, 0xFFFF, 0, 0x93), check=_segment_ok),
    R.Ldtr: RegSpec(width_bits=128, reset=_seg(0, 0xFFFF, 0, 0x82), check=_segment_ok),
    R.Tr: RegSpec(width_bits=128, reset=_seg(0, 0xFFFF, 0, 0x8B), check=_segment_ok),
    R.Idtr: RegSpec(width_bits=128, reset=_table(0xFFFF), check=_table_ok),
    R.Gdtr: RegSpec(width_bits=128, reset=_table(0xFFFF), check=_table_ok),
    R.Tsc: RegSpec(),
    R.Efer: RegSpec(reserved_mask=_EFER_RESERVED),
    R.KernelGsBase: RegSpec(),
    R.ApicBase: RegSpec(reserved_mask=_APIC_BASE_RESERVED, reset=0xFEE0_0800),
    R.Pat: RegSpec(reset=0x0007_0406_0007_0406, check=_pat_ok),
    R.SysenterCs: RegSpec(),
    R.SysenterEip: RegSpec(),
    R.SysenterEsp: RegSpec(),
    R.Star: RegSpec(),
    R.Lstar: RegSpec(),
    R.Cstar: RegSpec(),
    R.Sfmask: RegSpec(),
    R.InitialApicId: RegSpec(width_bits=32),
    # IA32_XSS: the supervisor state components the model processor has (CET_U 11, CET_S 12).
    R.Xss: RegSpec(reserved_mask=_U64 & ~(0b11 << 11)),
    R.VpRuntime: RegSpec(read_only=True),
    R.Hypercall: RegSpec(reserved_mask=0xFFC),
    R.GuestOsId: RegSpec(),
    R.VpIndex: RegSpec(read_only=True),
    R.TimeRefCount: RegSpec(read_only=True),
    R.VpAssistPage: RegSpec(reserved_mask=_PAGE_REG_RESERVED),
    R.ReferenceTsc: RegSpec(reserved_mask=_PAGE_REG_RESERVED),
    **{
        R(R.Sint0 + i): RegSpec(reserved_mask=_U64 & ~0x1F00FF, reset=0x10000, check=_sint_ok)
        for i in range(16)
    },
    R.Scontrol: RegSpec(reserved_mask=_U64 & ~1),
    R.Sversion: RegSpec(read_only=True, reset=1),
    R.Sifp: RegSpec(reserved_mask=_PAGE_REG_RESERVED),
    R.Sipp: RegSpec(reserved_mask=_PAGE_REG_RESERVED),
    R.Eom: RegSpec(),
    R.Sirbp: RegSpec(),
}

#: Registers whose value is computed on read (live state), not stored.
COMPUTED = frozenset(
    {
        R.InternalActivityState,
        R.HypervisorVersion,
        R.PrivilegesAndFeaturesInfo,
        R.VpRuntime,
        R.GuestOsId,
        R.VpIndex,
        R.TimeRefCount,
        R.Eom,
    }
)

#: Registers with their own write semantics (the VP run/suspend model, HYPERCALLS.md 5.9).
SUSPEND_REGISTERS = frozenset({R.ExplicitSuspend, R.InterceptSuspend, R.DispatchSuspend})

#: Reported by HvRegisterHypervisorVersion (CPUID 0x40000002: build, major.minor, service data).
HYPERVISOR_VERSION = (26100 | (10 << 48) | (0 << 32)) & ((1 << 128) - 1)

#: HvRegisterInternalActivityState bit 0: waiting for startup (an AP before SIPI/StartVp).
ACTIVITY_STARTUP_SUSPEND = 1


def reset_file(vp_index: int) -> dict[int, int]:
    """A fresh register file for VP *vp_index* (the BSP, VP 0, gets the BSP flag in ApicBase)."""
    regs = {name: spec.reset for name, spec in SPECS.items() if name not in COMPUTED}
    regs[R.InitialApicId] = vp_index
    if vp_index == 0:
        regs[R.ApicBase] |= 1 << 8
    return regs


def value_ok(spec: RegSpec, value: int) -> bool:
    """The TLFS write rule for a non-read-only register."""
    if value >> spec.width_bits:
        return False
    if value & spec.reserved_mask:
        return False
    if value & spec.fixed_ones != spec.fixed_ones:
        return False
    return spec.check is None or spec.check(value)
