"""The VP actor: executes its guest program while the hypervisor says it may run."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pykka
import simpy

from hvsim.actors.hypercall import HypercallRequest, HypercallResult
from hvsim.actors.runtime import SimActor, ask
from hvsim.actors.workload import Compute, Halt, Hypercall, Program


@dataclass(frozen=True, slots=True)
class RunState:
    """From the hypervisor (via the partition actor): whether this VP may execute now."""

    runnable: bool


class VpActor(SimActor):
    """One VP. Its program runs in a SimPy process; suspension takes effect between ops."""

    def __init__(
        self, partition_id: int, index: int, hypervisor: pykka.ActorRef[Any], program: Program
    ) -> None:
        super().__init__()
        self.partition_id = partition_id
        self.index = index
        self.hypervisor = hypervisor
        self.program = program
        self.runnable = False
        self.halted = False
        self._resume: simpy.Event | None = None
        self._process: simpy.Process | None = None
        #: Guest-side counters: ops executed, hypercalls by label, simulated ns computed.
        self.hypercalls = 0
        self.compute_ns = 0
        self.last_result: HypercallResult | None = None

    def on_receive(self, message: Any) -> Any:
        if type(message) is RunState:
            self.runnable = message.runnable
            if self.runnable:
                if self._process is None:
                    self._process = self.env.process(self._execute())
                elif not self.halted and self._resume is not None and not self._resume.triggered:
                    self._resume.succeed()
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        self.runnable = False
        if self._resume is not None and not self._resume.triggered:
            self._resume.succeed()

    def _execute(self) -> Generator[simpy.Event, Any, None]:
        ops = self.program.setup
        while not self.actor_stopped.is_set():
            for op in ops:
                while not self.runnable:
                    if self.actor_stopped.is_set():
                        return
                    self._resume = self.env.event()
                    yield self._resume
                if self.actor_stopped.is_set():
                    return
                if type(op) is Compute:
                    self.compute_ns += op.ns
                    yield self.env.timeout(op.ns)
                elif type(op) is Hypercall:
                    req = HypercallRequest(self.partition_id, self.index, op.control, op.input)
                    self.last_result = yield ask(self.hypervisor, req)
                    self.hypercalls += 1
                elif type(op) is Halt:
                    self.halted = True
                    self._resume = self.env.event()
                    yield self._resume  # only teardown wakes a halted VP for now
                    return
            ops = self.program.loop
            if not ops:
                return
