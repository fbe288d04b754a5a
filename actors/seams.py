"""Seams where a misbehaving world plugs into the hypervisor, without the hypervisor knowing who.

``hvsim.faults`` implements :class:`Interposer`; ``hvsim.scenarios`` decides whether one is installed.
With none installed the hypervisor takes no extra branch beyond one ``is None`` test, so a run with
no faults is identical to a run with an empty fault plan.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from hvsim.actors.hvdef import HvStatus


class CallFault(NamedTuple):
    """How one hypercall invocation is disturbed."""

    #: Answer with this status instead of executing the call (no side effect; a rep call reports
    #: reps completed = rep start).
    status: HvStatus | None = None
    #: Process at most this many reps in this invocation (a forced early return with SUCCESS:
    #: the TLFS continuation).
    rep_cap: int | None = None
    #: Simulated time added to the call's service time (a latency spike).
    extra_ns: int = 0
    #: The fault that decided it, for the event log.
    fault: str = ""


class MessageFault(NamedTuple):
    """How one message (or event signal) in transit is disturbed."""

    #: Simulated time added to its transit (a delay; different delays reorder messages).
    extra_ns: int = 0
    #: The message is lost in transit (it never reaches the target queue).
    drop: bool = False
    #: A second copy arrives this many ns after the first (None: no copy).
    duplicate_after_ns: int | None = None
    #: The fault that decided it, for the event log.
    fault: str = ""


class Interposer(Protocol):
    """Consulted by the hypervisor at its decision points."""

    def on_hypercall(
        self, caller: int, vp: int, code: int, rep_start: int, rep_count: int
    ) -> CallFault | None:
        """Before a call runs: disturb it, or None to leave it alone."""
        ...

    def allow_charge(self, partition_id: int, key: str, pages: int) -> bool:
        """Before *pages* pool pages are charged to structure *key*: False refuses the allocation
        (the call answers INSUFFICIENT_MEMORY, with no side effect)."""
        ...

    def on_message(
        self, src_partition: int, dst_partition: int, dst_vp: int, sint: int, kind: str
    ) -> MessageFault | None:
        """When a message or event signal leaves its sender: disturb its transit, or None."""
        ...

    def slot_blocked(self, partition_id: int, vp: int, sint: int) -> bool:
        """Whether SIM slot *sint* of that VP is held busy (nothing can be delivered into it)."""
        ...

    def port_buffers(self, partition_id: int, port_id: int, normal: int) -> int:
        """How many message buffers that port has (*normal* unless a fault exhausts them)."""
        ...
