"""The reference virtualization host: the TLFS usage patterns, done robustly.

* Basic Partition Creation: create -> set properties -> deposit -> initialize -> create VPs ->
  initial VP state -> clear ExplicitSuspend (VP 0 runs; the guest starts its APs).
* Partition Cleanup: stop VPs -> finalize -> withdraw until NO_RESOURCES -> delete.
* INSUFFICIENT_MEMORY: deposit into the pool that was short (SELF for CreatePartition) and retry.
* Rep calls: continued while SUCCESS with fewer reps than asked (HostApi.rep).

Subclass and override a step to test a different policy, or write your own host against
:class:`~hvsim.scenarios.hostapi.HostApi`. Every step is a generator; run it in a process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import simpy

from hvsim.actors.hvdef import (
    GUEST_MSR_PRIVILEGES,
    HV_PARTITION_ID_SELF,
    CreationFlags,
    HvStatus,
    PartitionPrivilege,
    PropertyCode,
    RegisterName,
    describe,
)
from hvsim.actors.workload import Program
from hvsim.scenarios.hostapi import HostApi, RepOutcome
from hvsim.scenarios.simulation import Simulation
from hvsim.scenarios.workload import guest_os

S = HvStatus
R = RegisterName
T = TypeVar("T")
Gen = Generator[simpy.Event, Any, T]

#: What the reference host grants its guests: the guest MSR set plus the hypercalls a guest OS
#: uses on itself (its partition id, its own VP registers, starting its APs, messaging).
GUEST_PRIVILEGES = int(
    GUEST_MSR_PRIVILEGES
    | PartitionPrivilege.AccessPartitionId
    | PartitionPrivilege.AccessVpRegisters
    | PartitionPrivilege.StartVirtualProcessor
    | PartitionPrivilege.PostMessages
    | PartitionPrivilege.SignalEvents
)


class HostError(Exception):
    """A host step got a status its policy cannot handle."""

    def __init__(self, step: str, status: int) -> None:
        super().__init__(step, status)
        self.step = step
        self.status = status

    def __str__(self) -> str:
        return f"{self.step}: {describe(self.status)}"


@dataclass(frozen=True)
class PartitionSpec:
    """What the host should build."""

    vps: int = 2
    #: Pages deposited up front (Initial Memory Allocation); shortfalls are topped up on demand.
    initial_pages: int = 256
    privileges: int = GUEST_PRIVILEGES
    flags: int = int(CreationFlags.EXO_PARTITION | CreationFlags.INTERCEPT_MESSAGE_PAGE_ENABLED)
    #: CreatePartition's DisabledProcessorFeatures banks (their CPUID bits are cleared).
    disabled_features: tuple[int, int] = (0, 0)
    #: Regular (non-early) properties, set after InitializePartition.
    properties: dict[int, int] = field(default_factory=dict)
    #: Program per VP index; default: the seeded guest OS of hvsim.scenarios.workload.
    program: Callable[[int], Program] | None = None
    #: Initial RIP / RSP of VP 0.
    entry: int = 0x10_0000
    stack: int = 0x8_0000
    #: Host code run once the VPs exist and before they run (map guest RAM, install intercepts):
    #: ``prepare(host, partition_id)`` is a generator.
    prepare: Callable[[ReferenceHost, int], Gen[Any]] | None = None


HOST_STEPS = (
    "boot.created", "boot.initialized", "boot.vps_created", "boot.end",
    "teardown.begin", "teardown.stopped", "teardown.finalized", "teardown.withdrew",
    "teardown.drained", "teardown.end", "reclaim",
)  # fmt: skip
"""The named steps of the reference host: where ``host.crash`` faults can strike."""


def new_host(sim: Simulation, *, vp: int = 0, **kwargs: Any) -> ReferenceHost:
    """The run's host policy (``sim.host_class``, default :class:`ReferenceHost`) on root VP *vp*."""
    cls = sim.host_class or ReferenceHost
    host: ReferenceHost = cls(sim, vp=vp, **kwargs)
    return host


