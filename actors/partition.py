"""The partition actor: the guest's presence in the simulation, supervising its VP actors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pykka

from hvsim.actors.runtime import SimActor
from hvsim.actors.synic import Synic
from hvsim.actors.vp import RunState, VpActor
from hvsim.actors.workload import GuestProvider


@dataclass(frozen=True, slots=True)
class VpCreated:
    index: int
    #: The VP's SynIC overlay pages (memory the hypervisor and the VP share).
    synic: Synic


@dataclass(frozen=True, slots=True)
class VpRunState:
    index: int
    runnable: bool


@dataclass(frozen=True, slots=True)
class VpDeleted:
    index: int


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: str


@dataclass(frozen=True, slots=True)
class ToVp:
    """Forward *message* (a Pause, Crash, SetSpeed or SintInterrupt) to VP *index*, if it exists."""

    index: int
    message: Any


class PartitionActor(SimActor):
    """Starts a VP actor (running the guest program its provider chooses) for each created VP."""

    def __init__(self, partition_id: int, hypervisor: pykka.ActorRef[Any], guest: GuestProvider) -> None:
        super().__init__()
        self.partition_id = partition_id
        self.hypervisor = hypervisor
        self.guest = guest
        self.state = "CREATED"
        #: VP index -> its actor; ordered by creation.
        self.vps: dict[int, pykka.ActorRef[VpActor]] = {}

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is VpRunState:
            self.vps[message.index].tell(RunState(message.runnable))
        elif kind is VpCreated:
            program = self.guest(self.partition_id, message.index)
            self.vps[message.index] = VpActor.start(
                self.partition_id, message.index, self.hypervisor, program, message.synic
            )
        elif kind is VpDeleted:
            self.vps.pop(message.index).stop(block=False)
        elif kind is StateChanged:
            self.state = message.state
        elif kind is ToVp:
            ref = self.vps.get(message.index)
            if ref is not None:
                ref.tell(message.message)
        else:
            return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        for ref in self.vps.values():
            ref.stop(block=False)
        self.vps.clear()
