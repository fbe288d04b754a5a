"""SynIC messaging from the caller's side: PostMessage, SignalEvent, PostMessageDirect and
SignalEventDirect (HYPERCALLS.md 4.41-4.44, 5.9, conformance 7.7 113-125), delivery into the
target's SIM / SIEF pages, EOM and MessagePending, port buffers, and doorbells.

The world: the root P and two ACTIVE children, A (owns the ports: the receiver) and B (owns the
connections: the sender). A posted message spends ``config.message_latency_ns`` in transit, so the
tests run the clock (:meth:`World.settle`) before looking at A's SIM slot. Every flow ends with the
message-accounting checkers.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import pytest

from hvsim.actors.config import HvConfig
from hvsim.actors.hvdef import (
    HV_ANY_VP,
    HV_EVENT_FLAGS_COUNT,
    HV_MESSAGE_FLAG_PENDING,
    HV_PARTITION_ID_SELF,
    MESSAGE_HEADER,
    POST_MESSAGE_DIRECT_INPUT,
    POST_MESSAGE_INPUT,
    SIGNAL_EVENT_DIRECT_INPUT,
    SIGNAL_EVENT_INPUT,
    SINT_MASKED,
    HvStatus,
    HypercallCode,
    MessageHeader,
    MessageType,
    PartitionPrivilege,
    PortType,
    PostMessageDirectInput,
    PostMessageInput,
    RegisterName,
    SignalEventDirectInput,
    SignalEventInput,
    control,
)
from hvsim.actors.synic import Synic
from hvsim.actors.workload import Compute, Halt, MemoryWrite, Program
from hvsim.scenarios import HostApi, Simulation
from hvsim.scenarios.checkers import message_accounting, message_buffers
from hvsim.scenarios.host import GUEST_PRIVILEGES, PartitionSpec, ReferenceHost

S = HvStatus
C = HypercallCode
R = RegisterName
PP = PartitionPrivilege
T = TypeVar("T")

#: A's receiving SINTs and their vectors.
MSG_SINT, EVENT_SINT = 2, 3
SINTS = {MSG_SINT: 0x30, EVENT_SINT: 0x31}
#: Ids: port 1 (message) / 2 (event) in A; connection 1 / 2 in B leading to them.
MSG_PORT, EVENT_PORT, MSG_CONN, EVENT_CONN = 1, 2, 1, 2
#: Long enough for any message in transit to arrive and be delivered.
SETTLE_NS = 100_000
SIMP_GPA, SIEFP_GPA = 0xFEB0_0000, 0xFEB0_1000
NO_MESSAGING = GUEST_PRIVILEGES & ~int(PP.PostMessages | PP.SignalEvents)
#: A guest that does nothing at all (cheap to run the clock over).
IDLE_GUEST = Program(loop=(Halt(),), name="idle")


class World:
    """The root with two ACTIVE children A and B (2 VPs each), seen through the hypercall ABI."""

    def __init__(
        self,
        config: HvConfig | None = None,
        *,
        b_privileges: int = GUEST_PRIVILEGES,
        a_program: Callable[[int], Program] | None = None,
        b_program: Callable[[int], Program] | None = None,
    ) -> None:
        self.sim = Simulation(0, config=config)
        #: Long enough for a message posted now to arrive and be delivered.
        self.settle_ns = max(SETTLE_NS, 2 * self.sim.config.message_latency_ns)
        self.host = ReferenceHost(self.sim)
        self.a = self.run(self.host.boot(PartitionSpec(vps=2, initial_pages=400, program=a_program)))
        self.b = self.run(
            self.host.boot(
                PartitionSpec(vps=2, initial_pages=400, privileges=b_privileges, program=b_program)
            )
        )
        self.root = self.sim.root_id
        self.api = HostApi(self.sim)
        self.as_a = HostApi(self.sim, caller=self.a)
        self.as_b = HostApi(self.sim, caller=self.b)

    # --- running -----------------------------------------------------------------------------
    def run(self, gen: Generator[Any, Any, T]) -> T:
        return self.sim.run_process(gen)

    def settle(self, ns: int | None = None) -> None:
        self.sim.run(self.sim.now_ns + (self.settle_ns if ns is None else ns))

    def call(self, code: int, data: bytes, caller: int) -> HvStatus:
        return self.sim.hypercall(control(code), data, caller=caller).status

    # --- set-up ------------------------------------------------------------------------------
    def enable(self, pid: int, vp: int = 0, sints: dict[int, int] | None = None) -> None:
        out = self.run(self.api.enable_synic(pid, vp, SINTS if sints is None else sints))
        assert out.status is S.SUCCESS, out

    def set_regs(self, pid: int, vp: int, values: dict[int, int]) -> None:
        out = self.run(self.api.set_registers(pid, vp, values))
        assert out.status is S.SUCCESS, out

    def port(
        self, port_id: int = MSG_PORT, ptype: int = PortType.Message, *, sint: int = MSG_SINT, vp: int = 0,
        owner: int | None = None, peer: int | None = None, base: int = 0, count: int = 0,
    ) -> None:  # fmt: skip
        owner = self.a if owner is None else owner
        peer = self.b if peer is None else peer
        status = self.run(
            self.api.create_port(
                owner, port_id, ptype, sint=sint, vp=vp, connection_partition=peer,
                base_flag=base, flag_count=count,
            )
        )  # fmt: skip
        assert status is S.SUCCESS, status

    def connect(
        self, conn_id: int = MSG_CONN, port_id: int = MSG_PORT, ptype: int = PortType.Message, *,
        owner: int | None = None, port_owner: int | None = None, **doorbell: int,
    ) -> None:  # fmt: skip
        owner = self.b if owner is None else owner
        port_owner = self.a if port_owner is None else port_owner
        status = self.run(self.api.connect_port(owner, conn_id, port_owner, port_id, ptype, **doorbell))
        assert status is S.SUCCESS, status

    def message_channel(self, *, vp: int = 0, enable: bool = True) -> None:
        """Message port 1 in A (SINT 2 of *vp*), connection 1 in B; A's SynIC on *vp* enabled."""
        self.port(vp=vp)
        self.connect()
        if enable and vp != HV_ANY_VP:
            self.enable(self.a, vp)

    def event_channel(self, *, base: int = 0, count: int = 8, vp: int = 0, enable: bool = True) -> None:
        """Event port 2 in A (SINT 3 of *vp*, flags base..base+count), connection 2 in B."""
        self.port(EVENT_PORT, PortType.Event, sint=EVENT_SINT, vp=vp, base=base, count=count)
        self.connect(EVENT_CONN, EVENT_PORT, PortType.Event)
        if enable:
            self.enable(self.a, vp)

    # --- calls -------------------------------------------------------------------------------
    def post(
        self, payload: bytes = b"", mtype: int = 7, *, conn: int = MSG_CONN, caller: int | None = None
    ) -> HvStatus:
        api = self.as_b if caller is None else HostApi(self.sim, caller=caller)
        return self.run(api.post_message(conn, mtype, payload))

    def signal(self, flag: int = 0, *, conn: int = EVENT_CONN, caller: int | None = None) -> HvStatus:
        api = self.as_b if caller is None else HostApi(self.sim, caller=caller)
        return self.run(api.signal_event(conn, flag))

    def post_direct(
        self, pid: int, vp: int = 0, sint: int = MSG_SINT, mtype: int = 9, payload: bytes = b"direct",
        *, caller: int | None = None,
    ) -> HvStatus:  # fmt: skip
        api = self.api if caller is None else HostApi(self.sim, caller=caller)
        return self.run(api.post_message_direct(pid, vp, sint, mtype, payload))

    def signal_direct(
        self, pid: int, vp: int = 0, sint: int = EVENT_SINT, flag: int = 0, *, caller: int | None = None
    ) -> tuple[HvStatus, bool]:
        api = self.api if caller is None else HostApi(self.sim, caller=caller)
        return self.run(api.signal_event_direct(pid, vp, sint, flag))

    # --- what the target sees ----------------------------------------------------------------
    def synic(self, pid: int, vp: int = 0) -> Synic:
        return self.sim.hv.partitions[pid].vps[vp].synic

    def slot(self, pid: int, vp: int = 0, sint: int = MSG_SINT) -> tuple[MessageHeader, bytes]:
        raw = self.synic(pid, vp).read_slot(sint)
        return MESSAGE_HEADER.unpack(raw), raw[16:]

    def take(self, pid: int, vp: int = 0, sint: int = MSG_SINT) -> tuple[bytes, bool]:
        """The guest's SINT handler: copy the message out, clear the slot, EOM if pending."""
        message, pending = self.synic(pid, vp).take_slot(sint)
        if pending:
            assert self.run(HostApi(self.sim, caller=pid, vp=vp).write_msr(R.Eom, 0)) is S.SUCCESS
        return message, pending

    def interrupts(self, pid: int, vp: int = 0) -> int:
        actor = self.sim.vp_actor(pid, vp)
        assert actor is not None
        return actor.interrupts

    def buffers(self, pid: int | None = None, port_id: int = MSG_PORT) -> int:
        return self.sim.hv.partitions[self.a if pid is None else pid].ports[port_id].buffers_in_use

    def buffers_behind_b(self) -> int:
        """Buffers held by the ports B's connections lead to (deleted ones included)."""
        ports = {id(c.target): c.target for c in self.sim.hv.partitions[self.b].connections.values()}
        return sum(p.buffers_in_use for p in ports.values() if p is not None)

    def freed(self, reason: str) -> int:
        return sum(
            1 for r in self.sim.log.records() if r["event"] == "message.freed" and r["reason"] == reason
        )

    def clean(self) -> None:
        """The message-accounting checkers find nothing wrong."""
        assert message_accounting(self.sim.log.records(), self.sim.hv) == []
        assert message_buffers(self.sim.hv) == []


