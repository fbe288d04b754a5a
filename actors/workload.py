"""Guest programs: what a child VP executes once it runs (data; the VP actor interprets it).

A program is a *setup* sequence run once, then a *loop* sequence repeated until the VP is torn down.
Ops are deliberately few here; the seeded generator that writes programs lives in
``hvsim.scenarios.workload``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Compute:
    """Execute guest instructions for *ns* of simulated time."""

    ns: int


@dataclass(frozen=True, slots=True)
class Hypercall:
    """Execute the hypercall instruction with this control word and input block."""

    control: int
    input: bytes = b""
    #: Name shown in guest-side counters.
    label: str = ""

    #: Statuses that make the guest wait *retry_ns* and issue the call again (e.g. a VMBus driver
    #: waiting for ring space on INSUFFICIENT_BUFFERS); the wait doubles up to 64x.
    retry_on: tuple[int, ...] = ()
    retry_ns: int = 0


@dataclass(frozen=True, slots=True)
class Halt:
    """HLT for good: the VP idles until torn down (waits for interrupts are ReceiveMessage and
    WaitEvent)."""


@dataclass(frozen=True, slots=True)
class WriteMsr:
    """WRMSR to a SynIC register (SCONTROL, SIMP, SIEFP, SINTx, EOM), by its register name."""

    name: int
    value: int


@dataclass(frozen=True, slots=True)
class ReceiveMessage:
    """Wait (idle, woken by the SINT interrupt) until SIM slot *sint* holds a message, then take it
    as a SINT handler does: clear the slot and write EOM if MessagePending was set. With a timeout
    the wait gives up after *timeout_ns* (and the VP checks the slot then: a polling guest)."""

    sint: int
    timeout_ns: int | None = None


@dataclass(frozen=True, slots=True)
class WaitEvent:
    """Wait until SIEF flag *flag* of SINT *sint* is set, then clear it (atomic test-and-clear)."""

    sint: int
    flag: int
    timeout_ns: int | None = None


@dataclass(frozen=True, slots=True)
class MemoryWrite:
    """Write *value* (*size* bytes) at guest physical address *gpa*: rings a doorbell there, if the
    host connected one (guest memory contents are not otherwise modelled yet)."""

    gpa: int
    value: int
    size: int = 4


@dataclass(frozen=True, slots=True)
class IoPort:
    """IN (write=False) or OUT of *size* bytes (1, 2 or 4) at IO port *port*."""

    port: int
    size: int = 1
    write: bool = False
    value: int = 0


@dataclass(frozen=True, slots=True)
class Msr:
    """RDMSR (write=False) or WRMSR of MSR *index*."""

    index: int
    write: bool = False
    value: int = 0


@dataclass(frozen=True, slots=True)
class Cpuid:
    """CPUID of *leaf* / *subleaf*: the result lands in RAX, RBX, RCX, RDX."""

    leaf: int
    subleaf: int = 0


@dataclass(frozen=True, slots=True)
class ReadMemory:
    """Load *size* bytes (1, 2, 4, 8; within one page) at *address*: a GPA, or a GVA translated
    through the guest's page tables when *virtual*."""

    address: int
    size: int = 8
    virtual: bool = False


@dataclass(frozen=True, slots=True)
class WriteMemory:
    """Store *value* (*size* bytes, within one page) at *address* (a GPA, or a GVA when *virtual*):
    RAM, a doorbell, or an intercept where nothing is mapped."""

    address: int
    value: int
    size: int = 8
    virtual: bool = False


@dataclass(frozen=True, slots=True)
class WaitInterrupt:
    """Idle until the virtual APIC has an interrupt pending (of *vector*, or any), then take it (EOI)."""

    vector: int | None = None
    timeout_ns: int | None = None


Op = (
    Compute
    | Hypercall
    | Halt
    | WriteMsr
    | ReceiveMessage
    | WaitEvent
    | MemoryWrite
    | IoPort
    | Msr
    | Cpuid
    | ReadMemory
    | WriteMemory
    | WaitInterrupt
)


@dataclass(frozen=True, slots=True)
class Program:
    setup: tuple[Op, ...] = ()
    loop: tuple[Op, ...] = ()
    name: str = "program"
    #: Free-form facts about how the program was drawn (seed, parameters), for the event log.
    params: dict[str, int | str] = field(default_factory=dict)
    #: Run the loop at most this many times, then idle as after Halt (None: until torn down).
    max_loops: int | None = None


IDLE = Program(loop=(Halt(),), name="idle")


class GuestProvider(Protocol):
    """Chooses the program for a VP when it is created (the host's "guest image")."""

    def __call__(self, partition_id: int, vp_index: int) -> Program: ...
