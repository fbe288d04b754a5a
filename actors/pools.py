"""Memory-pool hypercalls: DepositMemory, WithdrawMemory, GetMemoryBalance (HYPERCALLS.md 4.10-4.12, 6)."""

from __future__ import annotations

import struct

from hvsim.actors.hvdef import (
    GPA_PAGE_NUMBER_SIZE,
    MEMORY_BALANCE_OUTPUT,
    MEMORY_POOL_INPUT,
    PARTITION_ID_INPUT,
    HvStatus,
    MapGpaFlags,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Partition, PartitionState
from hvsim.actors.state import OK, HvState, proximity_ok

S = HvStatus
F = MapGpaFlags
_U64 = struct.Struct("<Q")


class PoolCalls(HvState):
    def host_page_of(self, caller: Partition, gpfn: int) -> int | None:
        """The host page behind *caller*'s GPA page, if the caller alone has full access to it.

        The root's GPA space is host RAM, identity-mapped; a page mapped into a child is shared, so
        not depositable. A nested host (a child with children of its own) deposits its own RAM: a
        GPA page backed by a host page mapped only there, readable and writable.
        """
        memory = self.memory
        if caller.is_root:
            if memory.is_host_page(gpfn) and not memory.mapped[gpfn]:
                return gpfn
            return None
        mapping = caller.gpa.get(gpfn)
        if mapping is None or mapping.spa is None or memory.mapped[mapping.spa] != 1:
            return None
        if mapping.flags & (F.READABLE | F.WRITABLE) != F.READABLE | F.WRITABLE:
            return None
        return mapping.spa

    def deposit_memory(self, call: Call) -> HvStatus:
        pid = PARTITION_ID_INPUT.unpack(call.input).partition_id
        status, target = self.pool_target(call.caller, pid)
        if target is None:
            return status
        if target.state is PartitionState.FINALIZED:
            return S.INVALID_PARTITION_STATE
        data, unpack, memory, pool = call.input, _U64.unpack_from, self.memory, target.pool
        offset = 8 + call.var_bytes
        status = OK
        i = call.rep_start
        while i < call.rep_limit:
            page = self.host_page_of(call.caller, unpack(data, offset + GPA_PAGE_NUMBER_SIZE * i)[0])
            if page is None:
                status = S.OPERATION_DENIED
                break
            if not call.caller.is_root:
                # The nested host's page leaves its GPA space while deposited; a withdraw brings
                # it back to the same GPA page with the same rights.
                gpfn = unpack(data, offset + GPA_PAGE_NUMBER_SIZE * i)[0]
                call.caller.deposited[page] = (gpfn, call.caller.gpa[gpfn].flags)
                self.unmap_for_deposit(call.caller, gpfn)
            memory.give_to_pool(page, pool)
            i += 1
        return self.rep_finished(call, i, target, status)

    def _pool_with_proximity(self, call: Call) -> tuple[HvStatus, Partition | None]:
        """The header WithdrawMemory and GetMemoryBalance share: partition id and proximity info."""
        inp = MEMORY_POOL_INPUT.unpack(call.input)
        status, target = self.pool_target(call.caller, inp.partition_id)
        if target is not None and not proximity_ok(inp.proximity_domain_info):
            return S.INVALID_PARAMETER, None
        return status, target

    def withdraw_memory(self, call: Call) -> HvStatus:
        status, target = self._pool_with_proximity(call)
        if target is None:
            return status
        pool = target.pool
        reserve = self.config.withdraw_reserve_active_pages if target.state is PartitionState.ACTIVE else 0
        out, memory = call.output, self.memory
        status = OK
        i = call.rep_start
        while i < call.rep_limit:
            if len(pool.available) <= reserve:
                status = S.NO_RESOURCES
                break
            page = memory.take_from_pool(pool)
            caller = call.caller
            if not caller.is_root:  # back into the nested host's GPA space, where it came from
                gpfn, flags = caller.deposited.pop(page)
                self.remap_after_withdraw(caller, gpfn, page, flags)
                page = gpfn
            _U64.pack_into(out, GPA_PAGE_NUMBER_SIZE * i, page)
            i += 1
        return self.rep_finished(call, i, target, status)

    def get_memory_balance(self, call: Call) -> HvStatus:
        status, target = self._pool_with_proximity(call)
        if target is None:
            return status
        pool = target.pool
        call.output[:16] = MEMORY_BALANCE_OUTPUT.pack((len(pool.available), pool.in_use))
        return OK