@pytest.fixture
def w() -> Iterator[World]:
    world = World()
    yield world
    world.sim.close()


@pytest.fixture
def make() -> Iterator[Callable[..., World]]:
    worlds: list[World] = []

    def build(*args: Any, **kwargs: Any) -> World:
        worlds.append(World(*args, **kwargs))
        return worlds[-1]

    yield build
    for world in worlds:
        world.sim.close()


def payload_of(message: bytes) -> bytes:
    header = MESSAGE_HEADER.unpack(message)
    return message[16 : 16 + header.payload_size]


def post_input(conn: int, mtype: int, size: int, *, reserved: int = 0) -> bytes:
    return POST_MESSAGE_INPUT.pack(PostMessageInput(conn, reserved, mtype, size, bytes(240)))


def direct_input(
    pid: int, *, vp: int = 0, vtl: int = 0, pad0: bytes = bytes(3), sint: int = MSG_SINT, pad1: int = 0,
    mtype: int = 9, size: int = 0,
) -> bytes:  # fmt: skip
    message = MESSAGE_HEADER.pack(MessageHeader(mtype, size, 0, 0, 0)) + bytes(240)
    return POST_MESSAGE_DIRECT_INPUT.pack(PostMessageDirectInput(pid, vp, vtl, pad0, sint, message, pad1))


# --- synic states that refuse a call -------------------------------------------------------------
def make_state(w: World, pid: int, vp: int, state: str, sint: int) -> None:
    """Put *pid*'s VP *vp* into one of the SynIC states a messaging call refuses."""
    if state == "synic-never-enabled":
        return
    w.enable(pid, vp, {sint: 0x30 | (SINT_MASKED if state == "sint-masked" else 0)})
    if state == "scontrol-disabled":
        w.set_regs(pid, vp, {R.Scontrol: 0})
    elif state == "simp-disabled":
        w.set_regs(pid, vp, {R.Sipp: SIMP_GPA})
    elif state == "siefp-disabled":
        w.set_regs(pid, vp, {R.Sifp: SIEFP_GPA})


# ==================================================================================================
# Conformance cases 7.7 113-125
# ==================================================================================================
def test_7_7_113_post_message_type_and_payload_size(w: World) -> None:
    w.message_channel()
    for hypervisor_type in (0x8000_0000, 0x8000_0001, MessageType.SynicSintIntercept, 0xFFFF_FFFF):
        assert w.call(C.PostMessage, post_input(MSG_CONN, hypervisor_type, 0), w.b) is S.INVALID_PARAMETER
    assert w.call(C.PostMessage, post_input(MSG_CONN, 0, 0), w.b) is S.INVALID_PARAMETER
    assert w.call(C.PostMessage, post_input(MSG_CONN, 1, 241), w.b) is S.INVALID_PARAMETER
    # The limits themselves are fine.
    assert w.call(C.PostMessage, post_input(MSG_CONN, 0x7FFF_FFFF, 240), w.b) is S.SUCCESS
    w.settle()
    assert w.slot(w.a)[0].payload_size == 240
    w.clean()


