"""Fixtures for the caller-side conformance tests of HYPERCALLS.md section 7 (cases 1-83).

Every test drives the model only through the hypercall ABI (``Simulation.hypercall`` with inputs
built from ``hvdef`` layouts, or ``HostApi`` for set-up) and judges it by statuses, reps completed,
output blocks and the side effects later hypercalls show. Names used in the tests follow the
digest: P = the root (parent), C = its ACTIVE child, G = an unrelated partition (another child of
the root, so not C's parent).

``World.call`` checks the result-value encoding of case 15 on every result it returns.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

from hvsim.actors.config import HvConfig
from hvsim.actors.hvdef import (
    CREATE_PARTITION_INPUT,
    CREATE_VP_INPUT,
    DELETE_VP_INPUT,
    GET_NEXT_CHILD_PARTITION_INPUT,
    GET_PARTITION_PROPERTY_INPUT,
    HV_COMPATIBILITY_21_H2,
    HV_PARTITION_ID_SELF,
    MEMORY_BALANCE_OUTPUT,
    MEMORY_POOL_INPUT,
    PARTITION_ID_INPUT,
    PARTITION_ID_OUTPUT,
    PROPERTY_VALUE_OUTPUT,
    REGISTER_ASSOC,
    SET_PARTITION_PROPERTY_INPUT,
    VP_REGISTERS_INPUT,
    CreatePartitionInput,
    CreateVpInput,
    DeleteVpInput,
    GetNextChildPartitionInput,
    GetPartitionPropertyInput,
    HvStatus,
    HypercallCode,
    MemoryPoolInput,
    PartitionIdInput,
    PartitionPrivilege,
    PropertyCode,
    RegisterAssoc,
    SetPartitionPropertyInput,
    VpRegistersInput,
    control,
)
from hvsim.actors.hypercall import HypercallResult
from hvsim.scenarios import Balance, HostApi, Simulation

C = HypercallCode
S = HvStatus
T = TypeVar("T")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

#: Result value bits that must be zero (case 15): 31:16 and 63:44.
RESULT_RESERVED_BITS = 0xFFFF_0000 | (0xF_FFFF << 44)

#: A small host (32 MiB) keeps building a world well under a millisecond; nothing here needs more.
HOST_PAGES = 8192

#: Pages the root deposits into its own pool at the start of a funded world.
ROOT_FUNDING = 64

#: The privileges of a new child, for tests that grant one more on top.
DEFAULT_CHILD_PRIVILEGES = HvConfig().child_default_privileges


def check_result_value(res: HypercallResult) -> HypercallResult:
    """Case 15: the result value is exactly status | reps << 32; reserved bits 31:16, 63:44 zero."""
    assert res.value & RESULT_RESERVED_BITS == 0, hex(res.value)
    assert res.value & 0xFFFF == res.status
    assert (res.value >> 32) & 0xFFF == res.reps_completed
    return res


class World:
    """A simulation seen from the caller's side, with the set-up steps the tests share."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.root = sim.root_id
        self.api = HostApi(sim)
        self.page_costs = sim.config.page_costs

    @staticmethod
    def u64s(pages: Iterable[int]) -> bytes:
        """Rep elements of HV_GPA_PAGE_NUMBER."""
        return b"".join(_U64.pack(p) for p in pages)

    @staticmethod
    def u32s(values: Iterable[int]) -> bytes:
        """Rep elements of HV_REGISTER_NAME (packed, 4 bytes each)."""
        return b"".join(_U32.pack(v) for v in values)

    # --- raw hypercalls ------------------------------------------------------------------------
    def call(
        self,
        ctl: int,
        data: bytes = b"",
        *,
        caller: int | None = None,
        vp: int = 0,
        input_gpa: int | None = None,
        output_gpa: int | None = None,
    ) -> HypercallResult:
        res = self.sim.hypercall(ctl, data, caller=caller, vp=vp, input_gpa=input_gpa, output_gpa=output_gpa)
        return check_result_value(res)

    def simple(self, code: int, data: bytes = b"", *, caller: int | None = None, vp: int = 0) -> HvStatus:
        return self.call(control(code), data, caller=caller, vp=vp).status

    def run(self, gen: Generator[Any, Any, T]) -> T:
        return self.sim.run_process(gen)

    def as_(self, partition_id: int, vp: int = 0) -> HostApi:
        return HostApi(self.sim, caller=partition_id, vp=vp)

    # --- typed single calls (status only, or status + decoded output) ---------------------------
    def create_partition(
        self, *, caller: int | None = None, flags: int = 0, proximity: int = 0
    ) -> tuple[HvStatus, int]:
        data = CREATE_PARTITION_INPUT.pack(
            CreatePartitionInput(flags, proximity, HV_COMPATIBILITY_21_H2, 0, 0, 0, 0, 0)
        )
        res = self.call(control(C.CreatePartition), data, caller=caller)
        return res.status, PARTITION_ID_OUTPUT.unpack(res.output).partition_id

    def by_id(self, code: int, partition_id: int, *, caller: int | None = None) -> HvStatus:
        """Initialize/Finalize/DeletePartition."""
        return self.simple(code, PARTITION_ID_INPUT.pack(PartitionIdInput(partition_id)), caller=caller)

    def deposit(
        self, partition_id: int, pages: Sequence[int], *, caller: int | None = None, rep_start: int = 0
    ) -> HypercallResult:
        """One DepositMemory invocation (no continuation)."""
        ctl = control(C.DepositMemory, rep_count=len(pages), rep_start=rep_start)
        return self.call(
            ctl, PARTITION_ID_INPUT.pack(PartitionIdInput(partition_id)) + self.u64s(pages), caller=caller
        )

    def withdraw(
        self, partition_id: int, count: int, *, proximity: int = 0, caller: int | None = None
    ) -> HypercallResult:
        """One WithdrawMemory invocation (no continuation)."""
        header = MEMORY_POOL_INPUT.pack(MemoryPoolInput(partition_id, proximity))
        return self.call(control(C.WithdrawMemory, rep_count=count), header, caller=caller)

    def balance_call(
        self, partition_id: int, *, caller: int | None = None, proximity: int = 0
    ) -> tuple[HvStatus, Balance]:
        data = MEMORY_POOL_INPUT.pack(MemoryPoolInput(partition_id, proximity))
        res = self.call(control(C.GetMemoryBalance), data, caller=caller)
        return res.status, Balance(*MEMORY_BALANCE_OUTPUT.unpack(res.output))

    def balance(self, partition_id: int) -> Balance:
        """The root's view of a pool (must succeed)."""
        status, bal = self.balance_call(partition_id)
        assert status is S.SUCCESS
        return bal

    def set_property(
        self, partition_id: int, code: int, value: int, *, caller: int | None = None
    ) -> HvStatus:
        data = SET_PARTITION_PROPERTY_INPUT.pack(SetPartitionPropertyInput(partition_id, code, 0, value))
        return self.simple(C.SetPartitionProperty, data, caller=caller)

    def get_property(
        self, partition_id: int, code: int, *, caller: int | None = None
    ) -> tuple[HvStatus, int]:
        data = GET_PARTITION_PROPERTY_INPUT.pack(GetPartitionPropertyInput(partition_id, code, 0))
        res = self.call(control(C.GetPartitionProperty), data, caller=caller)
        return res.status, PROPERTY_VALUE_OUTPUT.unpack(res.output).property_value

    def next_child(self, parent: int, previous: int, *, caller: int | None = None) -> tuple[HvStatus, int]:
        data = GET_NEXT_CHILD_PARTITION_INPUT.pack(GetNextChildPartitionInput(parent, previous))
        res = self.call(control(C.GetNextChildPartition), data, caller=caller)
        return res.status, PARTITION_ID_OUTPUT.unpack(res.output).partition_id

    def create_vp(
        self, partition_id: int, vp_index: int, *, flags: int = 0, caller: int | None = None
    ) -> HvStatus:
        data = CREATE_VP_INPUT.pack(CreateVpInput(partition_id, vp_index, bytes(3), 0, 0, 0, flags))
        return self.simple(C.CreateVp, data, caller=caller)

    def delete_vp(self, partition_id: int, vp_index: int, *, caller: int | None = None) -> HvStatus:
        return self.simple(
            C.DeleteVp, DELETE_VP_INPUT.pack(DeleteVpInput(partition_id, vp_index, 0)), caller=caller
        )

    def get_registers(
        self,
        partition_id: int,
        vp_index: int,
        names: Sequence[int],
        *,
        caller: int | None = None,
        vp: int = 0,
        reserved: bytes = bytes(3),
    ) -> HypercallResult:
        """One GetVpRegisters invocation; values are 16-byte output elements."""
        header = VP_REGISTERS_INPUT.pack(VpRegistersInput(partition_id, vp_index, 0, reserved))
        ctl = control(C.GetVpRegisters, rep_count=len(names))
        return self.call(ctl, header + self.u32s(names), caller=caller, vp=vp)

    def set_registers(
        self,
        partition_id: int,
        vp_index: int,
        values: Sequence[tuple[int, int]],
        *,
        caller: int | None = None,
    ) -> HypercallResult:
        """One SetVpRegisters invocation over (name, value) pairs."""
        header = VP_REGISTERS_INPUT.pack(VpRegistersInput(partition_id, vp_index, 0, bytes(3)))
        elements = b"".join(
            REGISTER_ASSOC.pack(RegisterAssoc(name, bytes(12), v & (2**64 - 1), v >> 64))
            for name, v in values
        )
        return self.call(control(C.SetVpRegisters, rep_count=len(values)), header + elements, caller=caller)

    def register(self, partition_id: int, vp_index: int, name: int, *, caller: int | None = None) -> int:
        res = self.get_registers(partition_id, vp_index, [name], caller=caller)
        assert res.status is S.SUCCESS, res.status
        return int.from_bytes(res.output[:16], "little")

    # --- set-up steps (asserting success) -------------------------------------------------------
    def host_pages(self, n: int) -> list[int]:
        return self.sim.alloc_host_pages(n)

    def fund(self, partition_id: int, n: int) -> list[int]:
        """Deposit *n* fresh host pages into *partition_id* (the root's own pool: SELF)."""
        pages = self.host_pages(n)
        out = self.run(self.api.deposit(partition_id, pages))
        assert (out.status, out.reps_completed) == (S.SUCCESS, n)
        return pages

    def new_child(self, *, privileges: int | None = None, parent: int | None = None) -> int:
        """A CREATED child of *parent* (default: the root), optionally with PrivilegeFlags set."""
        status, pid = self.create_partition(caller=parent)
        assert status is S.SUCCESS, status
        if privileges is not None:
            assert self.set_property(pid, PropertyCode.PrivilegeFlags, privileges, caller=parent) is S.SUCCESS
        return pid

    def activate(
        self, pid: int, *, vps: Iterable[int] = (0,), spare: int = 0, parent: int | None = None
    ) -> int:
        """Deposit what InitializePartition and the VPs cost (plus *spare*), initialize, create VPs."""
        vps = list(vps)
        cost = self.page_costs.initialize_partition + self.page_costs.create_vp * len(vps) + spare
        self.fund(pid, cost)
        assert self.by_id(C.InitializePartition, pid, caller=parent) is S.SUCCESS
        for index in vps:
            assert self.create_vp(pid, index, caller=parent) is S.SUCCESS
        return pid

    def active_child(
        self,
        *,
        privileges: int | None = None,
        vps: Iterable[int] = (0,),
        spare: int = 0,
        parent: int | None = None,
    ) -> int:
        return self.activate(
            self.new_child(privileges=privileges, parent=parent), vps=vps, spare=spare, parent=parent
        )

    def drain(self, partition_id: int) -> list[int]:
        """Withdraw every withdrawable page (continuing past time slices); the pages returned."""
        got: list[int] = []
        while True:
            status, pages = self.run(self.api.withdraw(partition_id))
            got += pages
            if status is S.NO_RESOURCES or not pages:
                return got
            assert status is S.SUCCESS, status


