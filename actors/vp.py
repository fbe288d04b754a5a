"""The VP actor: executes its guest program while the hypervisor says it may run."""

from __future__ import annotations

from collections.abc import Generator
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
from hvsim.actors.intercepts import AccessOutcome, GuestAccess
from hvsim.actors.runtime import SimActor, ask
from hvsim.actors.synic import Synic
from hvsim.actors.vpmessages import (
    ApicInterrupt,
    Crash,
    DoorbellWrite,
    InterruptAck,
    MsrWrite,
    Pause,
    RegisterRead,
    RunState,
    SetSpeed,
    SintInterrupt,
)
from hvsim.actors.workload import (
    Compute,
    Cpuid,
    Halt,
    Hypercall,
    IoPort,
    MemoryWrite,
    Msr,
    Program,
    ReadMemory,
    ReceiveMessage,
    WaitEvent,
    WaitInterrupt,
    WriteMemory,
    WriteMsr,
)

#: HV_CRASH_CTL_REG_CONTENTS: CrashNotify (bit 63) | CrashMessage (bit 62) is what a bugcheck sets.
CRASH_NOTIFY = 1 << 63


R = RegisterName
AccessOp = IoPort | Msr | Cpuid | ReadMemory | WriteMemory


class VpActor(SimActor):
    """One VP. Its program runs in a SimPy process; suspension takes effect between ops."""

    def __init__(
        self,
        partition_id: int,
        index: int,
        hypervisor: pykka.ActorRef[Any],
        program: Program,
        synic: Synic | None = None,
    ) -> None:
        super().__init__()
        #: This VP's SynIC overlay pages (shared with the hypervisor, which fills them).
        self.synic = synic if synic is not None else Synic()
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
        #: SynIC side: interrupts taken, messages and event flags consumed, EOMs written, waits that
        #: timed out, and the last message taken (256 bytes).
        self.interrupts = 0
        self.messages_received = 0
        self.events_received = 0
        self.eoms = 0
        self.wait_timeouts = 0
        self.memory_writes = 0
        #: Idle in ReceiveMessage / WaitEvent until an interrupt (like HLT: not stuck, waiting).
        self.waiting = False
        #: Times the program's loop has started.
        self.loops = 0
        #: Hypercalls answered with a status other than SUCCESS.
        self.failed_calls = 0
        #: IO, MSR, CPUID and memory accesses: done, intercepted (and resumed), faulted (#GP, #PF);
        #: the values the last few reads returned (newest last).
        self.accesses = 0
        self.intercepted = 0
        self.faults = 0
        self.values: list[int] = []
        #: The virtual APIC: vectors delivered and not yet taken (in arrival order), NMIs seen, the
        #: vectors the guest took, and an ExtInt waiting for the VP to run to be acknowledged.
        self.apic_pending: list[int] = []
        self.nmis = 0
        self.apic_taken: list[int] = []
        self._extint_unacked = False
        self._extint_vector: int | None = None
        self.last_message = b""
        #: INITs taken (each restarts the program).
        self.inits = 0
        self._irq: simpy.Event | None = None
        #: Host code on this VP waiting for its next interrupt (see :meth:`next_interrupt`).
        self._irq_waiters: list[simpy.Event] = []

    def on_receive(self, message: Any) -> Any:
        if type(message) is RunState:
            self.runnable = message.runnable
            if self.runnable and self._extint_unacked:
                self._extint_unacked = False
                self.hypervisor.tell(InterruptAck(self.partition_id, self.index))
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
        elif type(message) is SintInterrupt:
            self.interrupts += 1
            self._wake_irq()
        elif type(message) is ApicInterrupt:
            self._apic(message)
        elif type(message) is SetSpeed:
            self.speed = message.factor
        elif type(message) is Crash:
            self.crash_code = message.code
            if self.runnable and not self.halted and self._resume is not None and not self._resume.triggered:
                self._resume.succeed()
            self._wake_irq()  # a VP idle in a message or event wait crashes too
        else:
            return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        self.runnable = False
        if self._resume is not None and not self._resume.triggered:
            self._resume.succeed()
        self._wake_irq()

    def _wake_irq(self) -> None:
        if self._irq is not None and not self._irq.triggered:
            self._irq.succeed()
        waiters, self._irq_waiters = self._irq_waiters, []
        for ev in waiters:
            if not ev.triggered:
                ev.succeed()

    def _apic(self, message: ApicInterrupt) -> None:
        kind, vector = message.kind, message.vector
        if kind == INIT:
            self._reset_program()
        elif kind == NMI:
            self.nmis += 1
        elif kind == EXTINT:
            # A new ExtInt replaces one not yet taken; vector NONE withdraws it.
            if self._extint_vector is not None and self._extint_vector in self.apic_pending:
                self.apic_pending.remove(self._extint_vector)
            self._extint_vector = None if vector == VECTOR_NONE else vector
            self._extint_unacked = False
            if vector != VECTOR_NONE:
                if self.runnable:  # taking it is acknowledging it
                    self.hypervisor.tell(InterruptAck(self.partition_id, self.index))
                else:
                    self._extint_unacked = True
                self.apic_pending.append(vector)
        elif vector == VECTOR_NONE:
            # A level-triggered line withdrawn before it was taken; an ExtInt among them goes too,
            # and with it the acknowledgement VP 0 would have given on running.
            self.apic_pending.clear()
            self._extint_vector = None
            self._extint_unacked = False
        elif kind in (FIXED, LOWEST_PRIORITY) and vector not in self.apic_pending:
            self.apic_pending.append(vector)  # one IRR bit per vector: a repeat while pending merges
        self.interrupts += 1
        self._wake_irq()

    def _reset_program(self) -> None:
        """INIT: the processor resets, so its program is abandoned wherever it was (mid-op, halted or
        waiting) and starts again from its setup ops when the VP next runs: at once for VP 0, after a
        SIPI for an AP. Pending interrupts are dropped, as INIT clears the local APIC."""
        old, self._process = self._process, None
        if old is not None and old.is_alive and old is not self.env.active_process:
            old.interrupt("INIT")
        self.inits += 1
        self.halted = self.waiting = False
        self.apic_pending.clear()
        self._extint_vector = None
        self._extint_unacked = False  # an ExtInt cleared before it was taken is never acknowledged
        if self.runnable and self.crash_code is None:
            self._process = self.env.process(self._execute())

    def _wait_interrupt(self, op: WaitInterrupt) -> Generator[simpy.Event, Any, None]:
        def ready() -> bool:
            return any(op.vector is None or v == op.vector for v in self.apic_pending)

        if (yield from self._wait(ready, op.timeout_ns)):
            taken = next(v for v in self.apic_pending if op.vector is None or v == op.vector)
            self.apic_pending.remove(taken)
            self.apic_taken = [*self.apic_taken[-15:], taken]

    def next_interrupt(self) -> simpy.Event:
        """An event that fires at this VP's next SINT interrupt (for host code running on a root
        VP, whose SIM page it reads through :attr:`synic`)."""
        ev = self.env.event()
        self._irq_waiters.append(ev)
        return ev

    def _gate(self) -> Generator[simpy.Event, Any, bool]:
        """Wait until the VP exists, may run and is not paused (each may change while waiting, so
        all are re-checked after every wait); False once the VP is gone."""
        while True:
            if self.actor_stopped.is_set():
                return False
            if self.paused_until_ns > self.env.now:
                self._unpause = self.env.event()
                yield self.env.any_of(
                    [self._unpause, self.env.timeout(self.paused_until_ns - int(self.env.now))]
                )
            elif not self.runnable:
                self._resume = self.env.event()
                yield self._resume
            else:
                return True

    def _wait(self, ready: Any, timeout_ns: int | None) -> Generator[simpy.Event, Any, bool]:
        """Idle until ``ready()`` holds while the VP may run (woken by interrupts); False if the
        timeout passed or the VP went away first."""
        deadline = None if timeout_ns is None else int(self.env.now) + timeout_ns
        while True:
            if not (yield from self._gate()) or self.crash_code is not None:
                return False
            if ready():
                return True
            now = int(self.env.now)
            if deadline is not None and now >= deadline:
                self.wait_timeouts += 1
                return False
            self._irq = self.env.event()
            waits = [self._irq] if deadline is None else [self._irq, self.env.timeout(deadline - now)]
            self.waiting = True
            yield self.env.any_of(waits)
            self.waiting = False

    def _receive(self, op: ReceiveMessage) -> Generator[simpy.Event, Any, None]:
        synic, sint = self.synic, op.sint
        if not (yield from self._wait(lambda: synic.slot_type(sint) != 0, op.timeout_ns)):
            return
        self.last_message, pending = synic.take_slot(sint)
        self.messages_received += 1
        if pending:
            self.eoms += 1
            yield ask(self.hypervisor, MsrWrite(self.partition_id, self.index, R.Eom, 0))

    def _access(
        self, op: IoPort | Msr | Cpuid | ReadMemory | WriteMemory
    ) -> Generator[simpy.Event, Any, None]:
        """One IO port, MSR, CPUID or memory access; if intercepted, wait for the parent to resume
        the VP and take the result from the registers it emulated into."""
        access, result_regs, mask = _describe(self.partition_id, self.index, op)
        outcome: AccessOutcome = yield ask(self.hypervisor, access)
        self.accesses += 1
        if outcome.outcome == "fault":
            self.faults += 1
            return
        value = outcome.value
        if outcome.outcome == "intercepted":
            self.intercepted += 1
            if not (yield from self._gate()):  # intercept suspend holds the VP until resumed
                return
            if not result_regs:
                return
            regs = yield ask(self.hypervisor, RegisterRead(self.partition_id, self.index, result_regs))
            value = regs[0] if type(op) is not Msr else (regs[1] << 32) | (regs[0] & 0xFFFF_FFFF)
        elif not result_regs:
            return
        self.values = [*self.values[-15:], value & mask]

    def _wait_event(self, op: WaitEvent) -> Generator[simpy.Event, Any, None]:
        synic = self.synic
        if (yield from self._wait(lambda: synic.take_flag(op.sint, op.flag), op.timeout_ns)):
            self.events_received += 1

    def _hypercall(self, op: Hypercall) -> Generator[simpy.Event, Any, None]:
        backoff = op.retry_ns
        while True:
            req = HypercallRequest(self.partition_id, self.index, op.control, op.input)
            result = yield ask(self.hypervisor, req)
            if result.reissue:  # suspended (a flush held by a TLB lock): run again, then re-issue
                if not (yield from self._gate()):
                    return
                continue
            self.last_result = result
            self.hypercalls += 1
            if result.status:
                self.failed_calls += 1
            if result.status not in op.retry_on or self.actor_stopped.is_set():
                return
            yield self.env.timeout(backoff)
            backoff = min(backoff * 2, op.retry_ns * 64)
            if not (yield from self._gate()):
                return

    def _execute(self) -> Generator[simpy.Event, Any, None]:
        try:
            yield from self._run_program()
        except simpy.Interrupt:
            return  # INIT: a new run of the program has taken over

    def _run_program(self) -> Generator[simpy.Event, Any, None]:
        ops = self.program.setup
        while not self.actor_stopped.is_set():
            for op in ops:
                if not (yield from self._gate()):
                    return
                if self.crash_code is not None:
                    yield from self._bugcheck(self.crash_code)
                    return
                if type(op) is Compute:
                    self.compute_ns += op.ns
                    duration = op.ns if self.speed == 1.0 else round(op.ns * self.speed)
                    self.busy_until_ns = int(self.env.now) + duration
                    yield self.env.timeout(duration)
                elif type(op) is Hypercall:
                    yield from self._hypercall(op)
                elif type(op) is ReceiveMessage:
                    yield from self._receive(op)
                elif type(op) is WaitEvent:
                    yield from self._wait_event(op)
                elif type(op) is WaitInterrupt:
                    yield from self._wait_interrupt(op)
                elif type(op) is WriteMsr:
                    yield ask(self.hypervisor, MsrWrite(self.partition_id, self.index, op.name, op.value))
                elif type(op) in ACCESS_OPS:
                    yield from self._access(op)  # type: ignore[arg-type]
                elif type(op) is MemoryWrite:
                    self.memory_writes += 1
                    yield ask(
                        self.hypervisor,
                        DoorbellWrite(self.partition_id, self.index, op.gpa, op.value, op.size),
                    )
                elif type(op) is Halt:
                    self.halted = True
                    self._resume = self.env.event()
                    yield self._resume  # only teardown wakes a halted VP
                    return
            ops = self.program.loop
            if self.program.max_loops is not None and self.loops >= self.program.max_loops:
                ops = (Halt(),)  # the workload limit is reached: idle until torn down
            elif not ops:
                return
            else:
                self.loops += 1

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


