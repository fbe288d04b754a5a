"""Intercepts (HYPERCALLS.md 4.22, 4.24, 5.6) and what a guest's IO port, MSR, CPUID and memory
accesses do.

A parent installs intercepts on its child with HvCallInstallIntercept (access mask 0 removes one).
When the guest on a VP makes an access (``GuestAccess``), the hypervisor either completes it
(RAM through the GPA map, a doorbell, an un-intercepted IO port reading all ones, a virtualized
MSR, CPUID from the partition's model) or intercepts it: the VP is put in intercept suspend and an
intercept message (IO port, MSR, CPUID, unmapped GPA or GPA intercept, with the x64 header) goes to
SINT 0 of the parent's VP 0. The parent emulates the access, writes the result registers and
clears InterceptSuspend; the VP then finishes the instruction with the values it finds in RAX
(and RBX/RCX/RDX for CPUID).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from hvsim.actors.cpuid import vp_cpuid
from hvsim.actors.hvdef import (
    ACCESS_EXECUTE,
    ACCESS_READ,
    ACCESS_WRITE,
    CHECK_FOR_IO_INTERCEPT_INPUT,
    HV_MESSAGE_PAYLOAD_SIZE,
    HV_SYNIC_INTERCEPTION_SINT,
    INSTALL_INTERCEPT_INPUT,
    INTERCEPT_EXECUTE,
    INTERCEPT_READ,
    INTERCEPT_WRITE,
    MESSAGE_HEADER,
    VECTOR_GP,
    VECTOR_PF,
    X64_CPUID_INTERCEPT,
    X64_EXCEPTION_INTERCEPT,
    X64_INTERCEPT_HEADER,
    X64_IO_PORT_INTERCEPT,
    X64_MEMORY_INTERCEPT,
    X64_MSR_INTERCEPT,
    HvStatus,
    InterceptType,
    MapGpaFlags,
    MessageType,
    RegisterName,
    TranslateGvaFlags,
    TranslateResultCode,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Partition, PartitionState, Vp
from hvsim.actors.state import OK, HvState
from hvsim.actors.synic import Kind, Message
from hvsim.actors.synic import overlay as synic_overlay
from hvsim.actors.translate import Walk

S = HvStatus
IT = InterceptType
R = RegisterName
F = MapGpaFlags
RC = TranslateResultCode
#: HV_INPUT_VTL values naming VTL 0: "the current VTL" (0) or explicitly VTL 0 (UseTargetVtl, 0x10).
INPUT_VTL_ZERO = (0, 0x10)
RW_TYPES = frozenset({IT.X64IoPort, IT.X64IoPortRange, IT.X64Msr, IT.X64MsrIndex})
EXECUTE_TYPES = frozenset({IT.X64Cpuid, IT.Exception, IT.X64GlobalCpuid})
#: The instruction length reported in intercept headers (the guest model has no instruction
#: stream; 2 is the length of IN/OUT DX, RDMSR, WRMSR and CPUID).
INSTRUCTION_LENGTH = 2
#: x64 MSRs the hypervisor virtualizes itself (reads and writes go to the register file).
VIRTUAL_MSRS: dict[int, int] = {
    0x1B: R.ApicBase, 0x174: R.SysenterCs, 0x175: R.SysenterEsp, 0x176: R.SysenterEip,
    0x277: R.Pat, 0xC0000080: R.Efer, 0xC0000081: R.Star, 0xC0000082: R.Lstar, 0xC0000083: R.Cstar,
    0xC0000084: R.Sfmask, 0xC0000102: R.KernelGsBase, 0x40000000: R.GuestOsId,
    # The guest crash MSRs (HV_X64_MSR_CRASH_P0-P4, HV_X64_MSR_CRASH_CTL): CPUID 0x4000_0003 EDX bit 10.
    0x40000100: R.GuestCrashP0, 0x40000101: R.GuestCrashP1, 0x40000102: R.GuestCrashP2,
    0x40000103: R.GuestCrashP3, 0x40000104: R.GuestCrashP4, 0x40000105: R.GuestCrashCtl,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class GuestAccess:
    """An IO port, MSR, CPUID or memory access by the guest on a VP (sent by the VP actor).

    *kind* is "io", "msr", "cpuid" or "memory"; *address* is the port, MSR index, CPUID leaf or
    memory address (a GVA when *virtual*); *subleaf* is CPUID's ECX."""

    partition_id: int
    vp: int
    kind: str
    address: int
    write: bool = False
    value: int = 0
    size: int = 1
    virtual: bool = False
    subleaf: int = 0


class AccessOutcome(NamedTuple):
    """What the access did: "done" (with the value read), "intercepted" (the VP is suspended until
    its parent resumes it), or "fault" (the guest takes an exception: #GP, #PF)."""

    outcome: str
    value: int = 0
    #: For a fault: the exception (vector, error code, parameter such as CR2).
    exception: tuple[int, int, int] | None = None


