"""The VP actor: executes its guest program while the hypervisor says it may run."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pykka
import simpy

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    HV_VP_INDEX_SELF,
    REGISTER_ASSOC,
    VP_REGISTERS_INPUT,
    HypercallCode,
    RegisterAssoc,
    RegisterName,
    VpRegistersInput,
    control,
)
from hvsim.actors.hypercall import HypercallRequest, HypercallResult
from hvsim.actors.runtime import SimActor, ask
from hvsim.actors.workload import Compute, Halt, Hypercall, Program


@dataclass(frozen=True, slots=True)
class RunState:
    """From the hypervisor (via the partition actor): whether this VP may execute now."""

    runnable: bool


@dataclass(frozen=True, slots=True)
class Pause:
    """The physical processor is taken away for *duration_ns* (the host is not told); a pause of
    0 ns ends any pause in progress."""

    duration_ns: int


@dataclass(frozen=True, slots=True)
class Crash:
    """The guest crashes: it reports through the crash registers, then executes nothing more."""

    code: int = 0xDEAD


@dataclass(frozen=True, slots=True)
class SetSpeed:
    """Compute takes *factor* times its nominal time (1.0: full speed)."""

    factor: float


#: HV_CRASH_CTL_REG_CONTENTS: CrashNotify (bit 63) | CrashMessage (bit 62) is what a bugcheck sets.
CRASH_NOTIFY = 1 << 63


R = RegisterName


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
        self.speed = 1.0
        self.paused_until_ns = 0
        self.crash_code: int | None = None
        self.crashed = False
        self._unpause: simpy.Event | None = None
        #: End of the compute op in progress (a VP inside a long op is running, not stuck).
        self.busy_until_ns = 0

    def on_receive(self, message: Any) -> Any:
        if type(message) is RunState:
            self.runnable = message.runnable
            if self.runnable:
                if self._process is None:
                    self._process = self.env.process(self._execute())
                elif not self.halted and self._resume is not None and not self._resume.triggered:
                    self._resume.succeed()
            return None
        if type(message) is Pause:
            if message.duration_ns == 0:
                self.paused_until_ns = 0
                if self._unpause is not None and not self._unpause.triggered:
                    self._unpause.succeed()
            else:
                self.paused_until_ns = max(self.paused_until_ns, int(self.env.now) + message.duration_ns)
        elif type(message) is SetSpeed:
            self.speed = message.factor
        elif type(message) is Crash:
            self.crash_code = message.code
            if self.runnable and not self.halted and self._resume is not None and not self._resume.triggered:
                self._resume.succeed()
        else:
            return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        self.runnable = False
        if self._resume is not None and not self._resume.triggered:
            self._resume.succeed()

    def _execute(self) -> Generator[simpy.Event, Any, None]:
        ops = self.program.setup
        while not self.actor_stopped.is_set():
            for op in ops:
                # Each op starts only when the VP exists, may run and is not paused: all three
                # are re-checked after every wait, since any may change while waiting.
                while True:
                    if self.actor_stopped.is_set():
                        return
                    if self.paused_until_ns > self.env.now:
                        self._unpause = self.env.event()
                        yield self.env.any_of(
                            [self._unpause, self.env.timeout(self.paused_until_ns - int(self.env.now))]
                        )
                    elif not self.runnable:
                        self._resume = self.env.event()
                        yield self._resume
                    else:
                        break
                if self.crash_code is not None:
                    yield from self._bugcheck(self.crash_code)
                    return
                if type(op) is Compute:
                    self.compute_ns += op.ns
                    duration = op.ns if self.speed == 1.0 else round(op.ns * self.speed)
                    self.busy_until_ns = int(self.env.now) + duration
                    yield self.env.timeout(duration)
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

    def _bugcheck(self, code: int) -> Generator[simpy.Event, Any, None]:
        """What a guest's crash handler does on Hyper-V: write GuestCrashP0-P4, then GuestCrashCtl
        with CrashNotify, so the host can see the crash; then stop executing for good."""
        values = [(R.GuestCrashP0, code), (R.GuestCrashP1, self.index), (R.GuestCrashCtl, CRASH_NOTIFY)]
        header = VP_REGISTERS_INPUT.pack(
            VpRegistersInput(HV_PARTITION_ID_SELF, HV_VP_INDEX_SELF, 0, bytes(3))
        )
        body = b"".join(REGISTER_ASSOC.pack(RegisterAssoc(n, bytes(12), v, 0)) for n, v in values)
        ctl = control(HypercallCode.SetVpRegisters, rep_count=len(values))
        self.last_result = yield ask(
            self.hypervisor, HypercallRequest(self.partition_id, self.index, ctl, header + body)
        )
        self.crashed = True
        self.halted = True
