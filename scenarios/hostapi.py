"""Typed host-side helpers over the hypercall ABI (generator API).

Every helper builds the TLFS input block with ``hvdef`` layouts, issues it through the same path as
:meth:`Simulation.hypercall` and decodes the output. Rep helpers follow the TLFS continuation rule:
while a call returns SUCCESS with fewer reps than asked, re-issue with rep start = reps completed.

Use inside a process (``status, pid = yield from api.create_partition()``) or from plain code with
``sim.run_process(api.create_partition())``.
"""

from __future__ import annotations

import struct
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import simpy

from hvsim.actors.hvdef import (
    CONNECT_PORT_INPUT,
    CONNECTION_INFO,
    CREATE_PARTITION_INPUT,
    CREATE_PORT_INPUT,
    CREATE_VP_INPUT,
    DELETE_VP_INPUT,
    GET_NEXT_CHILD_PARTITION_INPUT,
    GET_PARTITION_PROPERTY_INPUT,
    HV_COMPATIBILITY_21_H2,
    HV_PARTITION_ID_SELF,
    MEMORY_BALANCE_OUTPUT,
    MEMORY_POOL_INPUT,
    MESSAGE_HEADER,
    PARTITION_ID_INPUT,
    PORT_ID_INPUT,
    PORT_INFO,
    POST_MESSAGE_DIRECT_INPUT,
    POST_MESSAGE_INPUT,
    REGISTER_ASSOC,
    SET_PARTITION_PROPERTY_INPUT,
    SIGNAL_EVENT_DIRECT_INPUT,
    SIGNAL_EVENT_DIRECT_OUTPUT,
    SIGNAL_EVENT_INPUT,
    SYNIC_ENABLE,
    VP_REGISTERS_INPUT,
    ConnectionInfo,
    ConnectPortInput,
    CreatePartitionInput,
    CreatePortInput,
    CreateVpInput,
    DeleteVpInput,
    GetNextChildPartitionInput,
    GetPartitionPropertyInput,
    HvStatus,
    HypercallCode,
    MemoryPoolInput,
    MessageHeader,
    PartitionIdInput,
    PortIdInput,
    PortInfo,
    PostMessageDirectInput,
    PostMessageInput,
    RegisterAssoc,
    RegisterName,
    SetPartitionPropertyInput,
    SignalEventDirectInput,
    SignalEventInput,
    VpRegistersInput,
    control,
)
from hvsim.actors.hypercall import HypercallRequest, HypercallResult
from hvsim.actors.runtime import ask
from hvsim.actors.vp import MsrWrite
from hvsim.scenarios.simulation import Simulation

C = HypercallCode
Gen = Generator[simpy.Event, Any, Any]
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
#: The most GPA page numbers one DepositMemory can carry ((4096 - 8) / 8, Linux HV_DEPOSIT_MAX).
DEPOSIT_MAX = 511
#: The most pages one WithdrawMemory can return (Linux HV_WITHDRAW_BATCH_SIZE).
WITHDRAW_MAX = 512


class RepOutcome(NamedTuple):
    """A rep call driven to completion (or to its first error)."""

    status: HvStatus
    reps_completed: int
    output: bytes
    #: How many invocations it took (continuations + 1).
    invocations: int


class Balance(NamedTuple):
    pages_available: int
    pages_in_use: int


