"""A Hypothesis state machine over the host hypercall interface, judged by a model and the checkers.

Rules are hypercalls the root issues through :class:`HostApi` (and, for the privilege rules,
hypercalls a child issues from its own VP). The test keeps its own *model* of the world in plain
Python: every partition's state, VPs, tracked registers, properties, and the exact set of host pages
in its pool. Each rule computes the status HYPERCALLS.md (sections 1, 3, 4 and 6) prescribes for the
model state, asserts the hypervisor answered exactly that, then updates the model. Invariants run the
state checkers, replay the log's ``partition.state`` records, balance host memory, and compare the
model with GetMemoryBalance and with the hypervisor's own records.

Page costs are small (``COSTS``) so partitions reach every state within a short run, and the rep
time budget is drawn, so rep calls are continued across invocations as often as not.

Ports and messages (HYPERCALLS.md 4.37-4.44, 5.9): the root creates and deletes ports, connects and
disconnects partitions, and sets SynIC registers of VPs; guests (and the root) write their own SynIC
MSRs, post messages and signal events through their connections, and take messages out of their SIM
slots (writing EOM when MessagePending is set); the root posts and signals directly. The model
follows every VP's SynIC exactly: slots, queues in order, MessagePending, event flags, port buffers,
HV_ANY_VP round-robin. It can, because a rule that sends runs the clock until the message has
arrived (``settle``): between steps nothing is in transit, and every status is predicted exactly,
INSUFFICIENT_BUFFERS included. Invariants compare each live VP's SynIC with the model and run the
message-accounting checkers (the buffer checker each step; the log checker over the incrementally
decoded records each step, and over the whole log at teardown).

Guest memory (HYPERCALLS.md 4.16, 4.18, 5.7): the root maps small runs of host pages it allocates into
ACTIVE children with MapGpaPages (fresh pages, pages already mapped elsewhere: shared memory, a
pool page or one beyond host RAM stopping the call there), illegal access combinations, backing-only
pages (zero page, no access) also as 2 MiB large pages, and unmaps them with UnmapGpaPages (with and
without KEEP_PRECOMMITTED). The model holds every child's GPA map (host page and flags per GPA
page), the 2 MiB regions whose page table its pool pays for, and how often each host page is mapped
(the host frees a page once nothing maps it). Invariants compare the maps and regions with the
hypervisor's, run the mapping checker, and try to deposit a mapped page (OPERATION_DENIED);
FinalizePartition must drop the child's whole map.

Virtual interrupts, registered intercept results, statistics and VP state pages (HYPERCALLS.md
4.15, 4.25-4.26, 4.29-4.32, 4.34-4.35; the model pieces are in ``sm_models.py``): the root asserts
interrupts of every type into its children and the model resolves each destination, follows every
VP's virtual APIC (pending vectors, NMIs; INIT resets a VP, SIPI starts an AP) and each partition's
ExtInt latch (NONE -> PENDING -> ACKNOWLEDGED once VP 0 runs and takes it; ACKNOWLEDGED to a new
ExtInt until ClearVirtualInterrupt). It registers and unregisters CPUID and MSR results per VP or
HV_ANY_VP, and GetVpCpuidValues with ApplyRegisteredValues must merge in the registration that
applies. The root and children map and unmap statistics pages (the caller's pool pays a page) and
VP state pages (the child's pool pays); DeleteVp and FinalizePartition drop the pages of what went,
and give the page back. Invariants compare the latches, registrations, mapped pages and APICs.
"""

from __future__ import annotations

import struct
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from hvsim.actors.config import HvConfig, PageCosts
from hvsim.actors.hvdef import (
    ALL_PRIVILEGES,
    HV_ANY_VP,
    HV_EVENT_FLAGS_BYTES,
    HV_EVENT_FLAGS_COUNT,
    HV_MESSAGE_FLAG_PENDING,
    HV_MESSAGE_PAYLOAD_SIZE,
    HV_MESSAGE_SIZE,
    HV_PAGE_SIZE,
    HV_PARTITION_ID_SELF,
    HV_SYNIC_SINT_COUNT,
    HV_VP_INDEX_SELF,
    INTERRUPT_LEVEL,
    INTERRUPT_LOGICAL,
    LARGE_PAGE_PAGES,
    MEMORY_POOL_INPUT,
    MESSAGE_HEADER,
    MESSAGE_TYPE_HYPERVISOR,
    SINT_MASKED,
    SYNIC_ENABLE,
    UNMAP_GPA_KEEP_PRECOMMITTED,
    UNMAP_GPA_LARGE_PAGE,
    VP_REGISTERS_INPUT,
    HvStatus,
    HypercallCode,
    InterruptType,
    MapGpaFlags,
    MemoryPoolInput,
    PartitionPrivilege,
    PortType,
    PropertyCode,
    RegisterName,
    StatsObjectType,
    VpRegistersInput,
    VpStatePageType,
    control,
)
from hvsim.actors.interrupts import APPLY_REGISTERED_VALUES
from hvsim.actors.memory import HOST
from hvsim.actors.synic import Synic
from hvsim.actors.workload import Compute, Hypercall, Program
from hvsim.scenarios import HostApi, Simulation, checkers
from tests.sim.sm_models import (
    ASSERT_ARGS,
    BROADCAST,
    CPUID,
    CPUID_LEAVES,
    CPUID_VALUES_ARGS,
    EXT_INT_ARGS,
    MAP_LOCATION_PROVIDED,
    MAP_STATE_ARGS,
    MAP_STATS_ARGS,
    MSR,
    MSR_ACCESSES,
    NONE,
    PARTITION_OBJECTS,
    RESULT_ARGS,
    STATE_PAGE_VTLS,
    STATS_ARGS,
    TRAFFIC,
    UNMAP_STATE_ARGS,
    ApicModel,
    CpuidKey,
    CpuidPattern,
    Latch,
    MsrKey,
    MsrPattern,
    StatsKey,
    Words,
    assert_input,
    assert_parameters_ok,
    clear_input,
    cpuid_key,
    cpuid_parameters,
    cpuid_pattern_ok,
    cpuid_patterns,
    cpuid_query,
    cpuid_results,
    cpuid_values_input,
    destination,
    identity_of,
    map_state_input,
    map_stats_input,
    msr_access_ok,
    msr_parameters,
    msr_pattern_ok,
    msr_patterns,
    registered_cpuid,
    result_header,
    state_page_flags_ok,
    stats_identity,
    stats_parameters_ok,
    unmap_state_input,
    unmap_stats_input,
    unregister_cpuid_parameters,
    unregister_msr_parameters,
    words,
)

C = HypercallCode
S = HvStatus
R = RegisterName
F = MapGpaFlags
IT = InterruptType
ST = StatsObjectType
VT = VpStatePageType
STATE_PAGE_TYPES = (VT.Registers, VT.InterceptMessage)
PC = PropertyCode
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF
U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
_U64 = struct.Struct("<Q")

HOST_PAGES = 4096
COSTS = PageCosts(create_partition=2, initialize_partition=24, create_vp=6)
#: A partition id no run ever allocates (ids are sequential from 1).
BOGUS_PID = 0x0000_7777_0000_0001
MAX_VP_INDEX = 2047
VTLB_MAX = 256

CREATED, ACTIVE, FINALIZED, DELETED = "CREATED", "ACTIVE", "FINALIZED", "DELETED"

#: The registers the model tracks, with their reset values on a new child VP.
TRACKED = (R.ExplicitSuspend, R.Rip, R.Rflags)
CHILD_RESET: dict[int, int] = {R.ExplicitSuspend: 1, R.Rip: 0xFFF0, R.Rflags: 0x2}
#: A name that is no register: INVALID_PARAMETER (the default ``unknown_register_status``).
UNKNOWN_REGISTER = 0x0000_DEAD
#: RFLAGS bits 63:22, 15, 5 and 3 are reserved (Intel SDM 3.4.3); bit 1 is fixed at 1.
RFLAGS_RESERVED = (U64 & ~((1 << 22) - 1)) | (1 << 15) | (1 << 5) | (1 << 3)
#: Property codes the rules set and get, plus one no partition knows.
UNKNOWN_PROPERTY = 0x7FFF_0000
DEFAULT_CPU_WEIGHT = 100


def register_value_ok(name: int, value: int) -> bool:
    """The TLFS write rule (HYPERCALLS.md 4.14) for the tracked registers."""
    if name == R.ExplicitSuspend:
        return value in (0, 1)
    if name == R.Rip:
        return value <= U64
    if name == R.Rflags:
        return value <= U64 and not value & RFLAGS_RESERVED and bool(value & 0x2)
    return False


# --- the model --------------------------------------------------------------------------------------
@dataclass(eq=False)
class PortModel:
    """A port as the model knows it (HYPERCALLS.md 4.37); identity matters: a connection leads to
    the port object it was made to, and a new port with the same id is another port."""

    owner: int
    id: int
    type: int
    sint: int
    #: A VP index, or HV_ANY_VP.
    vp: int
    base: int
    count: int
    #: The only partition allowed to connect (0: any).
    allowed: int
    #: (connection owner, connection id) of the connection made to it, if any.
    connection: tuple[int, int] | None = None
    #: Round-robin cursor over the owner's VPs (HV_ANY_VP).
    next_vp: int = 0


@dataclass(eq=False)
class ConnModel:
    owner: int
    id: int
    #: The port it was connected to (it leads nowhere once that port is deleted).
    port: PortModel


@dataclass(eq=False)
class MsgModel:
    """A message in a SIM slot or a SINT queue: its type is unique per run (a tag)."""

    type: int
    size: int
    #: OriginationId: the port id (0 for a direct post).
    origin: int
    #: The port whose buffer it holds while queued (None: a direct post).
    port: PortModel | None


@dataclass
class SynicModel:
    """A VP's SynIC: the enable bits, unmasked SINTs, the SIM slots (message, MessagePending), the
    SINT queues and the SIEF flags."""

    scontrol: bool = False
    simp: bool = False
    siefp: bool = False
    unmasked: set[int] = field(default_factory=set)
    slots: dict[int, tuple[MsgModel, bool]] = field(default_factory=dict)
    queues: dict[int, deque[MsgModel]] = field(default_factory=lambda: defaultdict(deque))
    flags: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))

    @property
    def sim_on(self) -> bool:
        return self.scontrol and self.simp

    @property
    def sief_on(self) -> bool:
        return self.scontrol and self.siefp


@dataclass
class VpModel:
    index: int
    started: bool
    regs: dict[int, int]
    synic: SynicModel = field(default_factory=SynicModel)
    apic: ApicModel = field(default_factory=ApicModel)

    @classmethod
    def reset(cls, index: int) -> VpModel:
        return cls(index, index == 0, dict(CHILD_RESET))


@dataclass
class PartModel:
    pid: int
    state: str
    privileges: int
    is_root: bool = False
    #: Every host page in this partition's pool (available or in use).
    pages: set[int] = field(default_factory=set)
    vps: dict[int, VpModel] = field(default_factory=dict)
    #: Pool pages held by the virtual TLB (VirtualTlbPageCount).
    vtlb: int = 0
    cpu_weight: int = DEFAULT_CPU_WEIGHT
    deposited: int = 0
    withdrawn: int = 0
    #: Its ports and connections, by id (each charged to this pool).
    ports: dict[int, PortModel] = field(default_factory=dict)
    conns: dict[int, ConnModel] = field(default_factory=dict)
    #: Its GPA map: GPA page -> (host page, or None for a page with no backing; map flags).
    gpa: dict[int, tuple[int | None, int]] = field(default_factory=dict)
    #: The 2 MiB regions whose page table its pool pays for (kept empty by KEEP_PRECOMMITTED), and
    #: how many GPA pages each region maps.
    tables: set[int] = field(default_factory=set)
    region_pages: Counter[int] = field(default_factory=Counter)
    #: Its ExtInt latch, and the intercept results its parent registered (keyed as the hypervisor
    #: keys them: a VP index or HV_ANY_VP first; they outlive the VP, as the hypervisor's do).
    latch: Latch = Latch.NONE
    cpuid_results: dict[CpuidKey, tuple[Words, Words]] = field(default_factory=dict)
    msr_results: dict[MsrKey, int] = field(default_factory=dict)
    #: Statistics pages it mapped (object -> map location) and VP state pages of its VPs ((VP, type)
    #: -> location); its pool pays a page for each.
    stats: dict[StatsKey, int] = field(default_factory=dict)
    state_pages: dict[tuple[int, int], int] = field(default_factory=dict)


# --- strategies -------------------------------------------------------------------------------------
u64 = st.integers(0, U64)
register_values = st.one_of(
    st.integers(0, 3),
    st.sampled_from([0x2, 0x202, 0x246, 0xFFF0, 0x8, 0x3, U64, 1 << 64, (1 << 128) - 1]),
    u64,
    st.integers(0, (1 << 128) - 1),
)
privilege_values = st.one_of(
    u64,
    st.sampled_from(
        [
            HvConfig().child_default_privileges,
            HvConfig().child_default_privileges | PP.CreatePartitions,
            HvConfig().child_default_privileges | PP.AccessMemoryPool | PP.AccessVpRegisters,
            int(ALL_PRIVILEGES),
            0,
        ]
    ),
    st.lists(st.sampled_from(list(PP)), max_size=6).map(lambda bits: sum(set(int(b) for b in bits))),
)
property_values = st.one_of(
    st.integers(0, 300), st.sampled_from([1, 10_000, 10_001, VTLB_MAX, VTLB_MAX + 1, U64]), u64
)
vp_indices = st.one_of(st.integers(0, 3), st.sampled_from([MAX_VP_INDEX, MAX_VP_INDEX + 1, HV_VP_INDEX_SELF]))
small_counts = st.integers(0, 48)
page_counts = st.one_of(small_counts, st.integers(300, 700))
withdraw_counts = st.one_of(st.integers(1, 40), st.integers(41, 512))

#: A guest that keeps its VP busy with compute and side-effect-free hypercalls once it runs.
_GET_RIP = VP_REGISTERS_INPUT.pack(VpRegistersInput(SELF, HV_VP_INDEX_SELF, 0, bytes(3))) + struct.pack(
    "<I", R.Rip
)
GUEST = Program(
    loop=(
        Compute(7_000),
        Hypercall(control(C.GetPartitionId), label="GetPartitionId"),
        Compute(3_000),
        Hypercall(control(C.GetVpRegisters, rep_count=1), _GET_RIP, label="GetVpRegisters"),
    ),
    name="busy",
)


#: Ports and messages. Children are granted these in most runs (``boot``).
MESSAGING = int(PP.PostMessages | PP.SignalEvents)
#: The SINTs a channel uses (VMBus convention), their vectors (VECTOR + SINT), the overlay pages.
MSG_SINT, EVENT_SINT = 2, 3
VECTOR = 0x30
SIMP_GPA, SIEFP_GPA = 0xFEB0_0000, 0xFEB0_1000
port_ids = st.integers(1, 3)
conn_ids = st.integers(1, 3)
port_kinds = st.sampled_from([PortType.Message, PortType.Event])
synic_ops = st.sampled_from(["enable", "enable", "disable", "simp_off", "siefp_off", "mask", "unmask"])
unmasked_sints = st.one_of(
    st.just(frozenset({MSG_SINT, EVENT_SINT})), st.frozensets(st.sampled_from([1, MSG_SINT, EVENT_SINT, 4]))
)
#: PostMessage: a fresh guest type, or type 0, a hypervisor type (bit 31), a 241-byte payload.
post_kinds = st.sampled_from(["ok", "ok", "ok", "ok", "ok", "none", "reserved", "oversize"])
#: PostMessageDirect may send hypervisor types (bit 31): the host delivers intercepts that way.
direct_kinds = st.sampled_from(["ok", "ok", "ok", "ok", "hypervisor", "hypervisor", "none", "oversize"])
payload_sizes = st.one_of(
    st.sampled_from([0, 16, HV_MESSAGE_PAYLOAD_SIZE]), st.integers(0, HV_MESSAGE_PAYLOAD_SIZE)
)
#: SignalEventDirect: any of a SINT's 2048 flags; 2048 is one too many.
direct_flags = st.one_of(
    *[st.integers(0, 20)] * 3, st.sampled_from([HV_EVENT_FLAGS_COUNT - 1, HV_EVENT_FLAGS_COUNT])
)
flag_numbers = st.one_of(st.integers(0, 20), st.sampled_from([63, 64, HV_EVENT_FLAGS_COUNT - 1]))