class InterceptCalls(HvState):
    # --- hypercalls ----------------------------------------------------------------------------------
    def install_intercept(self, call: Call) -> HvStatus:
        inp = INSTALL_INTERCEPT_INPUT.unpack(call.input)
        status, target = self.child_target(call.caller, inp.partition_id, (PartitionState.ACTIVE,))
        if target is None:
            return status
        try:
            kind = IT(inp.intercept_type)
        except ValueError:
            return S.INVALID_PARAMETER
        access, param = inp.access_type, inp.parameter
        if access & ~(INTERCEPT_READ | INTERCEPT_WRITE | INTERCEPT_EXECUTE):
            return S.INVALID_PARAMETER
        if (kind in RW_TYPES and access & INTERCEPT_EXECUTE) or (
            kind in EXECUTE_TYPES and access & (INTERCEPT_READ | INTERCEPT_WRITE)
        ):
            return S.INVALID_PARAMETER
        if not _parameter_ok(kind, param):
            return S.INVALID_PARAMETER
        key = (int(kind), param)
        charge_key = f"intercept:{int(kind)}:{param}"
        if not access:
            target.intercepts.pop(key, None)  # access mask 0 removes the intercept
            target.pool.release(charge_key)
            self.pool_changed(target)
            return OK
        # Only CPUID intercepts need hypervisor memory (the legacy table: IO, MSR, exception never).
        pages = self.config.page_costs.cpuid_intercept if kind is IT.X64Cpuid else 0
        if key not in target.intercepts and pages and not self.charge(target, charge_key, pages):
            return S.INSUFFICIENT_MEMORY
        target.intercepts[key] = access
        self.log.emit(
            "intercept.installed", partition=target.id, type=kind.name, parameter=param, access=access
        )
        self.pool_changed(target)
        return OK

    def check_for_io_intercept(self, call: Call) -> HvStatus:
        inp = CHECK_FOR_IO_INTERCEPT_INPUT.unpack(call.input)
        status, target = self.child_target(call.caller, inp.partition_id, (PartitionState.ACTIVE,))
        if target is None:
            return status
        if inp.vp_index not in target.vps:
            return S.INVALID_VP_INDEX
        if inp.size not in (1, 2, 4) or inp.padding0 or inp.padding1 != bytes(6) or inp.is_write > 1:
            return S.INVALID_PARAMETER
        if inp.target_vtl not in INPUT_VTL_ZERO:
            return S.INVALID_PARAMETER  # only VTL 0 exists in this model
        hit = self.io_intercepted(target, inp.port, inp.size, bool(inp.is_write))
        call.output[:8] = bytes([int(hit)]) + bytes(7)
        return OK

    def io_intercepted(self, p: Partition, port: int, size: int, write: bool) -> bool:
        """Whether an access to ports port..port+size-1 is intercepted (any covered port counts)."""
        need = INTERCEPT_WRITE if write else INTERCEPT_READ
        last = port + size - 1
        for (kind, param), access in p.intercepts.items():
            if not access & need:
                continue
            if kind == IT.X64IoPort and port <= param <= last:
                return True
            if kind == IT.X64IoPortRange and param & 0xFFFF <= last and port <= param >> 16:
                return True
        return False

    # --- the guest's accesses ---------------------------------------------------------------------------
    def guest_access(self, access: GuestAccess) -> AccessOutcome:
        p = self.partitions.get(access.partition_id)
        vp = p.vps.get(access.vp) if p is not None else None
        if p is None or vp is None or p.parent_id is None:
            return AccessOutcome("fault")
        handler = {"io": self._io, "msr": self._msr, "cpuid": self._cpuid, "memory": self._memory}
        outcome = handler[access.kind](p, vp, access)
        if outcome.exception is not None and p.intercepts.get((int(IT.Exception), outcome.exception[0]), 0):
            return self._exception_intercept(p, vp, outcome.exception)
        return outcome

    def _exception_intercept(self, p: Partition, vp: Vp, exception: tuple[int, int, int]) -> AccessOutcome:
        """The parent intercepts this exception vector: it gets the exception instead of the guest."""
        vector, error_code, parameter = exception
        regs = vp.regs
        gprs = b"".join(regs[R.Rax + i].to_bytes(8, "little") for i in range(16))
        body = X64_EXCEPTION_INTERCEPT.pack(
            (vector, 1, 0, error_code, parameter, 0, bytes(16), _segment(vp, R.Ds), _segment(vp, R.Ss), gprs)
        )
        return self._intercept(p, vp, MessageType.ExceptionIntercept, body, ACCESS_EXECUTE)

    def _io(self, p: Partition, vp: Vp, a: GuestAccess) -> AccessOutcome:
        if not self.io_intercepted(p, a.address, a.size, a.write):
            return AccessOutcome("done", (1 << (8 * a.size)) - 1)  # nothing decodes it: all ones
        info = {1: 1, 2: 2, 4: 4}[a.size]
        body = X64_IO_PORT_INTERCEPT.pack(
            (a.address, info, 0, 0, a.value if a.write else vp.regs[R.Rax], bytes(16),
             _segment(vp, R.Ds), _segment(vp, R.Es), vp.regs[R.Rcx], vp.regs[R.Rsi], vp.regs[R.Rdi])
        )  # fmt: skip
        return self._intercept(
            p, vp, MessageType.X64IoPortIntercept, body, ACCESS_WRITE if a.write else ACCESS_READ
        )

    def _msr(self, p: Partition, vp: Vp, a: GuestAccess) -> AccessOutcome:
        need = INTERCEPT_WRITE if a.write else INTERCEPT_READ
        registered = (
            None if a.address in VIRTUAL_MSRS else self.registered_msr(p, vp.index, a.address, a.write)
        )
        if registered is not None:  # answered as the parent registered: no intercept
            return AccessOutcome("done") if registered else GP_FAULT  # IgnoreWriteReadZero / Fault
        specific = p.intercepts.get((int(IT.X64MsrIndex), a.address), 0)
        if specific & need or (
            a.address not in VIRTUAL_MSRS and p.intercepts.get((int(IT.X64Msr), 0), 0) & need
        ):
            value = a.value if a.write else 0
            body = X64_MSR_INTERCEPT.pack((a.address, 0, value >> 32, value & 0xFFFF_FFFF))
            return self._intercept(
                p, vp, MessageType.X64MsrIntercept, body, ACCESS_WRITE if a.write else ACCESS_READ
            )
        name = VIRTUAL_MSRS.get(a.address)
        if name is None:
            return GP_FAULT  # an MSR nothing implements
        if not a.write:
            return AccessOutcome("done", p.guest_os_id if name == R.GuestOsId else vp.regs.get(name, 0))
        status = self.write_register(p, vp, name, a.value)
        return AccessOutcome("done") if status is OK else GP_FAULT

    def _cpuid(self, p: Partition, vp: Vp, a: GuestAccess) -> AccessOutcome:
        result, registered = self.registered_cpuid(
            p,
            vp.index,
            a.address,
            a.subleaf,
            vp_cpuid(p, vp, a.address, a.subleaf, self.config.max_vp_index + 1),
        )
        hit = p.intercepts.get((int(IT.X64Cpuid), a.address), 0) & INTERCEPT_EXECUTE
        if registered or not (hit or p.intercepts.get((int(IT.X64GlobalCpuid), 0), 0)):
            vp.regs.update({R.Rax: result[0], R.Rbx: result[1], R.Rcx: result[2], R.Rdx: result[3]})
            return AccessOutcome("done", result[0])
        eax, ebx, ecx, edx = result
        regs = vp.regs
        body = X64_CPUID_INTERCEPT.pack((a.address, a.subleaf, regs[R.Rdx], regs[R.Rbx], eax, ecx, edx, ebx))
        return self._intercept(p, vp, MessageType.X64CpuidIntercept, body, ACCESS_EXECUTE)

    def _memory(self, p: Partition, vp: Vp, a: GuestAccess) -> AccessOutcome:
        gva = a.address if a.virtual else None
        gpa = a.address
        if a.virtual:
            cached = vp.tlb.get(a.address >> 12)
            # A TLB entry records whether a write may go through it (writable and already dirty);
            # otherwise the access walks the tables (checking rights, setting A/D bits).
            gpa_page = None if cached is None or (a.write and not cached[1]) else cached[0]
            if gpa_page is None:
                flags = TranslateGvaFlags.VALIDATE_WRITE if a.write else TranslateGvaFlags.VALIDATE_READ
                walk: Walk = self.walk(p, vp, a.address >> 12, flags | TranslateGvaFlags.SET_PAGE_TABLE_BITS)
                if walk.code in (RC.PageNotPresent, RC.PrivilegeViolation, RC.InvalidPageTableFlags):
                    # A #PF the guest's own kernel handles (error code: P if present, W, RSVD).
                    code = int(walk.code is not RC.PageNotPresent) | (2 if a.write else 0)
                    code |= 8 if walk.code is RC.InvalidPageTableFlags else 0
                    return AccessOutcome("fault", exception=(VECTOR_PF, code, a.address))
                gpa_page = walk.gpa_page
                if walk.code is RC.Success:
                    vp.tlb[a.address >> 12] = (gpa_page, a.write)
            gpa = (gpa_page << 12) | (a.address & 0xFFF)
        if a.write and self.guest_doorbell_write(p.id, vp.index, gpa, a.value, a.size):
            return AccessOutcome("done")
        page, offset = gpa >> 12, gpa & 0xFFF
        overlay = synic_overlay(vp.regs, vp.synic, page)
        if overlay is not None:
            return self._ram(overlay, offset, a)
        mapping = p.gpa.get(page)
        if mapping is None:
            return self._memory_intercept(p, vp, MessageType.UnmappedGpa, gva, gpa, a)
        backing = mapping.flags & F.BACKING_MASK
        right = F.WRITABLE if a.write else F.READABLE
        if not mapping.flags & right and not (backing in (F.ZEROED, F.ONES) and not a.write):
            return self._memory_intercept(p, vp, MessageType.GpaIntercept, gva, gpa, a)
        if backing in (F.ZEROED, F.ONES):
            return AccessOutcome("done", 0 if backing == F.ZEROED else (1 << (8 * a.size)) - 1)
        assert mapping.spa is not None
        if a.write:
            self.memory.write(mapping.spa, offset, a.value.to_bytes(a.size, "little"))
            return AccessOutcome("done")
        return AccessOutcome("done", int.from_bytes(self.memory.read(mapping.spa, offset, a.size), "little"))

    @staticmethod
    def _ram(data: bytearray, offset: int, a: GuestAccess) -> AccessOutcome:
        if a.write:
            data[offset : offset + a.size] = a.value.to_bytes(a.size, "little")
            return AccessOutcome("done")
        return AccessOutcome("done", int.from_bytes(data[offset : offset + a.size], "little"))

    def _memory_intercept(
        self, p: Partition, vp: Vp, mtype: MessageType, gva: int | None, gpa: int, a: GuestAccess
    ) -> AccessOutcome:
        access_info = 0b11 if gva is not None else 0  # GVA valid, GVA->GPA valid
        body = X64_MEMORY_INTERCEPT.pack((6, 0, access_info, 0, 0, gva or 0, gpa, bytes(16)))
        if a.write:
            vp.regs[R.Rax] = a.value  # the value being stored, for the parent's emulation
        return self._intercept(p, vp, mtype, body, _rw(a))

    def _intercept(self, p: Partition, vp: Vp, mtype: MessageType, body: bytes, access: int) -> AccessOutcome:
        """Suspend *vp* and send its parent the intercept message."""
        parent = self.partitions[p.parent_id] if p.parent_id is not None else None
        if parent is None or 0 not in parent.vps:
            return AccessOutcome("fault")
        regs = vp.regs
        # HV_X64_VP_EXECUTION_STATE: CPL 0 (guest programs run in kernel mode), CR0.PE, EFER.LMA.
        state = (regs[R.Cr0] & 1) << 2 | ((regs[R.Efer] >> 10) & 1) << 4
        header = X64_INTERCEPT_HEADER.pack(
            (vp.index, INSTRUCTION_LENGTH | (regs[R.Cr8] & 0xF) << 4, access, state,
             _segment(vp, R.Cs), regs[R.Rip], regs[R.Rflags])
        )  # fmt: skip
        payload = header + body
        data = MESSAGE_HEADER.pack((mtype, len(payload), 0, 0, p.id)) + payload.ljust(
            HV_MESSAGE_PAYLOAD_SIZE, b"\0"
        )
        vp.intercept_suspend |= 1
        vp.intercepts += 1
        vp.last_intercept = data
        self.update_run_state(p, vp)
        self.log.emit("intercept", partition=p.id, vp=vp.index, type=mtype.name)
        msg = Message(self.new_message_id(), Kind.INTERCEPT, p.id, vp.index, parent.id, 0,
                      HV_SYNIC_INTERCEPTION_SINT, data, None)  # fmt: skip
        self.send_message(msg)
        return AccessOutcome("intercepted")


GP_FAULT = AccessOutcome("fault", exception=(VECTOR_GP, 0, 0))


def _rw(a: GuestAccess) -> int:
    return ACCESS_WRITE if a.write else ACCESS_READ


def _segment(vp: Vp, name: int) -> bytes:
    return (vp.regs[name] & ((1 << 128) - 1)).to_bytes(16, "little")


def _parameter_ok(kind: IT, param: int) -> bool:
    """The HV_INTERCEPT_PARAMETERS member for *kind* is in range and nothing else is set."""
    if kind is IT.X64IoPort:
        return param <= 0xFFFF
    if kind is IT.X64IoPortRange:
        return param <= 0xFFFF_FFFF and param & 0xFFFF <= param >> 16
    if kind is IT.Exception:
        return param < 32
    if kind in (IT.X64Cpuid, IT.X64MsrIndex, IT.X64ApicWrite):
        return param <= 0xFFFF_FFFF
    return param == 0  # the types without a parameter (X64Msr is "all MSRs" here)
