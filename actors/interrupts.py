"""Virtual interrupts, TLB flushes and CPUID queries: AssertVirtualInterrupt, ClearVirtualInterrupt
(HYPERCALLS.md 4.34-4.35, 5.13), FlushVirtualAddressSpace / List (4.27-4.28), GetVpCpuidValues (4.15).

Interrupts go to a per-VP virtual APIC in the VP actor (``ApicInterrupt``), which guest programs
observe with ``WaitInterrupt``. The destination is an APIC ID (physical; 0xFF broadcasts) or a
logical bit mask of APIC IDs; lowest-priority delivery picks the lowest VP index of the set. INIT
resets a VP: its guest program starts over (the VP actor), an AP waits for SIPI and VP 0 runs again
from the reset vector; SIPI starts a waiting AP at vector << 12. ExtInt always targets VP
0 and latches: once VP 0 has acknowledged it (taken it while running), a new ExtInt answers
ACKNOWLEDGED until ClearVirtualInterrupt.

Each VP has a translation cache that its guest GVA accesses fill and use; writing CR0, CR3 or CR4
empties it, and the flush hypercalls empty it on the VPs they name (counted in ``Vp.tlb_flushes``).
A flush naming a VP whose TLB is locked suspends the flushing VP until the parent clears the lock;
its VP actor then re-issues the call (``HypercallResult.reissue``).
"""

from __future__ import annotations

