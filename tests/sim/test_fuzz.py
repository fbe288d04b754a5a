"""Fuzzing the hypercall ABI: no input, however malformed, raises a Python exception out of the
hypervisor, and every answer is a well-formed result value (HYPERCALLS.md 1.1, 1.2, 1.4-1.6).

Each example builds one world with a child in every state (``build_world``), then issues a short
sequence of hypercalls against it from the root and from ACTIVE children's VPs: control words drawn
from all 64-bit values and from near-valid ones (an implemented code with random rep fields, fast
bit, variable header size and reserved bits), input blocks of random bytes and of valid layouts
filled with random (and pointedly chosen) field values, and random parameter-block GPAs. Half the
calls are issued in the same instant as the next pending event (typically a guest's own hypercall),
where actor races live. After every call the state checkers must pass; at the end the log's state
transitions must be legal. A fixed list of famous bad inputs pins the statuses section 1 decides.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvsim.actors.config import HvConfig
from hvsim.actors.core import CALL_TABLE
from hvsim.actors.hvdef import (
    CONNECT_PORT_INPUT,
    CONNECTION_INFO,
    CREATE_PARTITION_INPUT,
    CREATE_PORT_INPUT,
    CREATE_VP_INPUT,
    DELETE_VP_INPUT,
    FAST_BIT,
    GET_NEXT_CHILD_PARTITION_INPUT,
    GET_PARTITION_PROPERTY_INPUT,
    HV_ANY_VP,
    HV_COMPATIBILITY_21_H2,
    HV_PAGE_SIZE,
    HV_PARTITION_ID_SELF,
    HV_VP_INDEX_SELF,
    INITIAL_VP_CONTEXT,
    MEMORY_POOL_INPUT,
    NESTED_BIT,
    PARTITION_ID_INPUT,
    PARTITION_PROPERTY_EX_INPUT,
    PORT_ID_INPUT,
    PORT_INFO,
    REGISTER_ASSOC,
    REP_COUNT_SHIFT,
    REP_START_SHIFT,
    SET_PARTITION_PROPERTY_INPUT,
    START_VIRTUAL_PROCESSOR_HEADER,
    VARHDR_SHIFT,
    VP_REGISTERS_INPUT,
    ConnectionInfo,
    ConnectPortInput,
    CreatePartitionInput,
    CreatePortInput,
    CreateVpInput,
    CreationFlags,
    DeleteVpInput,
    GetNextChildPartitionInput,
    GetPartitionPropertyInput,
    HvStatus,
    HypercallCode,
    MemoryPoolInput,
    PartitionIdInput,
    PartitionPrivilege,
    PartitionPropertyExInput,
    PortIdInput,
    PortInfo,
    PropertyCode,
    RegisterAssoc,
    RegisterName,
    SetPartitionPropertyInput,
    StartVirtualProcessorHeader,
    VpRegistersInput,
    control,
    proximity_info,
)
from hvsim.actors.hypercall import HypercallResult
from hvsim.actors.workload import Compute, Hypercall, Program
from hvsim.scenarios import HostApi, Simulation, checkers
from hvsim.scenarios.workload import guest_os, start_ap

C = HypercallCode
S = HvStatus
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF
U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

HOST_PAGES = 4096
#: Result value bits that must be zero: 31:16 and 63:44 (HYPERCALLS.md 1.2, erratum D1).
RESULT_RESERVED_BITS = 0xFFFF_0000 | (0xF_FFFF << 44)
#: Statuses from the control-word checks (steps 1-3 of HYPERCALLS.md 1.5): reps completed is 0
#: there, whatever the rep start says.
CONTROL_LEVEL = frozenset({S.INVALID_HYPERCALL_CODE, S.INVALID_HYPERCALL_INPUT})
IMPLEMENTED = sorted(int(code) for code in CALL_TABLE)
HOST_LIKE = int(
    HvConfig().child_default_privileges
    | PP.CreatePartitions
    | PP.AccessMemoryPool
    | PP.AccessVpRegisters
    | PP.StartVirtualProcessor
)


# --- the world ------------------------------------------------------------------------------------
@dataclass
class World:
    sim: Simulation
    root: int
    created: int
    #: ACTIVE, host-like privileges, VPs 0 and 1, running the default guest.
    active: int
    #: ACTIVE, default privileges, VP 0 running (the idle guest: it halts).
    plain: int
    finalized: int
    deleted: int

    @property
    def ids(self) -> list[int]:
        return [self.root, self.created, self.active, self.plain, self.finalized, self.deleted]

    def callers(self) -> list[tuple[int, int]]:
        """Every (partition, VP) that exists right now (fuzzed calls may have removed some)."""
        hv = self.sim.hv
        return [
            (pid, vp)
            for pid in (self.root, self.active, self.plain)
            if pid in hv.partitions
            for vp in sorted(hv.partitions[pid].vps)
        ]

    def pooled_pages(self) -> list[int]:
        return sorted(page for p in self.sim.hv.partitions.values() for page in p.pool.available)


def build_world(seed: int = 0) -> World:
    """The root's pool funded; a CREATED child with a few pages, two ACTIVE children, a FINALIZED
    child whose pool still holds pages, and the id of a deleted one."""
    sim = Simulation(seed, config=HvConfig(host_pages=HOST_PAGES))
    api = HostApi(sim)
    costs = sim.config.page_costs

    def ok(status: HvStatus) -> None:
        assert status is S.SUCCESS, status

    def fund(pid: int, n: int) -> None:
        out = sim.run_process(api.deposit(pid, sim.alloc_host_pages(n)))
        assert (out.status, out.reps_completed) == (S.SUCCESS, n)

    def child(privileges: int | None = None) -> int:
        status, pid = sim.run_process(api.create_partition())
        ok(status)
        if privileges is not None:
            ok(sim.run_process(api.set_property(pid, PropertyCode.PrivilegeFlags, privileges)))
        return pid

    def activate(pid: int, vps: int, run: bool) -> None:
        fund(pid, costs.initialize_partition + costs.create_vp * vps + 16)
        ok(sim.run_process(api.initialize_partition(pid)))
        for index in range(vps):
            ok(sim.run_process(api.create_vp(pid, index)))
        if run:
            ok(sim.run_process(api.set_registers(pid, 0, {RegisterName.ExplicitSuspend: 0})).status)

    fund(SELF, 32)
    created = child()
    fund(created, 5)
    active = child(HOST_LIKE)
    sim.load_guest(active, lambda i: guest_os(sim.rng("workload", active, i), i, 2, slice_ns_mean=20_000))
    activate(active, 2, run=True)
    plain = child()
    activate(plain, 1, run=True)
    finalized = child()
    activate(finalized, 1, run=False)
    ok(sim.run_process(api.finalize_partition(finalized)))
    deleted = child()
    ok(sim.run_process(api.delete_partition(deleted)))
    sim.run(sim.now_ns + 300_000)  # the guests boot (VP 0 of `active` starts its AP)
    assert checkers.check_state(sim.hv) == []
    return World(sim, sim.root_id, created, active, plain, finalized, deleted)


# --- judging a result -------------------------------------------------------------------------------
def check_result(res: HypercallResult, ctl: int) -> None:
    """The result value is status | reps << 32 with reserved bits clear, and reps completed obeys
    the rep rules: 0 for a simple call; for a rep call, within [rep start, rep count], with progress
    on SUCCESS and an error index below rep count otherwise (HYPERCALLS.md 1.2, 1.6)."""
    assert isinstance(res.status, HvStatus)
    assert res.value & 0xFFFF == res.status
    assert res.value & RESULT_RESERVED_BITS == 0, hex(res.value)
    assert res.reps_completed == (res.value >> 32) & 0xFFF
    value = ctl & U64
    shape = CALL_TABLE.get(value & 0xFFFF)
    if shape is None or not shape.rep:
        assert res.reps_completed == 0
        return
    rep_count = (value >> REP_COUNT_SHIFT) & 0xFFF
    rep_start = (value >> REP_START_SHIFT) & 0xFFF
    if res.status in CONTROL_LEVEL:
        assert res.reps_completed in (0, rep_start)
        return
    assert rep_start <= res.reps_completed <= rep_count
    if res.status is S.SUCCESS:
        assert res.reps_completed > rep_start, "SUCCESS without progress"
    else:
        assert res.reps_completed < rep_count, "an error after every element was done"


def issue(
    w: World,
    ctl: int,
    data: bytes,
    *,
    caller: tuple[int, int] | None = None,
    input_gpa: int | None = None,
    output_gpa: int | None = None,
) -> HypercallResult:
    pid, vp = caller if caller is not None else (w.root, 0)
    res = w.sim.hypercall(ctl, data, caller=pid, vp=vp, input_gpa=input_gpa, output_gpa=output_gpa)
    check_result(res, ctl)
    assert checkers.check_state(w.sim.hv) == []
    assert w.sim.runtime.failures == []
    return res


def finish(w: World) -> None:
    assert checkers.state_transitions(w.sim.log.records()) == []
    w.sim.close()


# --- strategies -------------------------------------------------------------------------------------
u8 = st.integers(0, 0xFF)
u32 = st.integers(0, U32)
u64 = st.integers(0, U64)


def zero_or(s: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), s)


def controls() -> st.SearchStrategy[int]:
    """Any 64-bit value, or an implemented code with random class fields around the valid ones."""
    near = st.builds(
        lambda code, fast, varhdr, count, start, nested, reserved: (
            code
            | (FAST_BIT if fast else 0)
            | (varhdr << VARHDR_SHIFT)
            | (NESTED_BIT if nested else 0)
            | (count << REP_COUNT_SHIFT)
            | (start << REP_START_SHIFT)
            | reserved
        ),
        code=st.sampled_from(IMPLEMENTED),
        fast=st.booleans(),
        varhdr=st.one_of(st.just(0), st.integers(0, 4), st.integers(0, 1023)),
        count=st.one_of(st.integers(0, 8), st.integers(0, 4095), st.sampled_from([511, 512, 513, 4095])),
        start=st.one_of(st.just(0), st.integers(0, 8), st.integers(0, 4095)),
        nested=st.booleans(),
        reserved=st.one_of(
            st.just(0), st.just(0), st.sampled_from([1 << 27, 1 << 30, 1 << 44, 1 << 47, 1 << 60, 1 << 63])
        ),
    )
    return st.one_of(u64, near, near, near)


def weighted(**options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Choose among named strategies with integer weights (``one_of`` would weigh them equally)."""
    names = [name for name, (weight, _) in options.items() for _ in range(weight)]
    return st.sampled_from(names).flatmap(lambda name: options[name][1])