def test_7_7_114_seventeenth_post_to_a_port_with_16_undelivered_messages(
    make: Callable[..., World],
) -> None:
    # A long transit keeps all 16 undelivered while they are posted.
    w = make(HvConfig(message_latency_ns=10_000_000))
    w.message_channel()
    for i in range(16):
        assert w.post(bytes([i])) is S.SUCCESS, i
    assert w.buffers() == 16
    assert w.post(b"17th") is S.INSUFFICIENT_BUFFERS
    w.clean()
    w.settle(20_000_000)
    # One in the slot (buffer freed), 15 queued behind it (still holding theirs).
    assert w.buffers() == 15
    assert w.post(b"room again") is S.SUCCESS
    w.clean()


@pytest.mark.parametrize("state", ["synic-never-enabled", "scontrol-disabled", "simp-disabled"])
def test_7_7_115_post_message_to_a_disabled_synic(w: World, state: str) -> None:
    w.message_channel(enable=False)
    make_state(w, w.a, 0, state, MSG_SINT)
    assert w.post(b"x") is S.INVALID_SYNIC_STATE
    assert w.buffers() == 0
    w.clean()


def test_7_7_116_post_message_after_the_port_was_deleted(w: World) -> None:
    w.message_channel()
    assert w.run(w.api.delete_port(w.a, MSG_PORT)) is S.SUCCESS
    assert w.post(b"x") is S.INVALID_PORT_ID
    # A new port with the same id is not the one the connection led to.
    w.port()
    assert w.post(b"x") is S.INVALID_PORT_ID
    w.clean()


def test_7_7_117_post_message_without_the_privilege(make: Callable[..., World]) -> None:
    w = make(b_privileges=NO_MESSAGING)
    w.message_channel()
    assert w.post(b"x") is S.ACCESS_DENIED
    w.clean()


def test_7_7_118_signal_event_flag_beyond_the_port_flag_count(w: World) -> None:
    w.event_channel(base=10, count=4)
    assert w.signal(4) is S.INVALID_PARAMETER
    assert w.signal(0xFFFF) is S.INVALID_PARAMETER
    assert w.signal(3) is S.SUCCESS
    w.settle()
    assert w.synic(w.a).pending_flags(EVENT_SINT) == [13]
    w.clean()


def test_7_7_119_signal_event_to_a_masked_sint(w: World) -> None:
    w.event_channel(enable=False)
    make_state(w, w.a, 0, "sint-masked", EVENT_SINT)
    assert w.signal(0) is S.INVALID_SYNIC_STATE
    w.settle()
    assert w.synic(w.a).pending_flags(EVENT_SINT) == []
    w.clean()


def test_7_7_120_second_signal_on_a_set_flag_raises_no_interrupt(w: World) -> None:
    w.event_channel()
    before = w.interrupts(w.a)
    assert w.signal(1) is S.SUCCESS
    w.settle()
    assert w.interrupts(w.a) == before + 1
    assert w.signal(1) is S.SUCCESS
    w.settle()
    assert w.interrupts(w.a) == before + 1
    assert w.synic(w.a).pending_flags(EVENT_SINT) == [1]
    # Once the guest clears the flag, the next signal interrupts again.
    assert w.synic(w.a).take_flag(EVENT_SINT, 1)
    assert w.signal(1) is S.SUCCESS
    w.settle()
    assert w.interrupts(w.a) == before + 2
    w.clean()


def test_7_7_121_signal_event_direct_newly_signaled(w: World) -> None:
    w.enable(w.a)
    before = w.interrupts(w.a)
    assert w.signal_direct(w.a, flag=77) == (S.SUCCESS, True)
    assert w.signal_direct(w.a, flag=77) == (S.SUCCESS, False)
    w.settle()
    assert w.synic(w.a).pending_flags(EVENT_SINT) == [77]
    assert w.interrupts(w.a) == before + 1
    w.clean()


def test_7_7_122_post_message_direct_into_an_occupied_slot(w: World) -> None:
    w.enable(w.a)
    assert w.post_direct(w.a, payload=b"first") is S.SUCCESS
    assert w.post_direct(w.a, payload=b"second") is S.OBJECT_IN_USE
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"first"
    w.synic(w.a).take_slot(MSG_SINT)
    assert w.post_direct(w.a, payload=b"third") is S.SUCCESS
    w.clean()


def test_7_7_123_post_message_direct_sint_16(w: World) -> None:
    w.enable(w.a, sints={15: 0x3F})
    assert w.post_direct(w.a, sint=16) is S.INVALID_PARAMETER
    assert w.post_direct(w.a, sint=15) is S.SUCCESS
    w.clean()


def test_7_7_124_delivered_header(w: World) -> None:
    w.port(port_id=0x00AB_CDEF)
    w.connect(port_id=0x00AB_CDEF)
    w.enable(w.a)
    payload = bytes(range(1, 100))
    assert w.post(payload, mtype=0x1234) is S.SUCCESS
    w.settle()
    header, body = w.slot(w.a)
    assert header == MessageHeader(0x1234, len(payload), 0, 0, 0x00AB_CDEF)
    assert body[: len(payload)] == payload
    assert body[len(payload) :] == bytes(240 - len(payload))
    # Straight from the overlay page: slot x is the 256 bytes at x * 256.
    raw = bytes(w.synic(w.a).sim[MSG_SINT * 256 : MSG_SINT * 256 + 256])
    assert raw[:4] == (0x1234).to_bytes(4, "little") and raw[4] == len(payload)
    assert raw[8:16] == (0x00AB_CDEF).to_bytes(8, "little") and raw[16 : 16 + len(payload)] == payload
    w.clean()


def test_7_7_125_post_through_a_surviving_connection_after_the_owner_is_finalized(w: World) -> None:
    w.message_channel()
    w.event_channel()
    assert w.post(b"1") is S.SUCCESS
    w.settle()
    for i in range(3):
        assert w.post(bytes([i])) is S.SUCCESS  # queued behind the full slot
    w.settle()
    assert w.run(w.api.finalize_partition(w.a)) is S.SUCCESS
    assert MSG_CONN in w.sim.hv.partitions[w.b].connections  # B's connection survives
    assert w.post(b"x") is S.INVALID_PORT_ID
    assert w.signal(0) is S.INVALID_PORT_ID
    # Finalize deletes the VPs first, then the ports: the queued messages are freed either way.
    assert w.freed("vp_deleted") + w.freed("port_deleted") == 3
    assert w.buffers_behind_b() == 0
    w.clean()


