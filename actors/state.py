"""The hypervisor's state and the checks every handler shares (HYPERCALLS.md 1.5 steps 5-7).

A handler runs atomically at the instant its request reaches the hypervisor (its linearisation
point); the caller sees the result after the call's simulated service time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from hvsim.actors.config import HvConfig
from hvsim.actors.hvdef import (
    ALL_PRIVILEGES,
    HV_PARTITION_ID_SELF,
    INTERCEPT_SUSPEND_TLB_LOCKED,
    PROXIMITY_DOMAIN_MAX,
    PROXIMITY_INFO_VALID,
    PROXIMITY_RESERVED_MASK,
    HvStatus,
    PartitionPrivilege,
)
from hvsim.actors.memory import HostMemory
from hvsim.actors.model import Partition, PartitionState, Port, Vp
from hvsim.actors.seams import Interposer
from hvsim.actors.synic import Message
from hvsim.actors.trace import EventLog

S = HvStatus
OK = HvStatus.SUCCESS

# Privilege masks as plain ints: ``int & IntFlag`` goes through enum.__and__ (~2 us a hypercall).
CREATE_PARTITIONS = int(PartitionPrivilege.CreatePartitions)
ACCESS_PARTITION_ID = int(PartitionPrivilege.AccessPartitionId)
ACCESS_MEMORY_POOL = int(PartitionPrivilege.AccessMemoryPool)
ACCESS_VP_REGISTERS = int(PartitionPrivilege.AccessVpRegisters)
START_VIRTUAL_PROCESSOR = int(PartitionPrivilege.StartVirtualProcessor)


class Effects(Protocol):
    """What the hypervisor tells the rest of the world (the actor layer implements it)."""

    def partition_created(self, partition: Partition) -> None: ...
    def partition_state(self, partition: Partition) -> None: ...
    def partition_deleted(self, partition: Partition) -> None: ...
    def vp_created(self, partition: Partition, vp: Vp) -> None: ...
    def vp_deleted(self, partition: Partition, vp: Vp) -> None: ...
    def vp_run_state(self, partition: Partition, vp: Vp) -> None: ...
    def schedule(self, delay_ns: int, fn: Callable[[], None]) -> None:
        """Run *fn* in the hypervisor after *delay_ns* of simulated time."""
        ...

    def sint_interrupt(self, partition: Partition, vp: Vp, sint: int) -> None:
        """Raise SINT *sint*'s interrupt on *vp* (its message slot or event flags changed)."""
        ...

    def apic_interrupt(self, partition: Partition, vp: Vp, vector: int, kind: int) -> None:
        """Deliver an asserted interrupt (HV_INTERRUPT_TYPE *kind*) to *vp*'s virtual APIC."""
        ...


class NoEffects:
    """Effects for a hypervisor used without actors (unit tests of behaviour)."""

    def partition_created(self, partition: Partition) -> None: ...
    def partition_state(self, partition: Partition) -> None: ...
    def partition_deleted(self, partition: Partition) -> None: ...
    def vp_created(self, partition: Partition, vp: Vp) -> None: ...
    def vp_deleted(self, partition: Partition, vp: Vp) -> None: ...
    def vp_run_state(self, partition: Partition, vp: Vp) -> None: ...
    def sint_interrupt(self, partition: Partition, vp: Vp, sint: int) -> None: ...
    def apic_interrupt(self, partition: Partition, vp: Vp, vector: int, kind: int) -> None: ...

    def schedule(self, delay_ns: int, fn: Callable[[], None]) -> None:
        fn()  # no clock without actors: transit takes no time


def proximity_ok(info: int) -> bool:
    """HV_PROXIMITY_DOMAIN_INFO: reserved flag bits clear and, if valid, a domain id 0-63."""
    flags = info >> 32
    if flags & PROXIMITY_RESERVED_MASK:
        return False
    return not (flags & PROXIMITY_INFO_VALID) or (info & 0xFFFF_FFFF) <= PROXIMITY_DOMAIN_MAX


