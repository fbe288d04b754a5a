"""Statistics and VP state pages from the caller's side: MapStatsPage2, UnmapStatsPage, MapVpStatePage
and UnmapVpStatePage (HYPERCALLS.md 4.29-4.32, 5.10-5.11, conformance 7.8 126-131).

A statistics page costs the *caller's* pool one page; a VP state page costs the *target's* pool one
page. Their contents are live: ``hv.read_stats(caller, key)`` and ``hv.read_vp_state(pid, vp, type)``
show what the mapped page holds at the moment it is read, so the tests run the clock, let guests
work, and read again. Names: P = the root, C = its ACTIVE child (VPs 0 and 1), G = an unrelated
partition (another child of the root).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from hvsim.actors.hvdef import (
    FLUSH_ALL_PROCESSORS,
    FLUSH_ALL_VIRTUAL_ADDRESS_SPACES,
    FLUSH_VIRTUAL_ADDRESS_INPUT,
    HV_PARTITION_ID_SELF,
    HV_SYNIC_INTERCEPTION_SINT,
    INSTALL_INTERCEPT_INPUT,
    INTERCEPT_WRITE,
    MAP_STATS_PAGE2_INPUT,
    MAP_VP_STATE_PAGE_INPUT,
    MESSAGE_HEADER,
    UNMAP_STATS_PAGE_INPUT,
    UNMAP_VP_STATE_PAGE_INPUT,
    FlushVirtualAddressInput,
    HvStatus,
    HypercallCode,
    InstallInterceptInput,
    InterceptType,
    MapStatsPage2Input,
    MapVpStatePageInput,
    MessageType,
    PartitionPrivilege,
    RegisterName,
    StatsObjectType,
    UnmapStatsPageInput,
    UnmapVpStatePageInput,
    VpStatePageType,
    control,
)
from hvsim.actors.statspages import CALL_COUNTER_BASE, STATS_COUNTERS
from hvsim.actors.workload import Compute, Halt, Hypercall, IoPort, Program
from hvsim.scenarios.host import PartitionSpec, ReferenceHost

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
ST = StatsObjectType
VT = VpStatePageType
R = RegisterName
SELF = HV_PARTITION_ID_SELF
#: Where the callers ask for their statistics pages (a GPA page number).
STATS_GPA = 0xF_E000
ACCESS_STATS = int(PartitionPrivilege.AccessStats)
SETTLE_NS = 200_000


# --- identities and raw calls ---------------------------------------------------------------------
def hv_identity(area: int = 0, reserved: bytes = bytes(15)) -> bytes:
    return reserved + bytes([area])


def lp_identity(lp: int, area: int = 0, reserved: bytes = bytes(11)) -> bytes:
    return lp.to_bytes(4, "little") + reserved + bytes([area])


def partition_identity(pid: int, area: int = 0, reserved: bytes = bytes(7)) -> bytes:
    return pid.to_bytes(8, "little") + reserved + bytes([area])


def vp_identity(pid: int, vp: int, area: int = 0, reserved: bytes = bytes(3)) -> bytes:
    """VP identity: flags u16 @12 and a reserved byte @14 must be zero."""
    return pid.to_bytes(8, "little") + vp.to_bytes(4, "little") + reserved + bytes([area])


def map_stats(
    w: World, kind: int, identity: bytes, location: int = STATS_GPA, *, reserved: int = 0,
    caller: int | None = None,
) -> HvStatus:  # fmt: skip
    data = MAP_STATS_PAGE2_INPUT.pack(MapStatsPage2Input(kind, reserved, identity, location))
    return w.simple(C.MapStatsPage2, data, caller=caller)


def unmap_stats(
    w: World, kind: int, identity: bytes, *, padding: int = 0, caller: int | None = None
) -> HvStatus:
    data = UNMAP_STATS_PAGE_INPUT.pack(UnmapStatsPageInput(kind, padding, identity))
    return w.simple(C.UnmapStatsPage, data, caller=caller)


def map_state(
    w: World, pid: int, vp: int, page_type: int, *, flags: int = 0, location: int = 0, vtl: int = 0,
    caller: int | None = None,
) -> tuple[HvStatus, int]:  # fmt: skip
    data = MAP_VP_STATE_PAGE_INPUT.pack(MapVpStatePageInput(pid, vp, page_type, vtl, flags, location))
    res = w.call(control(C.MapVpStatePage), data, caller=caller)
    assert len(res.output) == 8
    return res.status, int.from_bytes(res.output, "little")


def unmap_state(
    w: World, pid: int, vp: int, page_type: int, *, vtl: int = 0, reserved: int = 0,
    caller: int | None = None,
) -> HvStatus:  # fmt: skip
    data = UNMAP_VP_STATE_PAGE_INPUT.pack(UnmapVpStatePageInput(pid, vp, page_type, vtl, reserved))
    return w.simple(C.UnmapVpStatePage, data, caller=caller)


def stats(w: World, key: tuple[int, ...], caller: int | None = None) -> dict[str, int]:
    return w.sim.hv.read_stats(w.root if caller is None else caller, key)


def settle(w: World, ns: int = SETTLE_NS) -> None:
    w.sim.run(w.sim.now_ns + ns)


def with_stats(w: World) -> int:
    """An ACTIVE child of the root with AccessStats (VPs 0 and 1, 8 spare pool pages)."""
    return w.active_child(
        privileges=w.sim.config.child_default_privileges | ACCESS_STATS, vps=(0, 1), spare=8
    )


# --- conformance 7.8 126-131 ---------------------------------------------------------------------------
def test_7_8_126_map_stats_page2_without_access_stats_is_access_denied(world: World, child: int) -> None:
    assert not world.sim.config.child_default_privileges & ACCESS_STATS
    before = world.balance(child)
    for kind, identity in (
        (ST.Partition, partition_identity(SELF)),
        (ST.Vp, vp_identity(SELF, 0)),
        (ST.Hypervisor, hv_identity()),
    ):
        assert map_stats(world, kind, identity, caller=child) is S.ACCESS_DENIED
        assert unmap_stats(world, kind, identity, caller=child) is S.ACCESS_DENIED
    assert world.balance(child) == before
    # Even a child that may create partitions needs AccessStats.
    creator = int(PartitionPrivilege.CreatePartitions)
    host = world.active_child(privileges=world.sim.config.child_default_privileges | creator)
    assert map_stats(world, ST.Partition, partition_identity(SELF), caller=host) is S.ACCESS_DENIED


def test_7_8_126_with_access_stats_a_partition_maps_its_own_statistics(world: World) -> None:
    c = with_stats(world)
    before = world.balance(c)
    assert map_stats(world, ST.Partition, partition_identity(SELF), caller=c) is S.SUCCESS
    assert map_stats(world, ST.Vp, vp_identity(c, 1), caller=c) is S.SUCCESS  # by id works too
    assert world.balance(c) == (before.pages_available - 2, before.pages_in_use + 2)  # its own pool
    assert stats(world, (ST.Partition, c, 0), caller=c)["vps"] == 2
    assert stats(world, (ST.Vp, c, 1, 0), caller=c)["runnable"] == 0


def test_7_8_127_stats_of_a_partition_neither_child_nor_self_are_access_denied(
    world: World, unrelated: int
) -> None:
    c = with_stats(world)
    for kind, identity in (
        (ST.Partition, partition_identity(unrelated)),
        (ST.Vp, vp_identity(unrelated, 0)),
        (ST.Partition, partition_identity(world.root)),  # its parent is not its child either
    ):
        assert map_stats(world, kind, identity, caller=c) is S.ACCESS_DENIED
        assert unmap_stats(world, kind, identity, caller=c) is S.ACCESS_DENIED
    assert map_stats(world, ST.Partition, partition_identity(unrelated)) is S.SUCCESS  # its parent may


def test_7_8_128_mapping_the_same_object_twice_is_operation_denied(world: World, child: int) -> None:
    before = world.balance(SELF)
    assert map_stats(world, ST.Partition, partition_identity(child)) is S.SUCCESS
    assert map_stats(world, ST.Partition, partition_identity(child), STATS_GPA + 1) is S.OPERATION_DENIED
    assert world.balance(SELF) == (before.pages_available - 1, before.pages_in_use + 1)  # charged once
    # Another area type, another VP, the VP object: different objects.
    assert map_stats(world, ST.Partition, partition_identity(child, area=1)) is S.SUCCESS
    assert map_stats(world, ST.Vp, vp_identity(child, 0)) is S.SUCCESS
    assert map_stats(world, ST.Vp, vp_identity(child, 1)) is S.SUCCESS
    assert map_stats(world, ST.Vp, vp_identity(child, 1)) is S.OPERATION_DENIED
    assert map_stats(world, ST.Hypervisor, hv_identity()) is S.SUCCESS
    assert map_stats(world, ST.Hypervisor, hv_identity()) is S.OPERATION_DENIED
    # After an unmap the object may be mapped again.
    assert unmap_stats(world, ST.Partition, partition_identity(child)) is S.SUCCESS
    assert map_stats(world, ST.Partition, partition_identity(child)) is S.SUCCESS


def test_7_8_128_each_caller_maps_an_object_for_itself(world: World) -> None:
    c = with_stats(world)
    assert map_stats(world, ST.Partition, partition_identity(c)) is S.SUCCESS  # the parent's page
    assert map_stats(world, ST.Partition, partition_identity(SELF), caller=c) is S.SUCCESS  # the child's
    assert stats(world, (ST.Partition, c, 0)) == stats(world, (ST.Partition, c, 0), caller=c)


def _reserved_cases() -> dict[str, tuple[int, bytes]]:
    cases: dict[str, tuple[int, bytes]] = {}
    for i in range(15):
        reserved = bytearray(15)
        reserved[i] = 1
        cases[f"hypervisor-byte-{i}"] = (ST.Hypervisor, hv_identity(reserved=bytes(reserved)))
    for i in range(11):
        reserved = bytearray(11)
        reserved[i] = 0x80
        cases[f"lp-byte-{4 + i}"] = (ST.LogicalProcessor, lp_identity(0, reserved=bytes(reserved)))
    for i in range(7):
        reserved = bytearray(7)
        reserved[i] = 1
        cases[f"partition-byte-{8 + i}"] = (ST.Partition, partition_identity(SELF, reserved=bytes(reserved)))
    for i in range(3):
        reserved = bytearray(3)
        reserved[i] = 1
        cases[f"vp-byte-{12 + i}"] = (ST.Vp, vp_identity(SELF, 0, reserved=bytes(reserved)))
    return cases


RESERVED_CASES = _reserved_cases()


@pytest.mark.parametrize(("kind", "identity"), list(RESERVED_CASES.values()), ids=list(RESERVED_CASES))
def test_7_8_129_non_zero_reserved_identity_bytes_are_invalid_parameter(
    world: World, kind: int, identity: bytes
) -> None:
    before = world.balance(SELF)
    assert map_stats(world, kind, identity) is S.INVALID_PARAMETER
    assert unmap_stats(world, kind, identity) is S.INVALID_PARAMETER
    assert world.balance(SELF) == before


def test_7_8_129_reserved_header_fields_are_invalid_parameter(world: World) -> None:
    identity = partition_identity(SELF)
    for reserved in (1, 0x8000_0000):
        assert map_stats(world, ST.Partition, identity, reserved=reserved) is S.INVALID_PARAMETER
    assert map_stats(world, ST.Partition, identity) is S.SUCCESS
    assert unmap_stats(world, ST.Partition, identity, padding=1) is S.INVALID_PARAMETER
    assert unmap_stats(world, ST.Partition, identity) is S.SUCCESS


def test_7_8_130_unmapping_a_page_never_mapped_is_operation_denied(world: World, child: int) -> None:
    for kind, identity in (
        (ST.Partition, partition_identity(child)),
        (ST.Vp, vp_identity(child, 1)),
        (ST.Hypervisor, hv_identity()),
        (ST.LogicalProcessor, lp_identity(1)),
    ):
        assert unmap_stats(world, kind, identity) is S.OPERATION_DENIED
        assert map_stats(world, kind, identity) is S.SUCCESS
        assert unmap_stats(world, kind, identity) is S.SUCCESS
        assert unmap_stats(world, kind, identity) is S.OPERATION_DENIED
    # The area type is part of the object.
    assert map_stats(world, ST.Partition, partition_identity(child, area=2)) is S.SUCCESS
    assert unmap_stats(world, ST.Partition, partition_identity(child, area=0)) is S.OPERATION_DENIED


@pytest.mark.parametrize("page_type", [3, 7, 0x100, 0xFFFF])
def test_7_8_131_map_vp_state_page_of_an_unknown_type_is_invalid_parameter(
    world: World, child: int, page_type: int
) -> None:
    before = world.balance(child)
    assert map_state(world, child, 0, page_type) == (S.INVALID_PARAMETER, 0)
    assert world.balance(child) == before


# --- MapStatsPage2 / UnmapStatsPage: more statuses ----------------------------------------------------
def test_hypervisor_and_lp_objects_are_root_only(world: World) -> None:
    c = with_stats(world)
    for kind, identity in ((ST.Hypervisor, hv_identity()), (ST.LogicalProcessor, lp_identity(0))):
        assert map_stats(world, kind, identity, caller=c) is S.ACCESS_DENIED
        assert unmap_stats(world, kind, identity, caller=c) is S.ACCESS_DENIED
        assert map_stats(world, kind, identity) is S.SUCCESS


def test_lp_index_out_of_range_is_invalid_parameter(make_world: MakeWorld) -> None:
    w = make_world(root_vps=3)
    for lp in (0, 1, 2):
        assert map_stats(w, ST.LogicalProcessor, lp_identity(lp)) is S.SUCCESS
    for lp in (3, 64, 0xFFFF_FFFF):
        assert map_stats(w, ST.LogicalProcessor, lp_identity(lp)) is S.INVALID_PARAMETER
        assert unmap_stats(w, ST.LogicalProcessor, lp_identity(lp)) is S.INVALID_PARAMETER


@pytest.mark.parametrize("area", [3, 4, 0x80, 0xFF])
def test_stats_area_type_3_and_above_is_invalid_parameter(world: World, child: int, area: int) -> None:
    for kind, identity in (
        (ST.Hypervisor, hv_identity(area)),
        (ST.LogicalProcessor, lp_identity(0, area)),
        (ST.Partition, partition_identity(child, area)),
        (ST.Vp, vp_identity(child, 0, area)),
    ):
        assert map_stats(world, kind, identity) is S.INVALID_PARAMETER, kind
        assert unmap_stats(world, kind, identity) is S.INVALID_PARAMETER, kind


def test_stats_area_types_0_to_2_are_separate_objects(world: World, child: int) -> None:
    before = world.balance(SELF)
    for area in (0, 1, 2):
        assert map_stats(world, ST.Vp, vp_identity(child, 0, area)) is S.SUCCESS
    assert world.balance(SELF).pages_in_use == before.pages_in_use + 3


@pytest.mark.parametrize("kind", [0, 3, 0x1_0000, 0x1_0003, 0x2_0001, 0xFFFF_FFFF])
def test_unknown_stats_object_type_is_invalid_parameter(world: World, kind: int) -> None:
    assert map_stats(world, kind, partition_identity(SELF)) is S.INVALID_PARAMETER
    assert unmap_stats(world, kind, partition_identity(SELF)) is S.INVALID_PARAMETER


def test_stats_target_statuses(world: World, child: int) -> None:
    for kind, identity in ((ST.Partition, partition_identity(0x1234)), (ST.Vp, vp_identity(0x1234, 0))):
        assert map_stats(world, kind, identity) is S.INVALID_PARTITION_ID
        assert unmap_stats(world, kind, identity) is S.INVALID_PARTITION_ID
    for vp in (2, 0xFFFF_FFFE, 0xFFFF_FFFF):
        assert map_stats(world, ST.Vp, vp_identity(child, vp)) is S.INVALID_VP_INDEX
        assert unmap_stats(world, ST.Vp, vp_identity(child, vp)) is S.INVALID_VP_INDEX
    created = world.new_child()
    for kind, identity in ((ST.Partition, partition_identity(created)), (ST.Vp, vp_identity(created, 0))):
        assert map_stats(world, kind, identity) is S.INVALID_PARTITION_STATE
        assert unmap_stats(world, kind, identity) is S.INVALID_PARTITION_STATE
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert map_stats(world, ST.Partition, partition_identity(child)) is S.INVALID_PARTITION_STATE


def test_the_callers_own_pool_pays_and_a_deposit_into_self_lets_it_succeed(make_world: MakeWorld) -> None:
    w = make_world(fund_root=False)  # root_pool_pages=0: the root's pool is empty
    assert w.sim.config.root_pool_pages == 0
    assert w.balance(SELF) == (0, 0)
    assert map_stats(w, ST.Partition, partition_identity(SELF)) is S.INSUFFICIENT_MEMORY
    assert map_stats(w, ST.Hypervisor, hv_identity()) is S.INSUFFICIENT_MEMORY
    w.fund(SELF, w.page_costs.stats_page)  # what Linux does: deposit into its own partition, retry
    assert map_stats(w, ST.Partition, partition_identity(SELF)) is S.SUCCESS
    assert w.balance(SELF) == (0, w.page_costs.stats_page)
    assert map_stats(w, ST.Hypervisor, hv_identity()) is S.INSUFFICIENT_MEMORY  # one page, one map


def test_the_parent_pays_for_its_view_of_a_child(world: World, child: int) -> None:
    root_before, child_before = world.balance(SELF), world.balance(child)
    assert map_stats(world, ST.Vp, vp_identity(child, 1)) is S.SUCCESS
    assert world.balance(child) == child_before
    cost = world.page_costs.stats_page
    assert world.balance(SELF) == (root_before.pages_available - cost, root_before.pages_in_use + cost)


def test_unmap_refunds_the_pool_page(world: World, child: int) -> None:
    before = world.balance(SELF)
    objects = [
        (ST.Hypervisor, hv_identity()),
        (ST.LogicalProcessor, lp_identity(1)),
        (ST.Partition, partition_identity(child)),
        (ST.Vp, vp_identity(child, 0)),
    ]
    for kind, identity in objects:
        assert map_stats(world, kind, identity) is S.SUCCESS
    assert world.balance(SELF).pages_in_use == before.pages_in_use + 4 * world.page_costs.stats_page
    for kind, identity in objects:
        assert unmap_stats(world, kind, identity) is S.SUCCESS
    assert world.balance(SELF) == before
    with pytest.raises(KeyError):
        stats(world, (ST.Partition, child, 0))  # nothing mapped: nothing to read


def test_a_stats_page_on_a_deleted_vp_does_not_keep_the_callers_page(world: World, child: int) -> None:
    before = world.balance(SELF)
    assert map_stats(world, ST.Vp, vp_identity(child, 1)) is S.SUCCESS
    assert world.delete_vp(child, 1) is S.SUCCESS
    unmap_stats(world, ST.Vp, vp_identity(child, 1))  # either refused or done: the page must come back
    assert world.balance(SELF) == before


def test_a_stats_page_on_a_deleted_child_does_not_keep_the_parents_page(world: World) -> None:
    c = world.active_child()
    before = world.balance(SELF)
    assert map_stats(world, ST.Partition, partition_identity(c)) is S.SUCCESS
    assert world.by_id(C.FinalizePartition, c) is S.SUCCESS
    world.drain(c)
    assert world.by_id(C.DeletePartition, c) is S.SUCCESS
    unmap_stats(world, ST.Partition, partition_identity(c))
    cost = world.page_costs.create_partition  # refunded by the delete
    assert world.balance(SELF) == (before.pages_available + cost, before.pages_in_use - cost)


# --- live counters --------------------------------------------------------------------------------------
def test_stats_pages_list_the_documented_counters(world: World, child: int) -> None:
    keys = {
        ST.Hypervisor: ((ST.Hypervisor, 0, 0), hv_identity()),
        ST.LogicalProcessor: ((ST.LogicalProcessor, 1, 0), lp_identity(1)),
        ST.Partition: ((ST.Partition, child, 0), partition_identity(child)),
        ST.Vp: ((ST.Vp, child, 1, 0), vp_identity(child, 1)),
    }
    for kind, (key, identity) in keys.items():
        assert map_stats(world, kind, identity) is S.SUCCESS
        page = stats(world, key)
        assert tuple(page) == STATS_COUNTERS[kind]
        assert all(isinstance(v, int) and v >= 0 for v in page.values())
    assert stats(world, keys[ST.LogicalProcessor][0])["lp_index"] == 1
    assert stats(world, keys[ST.Partition][0])["vps"] == 2
    page = stats(world, keys[ST.Partition][0])
    assert (page["pages_available"], page["pages_in_use"]) == world.balance(child)


def test_hypervisor_counters_follow_the_world(world: World) -> None:
    assert map_stats(world, ST.Hypervisor, hv_identity()) is S.SUCCESS
    key = (ST.Hypervisor, 0, 0)
    first = stats(world, key)
    assert first["partitions"] == 1
    c = world.active_child()
    now = stats(world, key)
    assert now["partitions"] == 2
    assert now["hypercalls"] > first["hypercalls"]
    total = sum(world.balance(p).pages_available + world.balance(p).pages_in_use for p in (SELF, c))
    assert now["pool_pages"] == total
    before = stats(world, key)["hypercalls"]
    world.balance(SELF)
    world.balance(SELF)
    assert stats(world, key)["hypercalls"] == before + 2  # the page counts every call made


def test_lp_counters_count_the_root_vps_hypercalls(world: World) -> None:
    assert map_stats(world, ST.LogicalProcessor, lp_identity(1)) is S.SUCCESS
    key = (ST.LogicalProcessor, 1, 0)
    before = stats(world, key)["hypercalls"]
    world.call(control(C.GetPartitionId), vp=0)
    assert stats(world, key)["hypercalls"] == before
    for _ in range(3):
        world.call(control(C.GetPartitionId), vp=1)
    assert stats(world, key)["hypercalls"] == before + 3


FLUSH = FLUSH_VIRTUAL_ADDRESS_INPUT.pack(
    FlushVirtualAddressInput(0, FLUSH_ALL_PROCESSORS | FLUSH_ALL_VIRTUAL_ADDRESS_SPACES, 0)
)


def test_vp_and_partition_counters_are_live_as_the_guest_runs(world: World) -> None:
    program = Program(
        loop=(
            Compute(20_000),
            Hypercall(control(C.GetPartitionId)),
            Hypercall(control(C.FlushVirtualAddressSpace), FLUSH),
        ),
        name="busy",
    )
    pid = world.run(ReferenceHost(world.sim).boot(PartitionSpec(vps=1, program=lambda _i: program)))
    assert map_stats(world, ST.Vp, vp_identity(pid, 0)) is S.SUCCESS
    assert map_stats(world, ST.Partition, partition_identity(pid)) is S.SUCCESS
    vp_key, p_key = (ST.Vp, pid, 0, 0), (ST.Partition, pid, 0)
    first = stats(world, vp_key)
    settle(world, 500_000)
    second = stats(world, vp_key)
    assert second["runnable"] == 1
    assert second["run_time_ns"] >= first["run_time_ns"] + 500_000
    assert second["hypercalls"] > first["hypercalls"] + 10
    assert second["tlb_flushes"] > first["tlb_flushes"] + 5
    whole = stats(world, p_key)
    assert (whole["hypercalls"], whole["tlb_flushes"], whole["vp_run_time_ns"]) == (
        second["hypercalls"], second["tlb_flushes"], second["run_time_ns"],
    )  # fmt: skip
    # Suspended: run time stops, so do the calls.
    out = world.run(world.api.set_registers(pid, 0, {R.ExplicitSuspend: 1}))
    assert out.status is S.SUCCESS
    third = stats(world, vp_key)
    settle(world, 500_000)
    assert third["runnable"] == 0
    assert stats(world, vp_key) == third


def test_hypercalls_are_counted_by_code_on_every_kind_of_page(world: World) -> None:
    program = Program(
        setup=(Hypercall(control(C.GetPartitionId)),) * 3
        + (Hypercall(control(C.FlushVirtualAddressSpace), FLUSH),) * 2
        + (Hypercall(control(0x1FE)),),  # no such call: counted under its code all the same
        loop=(Halt(),),
        name="counted",
    )
    pid = world.run(ReferenceHost(world.sim).boot(PartitionSpec(vps=2, program=lambda _i: program)))
    settle(world)
    for kind, identity in (
        (ST.Vp, vp_identity(pid, 0)), (ST.Vp, vp_identity(pid, 1)), (ST.Partition, partition_identity(pid)),
        (ST.Hypervisor, hv_identity()), (ST.LogicalProcessor, lp_identity(1)),
    ):  # fmt: skip
        assert map_stats(world, kind, identity) is S.SUCCESS
    hv = world.sim.hv
    vp0 = hv.read_call_counts(world.root, (ST.Vp, pid, 0, 0))
    assert vp0 == {C.FlushVirtualAddressSpace: 2, C.GetPartitionId: 3, 0x1FE: 1}
    assert list(vp0) == sorted(vp0)
    assert hv.read_call_counts(world.root, (ST.Vp, pid, 1, 0)) == {}  # the AP never ran
    assert hv.read_call_counts(world.root, (ST.Partition, pid, 0)) == vp0
    assert sum(vp0.values()) == stats(world, (ST.Vp, pid, 0, 0))["hypercalls"]
    # The hypervisor counts every caller's calls; the LP page, its root VP's.
    everything = hv.read_call_counts(world.root, (ST.Hypervisor, 0, 0))
    assert everything[C.GetPartitionId] >= 3 and everything[C.CreatePartition] >= 1
    assert sum(everything.values()) == stats(world, (ST.Hypervisor, 0, 0))["hypercalls"]
    lp = hv.read_call_counts(world.root, (ST.LogicalProcessor, 1, 0))
    for _ in range(2):
        world.call(control(C.GetPartitionId), vp=1)
    after = hv.read_call_counts(world.root, (ST.LogicalProcessor, 1, 0))
    assert after[C.GetPartitionId] == lp.get(C.GetPartitionId, 0) + 2


def test_the_raw_statistics_page_holds_the_counters_at_their_indices(world: World) -> None:
    program = Program(setup=(Hypercall(control(C.GetPartitionId)),) * 4, loop=(Halt(),), name="four")
    pid = world.run(ReferenceHost(world.sim).boot(PartitionSpec(vps=1, program=lambda _i: program)))
    settle(world)
    key = (ST.Vp, pid, 0, 0)
    assert map_stats(world, ST.Vp, vp_identity(pid, 0)) is S.SUCCESS
    page = world.sim.hv.read_stats_page(world.root, key)
    assert len(page) == 4096
    u64 = [int.from_bytes(page[8 * i : 8 * i + 8], "little") for i in range(512)]
    named = stats(world, key)
    assert u64[: len(named)] == list(named.values())
    assert u64[CALL_COUNTER_BASE + C.GetPartitionId] == 4
    others = [i for i, v in enumerate(u64) if v and i >= len(named)]
    assert others == [CALL_COUNTER_BASE + C.GetPartitionId]
    world.run(world.api.set_registers(pid, 0, {R.Rax: 1}))  # the root's call is not the VP's
    assert world.sim.hv.read_stats_page(world.root, key)[8 * (CALL_COUNTER_BASE + C.GetPartitionId) :][
        :8
    ] == ((4).to_bytes(8, "little"))


def test_reading_an_unmapped_statistics_page_is_an_error(world: World) -> None:
    with pytest.raises(KeyError):
        world.sim.hv.read_call_counts(world.root, (ST.Hypervisor, 0, 0))
    with pytest.raises(KeyError):
        world.sim.hv.read_stats_page(world.root, (ST.Hypervisor, 0, 0))


def test_message_and_intercept_counters(world: World) -> None:
    api = world.api
    assert world.run(api.enable_synic(SELF, 0, {HV_SYNIC_INTERCEPTION_SINT: 0x32})).status is S.SUCCESS

    def prepare(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
        data = INSTALL_INTERCEPT_INPUT.pack(
            InstallInterceptInput(pid, INTERCEPT_WRITE, InterceptType.X64IoPort, 0x80)
        )
        res = yield from host.api.simple(C.InstallIntercept, data)
        assert res.status is S.SUCCESS

    program = Program(setup=(IoPort(0x80, 1, True, 1),), loop=(Halt(),), name="one-out")
    pid = world.run(
        ReferenceHost(world.sim).boot(PartitionSpec(vps=1, program=lambda _i: program, prepare=prepare))
    )
    for identity in (partition_identity(pid), partition_identity(SELF)):
        assert map_stats(world, ST.Partition, identity) is S.SUCCESS
    for identity in (vp_identity(pid, 0), vp_identity(SELF, 0)):
        assert map_stats(world, ST.Vp, identity) is S.SUCCESS
    settle(world)
    child_page = stats(world, (ST.Partition, pid, 0))
    root_vp = stats(world, (ST.Vp, world.root, 0, 0))
    assert (child_page["intercepts"], child_page["messages_posted"]) == (1, 1)
    assert stats(world, (ST.Vp, pid, 0, 0))["intercepts"] == 1
    assert root_vp["messages_received"] == 1  # delivered into the root's SIM slot
    # A message the other way: the root posts directly to the child's VP 0.
    assert world.run(api.enable_synic(pid, 0, {2: 0x40})).status is S.SUCCESS
    root_before = stats(world, (ST.Partition, world.root, 0))["messages_posted"]
    assert world.run(api.post_message_direct(pid, 0, 2, 0x100, b"hello")) is S.SUCCESS
    settle(world)
    assert stats(world, (ST.Partition, world.root, 0))["messages_posted"] == root_before + 1
    assert stats(world, (ST.Vp, pid, 0, 0))["messages_received"] == 1
    assert stats(world, (ST.Partition, pid, 0))["messages_delivered"] == 1


# --- MapVpStatePage / UnmapVpStatePage ------------------------------------------------------------------
def test_map_vp_state_page_statuses(world: World, child: int, intruder: int) -> None:
    assert map_state(world, child, 0, VT.Registers, caller=intruder) == (S.ACCESS_DENIED, 0)
    assert map_state(world, SELF, 0, VT.Registers) == (S.ACCESS_DENIED, 0)  # the root has no parent
    assert map_state(world, SELF, 0, VT.Registers, caller=child) == (S.ACCESS_DENIED, 0)
    assert map_state(world, 0x1234, 0, VT.Registers) == (S.INVALID_PARTITION_ID, 0)
    assert map_state(world, world.new_child(), 0, VT.Registers) == (S.INVALID_PARTITION_STATE, 0)
    assert map_state(world, child, 2, VT.Registers) == (S.INVALID_VP_INDEX, 0)
    assert map_state(world, child, 0, VT.Ghcb) == (S.INVALID_PARAMETER, 0)  # not an SEV-SNP guest
    for kw in ({"flags": 0x2}, {"flags": 0x80}, {"vtl": 1}, {"location": 0x100}):
        assert map_state(world, child, 0, VT.Registers, **kw) == (S.INVALID_PARAMETER, 0), kw
    before = world.balance(child)
    status, _ = map_state(world, child, 0, VT.Registers)
    assert status is S.SUCCESS
    assert map_state(world, child, 0, VT.Registers) == (S.OBJECT_IN_USE, 0)
    assert map_state(world, child, 0, VT.Registers, flags=1, location=0x200) == (S.OBJECT_IN_USE, 0)
    cost = world.page_costs.stats_page
    assert world.balance(child) == (before.pages_available - cost, before.pages_in_use + cost)
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert map_state(world, child, 1, VT.Registers) == (S.INVALID_PARTITION_STATE, 0)
    assert unmap_state(world, child, 0, VT.Registers) is S.INVALID_PARTITION_STATE


def test_map_vp_state_page_is_paid_by_the_target_pool(world: World) -> None:
    c = world.active_child(spare=0)
    root_before = world.balance(SELF)
    assert world.balance(c).pages_available == 0
    assert map_state(world, c, 0, VT.InterceptMessage) == (S.INSUFFICIENT_MEMORY, 0)
    world.fund(c, 1)  # what Linux does: one page into the target partition, then retry
    status, _ = map_state(world, c, 0, VT.InterceptMessage)
    assert status is S.SUCCESS
    assert world.balance(c).pages_available == 0
    assert map_state(world, c, 0, VT.Registers) == (S.INSUFFICIENT_MEMORY, 0)
    assert world.balance(SELF).pages_in_use == root_before.pages_in_use


def test_map_vp_state_page_output_location(world: World, child: int) -> None:
    assert map_state(world, child, 0, VT.Registers, flags=1, location=0x1_2345) == (S.SUCCESS, 0x1_2345)
    chosen = {}
    for vp, page_type in ((0, VT.InterceptMessage), (1, VT.Registers), (1, VT.InterceptMessage)):
        status, location = map_state(world, child, vp, page_type)
        assert status is S.SUCCESS and location
        chosen[(vp, page_type)] = location
    assert len(set(chosen.values())) == 3 and 0x1_2345 not in chosen.values()
    assert unmap_state(world, child, 1, VT.Registers) is S.SUCCESS
    assert map_state(world, child, 1, VT.Registers) == (S.SUCCESS, chosen[(1, VT.Registers)])  # stable


def test_unmap_vp_state_page_statuses_and_refund(world: World, child: int, intruder: int) -> None:
    assert unmap_state(world, child, 0, VT.Registers) is S.OPERATION_DENIED  # not mapped
    before = world.balance(child)
    assert map_state(world, child, 0, VT.Registers)[0] is S.SUCCESS
    assert unmap_state(world, child, 0, VT.InterceptMessage) is S.OPERATION_DENIED  # another type
    assert unmap_state(world, child, 1, VT.Registers) is S.OPERATION_DENIED  # another VP
    assert unmap_state(world, child, 0, VT.Registers, caller=intruder) is S.ACCESS_DENIED
    assert unmap_state(world, 0x1234, 0, VT.Registers) is S.INVALID_PARTITION_ID
    assert unmap_state(world, child, 2, VT.Registers) is S.INVALID_VP_INDEX
    assert unmap_state(world, child, 0, VT.Registers, vtl=1) is S.INVALID_PARAMETER
    assert unmap_state(world, child, 0, VT.Registers, reserved=1) is S.INVALID_PARAMETER
    for bad_type in (VT.Ghcb, 7):  # as MapVpStatePage: no such page in this model (4.32 mirrors 4.31)
        assert unmap_state(world, child, 0, bad_type) is S.INVALID_PARAMETER
    assert unmap_state(world, child, 0, VT.Registers) is S.SUCCESS
    assert world.balance(child) == before
    assert unmap_state(world, child, 0, VT.Registers) is S.OPERATION_DENIED
    with pytest.raises(KeyError):
        world.sim.hv.read_vp_state(child, 0, VT.Registers)


def test_the_registers_page_shows_the_registers_live(world: World, child: int) -> None:
    assert map_state(world, child, 1, VT.Registers)[0] is S.SUCCESS
    page = world.sim.hv.read_vp_state(child, 1, VT.Registers)
    assert isinstance(page, dict)
    assert page[R.Rip] == world.register(child, 1, R.Rip)
    assert page[R.InitialApicId] == 1
    out = world.run(world.api.set_registers(child, 1, {R.Rip: 0x1234_5678, R.Rbx: 0xB}))
    assert out.status is S.SUCCESS
    page = world.sim.hv.read_vp_state(child, 1, VT.Registers)
    assert isinstance(page, dict)
    assert (page[R.Rip], page[R.Rbx]) == (0x1234_5678, 0xB)
    with pytest.raises(KeyError):
        world.sim.hv.read_vp_state(child, 0, VT.Registers)  # VP 0's page is not mapped


def test_the_intercept_message_page_holds_the_last_intercept(world: World) -> None:
    api = world.api
    assert world.run(api.enable_synic(SELF, 0, {HV_SYNIC_INTERCEPTION_SINT: 0x32})).status is S.SUCCESS

    def prepare(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
        data = INSTALL_INTERCEPT_INPUT.pack(
            InstallInterceptInput(pid, INTERCEPT_WRITE, InterceptType.X64IoPort, 0x80)
        )
        res = yield from host.api.simple(C.InstallIntercept, data)
        assert res.status is S.SUCCESS
        data = MAP_VP_STATE_PAGE_INPUT.pack(MapVpStatePageInput(pid, 0, VT.InterceptMessage, 0, 0, 0))
        res = yield from host.api.simple(C.MapVpStatePage, data)
        assert res.status is S.SUCCESS
        assert world.sim.hv.read_vp_state(pid, 0, VT.InterceptMessage) == b""  # nothing yet

    program = Program(setup=(IoPort(0x80, 1, True, 0x5A),), loop=(Halt(),), name="one-out")
    host = ReferenceHost(world.sim)
    pid = world.run(host.boot(PartitionSpec(vps=1, program=lambda _i: program, prepare=prepare)))
    raw = world.run(host.take_message(HV_SYNIC_INTERCEPTION_SINT, 1_000_000))
    assert raw is not None
    assert MESSAGE_HEADER.unpack(raw).message_type == MessageType.X64IoPortIntercept
    assert world.sim.hv.read_vp_state(pid, 0, VT.InterceptMessage) == raw


def test_deleting_a_vp_releases_its_state_pages(world: World, child: int) -> None:
    before = world.balance(child)
    for page_type in (VT.Registers, VT.InterceptMessage):
        assert map_state(world, child, 1, page_type)[0] is S.SUCCESS
    assert map_state(world, child, 0, VT.Registers)[0] is S.SUCCESS
    cost = world.page_costs.stats_page
    assert world.balance(child).pages_in_use == before.pages_in_use + 3 * cost
    assert world.delete_vp(child, 1) is S.SUCCESS
    vp_cost = world.page_costs.create_vp
    assert world.balance(child) == (
        before.pages_available - cost + vp_cost, before.pages_in_use + cost - vp_cost,
    )  # fmt: skip
    assert world.create_vp(child, 1) is S.SUCCESS
    assert map_state(world, child, 1, VT.Registers)[0] is S.SUCCESS  # nothing left over to collide
    assert map_state(world, child, 0, VT.Registers) == (S.OBJECT_IN_USE, 0)  # VP 0's page survived
