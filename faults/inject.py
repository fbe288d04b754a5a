"""The fault injector: implements the hypervisor's Interposer seam and runs the timed faults.

Every fault has its own random stream (derived from the run's seed, the fault's index and kind), a
``fault`` record in the event log each time it fires, and a heal: at its ``end_ns``, at the plan's
``heal_at_ns``, or when the run ends, whichever comes first. After :meth:`heal_all` nothing is active.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any

import simpy

from hvsim.actors.core import CALL_NAMES, Hypervisor
from hvsim.actors.hvdef import HvStatus
from hvsim.actors.model import PartitionState
from hvsim.actors.seams import CallFault, MessageFault
from hvsim.actors.trace import EventLog
from hvsim.faults.plan import (
    REP_CALLS,
    FaultPlan,
    HostCrash,
    HypercallLatency,
    HypercallPartial,
    HypercallTransient,
    MessageDelay,
    MessageDrop,
    MessageDuplicate,
    MessageReorder,
    PoolCap,
    PoolDrain,
    PoolFailNth,
    PoolFailProbability,
    PoolRefuseLarge,
    PortBuffers,
    SynicBusySlot,
    VpCrash,
    VpPause,
    VpSlow,
    transient_calls,
)

DRAIN_KEY = "fault:drain"
#: How often a VP fault looks for target VPs that appeared since (simulated ns).
VP_FAULT_POLL_NS = 100_000
CALL_FAULTS = (HypercallPartial, HypercallLatency, HypercallTransient)
POOL_FAULTS = (PoolCap, PoolFailNth, PoolFailProbability, PoolRefuseLarge)
MESSAGE_FAULTS = (MessageDelay, MessageReorder, MessageDrop, MessageDuplicate)
MESSAGE_KINDS = frozenset({"post", "event", "doorbell"})


class HostCrashed(Exception):
    """Raised inside the host at the step a ``host.crash`` fault names."""

    def __init__(self, step: str = "", occurrence: int = 0) -> None:
        super().__init__(step, occurrence)
        self.step = step
        self.occurrence = occurrence

    def __str__(self) -> str:
        return f"host crashed at step {self.step!r} (occurrence {self.occurrence})"


class VpControl:
    """What the injector may do to a VP (implemented by the simulation: pause, crash, slow)."""

    def __init__(
        self,
        pause: Callable[[int, int, int], bool],
        crash: Callable[[int, int], bool],
        slow: Callable[[int, float], None],
    ) -> None:
        self.pause, self.crash, self.slow = pause, crash, slow


class FaultInjector:
    """All of one plan's faults, acting on one simulation."""

    def __init__(
        self, plan: FaultPlan, seed: int, env: simpy.Environment, hv: Hypervisor, log: EventLog
    ) -> None:
        self.plan = plan
        self.env = env
        self.hv = hv
        self.log = log
        self.faults = plan.faults
        # A fault's stream derives from what the fault is, not where it stands in the plan, so
        # dropping other faults (shrinking) leaves it drawing exactly the same numbers.
        seen: Counter[str] = Counter()
        self.rngs = []
        for f in self.faults:
            identity = f.model_dump_json()
            seen[identity] += 1
            self.rngs.append(random.Random(f"{seed}:{identity}:{seen[identity]}"))
        self.fired: Counter[str] = Counter()
        self.healed = False
        self._nth = [0] * len(self.faults)
        self._crash_seen = [0] * len(self.faults)
        # Each call fault with the set of call names it may act on (None: every call), worked out
        # once here rather than on every hypercall.
        self._call_faults = [
            (i, f, self._eligible_calls(f)) for i, f in enumerate(self.faults) if isinstance(f, CALL_FAULTS)
        ]
        self._pool_faults = [(i, f) for i, f in enumerate(self.faults) if isinstance(f, POOL_FAULTS)]
        self._message_faults = [(i, f) for i, f in enumerate(self.faults) if isinstance(f, MESSAGE_FAULTS)]
        self._busy = [(i, f) for i, f in enumerate(self.faults) if isinstance(f, SynicBusySlot)]
        self._buffers = [(i, f) for i, f in enumerate(self.faults) if isinstance(f, PortBuffers)]
        #: Slots and ports a fault has already reported acting on (one record each, not per query).
        self._reported: set[tuple[int, int, int, int]] = set()
        self._slowed: list[int] = []
        self._paused: list[tuple[int, int]] = []

    @staticmethod
    def _eligible_calls(f: HypercallPartial | HypercallLatency | HypercallTransient) -> frozenset[str] | None:
        if f.calls:
            return frozenset(f.calls)
        if isinstance(f, HypercallPartial):
            return frozenset(REP_CALLS)
        if isinstance(f, HypercallTransient):
            return frozenset(transient_calls(f.status))
        return None  # latency: any call

    # --- bookkeeping ---------------------------------------------------------------------------
    def active(self, index: int) -> bool:
        f = self.faults[index]
        now = self.env.now
        end = self.plan.heal_at_ns if f.end_ns is None else min(f.end_ns, self.plan.heal_at_ns)
        return not self.healed and f.start_ns <= now < end

    def _targets(self, target: str | int, partition_id: int) -> bool:
        root = self.hv.root.id
        if target == "any":
            return True
        if target == "root":
            return partition_id == root
        if target == "child":
            return partition_id != root
        return partition_id == target

    def fire(self, index: int, **details: Any) -> None:
        kind = self.faults[index].kind
        self.fired[kind] += 1
        self.log.emit("fault", kind=kind, index=index, **details)

    # --- the Interposer seam --------------------------------------------------------------------
    def on_hypercall(
        self, caller: int, vp: int, code: int, rep_start: int, rep_count: int
    ) -> CallFault | None:
        name = CALL_NAMES.get(code)
        if name is None:
            return None
        for i, f, eligible in self._call_faults:
            if not self.active(i) or not self._targets(f.caller, caller):
                continue
            if (eligible is not None and name not in eligible) or self.rngs[i].random() >= f.probability:
                continue
            label = f"{f.kind}#{i}"
            if isinstance(f, HypercallPartial):
                if rep_count - rep_start <= f.max_reps:
                    continue  # nothing to cut short
                self.fire(i, call=name, caller=caller, max_reps=f.max_reps)
                return CallFault(rep_cap=f.max_reps, fault=label)
            if isinstance(f, HypercallLatency):
                self.fire(i, call=name, caller=caller, extra_ns=f.extra_ns)
                return CallFault(extra_ns=f.extra_ns, fault=label)
            self.fire(i, call=name, caller=caller, status=f.status)
            return CallFault(status=HvStatus[f.status], fault=label)
        return None

    def allow_charge(self, partition_id: int, key: str, pages: int) -> bool:
        for i, f in self._pool_faults:
            if not self.active(i) or not self._targets(f.target, partition_id):
                continue
            refuse = False
            if isinstance(f, PoolCap):
                refuse = self.hv.partitions[partition_id].pool.in_use + pages > f.max_in_use_pages
            elif isinstance(f, PoolFailNth):
                self._nth[i] += 1
                refuse = self._nth[i] % f.n == 0 if f.every else self._nth[i] == f.n
            elif isinstance(f, PoolFailProbability):
                refuse = self.rngs[i].random() < f.probability
            elif isinstance(f, PoolRefuseLarge):
                refuse = pages >= f.min_pages
            if refuse:
                self.fire(i, partition=partition_id, structure=key, pages=pages)
                return False
        return True

    def on_message(
        self, src_partition: int, dst_partition: int, dst_vp: int, sint: int, kind: str
    ) -> MessageFault | None:
        if kind not in MESSAGE_KINDS:
            return None  # intercept messages are the VP's own buffer, not port traffic
        for i, f in self._message_faults:
            if not self.active(i) or not self._targets(f.target, dst_partition):
                continue
            if (f.kinds and kind not in f.kinds) or self.rngs[i].random() >= f.probability:
                continue
            label = f"{f.kind}#{i}"
            where = {"src": src_partition, "partition": dst_partition, "vp": dst_vp, "sint": sint}
            if isinstance(f, MessageDrop):
                self.fire(i, **where)
                return MessageFault(drop=True, fault=label)
            if isinstance(f, MessageDuplicate):
                self.fire(i, **where)
                return MessageFault(duplicate_after_ns=f.after_ns, fault=label)
            extra = f.extra_ns if isinstance(f, MessageDelay) else self.rngs[i].randint(0, f.window_ns)
            self.fire(i, extra_ns=extra, **where)
            return MessageFault(extra_ns=extra, fault=label)
        return None

    def slot_blocked(self, partition_id: int, vp: int, sint: int) -> bool:
        for i, f in self._busy:
            if self.active(i) and self._targets(f.target, partition_id) and f.sint in (None, sint):
                self._report(i, partition_id, vp, sint, partition=partition_id, vp=vp, sint=sint)
                return True
        return False

    def port_buffers(self, partition_id: int, port_id: int, normal: int) -> int:
        for i, f in self._buffers:
            if self.active(i) and self._targets(f.target, partition_id) and f.buffers < normal:
                self._report(i, partition_id, port_id, -1, partition=partition_id, port=port_id)
                return f.buffers
        return normal

    def _report(self, index: int, a: int, b: int, c: int, **details: Any) -> None:
        """Fire once per fault and object for faults the hypervisor queries over and over."""
        key = (index, a, b, c)
        if key not in self._reported:
            self._reported.add(key)
            self.fire(index, **details)

    # --- host steps ---------------------------------------------------------------------------
    def on_host_step(self, step: str) -> HostCrash | None:
        """Called by the host at each named step; raises HostCrashed when a crash fault says so."""
        for i, f in enumerate(self.faults):
            if isinstance(f, HostCrash) and f.step == step and self.active(i):
                self._crash_seen[i] += 1
                if self._crash_seen[i] == f.occurrence:
                    self.fire(i, step=step, occurrence=f.occurrence)
                    return f
        return None

    # --- timed faults ---------------------------------------------------------------------------
    def processes(self, vps: VpControl) -> list[Generator[simpy.Event, Any, None]]:
        procs: list[Generator[simpy.Event, Any, None]] = []
        for i, f in enumerate(self.faults):
            if isinstance(f, PoolDrain):
                procs.append(self._drain(i, f))
            elif isinstance(f, VpPause | VpCrash | VpSlow):
                procs.append(self._vp_fault(i, f, vps))
            elif isinstance(f, SynicBusySlot) and f.end_ns is not None:
                procs.append(self._rescan_at(f.end_ns))
        procs.append(self._heal_at(self.plan.heal_at_ns, vps))
        return procs

    def _drain(self, index: int, f: PoolDrain) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(f.start_ns)
        while self.active(index):
            for p in list(self.hv.partitions.values()):
                # Only a live partition makes the hypervisor build structures; a finalized one
                # gets its pages back and must drain to empty.
                if not self._targets(f.target, p.id) or p.state is not PartitionState.ACTIVE:
                    continue
                take = min(f.pages_per_step, f.max_pages - p.pool.charged(DRAIN_KEY), len(p.pool.available))
                if take > 0 and p.pool.charge(DRAIN_KEY, take):
                    self.fire(index, partition=p.id, pages=take)
                    self.hv.pool_changed(p)
            yield self.env.timeout(f.step_ns)
        self._give_back_drained()

    def _give_back_drained(self) -> None:
        for p in self.hv.partitions.values():
            if p.pool.release(DRAIN_KEY):
                self.hv.pool_changed(p)

    def _vp_fault(
        self, index: int, f: VpPause | VpCrash | VpSlow, vps: VpControl
    ) -> Generator[simpy.Event, Any, None]:
        """Act once on each target partition's VP, as soon as it exists within the fault's window
        (a fault starting before the guests boot still reaches them)."""
        yield self.env.timeout(f.start_ns)
        done: set[int] = set()
        while self.active(index):
            for p in list(self.hv.partitions.values()):
                if p.id in done or not self._targets(f.target, p.id) or p.state is not PartitionState.ACTIVE:
                    continue
                if isinstance(f, VpSlow):
                    if not p.vps:
                        continue
                    vps.slow(p.id, f.factor)
                    self._slowed.append(p.id)
                    self.fire(index, partition=p.id, factor=f.factor)
                elif f.vp not in p.vps or not p.vps[f.vp].runnable:
                    continue
                elif isinstance(f, VpPause) and vps.pause(p.id, f.vp, f.duration_ns):
                    self._paused.append((p.id, f.vp))
                    self.fire(index, partition=p.id, vp=f.vp, duration_ns=f.duration_ns)
                elif isinstance(f, VpCrash) and vps.crash(p.id, f.vp):
                    self.fire(index, partition=p.id, vp=f.vp)
                done.add(p.id)
            yield self.env.timeout(VP_FAULT_POLL_NS)

    def _rescan_at(self, at_ns: int) -> Generator[simpy.Event, Any, None]:
        """A busy-slot fault ended: the hypervisor retries the deliveries it held back."""
        yield self.env.timeout(at_ns)
        self.hv.rescan_all()

    def _heal_at(self, at_ns: int, vps: VpControl) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(max(0, at_ns - int(self.env.now)))
        self.heal_all(vps)

    def heal_all(self, vps: VpControl | None = None) -> None:
        """End every fault now: drained pages go back, slowed VPs run at full speed, paused VPs run."""
        if self.healed:
            return
        self.healed = True
        self._give_back_drained()
        if self._busy:
            self.hv.rescan_all()
        if vps is not None:
            for pid in self._slowed:
                vps.slow(pid, 1.0)
            for pid, vp in self._paused:
                vps.pause(pid, vp, 0)
        self.log.emit("fault.healed", fired=dict(sorted(self.fired.items())))