# ==================================================================================================
# Statuses, call by call
# ==================================================================================================
# --- PostMessage ---------------------------------------------------------------------------------
def test_post_message_invalid_connection_id(w: World) -> None:
    w.message_channel()
    assert w.post(b"x", conn=99) is S.INVALID_CONNECTION_ID
    assert w.post(b"x", caller=w.a) is S.INVALID_CONNECTION_ID  # A owns the port, not a connection
    assert w.run(w.api.disconnect_port(w.b, MSG_CONN)) is S.SUCCESS
    assert w.post(b"x") is S.INVALID_CONNECTION_ID
    w.clean()


def test_post_message_through_an_event_connection_is_invalid_port_id(w: World) -> None:
    w.event_channel()
    assert w.post(b"x", conn=EVENT_CONN) is S.INVALID_PORT_ID
    w.clean()


def test_post_message_reserved_field(w: World) -> None:
    w.message_channel()
    assert w.call(C.PostMessage, post_input(MSG_CONN, 1, 0, reserved=1), w.b) is S.INVALID_PARAMETER
    w.clean()


def test_post_message_target_vp_deleted(w: World) -> None:
    w.message_channel(vp=1)
    assert w.run(w.api.delete_vp(w.a, 1)) is S.SUCCESS
    assert w.post(b"x") is S.INVALID_VP_INDEX
    w.clean()


def test_post_message_any_vp_with_no_vps_left(w: World) -> None:
    w.message_channel(vp=HV_ANY_VP)
    assert w.post(b"x") is S.INVALID_SYNIC_STATE  # no VP has its SynIC enabled
    for vp in (0, 1):
        assert w.run(w.api.delete_vp(w.a, vp)) is S.SUCCESS
    assert w.post(b"x") is S.INVALID_VP_INDEX
    w.clean()


# --- SignalEvent ---------------------------------------------------------------------------------
def test_signal_event_without_the_privilege(make: Callable[..., World]) -> None:
    w = make(b_privileges=NO_MESSAGING)
    w.event_channel()
    assert w.signal(0) is S.ACCESS_DENIED
    w.clean()


def test_signal_event_invalid_connection_id(w: World) -> None:
    w.event_channel()
    assert w.signal(0, conn=99) is S.INVALID_CONNECTION_ID
    assert w.run(w.api.disconnect_port(w.b, EVENT_CONN)) is S.SUCCESS
    assert w.signal(0) is S.INVALID_CONNECTION_ID
    w.clean()


def test_signal_event_invalid_port_id(w: World) -> None:
    w.message_channel()
    w.event_channel()
    assert w.signal(0, conn=MSG_CONN) is S.INVALID_PORT_ID  # a message port
    assert w.run(w.api.delete_port(w.a, EVENT_PORT)) is S.SUCCESS
    assert w.signal(0) is S.INVALID_PORT_ID
    w.clean()


def test_signal_event_reserved_field(w: World) -> None:
    w.event_channel()
    data = SIGNAL_EVENT_INPUT.pack(SignalEventInput(EVENT_CONN, 0, 1))
    assert w.call(C.SignalEvent, data, w.b) is S.INVALID_PARAMETER
    w.clean()


def test_signal_event_target_vp_deleted(w: World) -> None:
    w.event_channel(vp=1)
    assert w.run(w.api.delete_vp(w.a, 1)) is S.SUCCESS
    assert w.signal(0) is S.INVALID_VP_INDEX
    w.clean()


@pytest.mark.parametrize(
    "state", ["synic-never-enabled", "scontrol-disabled", "siefp-disabled", "sint-masked"]
)
def test_signal_event_invalid_synic_state(w: World, state: str) -> None:
    w.event_channel(enable=False)
    make_state(w, w.a, 0, state, EVENT_SINT)
    assert w.signal(0) is S.INVALID_SYNIC_STATE
    w.clean()


def test_signal_event_needs_only_the_event_page(w: World) -> None:
    w.event_channel(enable=False)
    make_state(w, w.a, 0, "simp-disabled", EVENT_SINT)
    assert w.signal(0) is S.SUCCESS
    w.settle()
    assert w.synic(w.a).pending_flags(EVENT_SINT) == [0]
    w.clean()


# --- PostMessageDirect ---------------------------------------------------------------------------
def test_post_message_direct_access_denied(make: Callable[..., World]) -> None:
    w = make(b_privileges=NO_MESSAGING)
    w.enable(w.a)
    w.enable(w.b)
    assert w.post_direct(HV_PARTITION_ID_SELF, caller=w.b) is S.ACCESS_DENIED  # no PostMessages
    assert w.post_direct(w.b, caller=w.a) is S.ACCESS_DENIED  # B is not A's child
    assert w.post_direct(w.root, caller=w.a) is S.ACCESS_DENIED  # nor is A's parent
    assert w.synic(w.b).slot_type(MSG_SINT) == 0
    # With the privilege a partition may post to itself.
    assert w.post_direct(HV_PARTITION_ID_SELF, caller=w.a, payload=b"self") is S.SUCCESS
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"self"
    w.clean()


def test_post_message_direct_invalid_partition_id(w: World) -> None:
    assert w.post_direct(0x1234) is S.INVALID_PARTITION_ID
    w.clean()


def test_post_message_direct_invalid_partition_state(w: World) -> None:
    w.enable(w.a)
    assert w.run(w.api.finalize_partition(w.a)) is S.SUCCESS
    assert w.post_direct(w.a) is S.INVALID_PARTITION_STATE
    w.clean()


@pytest.mark.parametrize(
    "fields",
    [
        {"sint": 16},
        {"sint": 0xFFFF_FFFF},
        {"vtl": 1},
        {"pad0": b"\x00\x01\x00"},
        {"pad1": 1},
        {"mtype": 0},
        {"size": 241},
    ],
    ids=["sint-16", "sint-huge", "vtl-1", "padding0", "padding1", "type-none", "payload-241"],
)
def test_post_message_direct_invalid_parameter(w: World, fields: dict[str, Any]) -> None:
    w.enable(w.a)
    assert w.call(C.PostMessageDirect, direct_input(w.a, **fields), w.root) is S.INVALID_PARAMETER
    assert w.synic(w.a).slot_type(MSG_SINT) == 0
    w.clean()