def rep_control(code: int, elements: int) -> st.SearchStrategy[int]:
    """Mostly the right control word for *code* (rep count = the elements supplied, a rep start below
    it), sometimes fast, sometimes anything near it."""
    shape = CALL_TABLE[code]
    if not shape.rep:
        return weighted(
            exact=(6, st.just(control(code))),
            fast=(2, st.just(control(code, fast=True))),
            near=(2, controls()),
        )
    counts = st.just(elements) if elements else st.one_of(st.integers(1, 8), st.integers(1, 600))

    def build(n: int, start: int, fast: bool) -> int:
        return control(code, rep_count=n, rep_start=start % n if start < 4096 else n, fast=fast)

    starts = weighted(zero=(4, st.just(0)), any=(2, st.integers(0, 4095)), count=(1, st.just(4096)))
    return weighted(
        exact=(6, st.builds(build, counts, starts, st.just(False))),
        fast=(2, st.builds(build, counts, st.just(0), st.just(True))),
        near=(2, controls()),
    )


def near_valid_input(code: int, w: World) -> st.SearchStrategy[tuple[bytes, int]]:
    """A layout-correct input block for *code*, fields drawn from pointed and random values, with the
    number of rep elements it carries."""
    pid = weighted(known=(6, st.sampled_from([*w.ids, SELF])), zero=(1, st.just(0)), any=(1, u64))
    vp = st.one_of(st.sampled_from([0, 1, 2, HV_VP_INDEX_SELF, HV_ANY_VP]), u32)
    prop = st.one_of(st.sampled_from(list(PropertyCode)), u32)
    proximity = st.one_of(
        st.just(0),
        st.sampled_from([proximity_info(0, valid=True), proximity_info(64, valid=True), 1 << 63, 1 << 32]),
        u64,
    )
    reg_name = weighted(known=(4, st.sampled_from(list(RegisterName))), any=(1, u32))
    page = weighted(
        free=(3, st.integers(HOST_PAGES // 2, HOST_PAGES - 1)),  # the world uses the low pages
        any_host=(1, st.integers(0, HOST_PAGES + 4)),
        pooled=(1, st.sampled_from(w.pooled_pages() or [HOST_PAGES])),
        any=(1, u64),
    )
    flags = st.one_of(st.just(0), st.sampled_from([int(f) for f in CreationFlags]), u64)
    reserved3 = st.one_of(st.just(bytes(3)), st.binary(min_size=3, max_size=3))

    def fixed(b: bytes) -> tuple[bytes, int]:
        return b, 0

    if code == C.CreatePartition:
        return st.builds(
            lambda *f: fixed(CREATE_PARTITION_INPUT.pack(CreatePartitionInput(*f))),
            flags,
            proximity,
            st.one_of(st.just(HV_COMPATIBILITY_21_H2), u32),
            zero_or(u32),
            zero_or(u64),
            zero_or(u64),
            zero_or(u64),
            zero_or(u64),
        )
    if code in (C.InitializePartition, C.FinalizePartition, C.DeletePartition):
        return pid.map(lambda p: fixed(PARTITION_ID_INPUT.pack(PartitionIdInput(p))))
    if code == C.GetPartitionProperty:
        return st.builds(
            lambda *f: fixed(GET_PARTITION_PROPERTY_INPUT.pack(GetPartitionPropertyInput(*f))),
            pid,
            prop,
            zero_or(u32),
        )
    if code == C.SetPartitionProperty:
        return st.builds(
            lambda *f: fixed(SET_PARTITION_PROPERTY_INPUT.pack(SetPartitionPropertyInput(*f))),
            pid,
            prop,
            zero_or(u32),
            st.one_of(st.integers(0, 300), u64),
        )
    if code in (C.GetPartitionPropertyEx, C.SetPartitionPropertyEx):
        banks = st.integers(0, 4).flatmap(
            lambda n: st.lists(u64, min_size=n, max_size=n).map(
                lambda bs: struct.pack("<H6x", len(bs)) + b"".join(_U64.pack(b) for b in bs)
            )
        )
        value = st.one_of(banks, st.binary(max_size=64), u64.map(_U64.pack))
        return st.builds(
            lambda p, c, pad, arg, v: fixed(
                PARTITION_PROPERTY_EX_INPUT.pack(PartitionPropertyExInput(p, c, pad, arg)) + v
            ),
            pid,
            st.one_of(st.just(PropertyCode.VmmCapabilities), prop),
            zero_or(u32),
            zero_or(u64),
            value,
        )
    if code == C.GetPartitionId:
        return st.just(fixed(b""))
    if code == C.GetNextChildPartition:
        return st.builds(
            lambda *f: fixed(GET_NEXT_CHILD_PARTITION_INPUT.pack(GetNextChildPartitionInput(*f))), pid, pid
        )
    if code == C.CreateVp:
        return st.builds(
            lambda *f: fixed(CREATE_VP_INPUT.pack(CreateVpInput(*f))),
            pid,
            vp,
            reserved3,
            st.one_of(st.integers(0, 4), u8),
            zero_or(u64),
            proximity,
            zero_or(u64),
        )
    if code == C.DeleteVp:
        return st.builds(lambda *f: fixed(DELETE_VP_INPUT.pack(DeleteVpInput(*f))), pid, vp, zero_or(u32))
    if code == C.DepositMemory:
        return st.builds(
            lambda p, pages: (
                PARTITION_ID_INPUT.pack(PartitionIdInput(p)) + b"".join(map(_U64.pack, pages)),
                len(pages),
            ),
            pid,
            st.lists(page, min_size=1, max_size=24),
        )
    if code in (C.WithdrawMemory, C.GetMemoryBalance):
        return st.builds(lambda *f: fixed(MEMORY_POOL_INPUT.pack(MemoryPoolInput(*f))), pid, proximity)
    vtl = st.one_of(st.just(0), st.sampled_from([0x10, 0x11, 0x20]), u8)
    header = st.builds(lambda *f: VP_REGISTERS_INPUT.pack(VpRegistersInput(*f)), pid, vp, vtl, reserved3)
    if code == C.GetVpRegisters:
        return st.builds(
            lambda h, names: (h + b"".join(map(_U32.pack, names)), len(names)),
            header,
            st.lists(reg_name, min_size=1, max_size=12),
        )
    if code == C.SetVpRegisters:
        assoc = st.builds(
            lambda *f: REGISTER_ASSOC.pack(RegisterAssoc(*f)),
            reg_name,
            weighted(zero=(4, st.just(bytes(12))), any=(1, st.binary(min_size=12, max_size=12))),
            weighted(small=(3, st.integers(0, 3)), any=(1, u64)),
            weighted(zero=(4, st.just(0)), any=(1, u64)),
        )
        return st.builds(
            lambda h, els: (h + b"".join(els), len(els)), header, st.lists(assoc, min_size=1, max_size=8)
        )
    u16 = st.integers(0, 0xFFFF)
    small_id = weighted(small=(4, st.integers(0, 4)), any=(1, u32))
    if code == C.CreatePort:
        info = st.builds(
            lambda *f: PORT_INFO.pack(PortInfo(*f)),
            weighted(known=(4, st.sampled_from([1, 2, 3, 4])), any=(1, u32)),
            zero_or(u32),
            weighted(sint=(4, st.integers(0, 17)), any=(1, u32)),
            vp,
            weighted(small=(3, st.integers(0, 2100)), any=(1, u16)),
            weighted(small=(3, st.integers(0, 2100)), any=(1, u16)),
            zero_or(u32),
        )
        return st.builds(
            lambda *f: fixed(CREATE_PORT_INPUT.pack(CreatePortInput(*f))),
            pid, small_id, zero_or(u8), zero_or(u8), zero_or(u16), pid, info, proximity,
        )  # fmt: skip
    if code == C.ConnectPort:
        info = st.builds(
            lambda *f: CONNECTION_INFO.pack(ConnectionInfo(*f)),
            weighted(known=(4, st.sampled_from([1, 2, 3, 4])), any=(1, u32)),
            zero_or(u32),
            zero_or(u64),
            zero_or(u64),
            zero_or(u64),
        )
        return st.builds(
            lambda *f: fixed(CONNECT_PORT_INPUT.pack(ConnectPortInput(*f))),
            pid, small_id, zero_or(u8), zero_or(u8), zero_or(u16),
            pid, small_id, zero_or(u32), info, proximity,
        )  # fmt: skip
    if code in (C.DeletePort, C.DisconnectPort):
        return st.builds(lambda *f: fixed(PORT_ID_INPUT.pack(PortIdInput(*f))), pid, small_id, zero_or(u32))
    assert code == C.StartVirtualProcessor, hex(code)
    good_context = start_ap(1, rip=0x10_0000, rsp=0x20_0000).input[START_VIRTUAL_PROCESSOR_HEADER.size :]
    context = st.one_of(
        st.just(good_context), st.binary(min_size=INITIAL_VP_CONTEXT.size, max_size=INITIAL_VP_CONTEXT.size)
    )
    return st.builds(
        lambda p, v, t, r, ctx: fixed(
            START_VIRTUAL_PROCESSOR_HEADER.pack(StartVirtualProcessorHeader(p, v, t, r)) + ctx
        ),
        pid,
        vp,
        st.one_of(st.just(0), u8),
        reserved3,
        context,
    )


def mangle(data: bytes) -> st.SearchStrategy[bytes]:
    """The block as built, truncated, padded with junk, or with one byte flipped."""
    return st.one_of(
        st.just(data),
        st.just(data),
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.binary(min_size=1, max_size=64).map(lambda junk: data + junk),
        st.tuples(st.integers(0, max(len(data) - 1, 0)), u8).map(
            lambda f: data[: f[0]] + bytes([f[1]]) + data[f[0] + 1 :] if data else data
        ),
    )


def gpas(limit: int) -> st.SearchStrategy[int | None]:
    """Mostly no GPA (the default page); else aligned in range, unaligned, page-crossing, out of
    range, or absurd (negative, wider than 64 bits)."""
    odd = st.one_of(
        st.integers(0, limit // 8 - 1).map(lambda q: 8 * q),
        st.integers(0, limit - 1),
        st.integers(1, limit // HV_PAGE_SIZE).map(lambda p: HV_PAGE_SIZE * p - 8),
        st.sampled_from([limit, limit - 8, U64 - 7, 1 << 46, -8]),
        st.integers(-(1 << 64), 1 << 65),
    )
    return weighted(none=(4, st.none()), odd=(1, odd))


@dataclass
class Call:
    ctl: int
    data: bytes
    caller: tuple[int, int]
    input_gpa: int | None
    output_gpa: int | None


def draw_call(draw: Callable[..., Any], w: World) -> Call:
    callers = w.callers()
    caller = draw(st.one_of(st.just(callers[0]), st.sampled_from(callers)), label="caller")
    assert isinstance(caller, tuple)
    limit = HOST_PAGES * HV_PAGE_SIZE if caller[0] == w.root else 1 << 46
    kind = draw(st.sampled_from(["random", "near", "near", "near", "near"]), label="kind")
    if kind == "random":
        ctl = draw(controls(), label="control")
        data = draw(st.one_of(st.binary(max_size=256), st.binary(max_size=5000)), label="input")
    else:
        code = draw(st.sampled_from(IMPLEMENTED), label="code")
        body, elements = draw(near_valid_input(int(code), w), label="layout")
        ctl = draw(rep_control(int(code), elements), label="control")
        data = draw(mangle(body), label="input")
    assert isinstance(ctl, int) and isinstance(data, bytes)
    in_gpa = draw(gpas(limit), label="input_gpa")
    out_gpa = draw(gpas(limit), label="output_gpa")
    return Call(ctl, data, caller, in_gpa, out_gpa)


def advance_to_next_event(sim: Simulation) -> None:
    """Run the clock up to (not through) the next instant at which something is scheduled, so the
    next call lands in the same instant as a guest's own hypercall or a pending reply."""
    with sim.runtime.active():
        while sim.env.peek() <= sim.now_ns:  # finish the current instant first
            sim.env.step()
    nxt = sim.env.peek()
    if nxt != float("inf"):
        sim.run(int(nxt))


def fuzz(data: st.DataObject, calls: int) -> None:
    w = build_world()
    try:
        for _ in range(calls):
            if data.draw(st.booleans(), label="same instant as the next event"):
                advance_to_next_event(w.sim)
            c = draw_call(data.draw, w)
            issue(w, c.ctl, c.data, caller=c.caller, input_gpa=c.input_gpa, output_gpa=c.output_gpa)
        w.sim.run(w.sim.now_ns + 100_000)  # whatever the calls changed, the guests run on
        assert checkers.check_state(w.sim.hv) == []
        assert w.sim.runtime.failures == []
    finally:
        finish(w)


_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


@settings(max_examples=300, deadline=None, suppress_health_check=_HEALTH)
@given(data=st.data(), calls=st.integers(1, 8))
def test_no_input_raises_out_of_the_hypervisor(data: st.DataObject, calls: int) -> None:
    fuzz(data, calls)


@pytest.mark.slow
@settings(max_examples=3_000, deadline=None, suppress_health_check=_HEALTH)
@given(data=st.data(), calls=st.integers(1, 24))
def test_no_input_raises_out_of_the_hypervisor_long(
    request: pytest.FixtureRequest, data: st.DataObject, calls: int
) -> None:
    """The same fuzz, far longer (select with ``-m slow``)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow sweep: select with -m slow")
    fuzz(data, calls)


# --- same-instant races ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["FinalizePartition", "DeleteVp"])
def test_host_call_in_the_same_instant_as_a_guest_hypercall(op: str) -> None:
    """The minimal form of what both fuzzers find: the host removes a running VP in the very
    instant that VP's guest issues a hypercall. The host's call reaches the hypervisor first, so the
    guest's request names a VP that no longer exists; whatever the model answers it, nothing may
    raise out of the simulation."""
    sim = Simulation(0, config=HvConfig(host_pages=HOST_PAGES))
    api = HostApi(sim)
    try:
        assert sim.run_process(api.deposit(SELF, sim.alloc_host_pages(2))).status is S.SUCCESS
        status, pid = sim.run_process(api.create_partition())
        assert status is S.SUCCESS
        sim.load_guest(pid, Program(loop=(Compute(7_000), Hypercall(control(C.GetPartitionId)))))
        assert sim.run_process(api.deposit(pid, sim.alloc_host_pages(208))).status is S.SUCCESS
        assert sim.run_process(api.initialize_partition(pid)) is S.SUCCESS
        assert sim.run_process(api.create_vp(pid, 0)) is S.SUCCESS
        out = sim.run_process(api.set_registers(pid, 0, {RegisterName.ExplicitSuspend: 0}))
        assert out.status is S.SUCCESS  # VP 0 now runs: 7 us of compute, then a hypercall
        advance_to_next_event(sim)  # the instant that compute slice ends
        if op == "FinalizePartition":
            res = sim.hypercall(control(C.FinalizePartition), PARTITION_ID_INPUT.pack((pid,)))
        else:
            res = sim.hypercall(control(C.DeleteVp), DELETE_VP_INPUT.pack(DeleteVpInput(pid, 0, 0)))
        assert res.status is S.SUCCESS
        sim.run(sim.now_ns + 50_000)
        assert sim.runtime.failures == []
        assert checkers.check_state(sim.hv) == []
    finally:
        sim.close()


# --- famous bad inputs --------------------------------------------------------------------------
def case(
    name: str,
    ctl: int,
    data: bytes = b"",
    *,
    input_gpa: int | None = None,
    output_gpa: int | None = None,
    child: bool = False,
    expected: HvStatus | None = None,
) -> Any:
    """One famous bad input: issued from the root (or the ACTIVE child's VP 0) on a fresh world."""
    return pytest.param(ctl, data, input_gpa, output_gpa, child, expected, id=name)


_CP = CREATE_PARTITION_INPUT.size
_FF = b"\xff" * 4096
_SELF_ID = PARTITION_ID_INPUT.pack((SELF,))
_SELF_POOL = MEMORY_POOL_INPUT.pack((SELF, 0))
_SELF_REGS = VP_REGISTERS_INPUT.pack(VpRegistersInput(SELF, 0, 0, bytes(3)))
_ID = C.GetPartitionId
BAD = S.INVALID_HYPERCALL_INPUT
ALIGN = S.INVALID_ALIGNMENT

FAMOUS = [
    # Section 1.1/1.4: the control word.
    case("all-ones control word", U64, expected=S.INVALID_HYPERCALL_CODE),
    case("all-ones control word and input", U64, _FF, expected=S.INVALID_HYPERCALL_CODE),
    case("control -1 (two's complement all ones)", -1, expected=S.INVALID_HYPERCALL_CODE),
    case("control wider than 64 bits (a register holds 64)", (1 << 64) | control(_ID), expected=S.SUCCESS),
    case("call code 0", 0, expected=S.INVALID_HYPERCALL_CODE),
    case("unassigned call code 0x7FFF", 0x7FFF, expected=S.INVALID_HYPERCALL_CODE),
    case("reserved control bit 27", control(_ID) | 1 << 27, expected=BAD),
    case("reserved control bit 63", control(_ID) | 1 << 63, expected=BAD),
    case("nested bit 31 is not reserved", control(_ID) | NESTED_BIT, expected=S.SUCCESS),
    case("simple call with rep count 1", control(_ID, rep_count=1), expected=BAD),
    case("simple call with rep start 1", control(_ID) | 1 << REP_START_SHIFT, expected=BAD),
    case("variable header on a fixed-size call", control(_ID, varhdr_qwords=1), expected=BAD),
    case("rep call with rep count 0", control(C.DepositMemory), _SELF_ID, expected=BAD),
    case(
        "rep start == rep count", control(C.DepositMemory, rep_count=3, rep_start=3), _FF[:32], expected=BAD
    ),
    case("rep start 4095, rep count 1", control(C.WithdrawMemory, rep_count=1, rep_start=4095), expected=BAD),
    # Rep count 4095: every list crosses the page.
    case("DepositMemory rep count 4095", control(C.DepositMemory, rep_count=4095), _SELF_ID, expected=ALIGN),
    case(
        "WithdrawMemory rep count 4095", control(C.WithdrawMemory, rep_count=4095), _SELF_POOL, expected=ALIGN
    ),
    case(
        "GetVpRegisters rep count 4095 from rep start 4094",
        control(C.GetVpRegisters, rep_count=4095, rep_start=4094),
        _SELF_REGS,
        expected=ALIGN,
    ),
    case(
        "DepositMemory of 511 bad pages fits the page",
        control(C.DepositMemory, rep_count=511),
        _SELF_ID + _U64.pack(U64) * 511,
        expected=S.OPERATION_DENIED,
    ),
    case(
        "DepositMemory of 512 pages crosses the page",
        control(C.DepositMemory, rep_count=512),
        _SELF_ID + bytes(8 * 512),
        expected=ALIGN,
    ),
    case(
        "SetPartitionPropertyEx with a 1023-qword variable header",
        control(C.SetPartitionPropertyEx, varhdr_qwords=1023),
        _FF,
        expected=ALIGN,
    ),
    # Fast calls.
    case(
        "GetPartitionPropertyEx fast (output too big)",
        control(C.GetPartitionPropertyEx, fast=True),
        bytes(24),
        expected=BAD,
    ),
    case("fast call with 5000 bytes of input", control(_ID, fast=True), b"\xff" * 5000, expected=BAD),
    # Input blocks.
    case("empty input for CreatePartition (zero-filled)", control(C.CreatePartition), expected=S.SUCCESS),
    case(
        "CreatePartition, all-0xFF input", control(C.CreatePartition), _FF[:_CP], expected=S.INVALID_PARAMETER
    ),
    case(
        "CreatePartition, 5000 bytes of 0xFF",
        control(C.CreatePartition),
        b"\xff" * 5000,
        expected=S.INVALID_PARAMETER,
    ),
    case(
        "DepositMemory, all-0xFF input",
        control(C.DepositMemory, rep_count=3),
        _FF[:32],
        expected=S.OPERATION_DENIED,
    ),
    case(
        "SetVpRegisters, all-0xFF input",
        control(C.SetVpRegisters, rep_count=2),
        _FF[:80],
        expected=S.INVALID_PARAMETER,
    ),
    case(
        "GetVpRegisters, all-0xFF input",
        control(C.GetVpRegisters, rep_count=2),
        _FF[:24],
        expected=S.INVALID_PARAMETER,
    ),
    case("StartVirtualProcessor, all-0xFF input", control(C.StartVirtualProcessor), _FF[:240]),
    case("DeletePartition SELF", control(C.DeletePartition), _SELF_ID, expected=S.ACCESS_DENIED),
    # Parameter-block GPAs.
    case("input_gpa 2**64-8", control(C.InitializePartition), bytes(8), input_gpa=U64 - 7, expected=ALIGN),
    case("output_gpa 2**64-8", control(C.GetMemoryBalance), _SELF_POOL, output_gpa=U64 - 7, expected=ALIGN),
    case("input_gpa 2**64", control(C.InitializePartition), bytes(8), input_gpa=1 << 64, expected=ALIGN),
    case("negative input_gpa", control(C.InitializePartition), bytes(8), input_gpa=-8, expected=ALIGN),
    case("unaligned input_gpa", control(C.InitializePartition), bytes(8), input_gpa=0x1001, expected=ALIGN),
    case(
        "page-crossing input block", control(C.CreatePartition), bytes(_CP), input_gpa=0x1FF8, expected=ALIGN
    ),
    case(
        "page-crossing output block",
        control(C.GetMemoryBalance),
        _SELF_POOL,
        output_gpa=0x1FF8,
        expected=ALIGN,
    ),
    case("the GPA of a call without input is ignored", control(_ID), input_gpa=U64 - 7, expected=S.SUCCESS),
    # From a child's VP.
    case(
        "input_gpa 2**64-8 from a child",
        control(C.InitializePartition),
        bytes(8),
        input_gpa=U64 - 7,
        child=True,
        expected=ALIGN,
    ),
    case(
        "DeletePartition SELF from a child",
        control(C.DeletePartition),
        _SELF_ID,
        child=True,
        expected=S.ACCESS_DENIED,
    ),
    case(
        "CreatePartition from a child (too deep)",
        control(C.CreatePartition),
        child=True,
        expected=S.PARTITION_TOO_DEEP,
    ),
    case(
        "WithdrawMemory of SELF from a child",
        control(C.WithdrawMemory, rep_count=1),
        _SELF_POOL,
        child=True,
        expected=S.ACCESS_DENIED,
    ),
    case(
        "DeleteVp, all-0xFF input, from a child",
        control(C.DeleteVp),
        _FF[:16],
        child=True,
        expected=S.ACCESS_DENIED,
    ),
]


@pytest.mark.parametrize(("ctl", "data", "input_gpa", "output_gpa", "child", "expected"), FAMOUS)
def test_famous_bad_inputs_return_statuses(
    ctl: int,
    data: bytes,
    input_gpa: int | None,
    output_gpa: int | None,
    child: bool,
    expected: HvStatus | None,
) -> None:
    w = build_world()
    try:
        who = (w.active, 0) if child else (w.root, 0)
        res = issue(w, ctl, data, caller=who, input_gpa=input_gpa, output_gpa=output_gpa)
        if expected is not None:
            assert res.status is expected
    finally:
        finish(w)
