"""Scenarios that talk through the SynIC: a VMBus-like request/response channel between two children,
and a doorbell that lets a guest notify the host.

Both are built the way a real virtualization stack builds them: the parent creates the ports and
connections (the children never see each other's ids until the parent tells them), the guests
enable their own SynIC, and every message crosses the hypervisor with its transit latency.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import Any

import simpy

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    HV_SYNIC_DOORBELL_SINT,
    HvStatus,
    PortType,
)
from hvsim.actors.workload import Compute, MemoryWrite, Op, Program, ReceiveMessage, WaitEvent
from hvsim.scenarios.host import PartitionSpec, ReferenceHost, new_host
from hvsim.scenarios.library import scenario
from hvsim.scenarios.simulation import Simulation
from hvsim.scenarios.workload import enable_synic, post_message, signal_event, start_ap

S = HvStatus
Gen = Generator[simpy.Event, Any, Any]
MS = 1_000_000

#: The channel's SINTs (Linux/openvmm convention: SINT 2 carries VMBus messages) and vectors.
MESSAGE_SINT, EVENT_SINT = 2, 3
GUEST_SINTS = {MESSAGE_SINT: 0x30, EVENT_SINT: 0x31}
#: Message types on the channel (guest-defined: bit 31 clear).
OFFER, REQUEST, RESPONSE = 1, 2, 3
#: Ids the parent assigns. In each child: port 1 receives messages, port 2 receives events;
#: connection 1 sends messages to the peer, connection 2 signals the peer's event port.
MSG_PORT, EVENT_PORT, MSG_CONN, EVENT_CONN = 1, 2, 1, 2
_REQ = struct.Struct("<QQ")


def client_program(think_ns: int, timeout_ns: int) -> Program:
    """Send a request, wait for the server's completion signal, then take the response; a lost
    request or response costs one timeout, after which the client simply sends the next one."""
    setup: tuple[Op, ...] = (*enable_synic(GUEST_SINTS), ReceiveMessage(MESSAGE_SINT))  # the offer
    loop: tuple[Op, ...] = (
        Compute(think_ns),
        post_message(MSG_CONN, REQUEST, _REQ.pack(1, think_ns)),
        WaitEvent(EVENT_SINT, 0, timeout_ns),
        ReceiveMessage(MESSAGE_SINT, timeout_ns),
    )
    return Program(setup, loop, name="vmbus-client", params={"think_ns": think_ns})


def server_program(service_ns: int) -> Program:
    setup: tuple[Op, ...] = (*enable_synic(GUEST_SINTS), ReceiveMessage(MESSAGE_SINT))  # the offer
    loop: tuple[Op, ...] = (
        ReceiveMessage(MESSAGE_SINT),
        Compute(service_ns),
        post_message(MSG_CONN, RESPONSE, _REQ.pack(2, service_ns)),
        signal_event(EVENT_CONN, 0),
    )
    return Program(setup, loop, name="vmbus-server", params={"service_ns": service_ns})


def broker_channel(host: ReferenceHost, a: int, b: int) -> Gen:
    """The parent's part: message and event ports in both children, each connected from the peer."""
    api = host.api
    for owner, peer in ((a, b), (b, a)):
        steps = [
            ("CreatePort(message)", partial(api.create_port, owner, MSG_PORT, PortType.Message,
                                            sint=MESSAGE_SINT, connection_partition=peer)),
            ("CreatePort(event)", partial(api.create_port, owner, EVENT_PORT, PortType.Event,
                                          sint=EVENT_SINT, flag_count=64, connection_partition=peer)),
        ]  # fmt: skip
        yield from _steps(host, owner, steps)
    for owner, peer in ((a, b), (b, a)):
        steps = [
            ("ConnectPort(message)",
             partial(api.connect_port, owner, MSG_CONN, peer, MSG_PORT, PortType.Message)),
            ("ConnectPort(event)",
             partial(api.connect_port, owner, EVENT_CONN, peer, EVENT_PORT, PortType.Event)),
        ]  # fmt: skip
        yield from _steps(host, owner, steps)


def _steps(host: ReferenceHost, pool: int, steps: Sequence[tuple[str, Callable[[], Gen]]]) -> Gen:
    """Issue each call, depositing into *pool* (the structure's owner) when it is short."""
    for step, call in steps:
        status = yield from host.with_memory(call, pool, step)
        host.expect(status, step)


def offer(host: ReferenceHost, partition_id: int, retry_ns: int = 20_000, tries: int = 500) -> Gen:
    """Post the channel offer straight into the child's SINT 2 slot, once its SynIC is up."""
    for _ in range(tries):
        status = yield from host.api.post_message_direct(partition_id, 0, MESSAGE_SINT, OFFER, b"offer")
        if status is S.SUCCESS:
            return
        host.expect(status, "PostMessageDirect(offer)", S.INVALID_SYNIC_STATE, S.OBJECT_IN_USE)
        yield host.sim.env.timeout(retry_ns)
    raise RuntimeError(f"partition {partition_id} never enabled its SynIC for the offer")