def test_post_message_direct_invalid_vp_index(w: World) -> None:
    w.enable(w.a)
    assert w.post_direct(w.a, vp=9) is S.INVALID_VP_INDEX
    assert w.run(w.api.delete_vp(w.a, 1)) is S.SUCCESS
    assert w.post_direct(w.a, vp=1) is S.INVALID_VP_INDEX
    w.clean()


@pytest.mark.parametrize(
    "state", ["synic-never-enabled", "scontrol-disabled", "simp-disabled", "sint-masked"]
)
def test_post_message_direct_invalid_synic_state(w: World, state: str) -> None:
    make_state(w, w.a, 0, state, MSG_SINT)
    assert w.post_direct(w.a) is S.INVALID_SYNIC_STATE
    assert w.synic(w.a).slot_type(MSG_SINT) == 0
    w.clean()


# --- SignalEventDirect ---------------------------------------------------------------------------
def test_signal_event_direct_access_denied(make: Callable[..., World]) -> None:
    w = make(b_privileges=NO_MESSAGING)
    w.enable(w.a)
    w.enable(w.b)
    assert w.signal_direct(HV_PARTITION_ID_SELF, caller=w.b)[0] is S.ACCESS_DENIED
    assert w.signal_direct(w.b, caller=w.a)[0] is S.ACCESS_DENIED
    assert w.signal_direct(w.root, caller=w.a)[0] is S.ACCESS_DENIED
    assert w.synic(w.b).pending_flags(EVENT_SINT) == []
    assert w.signal_direct(HV_PARTITION_ID_SELF, caller=w.a, flag=5) == (S.SUCCESS, True)
    assert w.synic(w.a).pending_flags(EVENT_SINT) == [5]
    w.clean()


def test_signal_event_direct_invalid_partition(w: World) -> None:
    assert w.signal_direct(0x1234)[0] is S.INVALID_PARTITION_ID
    w.enable(w.a)
    assert w.run(w.api.finalize_partition(w.a)) is S.SUCCESS
    assert w.signal_direct(w.a)[0] is S.INVALID_PARTITION_STATE
    w.clean()


@pytest.mark.parametrize(
    ("sint", "flag", "vtl"),
    [(0, 0, 0), (16, 0, 0), (255, 0, 0), (EVENT_SINT, HV_EVENT_FLAGS_COUNT, 0), (EVENT_SINT, 0, 1)],
    ids=["sint-0", "sint-16", "sint-255", "flag-2048", "vtl-1"],
)
def test_signal_event_direct_invalid_parameter(w: World, sint: int, flag: int, vtl: int) -> None:
    w.enable(w.a, sints={s: 0x30 for s in range(1, 16)})
    data = SIGNAL_EVENT_DIRECT_INPUT.pack(SignalEventDirectInput(w.a, 0, vtl, sint, flag))
    assert w.call(C.SignalEventDirect, data, w.root) is S.INVALID_PARAMETER
    assert not any(w.synic(w.a).sief)
    # The largest valid flag is fine.
    assert w.signal_direct(w.a, flag=HV_EVENT_FLAGS_COUNT - 1) == (S.SUCCESS, True)
    w.clean()


def test_signal_event_direct_invalid_vp_index(w: World) -> None:
    w.enable(w.a)
    assert w.signal_direct(w.a, vp=9)[0] is S.INVALID_VP_INDEX
    w.clean()


@pytest.mark.parametrize(
    "state", ["synic-never-enabled", "scontrol-disabled", "siefp-disabled", "sint-masked"]
)
def test_signal_event_direct_invalid_synic_state(w: World, state: str) -> None:
    make_state(w, w.a, 0, state, EVENT_SINT)
    assert w.signal_direct(w.a)[0] is S.INVALID_SYNIC_STATE
    assert w.synic(w.a).pending_flags(EVENT_SINT) == []
    w.clean()


# ==================================================================================================
# Semantics
# ==================================================================================================
def test_message_in_transit_then_delivered_with_an_interrupt(make: Callable[..., World]) -> None:
    w = make(HvConfig(message_latency_ns=1_000_000))
    w.message_channel()
    before = w.interrupts(w.a)
    assert w.post(b"hi") is S.SUCCESS
    assert w.buffers() == 1  # held in transit
    assert w.synic(w.a).slot_type(MSG_SINT) == 0
    assert w.interrupts(w.a) == before
    w.settle()
    assert w.buffers() == 0  # freed on delivery
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"hi"
    assert w.interrupts(w.a) == before + 1
    w.clean()


@pytest.mark.parametrize("eom", ["wrmsr", "set-vp-registers"])
def test_message_pending_and_eom(w: World, eom: str) -> None:
    w.message_channel()
    for text in (b"one", b"two", b"three"):
        assert w.post(text) is S.SUCCESS
        w.settle()
    header, _ = w.slot(w.a)
    assert header.flags & HV_MESSAGE_FLAG_PENDING  # set when "two" found the slot full
    assert len(w.synic(w.a).queues[MSG_SINT]) == 2
    interrupts = w.interrupts(w.a)
    message, pending = w.synic(w.a).take_slot(MSG_SINT)
    assert (payload_of(message), pending) == (b"one", True)
    w.settle()
    assert w.synic(w.a).slot_type(MSG_SINT) == 0  # nothing moves until EOM
    if eom == "wrmsr":
        assert w.run(w.as_a.write_msr(R.Eom, 0)) is S.SUCCESS
    else:
        w.set_regs(w.a, 0, {R.Eom: 0})
    header, _ = w.slot(w.a)
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"two"
    assert header.flags & HV_MESSAGE_FLAG_PENDING  # "three" still waits
    assert w.interrupts(w.a) == interrupts + 1
    assert w.take(w.a)[1]
    header, _ = w.slot(w.a)
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"three"
    assert header.flags == 0  # the last one
    assert w.buffers() == 0
    w.clean()


def test_eom_with_empty_queues_is_a_no_op(w: World) -> None:
    w.enable(w.a)
    before = w.interrupts(w.a)
    assert w.run(w.as_a.write_msr(R.Eom, 0)) is S.SUCCESS
    assert w.run(w.api.get_registers(w.a, 0, [R.Eom])) == (S.SUCCESS, [0])  # EOM reads as 0
    w.settle()
    assert w.interrupts(w.a) == before
    assert w.synic(w.a).slot_type(MSG_SINT) == 0
    w.clean()