class HostApi:
    """Hypercalls issued by partition *caller* (default: the root) on its VP *vp*."""

    def __init__(self, sim: Simulation, *, caller: int | None = None, vp: int = 0) -> None:
        self.sim = sim
        self.caller = sim.root_id if caller is None else caller
        self.vp = vp

    # --- raw ---------------------------------------------------------------------------------
    def invoke(self, ctl: int, data: bytes = b"") -> Generator[simpy.Event, Any, HypercallResult]:
        """One invocation: exactly what the hypercall instruction does."""
        return (yield from self.sim.issue(HypercallRequest(self.caller, self.vp, ctl, data)))

    def simple(self, code: int, data: bytes = b"") -> Generator[simpy.Event, Any, HypercallResult]:
        return (yield from self.invoke(control(code), data))

    def rep(
        self, code: int, header: bytes, elements: Sequence[bytes] | int, *, rep_start: int = 0
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        """A rep call over *elements* (or *elements* output-only reps), continued to completion."""
        count = elements if isinstance(elements, int) else len(elements)
        data = header if isinstance(elements, int) else header + b"".join(elements)
        done, invocations = rep_start, 0
        out = bytearray()
        while True:
            res = yield from self.invoke(control(code, rep_count=count, rep_start=done), data)
            invocations += 1
            # Output elements land at absolute positions; only [rep start, reps completed) is defined.
            if not out:
                out = bytearray(len(res.output))
            size = len(res.output) // count if count else 0
            out[done * size : res.reps_completed * size] = res.output[done * size : res.reps_completed * size]
            if res.status is not HvStatus.SUCCESS or res.reps_completed >= count:
                return RepOutcome(res.status, res.reps_completed, bytes(out), invocations)
            done = res.reps_completed

    # --- partitions ------------------------------------------------------------------------------
    def create_partition(
        self,
        *,
        flags: int = 0,
        proximity: int = 0,
        compatibility_version: int = HV_COMPATIBILITY_21_H2,
        disabled_features: tuple[int, int] = (0, 0),
        disabled_xsave: int = 0,
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, int]]:
        data = CREATE_PARTITION_INPUT.pack(
            CreatePartitionInput(
                flags, proximity, compatibility_version, 0, *disabled_features, disabled_xsave, 0
            )
        )
        res = yield from self.simple(C.CreatePartition, data)
        return res.status, _U64.unpack_from(res.output)[0] if res.status is HvStatus.SUCCESS else 0

    def _by_id(self, code: int, partition_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        res = yield from self.simple(code, PARTITION_ID_INPUT.pack(PartitionIdInput(partition_id)))
        return res.status

    def initialize_partition(self, partition_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        return (yield from self._by_id(C.InitializePartition, partition_id))

    def finalize_partition(self, partition_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        return (yield from self._by_id(C.FinalizePartition, partition_id))

    def delete_partition(self, partition_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        return (yield from self._by_id(C.DeletePartition, partition_id))

    def set_property(self, partition_id: int, code: int, value: int) -> Generator[simpy.Event, Any, HvStatus]:
        data = SET_PARTITION_PROPERTY_INPUT.pack(SetPartitionPropertyInput(partition_id, code, 0, value))
        return (yield from self.simple(C.SetPartitionProperty, data)).status

    def get_property(self, partition_id: int, code: int) -> Generator[simpy.Event, Any, tuple[HvStatus, int]]:
        data = GET_PARTITION_PROPERTY_INPUT.pack(GetPartitionPropertyInput(partition_id, code, 0))
        res = yield from self.simple(C.GetPartitionProperty, data)
        return res.status, _U64.unpack_from(res.output)[0]

    def next_child(
        self, previous: int = 0, parent: int = HV_PARTITION_ID_SELF
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, int]]:
        data = GET_NEXT_CHILD_PARTITION_INPUT.pack(GetNextChildPartitionInput(parent, previous))
        res = yield from self.simple(C.GetNextChildPartition, data)
        return res.status, _U64.unpack_from(res.output)[0]

    def children(self) -> Generator[simpy.Event, Any, list[int]]:
        """Enumerate the caller's children with GetNextChildPartition (creation order)."""
        found: list[int] = []
        prev = 0
        while True:
            status, nxt = yield from self.next_child(prev)
            if status is not HvStatus.SUCCESS or nxt == 0:
                return found
            found.append(nxt)
            prev = nxt

    # --- memory ------------------------------------------------------------------------------
    def deposit(self, partition_id: int, pages: Sequence[int]) -> Generator[simpy.Event, Any, RepOutcome]:
        """DepositMemory *pages* (any number: split into 511-page calls, each continued)."""
        done, invocations = 0, 0
        # An empty list still makes one call (rep count 0), answered as the ABI says.
        for start in range(0, len(pages), DEPOSIT_MAX) or [0]:
            chunk = pages[start : start + DEPOSIT_MAX]
            out = yield from self.rep(
                C.DepositMemory, PARTITION_ID_INPUT.pack(PartitionIdInput(partition_id)),
                [_U64.pack(p) for p in chunk],
            )  # fmt: skip
            done += out.reps_completed
            invocations += out.invocations
            if out.status is not HvStatus.SUCCESS:
                return RepOutcome(out.status, done, b"", invocations)
        return RepOutcome(HvStatus.SUCCESS, done, b"", invocations)

    def withdraw(
        self, partition_id: int, count: int = WITHDRAW_MAX, proximity: int = 0
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, list[int]]]:
        """One WithdrawMemory of up to *count* (<= 512) pages, continued; the returned page numbers."""
        header = MEMORY_POOL_INPUT.pack(MemoryPoolInput(partition_id, proximity))
        out = yield from self.rep(C.WithdrawMemory, header, count)
        pages = [p for (p,) in _U64.iter_unpack(out.output[: 8 * out.reps_completed])]
        return out.status, pages

    def balance(
        self, partition_id: int, proximity: int = 0
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, Balance]]:
        data = MEMORY_POOL_INPUT.pack(MemoryPoolInput(partition_id, proximity))
        res = yield from self.simple(C.GetMemoryBalance, data)
        return res.status, Balance(*MEMORY_BALANCE_OUTPUT.unpack(res.output))

    # --- VPs ---------------------------------------------------------------------------------
    def create_vp(
        self, partition_id: int, vp_index: int, *, flags: int = 0
    ) -> Generator[simpy.Event, Any, HvStatus]:
        data = CREATE_VP_INPUT.pack(CreateVpInput(partition_id, vp_index, bytes(3), 0, 0, 0, flags))
        return (yield from self.simple(C.CreateVp, data)).status

    def delete_vp(self, partition_id: int, vp_index: int) -> Generator[simpy.Event, Any, HvStatus]:
        data = DELETE_VP_INPUT.pack(DeleteVpInput(partition_id, vp_index, 0))
        return (yield from self.simple(C.DeleteVp, data)).status

    def get_registers(
        self, partition_id: int, vp_index: int, names: Iterable[int]
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, list[int]]]:
        names = list(names)
        header = VP_REGISTERS_INPUT.pack(VpRegistersInput(partition_id, vp_index, 0, bytes(3)))
        out = yield from self.rep(C.GetVpRegisters, header, [_U32.pack(n) for n in names])
        values = [
            int.from_bytes(out.output[16 * i : 16 * i + 16], "little") for i in range(out.reps_completed)
        ]
        return out.status, values

    def set_registers(
        self, partition_id: int, vp_index: int, values: Mapping[int, int]
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        header = VP_REGISTERS_INPUT.pack(VpRegistersInput(partition_id, vp_index, 0, bytes(3)))
        elements = [
            REGISTER_ASSOC.pack(RegisterAssoc(name, bytes(12), v & (2**64 - 1), v >> 64))
            for name, v in values.items()
        ]
        return (yield from self.rep(C.SetVpRegisters, header, elements))

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