#: Guest memory. A child's GPA page numbers are below GPA_LIMIT; the rules map in its first three
#: 2 MiB regions (a page-table page each) and at the very end of its GPA space.
GPA_LIMIT = 1 << (HvConfig().guest_gpa_bits - 12)
REGION = LARGE_PAGE_PAGES
gpa_bases = st.one_of(
    st.integers(0, 3 * REGION - 8), st.sampled_from([REGION - 2, 2 * REGION - 1, GPA_LIMIT - 3])
)
#: MapFlags: legal access combinations (with NOT_CACHED, ADJUSTABLE), W alone (illegal), and pages
#: with no host page behind them (the shared zero page, no access at all).
map_flags = st.sampled_from(
    [F.READABLE, F.READABLE | F.WRITABLE, F.PERMISSIONS, F.READABLE | F.EXECUTABLE, 0,
     F.READABLE | F.WRITABLE | F.NOT_CACHED, F.READABLE | F.ADJUSTABLE, F.WRITABLE,
     F.ZEROED | F.READABLE, F.NO_ACCESS]
)  # fmt: skip
BACKINGS = [F.ZEROED | F.READABLE, F.NO_ACCESS]
#: Where a MapGpaPages source list may go wrong: nowhere, a page in a pool, a page beyond host RAM.
bad_sources = st.sampled_from([None, None, None, "pooled", "beyond"])
unmap_flag_values = st.sampled_from(
    [
        0,
        0,
        UNMAP_GPA_KEEP_PRECOMMITTED,
        UNMAP_GPA_LARGE_PAGE,
        UNMAP_GPA_LARGE_PAGE | UNMAP_GPA_KEEP_PRECOMMITTED,
        4,
    ]
)


def map_flags_ok(flags: int) -> bool:
    """HYPERCALLS.md 5.7: no W or X without R; NO_ACCESS grants nothing; the zero page is read-only."""
    rights = flags & F.PERMISSIONS
    if rights & (F.WRITABLE | F.EXECUTABLE) and not rights & F.READABLE:
        return False
    backing = flags & F.BACKING_MASK
    return not (backing == F.NO_ACCESS and rights) and not (backing == F.ZEROED and rights & F.WRITABLE)


def often(data: st.DataObject, options: list[Any], label: str) -> Any:
    """One of *options* three times in four (None the fourth time, or when there are none)."""
    if options and data.draw(st.integers(0, 3), label=f"pick an existing {label}") > 0:
        return data.draw(st.sampled_from(options), label=label)
    return None


#: What the privilege rule has a child try from its own VP.
CHILD_OPS = (
    *("create_partition", "initialize", "finalize", "delete", "create_vp", "delete_vp"),
    *("deposit", "withdraw", "balance", "next_child", "get_partition_id"),
    *("set_property", "get_property", "get_registers", "set_registers", "map_gpa", "unmap_gpa"),
    *("assert_interrupt", "clear_interrupt", "register_result", "cpuid_values", "map_vp_state"),
    "unmap_vp_state",
)
#: A CPUID registration every child-issued RegisterInterceptResult carries (never reached).
_PATTERN = CpuidPattern(1, 0, 0, 0, 0, (1, 2, 3, 4), (U32, U32, U32, U32))