def test_messages_through_a_port_bound_to_one_vp_arrive_in_post_order(w: World) -> None:
    w.message_channel(vp=1)
    for i in range(10):
        assert w.post(b"msg%d" % i) is S.SUCCESS
    w.settle()
    got = []
    while w.synic(w.a, 1).slot_type(MSG_SINT):
        got.append(payload_of(w.take(w.a, 1)[0]))
    assert got == [b"msg%d" % i for i in range(10)]
    assert w.synic(w.a, 0).slot_type(MSG_SINT) == 0
    w.clean()


def test_any_vp_port_round_robins_over_vps_with_the_synic_enabled(w: World) -> None:
    w.message_channel(vp=HV_ANY_VP)
    w.enable(w.a, 1)
    for i in range(3):  # only VP 1 can take them
        assert w.post(b"vp1-%d" % i) is S.SUCCESS
    w.settle()
    assert len(w.synic(w.a, 1).queues[MSG_SINT]) == 2
    assert w.synic(w.a, 0).slot_type(MSG_SINT) == 0
    while w.synic(w.a, 1).slot_type(MSG_SINT):
        w.take(w.a, 1)
    w.enable(w.a, 0)
    for i in range(4):
        assert w.post(bytes([i])) is S.SUCCESS
        w.settle()
    per_vp = {vp: [payload_of(w.take(w.a, vp)[0]) for _ in range(2)] for vp in (0, 1)}
    assert sorted(per_vp[0] + per_vp[1]) == [bytes([i]) for i in range(4)]
    assert {len(set(v)) for v in per_vp.values()} == {2}  # two each: alternating
    assert per_vp[0] == [bytes([0]), bytes([2])] or per_vp[0] == [bytes([1]), bytes([3])]
    w.clean()


def test_buffers_are_freed_on_delivery(w: World) -> None:
    """With the slot full, 16 posts queue behind it (each holding a buffer): 17 succeed in all,
    because the first was delivered (its buffer freed) before the rest were posted."""
    w.message_channel()
    assert w.post(b"0") is S.SUCCESS
    w.settle()
    assert w.buffers() == 0
    for i in range(1, 17):
        assert w.post(b"%d" % i) is S.SUCCESS, i
    w.settle()
    assert w.buffers() == 16
    assert w.post(b"17") is S.INSUFFICIENT_BUFFERS
    w.clean()
    got = [payload_of(w.take(w.a)[0])]
    assert w.buffers() == 15  # EOM delivered the next: its buffer is free
    assert w.post(b"17") is S.SUCCESS
    w.settle()
    while w.synic(w.a).slot_type(MSG_SINT):
        got.append(payload_of(w.take(w.a)[0]))
    assert got == [b"%d" % i for i in range(18)]
    assert w.buffers() == 0
    w.clean()


def test_delete_port_frees_queued_and_in_transit_messages(make: Callable[..., World]) -> None:
    w = make(HvConfig(message_latency_ns=1_000_000))
    w.message_channel()
    port = w.sim.hv.partitions[w.a].ports[MSG_PORT]
    assert w.post(b"delivered") is S.SUCCESS
    w.settle()
    for i in range(3):
        assert w.post(bytes([i])) is S.SUCCESS
    w.settle()
    assert w.post(b"in transit") is S.SUCCESS
    assert len(w.synic(w.a).queues[MSG_SINT]) == 3
    assert port.buffers_in_use == 4
    assert w.run(w.api.delete_port(w.a, MSG_PORT)) is S.SUCCESS
    assert w.freed("port_deleted") == 4
    assert port.buffers_in_use == 0
    assert len(w.synic(w.a).queues[MSG_SINT]) == 0
    w.clean()
    w.settle()
    # The delivered message stays in the slot; nothing else arrives.
    message, _ = w.take(w.a)
    assert payload_of(message) == b"delivered"
    assert w.synic(w.a).slot_type(MSG_SINT) == 0
    w.clean()


def test_disconnect_port_leaves_queued_messages_alone(w: World) -> None:
    w.message_channel()
    for i in range(4):
        assert w.post(bytes([i])) is S.SUCCESS
    w.settle()
    assert w.run(w.api.disconnect_port(w.b, MSG_CONN)) is S.SUCCESS
    assert w.buffers() == 3
    assert len(w.synic(w.a).queues[MSG_SINT]) == 3
    got = []
    while w.synic(w.a).slot_type(MSG_SINT):
        got.append(payload_of(w.take(w.a)[0]))
    assert got == [bytes([i]) for i in range(4)]
    assert w.buffers() == 0
    assert w.freed("port_deleted") == 0
    w.clean()


def test_deleting_the_target_vp_frees_its_queued_messages(w: World) -> None:
    w.message_channel(vp=1)
    port = w.sim.hv.partitions[w.a].ports[MSG_PORT]
    for i in range(4):
        assert w.post(bytes([i])) is S.SUCCESS
    w.settle()
    assert port.buffers_in_use == 3
    assert w.run(w.api.delete_vp(w.a, 1)) is S.SUCCESS
    assert w.freed("vp_deleted") == 3
    assert port.buffers_in_use == 0
    assert w.post(b"x") is S.INVALID_VP_INDEX
    w.clean()