from hvsim.actors.cpuid import vp_cpuid
from hvsim.actors.hvdef import (
    ASSERT_VIRTUAL_INTERRUPT_INPUT,
    CPUID_QUERY,
    CPUID_RESULT_SIZE,
    FLUSH_ALL_PROCESSORS,
    FLUSH_ALL_VIRTUAL_ADDRESS_SPACES,
    FLUSH_NON_GLOBAL_MAPPINGS_ONLY,
    FLUSH_USE_EXTENDED_RANGE_FORMAT,
    FLUSH_VIRTUAL_ADDRESS_INPUT,
    GET_VP_CPUID_VALUES_HEADER,
    HV_INTERRUPT_VECTOR_NONE,
    INTERCEPT_SUSPEND_TLB_LOCKED,
    INTERRUPT_CONTROL_RESERVED,
    INTERRUPT_LEVEL,
    INTERRUPT_LOGICAL,
    HvStatus,
    InterruptType,
    RegisterName,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Partition, PartitionState, Vp
from hvsim.actors.registers import SPECS
from hvsim.actors.state import OK, HvState

S = HvStatus
IT = InterruptType
R = RegisterName
VECTOR_TYPES = frozenset({IT.Fixed, IT.LowestPriority, IT.ExtInt, IT.Sipi})
BROADCAST = 0xFF
USE_VP_XFEM_XSS, APPLY_REGISTERED_VALUES = 0x1, 0x2  # HV_GET_VP_CPUID_VALUES_FLAGS bits 0, 1
#: ExtInt latch states.
EXTINT_NONE, EXTINT_PENDING, EXTINT_ACKNOWLEDGED = 0, 1, 2
_FLUSH_KNOWN = (
    FLUSH_ALL_PROCESSORS | FLUSH_ALL_VIRTUAL_ADDRESS_SPACES | FLUSH_NON_GLOBAL_MAPPINGS_ONLY
    | FLUSH_USE_EXTENDED_RANGE_FORMAT
)  # fmt: skip


class InterruptCalls(HvState):
    # --- AssertVirtualInterrupt / ClearVirtualInterrupt ---------------------------------------------
    def assert_virtual_interrupt(self, call: Call) -> HvStatus:
        inp = ASSERT_VIRTUAL_INTERRUPT_INPUT.unpack(call.input)
        status, target = self.child_target(call.caller, inp.partition_id, (PartitionState.ACTIVE,))
        if target is None:
            return status
        control, vector = inp.control, inp.vector
        if control & INTERRUPT_CONTROL_RESERVED or inp.reserved_z0 or inp.reserved_z1 or inp.target_vtl:
            return S.INVALID_PARAMETER
        try:
            kind = IT(control & 0xFFFF_FFFF)
        except ValueError:
            return S.INVALID_PARAMETER
        if vector != HV_INTERRUPT_VECTOR_NONE and (vector > 0xFF or (vector and kind not in VECTOR_TYPES)):
            return S.INVALID_PARAMETER
        if kind is IT.ExtInt:
            return self._ext_int(target, inp.destination, vector)
        vps = self._destination(target, inp.destination, bool(control & INTERRUPT_LOGICAL))
        if not vps:
            return S.INVALID_VP_INDEX
        if kind is IT.LowestPriority:
            vps = vps[:1]
        level = bool(control & INTERRUPT_LEVEL)
        for vp in vps:
            self._deliver_interrupt(target, vp, kind, vector, level)
        self.log.emit(
            "interrupt", partition=target.id, type=kind.name, vector=vector, vps=[vp.index for vp in vps]
        )
        return OK

    def clear_virtual_interrupt(self, call: Call) -> HvStatus:
        pid = int.from_bytes(call.input[:8], "little")
        status, target = self.child_target(call.caller, pid, (PartitionState.ACTIVE,))
        if target is None:
            return status
        if target.ext_int != EXTINT_ACKNOWLEDGED:
            return S.NOT_ACKNOWLEDGED
        target.ext_int = EXTINT_NONE
        return OK

    def _ext_int(self, p: Partition, destination: int, vector: int) -> HvStatus:
        if destination != 0:
            return S.INVALID_VP_INDEX  # ExtInt always goes to VP 0
        if p.ext_int == EXTINT_ACKNOWLEDGED:
            return S.ACKNOWLEDGED
        vp = p.vps.get(0)
        if vp is None:
            return S.INVALID_VP_INDEX
        if vector == HV_INTERRUPT_VECTOR_NONE:
            p.ext_int = EXTINT_NONE  # de-assert before acknowledgement: VP 0 will not take it
            self.effects.apic_interrupt(p, vp, vector, IT.ExtInt)
            return OK
        p.ext_int = EXTINT_PENDING
        self.effects.apic_interrupt(p, vp, vector, IT.ExtInt)
        self.log.emit("interrupt", partition=p.id, type="ExtInt", vector=vector, vps=[0])
        return OK

    def interrupt_acknowledged(self, partition_id: int, vp_index: int) -> None:
        """VP 0 took the ExtInt (the VP actor's INTA)."""
        p = self.partitions.get(partition_id)
        if p is not None and vp_index == 0 and p.ext_int == EXTINT_PENDING:
            p.ext_int = EXTINT_ACKNOWLEDGED

    def _destination(self, p: Partition, destination: int, logical: bool) -> list[Vp]:
        vps = [vp for _, vp in sorted(p.vps.items())]
        if logical:
            return [
                vp
                for vp in vps
                if vp.regs[R.InitialApicId] < 64 and destination >> vp.regs[R.InitialApicId] & 1
            ]
        if destination == BROADCAST:
            return vps
        return [vp for vp in vps if vp.regs[R.InitialApicId] == destination]

    def _deliver_interrupt(self, p: Partition, vp: Vp, kind: IT, vector: int, level: bool) -> None:
        if vector == HV_INTERRUPT_VECTOR_NONE:
            # A de-assertion: only a level-triggered fixed or lowest-priority line has something
            # pending to withdraw; NMI, INIT and SIPI are never delivered by it.
            if level and kind in (IT.Fixed, IT.LowestPriority):
                self.effects.apic_interrupt(p, vp, vector, kind)
            return
        if kind is IT.Init:
            # The VP resets: an AP waits for SIPI, VP 0 restarts at the reset vector [inferred: the
            # BSP never waits for SIPI]; a flush it was held in is abandoned with its program.
            vp.flush_wait = ()
            if vp.index == 0:
                vp.regs[R.Rip], vp.regs[R.Cs] = SPECS[R.Rip].reset, SPECS[R.Cs].reset
            else:
                vp.started = False
            self.update_run_state(p, vp)
        elif kind is IT.Sipi and not vp.started:
            vp.started = True
            vp.regs[R.Rip] = 0
            vp.regs[R.Cs] = (vector << 12) | (0xFFFF << 64) | ((vector << 8) << 96) | (0x9B << 112)
            self.update_run_state(p, vp)
        self.effects.apic_interrupt(p, vp, vector, kind)

    # --- TLB flushes --------------------------------------------------------------------------------
    def flush_virtual_address_space(self, call: Call) -> HvStatus:
        status, vps = self._flush_targets(call, list_call=False)
        if call.reissue:
            return OK
        for vp in vps:
            vp.tlb.clear()
            vp.tlb_flushes += 1
        return status

    def flush_virtual_address_list(self, call: Call) -> HvStatus:
        status, vps = self._flush_targets(call, list_call=True)
        if status is not OK or call.reissue:
            return status  # held by a TLB lock: no rep done, the VP re-issues the whole call
        data, base = call.input, 24 + call.var_bytes
        i = call.rep_start
        while i < call.rep_limit:
            entry = int.from_bytes(data[base + 8 * i : base + 8 * i + 8], "little")
            first, extra = entry >> 12, entry & 0xFFF  # bits 11:0: how many more pages
            for vp in vps:
                for page in range(first, first + extra + 1):
                    vp.tlb.pop(page, None)
            i += 1
        for vp in vps:
            vp.tlb_flushes += 1
        call.reps_done = i
        return OK

    def _flush_targets(self, call: Call, *, list_call: bool) -> tuple[HvStatus, list[Vp]]:
        """The caller's own VPs a flush names, after the parameter checks (HYPERCALLS.md 4.27)."""
        inp = FLUSH_VIRTUAL_ADDRESS_INPUT.unpack(call.input)
        flags = inp.flags
        if flags & ~_FLUSH_KNOWN or (list_call and flags & FLUSH_NON_GLOBAL_MAPPINGS_ONLY):
            return S.INVALID_PARAMETER, []
        if not list_call and flags & FLUSH_USE_EXTENDED_RANGE_FORMAT:
            return S.INVALID_PARAMETER, []
        if not flags & FLUSH_ALL_VIRTUAL_ADDRESS_SPACES and inp.address_space >> self.config.guest_gpa_bits:
            return S.INVALID_PARAMETER, []  # not a CR3 value: bits beyond MAXPHYADDR
        if not flags & FLUSH_ALL_PROCESSORS and not inp.processor_mask:
            return S.INVALID_PARAMETER, []
        vps = [
            vp
            for i, vp in sorted(call.caller.vps.items())
            if flags & FLUSH_ALL_PROCESSORS or inp.processor_mask >> i & 1
        ]
        if self.config.flush_waits_for_tlb_lock:
            self._wait_for_tlb_locks(call, vps)
        return OK, vps

    def _wait_for_tlb_locks(self, call: Call, vps: list[Vp]) -> None:
        """If a VP the flush names has its TLB locked (TlbLocked in InterceptSuspend), suspend the
        caller's VP until every such lock clears, then it re-issues the call (HYPERCALLS.md 4.27,
        5.9). A VP's lock on its own TLB does not hold its own flush [inferred: it would never end]."""
        locked = tuple(
            vp.index
            for vp in vps
            if vp.intercept_suspend & INTERCEPT_SUSPEND_TLB_LOCKED and vp.index != call.vp
        )
        caller_vp = call.caller.vps.get(call.vp)
        if not locked or caller_vp is None:
            return
        caller_vp.flush_wait = locked
        call.reissue = True
        self.log.emit("tlb.flush_held", partition=call.caller.id, vp=call.vp, locked=list(locked))
        self.update_run_state(call.caller, caller_vp)

    # --- CPUID -------------------------------------------------------------------------------------
    def get_vp_cpuid_values(self, call: Call) -> HvStatus:
        hdr = GET_VP_CPUID_VALUES_HEADER.unpack(call.input)
        status, target = self.child_target(call.caller, hdr.partition_id, (PartitionState.ACTIVE,))
        if target is None:
            return status
        if hdr.vp_index not in target.vps:
            return S.INVALID_VP_INDEX
        if hdr.flags & ~(USE_VP_XFEM_XSS | APPLY_REGISTERED_VALUES) or hdr.reserved or hdr.padding:
            return S.INVALID_PARAMETER
        data, base, out = call.input, 24 + call.var_bytes, call.output
        vp, max_vps = target.vps[hdr.vp_index], self.config.max_vp_index + 1
        use_vp_xfem_xss = hdr.flags & USE_VP_XFEM_XSS  # else each element's Xfem / Xss
        i = call.rep_start
        while i < call.rep_limit:
            query = CPUID_QUERY.unpack(data, base + CPUID_QUERY.size * i)
            given = None if use_vp_xfem_xss else (query.xfem, query.xss)
            result = vp_cpuid(target, vp, query.eax, query.ecx, max_vps, given)
            if hdr.flags & APPLY_REGISTERED_VALUES:
                result, _ = self.registered_cpuid(target, hdr.vp_index, query.eax, query.ecx, result)
            eax, ebx, ecx, edx = result
            at = CPUID_RESULT_SIZE * i
            out[at : at + CPUID_RESULT_SIZE] = b"".join(v.to_bytes(4, "little") for v in (eax, ebx, ecx, edx))
            i += 1
        call.reps_done = i
        return OK
