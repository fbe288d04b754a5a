"""Fuzzing the hypercall ABI: no input, however malformed, raises a Python exception out of the
hypervisor, and every answer is a well-formed result value (HYPERCALLS.md 1.1, 1.2, 1.4-1.6).

Each example builds one world with a child in every state (``build_world``), then issues a short
sequence of hypercalls against it from the root and from ACTIVE children's VPs: control words drawn
from all 64-bit values and from near-valid ones (an implemented code with random rep fields, fast
bit, variable header size and reserved bits), input blocks of random bytes and of valid layouts
filled with random (and pointedly chosen) field values, and random parameter-block GPAs. Half the
calls are issued in the same instant as the next pending event (typically a guest's own hypercall),
where actor races live. Half the worlds are messaging worlds (``wire_messaging``): SynICs enabled,
ports and connections wired between the root and the ACTIVE children, sometimes a backlog of queued
messages filling a port's buffers; there most calls are the message and endpoint calls, and guests
take messages out of their slots between calls. Half the worlds (independently) are devices worlds
(``equip_devices``): a child with RAM, page tables and long-mode paging runs the devices guest's IO,
MSR, CPUID and memory accesses behind installed intercepts, whose messages reach a root SynIC and
which the host serves between calls; registered intercept results, statistics and VP state pages and
an acknowledged ExtInt exist; there most calls are the address-space, translation, intercept,
interrupt, flush, CPUID and state-page calls (HYPERCALLS.md 4.15-4.35), their blocks valid-looking
for that world or drawn around each rule. After every call the state checkers (pages, pools, GPA
mappings, message buffers) must pass; at the end the log's state transitions must be legal and every
message accounted for. A fixed list of famous bad inputs pins the statuses section 1 decides.
"""

from __future__ import annotations

import operator
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
    ASSERT_VIRTUAL_INTERRUPT_INPUT,
    CHECK_FOR_IO_INTERCEPT_INPUT,
    CONNECT_PORT_INPUT,
    CONNECTION_INFO,
    CPUID_QUERY,
    CPUID_RESULT_PARAMETERS,
    CREATE_PARTITION_INPUT,
    CREATE_PORT_INPUT,
    CREATE_VP_INPUT,
    DELETE_VP_INPUT,
    FAST_BIT,
    FLUSH_ALL_PROCESSORS,
    FLUSH_ALL_VIRTUAL_ADDRESS_SPACES,
    FLUSH_NON_GLOBAL_MAPPINGS_ONLY,
    FLUSH_USE_EXTENDED_RANGE_FORMAT,
    FLUSH_VIRTUAL_ADDRESS_INPUT,
    GET_NEXT_CHILD_PARTITION_INPUT,
    GET_PARTITION_PROPERTY_INPUT,
    GET_VP_CPUID_VALUES_HEADER,
    GPA_MAPPING_ELEMENT,
    HV_ANY_VP,
    HV_COMPATIBILITY_21_H2,
    HV_INTERRUPT_VECTOR_NONE,
    HV_MESSAGE_PAYLOAD_SIZE,
    HV_PAGE_SIZE,
    HV_PARTITION_ID_SELF,
    HV_SYNIC_INTERCEPTION_SINT,
    HV_VP_INDEX_SELF,
    INITIAL_VP_CONTEXT,
    INSTALL_INTERCEPT_INPUT,
    INTERCEPT_EXECUTE,
    INTERCEPT_READ,
    INTERCEPT_WRITE,
    INTERRUPT_LEVEL,
    INTERRUPT_LOGICAL,
    LARGE_PAGE_PAGES,
    MAP_GPA_PAGES_HEADER,
    MAP_STATS_PAGE2_INPUT,
    MAP_VP_STATE_PAGE_INPUT,
    MEMORY_POOL_INPUT,
    MESSAGE_HEADER,
    MSR_RESULT_PARAMETERS,
    NESTED_BIT,
    PARTITION_ID_INPUT,
    PARTITION_PROPERTY_EX_INPUT,
    PORT_ID_INPUT,
    PORT_INFO,
    POST_MESSAGE_DIRECT_INPUT,
    POST_MESSAGE_INPUT,
    REGISTER_ASSOC,
    REGISTER_INTERCEPT_RESULT_HEADER,
    REGISTER_INTERCEPT_RESULT_SIZE,
    REP_COUNT_SHIFT,
    REP_START_SHIFT,
    SET_PARTITION_PROPERTY_INPUT,
    SIGNAL_EVENT_DIRECT_INPUT,
    SIGNAL_EVENT_INPUT,
    SPARSE_GPA_HEADER,
    START_VIRTUAL_PROCESSOR_HEADER,
    TRANSLATE_VA_INPUT,
    UNMAP_GPA_KEEP_PRECOMMITTED,
    UNMAP_GPA_LARGE_PAGE,
    UNMAP_GPA_PAGES_HEADER,
    UNMAP_STATS_PAGE_INPUT,
    UNMAP_VP_STATE_PAGE_INPUT,
    UNREGISTER_INTERCEPT_RESULT_SIZE,
    VARHDR_SHIFT,
    VP_REGISTERS_INPUT,
    X64_INTERCEPT_HEADER,
    AssertVirtualInterruptInput,
    CheckForIoInterceptInput,
    ConnectionInfo,
    ConnectPortInput,
    CpuidQuery,
    CpuidResultParameters,
    CreatePartitionInput,
    CreatePortInput,
    CreateVpInput,
    CreationFlags,
    DeleteVpInput,
    FlushVirtualAddressInput,
    GetNextChildPartitionInput,
    GetPartitionPropertyInput,
    GetVpCpuidValuesHeader,
    GpaMappingElement,
    HvStatus,
    HypercallCode,
    InstallInterceptInput,
    InterceptType,
    InterruptType,
    MapGpaFlags,
    MapGpaPagesHeader,
    MapStatsPage2Input,
    MapVpStatePageInput,
    MemoryPoolInput,
    MessageHeader,
    MessageType,
    MsrResultParameters,
    PartitionIdInput,
    PartitionPrivilege,
    PartitionPropertyExInput,
    PortIdInput,
    PortInfo,
    PortType,
    PostMessageDirectInput,
    PostMessageInput,
    PropertyCode,
    RegisterAssoc,
    RegisterInterceptResultHeader,
    RegisterName,
    SetPartitionPropertyInput,
    SignalEventDirectInput,
    SignalEventInput,
    SparseGpaHeader,
    StartVirtualProcessorHeader,
    StatsObjectType,
    TranslateGvaFlags,
    TranslateVirtualAddressInput,
    UnmapGpaPagesHeader,
    UnmapStatsPageInput,
    UnmapVpStatePageInput,
    VpRegistersInput,
    VpStatePageType,
    control,
    proximity_info,
)
from hvsim.actors.hypercall import HypercallResult
from hvsim.actors.workload import Compute, Hypercall, Program
from hvsim.scenarios import HostApi, Simulation, checkers
from hvsim.scenarios.devices import (
    DATA,
    HIGH_HALF,
    HVSIM_LEAF,
    MMIO_TIMER_GPA,
    PD,
    PDPT,
    PML4,
    SCRATCH_MSR,
    SERIAL,
    SERIAL_LSR,
    devices_guest,
)
from hvsim.scenarios.workload import LONG_MODE_EFER, guest_os, start_ap

C = HypercallCode
S = HvStatus
PP = PartitionPrivilege
F = MapGpaFlags
R = RegisterName
T = TranslateGvaFlags
IT = InterceptType
ST = StatsObjectType
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


#: What a messaging world adds to the host-like child: it may post, signal and own endpoints.
MESSAGING = int(PP.PostMessages | PP.SignalEvents | PP.CreatePort | PP.ConnectPort)
#: The calls a messaging world favours: the four that send; the endpoint calls and register writes.
SENDING_CODES = [C.PostMessage, C.SignalEvent, C.PostMessageDirect, C.SignalEventDirect]
WIRING_CODES = [C.CreatePort, C.DeletePort, C.ConnectPort, C.DisconnectPort, C.SetVpRegisters]
#: SINT -> vector unmasked on every SynIC a messaging world enables.
WORLD_SINTS = {2: 0x50, 3: 0x51}
_MSG, _EVT = PortType.Message, PortType.Event
#: (owner, port id, type, SINT, target VP, base flag, flag count): event port 3 of `plain` targets
#: the masked SINT 4, event port 2 of `active` its VP 1, whose SynIC stays disabled.
MESSAGING_PORTS = [
    ("plain", 1, _MSG, 2, 0, 0, 0),
    ("plain", 2, _EVT, 3, HV_ANY_VP, 0, 64),
    ("plain", 3, _EVT, 4, 0, 0, 8),
    ("active", 1, _MSG, 2, HV_ANY_VP, 0, 0),
    ("active", 2, _EVT, 3, 1, 100, 16),
    ("root", 1, _MSG, 2, 0, 0, 0),
    ("root", 2, _EVT, 3, 0, 0, 2047),
]
#: (connection owner, connection id, port owner, port id, type).
MESSAGING_WIRES = [
    ("root", 1, "plain", 1, _MSG),
    ("root", 2, "plain", 2, _EVT),
    ("root", 3, "active", 1, _MSG),
    ("root", 4, "plain", 3, _EVT),
    ("active", 1, "root", 1, _MSG),
    ("active", 2, "root", 2, _EVT),
    ("active", 3, "active", 2, _EVT),
]


