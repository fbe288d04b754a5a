"""Per-VP SynIC state: the message and event-flag overlay pages and the per-SINT message queues
(HYPERCALLS.md 5.9), plus the in-transit message record.

The SIM and SIEF pages are *overlay* pages: the hypervisor supplies them at the GPA the guest names
in SIMP / SIEFP. They are the memory the hypervisor and a VP share directly, as on hardware: the
hypervisor writes a message into a slot or sets a flag, and the VP (guest or host code on it) reads
and clears it. Everything else (the message in transit, the interrupt, EOM) crosses between actors
as messages.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from hvsim.actors.hvdef import (
    HV_EVENT_FLAGS_BYTES,
    HV_MESSAGE_FLAG_PENDING,
    HV_MESSAGE_SIZE,
    HV_PAGE_SIZE,
    HV_SYNIC_SINT_COUNT,
    SINT_MASKED,
    SYNIC_ENABLE,
    RegisterName,
)

if TYPE_CHECKING:
    from hvsim.actors.model import Port

R = RegisterName
_SINT0 = int(R.Sint0)
_SCONTROL = int(R.Scontrol)
_SIMP = int(R.Sipp)
_SIEFP = int(R.Sifp)
#: Registers whose write may make a queued message deliverable (the hypervisor rescans).
SYNIC_RESCAN_REGISTERS = frozenset({_SCONTROL, _SIMP, *range(_SINT0, _SINT0 + HV_SYNIC_SINT_COUNT)})


class Kind(Enum):
    """How a message entered the SynIC."""

    POST = "post"  # HvCallPostMessage through a message port (holds one port buffer)
    DIRECT = "direct"  # HvCallPostMessageDirect (straight into the slot)
    DOORBELL = "doorbell"  # the hypervisor's notification of a doorbell write
    EVENT = "event"  # HvCallSignalEvent through an event port (sets one SIEF flag)
    DIRECT_EVENT = "direct_event"  # HvCallSignalEventDirect (sets the flag at once)
    INTERCEPT = "intercept"  # the hypervisor's intercept message to a child's parent (SINT 0)


class Fate(Enum):
    IN_FLIGHT = "in_flight"
    QUEUED = "queued"
    DELIVERED = "delivered"
    FREED = "freed"
    DROPPED = "dropped"


@dataclass(slots=True, eq=False)
class Message:
    """One message (or event signal) from its post to its delivery, freeing or loss."""

    id: int
    kind: Kind
    src_partition: int
    src_vp: int
    dst_partition: int
    dst_vp: int
    sint: int
    #: The 256-byte HV_MESSAGE (empty for events).
    data: bytes
    #: The port it was sent through (None for direct posts).
    port: Port | None
    #: For events: the SIEF flag number (BaseFlagNumber + FlagNumber).
    flag: int = 0
    #: Whether it holds one of its port's message buffers until delivered (an original post does;
    #: a fault's duplicate does not).
    holds_buffer: bool = False
    fate: Fate = Fate.IN_FLIGHT


class Synic:
    """The SIM page (16 slots of 256 bytes), the SIEF page (16 areas of 2048 flags) and one
    message queue per SINT, all empty at VP creation."""

    __slots__ = ("queues", "sief", "sim")

    def __init__(self) -> None:
        self.sim = bytearray(HV_PAGE_SIZE)
        self.sief = bytearray(HV_PAGE_SIZE)
        self.queues: tuple[deque[Message], ...] = tuple(deque() for _ in range(HV_SYNIC_SINT_COUNT))

    # --- the message page ------------------------------------------------------------------------
    def slot_type(self, sint: int) -> int:
        """The MessageType in slot *sint*; 0 (HvMessageTypeNone) means the slot is empty."""
        return int.from_bytes(self.sim[sint * HV_MESSAGE_SIZE : sint * HV_MESSAGE_SIZE + 4], "little")

    def write_slot(self, sint: int, message: bytes) -> None:
        at = sint * HV_MESSAGE_SIZE
        self.sim[at : at + HV_MESSAGE_SIZE] = message

    def set_pending(self, sint: int) -> None:
        """Set MessagePending in the message occupying slot *sint*."""
        self.sim[sint * HV_MESSAGE_SIZE + 5] |= HV_MESSAGE_FLAG_PENDING

    def read_slot(self, sint: int) -> bytes:
        at = sint * HV_MESSAGE_SIZE
        return bytes(self.sim[at : at + HV_MESSAGE_SIZE])

    def take_slot(self, sint: int) -> tuple[bytes, bool]:
        """What a guest's SINT handler does: copy the message out, set the slot's type to None;
        returns the message and whether MessagePending was set (the guest must then write EOM)."""
        message = self.read_slot(sint)
        at = sint * HV_MESSAGE_SIZE
        self.sim[at : at + 4] = bytes(4)
        return message, bool(message[5] & HV_MESSAGE_FLAG_PENDING)

    # --- the event-flag page ----------------------------------------------------------------------
    def set_flag(self, sint: int, flag: int) -> bool:
        """Set event flag *flag* of SINT *sint*; True if it was clear (a 0 -> 1 transition)."""
        at = sint * HV_EVENT_FLAGS_BYTES + flag // 8
        bit = 1 << (flag % 8)
        was_clear = not self.sief[at] & bit
        self.sief[at] |= bit
        return was_clear

    def take_flag(self, sint: int, flag: int) -> bool:
        """The guest's atomic test-and-clear of one flag; True if it was set."""
        at = sint * HV_EVENT_FLAGS_BYTES + flag // 8
        bit = 1 << (flag % 8)
        was_set = bool(self.sief[at] & bit)
        self.sief[at] &= ~bit & 0xFF
        return was_set

    def pending_flags(self, sint: int) -> list[int]:
        """Flags currently set in SINT *sint*'s area, lowest first."""
        base = sint * HV_EVENT_FLAGS_BYTES
        area = self.sief[base : base + HV_EVENT_FLAGS_BYTES]
        return [i * 8 + b for i, byte in enumerate(area) if byte for b in range(8) if byte >> b & 1]


def overlay(regs: dict[int, int], synic: Synic, gpa_page: int) -> bytearray | None:
    """The VP's SIM or SIEF page if *gpa_page* is where its SIMP / SIEFP register places it."""
    for reg, page in ((_SIMP, synic.sim), (_SIEFP, synic.sief)):
        if regs[reg] & SYNIC_ENABLE and regs[reg] >> 12 == gpa_page:
            return page
    return None


# --- register views (the values live in the VP's register file) ------------------------------------
def synic_enabled(regs: dict[int, int]) -> bool:
    return bool(regs[_SCONTROL] & SYNIC_ENABLE)


def sim_enabled(regs: dict[int, int]) -> bool:
    """The SynIC and its message page are both enabled."""
    return bool(regs[_SCONTROL] & regs[_SIMP] & SYNIC_ENABLE)


def sief_enabled(regs: dict[int, int]) -> bool:
    return bool(regs[_SCONTROL] & regs[_SIEFP] & SYNIC_ENABLE)


def sint_masked(regs: dict[int, int], sint: int) -> bool:
    return bool(regs[_SINT0 + sint] & SINT_MASKED)
