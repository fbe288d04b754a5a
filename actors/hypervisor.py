"""The hypervisor actor: serves hypercalls from its inbox and tells partitions what changed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from hvsim.actors.config import HvConfig
from hvsim.actors.core import Hypervisor
from hvsim.actors.hypercall import HypercallRequest
from hvsim.actors.intercepts import GuestAccess
from hvsim.actors.model import Partition, Vp
from hvsim.actors.partition import (
    PartitionActor,
    StateChanged,
    ToVp,
    VpCreated,
    VpDeleted,
    VpRunState,
)
from hvsim.actors.runtime import Deferred, SimActor, call_later
from hvsim.actors.trace import EventLog
from hvsim.actors.vp import ApicInterrupt, DoorbellWrite, InterruptAck, MsrWrite, RegisterRead, SintInterrupt
from hvsim.actors.workload import GuestProvider


@dataclass(frozen=True, slots=True)
class RunLater:
    """A hypervisor-internal timer firing (a message in transit reaching its target)."""

    fn: Callable[[], None]


class HypervisorActor(SimActor):
    """Owns the :class:`Hypervisor` model. A hypercall is handled when its request arrives and
    answered after the call's simulated service time (a :class:`Deferred` reply), so calls from
    different VPs overlap in simulated time as they do on real processors."""

    def __init__(self, config: HvConfig, log: EventLog, guest: GuestProvider) -> None:
        super().__init__()
        self.guest = guest
        self.partition_refs: dict[int, pykka.ActorRef[PartitionActor]] = {}
        self.hv = Hypervisor(config, self._now, log, effects=self)
        root = self.hv.root
        self.partition_created(root)
        for vp in root.vps.values():
            self.vp_created(root, vp)

    def _now(self) -> int:
        return int(self.env.now)

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is HypercallRequest:
            result = self.hv.hypercall(message)
            return Deferred(result, result.cost_ns)
        if kind is RunLater:
            message.fn()
        elif kind is MsrWrite:
            status = self.hv.guest_msr_write(message.partition_id, message.vp, message.name, message.value)
            return Deferred(status, self.hv.config.msr_write_ns)
        elif kind is DoorbellWrite:
            self.hv.guest_doorbell_write(
                message.partition_id, message.vp, message.gpa, message.value, message.size
            )
            return Deferred(None, self.hv.config.msr_write_ns)
        elif kind is GuestAccess:
            return Deferred(self.hv.guest_access(message), self.hv.config.msr_write_ns)
        elif kind is RegisterRead:
            vp = self.hv.partitions[message.partition_id].vps[message.vp]
            return [vp.regs.get(name, 0) for name in message.names]
        elif kind is InterruptAck:
            self.hv.interrupt_acknowledged(message.partition_id, message.vp)
        else:
            return super().on_receive(message)
        return None

    # Effects: the model's notifications become messages -------------------------------------
    def partition_created(self, partition: Partition) -> None:
        self.partition_refs[partition.id] = PartitionActor.start(partition.id, self.actor_ref, self.guest)

    def partition_state(self, partition: Partition) -> None:
        self.partition_refs[partition.id].tell(StateChanged(partition.state.name))

    def partition_deleted(self, partition: Partition) -> None:
        self.partition_refs.pop(partition.id).stop(block=False)

    def vp_created(self, partition: Partition, vp: Vp) -> None:
        self.partition_refs[partition.id].tell(VpCreated(vp.index, vp.synic))

    def vp_deleted(self, partition: Partition, vp: Vp) -> None:
        self.partition_refs[partition.id].tell(VpDeleted(vp.index))

    def vp_run_state(self, partition: Partition, vp: Vp) -> None:
        self.partition_refs[partition.id].tell(VpRunState(vp.index, vp.runnable))

    def schedule(self, delay_ns: int, fn: Callable[[], None]) -> None:
        # Through the inbox, so a timer firing is ordered with hypercalls arriving at that instant.
        ref = self.actor_ref
        call_later(self.env, delay_ns, lambda: ref.tell(RunLater(fn)))

    def sint_interrupt(self, partition: Partition, vp: Vp, sint: int) -> None:
        self.partition_refs[partition.id].tell(ToVp(vp.index, SintInterrupt(sint)))

    def apic_interrupt(self, partition: Partition, vp: Vp, vector: int, kind: int) -> None:
        self.partition_refs[partition.id].tell(ToVp(vp.index, ApicInterrupt(vector, kind)))
