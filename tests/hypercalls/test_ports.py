"""Ports and connections from the caller's side (HYPERCALLS.md 4.37-4.40, conformance 7.7 104-112)."""

from __future__ import annotations

import pytest

from hvsim.actors.hvdef import (
    CONNECT_PORT_INPUT,
    CONNECTION_INFO,
    CREATE_PORT_INPUT,
    HV_ANY_VP,
    PORT_ID_INPUT,
    PORT_INFO,
    ConnectionInfo,
    ConnectPortInput,
    CreatePortInput,
    HvStatus,
    HypercallCode,
    PartitionPrivilege,
    PortIdInput,
    PortInfo,
    PortType,
    control,
)
from hvsim.scenarios import HostApi, Simulation
from hvsim.scenarios.host import GUEST_PRIVILEGES, PartitionSpec, ReferenceHost

S = HvStatus
C = HypercallCode
PP = PartitionPrivilege


class Two:
    """The root with two ACTIVE children A and B (2 VPs each, pages to spare)."""

    def __init__(self) -> None:
        self.sim = Simulation(0)
        host = ReferenceHost(self.sim)
        self.a = self.sim.run_process(host.boot(PartitionSpec(vps=2, initial_pages=400)))
        self.b = self.sim.run_process(host.boot(PartitionSpec(vps=2, initial_pages=400)))
        self.api = HostApi(self.sim)

    def call(self, code: int, data: bytes, caller: int | None = None) -> HvStatus:
        return self.sim.hypercall(control(code), data, caller=caller).status

    def create_port(
        self, owner: int, port_id: int = 1, *, ptype: int = PortType.Message, sint: int = 2, vp: int = 0,
        allowed: int | None = None, base: int = 0, count: int = 0, caller: int | None = None,
    ) -> HvStatus:  # fmt: skip
        info = PORT_INFO.pack(PortInfo(ptype, 0, sint, vp, base, count, 0))
        conn = self.b if allowed is None else allowed
        return self.call(
            C.CreatePort,
            CREATE_PORT_INPUT.pack(CreatePortInput(owner, port_id, 0, 0, 0, conn, info, 0)),
            caller,
        )

    def connect(
        self, owner: int, conn_id: int, port_owner: int, port_id: int = 1, ptype: int = PortType.Message,
        caller: int | None = None,
    ) -> HvStatus:  # fmt: skip
        info = CONNECTION_INFO.pack(ConnectionInfo(ptype, 0, 0, 0, 0))
        data = CONNECT_PORT_INPUT.pack(
            ConnectPortInput(owner, conn_id, 0, 0, 0, port_owner, port_id, 0, info, 0)
        )
        return self.call(C.ConnectPort, data, caller)

    def in_use(self, pid: int) -> int:
        return self.sim.run_process(self.api.balance(pid))[1].pages_in_use


@pytest.fixture
def two() -> Two:
    return Two()


def test_create_connect_disconnect_delete_round_trip(two: Two) -> None:
    assert two.create_port(two.a) is S.SUCCESS
    assert two.connect(two.b, 7, two.a) is S.SUCCESS
    assert two.call(C.DisconnectPort, PORT_ID_INPUT.pack(PortIdInput(two.b, 7, 0))) is S.SUCCESS
    assert two.call(C.DeletePort, PORT_ID_INPUT.pack(PortIdInput(two.a, 1, 0))) is S.SUCCESS
    assert two.call(C.DeletePort, PORT_ID_INPUT.pack(PortIdInput(two.a, 1, 0))) is S.INVALID_PORT_ID
    assert two.call(C.DisconnectPort, PORT_ID_INPUT.pack(PortIdInput(two.b, 7, 0))) is S.INVALID_CONNECTION_ID


def test_7_7_104_sint_0_is_reserved(two: Two) -> None:
    assert two.create_port(two.a, sint=0) is S.INVALID_PARAMETER
    assert two.create_port(two.a, sint=16) is S.INVALID_PARAMETER


def test_7_7_105_reserved_port_id_bits(two: Two) -> None:
    assert two.create_port(two.a, port_id=0x0100_0001) is S.INVALID_PORT_ID


def test_7_7_106_duplicate_port_id(two: Two) -> None:
    assert two.create_port(two.a) is S.SUCCESS
    assert two.create_port(two.a) is S.INVALID_PORT_ID


def test_7_7_107_port_and_connection_partition_the_same(two: Two) -> None:
    assert two.create_port(two.a, allowed=two.a) is S.INVALID_PARTITION_ID


def test_7_7_108_target_vp_must_exist_or_be_any(two: Two) -> None:
    assert two.create_port(two.a, vp=9) is S.INVALID_VP_INDEX
    assert two.create_port(two.a, vp=HV_ANY_VP) is S.SUCCESS


