"""Partition lifecycle hypercalls: create, initialize, finalize, delete, enumerate, GetPartitionId."""

from __future__ import annotations

from hvsim.actors.hvdef import (
    CREATE_PARTITION_INPUT,
    CREATION_FLAGS_KNOWN,
    GET_NEXT_CHILD_PARTITION_INPUT,
    HV_PARTITION_ID_INVALID,
    HV_PARTITION_ID_SELF,
    PARTITION_ID_INPUT,
    PARTITION_ID_OUTPUT,
    HvStatus,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import PartitionState
from hvsim.actors.state import ACCESS_PARTITION_ID, CREATE_PARTITIONS, OK, HvState, proximity_ok

S = HvStatus
P = PartitionState


class PartitionCalls(HvState):
    def create_partition(self, call: Call) -> HvStatus:
        caller = call.caller
        if not caller.privileges & CREATE_PARTITIONS:
            return S.ACCESS_DENIED
        inp = CREATE_PARTITION_INPUT.unpack(call.input)
        if inp.flags & ~CREATION_FLAGS_KNOWN or inp.padding or inp.reserved_z0:
            return S.INVALID_PARAMETER
        if not proximity_ok(inp.proximity_domain_info):
            return S.INVALID_PARAMETER
        if caller.depth + 1 > self.config.max_depth:
            return S.PARTITION_TOO_DEEP
        if len(self.partitions) >= self.config.max_partitions:
            return S.NO_RESOURCES
        cost = self.config.page_costs.create_partition
        if not self.may_charge(caller, "partition", cost):
            return S.INSUFFICIENT_MEMORY
        # A child never starts with more than its parent holds (the rule SetPartitionProperty
        # enforces for PrivilegeFlags), so a nested host's children are consistent ([inferred]).
        child = self.new_partition(
            caller,
            depth=caller.depth + 1,
            privileges=self.config.child_default_privileges & caller.privileges,
        )
        child.creation_flags = inp.flags
        child.compatibility_version = inp.compatibility_version
        child.disabled_processor_features = (
            inp.disabled_processor_features0,
            inp.disabled_processor_features1,
        )
        child.disabled_xsave_features = inp.disabled_processor_xsave_features
        caller.pool.charge(f"partition:{child.id}", cost)  # cannot fail: may_charge said yes
        self.log.emit("partition.state", partition=child.id, old=None, new=P.CREATED.name, parent=caller.id)
        self.pool_changed(caller)
        self.effects.partition_created(child)
        call.output[:8] = PARTITION_ID_OUTPUT.pack((child.id,))
        return OK

    def initialize_partition(self, call: Call) -> HvStatus:
        pid = PARTITION_ID_INPUT.unpack(call.input).partition_id
        status, target = self.child_target(call.caller, pid, (P.CREATED,))
        if target is None:
            return status
        if not self.charge(target, "init", self.config.page_costs.initialize_partition):
            return S.INSUFFICIENT_MEMORY
        self.pool_changed(target)
        self.set_state(target, P.ACTIVE)
        return OK

    def finalize_partition(self, call: Call) -> HvStatus:
        pid = PARTITION_ID_INPUT.unpack(call.input).partition_id
        status, target = self.child_target(call.caller, pid, (P.ACTIVE,))
        if target is None:
            return status
        if target.children:
            return S.OPERATION_DENIED
        for vp in list(target.vps.values()):
            self.remove_vp(target, vp)
        self.remove_endpoints(target)  # ports and connections go too (TLFS FinalizePartition)
        self.remove_mappings(target)  # and the address space: mapped host pages are the host's again
        self.drop_stats_pages(target.id)  # statistics pages of it, whoever mapped them
        # Nothing is left to intercept or interrupt (HYPERCALLS.md 6.6 (3)): intercepts, registered
        # intercept results and the ExtInt latch go with the VPs.
        target.intercepts.clear()
        target.cpuid_results.clear()
        target.msr_results.clear()
        target.ext_int = 0
        self.set_state(target, P.FINALIZED)
        # Every structure built on the child's behalf returns to its own pool, ready to withdraw.
        target.pool.release_all()
        self.pool_changed(target)
        return OK

    def delete_partition(self, call: Call) -> HvStatus:
        pid = PARTITION_ID_INPUT.unpack(call.input).partition_id
        if pid == HV_PARTITION_ID_SELF:
            return S.ACCESS_DENIED  # forbidden by the TLFS; status [inferred] (HYPERCALLS.md 8.22)
        status, target = self.child_target(call.caller, pid, (P.CREATED, P.FINALIZED))
        if target is None:
            return status
        if target.pool.total:
            return S.OPERATION_DENIED
        parent = call.caller
        parent.children.remove(target.id)
        del self.partitions[target.id]
        parent.pool.release(f"partition:{target.id}")
        self.log.emit("partition.state", partition=target.id, old=target.state.name, new=None)
        self.pool_changed(parent)
        self.effects.partition_deleted(target)
        return OK

    def get_next_child_partition(self, call: Call) -> HvStatus:
        caller = call.caller
        inp = GET_NEXT_CHILD_PARTITION_INPUT.unpack(call.input)
        if not caller.privileges & CREATE_PARTITIONS:
            return S.ACCESS_DENIED
        parent = self.resolve(caller, inp.parent_partition_id)
        if parent is None:
            return S.INVALID_PARTITION_ID
        if parent is not caller:
            return S.ACCESS_DENIED
        children = parent.children
        prev = inp.previous_child_partition_id
        if prev == HV_PARTITION_ID_INVALID:
            nxt = children[0] if children else HV_PARTITION_ID_INVALID
        else:
            try:
                i = children.index(prev)
            except ValueError:
                return S.INVALID_PARTITION_ID
            nxt = children[i + 1] if i + 1 < len(children) else HV_PARTITION_ID_INVALID
        call.output[:8] = PARTITION_ID_OUTPUT.pack((nxt,))
        return OK

    def get_partition_id(self, call: Call) -> HvStatus:
        if not call.caller.privileges & ACCESS_PARTITION_ID:
            return S.ACCESS_DENIED
        call.output[:8] = PARTITION_ID_OUTPUT.pack((call.caller.id,))
        return OK