class ReferenceHost:
    """Host policy running on root VP *vp*. Keeps the ids of the partitions it manages."""

    def __init__(
        self,
        sim: Simulation,
        *,
        vp: int = 0,
        retry_pages: int = 16,
        max_retries: int = 256,
        backoff_ns: int = 50_000,
        deposits_before_backoff: int = 32,
    ) -> None:
        self.sim = sim
        self.api = HostApi(sim, vp=vp)
        self.retry_pages = retry_pages
        self.max_retries = max_retries
        self.backoff_ns = backoff_ns
        self.deposits_before_backoff = deposits_before_backoff
        #: Partitions this host created and has not deleted, with their specs.
        self.managed: dict[int, PartitionSpec] = {}
        #: Host pages backing each child's guest RAM (mapped with MapGpaPages), freed after teardown.
        self.guest_ram: dict[int, list[int]] = {}

    # --- building blocks -----------------------------------------------------------------------
    def note(self, step: str, **fields: Any) -> None:
        """Record a host step in the event log; it is also a point where the host may crash."""
        self.sim.log.emit(f"host.{step}", host_vp=self.api.vp, **fields)
        self.sim.host_step(step)

    def deposit(self, partition_id: int, count: int) -> Gen[RepOutcome]:
        """Allocate *count* host pages and deposit them; pages not taken go back to the allocator."""
        pages = self.sim.alloc_host_pages(count)
        out = yield from self.api.deposit(partition_id, pages)
        if out.status is not S.SUCCESS:
            self.sim.free_host_pages(pages[out.reps_completed :])
            raise HostError(f"DepositMemory({partition_id})", out.status)
        return out

    def with_memory(self, issue: Callable[[], Gen[T]], pool: int, step: str) -> Gen[T]:
        """Issue a call; on INSUFFICIENT_MEMORY deposit into *pool* and retry (backing off once many
        deposits did not help); on NO_RESOURCES (a limit that may clear) back off and retry. Bounded."""
        backoff_ns = self.backoff_ns
        status = S.SUCCESS
        for attempt in range(self.max_retries):
            result = yield from issue()
            status = HvStatus(result[0] if isinstance(result, tuple) else cast(int, result))
            if status is S.INSUFFICIENT_MEMORY:
                yield from self.deposit(pool, self.retry_pages)
                if attempt >= self.deposits_before_backoff:
                    # Still short after many deposits: the hypervisor refuses for another reason
                    # (a cap, fragmentation); give it time rather than more pages.
                    yield self.sim.env.timeout(backoff_ns)
                    backoff_ns = min(2 * backoff_ns, 10_000_000)
            elif status is S.NO_RESOURCES:
                yield self.sim.env.timeout(backoff_ns)
                backoff_ns = min(2 * backoff_ns, 10_000_000)
            else:
                return result
        raise HostError(f"{step} (gave up after {self.max_retries} retries)", status)

    @staticmethod
    def expect(status: HvStatus, step: str, *allowed: HvStatus) -> None:
        if status is not S.SUCCESS and status not in allowed:
            raise HostError(step, status)

    # --- Basic Partition Creation ------------------------------------------------------------
    def boot(self, spec: PartitionSpec) -> Gen[int]:
        api, start = self.api, self.sim.now_ns
        status, pid = yield from self.with_memory(
            lambda: api.create_partition(flags=spec.flags, disabled_features=spec.disabled_features),
            HV_PARTITION_ID_SELF,
            "CreatePartition",
        )
        self.expect(status, "CreatePartition")
        self.managed[pid] = spec
        self.note("boot.created", partition=pid, vps=spec.vps)
        program = spec.program or self.default_program(pid, spec.vps)
        self.sim.load_guest(pid, program)
        status = yield from self.with_memory(
            lambda: api.set_property(pid, PropertyCode.PrivilegeFlags, spec.privileges), pid, "PrivilegeFlags"
        )
        self.expect(status, "SetPartitionProperty(PrivilegeFlags)")
        if spec.initial_pages:
            yield from self.deposit(pid, spec.initial_pages)
        status = yield from self.with_memory(
            lambda: api.initialize_partition(pid), pid, "InitializePartition"
        )
        self.expect(status, f"InitializePartition({pid})")
        self.note("boot.initialized", partition=pid)
        for code, value in spec.properties.items():
            setter = functools.partial(api.set_property, pid, code, value)
            status = yield from self.with_memory(setter, pid, "SetPartitionProperty")
            self.expect(status, f"SetPartitionProperty({code:#x})")
        for index in range(spec.vps):
            status = yield from self.with_memory(
                functools.partial(api.create_vp, pid, index), pid, "CreateVp"
            )
            self.expect(status, f"CreateVp({pid}, {index})")
        self.note("boot.vps_created", partition=pid)
        if spec.prepare is not None:
            yield from spec.prepare(self, pid)
        out = yield from api.set_registers(pid, 0, {R.Rip: spec.entry, R.Rsp: spec.stack})
        self.expect(out.status, "SetVpRegisters(initial state)")
        for index in range(spec.vps):  # VP 0 runs; the APs wait for the guest to start them
            out = yield from api.set_registers(pid, index, {R.ExplicitSuspend: 0})
            self.expect(out.status, f"SetVpRegisters({pid}, {index}, ExplicitSuspend=0)")
        self.note("boot.end", partition=pid, duration_ns=self.sim.now_ns - start)
        return pid

    def default_program(self, partition_id: int, vps: int) -> Callable[[int], Program]:
        def program(index: int) -> Program:
            return guest_os(self.sim.rng("workload", partition_id, index), index, vps)

        return program

    # --- Partition Cleanup -------------------------------------------------------------------
    def stop_vps(self, partition_id: int, vps: int) -> Gen[None]:
        for index in range(vps):
            out = yield from self.api.set_registers(partition_id, index, {R.ExplicitSuspend: 1})
            self.expect(out.status, f"SetVpRegisters({partition_id}, {index}, ExplicitSuspend=1)")

    def drain(self, partition_id: int) -> Gen[int]:
        """Withdraw until NO_RESOURCES and GetMemoryBalance agrees the pool is empty, returning
        every page to the host allocator. (NO_RESOURCES alone can come early: the TLFS does not
        promise a withdraw finds every free page, so the balance is the arbiter.)"""
        total = 0
        backoff_ns = self.backoff_ns
        for _ in range(self.max_retries):
            status, pages = yield from self.api.withdraw(partition_id)
            self.sim.free_host_pages(pages)
            total += len(pages)
            self.note("teardown.withdrew", partition=partition_id, pages=len(pages))
            if status is S.SUCCESS:
                continue
            self.expect(status, f"WithdrawMemory({partition_id})", S.NO_RESOURCES)
            status, balance = yield from self.api.balance(partition_id)
            self.expect(status, f"GetMemoryBalance({partition_id})")
            if balance.pages_available + balance.pages_in_use == 0:
                return total
            if not pages:
                yield self.sim.env.timeout(backoff_ns)
                backoff_ns = min(2 * backoff_ns, 10_000_000)
        raise HostError(f"WithdrawMemory({partition_id}) (pool never emptied)", S.NO_RESOURCES)

    def teardown(self, partition_id: int) -> Gen[None]:
        start = self.sim.now_ns
        spec = self.managed[partition_id]
        self.note("teardown.begin", partition=partition_id)
        yield from self.stop_vps(partition_id, spec.vps)
        self.note("teardown.stopped", partition=partition_id)
        status = yield from self.api.finalize_partition(partition_id)
        self.expect(status, f"FinalizePartition({partition_id})")
        self.note("teardown.finalized", partition=partition_id)
        pages = yield from self.drain(partition_id)
        self.note("teardown.drained", partition=partition_id)
        status = yield from self.api.delete_partition(partition_id)
        self.expect(status, f"DeletePartition({partition_id})")
        del self.managed[partition_id]
        self.note("teardown.end", partition=partition_id, pages=pages, duration_ns=self.sim.now_ns - start)

    def reclaim_all(self) -> Gen[list[int]]:
        """Recovery after a host restart: rediscover children and finish tearing each one down.

        Works from any state: finalize answers INVALID_PARTITION_STATE for a partition that is
        still CREATED or already FINALIZED, and both can be drained and deleted.
        """
        reclaimed = []
        for pid in (yield from self.api.children()):
            status = yield from self.api.finalize_partition(pid)
            self.expect(status, f"FinalizePartition({pid})", S.INVALID_PARTITION_STATE)
            yield from self.drain(pid)
            self.expect((yield from self.api.delete_partition(pid)), f"DeletePartition({pid})")
            self.managed.pop(pid, None)
            reclaimed.append(pid)
        self.note("reclaim", partitions=reclaimed)
        return reclaimed

    def recover(self) -> Gen[Any]:
        """What a freshly restarted host runs after a crash: here, reclaim every child."""
        return (yield from self.reclaim_all())

    # --- messages ------------------------------------------------------------------------------
    def take_message(self, sint: int, timeout_ns: int | None = None) -> Gen[bytes | None]:
        """Take the next message from SINT *sint* of the host's VP: clear the slot and, if
        MessagePending was set, write EOM so the next queued message is delivered."""
        return (yield from self.api.receive_message(sint, timeout_ns))

    def lifecycle(self, spec: PartitionSpec, run_ns: int) -> Gen[int]:
        """Boot a partition, let it run for *run_ns*, tear it down; returns its id."""
        pid = yield from self.boot(spec)
        yield self.sim.env.timeout(run_ns)
        yield from self.teardown(pid)
        return pid