#: A devices world (``equip_devices``): `plain`'s RAM at GPA 0, and GPA pages beyond it mapped
#: without a host page (NO_ACCESS, the shared zero and all-ones pages), read-only, uncached.
RAM_PAGES = 64
SPECIAL_PAGES = {
    0x100: F.NO_ACCESS,
    0x101: F.ZEROED | F.READABLE,
    0x102: F.READABLE,
    0x103: F.READABLE | F.WRITABLE | F.NOT_CACHED,
    0x104: F.ONES | F.READABLE,
}
_RW = INTERCEPT_READ | INTERCEPT_WRITE
#: The intercepts the devices scenario's host installs (type, access, parameter).
DEVICE_INTERCEPTS = [
    (IT.X64IoPort, _RW, SERIAL),
    (IT.X64IoPortRange, _RW, (SERIAL + 1) | (SERIAL + 7) << 16),
    (IT.X64MsrIndex, _RW, SCRATCH_MSR),
    (IT.X64Cpuid, INTERCEPT_EXECUTE, HVSIM_LEAF),
]
#: The devices guest's loop (its set-up, building page tables from the guest, is the parent's job
#: here: `plain` may not write its own registers).
DEVICES_GUEST = Program(loop=devices_guest().loop, name="devices-loop")
#: The calls a devices world favours.
DEVICE_CODES = [
    C.MapGpaPages, C.UnmapGpaPages, C.MapSparseGpaPages, C.ModifySparseGpaPages,
    C.TranslateVirtualAddress, C.TranslateVirtualAddressEx, C.InstallIntercept, C.CheckForIoIntercept,
    C.AssertVirtualInterrupt, C.ClearVirtualInterrupt, C.FlushVirtualAddressSpace,
    C.FlushVirtualAddressList, C.GetVpCpuidValues, C.MapStatsPage2, C.UnmapStatsPage,
    C.MapVpStatePage, C.UnmapVpStatePage, C.RegisterInterceptResult, C.UnregisterInterceptResult,
]  # fmt: skip
#: What a devices world registers in advance (RegisterInterceptResult): CPUID leaf 1 for every VP
#: (EBX's low byte, ECX bit 31), an unimplemented MSR ignored on VP 0 (the guest uses neither).
REGISTERED_CPUID = CpuidResultParameters(1, 0, 0, 0, 0, 0, 0, 0x5A, 0xFF, 0, 1 << 31, 0, 0)
REGISTERED_MSR = MsrResultParameters(SCRATCH_MSR + 1, INTERCEPT_READ | INTERCEPT_WRITE, 1)


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
    #: SynICs enabled, ports, connections and queued messages (``wire_messaging``).
    messaging: bool = False
    #: Guest memory, page tables, intercepts, a root SynIC taking them, state pages (``equip_devices``).
    devices: bool = False
    #: The host pages behind `plain`'s RAM at GPA 0 (a devices world), some shared with `active`.
    ram: tuple[int, ...] = ()

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


def build_world(seed: int = 0, *, messaging: bool = False, backlog: int = 0, devices: bool = False) -> World:
    """The root's pool funded; a CREATED child with a few pages, two ACTIVE children, a FINALIZED
    child whose pool still holds pages, and the id of a deleted one. With *messaging*, the
    host-like child may also post, signal and own endpoints, and ``wire_messaging`` connects the
    root and the ACTIVE children (*backlog* messages already posted). With *devices*, `plain` runs
    the devices guest's loop on RAM and page tables its parent built (``equip_devices``)."""
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
    active = child(HOST_LIKE | (MESSAGING if messaging else 0))
    sim.load_guest(active, lambda i: guest_os(sim.rng("workload", active, i), i, 2, slice_ns_mean=20_000))
    activate(active, 2, run=True)
    plain = child()
    if devices:
        sim.load_guest(plain, DEVICES_GUEST)
    activate(plain, 1, run=not devices)
    finalized = child()
    activate(finalized, 1, run=False)
    ok(sim.run_process(api.finalize_partition(finalized)))
    deleted = child()
    ok(sim.run_process(api.delete_partition(deleted)))
    ram: tuple[int, ...] = ()
    if devices:
        ram = equip_devices(sim, active, plain)
    sim.run(sim.now_ns + 300_000)  # the guests boot (VP 0 of `active` starts its AP)
    if messaging:
        wire_messaging(sim, active, plain, backlog)
    assert checkers.check_state(sim.hv) == []
    return World(sim, sim.root_id, created, active, plain, finalized, deleted, messaging, devices, ram)


def wire_messaging(sim: Simulation, active: int, plain: int, backlog: int) -> None:
    """SynIC (message and event-flag pages, SINTs 2 and 3; SINT 4 stays masked) on VP 0 of the
    root, `active` and `plain` (VP 1 of the root and of `active` keep theirs disabled); the ports
    of ``MESSAGING_PORTS`` and connections of ``MESSAGING_WIRES``; then *backlog* messages posted on
    the root's connection 1 (the first lands in `plain`'s slot, 17 hold all 16 buffers of its port)."""
    api = HostApi(sim)
    owners = {"root": sim.root_id, "active": active, "plain": plain}
    for pid in owners.values():
        assert sim.run_process(api.enable_synic(pid, 0, WORLD_SINTS)).status is S.SUCCESS
    for owner, port, kind, sint, vp, base, count in MESSAGING_PORTS:
        status = sim.run_process(
            api.create_port(owners[owner], port, kind, sint=sint, vp=vp, base_flag=base, flag_count=count)
        )
        assert status is S.SUCCESS, (owner, port, status)
    for owner, conn, port_owner, port, kind in MESSAGING_WIRES:
        status = sim.run_process(api.connect_port(owners[owner], conn, owners[port_owner], port, kind))
        assert status is S.SUCCESS, (owner, conn, status)
    for i in range(backlog):
        assert sim.run_process(api.post_message(1, 1 + i % 3, bytes([i]) * 16)) is S.SUCCESS


def equip_devices(sim: Simulation, active: int, plain: int) -> tuple[int, ...]:
    """What the deep paths of the address-space, translation, intercept, interrupt and state-page
    calls need (HYPERCALLS.md 4.15-4.35), set up through the same calls a host makes:

    * `plain`: ``RAM_PAGES`` host pages of RAM at GPA 0 (RWX), the devices scenario's 4-level page
      tables in it (PML4 0x1000, PDPT 0x2000, PD 0x3000: one 2 MiB page at GPA 0, also mapped in the
      high half) with long-mode paging on VP 0, and the special pages of ``SPECIAL_PAGES``; the
      device intercepts installed (serial port and its range, the scratch MSR, the hvsim CPUID
      leaf), the results of ``REGISTERED_CPUID`` and ``REGISTERED_MSR``; a registers state page
      of VP 0 and statistics pages of the hypervisor and of `plain`;
      then its VP 0 runs the devices loop (IO, MSR, CPUID, GVA and MMIO accesses);
    * `active`: four of `plain`'s RAM pages shared at GPA 0x10-0x13 (read/write), and an ExtInt
      its running VP 0 acknowledges (so ClearVirtualInterrupt has one to clear);
    * the root: SynIC on VP 0 with SINT 0 unmasked, where intercept messages arrive."""
    api = HostApi(sim)
    costs = sim.config.page_costs

    def ok(status: HvStatus) -> None:
        assert status is S.SUCCESS, status

    ram = sim.alloc_host_pages(RAM_PAGES)
    rwx = F.READABLE | F.WRITABLE | F.EXECUTABLE
    ok(sim.run_process(api.map_gpa_pages(plain, 0, ram, rwx)).status)
    for gpa_page, flags in SPECIAL_PAGES.items():
        source = 0 if flags & F.BACKING_MASK else sim.alloc_host_pages(1)[0]
        ok(sim.run_process(api.map_gpa_pages(plain, gpa_page, [source], flags)).status)
        if source:
            ram.append(source)
    ok(sim.run_process(api.map_gpa_pages(active, 0x10, ram[16:20], F.READABLE | F.WRITABLE)).status)
    for gpa, entry in ((PML4, PDPT | 3), (PML4 + 8 * 256, PDPT | 3), (PDPT, PD | 3), (PD, 0x83)):
        api.write_guest(plain, gpa, entry.to_bytes(8, "little"))
    paging: dict[int, int] = {R.Cr3: PML4, R.Cr4: 0x20, R.Efer: LONG_MODE_EFER | 0x800, R.Cr0: 0x8001_0031}
    ok(sim.run_process(api.set_registers(plain, 0, paging)).status)
    # `plain`'s pool pays for the CPUID intercept and the state page (the root's for statistics).
    out = sim.run_process(api.deposit(plain, sim.alloc_host_pages(costs.cpuid_intercept + costs.stats_page)))
    ok(out.status)
    for kind, access, param in DEVICE_INTERCEPTS:
        data = INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(plain, access, kind, param))
        ok(sim.hypercall(control(C.InstallIntercept), data).status)
    state_page = MAP_VP_STATE_PAGE_INPUT.pack(
        MapVpStatePageInput(plain, 0, VpStatePageType.Registers, 0, 0, 0)
    )
    ok(sim.hypercall(control(C.MapVpStatePage), state_page).status)
    for stats_type, identity, location in (
        (ST.Hypervisor, bytes(16), 0x800),
        (ST.Partition, _U64.pack(plain) + bytes(8), 0x801),
    ):
        data = MAP_STATS_PAGE2_INPUT.pack(MapStatsPage2Input(stats_type, 0, identity, location))
        ok(sim.hypercall(control(C.MapStatsPage2), data).status)
    for vp, kind, params in (
        (HV_ANY_VP, IT.X64Cpuid, CPUID_RESULT_PARAMETERS.pack(REGISTERED_CPUID)),
        (0, IT.X64Msr, MSR_RESULT_PARAMETERS.pack(REGISTERED_MSR)),
    ):
        header = REGISTER_INTERCEPT_RESULT_HEADER.pack(RegisterInterceptResultHeader(plain, vp, kind))
        data = (header + params).ljust(REGISTER_INTERCEPT_RESULT_SIZE, b"\0")
        ok(sim.hypercall(control(C.RegisterInterceptResult), data).status)
    ok(sim.run_process(api.enable_synic(SELF, 0, {HV_SYNIC_INTERCEPTION_SINT: 0x32})).status)
    ok(sim.run_process(api.set_registers(plain, 0, {R.ExplicitSuspend: 0})).status)
    ext_int = AssertVirtualInterruptInput(active, InterruptType.ExtInt, 0, 0x30, 0, 0, 0)
    ok(sim.hypercall(control(C.AssertVirtualInterrupt), ASSERT_VIRTUAL_INTERRUPT_INPUT.pack(ext_int)).status)
    return tuple(ram)


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
    records = w.sim.log.records()
    assert checkers.state_transitions(records) == []
    assert checkers.message_accounting(records, w.sim.hv) == []
    w.sim.close()