class HypervisorMachine(RuleBasedStateMachine):
    """The root drives partitions through their lifecycle; children try what they may not."""

    partitions = Bundle("partitions")

    # --- set-up ----------------------------------------------------------------------------------
    @initialize(
        target=partitions,
        seed=st.integers(0, 2**32),
        budget=st.sampled_from([None, 50_000, 3_000]),
        funding=st.integers(0, 40),
        senders=st.sampled_from([True, True, True, False]),
        stats=st.booleans(),
    )
    def boot(self, seed: int, budget: int | None, funding: int, senders: bool, stats: bool) -> Any:
        """A fresh world; the root's own pool gets *funding* pages (0: CreatePartition must first
        answer INSUFFICIENT_MEMORY, and ``deposit_self`` is the host's reaction). With *senders*,
        new children may post messages and signal events, with *stats* map their own statistics
        pages (PrivilegeFlags can still change that)."""
        privileges = HvConfig().child_default_privileges | (MESSAGING if senders else 0)
        privileges |= int(PP.AccessStats) if stats else 0
        self.config = HvConfig(
            host_pages=HOST_PAGES, page_costs=COSTS, rep_budget_ns=budget, child_default_privileges=privileges
        )
        self.sim = Simulation(seed, config=self.config)
        self.api = HostApi(self.sim)
        hv = self.sim.hv
        self.root = PartModel(self.sim.root_id, ACTIVE, int(ALL_PRIVILEGES), is_root=True)
        for index in hv.root.vps:
            self.root.vps[index] = VpModel(index, True, {R.ExplicitSuspend: 0, R.Rip: 0xFFF0, R.Rflags: 0x2})
        self.children: dict[int, PartModel] = {}
        #: Live children in creation order (what GetNextChildPartition must enumerate).
        self.order: list[int] = []
        self.next_pid = self.sim.root_id + 1
        self.log_pos = 0
        self.state_records: list[dict[str, Any]] = []
        #: The records ``message_accounting`` reads: message.* and the posting calls' hypercalls.
        self.message_records: list[dict[str, Any]] = []
        #: The last message type handed out (each message gets its own: see ``next_tag``).
        self.tags = 0
        #: Host pages the host allocated for guest memory -> how many child GPA pages map each; the
        #: ones it no longer maps, to free.
        self.held: Counter[int] = Counter()
        self.unmapped: set[int] = set()
        #: Where the hypervisor put each (partition, VP, type) VP state page it chose the place of.
        self.state_page_spots: dict[tuple[int, int, int], int] = {}
        self.deposit_self(funding, by_id=False)
        return multiple(self.sim.root_id, BOGUS_PID)

    def teardown(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is not None:
            try:
                # The whole log, decoded once per run: every message ended at most once, the open
                # ones are the hypervisor's undelivered, each posting call's successes posted one.
                assert checkers.message_accounting(sim.log.records(), sim.hv) == []
            finally:
                sim.close()

    # --- model helpers ---------------------------------------------------------------------------
    def run(self, gen: Any) -> Any:
        return self.sim.run_process(gen)

    def lookup(self, pid: int) -> PartModel | None:
        """The partition the root names with *pid* (SELF is the root), None if it does not exist."""
        if pid in (SELF, self.root.pid):
            return self.root
        p = self.children.get(pid)
        return None if p is None or p.state == DELETED else p

    def in_use(self, p: PartModel) -> int:
        endpoints = COSTS.port * len(p.ports) + COSTS.connection * len(p.conns)
        endpoints += COSTS.stats_page * (len(p.stats) + len(p.state_pages))
        if p.is_root:
            return COSTS.create_partition * len(self.order) + p.vtlb + endpoints
        if p.state != ACTIVE:
            return 0  # nothing charged before initialize; finalize frees everything
        tables = COSTS.gpa_table * len(p.tables)
        return COSTS.initialize_partition + COSTS.create_vp * len(p.vps) + p.vtlb + endpoints + tables

    def available(self, p: PartModel) -> int:
        return len(p.pages) - self.in_use(p)

    def parent_only(self, pid: int, states: tuple[str, ...]) -> tuple[HvStatus | None, PartModel | None]:
        """Status of a call restricted to the root's children (HYPERCALLS.md 1.5 steps 5-7)."""
        t = self.lookup(pid)
        if t is None:
            return S.INVALID_PARTITION_ID, None
        if t.is_root:
            return S.ACCESS_DENIED, None
        if t.state not in states:
            return S.INVALID_PARTITION_STATE, None
        return None, t

    def register_target(self, pid: int, vp_index: int) -> tuple[HvStatus | None, VpModel | None]:
        """Get/SetVpRegisters from root VP 0: a child's VP, or the root's own (AccessVpRegisters)."""
        t = self.lookup(pid)
        if t is None or not t.is_root:
            status, t = self.parent_only(pid, (ACTIVE,))
            if t is None:
                return status, None
        elif vp_index == HV_VP_INDEX_SELF:
            vp_index = 0  # the calling VP
        vp = t.vps.get(vp_index)
        if vp is None:
            return S.INVALID_VP_INDEX, None
        return None, vp

    def deposit_pages(self, target: PartModel | None, pages: list[int], reps: int) -> None:
        """Book the first *reps* pages into *target*; give the rest back to the host."""
        if reps:
            assert target is not None
            target.pages.update(pages[:reps])
            target.deposited += reps
        self.sim.free_host_pages(pages[reps:])

    def withdrawn_pages(self, target: PartModel, pages: list[int]) -> None:
        """Pages a withdraw returned: distinct, from *target*'s own pool (pages never migrate)."""
        assert len(set(pages)) == len(pages), pages
        assert set(pages) <= target.pages, sorted(set(pages) - target.pages)
        target.pages.difference_update(pages)
        target.withdrawn += len(pages)
        self.sim.free_host_pages(pages)

    def host_alloc(self, n: int) -> list[int]:
        return self.sim.alloc_host_pages(min(n, self.sim.hv.memory.host_free))

    def expected_deposit(self, pid: int, n: int) -> tuple[HvStatus, int, PartModel | None]:
        if n == 0:
            return S.INVALID_HYPERCALL_INPUT, 0, None  # a rep call with rep count 0
        t = self.lookup(pid)
        if t is None:
            return S.INVALID_PARTITION_ID, 0, None
        if t.state == FINALIZED:
            return S.INVALID_PARTITION_STATE, 0, None
        return S.SUCCESS, n, t

    def all_pool_pages(self) -> list[int]:
        pages = set(self.root.pages)
        for p in self.children.values():
            pages |= p.pages
        return sorted(pages)

    # --- partitions ------------------------------------------------------------------------------
    @rule(n=st.integers(0, 8), by_id=st.booleans())
    def deposit_self(self, n: int, by_id: bool) -> None:
        """What a host does on INSUFFICIENT_MEMORY from CreatePartition: deposit into its own pool."""
        pages = self.host_alloc(n)
        pid = self.root.pid if by_id else SELF
        status, reps, target = self.expected_deposit(pid, len(pages))
        out = self.run(self.api.deposit(pid, pages))
        assert (out.status, out.reps_completed) == (status, reps)
        self.deposit_pages(target, pages, reps)

    @rule(target=partitions)
    def create_partition(self) -> Any:
        status, pid = self.run(self.api.create_partition())
        if self.available(self.root) < COSTS.create_partition:
            assert status is S.INSUFFICIENT_MEMORY
            return multiple()
        assert status is S.SUCCESS
        assert pid == self.next_pid, "partition ids are sequential and never reused"
        self.next_pid += 1
        self.children[pid] = PartModel(pid, CREATED, self.config.child_default_privileges)
        self.order.append(pid)
        self.sim.load_guest(pid, GUEST)
        return pid

    @rule(pid=partitions)
    def initialize(self, pid: int) -> None:
        status = self.run(self.api.initialize_partition(pid))
        expected, t = self.parent_only(pid, (CREATED,))
        if t is not None:
            expected = S.INSUFFICIENT_MEMORY if self.available(t) < COSTS.initialize_partition else S.SUCCESS
        assert status is expected
        if status is S.SUCCESS and t is not None:
            t.state = ACTIVE

    @rule(pid=partitions)
    def finalize(self, pid: int) -> None:
        status = self.run(self.api.finalize_partition(pid))
        expected, t = self.parent_only(pid, (ACTIVE,))
        assert status is (expected or S.SUCCESS)
        if t is not None:
            t.state = FINALIZED
            t.vps.clear()
            t.vtlb = 0
            # Nothing is left to intercept or interrupt (HYPERCALLS.md 6.6 (3)).
            t.cpuid_results.clear()
            t.msr_results.clear()
            t.latch = Latch.NONE
            self.drop_endpoints(t)
            self.drop_pages(t)
            assert self.sim.hv.partitions[pid].gpa == {}, "FinalizePartition drops the address space"
            for gpfn in list(t.gpa):
                self.apply_unmap(t, gpfn, keep=False)
            t.tables.clear()
            self.free_unmapped()

    @rule(pid=partitions)
    def delete(self, pid: int) -> None:
        status = self.run(self.api.delete_partition(pid))
        expected, t = self.parent_only(pid, (CREATED, FINALIZED))
        if t is not None and t.pages:
            expected = S.OPERATION_DENIED  # any page left in the pool, available or in use
        assert status is (expected or S.SUCCESS)
        if status is S.SUCCESS and t is not None:
            assert t.deposited - t.withdrawn == 0
            t.state = DELETED
            self.order.remove(t.pid)

    @rule()
    def delete_self(self) -> None:
        assert self.run(self.api.delete_partition(SELF)) is S.ACCESS_DENIED

    @rule(pid=partitions, parent_by_id=st.booleans())
    def enumerate_children(self, pid: int, parent_by_id: bool) -> None:
        assert self.run(self.api.children()) == self.order
        parent = self.root.pid if parent_by_id else SELF
        status, nxt = self.run(self.api.next_child(pid, parent))
        if pid in self.order:
            i = self.order.index(pid)
            assert (status, nxt) == (S.SUCCESS, self.order[i + 1] if i + 1 < len(self.order) else 0)
        else:  # the root itself, a deleted child, an id never allocated
            assert status is S.INVALID_PARTITION_ID

    @rule(pid=partitions)
    def next_child_of_other_parent(self, pid: int) -> None:
        status, nxt = self.run(self.api.next_child(0, pid))
        t = self.lookup(pid)
        if t is None:
            assert status is S.INVALID_PARTITION_ID
        elif t.is_root:
            assert (status, nxt) == (S.SUCCESS, self.order[0] if self.order else 0)
        else:
            assert status is S.ACCESS_DENIED

    # --- memory ----------------------------------------------------------------------------------
    @rule(pid=partitions, n=page_counts)
    def deposit(self, pid: int, n: int) -> None:
        pages = self.host_alloc(n)
        status, reps, target = self.expected_deposit(pid, len(pages))
        out = self.run(self.api.deposit(pid, pages))
        assert (out.status, out.reps_completed) == (status, reps)
        self.deposit_pages(target, pages, reps)

    @rule(pid=partitions, n=st.integers(0, 8), tail=st.integers(0, 3), data=st.data())
    def deposit_bad_page(self, pid: int, n: int, tail: int, data: st.DataObject) -> None:
        """A page already in a pool, one mapped into a child (HYPERCALLS.md 6.2: the host keeps it), or
        beyond host RAM stops the deposit there (OPERATION_DENIED)."""
        pooled = self.all_pool_pages()
        bad_pages = st.integers(HOST_PAGES, U64)
        if pooled:
            bad_pages = st.one_of(st.sampled_from(pooled), bad_pages)
        if self.held:
            bad_pages = st.one_of(st.sampled_from(sorted(self.held)), bad_pages)
        bad = data.draw(bad_pages, label="bad page")
        fresh = self.host_alloc(n + tail)
        pages = [*fresh[:n], bad, *fresh[n:]]
        status, reps, target = self.expected_deposit(pid, len(pages))
        if status is S.SUCCESS:
            status, reps = S.OPERATION_DENIED, len(fresh[:n])
        out = self.run(self.api.deposit(pid, pages))
        assert (out.status, out.reps_completed) == (status, reps)
        self.deposit_pages(target, fresh, reps)

    @rule(pid=partitions, n=withdraw_counts)
    def withdraw(self, pid: int, n: int) -> None:
        status, pages = self.run(self.api.withdraw(pid, n))
        t = self.lookup(pid)
        if t is None:
            assert (status, pages) == (S.INVALID_PARTITION_ID, [])
            return
        avail = self.available(t)
        assert status is (S.SUCCESS if n <= avail else S.NO_RESOURCES)
        assert len(pages) == min(n, avail)
        self.withdrawn_pages(t, pages)

    @rule(pid=partitions, count=withdraw_counts, data=st.data())
    def withdraw_one_invocation(self, pid: int, count: int, data: st.DataObject) -> None:
        """One WithdrawMemory invocation from a rep start: reps completed is absolute (HYPERCALLS.md
        1.6), the time budget cuts it short with SUCCESS, and only a short pool gives NO_RESOURCES."""
        start = data.draw(st.integers(0, count - 1), label="rep start")
        header = MEMORY_POOL_INPUT.pack(MemoryPoolInput(pid, 0))
        res = self.sim.hypercall(control(C.WithdrawMemory, rep_count=count, rep_start=start), header)
        t = self.lookup(pid)
        if t is None:
            assert (res.status, res.reps_completed) == (S.INVALID_PARTITION_ID, start)
            return
        limit = count
        cost = self.config.cost(C.WithdrawMemory)
        if self.config.rep_budget_ns is not None:  # as many reps as fit the budget, at least one
            fit = max(1, (self.config.rep_budget_ns - cost.base_ns) // cost.per_rep_ns)
            limit = min(count, start + fit)
        avail = self.available(t)
        if avail >= limit - start:
            assert (res.status, res.reps_completed) == (S.SUCCESS, limit)
        else:
            assert (res.status, res.reps_completed) == (S.NO_RESOURCES, start + avail)
        pages = [p for (p,) in _U64.iter_unpack(res.output[8 * start : 8 * res.reps_completed])]
        self.withdrawn_pages(t, pages)

    @rule(pid=partitions)
    def get_balance(self, pid: int) -> None:
        status, bal = self.run(self.api.balance(pid))
        t = self.lookup(pid)
        if t is None:
            assert status is S.INVALID_PARTITION_ID
            return
        assert status is S.SUCCESS
        assert (bal.pages_available, bal.pages_in_use) == (self.available(t), self.in_use(t))
        assert bal.pages_available + bal.pages_in_use == t.deposited - t.withdrawn

    # --- properties ------------------------------------------------------------------------------
    @rule(
        pid=partitions,
        code=st.sampled_from([PC.PrivilegeFlags, PC.CpuWeight, PC.VirtualTlbPageCount, UNKNOWN_PROPERTY]),
        value=property_values,
        privileges=privilege_values,
    )
    def set_property(self, pid: int, code: int, value: int, privileges: int) -> None:
        if code == PC.PrivilegeFlags:
            value = privileges
        t = self.lookup(pid)
        if t is not None and t.is_root and code == PC.PrivilegeFlags:
            value |= int(ALL_PRIVILEGES)  # never strip the root: it either keeps all, or is refused
        status = self.run(self.api.set_property(pid, code, value))
        expected = self.expected_set_property(t, code, value)
        assert status is expected, (status, expected)
        if status is S.SUCCESS:
            self.check_property(pid, code)

    def expected_set_property(self, t: PartModel | None, code: int, value: int) -> HvStatus:
        if t is None:
            return S.INVALID_PARTITION_ID
        if code == UNKNOWN_PROPERTY:
            return S.UNKNOWN_PROPERTY
        if t.state == FINALIZED:
            return S.INVALID_PARTITION_STATE
        early = code == PC.PrivilegeFlags
        if not t.is_root and (t.state == CREATED) != early:
            return S.INVALID_PARTITION_STATE  # early properties in CREATED, the others in ACTIVE
        if code == PC.PrivilegeFlags:
            if t.is_root:
                return S.INVALID_PARTITION_STATE  # the root's privileges are fixed at boot
            if value & ~int(ALL_PRIVILEGES):
                return S.PROPERTY_VALUE_OUT_OF_RANGE
            t.privileges = value
            return S.SUCCESS
        if code == PC.CpuWeight:
            if not 1 <= value <= 10_000:
                return S.PROPERTY_VALUE_OUT_OF_RANGE
            t.cpu_weight = value
            return S.SUCCESS
        pages = min(value, VTLB_MAX)  # clamped, not rejected (HYPERCALLS.md 4.2)
        if pages > t.vtlb and self.available(t) < pages - t.vtlb:
            return S.INSUFFICIENT_MEMORY
        t.vtlb = pages
        return S.SUCCESS

    def check_property(self, pid: int, code: int) -> None:
        t = self.lookup(pid)
        assert t is not None
        expected: dict[int, int] = {
            PC.PrivilegeFlags: t.privileges,
            PC.CpuWeight: t.cpu_weight,
            PC.VirtualTlbPageCount: t.vtlb,
        }
        assert self.run(self.api.get_property(pid, code)) == (S.SUCCESS, expected[code])

    @rule(
        pid=partitions,
        code=st.sampled_from([PC.PrivilegeFlags, PC.CpuWeight, PC.VirtualTlbPageCount, UNKNOWN_PROPERTY]),
    )
    def get_property(self, pid: int, code: int) -> None:
        t = self.lookup(pid)
        if t is None:
            assert self.run(self.api.get_property(pid, code))[0] is S.INVALID_PARTITION_ID
        elif code == UNKNOWN_PROPERTY:
            assert self.run(self.api.get_property(pid, code))[0] is S.UNKNOWN_PROPERTY
        elif t.state == FINALIZED:
            assert self.run(self.api.get_property(pid, code))[0] is S.INVALID_PARTITION_STATE
        else:
            self.check_property(pid, code)

    # --- VPs -------------------------------------------------------------------------------------
    @rule(pid=partitions, index=vp_indices)
    def create_vp(self, pid: int, index: int) -> None:
        status = self.run(self.api.create_vp(pid, index))
        expected, t = self.parent_only(pid, (ACTIVE,))
        if t is not None:
            if index > MAX_VP_INDEX or index in t.vps:
                expected = S.INVALID_VP_INDEX
            elif self.available(t) < COSTS.create_vp:
                expected = S.INSUFFICIENT_MEMORY
        assert status is (expected or S.SUCCESS)
        if status is S.SUCCESS and t is not None:
            t.vps[index] = VpModel.reset(index)

    @rule(pid=partitions, index=vp_indices)
    def delete_vp(self, pid: int, index: int) -> None:
        status = self.run(self.api.delete_vp(pid, index))
        expected, t = self.parent_only(pid, (ACTIVE,))
        if t is not None and index not in t.vps:
            expected = S.INVALID_VP_INDEX
        assert status is (expected or S.SUCCESS)
        if status is S.SUCCESS and t is not None:
            del t.vps[index]
            self.drop_pages(t, index)

    @rule(
        pid=partitions,
        index=vp_indices,
        values=st.dictionaries(
            st.sampled_from([*TRACKED, UNKNOWN_REGISTER]), register_values, min_size=1, max_size=4
        ),
    )
    def set_registers(self, pid: int, index: int, values: dict[int, int]) -> None:
        out = self.run(self.api.set_registers(pid, index, values))
        status, vp = self.register_target(pid, index)
        assert (out.status, out.reps_completed) == self.apply_registers(status, vp, values)

    @staticmethod
    def apply_registers(
        header_status: HvStatus | None, vp: VpModel | None, values: dict[int, int]
    ) -> tuple[HvStatus, int]:
        """Elements in order; the first bad one stops the call there, earlier ones stay done."""
        if vp is None:
            assert header_status is not None
            return header_status, 0
        for i, (name, value) in enumerate(values.items()):
            if not register_value_ok(name, value):
                return S.INVALID_PARAMETER, i
            vp.regs[name] = value
        return S.SUCCESS, len(values)

    @rule(
        pid=partitions,
        index=vp_indices,
        names=st.lists(st.sampled_from([*TRACKED, UNKNOWN_REGISTER]), min_size=1, max_size=5),
    )
    def get_registers(self, pid: int, index: int, names: list[int]) -> None:
        status, values = self.run(self.api.get_registers(pid, index, names))
        header_status, vp = self.register_target(pid, index)
        assert (status, values) == self.read_registers(header_status, vp, names)

    @staticmethod
    def read_registers(
        header_status: HvStatus | None, vp: VpModel | None, names: list[int]
    ) -> tuple[HvStatus, list[int]]:
        if vp is None:
            assert header_status is not None
            return header_status, []
        values: list[int] = []
        for name in names:
            if name not in vp.regs:
                return S.INVALID_PARAMETER, values
            values.append(vp.regs[name])
        return S.SUCCESS, values

    # --- whole lifecycles (the same checked calls, in the order a host issues them) ---------------
    def in_state(self, *states: str) -> list[int]:
        return [pid for pid in self.order if self.children[pid].state in states]

    @precondition(lambda self: bool(self.in_state(CREATED)))
    @rule(data=st.data(), vps=st.integers(1, 3), spare=st.integers(0, 20))
    def activate(self, data: st.DataObject, vps: int, spare: int) -> None:
        """Deposit what initialization and *vps* VPs cost, initialize, create the VPs, run VP 0."""
        pid = data.draw(st.sampled_from(self.in_state(CREATED)), label="partition")
        self.activate_partition(pid, vps, spare)

    def activate_partition(self, pid: int, vps: int, spare: int) -> None:
        t = self.children[pid]
        need = COSTS.initialize_partition + COSTS.create_vp * vps + spare - self.available(t)
        self.deposit(pid, max(need, 1))
        self.initialize(pid)
        for index in range(vps):
            self.create_vp(pid, index)
        self.set_registers(pid, 0, {R.ExplicitSuspend: 0})

    @rule(
        target=partitions, vps=st.integers(1, 3), spare=st.integers(0, 20), ram=st.sampled_from([0, 0, 4, 16])
    )
    def bring_up(self, vps: int, spare: int, ram: int) -> Any:
        """A new running VM, as a host makes one: CreatePartition (on INSUFFICIENT_MEMORY deposit into
        SELF and retry, HYPERCALLS.md 6.4), then ``activate``, then *ram* pages of RAM at GPA 0.
        Hypothesis runs each example with a random subset of the rules, so the whole sequence is
        also one rule."""
        if self.available(self.root) < COSTS.create_partition:
            self.create_partition()  # INSUFFICIENT_MEMORY
            self.deposit_self(COSTS.create_partition - self.available(self.root), by_id=False)
        pid = self.create_partition()
        if pid not in self.children:
            return multiple()  # host RAM ran out
        self.activate_partition(pid, vps, spare)
        if ram:
            self.give_ram(pid, ram, F.PERMISSIONS)
        return pid

    @precondition(lambda self: bool(self.in_state(ACTIVE, FINALIZED)))
    @rule(data=st.data())
    def tear_down(self, data: st.DataObject) -> None:
        """Finalize, withdraw until the pool is empty (NO_RESOURCES), delete (HYPERCALLS.md 6.5)."""
        pid = data.draw(st.sampled_from(self.in_state(ACTIVE, FINALIZED)), label="partition")
        if self.children[pid].state == ACTIVE:
            self.finalize(pid)
        while self.children[pid].pages:
            self.withdraw(pid, 512)
        self.withdraw(pid, 1)  # an empty pool: NO_RESOURCES, nothing returned
        self.delete(pid)
        assert self.children[pid].state == DELETED

    def running(self) -> list[tuple[int, int]]:
        """(child, VP) pairs executing their guest program right now."""
        return [
            (p.pid, i)
            for p in (self.children[pid] for pid in self.in_state(ACTIVE))
            for i, vp in sorted(p.vps.items())
            if vp.started and vp.regs[R.ExplicitSuspend] == 0
        ]

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data(), op=st.sampled_from(["finalize", "delete_vp", "suspend", "get_registers"]))
    def host_call_at_guest_instant(self, data: st.DataObject, op: str) -> None:
        """Stop the clock just before the next pending event (typically a running guest's compute
        slice ending in a hypercall) and issue a host call on that guest in the same instant:
        same-instant ordering between actors is where races hide in a discrete-event simulation."""
        pid, index = data.draw(st.sampled_from(self.running()), label="running VP")
        advance_to_next_event(self.sim)
        if op == "finalize":
            self.finalize(pid)
        elif op == "delete_vp":
            self.delete_vp(pid, index)
        elif op == "suspend":
            self.set_registers(pid, index, {R.ExplicitSuspend: 1})
        else:
            self.get_registers(pid, index, list(TRACKED))

    @rule(k=st.integers(1, 300_000))
    def run_guests(self, k: int) -> None:
        """Let the clock run: VPs whose ExplicitSuspend is clear execute their guest program."""
        self.sim.run(self.sim.now_ns + k)

    # --- privilege: what a child may not do ---------------------------------------------------------
    def callers(self) -> list[tuple[int, int]]:
        return [(p.pid, i) for p in self.children.values() if p.state == ACTIVE for i in sorted(p.vps)]

    @precondition(lambda self: bool(self.callers()))
    @rule(
        op=st.sampled_from(CHILD_OPS),
        data=st.data(),
    )
    def child_call(self, op: str, data: st.DataObject) -> None:
        """Calls issued from a child's VP: parent-only calls and pool calls are refused (ACCESS_DENIED
        without the privilege bit, INVALID_PARTITION_ID for an unknown id, else ACCESS_DENIED since
        the child parents nothing); what the child's own privileges allow succeeds."""
        caller_id, vp_index = data.draw(st.sampled_from(self.callers()), label="caller")
        caller = self.children[caller_id]
        ids = sorted({SELF, self.root.pid, BOGUS_PID, *self.children})
        target = data.draw(st.sampled_from(ids), label="target")
        api = HostApi(self.sim, caller=caller_id, vp=vp_index)
        priv = caller.privileges
        can_create = bool(priv & PP.CreatePartitions)
        exists = target == SELF or target == self.root.pid or self.lookup(target) is not None

        def refused(needed: bool) -> HvStatus:
            if not needed:
                return S.ACCESS_DENIED
            return S.ACCESS_DENIED if exists else S.INVALID_PARTITION_ID

        if op == "create_partition":
            status, _ = self.run(api.create_partition())
            assert status is (S.PARTITION_TOO_DEEP if can_create else S.ACCESS_DENIED)
        elif op in ("initialize", "finalize", "delete"):
            call = {
                "initialize": api.initialize_partition,
                "finalize": api.finalize_partition,
                "delete": api.delete_partition,
            }[op]
            status = self.run(call(target))
            assert status is (S.ACCESS_DENIED if op == "delete" and target == SELF else refused(can_create))
        elif op == "create_vp":
            assert self.run(api.create_vp(target, 0)) is refused(can_create)
        elif op == "delete_vp":
            assert self.run(api.delete_vp(target, 0)) is refused(can_create)
        elif op in ("deposit", "withdraw", "balance"):
            pool_ok = bool(priv & PP.AccessMemoryPool)
            if op == "deposit":
                page = data.draw(st.integers(0, HOST_PAGES - 1), label="page")
                out = self.run(api.deposit(target, [page]))
                assert (out.status, out.reps_completed) == (refused(pool_ok), 0)
            elif op == "withdraw":
                assert self.run(api.withdraw(target, 4)) == (refused(pool_ok), [])
            else:
                assert self.run(api.balance(target))[0] is refused(pool_ok)
        elif op == "next_child":
            status, nxt = self.run(api.next_child(0, target))
            if can_create and target in (SELF, caller_id):
                assert (status, nxt) == (S.SUCCESS, 0)  # a child parents nothing (max depth 2)
            else:
                assert status is refused(can_create)
        elif op == "get_partition_id":
            res = self.run(api.simple(C.GetPartitionId))
            if priv & PP.AccessPartitionId:
                assert (res.status, _U64.unpack_from(res.output)[0]) == (S.SUCCESS, caller_id)
            else:
                assert res.status is S.ACCESS_DENIED
        elif op == "set_property":
            assert self.run(api.set_property(target, PC.CpuWeight, 200)) is refused(can_create)
        elif op in ("map_gpa", "unmap_gpa"):
            if not exists and not can_create:
                target = SELF  # (an unknown id answers INVALID_PARTITION_ID: see test_fuzz's famous inputs)
            if op == "map_gpa":  # the child's own GPA page 0 (it has no RAM): never reached
                out = self.run(api.map_gpa_pages(target, 0, [0], F.READABLE))
            else:
                out = self.run(api.unmap_gpa_pages(target, 0, 1))
            assert (out.status, out.reps_completed) == (refused(can_create), 0)
        elif op == "get_property":
            assert self.run(api.get_property(target, PC.CpuWeight))[0] is refused(can_create)
        elif op == "cpuid_values":
            header = cpuid_values_input(target, 0, APPLY_REGISTERED_VALUES, 0, 0)
            out = self.run(api.rep(C.GetVpCpuidValues, header, [cpuid_query(1, 0)]))
            assert (out.status, out.reps_completed) == (refused(can_create), 0)
        elif op in self.PARENT_CALLS:
            code, build = self.PARENT_CALLS[op]
            assert self.run(api.simple(code, build(target))).status is refused(can_create)
        else:
            self.child_registers(api, caller, vp_index, target, op, data, refused(can_create))

    #: Simple calls only a parent may make on its ACTIVE child (CreatePartitions and parenthood): a
    #: child naming itself, its parent or its sibling is refused. The input each sends, by target.
    PARENT_CALLS: dict[str, tuple[int, Any]] = {
        "assert_interrupt": (C.AssertVirtualInterrupt, lambda pid: assert_input(pid, IT.Fixed, 0, 0x30)),
        "clear_interrupt": (C.ClearVirtualInterrupt, clear_input),
        "register_result": (
            C.RegisterInterceptResult,
            lambda pid: result_header(pid, 0, CPUID) + cpuid_parameters(_PATTERN),
        ),
        "map_vp_state": (C.MapVpStatePage, lambda pid: map_state_input(pid, 0, VT.Registers, 0, 0, 0)),
        "unmap_vp_state": (C.UnmapVpStatePage, lambda pid: unmap_state_input(pid, 0, VT.Registers, 0)),
    }

    def child_registers(
        self,
        api: HostApi,
        caller: PartModel,
        vp_index: int,
        target: int,
        op: str,
        data: st.DataObject,
        refused: HvStatus,
    ) -> None:
        """Get/SetVpRegisters on SELF need AccessVpRegisters; on anyone else, parenthood."""
        own = target in (SELF, caller.pid) and bool(caller.privileges & PP.AccessVpRegisters)
        index = data.draw(st.sampled_from([HV_VP_INDEX_SELF, vp_index, 3]), label="vp index")
        vp = None
        header = refused
        if own:
            vp = caller.vps.get(vp_index if index == HV_VP_INDEX_SELF else index)
            header = S.INVALID_VP_INDEX
        if op == "get_registers":
            names = data.draw(st.lists(st.sampled_from([*TRACKED, UNKNOWN_REGISTER]), min_size=1, max_size=3))
            assert self.run(api.get_registers(target, index, names)) == self.read_registers(header, vp, names)
        else:
            values = data.draw(
                st.dictionaries(
                    st.sampled_from([*TRACKED, UNKNOWN_REGISTER]), register_values, min_size=1, max_size=3
                )
            )
            out = self.run(api.set_registers(target, index, values))
            assert (out.status, out.reps_completed) == self.apply_registers(header, vp, values)

    # --- ports and connections (issued by the root: for a child, as its parent, or for itself) ---
    def part(self, pid: int) -> PartModel:
        """The model of a partition that exists (by its real id)."""
        return self.root if pid == self.root.pid else self.children[pid]

    def live(self) -> list[PartModel]:
        """The root and the ACTIVE children: the partitions that can own endpoints and VPs."""
        return [self.root, *(self.children[pid] for pid in self.in_state(ACTIVE))]

    def endpoint_owner(self, pid: int) -> tuple[HvStatus | None, PartModel | None]:
        """The partition a port or connection call names: the root itself or a child, ACTIVE."""
        t = self.lookup(pid)
        if t is None:
            return S.INVALID_PARTITION_ID, None
        if t.state != ACTIVE:
            return S.INVALID_PARTITION_STATE, None
        return None, t

    @rule(
        pid=partitions,
        port_id=port_ids,
        kind=port_kinds,
        sint=st.sampled_from([MSG_SINT, EVENT_SINT, 1, 4, 15, 0, 16]),
        vp=st.sampled_from([0, HV_ANY_VP, 1, 2]),
        flags=st.sampled_from([(0, 64), (0, 16), (100, 8), (2040, 7), (2040, 8), (0, 0)]),
        peer=partitions,
        restrict=st.booleans(),
    )
    def create_port(
        self,
        pid: int,
        port_id: int,
        kind: PortType,
        sint: int,
        vp: int,
        flags: tuple[int, int],
        peer: int,
        restrict: bool,
    ) -> None:
        """A message or event port; *restrict*: only *peer* may connect to it."""
        base, count = flags if kind == PortType.Event else (0, 0)
        allowed = peer if restrict else 0
        status = self.run(
            self.api.create_port(
                pid,
                port_id,
                kind,
                sint=sint,
                vp=vp,
                connection_partition=allowed,
                base_flag=base,
                flag_count=count,
            )
        )
        expected, t = self.endpoint_owner(pid)
        if t is not None:
            expected = self.expected_create_port(t, port_id, kind, sint, vp, base, count, allowed)
        assert status is (expected or S.SUCCESS), (status, expected)
        if status is S.SUCCESS and t is not None:
            a = self.lookup(allowed) if allowed else None
            t.ports[port_id] = PortModel(t.pid, port_id, kind, sint, vp, base, count, a.pid if a else 0)

    def expected_create_port(
        self, t: PartModel, port_id: int, kind: int, sint: int, vp: int, base: int, count: int, allowed: int
    ) -> HvStatus | None:
        if allowed:
            a = self.lookup(allowed)
            if a is None or a is t:
                return S.INVALID_PARTITION_ID
            if a.state != ACTIVE:
                return S.INVALID_PARTITION_STATE
        if port_id in t.ports:
            return S.INVALID_PORT_ID
        if not 1 <= sint < HV_SYNIC_SINT_COUNT:
            return S.INVALID_PARAMETER  # SINT 0 is the hypervisor's
        if vp != HV_ANY_VP and vp not in t.vps:
            return S.INVALID_VP_INDEX
        if kind == PortType.Event and (count == 0 or base + count >= HV_EVENT_FLAGS_COUNT):
            return S.INVALID_PARAMETER
        if self.available(t) < COSTS.port:
            return S.INSUFFICIENT_MEMORY
        return None

    @rule(pid=partitions, port_id=port_ids)
    def delete_port(self, pid: int, port_id: int) -> None:
        status = self.run(self.api.delete_port(pid, port_id))
        expected, t = self.endpoint_owner(pid)
        if t is not None and port_id not in t.ports:
            expected = S.INVALID_PORT_ID
        assert status is (expected or S.SUCCESS), (status, expected)
        if status is S.SUCCESS and t is not None:
            self.drop_port(t, t.ports[port_id])

    @rule(pid=partitions, conn_id=conn_ids, port_pid=partitions, port_id=port_ids, kind=port_kinds)
    def connect_port(self, pid: int, conn_id: int, port_pid: int, port_id: int, kind: PortType) -> None:
        """Connection *conn_id* of *pid* to port *port_id* of *port_pid* (a port takes one)."""
        status = self.run(self.api.connect_port(pid, conn_id, port_pid, port_id, kind))
        expected, o = self.endpoint_owner(pid)
        port = None
        if o is not None:
            t = self.lookup(port_pid)
            port = t.ports.get(port_id) if t is not None else None
            if t is None:
                expected = S.INVALID_PARTITION_ID
            elif t.state != ACTIVE:
                expected = S.INVALID_PARTITION_STATE
            elif conn_id in o.conns:
                expected = S.INVALID_CONNECTION_ID
            elif port is None or port.allowed not in (0, o.pid) or port.connection is not None:
                expected = S.INVALID_PORT_ID
            elif kind != port.type:
                expected = S.INVALID_PARAMETER
            elif self.available(o) < COSTS.connection:
                expected = S.INSUFFICIENT_MEMORY
        assert status is (expected or S.SUCCESS), (status, expected)
        if status is S.SUCCESS and o is not None and port is not None:
            o.conns[conn_id] = ConnModel(o.pid, conn_id, port)
            port.connection = (o.pid, conn_id)

    @rule(pid=partitions, conn_id=conn_ids)
    def disconnect_port(self, pid: int, conn_id: int) -> None:
        status = self.run(self.api.disconnect_port(pid, conn_id))
        expected, o = self.endpoint_owner(pid)
        if o is not None and conn_id not in o.conns:
            expected = S.INVALID_CONNECTION_ID
        assert status is (expected or S.SUCCESS), (status, expected)
        if status is S.SUCCESS and o is not None:
            self.drop_connection(o, o.conns[conn_id])

    def ports_alive(self) -> list[tuple[int, int]]:
        return [(p.pid, port_id) for p in self.live() for port_id in p.ports]

    @precondition(lambda self: bool(self.ports_alive()))
    @rule(data=st.data())
    def delete_a_port(self, data: st.DataObject) -> None:
        """DeletePort of a port that exists (its queued messages are freed)."""
        self.delete_port(*data.draw(st.sampled_from(self.ports_alive()), label="port"))

    @precondition(lambda self: bool(self.conns_alive()))
    @rule(data=st.data())
    def disconnect_a_connection(self, data: st.DataObject) -> None:
        self.disconnect_port(*data.draw(st.sampled_from(self.conns_alive()), label="connection"))

    @precondition(lambda self: bool(self.ports_alive()))
    @rule(data=st.data(), conn_id=conn_ids, same_kind=st.integers(0, 5))
    def connect_a_port(self, data: st.DataObject, conn_id: int, same_kind: int) -> None:
        """ConnectPort from the root or an ACTIVE child to a port that exists (mostly of its type)."""
        port_pid, port_id = data.draw(st.sampled_from(self.ports_alive()), label="port")
        port = self.part(port_pid).ports[port_id]
        owner = data.draw(st.sampled_from([p.pid for p in self.live()]), label="connection owner")
        kind = port.type if same_kind else PortType.Message + PortType.Event - port.type
        self.connect_port(owner, conn_id, port_pid, port_id, PortType(kind))

    def drop_port(self, t: PartModel, port: PortModel) -> None:
        """DeletePort: its queued messages are freed (their buffers with them); a message already
        in a slot stays; connections to it stay, leading nowhere."""
        del t.ports[port.id]
        for vp in t.vps.values():
            for sint, queue in vp.synic.queues.items():
                vp.synic.queues[sint] = deque(m for m in queue if m.port is not port)

    def drop_connection(self, o: PartModel, conn: ConnModel) -> None:
        del o.conns[conn.id]
        owner = self.lookup(conn.port.owner)
        current = owner.ports.get(conn.port.id) if owner is not None else None
        if current is not None and current.connection == (o.pid, conn.id):
            current.connection = None

    def drop_endpoints(self, t: PartModel) -> None:
        """FinalizePartition: connections first, then ports (its VPs are gone already)."""
        for conn in list(t.conns.values()):
            self.drop_connection(t, conn)
        for port in list(t.ports.values()):
            self.drop_port(t, port)

    # --- SynIC state (the parent's SetVpRegisters, or the guest's own WRMSR) ----------------------
    @staticmethod
    def synic_values(op: str, sint: int, sints: frozenset[int]) -> dict[int, int]:
        if op == "enable":  # what HostApi.enable_synic writes, in its order
            return {
                R.Sipp: SIMP_GPA | SYNIC_ENABLE,
                R.Sifp: SIEFP_GPA | SYNIC_ENABLE,
                **{R.Sint0 + s: VECTOR + s for s in sorted(sints)},
                R.Scontrol: SYNIC_ENABLE,
            }
        single: dict[str, tuple[int, int]] = {
            "disable": (R.Scontrol, 0),
            "simp_off": (R.Sipp, 0),
            "siefp_off": (R.Sifp, 0),
            "mask": (R.Sint0 + sint, SINT_MASKED | (VECTOR + sint)),
            "unmask": (R.Sint0 + sint, VECTOR + sint),
        }
        name, value = single[op]
        return {name: value}

    @rule(
        pid=partitions,
        index=st.sampled_from([0, 1, HV_VP_INDEX_SELF, 3]),
        op=synic_ops,
        sint=st.sampled_from([MSG_SINT, EVENT_SINT, 1, 4]),
        sints=unmasked_sints,
    )
    def synic(self, pid: int, index: int, op: str, sint: int, sints: frozenset[int]) -> None:
        """The parent (or the root for itself) writes SynIC registers with SetVpRegisters."""
        values = self.synic_values(op, sint, sints)
        out = self.run(self.api.set_registers(pid, index, values))
        status, vp = self.register_target(pid, index)
        if vp is None:
            assert (out.status, out.reps_completed) == (status, 0)
            return
        assert (out.status, out.reps_completed) == (S.SUCCESS, len(values))
        self.apply_synic(vp, values)

    @rule(data=st.data(), op=synic_ops, sint=st.sampled_from([MSG_SINT, EVENT_SINT, 1, 4]))
    def guest_synic(self, data: st.DataObject, op: str, sint: int) -> None:
        """The guest on a VP writes its own SynIC MSRs, one WRMSR each (AccessSynicRegs)."""
        pid, index = data.draw(st.sampled_from(self.vps_alive()), label="VP")
        p = self.part(pid)
        api = HostApi(self.sim, caller=pid, vp=index)
        values = self.synic_values(op, sint, frozenset({MSG_SINT, EVENT_SINT}))
        allowed = bool(p.privileges & PP.AccessSynicRegs)
        for name, value in values.items():
            status = self.run(api.write_msr(name, value))
            assert status is (S.SUCCESS if allowed else S.ACCESS_DENIED)
            if allowed:
                self.apply_synic(p.vps[index], {name: value})

    def vps_alive(self) -> list[tuple[int, int]]:
        """Every (partition, VP) that exists: the root's and the ACTIVE children's."""
        return [(p.pid, i) for p in self.live() for i in sorted(p.vps)]

    def apply_synic(self, vp: VpModel, values: dict[int, int]) -> None:
        syn = vp.synic
        for name, value in values.items():
            on = bool(value & SYNIC_ENABLE)
            if name == R.Scontrol:
                syn.scontrol = on
            elif name == R.Sipp:
                syn.simp = on
            elif name == R.Sifp:
                syn.siefp = on
            else:
                sint = name - R.Sint0
                if value & SINT_MASKED:
                    syn.unmasked.discard(sint)
                else:
                    syn.unmasked.add(sint)
        if any(name != R.Sifp for name in values):  # SCONTROL, SIMP, SINTx: the queues are rescanned
            self.rescan(vp)

    def rescan(self, vp: VpModel) -> None:
        for sint in range(HV_SYNIC_SINT_COUNT):
            self.scan(vp, sint)

    @staticmethod
    def scan(vp: VpModel, sint: int) -> None:
        """Deliver the queue's head if the message page is on and the slot empty; a full slot gets
        MessagePending instead (HYPERCALLS.md 5.9)."""
        syn = vp.synic
        queue = syn.queues.get(sint)
        if not queue or not syn.sim_on:
            return
        if sint in syn.slots:
            syn.slots[sint] = (syn.slots[sint][0], True)
            return
        msg = queue.popleft()
        syn.slots[sint] = (msg, bool(queue))

    # --- sending --------------------------------------------------------------------------------
    def senders(self) -> list[tuple[int, int]]:
        return self.vps_alive()

    def next_tag(self) -> int:
        """A message type no other message of the run has (bit 31 clear: a guest may post it)."""
        self.tags += 1
        return self.tags

    def settle(self, posted_ns: int) -> None:
        """Run the clock until what was posted at *posted_ns* has arrived (PostMessage takes longer
        than the transit; SignalEvent does not)."""
        arrived = posted_ns + self.config.message_latency_ns
        if self.sim.now_ns <= arrived:
            self.sim.run(arrived + 1)

    def through(self, caller: PartModel, conn_id: int, kind: int) -> tuple[HvStatus, PortModel | None]:
        conn = caller.conns.get(conn_id)
        if conn is None:
            return S.INVALID_CONNECTION_ID, None
        owner = self.lookup(conn.port.owner)
        if owner is None or owner.ports.get(conn.port.id) is not conn.port:
            return S.INVALID_PORT_ID, None  # the port was deleted (its owner finalized)
        if owner.state != ACTIVE or conn.port.type != kind:
            return S.INVALID_PORT_ID, None
        return S.SUCCESS, conn.port

    def port_vp(self, port: PortModel, ready: Any) -> tuple[HvStatus, VpModel | None]:
        """The VP a port delivers to now; HV_ANY_VP round-robins over the VPs that can take it."""
        owner = self.part(port.owner)
        if port.vp != HV_ANY_VP:
            vp = owner.vps.get(port.vp)
            if vp is None:
                return S.INVALID_VP_INDEX, None
            return (S.SUCCESS, vp) if ready(vp.synic) else (S.INVALID_SYNIC_STATE, None)
        if not owner.vps:
            return S.INVALID_VP_INDEX, None
        candidates = [vp for _, vp in sorted(owner.vps.items()) if ready(vp.synic)]
        if not candidates:
            return S.INVALID_SYNIC_STATE, None
        port.next_vp += 1
        return S.SUCCESS, candidates[(port.next_vp - 1) % len(candidates)]

    def buffers(self, port: PortModel) -> int:
        """Buffers the port's messages hold: the queued ones (none is in transit between steps)."""
        owner = self.lookup(port.owner)
        if owner is None:
            return 0
        return sum(m.port is port for vp in owner.vps.values() for q in vp.synic.queues.values() for m in q)

    def sender(self, data: st.DataObject, conn_id: int, kind: int) -> tuple[int, int, int]:
        """(partition, VP, connection id): three times in four a connection to a *kind* port and a
        VP of its owner, else any VP and *conn_id*."""
        conns = self.conns_alive(kind)
        chosen = often(data, conns, "connection")
        if chosen is None:
            pid, vp = data.draw(st.sampled_from(self.senders()), label="sender")
            return pid, vp, conn_id
        pid, conn_id = chosen
        return pid, data.draw(st.sampled_from(sorted(self.part(pid).vps)), label="sender VP"), conn_id

    @rule(data=st.data(), conn_id=st.integers(0, 3), kind=post_kinds, size=payload_sizes)
    def post_message(self, data: st.DataObject, conn_id: int, kind: str, size: int) -> None:
        pid, vp, conn_id = self.sender(data, conn_id, PortType.Message)
        self.post(pid, vp, conn_id, kind, size)

    def post(self, pid: int, vp_index: int, conn_id: int, kind: str, size: int) -> None:
        caller = self.part(pid)
        mtype = self.next_tag()
        if kind == "none":
            mtype = 0
        elif kind == "reserved":
            mtype |= MESSAGE_TYPE_HYPERVISOR
        elif kind == "oversize":
            size = HV_MESSAGE_PAYLOAD_SIZE + 1
        expected, port, vp = self.expected_post(caller, conn_id, mtype, size)
        posted = self.sim.now_ns
        status = self.run(
            HostApi(self.sim, caller=pid, vp=vp_index).post_message(conn_id, mtype, bytes(size))
        )
        assert status is expected, (status, expected)
        if port is not None and vp is not None:
            self.settle(posted)
            vp.synic.queues[port.sint].append(MsgModel(mtype, size, port.id, port))
            self.scan(vp, port.sint)

    def expected_post(
        self, caller: PartModel, conn_id: int, mtype: int, size: int
    ) -> tuple[HvStatus, PortModel | None, VpModel | None]:
        if not caller.privileges & PP.PostMessages:
            return S.ACCESS_DENIED, None, None
        if not mtype or mtype & MESSAGE_TYPE_HYPERVISOR or size > HV_MESSAGE_PAYLOAD_SIZE:
            return S.INVALID_PARAMETER, None, None
        status, port = self.through(caller, conn_id, PortType.Message)
        if port is None:
            return status, None, None
        status, vp = self.port_vp(port, lambda syn: syn.sim_on)
        if vp is None:
            return status, None, None
        if self.buffers(port) >= self.config.port_message_buffers:
            return S.INSUFFICIENT_BUFFERS, None, None
        return S.SUCCESS, port, vp

    def conns_alive(self, kind: int | None = None) -> list[tuple[int, int]]:
        """(owner with a VP to send from, connection id) of the connections (to *kind* ports)."""
        return [
            (p.pid, c.id)
            for p in self.live()
            if p.vps
            for c in p.conns.values()
            if kind is None or c.port.type == kind
        ]

    def message_conns(self) -> list[tuple[int, int]]:
        return self.conns_alive(PortType.Message)

    @precondition(lambda self: bool(self.message_conns()))
    @rule(data=st.data(), n=st.integers(1, 20), size=payload_sizes)
    def flood(self, data: st.DataObject, n: int, size: int) -> None:
        """*n* posts in a row through one connection: the port's 16 buffers run out unless the
        receiver takes messages (INSUFFICIENT_BUFFERS, conformance 7.7 114)."""
        pid, conn_id = data.draw(st.sampled_from(self.message_conns()), label="connection")
        vp = data.draw(st.sampled_from(sorted(self.part(pid).vps)), label="sender VP")
        for _ in range(n):
            self.post(pid, vp, conn_id, "ok", size)

    @precondition(lambda self: bool(self.conns_alive()))
    @rule(data=st.data(), n=st.integers(1, 12))
    def traffic(self, data: st.DataObject, n: int) -> None:
        """*n* steps of a conversation over the connections that exist: posts and signals through
        them, and their receivers taking messages and flags (the same checked calls as the rules)."""
        for _ in range(n):
            action = data.draw(
                st.sampled_from(["post", "post", "signal", "signal", "take", "take", "flag"]), label="action"
            )
            if action in ("post", "signal"):
                kind = PortType.Message if action == "post" else PortType.Event
                conns = self.conns_alive(kind)
                if not conns:
                    continue
                pid, conn_id = data.draw(st.sampled_from(conns), label="connection")
                vp = data.draw(st.sampled_from(sorted(self.part(pid).vps)), label="sender VP")
                if action == "post":
                    self.post(pid, vp, conn_id, "ok", data.draw(payload_sizes, label="size"))
                else:
                    self.signal(pid, vp, conn_id, data.draw(st.integers(0, 15), label="flag"))
            else:
                self.take(data, "flag" if action == "flag" else "message", 1, 1)

    @rule(data=st.data(), conn_id=st.integers(0, 3), flag=flag_numbers)
    def signal_event(self, data: st.DataObject, conn_id: int, flag: int) -> None:
        pid, vp_index, conn_id = self.sender(data, conn_id, PortType.Event)
        self.signal(pid, vp_index, conn_id, flag)

    def signal(self, pid: int, vp_index: int, conn_id: int, flag: int) -> None:
        caller = self.part(pid)
        expected, port, vp = self.expected_signal(caller, conn_id, flag)
        posted = self.sim.now_ns
        status = self.run(HostApi(self.sim, caller=pid, vp=vp_index).signal_event(conn_id, flag))
        assert status is expected, (status, expected)
        if port is not None and vp is not None:
            self.settle(posted)
            vp.synic.flags[port.sint].add(port.base + flag)

    def expected_signal(
        self, caller: PartModel, conn_id: int, flag: int
    ) -> tuple[HvStatus, PortModel | None, VpModel | None]:
        if not caller.privileges & PP.SignalEvents:
            return S.ACCESS_DENIED, None, None
        status, port = self.through(caller, conn_id, PortType.Event)
        if port is None:
            return status, None, None
        if flag >= port.count:
            return S.INVALID_PARAMETER, None, None
        sint = port.sint
        status, vp = self.port_vp(port, lambda syn: syn.sief_on and sint in syn.unmasked)
        if vp is None:
            return status, None, None
        return S.SUCCESS, port, vp

    # --- direct posts and signals (no port, no transit) ------------------------------------------
    def resolve(self, caller: PartModel, pid: int) -> PartModel | None:
        if pid == SELF:
            return caller
        return self.lookup(pid)

    def direct_target(self, caller: PartModel, pid: int, privilege: int) -> tuple[HvStatus, PartModel | None]:
        """The caller itself or its child, ACTIVE, and the privilege [inferred]."""
        if not caller.privileges & privilege:
            return S.ACCESS_DENIED, None
        t = self.resolve(caller, pid)
        if t is None:
            return S.INVALID_PARTITION_ID, None
        if t is not caller and not caller.is_root:
            return S.ACCESS_DENIED, None  # a child parents nothing
        if t.state != ACTIVE:
            return S.INVALID_PARTITION_STATE, None
        return S.SUCCESS, t

    def direct_call(
        self, data: st.DataObject, target: tuple[int, int, int], ready: Any
    ) -> tuple[PartModel, HostApi, tuple[int, int, int]]:
        """The caller and the (partition, VP, SINT) it names: three times in four a VP whose SynIC
        is *ready* and one of its unmasked SINTs, else *target*. The caller is mostly the root;
        sometimes a child's VP, naming SELF or that partition."""
        ready_targets = [
            (p.pid, i, sint)
            for p in self.live()
            for i, vp in sorted(p.vps.items())
            if ready(vp.synic)
            for sint in sorted(vp.synic.unmasked)
        ]
        target = often(data, ready_targets, "target") or target
        callers = self.callers()
        if callers and data.draw(st.integers(0, 3), label="from a child") == 0:
            child, index = data.draw(st.sampled_from(callers), label="child caller")
            pid = data.draw(st.sampled_from([SELF, target[0]]), label="names")
            return self.children[child], HostApi(self.sim, caller=child, vp=index), (pid, *target[1:])
        return self.root, self.api, target

    @rule(
        data=st.data(),
        pid=partitions,
        index=st.integers(0, 2),
        sint=st.sampled_from([MSG_SINT, EVENT_SINT, 1, 4, 0, HV_SYNIC_SINT_COUNT]),
        kind=direct_kinds,
        size=payload_sizes,
    )
    def post_message_direct(
        self, data: st.DataObject, pid: int, index: int, sint: int, kind: str, size: int
    ) -> None:
        caller, api, (pid, index, sint) = self.direct_call(data, (pid, index, sint), lambda syn: syn.sim_on)
        mtype = self.next_tag() | (MESSAGE_TYPE_HYPERVISOR if kind == "hypervisor" else 0)
        if kind == "none":
            mtype = 0
        elif kind == "oversize":
            size = HV_MESSAGE_PAYLOAD_SIZE + 1
        expected, t = self.direct_target(caller, pid, PP.PostMessages)
        vp = t.vps.get(index) if t is not None else None
        if t is not None:
            if sint >= HV_SYNIC_SINT_COUNT or not mtype or size > HV_MESSAGE_PAYLOAD_SIZE:
                expected = S.INVALID_PARAMETER
            elif vp is None:
                expected = S.INVALID_VP_INDEX
            elif not vp.synic.sim_on or sint not in vp.synic.unmasked:
                expected = S.INVALID_SYNIC_STATE
            elif sint in vp.synic.slots:
                expected = S.OBJECT_IN_USE  # conformance 7.7 122
        status = self.run(api.post_message_direct(pid, index, sint, mtype, bytes(size)))
        assert status is expected, (status, expected)
        if status is S.SUCCESS and vp is not None:
            vp.synic.slots[sint] = (MsgModel(mtype, size, 0, None), False)

    @rule(
        data=st.data(),
        pid=partitions,
        index=st.integers(0, 2),
        sint=st.sampled_from([MSG_SINT, EVENT_SINT, 1, 4, 0, HV_SYNIC_SINT_COUNT]),
        flag=direct_flags,
    )
    def signal_event_direct(self, data: st.DataObject, pid: int, index: int, sint: int, flag: int) -> None:
        caller, api, (pid, index, sint) = self.direct_call(data, (pid, index, sint), lambda syn: syn.sief_on)
        expected, t = self.direct_target(caller, pid, PP.SignalEvents)
        vp = t.vps.get(index) if t is not None else None
        if vp is not None:  # often a flag already set: NewlySignaled must then be 0
            again = often(data, sorted(vp.synic.flags.get(sint, ())), "set flag")
            flag = flag if again is None else again
        if t is not None:
            if not 1 <= sint < HV_SYNIC_SINT_COUNT or flag >= HV_EVENT_FLAGS_COUNT:
                expected = S.INVALID_PARAMETER
            elif vp is None:
                expected = S.INVALID_VP_INDEX
            elif not vp.synic.sief_on or sint not in vp.synic.unmasked:
                expected = S.INVALID_SYNIC_STATE
        status, newly = self.run(api.signal_event_direct(pid, index, sint, flag))
        assert status is expected, (status, expected)
        if status is S.SUCCESS and vp is not None:
            assert newly == (flag not in vp.synic.flags[sint])  # conformance 7.7 121
            vp.synic.flags[sint].add(flag)

    # --- the receiving guest -----------------------------------------------------------------------
    @precondition(lambda self: bool(self.vps_alive()))
    @rule(
        data=st.data(),
        what=st.sampled_from(["message", "message", "flag"]),
        eom_anyway=st.integers(0, 7),
        count=st.integers(1, 4),
    )
    def take(self, data: st.DataObject, what: str, eom_anyway: int, count: int) -> None:
        """What a guest's SINT handler does, *count* times on one slot: copy the message out
        (type := None) and write EOM if MessagePending was set (sometimes when it was not); or
        test-and-clear one event flag."""
        full = [
            (p.pid, i, sint)
            for p in self.live()
            for i, vp in sorted(p.vps.items())
            for sint in sorted(vp.synic.slots if what == "message" else vp.synic.flags)
            if what == "message" or vp.synic.flags[sint]
        ]
        if full:
            pid, index, sint = data.draw(st.sampled_from(full), label="slot")
        else:
            pid, index = data.draw(st.sampled_from(self.vps_alive()), label="VP")
            sint = MSG_SINT
        p = self.part(pid)
        vp = p.vps[index]
        real = self.sim.hv.partitions[pid].vps[index].synic
        for _ in range(count):
            if what == "flag":
                flags = vp.synic.flags[sint]
                flag = data.draw(
                    st.sampled_from(sorted(flags)) if flags else st.integers(0, 63), label="flag"
                )
                assert real.take_flag(sint, flag) == (flag in flags)
                flags.discard(flag)
            else:
                self.take_message(p, vp, real, sint, eom_anyway == 0)

    def take_message(self, p: PartModel, vp: VpModel, real: Synic, sint: int, eom_anyway: bool) -> None:
        slot = vp.synic.slots.pop(sint, None)
        pending = False
        if slot is None:
            assert real.slot_type(sint) == 0  # a guest takes nothing from an empty slot
        else:
            message, pending = real.take_slot(sint)
            header = MESSAGE_HEADER.unpack(message)
            msg, expected_pending = slot
            got = (header.message_type, header.payload_size, header.origination_id, pending)
            assert got == (msg.type, msg.size, msg.origin, expected_pending)
        if pending or eom_anyway:
            status = self.run(HostApi(self.sim, caller=p.pid, vp=vp.index).write_msr(R.Eom, 0))
            if p.privileges & PP.AccessSynicRegs:
                assert status is S.SUCCESS
                self.rescan(vp)  # EOM: the hypervisor rescans the queues
            else:
                assert status is S.ACCESS_DENIED

    # --- a whole channel, as a parent wires one (the same checked calls) ---------------------------
    @rule(
        data=st.data(),
        kind=port_kinds,
        any_vp=st.booleans(),
        port_id=port_ids,
        conn_id=conn_ids,
        sints=unmasked_sints,
    )
    def wire_channel(
        self,
        data: st.DataObject,
        kind: PortType,
        any_vp: bool,
        port_id: int,
        conn_id: int,
        sints: frozenset[int],
    ) -> None:
        """Enable the receiver's SynIC on VP 0, create a port there and connect the sender to it
        (the receiver and sender: the root or ACTIVE children, maybe the same; the first free ids,
        else the drawn ones); the pools are topped up first. Swarm runs drop rules, so the sequence
        is also one rule."""
        live = [p.pid for p in self.live()]
        receiver = data.draw(st.sampled_from(live), label="receiver")
        sender = data.draw(st.sampled_from(live), label="sender")
        port_id = next((i for i in (1, 2, 3) if i not in self.part(receiver).ports), port_id)
        conn_id = next((i for i in (1, 2, 3) if i not in self.part(sender).conns), conn_id)
        for pid in dict.fromkeys([receiver, sender]):
            short = COSTS.port + COSTS.connection - self.available(self.part(pid))
            if short > 0:
                if pid == self.root.pid:
                    self.deposit_self(short, by_id=True)
                else:
                    self.deposit(pid, short)
        sint = MSG_SINT if kind == PortType.Message else EVENT_SINT
        if 0 in self.part(receiver).vps:
            self.synic(receiver, 0, "enable", MSG_SINT, sints | {sint})
        self.create_port(receiver, port_id, kind, sint, HV_ANY_VP if any_vp else 0, (0, 64), sender, False)
        self.connect_port(sender, conn_id, receiver, port_id, kind)

    # --- guest memory: the root maps host pages it allocated into ACTIVE children -----------------
    def hold(self, page: int) -> None:
        self.held[page] += 1
        self.unmapped.discard(page)

    def unhold(self, page: int) -> None:
        """One mapping of *page* fewer; the host frees it once nothing maps it (``free_unmapped``:
        after the call, as a later element may map it again)."""
        self.held[page] -= 1
        if not self.held[page]:
            del self.held[page]
            self.unmapped.add(page)

    def free_unmapped(self) -> None:
        self.sim.free_host_pages(sorted(self.unmapped))
        self.unmapped.clear()

    def apply_map(self, t: PartModel, gpfn: int, page: int | None, flags: int) -> None:
        """A mapping replaces whatever was mapped at *gpfn* (HYPERCALLS.md 4.16)."""
        if page is not None:
            self.hold(page)
        old = t.gpa.get(gpfn)
        t.gpa[gpfn] = (page, flags)
        if old is None:
            t.region_pages[gpfn // REGION] += 1
        elif old[0] is not None:
            self.unhold(old[0])

    def apply_unmap(self, t: PartModel, gpfn: int, keep: bool) -> None:
        """Unmapping an unmapped page is a silent success; the region's page table goes with its last
        page unless KEEP_PRECOMMITTED (HYPERCALLS.md 4.18)."""
        old = t.gpa.pop(gpfn, None)
        if old is None:
            return
        if old[0] is not None:
            self.unhold(old[0])
        region = gpfn // REGION
        t.region_pages[region] -= 1
        if not t.region_pages[region]:
            del t.region_pages[region]
            if not keep:
                t.tables.discard(region)

    def gpa_target(self, pid: int) -> tuple[HvStatus | None, PartModel | None]:
        """The partition a GPA call of the root names: its own identity map, or a child; ACTIVE."""
        t = self.lookup(pid)
        if t is None:
            return S.INVALID_PARTITION_ID, None
        if t.state != ACTIVE:
            return S.INVALID_PARTITION_STATE, None
        return None, t

    def expected_map(self, t: PartModel, base: int, sources: list[int], flags: int) -> tuple[HvStatus, int]:
        """MapGpaPages applied to the model element by element: the status and reps completed the call
        must answer (HYPERCALLS.md 4.16, 1.6)."""
        if not map_flags_ok(flags):
            return S.INVALID_PARAMETER, 0
        large = bool(flags & F.LARGE_PAGE)
        pages = LARGE_PAGE_PAGES if large else 1
        backing = flags & F.BACKING_MASK
        pooled = set(self.all_pool_pages())
        for i, source in enumerate(sources):
            gpfn = base + pages * i
            if gpfn + pages > GPA_LIMIT or (large and (gpfn % pages or source % pages)):
                return S.INVALID_PARAMETER, i
            if t.is_root:
                return S.ACCESS_DENIED, i  # the root may not map its RAM anywhere but where it is
            if not backing and not 0 <= source < HOST_PAGES:
                return S.INVALID_PARAMETER, i  # beyond the root's GPA space
            if not backing and source in pooled:
                return S.OPERATION_DENIED, i  # deposited: nobody can map it
            region = gpfn // REGION
            if region not in t.tables:
                if self.available(t) < COSTS.gpa_table:
                    return S.INSUFFICIENT_MEMORY, i
                t.tables.add(region)
            for k in range(pages):
                self.apply_map(t, gpfn + k, None if backing else source + k, flags & ~F.LARGE_PAGE)
        return S.SUCCESS, len(sources)

    def mapped_children(self) -> list[int]:
        return [pid for pid in self.in_state(ACTIVE) if self.children[pid].gpa]

    def map_pages(self, pid: int, base: int, sources: list[int], flags: int, allocated: list[int]) -> None:
        """MapGpaPages from the root, checked against the model; then the host frees the pages it
        *allocated* for the call that ended up unmapped."""
        t = self.lookup(pid)
        if t is not None and t.is_root and base == sources[0]:
            base += 1  # not the identity: the root's own access rights are not modelled
        status, t = self.gpa_target(pid)
        reps = 0
        if t is not None:
            status, reps = self.expected_map(t, base, sources, flags)
        out = self.run(self.api.map_gpa_pages(pid, base, sources, flags))
        assert (out.status, out.reps_completed) == (status, reps), (out, status, reps)
        self.unmapped.update(page for page in allocated if page not in self.held)
        self.free_unmapped()

    def draw_sources(
        self, data: st.DataObject, fresh: int, shared: int, bad: str | None, flags: int
    ) -> tuple[list[int], list[int]]:
        """(sources, the pages allocated for them): *fresh* newly allocated host pages and *shared*
        pages some child maps already, shuffled, one bad source inserted somewhere (a pool page:
        OPERATION_DENIED; beyond host RAM: INVALID_PARAMETER); source 0 for pages without a host
        page (zero page, no access). A mapping with a host page behind it and nothing drawn gets one
        fresh page: never a page the host has not allocated (it may be free, or back in a pool)."""
        allocated = self.host_alloc(fresh)
        pages = list(allocated)
        if self.held and shared:
            pages += data.draw(st.lists(st.sampled_from(sorted(self.held)), min_size=shared, max_size=shared))
        if not pages and not flags & F.BACKING_MASK:
            allocated = self.host_alloc(1)
            pages = list(allocated) or [HOST_PAGES]  # host RAM ran out: beyond it, INVALID_PARAMETER
        sources = data.draw(st.permutations(pages), label="sources") if pages else [0]
        if bad is not None:
            pooled = self.all_pool_pages()
            page = HOST_PAGES + data.draw(st.integers(0, 100)) if bad == "beyond" or not pooled else pooled[0]
            sources.insert(data.draw(st.integers(0, len(sources)), label="bad at"), page)
        if flags & F.BACKING_MASK:
            sources = [0] * len(sources)
        return sources, allocated

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(
        data=st.data(),
        base=gpa_bases,
        fresh=st.integers(0, 8),
        shared=st.integers(0, 3),
        flags=map_flags,
        bad=bad_sources,
    )
    def map_gpa(
        self, data: st.DataObject, base: int, fresh: int, shared: int, flags: int, bad: str | None
    ) -> None:
        """MapGpaPages into an ACTIVE child: fresh host pages and pages mapped already (shared memory:
        into another child, or the same one at another GPA), legal and illegal rights; a mapping
        replaces what was there."""
        pid = data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child")
        over: bool = data.draw(st.booleans(), label="over its mappings")
        if over and self.mapped_children():
            base = data.draw(st.sampled_from(sorted(self.children[pid].gpa) or [base]), label="mapped page")
        sources, allocated = self.draw_sources(data, fresh, shared, bad, flags)
        self.map_pages(pid, base, sources, flags, allocated)

    @rule(data=st.data(), pid=partitions, base=gpa_bases, fresh=st.integers(0, 3), flags=map_flags)
    def map_gpa_anywhere(self, data: st.DataObject, pid: int, base: int, fresh: int, flags: int) -> None:
        """MapGpaPages naming any partition: the root itself (never a non-identity mapping:
        ACCESS_DENIED), a child in any state, a deleted one, an id never allocated."""
        sources, allocated = self.draw_sources(data, fresh, 0, None, flags)
        self.map_pages(pid, base, sources, flags, allocated)

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(
        data=st.data(),
        pages=st.integers(1, 24),
        flags=st.sampled_from([F.PERMISSIONS, F.READABLE | F.WRITABLE]),
    )
    def guest_ram(self, data: st.DataObject, pages: int, flags: int) -> None:
        """What a host does for a new VM: a run of fresh host pages as its RAM at GPA 0."""
        self.give_ram(data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child"), pages, flags)

    @precondition(lambda self: bool(self.held) and bool(self.in_state(ACTIVE)))
    @rule(data=st.data(), base=gpa_bases, pages=st.integers(1, 8), flags=map_flags)
    def share_ram(self, data: st.DataObject, base: int, pages: int, flags: int) -> None:
        """Shared memory (HYPERCALLS.md 4.16, conformance 88): pages some child maps already, mapped
        into an ACTIVE child (another one, or the same one at another GPA)."""
        pid = data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child")
        held = sorted(self.held)
        start = data.draw(st.integers(0, len(held) - 1), label="from")
        self.map_pages(pid, base, held[start : start + pages], flags, [])

    def give_ram(self, pid: int, pages: int, flags: int) -> None:
        allocated = self.host_alloc(pages)
        self.map_pages(pid, 0, allocated or [0], flags, allocated)

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(data=st.data(), region=st.integers(0, 2), count=st.integers(1, 2), flags=st.sampled_from(BACKINGS))
    def map_large(self, data: st.DataObject, region: int, count: int, flags: int) -> None:
        """2 MiB pages with no host page behind them (cheap: no 512 contiguous host pages needed); a
        target that is not 2 MiB aligned is INVALID_PARAMETER."""
        pid = data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child")
        base = REGION * region + data.draw(st.sampled_from([0, 0, 0, 1]), label="misaligned by")
        self.map_pages(pid, base, [0] * count, flags | F.LARGE_PAGE, [])

    @precondition(lambda self: bool(self.mapped_children()))
    @rule(data=st.data(), count=st.integers(1, 8), flags=unmap_flag_values)
    def unmap_gpa(self, data: st.DataObject, count: int, flags: int) -> None:
        """UnmapGpaPages of *count* pages (2 MiB pages with LARGE_PAGE) from a mapped GPA page of an
        ACTIVE child; unmapped pages in the range are a silent success."""
        pid = data.draw(st.sampled_from(self.mapped_children()), label="child with mappings")
        base = data.draw(st.sampled_from(sorted(self.children[pid].gpa)), label="mapped page")
        if flags & UNMAP_GPA_LARGE_PAGE:
            count = min(count, 2)
            base = base // REGION * REGION + data.draw(st.sampled_from([0, 0, 0, 1]), label="misaligned by")
        self.unmap_pages(pid, base, count, flags)

    @precondition(lambda self: bool(self.mapped_children()))
    @rule(data=st.data(), keep=st.booleans())
    def unmap_region(self, data: st.DataObject, keep: bool) -> None:
        """UnmapGpaPages of a whole 2 MiB region a child maps pages in (one rep with LARGE_PAGE): its
        page table goes back to the pool, unless KEEP_PRECOMMITTED."""
        pid = data.draw(st.sampled_from(self.mapped_children()), label="child with mappings")
        region = data.draw(st.sampled_from(sorted(self.children[pid].region_pages)), label="region")
        flags = UNMAP_GPA_LARGE_PAGE | (UNMAP_GPA_KEEP_PRECOMMITTED if keep else 0)
        self.unmap_pages(pid, region * REGION, 1, flags)

    @rule(pid=partitions, base=gpa_bases, count=st.integers(1, 8), flags=unmap_flag_values)
    def unmap_gpa_anywhere(self, pid: int, base: int, count: int, flags: int) -> None:
        """UnmapGpaPages naming any partition (the root may not unmap its own RAM: ACCESS_DENIED)."""
        if flags & UNMAP_GPA_LARGE_PAGE:
            count = min(count, 2)
        self.unmap_pages(pid, base, count, flags)

    def unmap_pages(self, pid: int, base: int, count: int, flags: int) -> None:
        status, t = self.gpa_target(pid)
        reps = 0
        if t is not None:
            status, reps = self.expected_unmap(t, base, count, flags)
        out = self.run(self.api.unmap_gpa_pages(pid, base, count, flags))
        assert (out.status, out.reps_completed) == (status, reps), (out, status, reps)
        self.free_unmapped()

    def expected_unmap(self, t: PartModel, base: int, count: int, flags: int) -> tuple[HvStatus, int]:
        if t.is_root:
            return S.ACCESS_DENIED, 0  # the root may not unmap its own RAM
        if flags & ~(UNMAP_GPA_LARGE_PAGE | UNMAP_GPA_KEEP_PRECOMMITTED):
            return S.INVALID_PARAMETER, 0
        step = LARGE_PAGE_PAGES if flags & UNMAP_GPA_LARGE_PAGE else 1
        for i in range(count):
            gpfn = base + step * i
            if gpfn + step > GPA_LIMIT or gpfn % step:
                return S.INVALID_PARAMETER, i
            for k in range(step):
                self.apply_unmap(t, gpfn + k, keep=bool(flags & UNMAP_GPA_KEEP_PRECOMMITTED))
        return S.SUCCESS, count

    # --- virtual interrupts: the parent asserts, VP 0 takes an ExtInt once it runs --------------------
    @staticmethod
    def runs(p: PartModel, vp: VpModel) -> bool:
        return vp.started and vp.regs[R.ExplicitSuspend] == 0 and p.state == ACTIVE

    def acknowledge_extints(self) -> None:
        """VP 0 takes a pending ExtInt as soon as it runs, which acknowledges it (HYPERCALLS.md 4.34).
        Applied at the next prediction or invariant: no step lets VP 0 run and stops it again."""
        for pid in self.in_state(ACTIVE):
            p = self.children[pid]
            vp0 = p.vps.get(0)
            if vp0 is not None and vp0.apic.owes_ack and self.runs(p, vp0):
                vp0.apic.owes_ack = False
                if p.latch == Latch.PENDING:
                    p.latch = Latch.ACKNOWLEDGED

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(pid=partitions, data=st.data(), **ASSERT_ARGS)
    def assert_interrupt(
        self,
        pid: int,
        data: st.DataObject,
        kind: int,
        vector: int,
        dest: int,
        level: bool,
        logical: bool,
        flaw: str | None,
    ) -> None:
        """AssertVirtualInterrupt into (three times in four) an ACTIVE child, else any partition:
        every type, vector and destination mode, sometimes malformed (HYPERCALLS.md 4.34, 5.13,
        conformance 7.7 99-101). Three times in four the destination names VPs the target has (several:
        a logical mask, or broadcast), else it is the drawn one (maybe naming none)."""
        pid = often(data, self.in_state(ACTIVE), "ACTIVE child") or pid
        t = self.lookup(pid)
        if t is not None and t.vps and data.draw(st.integers(0, 3), label="names its VPs") > 0:
            vps = sorted(t.vps)
            named = data.draw(st.one_of(st.just(vps), st.sets(st.sampled_from(vps), min_size=1)), label="VPs")
            mask = sum(1 << i for i in named if i < 64)  # logical: APIC IDs 0-63 only
            dest = mask if logical else min(named) if len(named) == 1 else BROADCAST
        self.assert_irq(pid, kind, vector, dest, level=level, logical=logical, flaw=flaw)

    def assert_irq(
        self, pid: int, kind: int, vector: int, dest: int, *, level: bool = False, logical: bool = False,
        flaw: str | None = None,
    ) -> None:  # fmt: skip
        """One AssertVirtualInterrupt from the root, its status predicted and applied to the model."""
        ctl = int(kind) | INTERRUPT_LEVEL * level | INTERRUPT_LOGICAL * logical
        ctl |= {"control-34": 1 << 34, "control-63": 1 << 63}.get(flaw or "", 0)
        vtl, z0, z1 = (int(flaw == f) for f in ("vtl", "z0", "z1"))
        self.acknowledge_extints()
        res = self.run(
            self.api.simple(C.AssertVirtualInterrupt, assert_input(pid, ctl, dest, vector, vtl, z0, z1))
        )
        expected, t = self.parent_only(pid, (ACTIVE,))
        if t is not None:
            expected = self.apply_assert(t, ctl, dest, vector, assert_parameters_ok(ctl, vector, vtl, z0, z1))
        assert res.status is expected, (res.status, expected)

    def apply_assert(self, t: PartModel, ctl: int, dest: int, vector: int, ok: bool) -> HvStatus:
        if not ok:
            return S.INVALID_PARAMETER
        kind = IT(ctl & U32)
        if kind is IT.ExtInt:
            return self.apply_ext_int(t, dest, vector)
        indices = destination(list(t.vps), dest, bool(ctl & INTERRUPT_LOGICAL))
        if not indices:
            return S.INVALID_VP_INDEX
        if kind is IT.LowestPriority:
            indices = indices[:1]  # the lowest VP index of the set
        for i in indices:
            self.deliver(t.vps[i], kind, vector, bool(ctl & INTERRUPT_LEVEL))
        return S.SUCCESS

    @staticmethod
    def deliver(vp: VpModel, kind: IT, vector: int, level: bool) -> None:
        """One VP's share: vector NONE withdraws a level-triggered fixed or lowest-priority line (every
        pending vector goes, as implemented: an ExtInt too, never to be acknowledged); INIT resets
        the VP (its local APIC is cleared; an AP waits for SIPI, VP 0 restarts from the reset
        vector); SIPI starts a waiting AP at RIP 0 (CS from the vector); NMIs are counted; fixed and
        lowest-priority vectors pend."""
        if vector == NONE:
            if level and kind in (IT.Fixed, IT.LowestPriority):
                vp.apic.withdraw()
            return
        if kind is IT.Init:
            vp.apic.init()
            if vp.index == 0:
                vp.regs[R.Rip] = CHILD_RESET[R.Rip]
            else:
                vp.started = False
        elif kind is IT.Sipi and not vp.started:
            vp.started = True
            vp.regs[R.Rip] = 0
        if kind is IT.Nmi:
            vp.apic.nmis += 1
        elif kind in (IT.Fixed, IT.LowestPriority) and vector not in vp.apic.pending:
            vp.apic.pending.append(vector)  # one IRR bit per vector

    def apply_ext_int(self, t: PartModel, dest: int, vector: int) -> HvStatus:
        """ExtInt always targets VP 0 and latches (HYPERCALLS.md 4.34, conformance 7.7 101-102)."""
        if dest != 0:
            return S.INVALID_VP_INDEX
        if t.latch == Latch.ACKNOWLEDGED:
            return S.ACKNOWLEDGED  # until ClearVirtualInterrupt
        vp0 = t.vps.get(0)
        if vp0 is None:
            return S.INVALID_VP_INDEX
        vp0.apic.ext_int(vector)
        if vector == NONE:
            t.latch = Latch.NONE  # withdrawn before VP 0 took it
        elif self.runs(t, vp0):
            t.latch = Latch.ACKNOWLEDGED  # VP 0 runs: it takes it at once
        else:
            t.latch = Latch.PENDING
            vp0.apic.owes_ack = True
        return S.SUCCESS

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(pid=partitions, data=st.data(), **EXT_INT_ARGS)
    def ext_int(self, pid: int, data: st.DataObject, vector: int, again: int, vp0: str, then: str) -> None:
        """The ExtInt latch of an ACTIVE child: NONE -> PENDING (VP 0 suspended) -> ACKNOWLEDGED once
        VP 0 runs and takes it; a new ExtInt is ACKNOWLEDGED until ClearVirtualInterrupt (NOT_ACKNOWLEDGED
        with nothing acknowledged), conformance 7.7 102-103; vector NONE withdraws a pending one."""
        if pid not in self.in_state(ACTIVE):
            pid = data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child")
        t = self.children[pid]
        if vp0 != "as is" and 0 in t.vps:
            self.set_registers(pid, 0, {R.ExplicitSuspend: 1})
        self.assert_irq(pid, IT.ExtInt, vector, 0)
        if vp0 == "suspended, then run" and 0 in t.vps:
            self.set_registers(pid, 0, {R.ExplicitSuspend: 0})
        if then.startswith("clear"):
            self.clear_irq(pid)
        if then.endswith("assert again"):
            self.assert_irq(pid, IT.ExtInt, again, 0)
        self.acknowledge_extints()
        assert self.sim.hv.partitions[pid].ext_int == t.latch

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(data=st.data(), vector=st.integers(0x20, 0xFF), logical=st.booleans(), level=st.booleans())
    def interrupt_all(self, data: st.DataObject, vector: int, logical: bool, level: bool) -> None:
        """What a host does with a guest of several VPs: the AP start-up sequence, INIT and SIPI, to each
        AP; then a fixed interrupt, a lowest-priority one (to the lowest VP only) and an NMI to all of
        them (broadcast, or a logical mask of them all). The same checked calls as the rules; INIT
        clears an APIC, so it comes first, and the invariants see what the others delivered."""
        pid = data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child")
        vps = sorted(self.children[pid].vps)
        for ap in vps[1:]:
            self.assert_irq(pid, IT.Init, 0, ap)
            self.assert_irq(pid, IT.Sipi, data.draw(st.integers(0, 0xFF), label="SIPI vector"), ap)
        dest = sum(1 << i for i in vps if i < 64) if logical else BROADCAST  # logical: APIC IDs 0-63
        for kind in (IT.Fixed, IT.LowestPriority, IT.Nmi):
            self.assert_irq(pid, kind, 0 if kind is IT.Nmi else vector, dest, level=level, logical=logical)

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(pid=partitions, data=st.data())
    def clear_interrupt(self, pid: int, data: st.DataObject) -> None:
        self.clear_irq(often(data, self.in_state(ACTIVE), "ACTIVE child") or pid)

    def clear_irq(self, pid: int) -> None:
        """ClearVirtualInterrupt (HYPERCALLS.md 4.35): clears an acknowledged ExtInt latch."""
        self.acknowledge_extints()
        status = self.run(self.api.simple(C.ClearVirtualInterrupt, clear_input(pid))).status
        expected, t = self.parent_only(pid, (ACTIVE,))
        if t is not None:
            expected = S.SUCCESS if t.latch == Latch.ACKNOWLEDGED else S.NOT_ACKNOWLEDGED
            if expected is S.SUCCESS:
                t.latch = Latch.NONE
        assert status is expected, (status, expected)

    # --- registered intercept results, and GetVpCpuidValues that applies them ---------------------
    def result_target(self, pid: int, vp: int, kind: int) -> tuple[HvStatus | None, PartModel | None]:
        """Register/UnregisterInterceptResult: an ACTIVE child, a VP of it or HV_ANY_VP, CPUID or MSR."""
        status, t = self.parent_only(pid, (ACTIVE,))
        if t is None:
            return status, None
        if vp != HV_ANY_VP and vp not in t.vps:
            return S.INVALID_VP_INDEX, None
        if kind not in (CPUID, MSR):
            return S.INVALID_PARAMETER, None
        return None, t

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(pid=partitions, data=st.data(), **RESULT_ARGS)
    def register_result(
        self, pid: int, data: st.DataObject, vp: int, kind: int, cpuid: CpuidPattern, msr: MsrPattern
    ) -> None:
        """RegisterInterceptResult (HYPERCALLS.md 4.25) for a VP or HV_ANY_VP of (mostly) an ACTIVE
        child; half the time for a leaf (and subleaf) the child has a registration for already."""
        pid = often(data, self.in_state(ACTIVE), "ACTIVE child") or pid
        t = self.lookup(pid)
        known = sorted({(leaf, sub) for _, leaf, sub in t.cpuid_results}, key=str) if t else []
        if kind == CPUID and known and data.draw(st.booleans(), label="a registered leaf"):
            leaf, sub = data.draw(st.sampled_from(known), label="registered leaf")
            cpuid = cpuid._replace(leaf=leaf, subleaf=sub or 0, specific=int(sub is not None))
        self.register(pid, vp, kind, cpuid, msr)

    def register(self, pid: int, vp: int, kind: int, cpuid: CpuidPattern, msr: MsrPattern) -> None:
        """A CPUID answer (its mask bits override) or an unimplemented MSR's action (per access); a
        registration of the same pattern replaces one. Registrations cost no pool page."""
        params = cpuid_parameters(cpuid) if kind == CPUID else msr_parameters(msr)
        res = self.run(self.api.simple(C.RegisterInterceptResult, result_header(pid, vp, kind) + params))
        expected, t = self.result_target(pid, vp, kind)
        if t is not None:
            expected = S.SUCCESS
            if kind == CPUID and cpuid_pattern_ok(cpuid):
                key = cpuid_key(vp, cpuid.leaf, cpuid.subleaf, cpuid.specific)
                t.cpuid_results[key] = (cpuid.values, cpuid.masks)
            elif kind == MSR and msr_pattern_ok(msr):
                for access in MSR_ACCESSES:
                    if msr.access & access:
                        t.msr_results[(vp, msr.msr_index, access)] = msr.action
            else:
                expected = S.INVALID_PARAMETER
        assert res.status is expected, (res.status, expected)

    def registrations(self) -> list[tuple[int, int, int, int, int | None]]:
        """(child, VP, type, leaf or MSR index, subleaf or access) of every registration that exists."""
        found: list[tuple[int, int, int, int, int | None]] = []
        for pid in self.in_state(ACTIVE):
            t = self.children[pid]
            found += [(pid, vp, CPUID, leaf, subleaf) for vp, leaf, subleaf in t.cpuid_results]
            found += [(pid, vp, MSR, index, access) for vp, index, access in t.msr_results]
        return found

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(pid=partitions, data=st.data(), **RESULT_ARGS)
    def unregister_result(
        self, pid: int, data: st.DataObject, vp: int, kind: int, cpuid: CpuidPattern, msr: MsrPattern
    ) -> None:
        """UnregisterInterceptResult (HYPERCALLS.md 4.26): three times in four the pattern of a
        registration that exists (an MSR one maybe for both accesses; a CPUID one for any subleaf
        ignores the subleaf), else a drawn one; nothing matching is ``unregister_missing_status``."""
        leaf, subleaf, specific = cpuid.leaf, cpuid.subleaf, cpuid.specific
        index, access = msr.msr_index, msr.access
        chosen = often(data, self.registrations(), "registration")
        if chosen is not None:
            pid, vp, kind, what, detail = chosen
            if kind == CPUID:
                leaf, specific = what, int(detail is not None)
                subleaf = data.draw(st.integers(0, 2), label="subleaf") if detail is None else detail
            else:
                assert detail is not None
                index, access = what, detail | data.draw(st.sampled_from([0, 0, 3]), label="accesses")
        if kind == CPUID:
            params = unregister_cpuid_parameters(leaf, subleaf, specific)
        else:
            params = unregister_msr_parameters(index, access)
        res = self.run(self.api.simple(C.UnregisterInterceptResult, result_header(pid, vp, kind) + params))
        expected, t = self.result_target(pid, vp, kind)
        if t is not None:
            if kind == CPUID:
                removed = t.cpuid_results.pop(cpuid_key(vp, leaf, subleaf, specific), None) is not None
            elif msr_access_ok(access):
                gone = [t.msr_results.pop((vp, index, a), None) for a in MSR_ACCESSES if access & a]
                removed = any(action is not None for action in gone)
            else:
                removed = False
            expected = S.SUCCESS if removed else self.config.unregister_missing_status
            if kind == MSR and not msr_access_ok(access):
                expected = S.INVALID_PARAMETER  # malformed, not missing
        assert res.status is expected, (res.status, expected)

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(pid=partitions, data=st.data(), **CPUID_VALUES_ARGS)
    def cpuid_values(
        self,
        pid: int,
        data: st.DataObject,
        vp: int,
        flags: int,
        flaw: str | None,
        queries: list[tuple[int, int]],
    ) -> None:
        """GetVpCpuidValues (HYPERCALLS.md 4.15) of a VP of (mostly) an ACTIVE child with registrations,
        half the time of the leaves it has registrations for."""
        active = self.in_state(ACTIVE)
        registered = [pid for pid in active if self.children[pid].cpuid_results]
        pid = often(data, registered or active, "ACTIVE child") or pid
        t = self.lookup(pid)
        if t is not None and t.cpuid_results and data.draw(st.booleans(), label="registered leaves"):
            leaves = sorted({(leaf, 0 if sub is None else sub) for _, leaf, sub in t.cpuid_results})
            queries = data.draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=4), label="queries")
        self.check_cpuid_values(pid, vp, flags, flaw, queries)

    def check_cpuid_values(
        self, pid: int, vp: int, flags: int, flaw: str | None, queries: list[tuple[int, int]]
    ) -> None:
        """The call, then the same queries with ApplyRegisteredValues flipped: applied, each result is
        the plain one with the registration that applies merged in (the VP's own before HV_ANY_VP's,
        a subleaf's own before any subleaf's: the first found)."""
        reserved, padding = int(flaw == "reserved"), int(flaw == "padding")
        out = self.cpuid_call(pid, vp, flags, reserved, padding, queries)
        expected, t = self.parent_only(pid, (ACTIVE,))
        if t is not None:
            if vp not in t.vps:
                expected = S.INVALID_VP_INDEX
            elif flags & ~(APPLY_REGISTERED_VALUES | 1) or reserved or padding:
                expected = S.INVALID_PARAMETER
        if expected is not None or t is None:
            assert (out.status, out.reps_completed) == (expected, 0)
            return
        assert (out.status, out.reps_completed) == (S.SUCCESS, len(queries))
        flipped = self.cpuid_call(pid, vp, flags ^ APPLY_REGISTERED_VALUES, 0, 0, queries)
        assert (flipped.status, flipped.reps_completed) == (S.SUCCESS, len(queries))
        applied, plain = cpuid_results(out.output), cpuid_results(flipped.output)
        if not flags & APPLY_REGISTERED_VALUES:
            applied, plain = plain, applied
        merged = [
            registered_cpuid(t.cpuid_results, vp, leaf, sub, r)
            for (leaf, sub), r in zip(queries, plain, strict=True)
        ]
        assert applied == merged

    def cpuid_call(
        self, pid: int, vp: int, flags: int, reserved: int, padding: int, queries: list[tuple[int, int]]
    ) -> Any:
        header = cpuid_values_input(pid, vp, flags, reserved, padding)
        return self.run(self.api.rep(C.GetVpCpuidValues, header, [cpuid_query(*q) for q in queries]))

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(data=st.data(), leaf=st.sampled_from(CPUID_LEAVES), cpuid=cpuid_patterns, msr=msr_patterns)
    def cpuid_policy(self, data: st.DataObject, leaf: int, cpuid: CpuidPattern, msr: MsrPattern) -> None:
        """What a host does to set a VM's CPUID: registrations for one leaf, partition-wide (HV_ANY_VP)
        and for some of its VPs, for any subleaf or one; then GetVpCpuidValues with
        ApplyRegisteredValues on every VP must show the registration that wins for each (the same
        checked calls as the rules)."""
        pid = data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child")
        t = self.children[pid]
        for vp in [HV_ANY_VP, *sorted(t.vps)]:
            for subleaf in data.draw(st.sets(st.sampled_from([None, 0, 1])), label=f"registrations of {vp}"):
                values = data.draw(words, label="values")
                pattern = cpuid._replace(leaf=leaf, subleaf=subleaf or 0, specific=int(subleaf is not None))
                self.register(pid, vp, CPUID, pattern._replace(values=values, always=0, padding=0), msr)
        for vp in sorted(t.vps):
            self.check_cpuid_values(pid, vp, APPLY_REGISTERED_VALUES, None, [(leaf, 0), (leaf, 1), (leaf, 2)])

    # --- statistics pages (the caller's pool pays) and VP state pages (the child's pool pays) -------
    def stats_caller(self, data: st.DataObject) -> tuple[PartModel, HostApi]:
        """The root three times in four, else an ACTIVE child's VP (its own statistics: AccessStats)."""
        callers = self.callers()
        if callers and data.draw(st.integers(0, 3), label="from a child") == 0:
            child, index = data.draw(st.sampled_from(callers), label="child caller")
            return self.children[child], HostApi(self.sim, caller=child, vp=index)
        return self.root, self.api

    def stats_object(
        self, caller: PartModel, kind: int, target: int, vp: int, area: int, flawed: bool
    ) -> tuple[HvStatus | None, StatsKey | None]:
        """The object a statistics identity names, keyed as the hypervisor keys it, after the access
        rules (HYPERCALLS.md 4.29, 5.10): AccessStats; hypervisor and LP objects are the root's; a
        partition's and its VPs' are its own and its parent's."""
        if not caller.privileges & PP.AccessStats:
            return S.ACCESS_DENIED, None
        if not stats_parameters_ok(kind, area, flawed):
            return S.INVALID_PARAMETER, None
        if kind in (ST.Hypervisor, ST.LogicalProcessor):
            if not caller.is_root:
                return S.ACCESS_DENIED, None
            if kind == ST.LogicalProcessor and target >= self.config.root_vps:
                return S.INVALID_PARAMETER, None  # one LP per root VP
            return None, (kind, 0 if kind == ST.Hypervisor else target, area)
        t = self.resolve(caller, target)
        if t is None:
            return S.INVALID_PARTITION_ID, None
        if t is not caller and not caller.is_root:
            return S.ACCESS_DENIED, None  # neither itself nor its child
        if t.state != ACTIVE:
            return S.INVALID_PARTITION_STATE, None
        if kind == ST.Partition:
            return None, (kind, t.pid, area)
        if vp not in t.vps:
            return S.INVALID_VP_INDEX, None
        return None, (kind, t.pid, vp, area)

    def stats_object_drawn(
        self,
        data: st.DataObject,
        caller: PartModel,
        reuse: bool,
        pid: int,
        kind: int,
        lp: int,
        vp: int,
        area: int,
    ) -> tuple[int, int, int, int]:
        """(type, target, VP, area): with *reuse* an object the caller mapped (if any), else the drawn
        type naming (for the root, mostly) an ACTIVE child, the caller itself, or *pid*; mostly a VP
        the target has."""
        if reuse and caller.stats:
            return identity_of(data.draw(st.sampled_from(list(caller.stats)), label="mapped object"))
        if kind in (ST.Hypervisor, ST.LogicalProcessor):
            return kind, lp, vp, area
        children = self.in_state(ACTIVE) if caller.is_root else []
        names = [SELF, caller.pid, pid, *children, *children]
        target = data.draw(st.sampled_from(names), label="names")
        t = self.resolve(caller, target)
        if t is not None and t.vps and kind == ST.Vp:
            vp = often(data, sorted(t.vps), "its VP") or vp
        return kind, target, vp, area

    @rule(pid=partitions, data=st.data(), **MAP_STATS_ARGS)
    def map_stats(
        self, pid: int, data: st.DataObject, kind: int, lp: int, vp: int, area: int, flaw: str | None,
        location: int, top_up: bool,
    ) -> None:  # fmt: skip
        """MapStatsPage2 by the root or a child (HYPERCALLS.md 4.29, conformance 7.8 126-129); one
        time in four an object the caller mapped already (OPERATION_DENIED). With *top_up* a short
        caller first deposits the page into its own pool (what Linux does on INSUFFICIENT_MEMORY)."""
        caller, api = self.stats_caller(data)
        reuse = data.draw(st.integers(0, 3), label="again") == 0
        kind, target, vp, area = self.stats_object_drawn(data, caller, reuse, pid, kind, lp, vp, area)
        if top_up:
            self.top_up(caller, COSTS.stats_page)
        at = data.draw(st.integers(0, 14), label="reserved byte") if flaw == "identity" else None
        self.map_stats_page(caller, api, kind, target, vp, area, at, flaw == "header", location)

    def top_up(self, p: PartModel, pages: int) -> None:
        """Deposit what *p*'s pool is short of *pages* (into SELF for the root)."""
        short = pages - self.available(p)
        if short > 0:
            if p.is_root:
                self.deposit_self(short, by_id=True)
            else:
                self.deposit(p.pid, short)

    def map_stats_page(
        self, caller: PartModel, api: HostApi, kind: int, target: int, vp: int, area: int, at: int | None,
        header_flaw: bool, location: int,
    ) -> None:  # fmt: skip
        """One page of the caller's pool per object; an object it mapped is OPERATION_DENIED."""
        identity = stats_identity(kind, target, vp, area, at)
        res = self.run(
            api.simple(C.MapStatsPage2, map_stats_input(kind, identity, location, int(header_flaw)))
        )
        expected: HvStatus | None = S.INVALID_PARAMETER
        key: StatsKey | None = None
        if not header_flaw:
            expected, key = self.stats_object(caller, kind, target, vp, area, at is not None)
        if key is not None:
            if key in caller.stats:
                expected = S.OPERATION_DENIED  # unmap it first
            elif self.available(caller) < COSTS.stats_page:
                expected = S.INSUFFICIENT_MEMORY
            else:
                expected = S.SUCCESS
                caller.stats[key] = location
        assert res.status is expected, (res.status, expected)

    @rule(pid=partitions, data=st.data(), **STATS_ARGS)
    def unmap_stats(
        self, pid: int, data: st.DataObject, kind: int, lp: int, vp: int, area: int, flaw: str | None
    ) -> None:
        """UnmapStatsPage (HYPERCALLS.md 4.30, conformance 7.8 130): three times in four an object the
        caller mapped (its page goes back to the caller's pool), else a drawn one (OPERATION_DENIED if
        it is not mapped)."""
        caller, api = self.stats_caller(data)
        reuse = data.draw(st.integers(0, 3), label="mapped") > 0
        kind, target, vp, area = self.stats_object_drawn(data, caller, reuse, pid, kind, lp, vp, area)
        at = data.draw(st.integers(0, 14), label="reserved byte") if flaw == "identity" else None
        self.unmap_stats_page(caller, api, kind, target, vp, area, at, flaw == "header")

    def unmap_stats_page(
        self, caller: PartModel, api: HostApi, kind: int, target: int, vp: int, area: int, at: int | None,
        header_flaw: bool,
    ) -> None:  # fmt: skip
        """The page goes back to the caller's pool; an object it has not mapped is OPERATION_DENIED."""
        identity = stats_identity(kind, target, vp, area, at)
        res = self.run(api.simple(C.UnmapStatsPage, unmap_stats_input(kind, identity, int(header_flaw))))
        expected: HvStatus | None = S.INVALID_PARAMETER
        key: StatsKey | None = None
        if not header_flaw:
            expected, key = self.stats_object(caller, kind, target, vp, area, at is not None)
        if key is not None:
            expected = S.SUCCESS if caller.stats.pop(key, None) is not None else S.OPERATION_DENIED
        assert res.status is expected, (res.status, expected)

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(pid=partitions, data=st.data(), **MAP_STATE_ARGS)
    def map_vp_state(
        self,
        pid: int,
        data: st.DataObject,
        vp: int,
        page_type: int,
        placement: tuple[int, int],
        vtl: int,
        top_up: bool,
    ) -> None:
        """MapVpStatePage (HYPERCALLS.md 4.31, conformance 7.8 131) on a VP of (mostly) an ACTIVE child.
        With *top_up* a short child first gets the page deposited (what Linux does on
        INSUFFICIENT_MEMORY)."""
        pid = often(data, self.in_state(ACTIVE), "ACTIVE child") or pid
        t = self.lookup(pid)
        if top_up and t is not None and t.state == ACTIVE:
            self.top_up(t, COSTS.stats_page)
        self.map_state(pid, vp, page_type, vtl, *placement)

    def map_state(self, pid: int, vp: int, page_type: int, vtl: int, flags: int, location: int) -> None:
        """One page of the child's pool per (VP, type), a second is OBJECT_IN_USE; it lives where the
        caller asked, else where the hypervisor puts it (the same place each time)."""
        res = self.run(
            self.api.simple(C.MapVpStatePage, map_state_input(pid, vp, page_type, vtl, flags, location))
        )
        expected, t = self.parent_only(pid, (ACTIVE,))
        if t is not None:
            if vp not in t.vps:
                expected = S.INVALID_VP_INDEX
            elif page_type not in (VT.Registers, VT.InterceptMessage):
                expected = S.INVALID_PARAMETER  # GHCB pages are for SEV-SNP guests only
            elif not state_page_flags_ok(vtl, flags, location):
                expected = S.INVALID_PARAMETER
            elif (vp, page_type) in t.state_pages:
                expected = S.OBJECT_IN_USE
            elif self.available(t) < COSTS.stats_page:
                expected = S.INSUFFICIENT_MEMORY
        assert res.status is (expected or S.SUCCESS), (res.status, expected)
        if res.status is S.SUCCESS and t is not None:
            (where,) = _U64.unpack_from(res.output)
            if flags & MAP_LOCATION_PROVIDED:
                assert where == location
            else:
                assert where and self.state_page_spots.setdefault((t.pid, vp, page_type), where) == where
            t.state_pages[(vp, page_type)] = where

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(pid=partitions, data=st.data(), **UNMAP_STATE_ARGS)
    def unmap_vp_state(
        self, pid: int, data: st.DataObject, vp: int, page_type: int, vtl: int, reserved: int
    ) -> None:
        """UnmapVpStatePage (HYPERCALLS.md 4.32): three times in four a page that is mapped (its page
        goes back to the child's pool), else a drawn one (OPERATION_DENIED if not mapped)."""
        mapped = [(pid, vp, ty) for pid in self.in_state(ACTIVE) for vp, ty in self.children[pid].state_pages]
        pid, vp, page_type = often(data, mapped, "mapped page") or (pid, vp, page_type)
        self.unmap_state(pid, vp, page_type, vtl, reserved)

    def unmap_state(self, pid: int, vp: int, page_type: int, vtl: int, reserved: int) -> None:
        """The page goes back to the child's pool; a page not mapped is OPERATION_DENIED."""
        res = self.run(
            self.api.simple(C.UnmapVpStatePage, unmap_state_input(pid, vp, page_type, vtl, reserved))
        )
        expected, t = self.parent_only(pid, (ACTIVE,))
        if t is not None:
            if vp not in t.vps:
                expected = S.INVALID_VP_INDEX
            elif (
                page_type not in (VT.Registers, VT.InterceptMessage) or vtl not in STATE_PAGE_VTLS or reserved
            ):
                expected = S.INVALID_PARAMETER  # as MapVpStatePage (4.32 mirrors 4.31)
            elif t.state_pages.pop((vp, page_type), None) is None:
                expected = S.OPERATION_DENIED  # not mapped
        assert res.status is (expected or S.SUCCESS), (res.status, expected)

    @precondition(lambda self: bool(self.in_state(ACTIVE)))
    @rule(data=st.data(), area=st.integers(0, 2), end=st.sampled_from(["delete VP", "finalize", "stop"]))
    def watch_vp(self, data: st.DataObject, area: int, end: str) -> None:
        """What a host does to watch a VP: the root maps the statistics pages of a child and of one of
        its VPs (its own pool pays; mapping the VP's again is OPERATION_DENIED), and the VP's state
        pages (the child's pool pays; both topped up first). Then it takes the VP away (DeleteVp, or
        FinalizePartition): the pages of what went must go; or it stops watching (UnmapStatsPage,
        UnmapVpStatePage). Every page must come back to the pool that paid for it (the same checked
        calls as the rules)."""
        pid = data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child")
        t = self.children[pid]
        if not t.vps:
            return
        vp = data.draw(st.sampled_from(sorted(t.vps)), label="VP")
        self.top_up(self.root, 2 * COSTS.stats_page)
        self.map_stats_page(self.root, self.api, ST.Partition, pid, 0, area, None, False, 0)
        self.map_stats_page(self.root, self.api, ST.Vp, pid, vp, area, None, False, 0)
        self.map_stats_page(self.root, self.api, ST.Vp, pid, vp, area, None, False, 1)  # mapped: denied
        self.top_up(t, 2 * COSTS.stats_page)
        for page_type in (VT.Registers, VT.InterceptMessage):
            self.map_state(pid, vp, page_type, 0, 0, 0)
        if end == "finalize":
            self.finalize(pid)
        elif end == "delete VP":
            self.delete_vp(pid, vp)
        else:
            self.unmap_stats_page(self.root, self.api, ST.Partition, pid, 0, area, None, False)
            self.unmap_stats_page(self.root, self.api, ST.Vp, pid, vp, area, None, False)
            for page_type in (VT.Registers, VT.InterceptMessage):
                self.unmap_state(pid, vp, page_type, 0, 0)

    def replace_vp(self, pid: int, data: st.DataObject) -> None:
        """DeleteVp of a VP of ACTIVE child *pid* (three times in four one with pages mapped of it),
        maybe CreateVp again: its VP state pages and the statistics pages of it must go, their pool
        pages back (the same checked calls as the rules)."""
        t = self.children[pid]
        if not t.vps:
            return
        mapped = {vp for vp, _ in t.state_pages}
        for p in [self.root, t]:
            mapped |= {key[2] for key in p.stats if key[0] == ST.Vp and key[1] == pid}
        index = often(data, sorted(mapped), "VP with pages")
        if index is None:
            index = data.draw(st.sampled_from(sorted(t.vps)), label="VP")
        self.delete_vp(pid, index)
        if data.draw(st.booleans(), label="create it again"):
            self.create_vp(pid, index)

    def drop_pages(self, t: PartModel, vp: int | None = None) -> None:
        """VP *vp* of *t* went (DeleteVp), or with None the partition's VPs (FinalizePartition): their
        VP state pages go, and so do the statistics pages of them anyone mapped (of the partition
        too, when it is finalized); each page goes back to the pool that paid for it."""

        def gone(key: StatsKey) -> bool:
            if key[0] not in PARTITION_OBJECTS or key[1] != t.pid:
                return False
            return vp is None or (key[0] == ST.Vp and key[2] == vp)

        t.state_pages = {k: at for k, at in t.state_pages.items() if vp is not None and k[0] != vp}
        for p in [self.root, *self.children.values()]:
            p.stats = {key: at for key, at in p.stats.items() if not gone(key)}

    @rule(data=st.data(), family=st.sampled_from(sorted(TRAFFIC)), n=st.integers(1, 12))
    def host_traffic(self, data: st.DataObject, family: str, n: int) -> None:
        """*n* calls in a row of one family (interrupts, intercept results, pages) into ACTIVE children:
        the same checked calls as their rules, with the arguments those draw. ACTIVE children are
        there in a minority of steps, so single calls alone would rarely reach the deeper states; if
        there is none, one with several VPs (for destinations naming several) is brought up first."""
        if not self.in_state(ACTIVE):
            self.bring_up(data.draw(st.integers(2, 3), label="VPs"), data.draw(st.integers(0, 8)), 0)
        if not self.in_state(ACTIVE):
            return  # host RAM ran out
        for _ in range(n):
            name = data.draw(st.sampled_from(sorted(TRAFFIC[family])), label="call")
            pid = data.draw(st.sampled_from(self.in_state(ACTIVE)), label="ACTIVE child")
            args = {key: data.draw(strategy, label=key) for key, strategy in TRAFFIC[family][name].items()}
            getattr(self, name)(pid=pid, data=data, **args)

    # --- invariants ------------------------------------------------------------------------------
    @invariant()
    def interrupts_results_and_pages_agree_with_model(self) -> None:
        """Every partition's ExtInt latch, registered intercept results, the statistics pages it
        mapped and the VP state pages of its VPs are the model's (their pool pages are in ``in_use``,
        which the balance invariants check); so is the virtual APIC of every VP of an ACTIVE child."""
        self.acknowledge_extints()
        hv = self.sim.hv
        for p in [self.root, *(self.children[pid] for pid in self.order)]:
            real = hv.partitions[p.pid]
            assert real.ext_int == p.latch, p.pid
            assert (real.cpuid_results, real.msr_results) == (p.cpuid_results, p.msr_results), p.pid
            assert (real.stats_pages, real.vp_state_pages) == (p.stats, p.state_pages), p.pid
        apics = {(a.partition_id, a.index): a for a in self.sim.vp_actors()}
        for pid in self.in_state(ACTIVE):
            for index, vp in self.children[pid].vps.items():
                a = apics[(pid, index)]
                assert (a.apic_pending, a.nmis) == (vp.apic.pending, vp.apic.nmis), (pid, index)

    @invariant()
    def endpoints_and_synics_agree_with_model(self) -> None:
        """Ports, connections, buffers in use, and every live VP's SynIC: enable bits, masks, the
        16 SIM slots (type, size, origin, MessagePending), the SINT queues in order, the SIEF page."""
        hv = self.sim.hv
        assert checkers.message_buffers(hv) == []
        for p in self.live():
            real = hv.partitions[p.pid]
            assert sorted(real.ports) == sorted(p.ports)
            for port_id, port in p.ports.items():
                rp = real.ports[port_id]
                assert (rp.type, rp.target_sint, rp.target_vp, rp.base_flag, rp.flag_count) == (
                    port.type,
                    port.sint,
                    port.vp,
                    port.base,
                    port.count,
                )
                assert (rp.connection_partition_id, rp.connection, rp.next_vp) == (
                    port.allowed,
                    port.connection,
                    port.next_vp,
                )
                assert rp.buffers_in_use == self.buffers(port), (p.pid, port_id)
            assert sorted(real.connections) == sorted(p.conns)
            for conn_id, conn in p.conns.items():
                rc = real.connections[conn_id]
                assert (rc.port_partition_id, rc.port_id, rc.type) == (
                    conn.port.owner,
                    conn.port.id,
                    conn.port.type,
                )
            for index, vp in p.vps.items():
                self.check_synic(real.vps[index].regs, real.vps[index].synic, vp.synic)

    @staticmethod
    def check_synic(regs: dict[int, int], real: Synic, syn: SynicModel) -> None:
        enabled = (regs[R.Scontrol], regs[R.Sipp], regs[R.Sifp])
        assert tuple(bool(v & SYNIC_ENABLE) for v in enabled) == (syn.scontrol, syn.simp, syn.siefp)
        assert {s for s in range(HV_SYNIC_SINT_COUNT) if not regs[R.Sint0 + s] & SINT_MASKED} == syn.unmasked
        for sint in range(HV_SYNIC_SINT_COUNT):
            header = MESSAGE_HEADER.unpack(real.sim, sint * HV_MESSAGE_SIZE)
            slot = syn.slots.get(sint)
            if slot is None:
                assert header.message_type == 0, sint
            else:
                msg, pending = slot
                flags = HV_MESSAGE_FLAG_PENDING if pending else 0
                assert (header.message_type, header.payload_size, header.origination_id, header.flags) == (
                    msg.type,
                    msg.size,
                    msg.origin,
                    flags,
                ), sint
            queued = [int.from_bytes(m.data[:4], "little") for m in real.queues[sint]]
            assert queued == [m.type for m in syn.queues.get(sint, ())], sint
        sief = bytearray(HV_PAGE_SIZE)
        for sint, flags_set in syn.flags.items():
            for flag in flags_set:
                sief[sint * HV_EVENT_FLAGS_BYTES + flag // 8] |= 1 << (flag % 8)
        assert real.sief == sief

    @invariant()
    def gpa_maps_agree_with_model(self) -> None:
        """Every child's GPA map (host page and flags per GPA page) and page-table regions are the
        model's; the mapping checker passes; each host page is mapped as often as the model says; and
        a mapped host page cannot be deposited (OPERATION_DENIED, HYPERCALLS.md 6.2)."""
        hv = self.sim.hv
        assert checkers.gpa_mappings(hv) == []
        for pid in self.order:
            p, real = self.children[pid], hv.partitions[pid]
            assert {gpfn: (m.spa, m.flags & U32) for gpfn, m in real.gpa.items()} == p.gpa, pid
            assert set(real.gpa_regions) == p.tables, pid
        mapped = hv.memory.mapped
        assert [mapped[page] for page in self.held] == list(self.held.values())
        assert hv.memory.mapped_total == sum(self.held.values())
        if self.held:
            out = self.run(self.api.deposit(SELF, [min(self.held)]))
            assert (out.status, out.reps_completed) == (S.OPERATION_DENIED, 0)

    @invariant()
    def state_checkers_pass(self) -> None:
        assert checkers.check_state(self.sim.hv) == []
        assert self.sim.runtime.failures == []

    @invariant()
    def log_transitions_are_legal(self) -> None:
        """``state_transitions`` over the whole log (decoded incrementally: only new lines each step),
        and the log's last word on each partition agrees with the model."""
        self.decode_log()
        assert checkers.state_transitions(self.state_records) == []
        last = {r["partition"]: r["new"] for r in self.state_records}
        assert last == {pid: (None if p.state == DELETED else p.state) for pid, p in self.children.items()}

    def decode_log(self) -> None:
        """Decode the log lines written since the last call; keep the records the checkers read."""
        log = self.sim.log
        new = [_loads(line) for line in log.lines[self.log_pos :]]
        self.log_pos = len(log.lines)
        self.state_records += [r for r in new if r["event"] == "partition.state"]
        self.message_records += [
            r
            for r in new
            if r["event"].startswith("message.")
            or (r["event"] == "hypercall" and r["call"] in checkers.POSTING_CALLS)
        ]

    @invariant()
    def messages_are_accounted_for(self) -> None:
        """``message_accounting`` over the records it reads, kept incrementally (the full log is
        decoded once, at teardown)."""
        self.decode_log()
        assert checkers.message_accounting(self.message_records, self.sim.hv) == []

    @invariant()
    def host_memory_balances(self) -> None:
        """Host-owned pages + pages in all pools == host RAM; the host allocator holds exactly the
        pages that are in no pool, but for the guest memory it mapped (the test keeps no other page
        outstanding between steps)."""
        hv = self.sim.hv
        mem = hv.memory
        in_pools = sum(p.pool.total for p in hv.partitions.values())
        assert mem.owner.count(HOST) + in_pools == mem.pages == HOST_PAGES
        modelled = len(self.root.pages) + sum(len(p.pages) for p in self.children.values())
        assert in_pools == modelled
        assert mem.host_free == HOST_PAGES - modelled - len(self.held)

    @invariant()
    def model_agrees_with_get_memory_balance(self) -> None:
        parts = [self.root, *(self.children[pid] for pid in self.order)]

        def balances() -> Any:  # one host process for all the calls
            out = []
            for p in parts:
                out.append((yield from self.api.balance(SELF if p.is_root else p.pid)))
            return out

        for p, (status, bal) in zip(parts, self.run(balances()), strict=True):
            assert status is S.SUCCESS
            assert (bal.pages_available, bal.pages_in_use) == (self.available(p), self.in_use(p)), p.pid
            assert bal.pages_available + bal.pages_in_use == p.deposited - p.withdrawn

    @invariant()
    def model_agrees_with_hypervisor_records(self) -> None:
        hv = self.sim.hv
        assert hv.root.children == self.order
        assert set(hv.partitions) == {self.root.pid, *self.order}
        for p in [self.root, *(self.children[pid] for pid in self.order)]:
            real = hv.partitions[p.pid]
            assert real.state.name == p.state
            pooled = set(real.pool.available).union(*real.pool.charges.values())
            assert pooled == p.pages
            assert sorted(real.vps) == sorted(p.vps)
            for index, vp in p.vps.items():
                rv = real.vps[index]
                assert rv.explicit_suspend == vp.regs[R.ExplicitSuspend]
                assert rv.regs[R.Rip] == vp.regs[R.Rip]
                assert rv.regs[R.Rflags] == vp.regs[R.Rflags]
                runnable = vp.started and vp.regs[R.ExplicitSuspend] == 0 and p.state == ACTIVE
                assert rv.runnable == runnable


def advance_to_next_event(sim: Simulation) -> None:
    """Run the clock up to (not through) the next instant at which something is scheduled."""
    with sim.runtime.active():
        while sim.env.peek() <= sim.now_ns:  # finish the current instant first
            sim.env.step()
    nxt = sim.env.peek()
    if nxt != float("inf"):
        sim.run(int(nxt))


def _loads(line: str) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads(line)
    return record


_FAST = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # Shrink the first failure only: replaying a 50-step run is slow, several bugs would take minutes.
    report_multiple_bugs=False,
)
_SLOW = settings(
    max_examples=500,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestHypervisorStateMachine = HypervisorMachine.TestCase
TestHypervisorStateMachine.settings = _FAST


@pytest.mark.slow
def test_hypervisor_state_machine_long(request: pytest.FixtureRequest) -> None:
    """The same machine, longer runs and many more of them (select with ``-m slow``)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow sweep: select with -m slow")
    run_state_machine_as_test(HypervisorMachine, settings=_SLOW)