def test_signal_event_sets_the_sief_bit_at_base_plus_flag(w: World) -> None:
    w.event_channel(base=100, count=40)
    before = w.interrupts(w.a)
    assert w.signal(5) is S.SUCCESS
    assert w.synic(w.a).pending_flags(EVENT_SINT) == []  # in transit
    w.settle()
    assert w.synic(w.a).pending_flags(EVENT_SINT) == [105]
    # Straight from the overlay page: SINT x's 2048 flags are the 256 bytes at x * 256.
    sief = w.synic(w.a).sief
    assert sief[EVENT_SINT * 256 + 105 // 8] == 1 << (105 % 8)
    assert sum(bin(byte).count("1") for byte in sief) == 1
    assert w.synic(w.a).pending_flags(MSG_SINT) == []
    assert w.interrupts(w.a) == before + 1
    # Signals never run out of resources: no buffers are held.
    for flag in range(40):
        assert w.signal(flag) is S.SUCCESS
    w.settle()
    assert w.synic(w.a).pending_flags(EVENT_SINT) == list(range(100, 140))
    assert w.interrupts(w.a) == before + 40  # flag 5 was already set
    w.clean()


def test_masked_sint_gets_the_message_but_no_interrupt(w: World) -> None:
    w.message_channel(enable=False)
    w.enable(w.a, 0, {MSG_SINT: 0x30 | SINT_MASKED})
    before = w.interrupts(w.a)
    assert w.post(b"quiet") is S.SUCCESS
    w.settle()
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"quiet"
    assert w.interrupts(w.a) == before
    assert w.buffers() == 0
    w.clean()


def test_post_message_direct_delivers_at_once_without_a_port_buffer(w: World) -> None:
    w.message_channel()
    before = w.interrupts(w.a)
    assert w.post_direct(w.a, mtype=0x55, payload=b"now") is S.SUCCESS
    header, body = w.slot(w.a)  # no settling: already in the slot
    assert (header.message_type, header.payload_size, body[:3]) == (0x55, 3, b"now")
    assert w.buffers() == 0
    w.settle()
    assert w.interrupts(w.a) == before + 1
    # A posted message now queues behind the direct one.
    assert w.post(b"queued") is S.SUCCESS
    w.settle()
    assert w.slot(w.a)[0].flags & HV_MESSAGE_FLAG_PENDING
    assert w.buffers() == 1
    w.take(w.a)
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"queued"
    assert w.buffers() == 0
    w.clean()


def test_message_arriving_at_a_disabled_message_page_waits_for_it(make: Callable[..., World]) -> None:
    w = make(HvConfig(message_latency_ns=1_000_000))
    w.message_channel()
    assert w.post(b"later") is S.SUCCESS
    w.set_regs(w.a, 0, {R.Sipp: SIMP_GPA})  # the message page goes away while it is in transit
    w.settle(2_000_000)
    assert w.synic(w.a).slot_type(MSG_SINT) == 0
    assert w.buffers() == 1  # queued, still holding its buffer
    w.set_regs(w.a, 0, {R.Sipp: SIMP_GPA | 1})
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"later"
    assert w.buffers() == 0
    w.clean()


def fund_root(w: World, pages: int = 16) -> None:
    out = w.run(w.host.deposit(HV_PARTITION_ID_SELF, pages))
    assert out.status is S.SUCCESS


def test_the_root_receives_through_its_own_port(w: World) -> None:
    fund_root(w)
    out = w.run(w.api.enable_synic(HV_PARTITION_ID_SELF, 0, {MSG_SINT: 0x40}))
    assert out.status is S.SUCCESS
    w.port(3, owner=w.root, peer=w.a)
    w.connect(9, 3, owner=w.a, port_owner=w.root)
    assert w.run(w.api.receive_message(MSG_SINT, timeout_ns=50_000)) is None  # nothing yet
    for text in (b"to the root", b"again"):
        assert w.post(text, mtype=0x42, conn=9, caller=w.a) is S.SUCCESS
    got = w.run(w.api.receive_message(MSG_SINT, timeout_ns=1_000_000))
    assert got is not None
    assert MESSAGE_HEADER.unpack(got)._replace(flags=0) == MessageHeader(0x42, 11, 0, 0, 3)
    assert payload_of(got) == b"to the root"
    got = w.run(w.api.receive_message(MSG_SINT, timeout_ns=1_000_000))  # EOMed by the first take
    assert got is not None and payload_of(got) == b"again"
    assert w.buffers(w.root, 3) == 0
    w.clean()


# --- doorbells -----------------------------------------------------------------------------------
DOORBELL_GPA = 0xF000_0000
DOORBELL_SINT = 5
DOORBELL_PORT, DOORBELL_CONN = 7, 7


def doorbell_world(make: Callable[..., World], write: MemoryWrite, *, trigger: int, flags: int) -> World:
    """A's VP 0 waits 1 ms (for the host to connect the doorbell), then does *write*."""
    program = Program(setup=(Compute(1_000_000), write), loop=(Halt(),), name="ring")
    w = make(a_program=lambda i: program if i == 0 else IDLE_GUEST, b_program=lambda _i: IDLE_GUEST)
    fund_root(w)
    out = w.run(w.api.enable_synic(HV_PARTITION_ID_SELF, 0, {DOORBELL_SINT: 0x35}))
    assert out.status is S.SUCCESS
    w.port(DOORBELL_PORT, PortType.Doorbell, sint=DOORBELL_SINT, owner=w.root, peer=w.a)
    w.connect(
        DOORBELL_CONN, DOORBELL_PORT, PortType.Doorbell, owner=w.a, port_owner=w.root,
        address=DOORBELL_GPA, trigger_value=trigger, flags=flags,
    )  # fmt: skip
    assert w.sim.now_ns < 1_000_000 + 400_000  # set up before the guest writes (boot took < 0.4 ms)
    return w


@pytest.mark.parametrize(
    ("flags", "trigger", "write", "rings"),
    [
        (3, 0x11, MemoryWrite(DOORBELL_GPA, 0x11, 4), True),
        (3, 0x11, MemoryWrite(DOORBELL_GPA, 0x12, 4), False),
        (3, 0x11, MemoryWrite(DOORBELL_GPA, 0x11, 2), False),
        (3, 0x11, MemoryWrite(DOORBELL_GPA + 4, 0x11, 4), False),
        (0x8000_0003, 0x11, MemoryWrite(DOORBELL_GPA, 0xDEAD, 4), True),
        (0x8000_0003, 0x11, MemoryWrite(DOORBELL_GPA, 0xDEAD, 8), False),
        (1, 0xAB, MemoryWrite(DOORBELL_GPA, 0xAB, 1), True),
        (2, 0xABCD, MemoryWrite(DOORBELL_GPA, 0xABCD, 2), True),
        (4, 1 << 40, MemoryWrite(DOORBELL_GPA, 1 << 40, 8), True),
        (4, 1 << 40, MemoryWrite(DOORBELL_GPA, 1 << 40, 4), False),
        (0, 0x11, MemoryWrite(DOORBELL_GPA, 0x11, 8), True),
    ],
    ids=[
        "match", "wrong-value", "wrong-size", "wrong-address", "any-value", "any-value-wrong-size",
        "size-1", "size-2", "size-8", "size-8-written-4", "any-size",
    ],
)  # fmt: skip
def test_doorbell(
    make: Callable[..., World], flags: int, trigger: int, write: MemoryWrite, rings: bool
) -> None:
    w = doorbell_world(make, write, trigger=trigger, flags=flags)
    got = w.run(w.api.receive_message(DOORBELL_SINT, timeout_ns=2_000_000))
    actor = w.sim.vp_actor(w.a, 0)
    assert actor is not None and actor.memory_writes == 1
    assert w.sim.hv.doorbells["rung"] == int(rings)
    if not rings:
        assert got is None
    else:
        assert got is not None
        header = MESSAGE_HEADER.unpack(got)
        assert header.message_type == 0x8000_0061  # SynicSintIntercept
        assert header.payload_size >= 4
        assert header.origination_id == w.a  # the sender of an intercept message
        assert int.from_bytes(got[16:20], "little") == DOORBELL_PORT
    w.clean()


def test_doorbell_after_disconnect_is_an_ordinary_write(make: Callable[..., World]) -> None:
    w = doorbell_world(make, MemoryWrite(DOORBELL_GPA, 0x11, 4), trigger=0x11, flags=3)
    assert w.run(w.api.disconnect_port(w.a, DOORBELL_CONN)) is S.SUCCESS
    assert w.run(w.api.receive_message(DOORBELL_SINT, timeout_ns=2_000_000)) is None
    assert w.sim.hv.doorbells == {"rung": 0, "coalesced": 0, "lost": 0}
    w.clean()


# --- more delivery rules ---------------------------------------------------------------------------
def test_disconnect_leaves_messages_in_transit_alone(make: Callable[..., World]) -> None:
    w = make(HvConfig(message_latency_ns=1_000_000))
    w.message_channel()
    assert w.post(b"on its way") is S.SUCCESS
    assert w.run(w.api.disconnect_port(w.b, MSG_CONN)) is S.SUCCESS
    assert w.synic(w.a).slot_type(MSG_SINT) == 0
    w.settle()
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"on its way"
    assert w.buffers() == 0
    w.clean()


def test_eom_while_the_slot_is_still_full_delivers_nothing(w: World) -> None:
    w.message_channel()
    for text in (b"one", b"two"):
        assert w.post(text) is S.SUCCESS
    w.settle()
    assert w.run(w.as_a.write_msr(R.Eom, 0)) is S.SUCCESS  # the guest forgot to clear the slot
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"one"
    assert w.slot(w.a)[0].flags & HV_MESSAGE_FLAG_PENDING
    assert len(w.synic(w.a).queues[MSG_SINT]) == 1
    assert w.take(w.a)[1]
    assert payload_of(w.synic(w.a).read_slot(MSG_SINT)) == b"two"
    w.clean()


def test_a_recreated_vp_starts_with_an_empty_synic(w: World) -> None:
    w.message_channel(vp=1)
    for i in range(3):
        assert w.post(bytes([i])) is S.SUCCESS
    w.settle()
    assert w.run(w.api.delete_vp(w.a, 1)) is S.SUCCESS
    status = w.run(w.host.with_memory(lambda: w.api.create_vp(w.a, 1), w.a, "CreateVp"))
    assert status is S.SUCCESS
    synic = w.synic(w.a, 1)
    assert synic.slot_type(MSG_SINT) == 0
    assert not any(synic.sim) and not any(synic.sief)
    assert all(len(q) == 0 for q in synic.queues)
    assert w.post(b"x") is S.INVALID_SYNIC_STATE  # SCONTROL is back at its reset value
    w.enable(w.a, 1)
    assert w.post(b"fresh") is S.SUCCESS
    w.settle()
    assert payload_of(synic.read_slot(MSG_SINT)) == b"fresh"
    w.clean()


def test_signal_event_direct_does_not_go_through_transit(w: World) -> None:
    w.enable(w.a)
    assert w.signal_direct(w.a, flag=2047) == (S.SUCCESS, True)
    assert w.synic(w.a).pending_flags(EVENT_SINT) == [2047]  # already set when the call returns
    w.clean()


def test_teardown_of_the_port_owner_frees_messages_in_transit(make: Callable[..., World]) -> None:
    w = make(HvConfig(message_latency_ns=1_000_000))
    w.message_channel()
    w.event_channel()
    for i in range(5):
        assert w.post(bytes([i])) is S.SUCCESS
    assert w.signal(1) is S.SUCCESS
    w.run(w.host.teardown(w.a))
    assert w.post(b"x") is S.INVALID_PORT_ID  # the connection now leads to a deleted partition
    assert w.signal(0) is S.INVALID_PORT_ID
    w.settle()
    assert w.freed("port_deleted") + w.freed("vp_deleted") == 6
    assert w.sim.hv.undelivered == {}
    w.clean()


def test_signal_event_any_vp_port_round_robins_over_vps_that_can_take_it(w: World) -> None:
    w.port(EVENT_PORT, PortType.Event, sint=EVENT_SINT, vp=HV_ANY_VP, count=8)
    w.connect(EVENT_CONN, EVENT_PORT, PortType.Event)
    w.enable(w.a, 1)  # VP 0's SynIC stays disabled: every signal goes to VP 1
    for flag in range(4):
        assert w.signal(flag) is S.SUCCESS
    w.settle()
    assert w.synic(w.a, 1).pending_flags(EVENT_SINT) == [0, 1, 2, 3]
    w.enable(w.a, 0)
    for flag in range(4, 8):
        assert w.signal(flag) is S.SUCCESS
    w.settle()
    flags0 = w.synic(w.a, 0).pending_flags(EVENT_SINT)
    assert len(flags0) == 2 and w.synic(w.a, 1).pending_flags(EVENT_SINT) == sorted({*range(8)} - {*flags0})
    w.clean()


def test_signal_event_any_vp_skips_a_vp_whose_sint_is_masked(w: World) -> None:
    w.port(EVENT_PORT, PortType.Event, sint=EVENT_SINT, vp=HV_ANY_VP, count=8)
    w.connect(EVENT_CONN, EVENT_PORT, PortType.Event)
    w.enable(w.a, 0, {EVENT_SINT: 0x31 | SINT_MASKED})
    w.enable(w.a, 1, {EVENT_SINT: 0x31})
    statuses = [w.signal(flag) for flag in range(4)]
    w.settle()
    w.clean()
    assert statuses == [S.SUCCESS] * 4  # observed: INVALID_SYNIC_STATE, SUCCESS, INVALID_SYNIC_STATE, SUCCESS
    assert w.synic(w.a, 1).pending_flags(EVENT_SINT) == [0, 1, 2, 3]
