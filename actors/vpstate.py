"""VP hypercalls: CreateVp, DeleteVp, Get/SetVpRegisters, StartVirtualProcessor (HYPERCALLS.md 4.8-4.14,
4.45).

The run/suspend model (HYPERCALLS.md 5.9): a VP runs when it has been started (VP 0 at reset, an AP
by StartVirtualProcessor) and ExplicitSuspend, InterceptSuspend and DispatchSuspend are all clear.
InterceptSuspend is set only by the hypervisor; a caller may clear its bits but never set them.
"""

from __future__ import annotations

import struct

from hvsim.actors.cpuid import features_info
from hvsim.actors.hvdef import (
    CREATE_VP_INPUT,
    DELETE_VP_INPUT,
    HV_VP_INDEX_SELF,
    INITIAL_VP_CONTEXT,
    INPUT_VTL_RESERVED_MASK,
    INTERCEPT_SUSPEND_TLB_LOCKED,
    REGISTER_ASSOC,
    REGISTER_NAME_SIZE,
    START_VIRTUAL_PROCESSOR_HEADER,
    VP_REGISTERS_INPUT,
    HvStatus,
    RegisterName,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Partition, PartitionState, Vp
from hvsim.actors.registers import (
    ACTIVITY_STARTUP_SUSPEND,
    HYPERVISOR_VERSION,
    SPECS,
    value_ok,
)
from hvsim.actors.state import (
    ACCESS_VP_REGISTERS,
    CREATE_PARTITIONS,
    OK,
    START_VIRTUAL_PROCESSOR,
    HvState,
    proximity_ok,
)
from hvsim.actors.synic import SYNIC_RESCAN_REGISTERS

S = HvStatus
PAGING_REGISTERS = frozenset({int(RegisterName.Cr0), int(RegisterName.Cr3), int(RegisterName.Cr4)})
P = PartitionState
R = RegisterName
_U32 = struct.Struct("<I")
_VALUE = struct.Struct("<QQ")
_MAX_SUBNODE_TYPE = 3
_USE_TARGET_VTL = 0x10


class VpCalls(HvState):
    # --- lifecycle -----------------------------------------------------------------------------
    def create_vp(self, call: Call) -> HvStatus:
        inp = CREATE_VP_INPUT.unpack(call.input)
        if not call.caller.privileges & CREATE_PARTITIONS:
            return S.ACCESS_DENIED
        if inp.flags or inp.reserved_z0 != bytes(3) or inp.subnode_type > _MAX_SUBNODE_TYPE:
            return S.INVALID_PARAMETER
        if not proximity_ok(inp.proximity_domain_info):
            return S.INVALID_PARAMETER
        status, target = self.child_target(call.caller, inp.partition_id, (P.ACTIVE,))
        if target is None:
            return status
        if inp.vp_index > self.config.max_vp_index or inp.vp_index in target.vps:
            return S.INVALID_VP_INDEX
        if not self.charge(target, f"vp:{inp.vp_index}", self.config.page_costs.create_vp):
            return S.INSUFFICIENT_MEMORY
        vp = Vp.reset(inp.vp_index)
        target.vps[inp.vp_index] = vp
        self.pool_changed(target)
        self.log.emit("vp.created", partition=target.id, vp=vp.index)
        self.effects.vp_created(target, vp)
        return OK

    def delete_vp(self, call: Call) -> HvStatus:
        inp = DELETE_VP_INPUT.unpack(call.input)
        status, target = self.child_target(call.caller, inp.partition_id, (P.ACTIVE,))
        if target is None:
            return status
        if inp.padding:
            return S.INVALID_PARAMETER
        vp = target.vps.get(inp.vp_index)
        if vp is None:
            return S.INVALID_VP_INDEX
        self.remove_vp(target, vp)
        self.pool_changed(target)
        return OK

    # --- registers ---------------------------------------------------------------------------
    def _register_target(self, call: Call) -> tuple[HvStatus, Partition | None, Vp | None]:
        """Header checks shared by Get/SetVpRegisters: parent, or SELF with AccessVpRegisters."""
        hdr = VP_REGISTERS_INPUT.unpack(call.input)
        caller = call.caller
        target = self.resolve(caller, hdr.partition_id)
        if target is caller and caller.privileges & ACCESS_VP_REGISTERS:
            if target.state is not P.ACTIVE:
                return S.INVALID_PARTITION_STATE, None, None
        else:
            status, target = self.child_target(caller, hdr.partition_id, (P.ACTIVE,))
            if target is None:
                return status, None, None
        if hdr.reserved != bytes(3) or hdr.target_vtl & INPUT_VTL_RESERVED_MASK:
            return S.INVALID_PARAMETER, None, None
        if hdr.target_vtl & _USE_TARGET_VTL and hdr.target_vtl & 0xF:
            return S.INVALID_PARAMETER, None, None  # only VTL 0 exists in this model
        index = hdr.vp_index
        if index == HV_VP_INDEX_SELF and target is caller:
            index = call.vp
        vp = target.vps.get(index)
        if vp is None:
            return S.INVALID_VP_INDEX, None, None
        return OK, target, vp

    def read_register(self, p: Partition, vp: Vp, name: int) -> int | None:
        """The current value of register *name*, or None for a name this model does not know."""
        if name not in SPECS:
            return None
        if name == R.VpIndex:
            return vp.index
        if name == R.VpRuntime:
            return self.vp_runtime_ns(vp) // 100
        if name == R.TimeRefCount:
            return self.clock() // 100
        if name == R.GuestOsId:
            return p.guest_os_id
        if name == R.HypervisorVersion:
            return HYPERVISOR_VERSION
        if name == R.PrivilegesAndFeaturesInfo:
            return features_info(p.privileges)
        if name == R.InternalActivityState:
            return 0 if vp.started else ACTIVITY_STARTUP_SUSPEND
        if name == R.Eom:
            return 0
        if name == R.ExplicitSuspend:
            return vp.explicit_suspend
        if name == R.InterceptSuspend:
            return vp.intercept_suspend
        if name == R.DispatchSuspend:
            return vp.dispatch_suspend
        return vp.regs[name]

    def get_vp_registers(self, call: Call) -> HvStatus:
        status, target, vp = self._register_target(call)
        if target is None or vp is None:
            return status
        data, out, unknown = call.input, call.output, self.config.unknown_register_status
        i = call.rep_start
        while i < call.rep_limit:
            name = _U32.unpack_from(data, 16 + call.var_bytes + REGISTER_NAME_SIZE * i)[0]
            value = self.read_register(target, vp, name)
            if value is None:
                call.reps_done = i
                return unknown
            _VALUE.pack_into(out, 16 * i, value & 0xFFFF_FFFF_FFFF_FFFF, value >> 64)
            i += 1
        call.reps_done = i
        return OK

    def write_register(self, p: Partition, vp: Vp, name: int, value: int) -> HvStatus:
        spec = SPECS.get(name)
        if spec is None:
            return self.config.unknown_register_status
        bad = self.config.invalid_register_value_status
        if spec.read_only or not value_ok(spec, value):
            return bad
        if name == R.ExplicitSuspend:
            vp.explicit_suspend = value
        elif name == R.InterceptSuspend:
            if value & ~vp.intercept_suspend:
                return bad  # only the hypervisor sets intercept-suspend bits
            unlocked = vp.intercept_suspend & ~value & INTERCEPT_SUSPEND_TLB_LOCKED
            vp.intercept_suspend = value
            if unlocked:
                self.release_flush_waiters(p)
        elif name == R.DispatchSuspend:
            vp.dispatch_suspend = value
        elif name == R.GuestOsId:
            p.guest_os_id = value
        elif name == R.Eom:
            self.synic_written(p, vp, name)  # end of message: rescan the queues
        else:
            vp.regs[name] = value
            if name in SYNIC_RESCAN_REGISTERS:
                self.synic_written(p, vp, name)
            elif name in PAGING_REGISTERS:
                vp.tlb.clear()  # MOV to CR0/CR3/CR4 flushes the VP's translations
        return OK

    def set_vp_registers(self, call: Call) -> HvStatus:
        status, target, vp = self._register_target(call)
        if target is None or vp is None:
            return status
        data, base = call.input, 16 + call.var_bytes
        status = OK
        i = call.rep_start
        while i < call.rep_limit:
            assoc = REGISTER_ASSOC.unpack(data, base + REGISTER_ASSOC.size * i)
            if assoc.reserved != bytes(12):
                status = S.INVALID_PARAMETER
                break
            status = self.write_register(target, vp, assoc.name, assoc.value_low | (assoc.value_high << 64))
            if status is not OK:
                break
            i += 1
        call.reps_done = i
        self.update_run_state(target, vp)
        return status

    # --- starting APs ------------------------------------------------------------------------
    def start_virtual_processor(self, call: Call) -> HvStatus:
        caller = call.caller
        hdr = START_VIRTUAL_PROCESSOR_HEADER.unpack(call.input)
        if not caller.privileges & START_VIRTUAL_PROCESSOR:
            return S.ACCESS_DENIED
        target = self.resolve(caller, hdr.partition_id)
        if target is None:
            return S.INVALID_PARTITION_ID
        if target is not caller and target.parent_id != caller.id:
            return S.ACCESS_DENIED
        if hdr.reserved != bytes(3):
            return S.INVALID_PARAMETER
        if target.state is not P.ACTIVE:
            return S.INVALID_PARTITION_STATE
        vp = target.vps.get(hdr.vp_index)
        if vp is None:
            return S.INVALID_VP_INDEX
        if hdr.target_vtl:
            return S.INVALID_VTL_STATE  # no VTL other than 0 is enabled in this model
        if vp.started:
            return S.INVALID_VP_STATE
        ctx = INITIAL_VP_CONTEXT.unpack(call.input, 16)
        values: dict[int, int] = {
            R.Rip: ctx.rip,
            R.Rsp: ctx.rsp,
            R.Rflags: ctx.rflags,
            R.Efer: ctx.efer,
            R.Cr0: ctx.cr0,
            R.Cr3: ctx.cr3,
            R.Cr4: ctx.cr4,
            R.Pat: ctx.msr_cr_pat,
        }
        for name, raw in (
            (R.Cs, ctx.cs), (R.Ds, ctx.ds), (R.Es, ctx.es), (R.Fs, ctx.fs), (R.Gs, ctx.gs),
            (R.Ss, ctx.ss), (R.Tr, ctx.tr), (R.Ldtr, ctx.ldtr), (R.Idtr, ctx.idtr), (R.Gdtr, ctx.gdtr),
        ):  # fmt: skip
            values[name] = int.from_bytes(raw, "little")
        if not all(value_ok(SPECS[name], value) for name, value in values.items()):
            return S.INVALID_REGISTER_VALUE
        vp.regs.update(values)
        vp.started = True
        self.log.emit("vp.started", partition=target.id, vp=vp.index)
        self.update_run_state(target, vp)
        return OK