# --- strategies -------------------------------------------------------------------------------------
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, U32)
u64 = st.integers(0, U64)


def zero_or(s: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), s)


def mostly_zero(s: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    """A reserved field: zero five times in six (the calls behind it check several of them)."""
    return weighted(zero=(5, st.just(0)), any=(1, s))


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

    if code in DEVICE_CODES:
        return device_input(code, w)
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

    # Messages and events. Each call's block is either fully valid-looking for a messaging world
    # (its connections 1-4, SINTs 2 and 3, VPs 0 and 1, live partitions), so the calls reach the
    # SynIC, or fields drawn around every rule: connection ids 0-5, message types 0, 1 and bit 31,
    # payload sizes 240/241, SINTs 0-16, flag numbers around the ports' ranges and 2048.
    def sends(valid: st.SearchStrategy[Any], fuzzed: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return weighted(valid=(2, valid), fuzzed=(3, fuzzed))

    def sint(wide: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
        return weighted(sint=(4, st.integers(0, 16)), any=(1, wide))

    conn_id = weighted(small=(6, st.integers(0, 5)), any=(1, u32))
    world_conn = st.integers(1, 4)
    live = weighted(
        live=(6, st.sampled_from([w.root, w.active, w.plain, SELF])), known=(2, pid), any=(1, u64)
    )
    world_vp = st.integers(0, 1)
    target_vp = weighted(
        small=(6, st.integers(0, 3)),
        special=(1, st.sampled_from([HV_VP_INDEX_SELF, HV_ANY_VP])),
        any=(1, u32),
    )
    padding3 = weighted(zero=(4, st.just(bytes(3))), any=(1, st.binary(min_size=3, max_size=3)))
    guest_type = st.sampled_from([1, 2, 0x7FFF_FFFF])
    message_type = weighted(
        pointed=(6, st.sampled_from([0, 1, 2, 0x7FFF_FFFF, 0x8000_0000, 0x8000_0001, 0x8000_0061])),
        any=(2, u32),
    )
    size = weighted(
        pointed=(4, st.sampled_from([0, 1, 239, 240, 241, 255])), small=(2, st.integers(0, 241)), any=(1, u32)
    )
    payload = st.one_of(st.just(bytes(HV_MESSAGE_PAYLOAD_SIZE)), st.binary(min_size=240, max_size=240))
    flag = weighted(
        small=(4, st.integers(0, 70)),
        edge=(2, st.sampled_from([63, 64, 99, 100, 115, 116, 2046, 2047, 2048])),
        any=(1, u16),
    )
    if code == C.PostMessage:

        def post(*f: Any) -> tuple[bytes, int]:
            return fixed(POST_MESSAGE_INPUT.pack(PostMessageInput(*f)))

        return sends(
            st.builds(post, world_conn, st.just(0), guest_type, st.integers(0, 240), payload),
            st.builds(post, conn_id, mostly_zero(u32), message_type, size, payload),
        )
    if code == C.SignalEvent:

        def signal(*f: Any) -> tuple[bytes, int]:
            return fixed(SIGNAL_EVENT_INPUT.pack(SignalEventInput(*f)))

        return sends(
            st.builds(signal, world_conn, st.integers(0, 15), st.just(0)),
            st.builds(signal, conn_id, flag, mostly_zero(u16)),
        )
    if code == C.PostMessageDirect:

        def message(mtype: int, n: int, flags: int, reserved: int, origin: int, body: bytes) -> bytes:
            return MESSAGE_HEADER.pack(MessageHeader(mtype, n, flags, reserved, origin)) + body

        def direct(*f: Any) -> tuple[bytes, int]:
            return fixed(POST_MESSAGE_DIRECT_INPUT.pack(PostMessageDirectInput(*f)))

        good = st.builds(
            message, guest_type, st.integers(0, 240), st.just(0), st.just(0), st.just(0), payload
        )
        any_message = st.builds(
            message,
            message_type,
            size.map(lambda n: n & 0xFF),
            zero_or(u8),
            zero_or(u16),
            zero_or(u64),
            payload,
        )
        return sends(
            st.builds(
                direct,
                live,
                world_vp,
                st.just(0),
                st.just(bytes(3)),
                st.sampled_from([2, 3]),
                good,
                st.just(0),
            ),
            st.builds(
                direct, live, target_vp, mostly_zero(u8), padding3, sint(u32), any_message, mostly_zero(u32)
            ),
        )
    if code == C.SignalEventDirect:

        def direct_signal(*f: Any) -> tuple[bytes, int]:
            return fixed(SIGNAL_EVENT_DIRECT_INPUT.pack(SignalEventDirectInput(*f)))

        return sends(
            st.builds(
                direct_signal, live, world_vp, st.just(0), st.sampled_from([2, 3]), st.integers(0, 2047)
            ),
            st.builds(direct_signal, live, target_vp, mostly_zero(u8), sint(u8), flag),
        )
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


# --- the address-space, translation, intercept, interrupt, flush and state-page calls -----------
#: A child's GPA page numbers are below this (HvConfig.guest_gpa_bits).
GPA_PAGE_LIMIT = 1 << (HvConfig().guest_gpa_bits - 12)
#: HV_MAP_GPA_FLAGS access rights on x64: the legal combinations (none, R, R+W, R+X, R+W+X with
#: either execute bit) and the illegal ones (W, X or W+X without R), HYPERCALLS.md 5.7.
LEGAL_RIGHTS = [
    0, F.READABLE, F.READABLE | F.WRITABLE, F.READABLE | F.KERNEL_EXECUTABLE,
    F.READABLE | F.USER_EXECUTABLE, F.READABLE | F.EXECUTABLE, F.PERMISSIONS,
]  # fmt: skip
ILLEGAL_RIGHTS = [F.WRITABLE, F.KERNEL_EXECUTABLE, F.USER_EXECUTABLE, F.WRITABLE | F.EXECUTABLE]
#: 2 MiB-aligned runs of host pages in the half of host RAM the world leaves alone.
LARGE_SOURCES = [HOST_PAGES // 2 + LARGE_PAGE_PAGES * k for k in range(4)]
LARGE_TARGETS = [0, LARGE_PAGE_PAGES, 2 * LARGE_PAGE_PAGES, GPA_PAGE_LIMIT - LARGE_PAGE_PAGES]
#: Intercept types whose access mask takes read/write, and the ones that take execute.
RW_INTERCEPTS = {IT.X64IoPort, IT.X64IoPortRange, IT.X64Msr, IT.X64MsrIndex}
EXECUTE_INTERCEPTS = {IT.X64Cpuid, IT.Exception, IT.X64GlobalCpuid}


def io_range(base: int, end: int) -> int:
    return base | end << 16


#: Intercept parameters per type: the devices guest's targets, edges, and out-of-range values.
INTERCEPT_PARAMETERS: dict[int, st.SearchStrategy[int]] = {
    IT.X64IoPort: st.sampled_from([SERIAL, SERIAL_LSR, SERIAL + 2, 0x60, 0, 0xFFFF, 0x1_0000]),
    IT.X64IoPortRange: st.sampled_from(
        [
            io_range(SERIAL + 1, SERIAL + 7),
            io_range(SERIAL, SERIAL),
            io_range(0, 0xFFFF),
            io_range(SERIAL_LSR, SERIAL),
            1 << 32,
        ]
    ),
    IT.Exception: st.one_of(st.integers(0, 31), st.sampled_from([32, 0xFFFF])),
    IT.X64Cpuid: st.one_of(st.sampled_from([HVSIM_LEAF, 0, 1, 0x4000_0000, 1 << 32]), u32),
    IT.X64MsrIndex: st.one_of(st.sampled_from([SCRATCH_MSR, 0x1B, 0x4000_0000, 0xC000_0080, 1 << 32]), u32),
    IT.X64ApicWrite: st.one_of(st.sampled_from([0, 0x80, 1 << 32]), u32),
}


def intercept_fields(kind: int) -> st.SearchStrategy[tuple[int, int, int]]:
    """(type, access mask, parameter) for intercept type *kind*: an access mask that fits the type
    (read/write for IO and MSR, execute for CPUID and exceptions), one that does not, 0 (remove),
    or any; the type's parameter, or any value."""
    if kind in RW_INTERCEPTS:
        fitting, unfitting = [1, 2, 3], [4, 5, 6, 7]
    elif kind in EXECUTE_INTERCEPTS:
        fitting, unfitting = [4], [1, 2, 3, 5]
    else:
        fitting, unfitting = [1, 2, 3, 4, 7], [8]
    access = weighted(
        fit=(6, st.sampled_from(fitting)),
        unfit=(2, st.sampled_from(unfitting)),
        remove=(2, st.just(0)),
        any=(1, u32),
    )
    own = INTERCEPT_PARAMETERS.get(kind, st.sampled_from([0, 0, 0, 1, 1 << 32]))
    return st.tuples(st.just(kind), access, weighted(own=(6, own), any=(1, u64)))


def dirty(body: bytes, reserved: range) -> st.SearchStrategy[bytes]:
    """*body* as is five times in six, else with one byte in its *reserved* range non-zero."""
    if not reserved:
        return st.just(body)
    flipped = st.tuples(st.sampled_from(reserved), st.integers(1, 0xFF)).map(
        lambda f: body[: f[0]] + bytes([f[1]]) + body[f[0] + 1 :]
    )
    return weighted(clean=(5, st.just(body)), dirty=(1, flipped))


def device_input(code: int, w: World) -> st.SearchStrategy[tuple[bytes, int]]:
    """``near_valid_input`` for the calls of HYPERCALLS.md 4.15-4.36 (``DEVICE_CODES``). As for the
    message calls, each block is either valid-looking for the world (an ACTIVE child and one of its
    VPs, `plain`'s RAM and special GPA pages, free and shared host pages, the device intercepts and
    registrations, the statistics and state pages it mapped, legal flags), so the calls reach their
    effects, or drawn around every rule (any partition, VPs 0-3 and the special indices, illegal
    access combinations, reserved bits and bytes, VTLs, misaligned large pages), or anything."""
    pid = weighted(known=(6, st.sampled_from([*w.ids, SELF])), zero=(1, st.just(0)), any=(1, u64))
    #: The children these calls act on: the two ACTIVE ones mostly, else any id.
    child = weighted(active=(6, st.sampled_from([w.active, w.plain])), other=(3, pid))
    vp = weighted(
        small=(6, st.integers(0, 3)),
        special=(1, st.sampled_from([HV_VP_INDEX_SELF, HV_ANY_VP])),
        any=(1, u32),
    )
    #: A VP that exists: VP 0 or 1 of `active`, VP 0 of `plain`.
    child_vp = st.sampled_from([(w.active, 0), (w.active, 1), (w.plain, 0)])
    #: HV_INPUT_VTL: 0 (the current VTL), 0x10 (VTL 0 explicitly), VTL 1 and reserved bits.
    vtl = weighted(
        zero=(6, st.just(0)), explicit=(2, st.just(0x10)), other=(2, st.sampled_from([1, 0x11, 0x20, 0xFF]))
    )

    def either(valid: st.SearchStrategy[Any], fuzzed: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return weighted(valid=(2, valid), fuzzed=(3, fuzzed))

    def fixed(b: bytes) -> tuple[bytes, int]:
        return b, 0

    def with_elements(header: bytes, elements: list[bytes]) -> tuple[bytes, int]:
        return header + b"".join(elements), len(elements)

    gpa_page = weighted(
        ram=(4, st.integers(0, RAM_PAGES + 8)),
        special=(
            2,
            st.sampled_from(
                [*SPECIAL_PAGES, 0x10, 0x13, 0x105, 511, 512, 513, GPA_PAGE_LIMIT - 1, GPA_PAGE_LIMIT]
            ),
        ),
        small=(2, st.integers(0, 2 * LARGE_PAGE_PAGES)),
        any=(1, u64),
    )
    #: Where the world has RAM: (child, GPA page) pairs backed by host pages.
    backed = st.one_of(
        st.tuples(st.just(w.plain), st.sampled_from([*range(RAM_PAGES), 0x102, 0x103])),
        st.tuples(st.just(w.active), st.integers(0x10, 0x13)),
    )
    #: Pages of the root's GPA space (host RAM): free host pages, `plain`'s RAM (mapping it again
    #: shares it), pages in a pool (deposited: inaccessible), beyond host RAM.
    free_page = st.integers(HOST_PAGES // 2, HOST_PAGES - 1)
    host_page = weighted(
        free=(4, free_page),
        ram=(2, st.sampled_from(w.ram or [HOST_PAGES - 1])),
        pooled=(1, st.sampled_from(w.pooled_pages() or [HOST_PAGES])),
        any_host=(1, st.integers(0, HOST_PAGES + 4)),
        any=(1, u64),
    )
    runs = st.tuples(host_page, st.integers(1, 8)).map(lambda r: [(r[0] + k) & U64 for k in range(r[1])])
    sources = weighted(run=(3, runs), scattered=(1, st.lists(host_page, min_size=1, max_size=12)))
    extras = st.sampled_from([0, 0, 0, F.ADJUSTABLE, F.NOT_CACHED, F.NO_OVERLAY, F.ADJUSTABLE | F.NOT_CACHED])
    legal_flags = st.builds(operator.or_, st.sampled_from(LEGAL_RIGHTS), extras)
    map_flags = weighted(
        legal=(6, legal_flags),
        backing=(
            2,
            st.sampled_from(
                [
                    F.NO_ACCESS,
                    F.ZEROED,
                    F.ZEROED | F.READABLE,
                    F.ONES | F.READABLE,
                    F.NO_ACCESS | F.READABLE,
                    F.ZEROED | F.READABLE | F.EXECUTABLE,
                    F.ONES | F.PERMISSIONS,
                ]
            ),
        ),
        illegal=(
            2,
            st.sampled_from(
                [*ILLEGAL_RIGHTS, 0x10, 0x4000, F.CLEAR_ACCESSED | F.READABLE, F.SET_DIRTY, 1 << 30]
            ),
        ),
        any=(1, u32),
    )

    if code == C.MapGpaPages:

        def map_pages(p: int, base: int, flags: int, padding: int, pages: list[int]) -> tuple[bytes, int]:
            header = MAP_GPA_PAGES_HEADER.pack(MapGpaPagesHeader(p, base, flags, padding))
            return with_elements(header, [_U64.pack(page) for page in pages])

        # Valid: a run of free host pages (or `plain`'s RAM: shared) into an ACTIVE child's first
        # 2 MiB (over its RAM sometimes: a replaced mapping), legal rights.
        valid = st.builds(
            lambda p, base, flags, first, n: map_pages(p, base, flags, 0, [first + k for k in range(n)]),
            st.sampled_from([w.active, w.plain]),
            st.integers(0, LARGE_PAGE_PAGES - 8),
            legal_flags,
            weighted(
                free=(3, free_page.map(lambda p: min(p, HOST_PAGES - 8))),
                ram=(1, st.sampled_from(w.ram or [0])),
            ),
            st.integers(1, 8),
        )
        fuzzed = st.builds(map_pages, child, gpa_page, map_flags, mostly_zero(u32), sources)
        large = st.builds(
            map_pages,
            child,
            st.sampled_from([*LARGE_TARGETS, 1, GPA_PAGE_LIMIT]),
            map_flags.map(lambda f: f | F.LARGE_PAGE),
            st.just(0),
            st.lists(
                st.sampled_from([*LARGE_SOURCES, LARGE_SOURCES[0] + 1, 0, HOST_PAGES]), min_size=1, max_size=2
            ),
        )
        # The root on its own identity map: only access rights change (HYPERCALLS.md 4.16).
        identity = st.builds(
            lambda p, first, n, flags: map_pages(p, first, flags, 0, [first + k for k in range(n)]),
            st.sampled_from([SELF, w.root]),
            weighted(
                free=(3, st.integers(HOST_PAGES // 2, HOST_PAGES - 8)), any=(1, st.integers(0, HOST_PAGES))
            ),
            st.integers(1, 4),
            st.sampled_from([*LEGAL_RIGHTS, F.NO_ACCESS, F.WRITABLE, F.ZEROED | F.READABLE]),
        )
        return weighted(valid=(3, valid), fuzzed=(4, fuzzed), large=(1, large), identity=(1, identity))
    if code == C.UnmapGpaPages:
        keep, large_flag = UNMAP_GPA_KEEP_PRECOMMITTED, UNMAP_GPA_LARGE_PAGE
        unmap_flags = weighted(
            known=(6, st.sampled_from([0, 0, keep, large_flag, large_flag | keep])),
            bad=(1, st.sampled_from([4, 1 << 31])),
            any=(1, u32),
        )

        def unmap(p: int, base: int, flags: int, padding: int, n: int) -> tuple[bytes, int]:
            return UNMAP_GPA_PAGES_HEADER.pack(UnmapGpaPagesHeader(p, base, flags, padding)), n

        valid = st.builds(
            lambda where, n, keep_flag: unmap(where[0], where[1], keep_flag, 0, n),
            backed,
            st.integers(1, 8),
            st.sampled_from([0, keep]),
        )
        fuzzed = st.builds(
            unmap,
            child,
            weighted(page=(4, gpa_page), aligned=(1, st.sampled_from(LARGE_TARGETS))),
            unmap_flags,
            mostly_zero(u32),
            weighted(few=(6, st.integers(1, 8)), many=(1, st.sampled_from([RAM_PAGES, 0x105]))),
        )
        return either(valid, fuzzed)
    if code == C.MapSparseGpaPages:

        def pair(target: int, source: int) -> bytes:
            return GPA_MAPPING_ELEMENT.pack(GpaMappingElement(target, source))

        def sparse(p: int, flags: int, reserved: int, elements: list[bytes]) -> tuple[bytes, int]:
            return with_elements(SPARSE_GPA_HEADER.pack(SparseGpaHeader(p, flags, reserved)), elements)

        valid = st.builds(
            sparse,
            st.sampled_from([w.active, w.plain]),
            legal_flags,
            st.just(0),
            st.lists(
                st.builds(pair, st.integers(0, 2 * LARGE_PAGE_PAGES), free_page), min_size=1, max_size=8
            ),
        )
        fuzzed = st.builds(
            sparse,
            child,
            map_flags,
            mostly_zero(u32),
            st.lists(st.builds(pair, gpa_page, host_page), min_size=1, max_size=12),
        )
        large = st.builds(
            sparse,
            child,
            map_flags.map(lambda f: f | F.LARGE_PAGE),
            st.just(0),
            st.lists(
                st.builds(
                    pair,
                    st.sampled_from([*LARGE_TARGETS, 1]),
                    st.sampled_from([*LARGE_SOURCES, LARGE_SOURCES[0] + 1]),
                ),
                min_size=1,
                max_size=2,
            ),
        )
        return weighted(valid=(2, valid), fuzzed=(3, fuzzed), large=(1, large))
    if code == C.ModifySparseGpaPages:
        state_updates = st.sampled_from(
            [
                F.CLEAR_ACCESSED,
                F.SET_ACCESSED,
                F.CLEAR_DIRTY,
                F.SET_DIRTY,
                F.SET_ACCESSED | F.SET_DIRTY,
                F.CLEAR_ACCESSED | F.CLEAR_DIRTY,
                F.DONT_SET_RANGE_ACCESSED,
            ]
        )
        rights = st.builds(operator.or_, st.sampled_from(LEGAL_RIGHTS), st.sampled_from([0, 0, F.NOT_CACHED]))
        updates = st.builds(operator.or_, state_updates, st.sampled_from([0, 0, F.READABLE, F.WRITABLE]))
        modify_flags = weighted(
            rights=(4, rights),
            state=(3, updates),
            illegal=(
                2,
                st.sampled_from(
                    [
                        *ILLEGAL_RIGHTS,
                        F.LARGE_PAGE | F.READABLE,
                        F.ADJUSTABLE | F.READABLE,
                        F.ZEROED | F.READABLE,
                        F.NO_OVERLAY | F.READABLE,
                    ]
                ),
            ),
            any=(1, u32),
        )

        def modify(p: int, flags: int, reserved: int, pages: list[int]) -> tuple[bytes, int]:
            header = SPARSE_GPA_HEADER.pack(SparseGpaHeader(p, flags, reserved))
            return with_elements(header, [_U64.pack(g) for g in pages])

        # Valid: pages the world backs, rights that keep the page tables readable mostly.
        valid = st.one_of(
            st.builds(
                modify,
                st.just(w.plain),
                st.one_of(rights, updates),
                st.just(0),
                st.lists(st.integers(0, RAM_PAGES - 1), min_size=1, max_size=8),
            ),
            st.builds(
                modify,
                st.just(w.active),
                st.one_of(rights, updates),
                st.just(0),
                st.lists(st.integers(0x10, 0x13), min_size=1, max_size=4),
            ),
        )
        fuzzed = st.builds(
            modify, child, modify_flags, mostly_zero(u32), st.lists(gpa_page, min_size=1, max_size=12)
        )
        return either(valid, fuzzed)
    #: GVA pages: `plain`'s RAM through its page tables, low and in the high half, the device
    #: pages, beyond what a 2 MiB page maps, non-canonical, anything.
    gva_page = weighted(
        ram=(4, st.integers(0, RAM_PAGES + 4)),
        high=(2, st.integers(0, RAM_PAGES + 4).map(lambda n: (HIGH_HALF >> 12) + n)),
        special=(
            1,
            st.sampled_from(
                [
                    *SPECIAL_PAGES,
                    DATA >> 12,
                    MMIO_TIMER_GPA >> 12,
                    511,
                    512,
                    0xFEB00,
                    0xFEB01,
                    1 << 35,
                    (1 << 36) - 1,
                ]
            ),
        ),
        any=(1, u64),
    )
    if code in (C.TranslateVirtualAddress, C.TranslateVirtualAddressEx):
        validate = st.sampled_from(
            [
                T.VALIDATE_READ,
                T.VALIDATE_WRITE,
                T.VALIDATE_EXECUTE,
                T.VALIDATE_READ | T.VALIDATE_WRITE,
                T.VALIDATE,
            ]
        )
        modifiers = st.lists(
            st.sampled_from(
                [
                    T.PRIVILEGE_EXEMPT,
                    T.SET_PAGE_TABLE_BITS,
                    T.TLB_FLUSH_INHIBIT,
                    T.SUPERVISOR_ACCESS,
                    T.USER_ACCESS,
                    T.ENFORCE_SMAP,
                    T.OVERRIDE_SMAP,
                    T.SHADOW_STACK,
                ]
            ),
            max_size=3,
        ).map(lambda bits: sum(set(bits)))

        def translate(p: int, v: int, reserved: int, flags: int, page: int) -> tuple[bytes, int]:
            return fixed(TRANSLATE_VA_INPUT.pack(TranslateVirtualAddressInput(p, v, reserved, flags, page)))

        valid = st.builds(
            lambda where, v, m, vtl_byte, page: translate(
                where[0], where[1], 0, v | m | vtl_byte << T.VTL_SHIFT, page
            ),
            child_vp,
            validate,
            modifiers,
            st.sampled_from([0, 0x10]),
            gva_page,
        )
        control_flags = weighted(
            built=(
                6,
                st.builds(
                    lambda v, m, r, vtl_byte: v | m | r | vtl_byte << T.VTL_SHIFT,
                    weighted(some=(5, validate), none=(1, st.just(0))),
                    modifiers,
                    mostly_zero(st.sampled_from([0x800, 1 << 20, 1 << 55])),
                    vtl,
                ),
            ),
            any=(1, u64),
        )
        fuzzed = st.builds(translate, child, vp, mostly_zero(u32), control_flags, gva_page)
        return either(valid, fuzzed)
    if code == C.InstallIntercept:

        def install(p: int, f: tuple[int, int, int]) -> tuple[bytes, int]:
            return fixed(INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(p, f[1], f[0], f[2])))

        kinds = weighted(
            known=(8, st.integers(0, 0x13)),
            device=(
                4,
                st.sampled_from([IT.X64IoPort, IT.X64IoPortRange, IT.X64MsrIndex, IT.X64Cpuid, IT.X64Msr]),
            ),
            invalid=(1, st.sampled_from([0x77, U32])),
            any=(1, u32),
        )
        # Valid: the device intercepts, exception intercepts of #GP and #PF, the global ones, or
        # removing one (access 0).
        valid = st.builds(
            install,
            st.sampled_from([w.active, w.plain]),
            st.sampled_from(
                [
                    *DEVICE_INTERCEPTS,
                    (IT.Exception, INTERCEPT_EXECUTE, 13),
                    (IT.Exception, INTERCEPT_EXECUTE, 14),
                    (IT.X64Msr, _RW, 0),
                    (IT.X64GlobalCpuid, INTERCEPT_EXECUTE, 0),
                    (IT.X64IoPort, 0, SERIAL),
                    (IT.X64Cpuid, 0, HVSIM_LEAF),
                ]
            ),
        )
        return either(valid, st.builds(install, child, kinds.flatmap(intercept_fields)))
    if code == C.CheckForIoIntercept:

        def check(where: tuple[int, int], *f: Any) -> tuple[bytes, int]:
            return fixed(CHECK_FOR_IO_INTERCEPT_INPUT.pack(CheckForIoInterceptInput(*where, *f)))

        device_port = st.sampled_from(
            [SERIAL, SERIAL_LSR, SERIAL - 1, SERIAL + 1, SERIAL + 7, SERIAL + 8, 0x60]
        )
        valid = st.builds(
            check, child_vp, st.sampled_from([0, 0x10]), st.just(0), device_port,
            st.sampled_from([1, 2, 4]), st.sampled_from([0, 1]), st.just(bytes(6)),
        )  # fmt: skip
        fuzzed = st.builds(
            check,
            st.tuples(child, vp),
            vtl,
            mostly_zero(u8),
            weighted(device=(4, device_port), any=(1, u16)),
            weighted(ok=(5, st.sampled_from([1, 2, 4])), bad=(1, st.sampled_from([0, 3, 8])), any=(1, u8)),
            weighted(ok=(5, st.sampled_from([0, 1])), bad=(1, st.sampled_from([2, 0xFF]))),
            weighted(zero=(5, st.just(bytes(6))), any=(1, st.binary(min_size=6, max_size=6))),
        )
        return either(valid, fuzzed)
    if code == C.AssertVirtualInterrupt:
        I = InterruptType  # noqa: E741
        none = HV_INTERRUPT_VECTOR_NONE
        level, logical = INTERRUPT_LEVEL, INTERRUPT_LOGICAL
        #: (control, destination, vector) a parent sends: fixed and lowest-priority interrupts to
        #: APIC IDs 0, 1 and broadcast (or logical masks), NMI, INIT and SIPI to the AP, ExtInt.
        valid_fields = st.sampled_from(
            [
                (I.Fixed, 0, 0x30),
                (I.Fixed, 1, 0x31),
                (I.Fixed, 0xFF, 0x40),
                (I.Fixed | level, 0, 0x41),
                (I.Fixed | level, 0, none),
                (I.LowestPriority | logical, 0b11, 0x42),
                (I.Fixed | logical, 0b10, 0x43),
                (I.Nmi, 0, 0),
                (I.Init, 1, 0),
                (I.Sipi, 1, 0x10),
                (I.ExtInt, 0, 0x30),
                (I.ExtInt, 0, none),
            ]
        )
        interrupt_control = st.builds(
            lambda kind, lvl, lgc, reserved: kind | lvl | lgc | reserved,
            weighted(known=(6, st.integers(0, 10)), any=(1, u32)),
            st.sampled_from([0, 0, level]),
            st.sampled_from([0, 0, logical]),
            mostly_zero(st.sampled_from([1 << 34, 1 << 63])),
        )
        fuzzed_fields = st.tuples(
            interrupt_control,
            weighted(
                small=(5, st.integers(0, 3)), special=(1, st.sampled_from([0xFF, 0b11, 0x100])), any=(1, u64)
            ),
            weighted(pointed=(5, st.sampled_from([0, 0x30, 255, 256, none])), any=(1, u32)),
        )

        def assert_interrupt(p: int, f: tuple[int, int, int], *rest: int) -> tuple[bytes, int]:
            return fixed(ASSERT_VIRTUAL_INTERRUPT_INPUT.pack(AssertVirtualInterruptInput(p, *f, *rest)))

        valid = st.builds(
            assert_interrupt,
            st.sampled_from([w.active, w.plain]),
            valid_fields,
            st.just(0),
            st.just(0),
            st.just(0),
        )
        fuzzed = st.builds(
            assert_interrupt,
            child,
            weighted(valid=(2, valid_fields), fuzzed=(3, fuzzed_fields)),
            vtl,
            mostly_zero(u8),
            mostly_zero(u16),
        )
        return either(valid, fuzzed)
    if code == C.ClearVirtualInterrupt:  # the world's ExtInt was asserted on `active`
        return weighted(extint=(2, st.just(w.active)), fuzzed=(3, child)).map(
            lambda p: fixed(PARTITION_ID_INPUT.pack(PartitionIdInput(p)))
        )
    if code in (C.FlushVirtualAddressSpace, C.FlushVirtualAddressList):
        listing = code == C.FlushVirtualAddressList
        known = (
            FLUSH_ALL_PROCESSORS
            | FLUSH_ALL_VIRTUAL_ADDRESS_SPACES
            | FLUSH_NON_GLOBAL_MAPPINGS_ONLY
            | FLUSH_USE_EXTENDED_RANGE_FORMAT
        )

        def flush_header(*f: int) -> bytes:
            return FLUSH_VIRTUAL_ADDRESS_INPUT.pack(FlushVirtualAddressInput(*f))

        cr3 = st.sampled_from([0, PML4, 0x10_0000, 0x20_0000])
        valid_flags = st.sampled_from(
            [
                0,
                FLUSH_ALL_PROCESSORS,
                FLUSH_ALL_VIRTUAL_ADDRESS_SPACES,
                FLUSH_ALL_PROCESSORS | FLUSH_ALL_VIRTUAL_ADDRESS_SPACES,
                (FLUSH_USE_EXTENDED_RANGE_FORMAT if listing else FLUSH_NON_GLOBAL_MAPPINGS_ONLY),
            ]
        )
        valid_header = st.builds(flush_header, cr3, valid_flags, st.sampled_from([1, 2, 3]))
        fuzzed_header = st.builds(
            flush_header,
            weighted(cr3=(4, cr3), bad=(1, st.sampled_from([1 << 46, 1 << 52, U64])), any=(1, u64)),
            weighted(
                known=(6, st.integers(0, known)),
                reserved=(
                    1,
                    st.builds(operator.or_, st.integers(0, known), st.sampled_from([0x10, 1 << 63])),
                ),
                any=(1, u64),
            ),
            weighted(pointed=(5, st.sampled_from([0, 1, 2, 3, 0xF, 1 << 63])), any=(1, u64)),
        )
        header = either(valid_header, fuzzed_header)
        if not listing:
            return header.map(fixed)
        gva_range = st.builds(
            lambda page, extra: _U64.pack(((page << 12) | extra) & U64),
            gva_page,
            weighted(one=(4, st.just(0)), few=(2, st.integers(1, 16)), most=(1, st.just(0xFFF))),
        )
        return st.builds(with_elements, header, st.lists(gva_range, min_size=1, max_size=16))
    if code == C.GetVpCpuidValues:

        def cpuid_header(where: tuple[int, int], *f: int) -> bytes:
            return GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(*where, *f))

        header = either(
            st.builds(cpuid_header, child_vp, st.integers(0, 3), st.just(0), st.just(0)),
            st.builds(
                cpuid_header,
                st.tuples(child, vp),
                weighted(ok=(5, st.integers(0, 3)), bad=(1, st.sampled_from([4, 1 << 31])), any=(1, u32)),
                mostly_zero(u32),
                mostly_zero(u32),
            ),
        )
        leaf = weighted(
            known=(5, st.sampled_from([0, 1, 7, 0xD, 0x4000_0000, 0x4000_0001, HVSIM_LEAF, 0x8000_0000])),
            any=(1, u32),
        )
        query = st.builds(
            lambda *f: CPUID_QUERY.pack(CpuidQuery(*f)), leaf, zero_or(u32), zero_or(u64), zero_or(u64)
        )
        return st.builds(with_elements, header, st.lists(query, min_size=1, max_size=8))
    if code in (C.MapStatsPage2, C.UnmapStatsPage):
        return stats_input(code, w, pid, vp)
    if code in (C.RegisterInterceptResult, C.UnregisterInterceptResult):
        return intercept_result_input(code, w, child, vp)
    page_type = weighted(
        known=(6, st.sampled_from([0, 1])), ghcb=(1, st.just(2)), any=(1, st.integers(3, 0xFFFF))
    )
    if code == C.MapVpStatePage:

        def map_state(where: tuple[int, int], *f: int) -> tuple[bytes, int]:
            return fixed(MAP_VP_STATE_PAGE_INPUT.pack(MapVpStatePageInput(*where, *f)))

        placement = weighted(
            chosen=(
                3,
                st.tuples(st.just(1), weighted(gpa=(3, st.sampled_from([0x900, 0x901, 0])), any=(1, u64))),
            ),
            hypervisor=(3, st.just((0, 0))),
            bad=(1, st.tuples(st.sampled_from([0, 2, 0xFF]), st.sampled_from([0, 0x900]))),
        )
        valid = st.builds(
            lambda where, t, place: map_state(where, t, 0, *place),
            child_vp,
            st.sampled_from([0, 1]),
            st.sampled_from([(0, 0), (1, 0x900), (1, 0x901)]),
        )
        fuzzed = st.builds(
            lambda where, t, v, place: map_state(where, t, v, *place),
            st.tuples(child, vp),
            page_type,
            vtl,
            placement,
        )
        return either(valid, fuzzed)
    assert code == C.UnmapVpStatePage, hex(code)

    def unmap_state(where: tuple[int, int], *f: int) -> tuple[bytes, int]:
        return fixed(UNMAP_VP_STATE_PAGE_INPUT.pack(UnmapVpStatePageInput(*where, *f)))

    valid = st.builds(
        unmap_state,
        weighted(world=(2, st.just((w.plain, 0))), any=(1, child_vp)),
        weighted(world=(2, st.just(0)), any=(1, st.just(1))),
        st.just(0),
        st.just(0),
    )
    return either(valid, st.builds(unmap_state, st.tuples(child, vp), page_type, vtl, mostly_zero(u8)))


def stats_input(
    code: int, w: World, pid: st.SearchStrategy[int], vp: st.SearchStrategy[int]
) -> st.SearchStrategy[tuple[bytes, int]]:
    """MapStatsPage2 / UnmapStatsPage (HYPERCALLS.md 4.29-4.30, 5.10): statistics types 1, 2,
    0x10001, 0x10002 and 7 (none), each with its identity layout, with and without a non-zero
    reserved byte, stats area types 0-2 (and 3); the devices world mapped the hypervisor's page
    and `plain`'s partition page (area SELF) already."""
    stats_pid = weighted(live=(6, st.sampled_from([SELF, w.root, w.active, w.plain])), known=(2, pid))
    # HV_STATS_OBJECT_IDENTITY bytes 0-14 per type, and which of them are reserved.
    bodies: dict[int, tuple[st.SearchStrategy[bytes], range]] = {
        ST.Hypervisor: (st.just(bytes(15)), range(0, 15)),
        ST.LogicalProcessor: (
            weighted(small=(4, st.integers(0, 3)), any=(1, u32)).map(lambda lp: _U32.pack(lp) + bytes(11)),
            range(4, 15),
        ),
        ST.Partition: (stats_pid.map(lambda p: _U64.pack(p) + bytes(7)), range(8, 15)),
        ST.Vp: (
            st.builds(
                lambda p, v: _U64.pack(p) + _U32.pack(v) + bytes(3),
                stats_pid,
                weighted(world=(4, st.integers(0, 1)), any=(1, vp)),
            ),
            range(12, 15),
        ),
    }
    area = weighted(
        self_=(4, st.just(0)), other=(2, st.sampled_from([1, 2])), bad=(1, st.sampled_from([3, 0xFF]))
    )

    def identity(kind: int) -> st.SearchStrategy[tuple[int, bytes]]:
        body, reserved = bodies.get(kind, (st.binary(min_size=15, max_size=15), range(0)))
        full = st.builds(
            operator.add, body.flatmap(lambda b: dirty(b, reserved)), area.map(lambda a: bytes([a]))
        )
        return st.tuples(st.just(kind), full)

    #: The objects a devices world mapped already, and ones nobody mapped: the logical processors,
    #: `active` and its VPs, the root's VP 0, `plain` seen as its parent's (area PARENT).
    world = [(ST.Hypervisor, bytes(16)), (ST.Partition, _U64.pack(w.plain) + bytes(8))]
    fresh = [
        (ST.LogicalProcessor, bytes(16)),
        (ST.LogicalProcessor, _U32.pack(1) + bytes(12)),
        (ST.Partition, _U64.pack(w.active) + bytes(8)),
        (ST.Vp, _U64.pack(w.active) + bytes(8)),
        (ST.Vp, _U64.pack(w.active) + _U32.pack(1) + bytes(4)),
        (ST.Vp, _U64.pack(SELF) + bytes(8)),
        (ST.Partition, _U64.pack(w.plain) + bytes(7) + b"\x01"),
    ]
    objects = weighted(
        known=(6, st.sampled_from([ST.Hypervisor, ST.LogicalProcessor, ST.Partition, ST.Vp, 7])),
        world=(2, st.sampled_from(world)),
        fresh=(2, st.sampled_from(fresh)),
        any=(1, u32),
    )
    objects = objects.flatmap(lambda o: st.just(o) if isinstance(o, tuple) else identity(o))
    if code == C.MapStatsPage2:
        return st.builds(
            lambda o, reserved, location: (
                MAP_STATS_PAGE2_INPUT.pack(MapStatsPage2Input(o[0], reserved, o[1], location)),
                0,
            ),
            objects,
            mostly_zero(u32),
            weighted(gpa=(4, st.sampled_from([0x800, 0x801, 0xFEB02, 0])), any=(1, u64)),
        )
    return st.builds(
        lambda o, padding: (UNMAP_STATS_PAGE_INPUT.pack(UnmapStatsPageInput(o[0], padding, o[1])), 0),
        objects,
        mostly_zero(u32),
    )


def intercept_result_input(
    code: int, w: World, child: st.SearchStrategy[int], vp: st.SearchStrategy[int]
) -> st.SearchStrategy[tuple[bytes, int]]:
    """Register/UnregisterInterceptResult (HYPERCALLS.md 4.25-4.26): a CPUID or MSR registration
    (mostly the parameters that fit the header's type, valid-looking), the devices world's own two
    registrations exactly, or anything; padded to 64 (32) bytes."""
    leaf = weighted(known=(5, st.sampled_from([1, HVSIM_LEAF, 0, 0x4000_0000])), any=(1, u32))
    msr = weighted(
        known=(5, st.sampled_from([SCRATCH_MSR + 1, SCRATCH_MSR, 0x1B, 0x4000_0000])), any=(1, u32)
    )
    access = weighted(ok=(5, st.sampled_from([1, 2, 3])), bad=(1, st.sampled_from([0, 4, 7])), any=(1, u32))
    flag = weighted(ok=(6, st.sampled_from([0, 1])), bad=(1, st.sampled_from([2, 0xFF])))
    mask = st.sampled_from([0, U32, 0xFF, 1 << 31])
    cpuid = st.builds(
        lambda *f: CPUID_RESULT_PARAMETERS.pack(CpuidResultParameters(*f)),
        leaf, zero_or(u32), flag, flag, mostly_zero(u16), u32, mask, u32, mask, u32, mask, u32, mask,
    )  # fmt: skip
    register_msr = st.builds(
        lambda *f: MSR_RESULT_PARAMETERS.pack(MsrResultParameters(*f)),
        msr,
        access,
        weighted(ok=(5, st.sampled_from([0, 1])), bad=(1, st.sampled_from([2, U32]))),
    )
    words = st.builds(lambda *w: struct.pack("<III", *w), leaf, zero_or(u32), flag)  # leaf, subleaf, specific
    unregister_msr = st.builds(lambda *w: struct.pack("<III", *w), msr, access, mostly_zero(u32))
    registering = code == C.RegisterInterceptResult
    size = REGISTER_INTERCEPT_RESULT_SIZE if registering else UNREGISTER_INTERCEPT_RESULT_SIZE

    def parameters(kind: int) -> st.SearchStrategy[bytes]:
        cpuid_form, msr_form = (cpuid, register_msr) if registering else (words, unregister_msr)
        either = st.one_of(cpuid_form, msr_form)
        forms: dict[int, st.SearchStrategy[bytes]] = {IT.X64Cpuid: cpuid_form, IT.X64Msr: msr_form}
        fitting = forms.get(kind, either)
        return weighted(fit=(6, fitting), other=(1, either))

    kind = weighted(
        known=(8, st.sampled_from([IT.X64Cpuid, IT.X64Msr])),
        other=(1, st.sampled_from([IT.X64IoPort, IT.X64MsrIndex, IT.X64GlobalCpuid, 0x77])),
        any=(1, u32),
    )
    target_vp = weighted(vp=(5, st.sampled_from([0, 1, HV_ANY_VP])), other=(1, vp))

    def block(p: int, v: int, kind_params: tuple[int, bytes]) -> tuple[bytes, int]:
        header = REGISTER_INTERCEPT_RESULT_HEADER.pack(RegisterInterceptResultHeader(p, v, kind_params[0]))
        return (header + kind_params[1]).ljust(size, b"\0"), 0

    fuzzed = st.builds(block, child, target_vp, kind.flatmap(lambda k: st.tuples(st.just(k), parameters(k))))
    cpuid_world = (
        CPUID_RESULT_PARAMETERS.pack(REGISTERED_CPUID) if registering else struct.pack("<III", 1, 0, 0)
    )
    world = st.sampled_from(
        [
            block(w.plain, HV_ANY_VP, (IT.X64Cpuid, cpuid_world)),
            block(w.plain, 0, (IT.X64Msr, MSR_RESULT_PARAMETERS.pack(REGISTERED_MSR))),
        ]
    )
    return weighted(world=(2, world), fuzzed=(3, fuzzed))


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
    kinds = ["random", "near", "near", "near", "near"]
    if w.devices:  # and well-formed calls of the host (root VP 0), so the deep paths are reached
        kinds += ["host", "host"]
    kind = draw(st.sampled_from(kinds), label="kind")
    if kind == "host":
        code = draw(st.sampled_from(DEVICE_CODES), label="code")
        data, elements = draw(device_input(int(code), w), label="layout")
        ctl = control(code, rep_count=elements) if CALL_TABLE[code].rep else control(code)
        return Call(ctl, data, callers[0], None, None)
    if kind == "random":
        ctl = draw(controls(), label="control")
        data = draw(st.one_of(st.binary(max_size=256), st.binary(max_size=5000)), label="input")
    else:
        options: dict[str, tuple[int, st.SearchStrategy[Any]]] = {"any": (1, st.sampled_from(IMPLEMENTED))}
        if w.messaging:  # on a messaging world, three calls in four are about messages
            options.update(send=(2, st.sampled_from(SENDING_CODES)), wire=(1, st.sampled_from(WIRING_CODES)))
        if w.devices:  # on a devices world, most are the memory, intercept and interrupt calls
            options.update(devices=(4 if w.messaging else 3, st.sampled_from(DEVICE_CODES)))
        codes = weighted(**options)
        code = draw(codes, label="code")
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


def take_message(draw: Callable[..., Any], w: World) -> None:
    """What a guest's SINT handler does on one VP: take the message out of a full slot (and write
    EOM if MessagePending was set), and test-and-clear an event flag."""
    pid, vp = draw(st.sampled_from(w.callers()), label="receiving VP")
    sint = draw(st.one_of(st.sampled_from([2, 3]), st.integers(0, 15)), label="sint")
    synic = w.sim.hv.partitions[pid].vps[vp].synic
    pending = synic.slot_type(sint) != 0 and synic.take_slot(sint)[1]
    if pending:
        status = w.sim.run_process(HostApi(w.sim, caller=pid, vp=vp).write_msr(RegisterName.Eom, 0))
        assert status in (S.SUCCESS, S.ACCESS_DENIED), status  # ACCESS_DENIED: no AccessSynicRegs
    flags = synic.pending_flags(sint)
    if flags:
        assert synic.take_flag(sint, draw(st.sampled_from(flags), label="flag"))
    assert checkers.check_state(w.sim.hv) == []


def serve_intercept(w: World) -> None:
    """What the devices scenario's host does with an intercept message in root VP 0's SINT 0 slot:
    take it, write EOM if MessagePending was set, and resume the intercepted VP with a result in
    RAX and RIP past the instruction (SetVpRegisters; the VP may be gone by now, or the root's
    privileges)."""
    synic = w.sim.hv.partitions[w.root].vps[0].synic
    if synic.slot_type(HV_SYNIC_INTERCEPTION_SINT) == 0:
        return
    message, pending = synic.take_slot(HV_SYNIC_INTERCEPTION_SINT)
    api = HostApi(w.sim)
    if pending:  # ACCESS_DENIED: a fuzzed SetPartitionProperty took the root's privileges away
        assert w.sim.run_process(api.write_msr(R.Eom, 0)) in (S.SUCCESS, S.ACCESS_DENIED)
    head = MESSAGE_HEADER.unpack(message)
    if head.message_type not in set(MessageType) - {MessageType.None_, MessageType.SynicSintIntercept}:
        return  # not an intercept (a direct post to SINT 0)
    hdr = X64_INTERCEPT_HEADER.unpack(message, 16)
    regs: dict[int, int] = {R.Rax: 0x60, R.Rip: hdr.rip + 2, R.InterceptSuspend: 0}
    out = w.sim.run_process(api.set_registers(head.origination_id, hdr.vp_index, regs))
    gone = (S.INVALID_PARTITION_ID, S.INVALID_PARTITION_STATE, S.INVALID_VP_INDEX, S.ACCESS_DENIED)
    assert out.status is S.SUCCESS or out.status in gone, out
    assert checkers.check_state(w.sim.hv) == []


def fuzz(data: st.DataObject, calls: int) -> None:
    messaging = data.draw(st.booleans(), label="messaging world")
    backlog = data.draw(st.sampled_from([0, 0, 1, 16, 17]), label="backlog") if messaging else 0
    devices = data.draw(st.booleans(), label="devices world")
    w = build_world(messaging=messaging, backlog=backlog, devices=devices)
    try:
        for _ in range(calls):
            if messaging and data.draw(st.integers(0, 3), label="a guest takes a message") == 0:
                take_message(data.draw, w)
            if devices and data.draw(st.integers(0, 2), label="the host serves an intercept") > 0:
                serve_intercept(w)
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


# --- the devices world reaches every call's effects -----------------------------------------------
def _translate(pid: int, gva_page: int) -> bytes:
    return TRANSLATE_VA_INPUT.pack(TranslateVirtualAddressInput(pid, 0, 0, T.VALIDATE_READ, gva_page))


def _device_calls(w: World) -> dict[int, tuple[bytes, int]]:
    """One well-formed block per ``DEVICE_CODES`` call that a devices world lets succeed (with its
    rep count): what the fuzz's valid variants aim at."""
    free = HOST_PAGES // 2
    flush = FLUSH_VIRTUAL_ADDRESS_INPUT.pack(
        FlushVirtualAddressInput(0, FLUSH_ALL_PROCESSORS | FLUSH_ALL_VIRTUAL_ADDRESS_SPACES, 0)
    )
    msr_result = MSR_RESULT_PARAMETERS.pack(MsrResultParameters(SCRATCH_MSR + 2, INTERCEPT_READ, 0))
    return {
        C.MapGpaPages: (
            MAP_GPA_PAGES_HEADER.pack(MapGpaPagesHeader(w.active, 0x40, F.READABLE | F.WRITABLE, 0))
            + _U64.pack(free),
            1,
        ),
        C.UnmapGpaPages: (UNMAP_GPA_PAGES_HEADER.pack(UnmapGpaPagesHeader(w.plain, 0x100, 0, 0)), 2),
        C.MapSparseGpaPages: (
            SPARSE_GPA_HEADER.pack(SparseGpaHeader(w.active, F.READABLE, 0))
            + GPA_MAPPING_ELEMENT.pack(GpaMappingElement(0x50, free + 1)),
            1,
        ),
        C.ModifySparseGpaPages: (
            SPARSE_GPA_HEADER.pack(SparseGpaHeader(w.plain, F.READABLE, 0)) + _U64.pack(0x20),
            1,
        ),
        C.TranslateVirtualAddress: (_translate(w.plain, DATA >> 12), 0),
        C.TranslateVirtualAddressEx: (_translate(w.plain, (HIGH_HALF >> 12) + 3), 0),
        C.InstallIntercept: (
            INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(w.plain, INTERCEPT_EXECUTE, IT.Exception, 13)),
            0,
        ),
        C.CheckForIoIntercept: (
            CHECK_FOR_IO_INTERCEPT_INPUT.pack(
                CheckForIoInterceptInput(w.plain, 0, 0, 0, SERIAL, 1, 1, bytes(6))
            ),
            0,
        ),
        C.AssertVirtualInterrupt: (
            ASSERT_VIRTUAL_INTERRUPT_INPUT.pack(
                AssertVirtualInterruptInput(w.active, InterruptType.Fixed, 0, 0x30, 0, 0, 0)
            ),
            0,
        ),
        C.ClearVirtualInterrupt: (PARTITION_ID_INPUT.pack(PartitionIdInput(w.active)), 0),
        C.FlushVirtualAddressSpace: (flush, 0),
        C.FlushVirtualAddressList: (flush + _U64.pack(DATA | 3), 1),
        C.GetVpCpuidValues: (
            GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(w.plain, 0, 0x2, 0, 0))
            + CPUID_QUERY.pack(CpuidQuery(1, 0, 0, 0)),
            1,
        ),
        C.MapStatsPage2: (
            MAP_STATS_PAGE2_INPUT.pack(MapStatsPage2Input(ST.Vp, 0, _U64.pack(w.active) + bytes(8), 0x802)),
            0,
        ),
        C.UnmapStatsPage: (UNMAP_STATS_PAGE_INPUT.pack(UnmapStatsPageInput(ST.Hypervisor, 0, bytes(16))), 0),
        C.MapVpStatePage: (
            MAP_VP_STATE_PAGE_INPUT.pack(
                MapVpStatePageInput(w.active, 0, VpStatePageType.Registers, 0, 0, 0)
            ),
            0,
        ),
        C.UnmapVpStatePage: (
            UNMAP_VP_STATE_PAGE_INPUT.pack(
                UnmapVpStatePageInput(w.plain, 0, VpStatePageType.Registers, 0, 0)
            ),
            0,
        ),
        C.RegisterInterceptResult: (
            (
                REGISTER_INTERCEPT_RESULT_HEADER.pack(RegisterInterceptResultHeader(w.plain, 0, IT.X64Msr))
                + msr_result
            ).ljust(REGISTER_INTERCEPT_RESULT_SIZE, b"\0"),
            0,
        ),
        C.UnregisterInterceptResult: (
            (
                REGISTER_INTERCEPT_RESULT_HEADER.pack(RegisterInterceptResultHeader(w.plain, 0, IT.X64Msr))
                + MSR_RESULT_PARAMETERS.pack(REGISTERED_MSR)
            ).ljust(UNREGISTER_INTERCEPT_RESULT_SIZE, b"\0"),
            0,
        ),
    }


@pytest.mark.parametrize("code", DEVICE_CODES, ids=lambda code: code.name)
def test_devices_world_lets_every_device_call_succeed(code: HypercallCode) -> None:
    """The set-up a devices world makes is what the deep paths need: each call the fuzz favours
    there succeeds with a well-formed block (the translations, the intercept check and the CPUID
    query answer what the world's page tables, intercepts and registrations say)."""
    w = build_world(devices=True)
    try:
        data, reps = _device_calls(w)[code]
        ctl = control(code, rep_count=reps) if CALL_TABLE[code].rep else control(code)
        res = issue(w, ctl, data)
        assert res.status is S.SUCCESS
        if code in (C.TranslateVirtualAddress, C.TranslateVirtualAddressEx):
            result = _U64.unpack_from(res.output)[0]
            gpa_page = _U64.unpack_from(res.output, 48 if code == C.TranslateVirtualAddressEx else 8)[0]
            assert (result & U32, gpa_page) == (0, DATA >> 12 if code == C.TranslateVirtualAddress else 3)
        elif code == C.CheckForIoIntercept:
            assert res.output[0] == 1  # the serial port's intercept
        elif code == C.GetVpCpuidValues:
            assert _U32.unpack_from(res.output, 4)[0] & 0xFF == 0x5A  # EBX as registered
    finally:
        finish(w)


def test_devices_world_delivers_and_serves_intercepts() -> None:
    """`plain`'s guest is intercepted (its VP suspended, the message in root VP 0's SINT 0 slot);
    each time the host serves one, the guest resumes and runs into the next: the serial port's
    writes and LSR read, the scratch MSR, the hvsim CPUID leaf, the unmapped MMIO timer page."""
    w = build_world(devices=True)
    try:
        hv = w.sim.hv
        root_synic, vp = hv.partitions[w.root].vps[0].synic, hv.partitions[w.plain].vps[0]
        seen = []
        for served in range(12):
            w.sim.run(w.sim.now_ns + 200_000)
            assert vp.intercept_suspend & 1 and vp.intercepts == served + 1
            seen.append(root_synic.slot_type(HV_SYNIC_INTERCEPTION_SINT))
            serve_intercept(w)
            assert root_synic.slot_type(HV_SYNIC_INTERCEPTION_SINT) == 0
        assert seen == [MessageType.X64IoPortIntercept] * 7 + [MessageType.X64MsrIntercept] * 2 + [
            MessageType.X64CpuidIntercept,
            MessageType.UnmappedGpa,
            MessageType.X64IoPortIntercept,  # the next loop
        ]
        assert w.sim.runtime.failures == []
    finally:
        finish(w)


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
    child: bool | str = False,
    expected: HvStatus | None = None,
    xfail: str | None = None,
) -> Any:
    """One famous bad input: issued from the root (or the VP 0 of the host-like ACTIVE child, or of
    `plain`, the child with default privileges, when *child* is "plain") on a fresh world. *xfail*:
    a known implementation bug (strict: the test fails once it is fixed)."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(ctl, data, input_gpa, output_gpa, child, expected, id=name, marks=marks)


_CP = CREATE_PARTITION_INPUT.size
_UNKNOWN = 0x1234
#: Calls on a child, each naming partition ``_UNKNOWN`` with an otherwise valid-looking block.
_UNKNOWN_PARTITION_CALLS = [
    (
        "MapGpaPages",
        control(C.MapGpaPages, rep_count=1),
        MAP_GPA_PAGES_HEADER.pack(MapGpaPagesHeader(_UNKNOWN, 0, F.READABLE, 0)) + _U64.pack(0),
    ),
    (
        "MapSparseGpaPages",
        control(C.MapSparseGpaPages, rep_count=1),
        SPARSE_GPA_HEADER.pack(SparseGpaHeader(_UNKNOWN, F.READABLE, 0))
        + GPA_MAPPING_ELEMENT.pack(GpaMappingElement(0, 0)),
    ),
    (
        "UnmapGpaPages",
        control(C.UnmapGpaPages, rep_count=1),
        UNMAP_GPA_PAGES_HEADER.pack(UnmapGpaPagesHeader(_UNKNOWN, 0, 0, 0)),
    ),
    (
        "ModifySparseGpaPages",
        control(C.ModifySparseGpaPages, rep_count=1),
        SPARSE_GPA_HEADER.pack(SparseGpaHeader(_UNKNOWN, F.READABLE, 0)) + _U64.pack(0),
    ),
    (
        "MapVpStatePage",
        control(C.MapVpStatePage),
        MAP_VP_STATE_PAGE_INPUT.pack(MapVpStatePageInput(_UNKNOWN, 0, 0, 0, 0, 0)),
    ),
    (
        "UnmapVpStatePage",
        control(C.UnmapVpStatePage),
        UNMAP_VP_STATE_PAGE_INPUT.pack(UnmapVpStatePageInput(_UNKNOWN, 0, 0, 0, 0)),
    ),
    (
        "InstallIntercept",
        control(C.InstallIntercept),
        INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(_UNKNOWN, _RW, IT.X64IoPort, 0x60)),
    ),
    (
        "AssertVirtualInterrupt",
        control(C.AssertVirtualInterrupt),
        ASSERT_VIRTUAL_INTERRUPT_INPUT.pack(AssertVirtualInterruptInput(_UNKNOWN, 0, 0, 0x30, 0, 0, 0)),
    ),
]
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
    # Section 1.5: ACCESS_DENIED wins over a status that would tell a caller without the privilege
    # whether a partition exists. `plain` lacks CreatePartitions; 0x1234 names no partition.
    *[
        case(
            f"{name} of an unknown partition from a child without CreatePartitions",
            ctl,
            block,
            child="plain",
            expected=S.ACCESS_DENIED,
        )
        for name, ctl, block in _UNKNOWN_PARTITION_CALLS
    ],
]


@pytest.mark.parametrize(("ctl", "data", "input_gpa", "output_gpa", "child", "expected"), FAMOUS)
def test_famous_bad_inputs_return_statuses(
    ctl: int,
    data: bytes,
    input_gpa: int | None,
    output_gpa: int | None,
    child: bool | str,
    expected: HvStatus | None,
) -> None:
    w = build_world()
    try:
        who = (w.plain, 0) if child == "plain" else (w.active, 0) if child else (w.root, 0)
        res = issue(w, ctl, data, caller=who, input_gpa=input_gpa, output_gpa=output_gpa)
        if expected is not None:
            assert res.status is expected
    finally:
        finish(w)
