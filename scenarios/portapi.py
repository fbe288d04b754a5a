"""Host-side helpers for ports, connections, SynIC messages and events (part of HostApi)."""

from __future__ import annotations

import struct
from collections.abc import Generator, Mapping
from typing import Any

import simpy

from hvsim.actors.hvdef import (
    CONNECT_PORT_INPUT,
    CONNECTION_INFO,
    CREATE_PORT_INPUT,
    MESSAGE_HEADER,
    PORT_ID_INPUT,
    PORT_INFO,
    POST_MESSAGE_DIRECT_INPUT,
    POST_MESSAGE_INPUT,
    SIGNAL_EVENT_DIRECT_INPUT,
    SIGNAL_EVENT_DIRECT_OUTPUT,
    SIGNAL_EVENT_INPUT,
    SYNIC_ENABLE,
    ConnectionInfo,
    ConnectPortInput,
    CreatePortInput,
    HvStatus,
    HypercallCode,
    MessageHeader,
    PortIdInput,
    PortInfo,
    PostMessageDirectInput,
    PostMessageInput,
    RegisterName,
    SignalEventDirectInput,
    SignalEventInput,
)
from hvsim.actors.runtime import ask
from hvsim.actors.vp import MsrWrite
from hvsim.scenarios.apicore import ApiCore, RepOutcome

C = HypercallCode
Gen = Generator[simpy.Event, Any, Any]
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class PortApi(ApiCore):
    # --- ports, connections and messages ---------------------------------------------------------
    def create_port(
        self, owner: int, port_id: int, port_type: int, *, sint: int = 2, vp: int = 0,
        connection_partition: int = 0, base_flag: int = 0, flag_count: int = 0,
    ) -> Generator[simpy.Event, Any, HvStatus]:  # fmt: skip
        info = PORT_INFO.pack(PortInfo(port_type, 0, sint, vp, base_flag, flag_count, 0))
        data = CREATE_PORT_INPUT.pack(CreatePortInput(owner, port_id, 0, 0, 0, connection_partition, info, 0))
        return (yield from self.simple(C.CreatePort, data)).status

    def connect_port(
        self, owner: int, connection_id: int, port_owner: int, port_id: int, port_type: int, *,
        address: int = 0, trigger_value: int = 0, flags: int = 0,
    ) -> Generator[simpy.Event, Any, HvStatus]:  # fmt: skip
        info = CONNECTION_INFO.pack(ConnectionInfo(port_type, 0, address, trigger_value, flags))
        data = CONNECT_PORT_INPUT.pack(
            ConnectPortInput(owner, connection_id, 0, 0, 0, port_owner, port_id, 0, info, 0)
        )
        return (yield from self.simple(C.ConnectPort, data)).status

    def delete_port(self, owner: int, port_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        data = PORT_ID_INPUT.pack(PortIdInput(owner, port_id, 0))
        return (yield from self.simple(C.DeletePort, data)).status

    def disconnect_port(self, owner: int, connection_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        data = PORT_ID_INPUT.pack(PortIdInput(owner, connection_id, 0))
        return (yield from self.simple(C.DisconnectPort, data)).status

    def enable_synic(
        self, partition_id: int, vp_index: int, sints: Mapping[int, int], *,
        simp_gpa: int = 0xFEB0_0000, siefp_gpa: int = 0xFEB0_1000,
    ) -> Generator[simpy.Event, Any, RepOutcome]:  # fmt: skip
        """Enable a VP's SynIC, message and event-flag pages, and unmask *sints* (SINT -> vector)."""
        values = {
            RegisterName.Sipp: simp_gpa | SYNIC_ENABLE,
            RegisterName.Sifp: siefp_gpa | SYNIC_ENABLE,
            **{RegisterName.Sint0 + sint: vector for sint, vector in sints.items()},
            RegisterName.Scontrol: SYNIC_ENABLE,
        }
        return (yield from self.set_registers(partition_id, vp_index, values))

    def post_message(
        self, connection_id: int, message_type: int, payload: bytes = b""
    ) -> Generator[simpy.Event, Any, HvStatus]:
        data = POST_MESSAGE_INPUT.pack(
            PostMessageInput(connection_id, 0, message_type, len(payload), payload)
        )
        return (yield from self.simple(C.PostMessage, data)).status

    def signal_event(self, connection_id: int, flag: int) -> Generator[simpy.Event, Any, HvStatus]:
        data = SIGNAL_EVENT_INPUT.pack(SignalEventInput(connection_id, flag, 0))
        return (yield from self.simple(C.SignalEvent, data)).status

    def post_message_direct(
        self, partition_id: int, vp_index: int, sint: int, message_type: int, payload: bytes = b""
    ) -> Generator[simpy.Event, Any, HvStatus]:
        message = MESSAGE_HEADER.pack(MessageHeader(message_type, len(payload), 0, 0, 0)) + payload
        data = POST_MESSAGE_DIRECT_INPUT.pack(
            PostMessageDirectInput(partition_id, vp_index, 0, bytes(3), sint, message, 0)
        )
        return (yield from self.simple(C.PostMessageDirect, data)).status

    def signal_event_direct(
        self, partition_id: int, vp_index: int, sint: int, flag: int
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, bool]]:
        data = SIGNAL_EVENT_DIRECT_INPUT.pack(SignalEventDirectInput(partition_id, vp_index, 0, sint, flag))
        res = yield from self.simple(C.SignalEventDirect, data)
        return res.status, bool(SIGNAL_EVENT_DIRECT_OUTPUT.unpack(res.output).newly_signaled)

    def receive_message(
        self, sint: int, timeout_ns: int | None = None
    ) -> Generator[simpy.Event, Any, bytes | None]:
        """Take the next message from SIM slot *sint* of the caller's own VP, waiting for its
        interrupt; EOM if MessagePending was set. None if *timeout_ns* passed first."""
        actor = self.sim.vp_actor(self.caller, self.vp)
        if actor is None:
            raise ValueError(f"no VP {self.vp} in partition {self.caller}")
        deadline = None if timeout_ns is None else self.sim.now_ns + timeout_ns
        while not actor.synic.slot_type(sint):
            if deadline is not None and self.sim.now_ns >= deadline:
                return None
            irq = actor.next_interrupt()
            env = self.sim.env
            yield irq if deadline is None else env.any_of([irq, env.timeout(deadline - self.sim.now_ns)])
        message, pending = actor.synic.take_slot(sint)
        if pending:
            yield from self.write_msr(RegisterName.Eom, 0)
        return message

    def write_msr(self, name: int, value: int) -> Generator[simpy.Event, Any, HvStatus]:
        """WRMSR to a SynIC register of the caller's own VP (not a hypercall)."""
        status: HvStatus = yield ask(self.sim.hv_ref, MsrWrite(self.caller, self.vp, name, value))
        return status
