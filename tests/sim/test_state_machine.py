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
"""

from __future__ import annotations

import struct
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
    HV_PARTITION_ID_SELF,
    HV_VP_INDEX_SELF,
    MEMORY_POOL_INPUT,
    VP_REGISTERS_INPUT,
    HvStatus,
    HypercallCode,
    MemoryPoolInput,
    PartitionPrivilege,
    PropertyCode,
    RegisterName,
    VpRegistersInput,
    control,
)
from hvsim.actors.memory import HOST
from hvsim.actors.workload import Compute, Hypercall, Program
from hvsim.scenarios import HostApi, Simulation, checkers

C = HypercallCode
S = HvStatus
R = RegisterName
PC = PropertyCode
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF
U64 = (1 << 64) - 1
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
@dataclass
class VpModel:
    index: int
    started: bool
    regs: dict[int, int]

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


#: What the privilege rule has a child try from its own VP.
CHILD_OPS = (
    *("create_partition", "initialize", "finalize", "delete", "create_vp", "delete_vp"),
    *("deposit", "withdraw", "balance", "next_child", "get_partition_id"),
    *("set_property", "get_property", "get_registers", "set_registers"),
)


class HypervisorMachine(RuleBasedStateMachine):
    """The root drives partitions through their lifecycle; children try what they may not."""

    partitions = Bundle("partitions")

    # --- set-up ----------------------------------------------------------------------------------
    @initialize(
        target=partitions,
        seed=st.integers(0, 2**32),
        budget=st.sampled_from([None, 50_000, 3_000]),
        funding=st.integers(0, 40),
    )
    def boot(self, seed: int, budget: int | None, funding: int) -> Any:
        """A fresh world; the root's own pool gets *funding* pages (0: CreatePartition must first
        answer INSUFFICIENT_MEMORY, and ``deposit_self`` is the host's reaction)."""
        self.config = HvConfig(host_pages=HOST_PAGES, page_costs=COSTS, rep_budget_ns=budget)
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
        self.deposit_self(funding, by_id=False)
        return multiple(self.sim.root_id, BOGUS_PID)

    def teardown(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is not None:
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
        if p.is_root:
            return COSTS.create_partition * len(self.order) + p.vtlb
        if p.state != ACTIVE:
            return 0  # nothing charged before initialize; finalize frees everything
        return COSTS.initialize_partition + COSTS.create_vp * len(p.vps) + p.vtlb

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
        """A page already in a pool, or beyond host RAM, stops the deposit there (OPERATION_DENIED)."""
        pooled = self.all_pool_pages()
        bad_pages = st.integers(HOST_PAGES, U64)
        if pooled:
            bad_pages = st.one_of(st.sampled_from(pooled), bad_pages)
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

    @rule(target=partitions, vps=st.integers(1, 3), spare=st.integers(0, 20))
    def bring_up(self, vps: int, spare: int) -> Any:
        """A new running VM, as a host makes one: CreatePartition (on INSUFFICIENT_MEMORY deposit into
        SELF and retry, HYPERCALLS.md 6.4), then ``activate``. Hypothesis runs each example with a
        random subset of the rules, so the whole sequence is also one rule."""
        if self.available(self.root) < COSTS.create_partition:
            self.create_partition()  # INSUFFICIENT_MEMORY
            self.deposit_self(COSTS.create_partition - self.available(self.root), by_id=False)
        pid = self.create_partition()
        if pid not in self.children:
            return multiple()  # host RAM ran out
        self.activate_partition(pid, vps, spare)
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
        elif op == "get_property":
            assert self.run(api.get_property(target, PC.CpuWeight))[0] is refused(can_create)
        else:
            self.child_registers(api, caller, vp_index, target, op, data, refused(can_create))

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

    # --- invariants ------------------------------------------------------------------------------
    @invariant()
    def state_checkers_pass(self) -> None:
        assert checkers.check_state(self.sim.hv) == []
        assert self.sim.runtime.failures == []

    @invariant()
    def log_transitions_are_legal(self) -> None:
        """``state_transitions`` over the whole log (decoded incrementally: only new lines each step),
        and the log's last word on each partition agrees with the model."""
        log = self.sim.log
        new = log.lines[self.log_pos :]
        self.log_pos = len(log.lines)
        self.state_records += [r for r in map(_loads, new) if r["event"] == "partition.state"]
        assert checkers.state_transitions(self.state_records) == []
        last = {r["partition"]: r["new"] for r in self.state_records}
        assert last == {pid: (None if p.state == DELETED else p.state) for pid, p in self.children.items()}

    @invariant()
    def host_memory_balances(self) -> None:
        """Host-owned pages + pages in all pools == host RAM; the host allocator holds exactly the
        pages that are in no pool (the test keeps none outstanding between steps)."""
        hv = self.sim.hv
        mem = hv.memory
        in_pools = sum(p.pool.total for p in hv.partitions.values())
        assert mem.owner.count(HOST) + in_pools == mem.pages == HOST_PAGES
        modelled = len(self.root.pages) + sum(len(p.pages) for p in self.children.values())
        assert in_pools == modelled
        assert mem.host_free == HOST_PAGES - modelled

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
