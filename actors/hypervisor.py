"""The hypervisor actor: serves hypercalls from its inbox and tells partitions what changed."""

from __future__ import annotations

from typing import Any

import pykka

from hvsim.actors.config import HvConfig
from hvsim.actors.core import Hypervisor
from hvsim.actors.hypercall import HypercallRequest
from hvsim.actors.model import Partition, Vp
from hvsim.actors.partition import PartitionActor, StateChanged, VpCreated, VpDeleted, VpRunState
from hvsim.actors.runtime import Deferred, SimActor
from hvsim.actors.trace import EventLog
from hvsim.actors.workload import GuestProvider


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
        if type(message) is HypercallRequest:
            result = self.hv.hypercall(message)
            return Deferred(result, result.cost_ns)
        return super().on_receive(message)

    # Effects: the model's notifications become messages -------------------------------------
    def partition_created(self, partition: Partition) -> None:
        self.partition_refs[partition.id] = PartitionActor.start(partition.id, self.actor_ref, self.guest)

    def partition_state(self, partition: Partition) -> None:
        self.partition_refs[partition.id].tell(StateChanged(partition.state.name))

    def partition_deleted(self, partition: Partition) -> None:
        self.partition_refs.pop(partition.id).stop(block=False)

    def vp_created(self, partition: Partition, vp: Vp) -> None:
        self.partition_refs[partition.id].tell(VpCreated(vp.index))

    def vp_deleted(self, partition: Partition, vp: Vp) -> None:
        self.partition_refs[partition.id].tell(VpDeleted(vp.index))

    def vp_run_state(self, partition: Partition, vp: Vp) -> None:
        self.partition_refs[partition.id].tell(VpRunState(vp.index, vp.runnable))