#: The ``make_world`` fixture's type.
MakeWorld = Callable[..., World]


@pytest.fixture
def check_result() -> Callable[[HypercallResult], HypercallResult]:
    """The case-15 result-value check, for tests that call ``Simulation.hypercall`` directly."""
    return check_result_value


@pytest.fixture
def make_world() -> Iterator[MakeWorld]:
    """``make_world(fund_root=True, **HvConfig fields)``: a fresh world on a small host."""
    sims: list[Simulation] = []

    def make(*, fund_root: bool = True, **config: Any) -> World:
        config.setdefault("host_pages", HOST_PAGES)
        sim = Simulation(seed=0, config=HvConfig(**config))
        sims.append(sim)
        w = World(sim)
        if fund_root:
            w.fund(HV_PARTITION_ID_SELF, ROOT_FUNDING)
        return w

    yield make
    for sim in sims:
        sim.close()


@pytest.fixture
def bare(make_world: MakeWorld) -> World:
    """The world as booted: the root alone, its pool empty."""
    return make_world(fund_root=False)


@pytest.fixture
def world(make_world: MakeWorld) -> World:
    """Root pool funded; no children yet."""
    return make_world()


@pytest.fixture
def child(world: World) -> int:
    """C: an ACTIVE child of the root with default privileges, VPs 0 and 1, and 8 spare pool pages."""
    return world.active_child(vps=(0, 1), spare=8)


@pytest.fixture
def created(world: World) -> int:
    """A child of the root still in CREATED (empty pool)."""
    return world.new_child()


@pytest.fixture
def unrelated(world: World) -> int:
    """G: another ACTIVE child of the root with default privileges (no hypercall privileges)."""
    return world.active_child()


@pytest.fixture(
    params=[
        DEFAULT_CHILD_PRIVILEGES,
        int(
            DEFAULT_CHILD_PRIVILEGES
            | PartitionPrivilege.CreatePartitions
            | PartitionPrivilege.AccessMemoryPool
            | PartitionPrivilege.AccessVpRegisters
            | PartitionPrivilege.StartVirtualProcessor
        ),
    ],
    ids=["G-default-privileges", "G-host-privileges"],
)
def intruder(world: World, request: pytest.FixtureRequest) -> int:
    """G, once without and once with every privilege the call needs: C is never G's child, so a
    parent-only call from G is ACCESS_DENIED either way."""
    return world.active_child(privileges=request.param)
