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


@dataclass(frozen=True, slots=True)
class Halt:
    """HLT: stop executing; with no interrupt source modelled yet, the VP idles until torn down."""


Op = Compute | Hypercall | Halt


@dataclass(frozen=True, slots=True)
class Program:
    setup: tuple[Op, ...] = ()
    loop: tuple[Op, ...] = ()
    name: str = "program"
    #: Free-form facts about how the program was drawn (seed, parameters), for the event log.
    params: dict[str, int | str] = field(default_factory=dict)


IDLE = Program(loop=(Halt(),), name="idle")


class GuestProvider(Protocol):
    """Chooses the program for a VP when it is created (the host's "guest image")."""

    def __call__(self, partition_id: int, vp_index: int) -> Program: ...
