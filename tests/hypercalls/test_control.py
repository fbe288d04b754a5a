"""HYPERCALLS.md 7.1: the control word, the parameter block and rep semantics (cases 1-16)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvsim.actors.config import HvConfig
from hvsim.actors.core import CALL_TABLE
from hvsim.actors.hvdef import (
    CREATE_PARTITION_INPUT,
    HV_COMPATIBILITY_21_H2,
    HV_PAGE_SIZE,
    HV_PARTITION_ID_SELF,
    MEMORY_POOL_INPUT,
    PARTITION_ID_INPUT,
    PARTITION_PROPERTY_EX_INPUT,
    Control,
    CreatePartitionInput,
    HvStatus,
    HypercallCode,
    MemoryPoolInput,
    PartitionIdInput,
    PartitionPropertyExInput,
    PropertyCode,
    control,
)
from hvsim.actors.hypercall import HypercallResult
from hvsim.scenarios import Simulation

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus

CREATE_INPUT = CREATE_PARTITION_INPUT.pack(CreatePartitionInput(0, 0, HV_COMPATIBILITY_21_H2, 0, 0, 0, 0, 0))
BALANCE_SELF = MEMORY_POOL_INPUT.pack(MemoryPoolInput(HV_PARTITION_ID_SELF, 0))
DEPOSIT_SELF = PARTITION_ID_INPUT.pack(PartitionIdInput(HV_PARTITION_ID_SELF))


def test_7_1_1_unassigned_call_code_is_invalid_hypercall_code(world: World) -> None:
    res = world.call(0x7FFF)
    assert res.status is S.INVALID_HYPERCALL_CODE
    assert res.reps_completed == 0


def test_7_1_2_simple_call_with_rep_count_is_invalid_hypercall_input(world: World) -> None:
    res = world.call(control(C.CreatePartition, rep_count=1), CREATE_INPUT)
    assert res.status is S.INVALID_HYPERCALL_INPUT
    # Nothing was created.
    assert world.next_child(HV_PARTITION_ID_SELF, 0) == (S.SUCCESS, 0)


def test_7_1_3_simple_call_with_rep_start_is_invalid_hypercall_input(world: World) -> None:
    res = world.call(Control(C.CreatePartition, rep_count=0, rep_start=1).encode(), CREATE_INPUT)
    assert res.status is S.INVALID_HYPERCALL_INPUT
    assert world.next_child(HV_PARTITION_ID_SELF, 0) == (S.SUCCESS, 0)


def test_7_1_4_rep_call_with_rep_count_zero_is_invalid_hypercall_input(world: World) -> None:
    res = world.call(control(C.DepositMemory, rep_count=0), DEPOSIT_SELF)
    assert res.status is S.INVALID_HYPERCALL_INPUT
    assert res.reps_completed == 0


def test_7_1_5_rep_start_equal_to_rep_count_is_invalid_hypercall_input(world: World) -> None:
    pages = world.host_pages(3)
    before = world.balance(HV_PARTITION_ID_SELF)
    res = world.call(control(C.DepositMemory, rep_count=3, rep_start=3), DEPOSIT_SELF + world.u64s(pages))
    assert res.status is S.INVALID_HYPERCALL_INPUT
    assert res.reps_completed == 0
    assert world.balance(HV_PARTITION_ID_SELF) == before


def test_7_1_6_reserved_control_bit_27_is_invalid_hypercall_input(world: World) -> None:
    ctl = Control(C.GetMemoryBalance, reserved=1 << 27).encode()
    assert world.call(ctl, BALANCE_SELF).status is S.INVALID_HYPERCALL_INPUT


@pytest.mark.parametrize("bit", [27, 28, 29, 30, 44, 45, 46, 47, 60, 61, 62, 63])
def test_7_1_6_7_every_reserved_control_bit_is_invalid_hypercall_input(world: World, bit: int) -> None:
    ctl = control(C.GetMemoryBalance) | (1 << bit)
    assert world.call(ctl, BALANCE_SELF).status is S.INVALID_HYPERCALL_INPUT


@pytest.mark.parametrize("bit", [44, 60])
def test_7_1_7_reserved_control_bit_on_a_rep_call_is_invalid_hypercall_input(world: World, bit: int) -> None:
    pages = world.host_pages(2)
    before = world.balance(HV_PARTITION_ID_SELF)
    ctl = control(C.DepositMemory, rep_count=2) | (1 << bit)
    res = world.call(ctl, DEPOSIT_SELF + world.u64s(pages))
    assert (res.status, res.reps_completed) == (S.INVALID_HYPERCALL_INPUT, 0)
    assert world.balance(HV_PARTITION_ID_SELF) == before


def test_7_1_8_variable_header_on_a_non_variable_call_is_invalid_hypercall_input(
    world: World, created: int
) -> None:
    ctl = control(C.InitializePartition, varhdr_qwords=1)
    world.fund(created, world.page_costs.initialize_partition)
    res = world.call(ctl, PARTITION_ID_INPUT.pack(PartitionIdInput(created)) + bytes(8))
    assert res.status is S.INVALID_HYPERCALL_INPUT
    # The partition was not initialized: a proper call still finds it CREATED.
    assert world.by_id(C.InitializePartition, created) is S.SUCCESS


def test_7_1_9_variable_header_on_set_partition_property_ex_passes_the_control_check(
    world: World, created: int
) -> None:
    privileges = int(world.sim.config.child_default_privileges)
    header = PARTITION_PROPERTY_EX_INPUT.pack(
        PartitionPropertyExInput(created, PropertyCode.PrivilegeFlags, 0, 0)
    )
    res = world.call(
        control(C.SetPartitionPropertyEx, varhdr_qwords=1), header + privileges.to_bytes(8, "little")
    )
    assert res.status is S.SUCCESS
    assert world.get_property(created, PropertyCode.PrivilegeFlags) == (S.SUCCESS, privileges)


def test_7_1_10_misaligned_input_gpa_is_invalid_alignment(world: World) -> None:
    res = world.call(control(C.GetMemoryBalance), BALANCE_SELF, input_gpa=0x1004)
    assert res.status is S.INVALID_ALIGNMENT


def test_7_1_10_aligned_input_gpa_is_accepted(world: World) -> None:
    res = world.call(control(C.GetMemoryBalance), BALANCE_SELF, input_gpa=0x1008, output_gpa=0x2000)
    assert res.status is S.SUCCESS


def test_7_1_10_misaligned_output_gpa_is_invalid_alignment(world: World) -> None:
    res = world.call(control(C.GetMemoryBalance), BALANCE_SELF, input_gpa=0x1000, output_gpa=0x2004)
    assert res.status is S.INVALID_ALIGNMENT


def test_1_4_input_gpa_beyond_the_callers_gpa_space_is_invalid_alignment(world: World) -> None:
    res = world.call(
        control(C.GetMemoryBalance), BALANCE_SELF, input_gpa=world.sim.config.host_pages * HV_PAGE_SIZE
    )
    assert res.status is S.INVALID_ALIGNMENT


def test_7_1_11_deposit_list_crossing_a_page_is_invalid_alignment(world: World) -> None:
    pages = world.host_pages(511)
    before = world.balance(HV_PARTITION_ID_SELF)
    # 8-byte header + 511 * 8 bytes = one full page: starting at offset 8 it crosses into the next.
    res = world.call(
        control(C.DepositMemory, rep_count=511), DEPOSIT_SELF + world.u64s(pages), input_gpa=0x2008
    )
    assert (res.status, res.reps_completed) == (S.INVALID_ALIGNMENT, 0)
    assert world.balance(HV_PARTITION_ID_SELF) == before


def test_7_1_11_full_page_deposit_list_at_a_page_boundary_is_accepted(make_world: MakeWorld) -> None:
    world = make_world(rep_budget_ns=None)
    pages = world.host_pages(511)
    res = world.call(
        control(C.DepositMemory, rep_count=511), DEPOSIT_SELF + world.u64s(pages), input_gpa=0x2000
    )
    assert (res.status, res.reps_completed) == (S.SUCCESS, 511)


# --- fast (register-based) calls, 1.3 / 1.5 step 4 --------------------------------------------------
def test_1_3_fast_initialize_partition_is_accepted(world: World, created: int) -> None:
    world.fund(created, world.page_costs.initialize_partition)
    res = world.call(
        control(C.InitializePartition, fast=True), PARTITION_ID_INPUT.pack(PartitionIdInput(created))
    )
    assert res.status is S.SUCCESS


def test_1_5_fast_call_whose_parameters_do_not_fit_the_registers_is_invalid_hypercall_input(
    world: World,
) -> None:
    pages = world.host_pages(20)  # 8 + 20 * 8 bytes > 112
    before = world.balance(HV_PARTITION_ID_SELF)
    res = world.call(control(C.DepositMemory, fast=True, rep_count=20), DEPOSIT_SELF + world.u64s(pages))
    assert (res.status, res.reps_completed) == (S.INVALID_HYPERCALL_INPUT, 0)
    assert world.balance(HV_PARTITION_ID_SELF) == before


def test_7_1_12_nested_bit_alone_is_not_invalid_hypercall_input(world: World) -> None:
    ctl = Control(C.GetMemoryBalance, nested=True).encode()
    assert ctl & (1 << 31)
    res = world.call(ctl, BALANCE_SELF)
    assert res.status is S.SUCCESS


def test_7_1_13_reps_completed_is_absolute(world: World) -> None:
    pages = world.host_pages(10)
    before = world.balance(HV_PARTITION_ID_SELF)
    res = world.deposit(HV_PARTITION_ID_SELF, pages, rep_start=5)
    assert (res.status, res.reps_completed) == (S.SUCCESS, 10)
    # Only elements 5..9 were processed.
    after = world.balance(HV_PARTITION_ID_SELF)
    assert after.pages_available == before.pages_available + 5


def test_7_1_14_rep_failure_reports_the_failing_absolute_index(world: World) -> None:
    pages = world.host_pages(10)
    pages[7] = world.sim.config.host_pages + 100  # not a page of the caller's GPA space
    before = world.balance(HV_PARTITION_ID_SELF)
    res = world.deposit(HV_PARTITION_ID_SELF, pages, rep_start=5)
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 7)
    # Elements 5 and 6 stay deposited; nothing else was.
    after = world.balance(HV_PARTITION_ID_SELF)
    assert after.pages_available == before.pages_available + 2
    again = world.deposit(HV_PARTITION_ID_SELF, pages[5:7])
    assert (again.status, again.reps_completed) == (S.OPERATION_DENIED, 0)


def test_1_5_header_level_failure_of_a_rep_call_reports_rep_start(world: World, child: int) -> None:
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    pages = world.host_pages(4)
    res = world.deposit(child, pages, rep_start=2)
    assert (res.status, res.reps_completed) == (S.INVALID_PARTITION_STATE, 2)


# --- 15: the result value ----------------------------------------------------------------------
_IMPLEMENTED = sorted(int(c) for c in CALL_TABLE)


@settings(
    max_examples=150,
    deadline=None,
    # check_result is a pure function: sharing it across examples is safe.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ctl=st.builds(
        Control,
        code=st.one_of(st.sampled_from(_IMPLEMENTED), st.integers(0, 0xFFFF)),
        fast=st.booleans(),
        varhdr_qwords=st.sampled_from([0, 0, 0, 1, 2]),
        rep_count=st.integers(0, 12),
        rep_start=st.sampled_from([0, 0, 0, 1, 5]),
        nested=st.booleans(),
        reserved=st.sampled_from([0, 0, 0, 0, 1 << 27, 1 << 44, 1 << 63]),
    ),
    data=st.binary(max_size=128),
    aligned=st.booleans(),
)
def test_7_1_15_result_value_reserved_bits_are_zero_for_any_input(
    check_result: Callable[[HypercallResult], HypercallResult],
    ctl: Control,
    data: bytes,
    aligned: bool,
) -> None:
    """Any control word and input block: the model answers (never raises) with a clean result."""
    sim = Simulation(seed=0, config=HvConfig(host_pages=64))
    try:
        sim.alloc_host_pages(8)  # a few host-owned pages exist to name
        gpa = 0x1000 if aligned else 0x1004
        res = sim.hypercall(ctl.encode(), data, input_gpa=gpa, output_gpa=0x2000)
        check_result(res)
        assert isinstance(res.status, HvStatus)
    finally:
        sim.close()


@pytest.mark.parametrize("rep_count", [1, 7, 300])
def test_7_1_15_result_value_of_a_partial_rep_call(make_world: MakeWorld, rep_count: int) -> None:
    world = make_world(rep_budget_ns=5_000)  # a few reps per invocation
    pages = world.host_pages(rep_count)
    res = world.deposit(HV_PARTITION_ID_SELF, pages)
    assert res.status is S.SUCCESS
    assert 1 <= res.reps_completed <= rep_count  # World.call checked the encoding


# --- 16: continuation --------------------------------------------------------------------------
def test_7_1_16_time_sliced_rep_call_returns_success_with_fewer_reps(world: World) -> None:
    pages = world.host_pages(511)
    before = world.balance(HV_PARTITION_ID_SELF)
    first = world.deposit(HV_PARTITION_ID_SELF, pages)
    assert first.status is S.SUCCESS
    assert 0 < first.reps_completed < 511
    rest = world.deposit(HV_PARTITION_ID_SELF, pages, rep_start=first.reps_completed)
    assert (rest.status, rest.reps_completed) == (S.SUCCESS, 511)
    assert world.balance(HV_PARTITION_ID_SELF).pages_available == before.pages_available + 511


@pytest.mark.parametrize("budget_ns", [None, 1, 3_000, 50_000])
def test_7_1_16_reissuing_from_reps_completed_always_progresses_and_finishes(
    make_world: MakeWorld, budget_ns: int | None
) -> None:
    world = make_world(rep_budget_ns=budget_ns)
    pages = world.host_pages(40)
    before = world.balance(HV_PARTITION_ID_SELF)
    done = 0
    invocations = 0
    while done < len(pages):
        res = world.deposit(HV_PARTITION_ID_SELF, pages, rep_start=done)
        assert res.status is S.SUCCESS
        assert res.reps_completed > done  # at least one rep per invocation (1.6)
        done = res.reps_completed
        invocations += 1
    assert done == 40
    if budget_ns is None:
        assert invocations == 1
    if budget_ns == 1:
        assert invocations == 40
    assert world.balance(HV_PARTITION_ID_SELF).pages_available == before.pages_available + 40