class HvState:
    """Partitions, pools and host RAM, plus the shared validation helpers."""

    def __init__(
        self,
        config: HvConfig,
        clock: Callable[[], int],
        log: EventLog,
        effects: Effects | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.log = log
        self.effects: Effects = effects if effects is not None else NoEffects()
        #: Fault seam (``hvsim.actors.seams``): None in an undisturbed world.
        self.interposer: Interposer | None = None
        self.memory = HostMemory(config.host_pages)
        self.partitions: dict[int, Partition] = {}
        self.next_partition_id = config.first_partition_id
        #: Messages and event signals posted but not yet delivered (in transit or queued), by id.
        self.undelivered: dict[int, Message] = {}
        self.next_message_id = 1
        #: (code, status) -> count, for summaries, coverage and statistics pages.
        self.call_counts: dict[tuple[int, int], int] = {}
        #: Doorbell writes that queued a notification, merged into a pending one, or found no VP.
        self.doorbells = {"rung": 0, "coalesced": 0, "lost": 0}
        self.root = self.new_partition(None, depth=1, privileges=int(ALL_PRIVILEGES))
        self.root.state = PartitionState.ACTIVE
        for index in range(config.root_vps):
            vp = Vp.reset(index)
            # Root VPs are the host's CPUs: running from boot (host code executes on them).
            vp.started = True
            vp.explicit_suspend = 0
            vp.runnable = True
            vp.run_since_ns = 0
            self.root.vps[index] = vp
        if config.root_pool_pages:
            for page in self.memory.alloc(config.root_pool_pages):
                self.memory.give_to_pool(page, self.root.pool)

    # --- identity and relationships -----------------------------------------------------------
    def new_partition(self, parent: Partition | None, *, depth: int, privileges: int) -> Partition:
        pid = self.next_partition_id
        self.next_partition_id += 1
        p = Partition(
            id=pid, parent_id=None if parent is None else parent.id, depth=depth, privileges=privileges
        )
        self.partitions[pid] = p
        if parent is not None:
            parent.children.append(pid)
        return p

    def resolve(self, caller: Partition, partition_id: int) -> Partition | None:
        if partition_id == HV_PARTITION_ID_SELF:
            return caller
        return self.partitions.get(partition_id)

    def child_target(
        self, caller: Partition, partition_id: int, states: Iterable[PartitionState]
    ) -> tuple[HvStatus, Partition | None]:
        """A call restricted to operating on the caller's children (CreatePartitions + parenthood)."""
        if not caller.privileges & CREATE_PARTITIONS:
            return S.ACCESS_DENIED, None
        target = self.resolve(caller, partition_id)
        if target is None:
            return S.INVALID_PARTITION_ID, None
        if target.parent_id != caller.id:
            return S.ACCESS_DENIED, None
        if target.state not in states:
            return S.INVALID_PARTITION_STATE, None
        return OK, target

    def self_or_child(
        self, caller: Partition, partition_id: int, privilege: int
    ) -> tuple[HvStatus, Partition | None]:
        """A call on the caller itself or its ACTIVE child, needing *privilege* (ports, connections,
        direct posts and signals)."""
        if not caller.privileges & privilege:
            return S.ACCESS_DENIED, None
        target = self.resolve(caller, partition_id)
        if target is None:
            return S.INVALID_PARTITION_ID, None
        if target is not caller and target.parent_id != caller.id:
            return S.ACCESS_DENIED, None
        if target.state is not PartitionState.ACTIVE:
            return S.INVALID_PARTITION_STATE, None
        return OK, target

    def pool_target(self, caller: Partition, partition_id: int) -> tuple[HvStatus, Partition | None]:
        """Deposit/Withdraw/GetMemoryBalance: AccessMemoryPool and (parent, or the root on itself)."""
        if not caller.privileges & ACCESS_MEMORY_POOL:
            return S.ACCESS_DENIED, None
        target = self.resolve(caller, partition_id)
        if target is None:
            return S.INVALID_PARTITION_ID, None
        if target.parent_id != caller.id and not (caller.is_root and target is caller):
            return S.ACCESS_DENIED, None
        return OK, target

    # --- pool charges ------------------------------------------------------------------------
    def may_charge(self, p: Partition, key: str, pages: int) -> bool:
        """Whether *p*'s pool can give *pages* to structure *key* (enough free, and not refused)."""
        if not p.pool.can_charge(pages):
            return False
        interposer = self.interposer
        return interposer is None or pages <= 0 or interposer.allow_charge(p.id, key, pages)

    def charge(self, p: Partition, key: str, pages: int) -> bool:
        """Charge *pages* of *p*'s pool to structure *key*; False (no change) if short or refused."""
        return self.may_charge(p, key, pages) and p.pool.charge(key, pages)

    def rep_finished(self, call: Any, done: int, target: Partition, status: HvStatus) -> HvStatus:
        """Record a rep call's absolute reps completed; log the pool once per call, not per rep."""
        call.reps_done = done
        if done > call.rep_start:
            self.pool_changed(target)
        return status

    # --- recorded state changes -----------------------------------------------------------------
    def set_state(self, p: Partition, new: PartitionState) -> None:
        old = p.state
        p.state = new
        self.log.emit("partition.state", partition=p.id, old=old.name, new=new.name)
        self.effects.partition_state(p)

    def pool_changed(self, p: Partition) -> None:
        if self.log.enabled:
            self.log.emit("pool", partition=p.id, available=len(p.pool.available), in_use=p.pool.in_use)

    def update_run_state(self, p: Partition, vp: Vp) -> None:
        """Recompute whether *vp* runs (HYPERCALLS.md 5.9) and account its run time."""
        runnable = vp.wants_to_run() and p.state is PartitionState.ACTIVE
        if runnable == vp.runnable:
            return
        now = self.clock()
        vp.runnable = runnable
        if runnable:
            vp.run_since_ns = now
            p.has_run = True
        elif vp.run_since_ns is not None:
            vp.runtime_ns += now - vp.run_since_ns
            vp.run_since_ns = None
        self.log.emit("vp.state", partition=p.id, vp=vp.index, runnable=runnable)
        self.effects.vp_run_state(p, vp)

    def release_flush_waiters(self, p: Partition) -> None:
        """A TLB lock in *p* cleared (or its VP went): flushers no longer held by any lock run again,
        and re-issue their flush."""
        for vp in p.vps.values():
            if vp.flush_wait:
                vp.flush_wait = tuple(
                    i
                    for i in vp.flush_wait
                    if i in p.vps and p.vps[i].intercept_suspend & INTERCEPT_SUSPEND_TLB_LOCKED
                )
                if not vp.flush_wait:
                    self.update_run_state(p, vp)

    def vp_runtime_ns(self, vp: Vp) -> int:
        extra = self.clock() - vp.run_since_ns if vp.run_since_ns is not None else 0
        return vp.runtime_ns + extra

    def remove_endpoints(self, p: Partition) -> None:
        """Delete every port and connection of *p* (implemented by the port calls)."""
        raise NotImplementedError

    def write_register(self, p: Partition, vp: Vp, name: int, value: int) -> HvStatus:
        """SetVpRegisters' write rule for one register (implemented by the VP calls)."""
        raise NotImplementedError

    def new_message_id(self) -> int:
        self.next_message_id += 1
        return self.next_message_id - 1

    def send_message(self, msg: Message) -> None:
        """Put *msg* in transit to its target VP (implemented by the message calls)."""
        raise NotImplementedError

    def guest_doorbell_write(self, partition_id: int, vp_index: int, gpa: int, value: int, size: int) -> bool:
        """Ring the doorbells a guest write matches; whether any did (the message calls)."""
        raise NotImplementedError

    def walk(self, p: Partition, vp: Vp, gva_page: int, flags: int) -> Any:
        """Translate a GVA page as *vp* would (implemented by the translation calls)."""
        raise NotImplementedError

    def unmap_for_deposit(self, p: Partition, gpfn: int) -> None:
        """Take a nested host's GPA page out of its space while deposited (the GPA calls)."""
        raise NotImplementedError

    def remap_after_withdraw(self, p: Partition, gpfn: int, spa: int, flags: int) -> None:
        """Put a withdrawn page back at a nested host's GPA page (the GPA calls)."""
        raise NotImplementedError

    def registered_cpuid(
        self, p: Partition, vp: int, leaf: int, subleaf: int, result: tuple[int, int, int, int]
    ) -> tuple[tuple[int, int, int, int], bool]:
        """CPUID with a parent's registered results applied (the intercept-result calls)."""
        raise NotImplementedError

    def registered_msr(self, p: Partition, vp: int, index: int, write: bool) -> int | None:
        """A parent's registered action for an unimplemented MSR (the intercept-result calls)."""
        raise NotImplementedError

    def remove_mappings(self, p: Partition) -> None:
        """Drop *p*'s GPA mappings (implemented by the GPA calls)."""
        raise NotImplementedError

    def free_port_messages(self, port: Port) -> None:
        """Free every undelivered message of *port* (implemented by the message calls)."""
        raise NotImplementedError

    def free_vp_messages(self, p: Partition, vp: Vp) -> None:
        """Free the messages queued for *vp* (implemented by the message calls)."""
        raise NotImplementedError

    def synic_written(self, p: Partition, vp: Vp, name: int) -> None:
        """A SynIC register of *vp* was written (implemented by the message calls)."""
        raise NotImplementedError

    def drop_stats_pages(self, partition_id: int, vp: int | None = None) -> None:
        """Unmap the statistics pages of a VP or partition that went (the stats-page calls)."""
        raise NotImplementedError

    def remove_vp(self, p: Partition, vp: Vp) -> None:
        self.free_vp_messages(p, vp)
        self.drop_stats_pages(p.id, vp.index)
        for key in [k for k in p.vp_state_pages if k[0] == vp.index]:
            del p.vp_state_pages[key]
            p.pool.release(f"vpstate:{key[0]}:{key[1]}")
        if vp.runnable:
            vp.explicit_suspend = 1
            self.update_run_state(p, vp)
        del p.vps[vp.index]
        p.pool.release(f"vp:{vp.index}")
        self.release_flush_waiters(p)
        self.effects.vp_deleted(p, vp)
