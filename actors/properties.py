"""Partition properties: Get/SetPartitionProperty and their Ex variants (HYPERCALLS.md 4.2-4.4, 5.1).

State rules ([inferred] where marked in the digest): *early* properties are set in CREATED and frozen
by InitializePartition; the others are set in ACTIVE; nothing is set after finalize. A property the
model does not know answers UNKNOWN_PROPERTY; a read-only one answers INVALID_PARAMETER on a set.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from hvsim.actors.hvdef import (
    GET_PARTITION_PROPERTY_INPUT,
    PARTITION_PROPERTY_EX_INPUT,
    PROPERTY_VALUE_OUTPUT,
    SET_PARTITION_PROPERTY_INPUT,
    HvStatus,
    PropertyCode,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Partition, PartitionState
from hvsim.actors.state import OK, HvState

S = HvStatus
P = PartitionState
PC = PropertyCode


class PropSpec(NamedTuple):
    early: bool = False
    read_only: bool = False
    default: int = 0
    #: Returns the status for a proposed value (SUCCESS to accept).
    check: Callable[[int], HvStatus] | None = None
    #: Wide value (bytes) settable only through SetPartitionPropertyEx.
    wide: bool = False


def _range(lo: int, hi: int) -> Callable[[int], HvStatus]:
    return lambda v: OK if lo <= v <= hi else S.PROPERTY_VALUE_OUT_OF_RANGE


def _bool(v: int) -> HvStatus:
    return OK if v in (0, 1) else S.INVALID_PARAMETER


SPECS: dict[int, PropSpec] = {
    PC.PrivilegeFlags: PropSpec(early=True),
    PC.SyntheticProcFeatures: PropSpec(early=True),
    PC.Suspend: PropSpec(check=_bool),
    PC.CpuReserve: PropSpec(check=_range(0, 100_000)),
    PC.CpuCap: PropSpec(default=100_000, check=_range(0, 100_000)),
    PC.CpuWeight: PropSpec(default=100, check=_range(1, 10_000)),
    PC.CpuGroupId: PropSpec(),
    PC.TimeFreeze: PropSpec(check=_bool),
    PC.ReferenceTime: PropSpec(),
    PC.VirtualTlbPageCount: PropSpec(),
    PC.VsmConfig: PropSpec(),
    PC.ZeroMemoryOnReset: PropSpec(check=_bool),
    PC.ProcessorsPerSocket: PropSpec(default=1, check=_range(1, 2048)),
    PC.NestedTlbSize: PropSpec(),
    PC.GpaPageAccessTracking: PropSpec(check=_bool),
    PC.IsolationState: PropSpec(read_only=True),
    PC.IsolationControl: PropSpec(),
    PC.AllocationId: PropSpec(),
    PC.MonitoringId: PropSpec(),
    PC.ImplementedPhysicalAddressBits: PropSpec(read_only=True, default=46),
    PC.NonArchitecturalCoreSharing: PropSpec(read_only=True),
    PC.HypercallDoorbellPage: PropSpec(early=True),
    PC.IsolationPolicy: PropSpec(),
    PC.UnimplementedMsrAction: PropSpec(check=_bool),
    PC.PartitionDiagBufferConfig: PropSpec(early=True),
    PC.ProcessorVendor: PropSpec(read_only=True),
    PC.ProcessorXsaveFeatures: PropSpec(),
    PC.ProcessorClFlushSize: PropSpec(read_only=True, default=8),
    PC.EnlightenmentModifications: PropSpec(),
    PC.CompatibilityVersion: PropSpec(read_only=True),
    PC.PhysicalAddressWidth: PropSpec(early=True, default=46, check=_range(32, 52)),
    PC.XsaveStates: PropSpec(),
    PC.MaxXsaveDataSize: PropSpec(read_only=True, default=4096),
    PC.ProcessorClockFrequency: PropSpec(read_only=True, default=2_400_000_000),
    PC.ProcessorFeatures0: PropSpec(),
    PC.ProcessorFeatures1: PropSpec(),
    PC.GuestOsId: PropSpec(),
    PC.ProcessorVirtualizationFeatures: PropSpec(read_only=True),
    PC.VmmCapabilities: PropSpec(early=True, wide=True),
}

_U16 = struct.Struct("<H")


class PropertyCalls(HvState):
    def _property_target(self, call: Call, partition_id: int) -> tuple[HvStatus, Partition | None]:
        """Parent of the target, or the root naming itself ([legacy-doc])."""
        caller = call.caller
        target = self.resolve(caller, partition_id)
        if target is caller and caller.is_root:
            return OK, caller
        return self.child_target(caller, partition_id, (P.CREATED, P.ACTIVE, P.FINALIZED))

    def _read(self, p: Partition, code: int) -> int:
        if code == PC.PrivilegeFlags:
            return p.privileges
        if code == PC.CompatibilityVersion:
            return p.compatibility_version
        if code == PC.GuestOsId:
            return p.guest_os_id
        return p.properties.get(code, SPECS[code].default)

    def _state_allows_get(self, p: Partition) -> bool:
        if p.state is P.FINALIZED:
            return False
        return p.state is P.ACTIVE or self.config.get_property_in_created or p.is_root

    def _set(self, p: Partition, caller: Partition, code: int, value: int) -> HvStatus:
        spec = SPECS.get(code)
        if spec is None:
            return S.UNKNOWN_PROPERTY
        if p.state is P.FINALIZED:
            return S.INVALID_PARTITION_STATE
        if not p.is_root and (p.state is P.CREATED) != spec.early:
            return S.INVALID_PARTITION_STATE
        if spec.read_only or spec.wide:
            return S.INVALID_PARAMETER
        value &= 0xFFFF_FFFF_FFFF_FFFF
        if code == PC.PrivilegeFlags:
            if p.is_root:
                return S.INVALID_PARTITION_STATE  # the root's privileges were fixed when it booted
            # A parent cannot grant what it does not hold ([inferred]).
            if value & ~caller.privileges:
                return S.PROPERTY_VALUE_OUT_OF_RANGE
            p.privileges = value
            return OK
        if code == PC.VirtualTlbPageCount:
            return self._set_virtual_tlb(p, value)
        if spec.check is not None and (status := spec.check(value)) is not OK:
            return status
        if code == PC.GuestOsId:
            p.guest_os_id = value
        else:
            p.properties[code] = value
        return OK

    def _set_virtual_tlb(self, p: Partition, value: int) -> HvStatus:
        """Pages reserved from the pool; out-of-range values are clamped (legacy LEG ff542534)."""
        cfg = self.config
        pages = min(max(value, cfg.virtual_tlb_pages_min), cfg.virtual_tlb_pages_max)
        held = p.pool.charged("vtlb")
        if pages > held and not self.charge(p, "vtlb", pages - held):
            return S.INSUFFICIENT_MEMORY
        if pages < held:
            p.pool.release("vtlb", held - pages)
        if pages != held:
            self.pool_changed(p)
        p.properties[PC.VirtualTlbPageCount] = pages
        return OK

    def set_partition_property(self, call: Call) -> HvStatus:
        inp = SET_PARTITION_PROPERTY_INPUT.unpack(call.input)
        status, target = self._property_target(call, inp.partition_id)
        if target is None:
            return status
        if inp.padding:
            return S.INVALID_PARAMETER
        return self._set(target, call.caller, inp.property_code, inp.property_value)

    def get_partition_property(self, call: Call) -> HvStatus:
        inp = GET_PARTITION_PROPERTY_INPUT.unpack(call.input)
        status, target = self._property_target(call, inp.partition_id)
        if target is None:
            return status
        spec = SPECS.get(inp.property_code)
        if spec is None:
            return S.UNKNOWN_PROPERTY
        if not self._state_allows_get(target):
            return S.INVALID_PARTITION_STATE
        if spec.wide:
            return S.INVALID_PARAMETER  # read it with GetPartitionPropertyEx
        call.output[:8] = PROPERTY_VALUE_OUTPUT.pack((self._read(target, inp.property_code),))
        return OK

    def set_partition_property_ex(self, call: Call) -> HvStatus:
        inp = PARTITION_PROPERTY_EX_INPUT.unpack(call.input)
        status, target = self._property_target(call, inp.partition_id)
        if target is None:
            return status
        if inp.padding:
            return S.INVALID_PARAMETER
        code = inp.property_code
        value = bytes(call.input[24 : 24 + call.var_bytes])
        spec = SPECS.get(code)
        if spec is None:
            return S.UNKNOWN_PROPERTY
        if not spec.wide:
            if len(value) != 8:
                return S.INVALID_PARAMETER
            return self._set(target, call.caller, code, int.from_bytes(value, "little"))
        if target.state is not P.CREATED:
            return S.INVALID_PARTITION_STATE
        # VmmCapabilities: u16 bank_count, u16[3] reserved, then bank_count u64 banks.
        if len(value) < 8 or value[2:8] != bytes(6) or len(value) != 8 + 8 * _U16.unpack_from(value)[0]:
            return S.INVALID_PARAMETER
        target.wide_properties[code] = value
        return OK

    def get_partition_property_ex(self, call: Call) -> HvStatus:
        inp = PARTITION_PROPERTY_EX_INPUT.unpack(call.input)
        status, target = self._property_target(call, inp.partition_id)
        if target is None:
            return status
        code = inp.property_code
        spec = SPECS.get(code)
        if spec is None:
            return S.UNKNOWN_PROPERTY
        if not self._state_allows_get(target):
            return S.INVALID_PARTITION_STATE
        if spec.wide:
            value = target.wide_properties.get(code, bytes(8))
        else:
            value = self._read(target, code).to_bytes(8, "little")
        call.output[: len(value)] = value
        return OK
