"""RegisterInterceptResult and UnregisterInterceptResult (HYPERCALLS.md 4.25-4.26): answers a parent
registers in advance, so the hypervisor gives them without an intercept.

A CPUID registration overrides the masked bits of a leaf (and subleaf, if SubleafSpecific) for one VP
or, with HV_ANY_VP, for every VP of the partition; a guest's CPUID of that leaf is answered from it
without an intercept, and GetVpCpuidValues applies it when asked (flag ApplyRegisteredValues). An MSR
registration decides what an access to an MSR the hypervisor does not implement does: Fault (#GP)
or IgnoreWriteReadZero. A VP's own registration wins over a partition-wide one.
"""

from __future__ import annotations

from hvsim.actors.hvdef import (
    CPUID_RESULT_PARAMETERS,
    HV_ANY_VP,
    MSR_RESULT_PARAMETERS,
    REGISTER_INTERCEPT_RESULT_HEADER,
    HvStatus,
    InterceptType,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Partition, PartitionState
from hvsim.actors.state import OK, HvState

S = HvStatus
CPUID, MSR = int(InterceptType.X64Cpuid), int(InterceptType.X64Msr)
IGNORE_WRITE_READ_ZERO = 1
_U32 = (1 << 32) - 1


class InterceptResultCalls(HvState):
    def _result_target(self, call: Call) -> tuple[HvStatus, Partition | None, int, int]:
        hdr = REGISTER_INTERCEPT_RESULT_HEADER.unpack(call.input)
        status, target = self.child_target(call.caller, hdr.partition_id, (PartitionState.ACTIVE,))
        if target is None:
            return status, None, 0, 0
        if hdr.vp_index != HV_ANY_VP and hdr.vp_index not in target.vps:
            return S.INVALID_VP_INDEX, None, 0, 0
        if hdr.intercept_type not in (CPUID, MSR):
            return S.INVALID_PARAMETER, None, 0, 0
        return OK, target, hdr.vp_index, hdr.intercept_type

    def register_intercept_result(self, call: Call) -> HvStatus:
        status, target, vp, kind = self._result_target(call)
        if target is None:
            return status
        if kind == CPUID:
            c = CPUID_RESULT_PARAMETERS.unpack(call.input, 16)
            if c.subleaf_specific > 1 or c.always_override > 1 or c.padding:
                return S.INVALID_PARAMETER
            subleaf = c.ecx if c.subleaf_specific else None
            values = (c.result_eax, c.result_ebx, c.result_ecx, c.result_edx)
            masks = (c.eax_mask, c.ebx_mask, c.ecx_mask, c.edx_mask)
            target.cpuid_results[(vp, c.eax, subleaf)] = (values, masks)
        else:
            m = MSR_RESULT_PARAMETERS.unpack(call.input, 16)
            if not m.access_type or m.access_type & ~0x3 or m.action > IGNORE_WRITE_READ_ZERO:
                return S.INVALID_PARAMETER
            for access in (1, 2):
                if m.access_type & access:
                    target.msr_results[(vp, m.msr_index, access)] = m.action
        return OK

    def unregister_intercept_result(self, call: Call) -> HvStatus:
        status, target, vp, kind = self._result_target(call)
        if target is None:
            return status
        words = [int.from_bytes(call.input[16 + i : 20 + i], "little") for i in (0, 4, 8)]
        if kind == CPUID:
            leaf, subleaf, specific = words
            key = (vp, leaf, subleaf if specific & 0xFF else None)
            removed = target.cpuid_results.pop(key, None) is not None
        else:
            index, access = words[0], words[1]
            if not access or access & ~0x3:
                return S.INVALID_PARAMETER
            found = [target.msr_results.pop((vp, index, a), None) for a in (1, 2) if access & a]
            removed = any(r is not None for r in found)
        return OK if removed else self.config.unregister_missing_status

    # --- what the intercept engine asks -------------------------------------------------------------
    def registered_cpuid(
        self, p: Partition, vp: int, leaf: int, subleaf: int, result: tuple[int, int, int, int]
    ) -> tuple[tuple[int, int, int, int], bool]:
        """*result* with the registered overrides applied; whether any registration matched."""
        for key in (
            (vp, leaf, subleaf),
            (vp, leaf, None),
            (HV_ANY_VP, leaf, subleaf),
            (HV_ANY_VP, leaf, None),
        ):
            entry = p.cpuid_results.get(key)
            if entry is not None:
                values, masks = entry
                merged = tuple(
                    (old & ~mask & _U32) | (new & mask)
                    for old, new, mask in zip(result, values, masks, strict=True)
                )
                return (merged[0], merged[1], merged[2], merged[3]), True
        return result, False

    def registered_msr(self, p: Partition, vp: int, index: int, write: bool) -> int | None:
        """The registered action for an unimplemented MSR access, or None."""
        access = 2 if write else 1
        action = p.msr_results.get((vp, index, access))
        return action if action is not None else p.msr_results.get((HV_ANY_VP, index, access))
