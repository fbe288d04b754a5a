"""SynIC messaging: PostMessage, SignalEvent, PostMessageDirect and SignalEventDirect (HYPERCALLS.md
4.41-4.44), doorbells, and delivery into the target VP's SynIC (5.9).

A posted message holds one of its port's buffers from the post until it is copied into the target
SIM slot. In between it is in transit (``config.message_latency_ns``, plus any fault's delay), then
queued on the target (VP, SINT). It is delivered when the slot is empty and the SynIC and its message
page are enabled; the queue is rescanned when a message arrives, on EOM and on a write to SCONTROL,
SIMP or a SINT register. A message delivered while more wait carries MessagePending; a message that
finds the slot full sets MessagePending in the slot's message. An event signal travels the same way
and sets its SIEF flag on arrival, interrupting only on a 0 -> 1 change.

Every message ends in exactly one record: ``message.delivered``, ``message.freed`` (its port or
target VP was deleted) or ``message.dropped`` (a fault lost it); until then it is in
:attr:`HvState.undelivered`. The message-accounting checker holds the hypervisor to that.
"""

from __future__ import annotations

from collections.abc import Callable

from hvsim.actors.hvdef import (
    DOORBELL_TRIGGER_ANY_VALUE,
    DOORBELL_TRIGGER_BYTES,
    HV_ANY_VP,
    HV_EVENT_FLAGS_COUNT,
    HV_MESSAGE_FLAG_PENDING,
    HV_MESSAGE_PAYLOAD_SIZE,
    HV_SYNIC_SINT_COUNT,
    MESSAGE_HEADER,
    MESSAGE_TYPE_HYPERVISOR,
    POST_MESSAGE_DIRECT_INPUT,
    POST_MESSAGE_INPUT,
    SIGNAL_EVENT_DIRECT_INPUT,
    SIGNAL_EVENT_DIRECT_OUTPUT,
    SIGNAL_EVENT_INPUT,
    SINT_MASKED,
    SINT_POLLING,
    HvStatus,
    MessageType,
    PartitionPrivilege,
    PortType,
    RegisterName,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Connection, Partition, PartitionState, Port, Vp
from hvsim.actors.state import OK, HvState
from hvsim.actors.synic import (
    SYNIC_RESCAN_REGISTERS,
    Fate,
    Kind,
    Message,
    sief_enabled,
    sim_enabled,
    sint_masked,
)

S = HvStatus
R = RegisterName
POST_MESSAGES = int(PartitionPrivilege.PostMessages)
SIGNAL_EVENTS = int(PartitionPrivilege.SignalEvents)
ACCESS_SYNIC_REGS = int(PartitionPrivilege.AccessSynicRegs)
_SINT0 = int(R.Sint0)
_NO_INTERRUPT = SINT_MASKED | SINT_POLLING
#: The SynIC MSRs a guest can write (the rest of its register file is not reachable by WRMSR here).
GUEST_SYNIC_MSRS = SYNIC_RESCAN_REGISTERS | {int(R.Sifp), int(R.Eom)}
Enabled = Callable[[dict[int, int]], bool]


class MessageCalls(HvState):
    # --- hypercalls ------------------------------------------------------------------------------
    def post_message(self, call: Call) -> HvStatus:
        caller = call.caller
        if not caller.privileges & POST_MESSAGES:
            return S.ACCESS_DENIED
        inp = POST_MESSAGE_INPUT.unpack(call.input)
        mtype = inp.message_type
        if inp.reserved or not mtype or mtype & MESSAGE_TYPE_HYPERVISOR:
            return S.INVALID_PARAMETER
        if inp.payload_size > HV_MESSAGE_PAYLOAD_SIZE:
            return S.INVALID_PARAMETER
        status, owner, port = self._through(caller, inp.connection_id, PortType.Message)
        if owner is None or port is None:
            return status
        status, vp = self._port_vp(owner, port, sim_enabled)
        if vp is None:
            return status
        capacity = self.config.port_message_buffers
        if self.interposer is not None:
            capacity = self.interposer.port_buffers(owner.id, port.id, capacity)
        if port.buffers_in_use >= capacity:
            return S.INSUFFICIENT_BUFFERS
        port.buffers_in_use += 1
        header = MESSAGE_HEADER.pack((mtype, inp.payload_size, 0, 0, port.id))
        self._send(
            Message(self.new_message_id(), Kind.POST, caller.id, call.vp, owner.id, vp.index,
                    port.target_sint, header + inp.payload, port, holds_buffer=True)
        )  # fmt: skip
        return OK

    def signal_event(self, call: Call) -> HvStatus:
        caller = call.caller
        if not caller.privileges & SIGNAL_EVENTS:
            return S.ACCESS_DENIED
        inp = SIGNAL_EVENT_INPUT.unpack(call.input)
        if inp.reserved:
            return S.INVALID_PARAMETER
        status, owner, port = self._through(caller, inp.connection_id, PortType.Event)
        if owner is None or port is None:
            return status
        if inp.flag_number >= port.flag_count:
            return S.INVALID_PARAMETER
        sint = port.target_sint
        # A masked SINT cannot take an event (INVALID_SYNIC_STATE), so HV_ANY_VP passes over it.
        status, vp = self._port_vp(owner, port, lambda r: sief_enabled(r) and not sint_masked(r, sint))
        if vp is None:
            return status
        self._send(
            Message(self.new_message_id(), Kind.EVENT, caller.id, call.vp, owner.id, vp.index,
                    port.target_sint, b"", port, flag=port.base_flag + inp.flag_number)
        )  # fmt: skip
        return OK

    def post_message_direct(self, call: Call) -> HvStatus:
        inp = POST_MESSAGE_DIRECT_INPUT.unpack(call.input)
        status, target = self.self_or_child(call.caller, inp.partition_id, POST_MESSAGES)
        if target is None:
            return status
        header = MESSAGE_HEADER.unpack(inp.message)
        if inp.vtl or inp.padding0 != bytes(3) or inp.padding1 or inp.sint_index >= HV_SYNIC_SINT_COUNT:
            return S.INVALID_PARAMETER
        if not header.message_type or header.payload_size > HV_MESSAGE_PAYLOAD_SIZE:
            return S.INVALID_PARAMETER  # an empty or oversized message [inferred]
        vp = target.vps.get(inp.vp_index)
        if vp is None:
            return S.INVALID_VP_INDEX
        sint = inp.sint_index
        if not sim_enabled(vp.regs) or sint_masked(vp.regs, sint):
            return S.INVALID_SYNIC_STATE
        if vp.synic.slot_type(sint) or self._blocked(target, vp, sint):
            return S.OBJECT_IN_USE  # openvmm: no buffer pool backs a direct post
        msg = Message(self.new_message_id(), Kind.DIRECT, call.caller.id, call.vp, target.id, vp.index,
                      sint, inp.message, None)  # fmt: skip
        self._log_posted(msg)
        self._deliver(target, vp, msg)
        return OK

    def signal_event_direct(self, call: Call) -> HvStatus:
        inp = SIGNAL_EVENT_DIRECT_INPUT.unpack(call.input)
        status, target = self.self_or_child(call.caller, inp.partition_id, SIGNAL_EVENTS)
        if target is None:
            return status
        if inp.vtl or not 1 <= inp.sint < HV_SYNIC_SINT_COUNT or inp.flag_number >= HV_EVENT_FLAGS_COUNT:
            return S.INVALID_PARAMETER
        vp = target.vps.get(inp.vp_index)
        if vp is None:
            return S.INVALID_VP_INDEX
        if not sief_enabled(vp.regs) or sint_masked(vp.regs, inp.sint):
            return S.INVALID_SYNIC_STATE
        msg = Message(self.new_message_id(), Kind.DIRECT_EVENT, call.caller.id, call.vp, target.id,
                      vp.index, inp.sint, b"", None, flag=inp.flag_number)  # fmt: skip
        self._log_posted(msg)
        newly = self._set_flag(target, vp, msg)
        call.output[:8] = SIGNAL_EVENT_DIRECT_OUTPUT.pack((int(newly), bytes(7)))
        return OK

    # --- guest-side traps (not hypercalls): SynIC MSR writes and doorbell writes -----------------
    def guest_msr_write(self, partition_id: int, vp_index: int, name: int, value: int) -> HvStatus:
        """WRMSR to a SynIC register from the guest on that VP. A refused write (#GP on hardware)
        answers ACCESS_DENIED (no AccessSynicRegs privilege) or the invalid-value status."""
        p = self.partitions.get(partition_id)
        vp = p.vps.get(vp_index) if p is not None else None
        if p is None or vp is None:
            return S.INVALID_VP_INDEX
        if not p.privileges & ACCESS_SYNIC_REGS or name not in GUEST_SYNIC_MSRS:
            status = S.ACCESS_DENIED
        else:
            status = self.write_register(p, vp, name, value)
        if self.log.enabled and name != R.Eom:
            self.log.emit("msr.write", partition=p.id, vp=vp_index, name=R(name).name, status=status.name)
        return status

    def guest_doorbell_write(self, partition_id: int, vp_index: int, gpa: int, value: int, size: int) -> bool:
        """The guest on that VP wrote *value* (*size* bytes) at *gpa*: ring every doorbell
        connection of its partition that the write matches (address, size and trigger value);
        whether any matched."""
        p = self.partitions.get(partition_id)
        if p is None or vp_index not in p.vps:
            return False
        rang = False
        for conn in list(p.connections.values()):
            if conn.type != PortType.Doorbell or conn.address != gpa:
                continue
            want = DOORBELL_TRIGGER_BYTES.get(conn.flags & 0x7, 0)
            if want and want != size:
                continue
            if not conn.flags & DOORBELL_TRIGGER_ANY_VALUE and value != conn.trigger_value:
                continue
            self._ring(p, vp_index, conn)
            rang = True
        return rang

    # --- SynIC state changes ---------------------------------------------------------------------
    def synic_written(self, p: Partition, vp: Vp, name: int) -> None:
        for sint in range(HV_SYNIC_SINT_COUNT):
            if vp.synic.queues[sint]:
                self._scan(p, vp, sint)

    def rescan_all(self) -> None:
        """Retry delivery on every VP (after a fault that held slots busy ends)."""
        for p in list(self.partitions.values()):
            for vp in list(p.vps.values()):
                self.synic_written(p, vp, int(R.Eom))

    def free_port_messages(self, port: Port) -> None:
        for msg in [m for m in self.undelivered.values() if m.port is port]:
            if msg.fate is Fate.QUEUED:
                target = self.partitions[msg.dst_partition].vps[msg.dst_vp]
                target.synic.queues[msg.sint].remove(msg)
            self._end(msg, Fate.FREED, "port_deleted")

    def free_vp_messages(self, p: Partition, vp: Vp) -> None:
        for queue in vp.synic.queues:
            while queue:
                self._end(queue.popleft(), Fate.FREED, "vp_deleted")

    # --- helpers ---------------------------------------------------------------------------------
    def _through(
        self, caller: Partition, connection_id: int, port_type: int
    ) -> tuple[HvStatus, Partition | None, Port | None]:
        """The port a caller's connection leads to, if it still exists and takes *port_type*."""
        conn = caller.connections.get(connection_id)
        if conn is None:
            return S.INVALID_CONNECTION_ID, None, None
        owner = self.partitions.get(conn.port_partition_id)
        port = conn.target
        if owner is None or port is None or owner.ports.get(port.id) is not port:
            return S.INVALID_PORT_ID, None, None
        if owner.state is not PartitionState.ACTIVE or port.type != port_type:
            return S.INVALID_PORT_ID, None, None
        return OK, owner, port

    def _port_vp(self, owner: Partition, port: Port, enabled: Enabled) -> tuple[HvStatus, Vp | None]:
        """The VP a port delivers to now; for HV_ANY_VP, round-robin over VPs that can take it."""
        if port.target_vp != HV_ANY_VP:
            vp = owner.vps.get(port.target_vp)
            if vp is None:
                return S.INVALID_VP_INDEX, None
            return (OK, vp) if enabled(vp.regs) else (S.INVALID_SYNIC_STATE, None)
        if not owner.vps:
            return S.INVALID_VP_INDEX, None
        ready = [vp for _, vp in sorted(owner.vps.items()) if enabled(vp.regs)]
        if not ready:
            return S.INVALID_SYNIC_STATE, None
        port.next_vp += 1
        return OK, ready[(port.next_vp - 1) % len(ready)]

    def _ring(self, p: Partition, vp_index: int, conn: Connection) -> None:
        owner = self.partitions.get(conn.port_partition_id)
        port = conn.target
        if owner is None or port is None or owner.ports.get(port.id) is not port:
            return  # the port is gone: the write is an ordinary memory write
        if self.config.doorbell_coalesce and any(
            m.port is port and m.kind is Kind.DOORBELL for m in self.undelivered.values()
        ):
            self.doorbells["coalesced"] += 1
            self.log.emit("doorbell.coalesced", partition=p.id, vp=vp_index, port=port.id)
            return
        status, vp = self._port_vp(owner, port, sim_enabled)
        if vp is None:
            self.doorbells["lost"] += 1
            self.log.emit("doorbell.lost", partition=p.id, vp=vp_index, port=port.id, status=status.name)
            return
        self.doorbells["rung"] += 1
        # Linux mshv's notification: a SynicSintIntercept message whose payload is the port id.
        header = MESSAGE_HEADER.pack((MessageType.SynicSintIntercept, 4, 0, 0, p.id))
        data = header + port.id.to_bytes(4, "little") + bytes(HV_MESSAGE_PAYLOAD_SIZE - 4)
        self._send(
            Message(self.new_message_id(), Kind.DOORBELL, p.id, vp_index, owner.id, vp.index,
                    port.target_sint, data, port)
        )  # fmt: skip

    def send_message(self, msg: Message) -> None:
        self._send(msg)

    def _blocked(self, p: Partition, vp: Vp, sint: int) -> bool:
        return self.interposer is not None and self.interposer.slot_blocked(p.id, vp.index, sint)

    def _log_posted(self, msg: Message, **extra: object) -> None:
        sender = self.partitions.get(msg.src_partition)
        if sender is not None:
            sender.messages_posted += 1
        self.log.emit(
            "message.posted",
            id=msg.id,
            kind=msg.kind.value,
            src_partition=msg.src_partition,
            src_vp=msg.src_vp,
            dst_partition=msg.dst_partition,
            dst_vp=msg.dst_vp,
            sint=msg.sint,
            port=msg.port.id if msg.port is not None else None,
            **extra,
        )

    # --- transit and delivery --------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        """The message leaves its sender; it reaches the target queue after the transit time."""
        self.undelivered[msg.id] = msg
        delay = self.config.message_latency_ns
        fault = None
        if self.interposer is not None:
            fault = self.interposer.on_message(
                msg.src_partition, msg.dst_partition, msg.dst_vp, msg.sint, msg.kind.value
            )
        if fault is None:
            self._log_posted(msg)
            self.effects.schedule(delay, lambda: self._arrive(msg))
            return
        self._log_posted(msg, fault=fault.fault)
        if fault.drop:
            self._end(msg, Fate.DROPPED, fault.fault)
            return
        delay += fault.extra_ns
        self.effects.schedule(delay, lambda: self._arrive(msg))
        if fault.duplicate_after_ns is not None:
            copy = Message(self.new_message_id(), msg.kind, msg.src_partition, msg.src_vp, msg.dst_partition,
                           msg.dst_vp, msg.sint, msg.data, msg.port, flag=msg.flag)  # fmt: skip
            self.undelivered[copy.id] = copy
            self._log_posted(copy, fault=fault.fault, copy_of=msg.id)
            self.effects.schedule(delay + fault.duplicate_after_ns, lambda: self._arrive(copy))

    def _arrive(self, msg: Message) -> None:
        if msg.fate is not Fate.IN_FLIGHT:
            return  # freed in transit: its port was deleted
        p = self.partitions.get(msg.dst_partition)
        vp = p.vps.get(msg.dst_vp) if p is not None else None
        if p is None or vp is None:
            self._end(msg, Fate.FREED, "vp_deleted")
            return
        if msg.kind is Kind.EVENT:
            self._set_flag(p, vp, msg)
            return
        msg.fate = Fate.QUEUED
        vp.synic.queues[msg.sint].append(msg)
        self._scan(p, vp, msg.sint)

    def _scan(self, p: Partition, vp: Vp, sint: int) -> None:
        """Deliver the head of (VP, SINT)'s queue if its slot can take it."""
        synic = vp.synic
        queue = synic.queues[sint]
        if not queue or not sim_enabled(vp.regs):
            return
        if synic.slot_type(sint):
            synic.set_pending(sint)  # the guest will find MessagePending and write EOM
            return
        if self._blocked(p, vp, sint):
            return
        msg = queue.popleft()
        data = bytearray(msg.data)
        data[5] = HV_MESSAGE_FLAG_PENDING if queue else 0
        msg.data = bytes(data)
        self._deliver(p, vp, msg)

    def _deliver(self, p: Partition, vp: Vp, msg: Message) -> None:
        vp.synic.write_slot(msg.sint, msg.data)
        self._finish(msg)
        self._log_delivered(p, vp, msg)
        self._interrupt(p, vp, msg.sint)

    def _log_delivered(self, p: Partition, vp: Vp, msg: Message, **extra: object) -> None:
        self.log.emit(
            "message.delivered",
            id=msg.id,
            port=msg.port.id if msg.port is not None else None,
            src_partition=msg.src_partition,
            src_vp=msg.src_vp,
            dst_partition=p.id,
            dst_vp=vp.index,
            sint=msg.sint,
            **extra,
        )

    def _set_flag(self, p: Partition, vp: Vp, msg: Message) -> bool:
        newly = vp.synic.set_flag(msg.sint, msg.flag)
        self._finish(msg)
        self._log_delivered(p, vp, msg, flag=msg.flag, newly=newly)
        if newly:
            self._interrupt(p, vp, msg.sint)
        return newly

    def _interrupt(self, p: Partition, vp: Vp, sint: int) -> None:
        if not vp.regs[_SINT0 + sint] & _NO_INTERRUPT:  # masked: the interrupt is lost
            self.effects.sint_interrupt(p, vp, sint)

    def _finish(self, msg: Message) -> None:
        msg.fate = Fate.DELIVERED
        target = self.partitions[msg.dst_partition].vps[msg.dst_vp]
        target.messages_received += 1
        self.undelivered.pop(msg.id, None)
        if msg.holds_buffer and msg.port is not None:
            msg.port.buffers_in_use -= 1

    def _end(self, msg: Message, fate: Fate, reason: str) -> None:
        """The message will never be delivered: freed (*reason*) or dropped by fault *reason*."""
        msg.fate = fate
        self.undelivered.pop(msg.id, None)
        if msg.holds_buffer and msg.port is not None:
            msg.port.buffers_in_use -= 1
        if fate is Fate.DROPPED:
            self.log.emit("message.dropped", id=msg.id, fault=reason)
        else:
            self.log.emit("message.freed", id=msg.id, reason=reason)