def vmbus_session(sim: Simulation, run_ns: int, *, think_ns: int = 5 * MS, service_ns: int = 50_000) -> Gen:
    host = new_host(sim)
    timeout_ns = max(4 * service_ns, MS)
    client = yield from host.boot(
        PartitionSpec(vps=1, program=lambda _i: client_program(think_ns, timeout_ns))
    )
    server = yield from host.boot(PartitionSpec(vps=1, program=lambda _i: server_program(service_ns)))
    yield from broker_channel(host, client, server)
    yield from offer(host, server)
    yield from offer(host, client)
    yield sim.env.timeout(max(0, sim.limits.cap("run_ns", run_ns) - sim.now_ns))
    c, s = sim.vp_actor(client, 0), sim.vp_actor(server, 0)
    if c is not None and s is not None:
        sim.counters.update(
            requests_sent=c.hypercalls - c.failed_calls,  # the client's only hypercall is PostMessage
            responses_received=c.messages_received - 1,
            requests_served=s.messages_received - 1,
            completions_seen=c.events_received,
            client_timeouts=c.wait_timeouts,
        )
    yield from host.teardown(client)
    yield from host.teardown(server)


@scenario(
    "vmbus",
    "two children exchange request/response messages and completion events for a simulated minute "
    "through ports their parent brokered",
    duration_ns=60_000 * MS,
)
def vmbus(sim: Simulation) -> Gen:
    yield from vmbus_session(sim, 60_000 * MS)


# --- doorbells ------------------------------------------------------------------------------------
DOORBELL_PORT, DOORBELL_CONN, DONE_PORT, DONE_CONN = 7, 7, 8, 8
DOORBELL_GPA = 0xF000_0000
#: HV_CONNECTION_INFO doorbell flags: a 4-byte write (size code 3) of any value.
DOORBELL_FLAGS = 0x8000_0003


def doorbell_guest(index: int, vps: int, work_ns: int, timeout_ns: int) -> Program:
    """VP 0 starts the other VPs, rings and waits for the host's completion signal; the other VPs
    ring and move on (their rings coalesce with pending ones)."""
    setup = enable_synic({EVENT_SINT: 0x31})
    if index == 0:
        setup += tuple(start_ap(ap, rip=0x10_0000, rsp=0x20_0000 + 0x1000 * ap) for ap in range(1, vps))
    loop: tuple[Op, ...] = (Compute(work_ns), MemoryWrite(DOORBELL_GPA, index + 1, 4))
    if index == 0:
        loop += (WaitEvent(EVENT_SINT, 0, timeout_ns),)
    return Program(setup, loop, name="doorbell-guest", params={"vp": index, "work_ns": work_ns})


def doorbell_session(
    sim: Simulation, run_ns: int, *, work_ns: int = 200_000, service_ns: int = 20_000
) -> Gen:
    host = new_host(sim)
    api = host.api
    end = sim.limits.cap("run_ns", run_ns)
    vps = sim.limits.cap("vps", 2)
    program: Callable[[int], Program] = lambda i: doorbell_guest(i, vps, work_ns, 4 * MS)  # noqa: E731
    child = yield from host.boot(PartitionSpec(vps=vps, program=program))
    out = yield from api.enable_synic(HV_PARTITION_ID_SELF, 0, {HV_SYNIC_DOORBELL_SINT: 0x35})
    host.expect(out.status, "SetVpRegisters(root SynIC)")
    root = HV_PARTITION_ID_SELF
    yield from _steps(host, root, [
        ("CreatePort(doorbell)", partial(api.create_port, root, DOORBELL_PORT, PortType.Doorbell,
                                         sint=HV_SYNIC_DOORBELL_SINT, connection_partition=child)),
    ])  # fmt: skip
    yield from _steps(host, child, [
        ("CreatePort(done)", partial(api.create_port, child, DONE_PORT, PortType.Event, sint=EVENT_SINT,
                                     flag_count=1, connection_partition=sim.root_id)),
        ("ConnectPort(doorbell)", partial(api.connect_port, child, DOORBELL_CONN, sim.root_id, DOORBELL_PORT,
                                          PortType.Doorbell, address=DOORBELL_GPA, flags=DOORBELL_FLAGS)),
    ])  # fmt: skip
    yield from _steps(
        host,
        root,
        [
            (
                "ConnectPort(done)",
                partial(api.connect_port, root, DONE_CONN, child, DONE_PORT, PortType.Event),
            ),
        ],
    )
    notifications = completions = 0
    while sim.now_ns < end:
        message = yield from host.take_message(HV_SYNIC_DOORBELL_SINT, timeout_ns=end - sim.now_ns)
        if message is None:
            break
        notifications += 1
        yield sim.env.timeout(service_ns)
        status = yield from api.signal_event(DONE_CONN, 0)
        completions += status is S.SUCCESS
    guest = [sim.vp_actor(child, i) for i in range(vps)]
    sim.counters.update(
        doorbell_writes=sum(a.memory_writes for a in guest if a is not None),
        notifications=notifications,
        completions_signaled=completions,
        **{f"doorbells_{k}": v for k, v in sim.hv.doorbells.items()},
    )
    yield from host.stop_vps(child, vps)
    host.expect((yield from api.disconnect_port(root, DONE_CONN)), "DisconnectPort(done)")
    host.expect((yield from api.delete_port(root, DOORBELL_PORT)), "DeletePort(doorbell)")
    yield from host.teardown(child)


@scenario(
    "doorbell",
    "a guest's doorbell writes notify the host on SINT 5; the host signals completions",
    duration_ns=200 * MS,
)
def doorbell(sim: Simulation) -> Gen:
    yield from doorbell_session(sim, 200 * MS)