def test_7_7_109_event_port_flag_range(two: Two) -> None:
    assert two.create_port(two.a, ptype=PortType.Event, count=0) is S.INVALID_PARAMETER
    assert (
        two.create_port(two.a, ptype=PortType.Event, base=2000, count=48) is S.INVALID_PARAMETER
    )  # 2048: exclusive
    assert two.create_port(two.a, ptype=PortType.Event, base=2000, count=47) is S.SUCCESS


def test_7_7_110_port_charges_its_owner_and_delete_refunds(two: Two) -> None:
    before = two.in_use(two.a)
    assert two.create_port(two.a) is S.SUCCESS
    assert two.in_use(two.a) == before + two.sim.config.page_costs.port
    b_before = two.in_use(two.b)
    assert two.connect(two.b, 1, two.a) is S.SUCCESS
    assert two.in_use(two.b) == b_before + two.sim.config.page_costs.connection
    assert two.call(C.DeletePort, PORT_ID_INPUT.pack(PortIdInput(two.a, 1, 0))) is S.SUCCESS
    assert two.in_use(two.a) == before


def test_7_7_111_only_the_named_partition_may_connect(two: Two) -> None:
    assert two.create_port(two.a) is S.SUCCESS  # allowed: B
    assert two.connect(two.sim.root_id, 1, two.a) is S.INVALID_PORT_ID


def test_7_7_112_duplicate_connection_id(two: Two) -> None:
    assert two.create_port(two.a, port_id=1) is S.SUCCESS
    assert two.create_port(two.a, port_id=2) is S.SUCCESS
    assert two.connect(two.b, 5, two.a, 1) is S.SUCCESS
    assert two.connect(two.b, 5, two.a, 2) is S.INVALID_CONNECTION_ID


def test_a_port_takes_one_connection_unless_configured(two: Two) -> None:
    assert two.create_port(two.a, allowed=0) is S.SUCCESS  # anyone may connect
    assert two.connect(two.b, 1, two.a) is S.SUCCESS
    assert two.connect(two.b, 2, two.a) is S.INVALID_PORT_ID


def test_connection_type_must_match_the_port(two: Two) -> None:
    assert two.create_port(two.a) is S.SUCCESS
    assert two.connect(two.b, 1, two.a, ptype=PortType.Event) is S.INVALID_PARAMETER


def test_finalize_deletes_ports_and_connections_and_frees_their_pages(two: Two) -> None:
    assert two.create_port(two.a) is S.SUCCESS
    assert two.connect(two.b, 3, two.a) is S.SUCCESS
    assert two.sim.run_process(two.api.finalize_partition(two.b)) is S.SUCCESS
    assert two.sim.hv.partitions[two.b].connections == {}
    assert two.sim.hv.partitions[two.a].ports[1].connection is None  # the port may be connected again
    assert two.sim.run_process(two.api.balance(two.b))[1].pages_in_use == 0


def test_privileges_and_parenthood(two: Two) -> None:
    # A child may create ports on itself only with CreatePort; the reference host does not grant it.
    assert two.create_port(two.a, caller=two.a) is S.ACCESS_DENIED
    assert two.create_port(two.b, caller=two.a) is S.ACCESS_DENIED  # not A's child, and no privilege
    assert GUEST_PRIVILEGES & PP.CreatePort == 0
    assert two.create_port(0x1234) is S.INVALID_PARTITION_ID


def test_a_child_with_the_privileges_manages_its_own_endpoints() -> None:
    sim = Simulation(0)
    host = ReferenceHost(sim)
    rights = GUEST_PRIVILEGES | int(PP.CreatePort | PP.ConnectPort)
    a = sim.run_process(host.boot(PartitionSpec(vps=1, initial_pages=400, privileges=rights)))
    b = sim.run_process(host.boot(PartitionSpec(vps=1, initial_pages=400, privileges=rights)))
    info = PORT_INFO.pack(PortInfo(PortType.Message, 0, 3, 0, 0, 0, 0))
    data = CREATE_PORT_INPUT.pack(CreatePortInput(0xFFFF_FFFF_FFFF_FFFF, 9, 0, 0, 0, b, info, 0))
    assert sim.hypercall(control(C.CreatePort), data, caller=a).status is S.SUCCESS
    cinfo = CONNECTION_INFO.pack(ConnectionInfo(PortType.Message, 0, 0, 0, 0))
    cdata = CONNECT_PORT_INPUT.pack(ConnectPortInput(0xFFFF_FFFF_FFFF_FFFF, 4, 0, 0, 0, a, 9, 0, cinfo, 0))
    assert sim.hypercall(control(C.ConnectPort), cdata, caller=b).status is S.SUCCESS