FIXED, LOWEST_PRIORITY, NMI, INIT, EXTINT = 0, 1, 4, 5, 7  # HV_INTERRUPT_TYPE
VECTOR_NONE = 0xFFFF_FFFF
ACCESS_OPS = frozenset({IoPort, Msr, Cpuid, ReadMemory, WriteMemory})
R_RAX, R_RDX = int(R.Rax), int(R.Rdx)


def _describe(partition_id: int, index: int, op: AccessOp) -> tuple[GuestAccess, tuple[int, ...], int]:
    """The access an op makes, the registers an intercepted one reads its result from, the mask."""
    if type(op) is IoPort:
        access = GuestAccess(partition_id, index, "io", op.port, op.write, op.value, op.size)
        return access, (() if op.write else (R_RAX,)), (1 << (8 * op.size)) - 1
    if type(op) is Msr:
        access = GuestAccess(partition_id, index, "msr", op.index, op.write, op.value, 8)
        return access, (() if op.write else (R_RAX, R_RDX)), (1 << 64) - 1
    if type(op) is Cpuid:
        return GuestAccess(partition_id, index, "cpuid", op.leaf, subleaf=op.subleaf), (R_RAX,), (1 << 32) - 1
    if type(op) is ReadMemory:
        access = GuestAccess(partition_id, index, "memory", op.address, False, 0, op.size, op.virtual)
        return access, (R_RAX,), (1 << (8 * op.size)) - 1
    assert type(op) is WriteMemory
    return GuestAccess(partition_id, index, "memory", op.address, True, op.value, op.size, op.virtual), (), 0


__all__ = [
    "ApicInterrupt",
    "Crash",
    "DoorbellWrite",
    "InterruptAck",
    "MsrWrite",
    "Pause",
    "RegisterRead",
    "RunState",
    "SetSpeed",
    "SintInterrupt",
    "VpActor",
]
