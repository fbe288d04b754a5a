"""Port and connection hypercalls: CreatePort, DeletePort, ConnectPort, DisconnectPort (HYPERCALLS.md
4.37-4.40, 5.5).

A port is a receiving endpoint charged to its owner's pool (the port and its 16 message buffers); a
connection is a sending endpoint charged to its owner's pool. Caller rules: the parent of the
partition named, or that partition itself, and in both cases the CreatePort / ConnectPort privilege
(the strict reading of the legacy reference). Messages through them: ``hvsim.actors.messages``.
"""

from __future__ import annotations

from hvsim.actors.hvdef import (
    CONNECT_PORT_INPUT,
    CONNECTION_INFO,
    CREATE_PORT_INPUT,
    DOORBELL_FLAGS_KNOWN,
    DOORBELL_TRIGGER_BYTES,
    HV_ANY_VP,
    HV_EVENT_FLAGS_COUNT,
    HV_PAGE_SIZE,
    HV_SYNIC_SINT_COUNT,
    PORT_ID_INPUT,
    PORT_ID_MASK,
    PORT_INFO,
    HvStatus,
    PartitionPrivilege,
    PortType,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Connection, Partition, PartitionState, Port
from hvsim.actors.state import OK, HvState, proximity_ok

S = HvStatus
CREATE_PORT = int(PartitionPrivilege.CreatePort)
CONNECT_PORT = int(PartitionPrivilege.ConnectPort)


class PortCalls(HvState):
    def create_port(self, call: Call) -> HvStatus:
        inp = CREATE_PORT_INPUT.unpack(call.input)
        status, owner = self.self_or_child(call.caller, inp.port_partition_id, CREATE_PORT)
        if owner is None:
            return status
        allowed = inp.connection_partition_id
        if allowed:
            other = self.resolve(call.caller, allowed)
            if other is None or other is owner:
                return S.INVALID_PARTITION_ID
            if other.state is not PartitionState.ACTIVE:
                return S.INVALID_PARTITION_STATE
            allowed = other.id
        if inp.port_id & ~PORT_ID_MASK or inp.port_id in owner.ports:
            return S.INVALID_PORT_ID
        info = PORT_INFO.unpack(inp.port_info)
        if inp.reserved_z0 or inp.port_vtl or inp.min_connection_vtl or info.padding:
            return S.INVALID_PARAMETER  # only VTL 0 exists in this model
        if not proximity_ok(inp.proximity_domain_info):
            return S.INVALID_PARAMETER
        port = Port(inp.port_id, info.port_type, allowed)
        if info.port_type == PortType.Monitor:
            port.monitor_address = info.target_sint | (info.target_vp << 32)
            if port.monitor_address % HV_PAGE_SIZE:
                return S.INVALID_ALIGNMENT
        elif info.port_type in (PortType.Message, PortType.Event, PortType.Doorbell):
            if not 1 <= info.target_sint < HV_SYNIC_SINT_COUNT:
                return S.INVALID_PARAMETER  # SINT 0 is the hypervisor's
            if info.target_vp != HV_ANY_VP and info.target_vp not in owner.vps:
                return S.INVALID_VP_INDEX
            port.target_sint, port.target_vp = info.target_sint, info.target_vp
            if info.port_type == PortType.Event:
                end = info.base_flag_number + info.flag_count
                limit = HV_EVENT_FLAGS_COUNT - (1 if self.config.event_flags_end_exclusive else 0)
                if info.flag_count == 0 or end > limit or info.reserved:
                    return S.INVALID_PARAMETER
                port.base_flag, port.flag_count = info.base_flag_number, info.flag_count
            elif info.base_flag_number or info.flag_count or info.reserved:
                return S.INVALID_PARAMETER
        else:
            return S.INVALID_PARAMETER
        if not self.charge(owner, f"port:{port.id}", self.config.page_costs.port):
            return S.INSUFFICIENT_MEMORY
        owner.ports[port.id] = port
        self.log.emit("port.created", partition=owner.id, port=port.id, type=PortType(port.type).name)
        self.pool_changed(owner)
        return OK

    def delete_port(self, call: Call) -> HvStatus:
        inp = PORT_ID_INPUT.unpack(call.input)
        status, owner = self.self_or_child(call.caller, inp.partition_id, CREATE_PORT)
        if owner is None:
            return status
        if inp.flags:
            return S.INVALID_PARAMETER
        port = owner.ports.get(inp.id)
        if port is None:
            return S.INVALID_PORT_ID
        self.remove_port(owner, port)
        self.pool_changed(owner)
        return OK

    def connect_port(self, call: Call) -> HvStatus:
        inp = CONNECT_PORT_INPUT.unpack(call.input)
        status, owner = self.self_or_child(call.caller, inp.connection_partition_id, CONNECT_PORT)
        if owner is None:
            return status
        target = self.resolve(call.caller, inp.port_partition_id)
        if target is None:
            return S.INVALID_PARTITION_ID
        if target.state is not PartitionState.ACTIVE:
            return S.INVALID_PARTITION_STATE
        if inp.connection_id & ~PORT_ID_MASK or inp.connection_id in owner.connections:
            return S.INVALID_CONNECTION_ID
        port = target.ports.get(inp.port_id) if not inp.port_id & ~PORT_ID_MASK else None
        if port is None or (port.connection_partition_id not in (0, owner.id)):
            return S.INVALID_PORT_ID
        if port.connection is not None and self.config.port_single_connection:
            return S.INVALID_PORT_ID
        info = CONNECTION_INFO.unpack(inp.connection_info)
        if inp.connection_vtl or inp.reserved_z0 or inp.reserved_z1 or inp.reserved_z2 or info.padding:
            return S.INVALID_PARAMETER
        if not proximity_ok(inp.proximity_domain_info) or info.port_type != port.type:
            return S.INVALID_PARAMETER
        if port.type in (PortType.Message, PortType.Event) and (
            info.address or info.trigger_value or info.flags
        ):
            return S.INVALID_PARAMETER
        if port.type == PortType.Monitor and info.address % HV_PAGE_SIZE:
            return S.INVALID_ALIGNMENT
        if port.type == PortType.Doorbell:
            size = DOORBELL_TRIGGER_BYTES.get(info.flags & 0x7)
            size = max(size, 1) if size is not None else None  # "any size": at least one byte
            crosses = size is None or (info.address % HV_PAGE_SIZE) + size > HV_PAGE_SIZE
            if info.flags & ~DOORBELL_FLAGS_KNOWN or crosses:
                return S.INVALID_PARAMETER
        if not self.charge(owner, f"conn:{inp.connection_id}", self.config.page_costs.connection):
            return S.INSUFFICIENT_MEMORY
        owner.connections[inp.connection_id] = Connection(
            inp.connection_id,
            target.id,
            port.id,
            port.type,
            info.address,
            info.trigger_value,
            info.flags,
            port,
        )
        port.connection = (owner.id, inp.connection_id)
        self.log.emit(
            "port.connected",
            partition=owner.id,
            connection=inp.connection_id,
            port_partition=target.id,
            port=port.id,
        )
        self.pool_changed(owner)
        return OK

    def disconnect_port(self, call: Call) -> HvStatus:
        inp = PORT_ID_INPUT.unpack(call.input)
        status, owner = self.self_or_child(call.caller, inp.partition_id, CONNECT_PORT)
        if owner is None:
            return status
        if inp.flags & ~1:  # bit 0: IsDoorbell (Linux)
            return S.INVALID_PARAMETER
        conn = owner.connections.get(inp.id)
        if conn is None:
            return S.INVALID_CONNECTION_ID
        self.remove_connection(owner, conn)
        self.pool_changed(owner)
        return OK

    # --- teardown (also used by FinalizePartition) ----------------------------------------------
    def remove_port(self, owner: Partition, port: Port) -> None:
        """Delete a port and free its messages, queued or in transit; a connection to it stays but
        leads nowhere (sends fail INVALID_PORT_ID)."""
        self.free_port_messages(port)
        del owner.ports[port.id]
        owner.pool.release(f"port:{port.id}")
        self.log.emit("port.deleted", partition=owner.id, port=port.id)

    def remove_connection(self, owner: Partition, conn: Connection) -> None:
        del owner.connections[conn.id]
        owner.pool.release(f"conn:{conn.id}")
        target = self.partitions.get(conn.port_partition_id)
        port = target.ports.get(conn.port_id) if target is not None else None
        if port is not None and port.connection == (owner.id, conn.id):
            port.connection = None
        self.log.emit("port.disconnected", partition=owner.id, connection=conn.id)

    def remove_endpoints(self, owner: Partition) -> None:
        for conn in list(owner.connections.values()):
            self.remove_connection(owner, conn)
        for port in list(owner.ports.values()):
            self.remove_port(owner, port)
