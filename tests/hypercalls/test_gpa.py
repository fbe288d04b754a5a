"""GPA mappings from the caller's side: MapGpaPages, MapSparseGpaPages, UnmapGpaPages and
ModifySparseGpaPages (HYPERCALLS.md 4.16-4.19, 5.7, conformance 7.6 84-90), the page-table pages
they charge to the target's pool, shared and replaced mappings, the root's identity map, what
FinalizePartition does to an address space, and guest memory contents.

Mapping rights are observed as a caller sees them: TranslateVirtualAddress on a VP with paging off
is an identity walk that still checks the GPA mapping (GpaUnmapped, GpaNoReadAccess,
GpaNoWriteAccess, cache type). The ``gpa-mappings`` checker runs after every test (and at chosen
points inside some) and must find nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from hvsim.actors.config import PageCosts
from hvsim.actors.hvdef import (
    CACHE_TYPE_UNCACHED,
    CACHE_TYPE_WRITEBACK,
    GPA_MAPPING_ELEMENT,
    HV_PARTITION_ID_SELF,
    LARGE_PAGE_PAGES,
    MAP_GPA_PAGES_HEADER,
    SPARSE_GPA_HEADER,
    TRANSLATE_VA_INPUT,
    TRANSLATE_VA_OUTPUT,
    UNMAP_GPA_KEEP_PRECOMMITTED,
    UNMAP_GPA_LARGE_PAGE,
    UNMAP_GPA_PAGES_HEADER,
    GpaMappingElement,
    HvStatus,
    HypercallCode,
    MapGpaFlags,
    MapGpaPagesHeader,
    PartitionPrivilege,
    SparseGpaHeader,
    TranslateGvaFlags,
    TranslateResultCode,
    TranslateVirtualAddressInput,
    UnmapGpaPagesHeader,
    control,
)
from hvsim.actors.hypercall import HypercallResult
from hvsim.scenarios.checkers import gpa_mappings

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
F = MapGpaFlags
T = TranslateGvaFlags
RC = TranslateResultCode
PP = PartitionPrivilege
SELF = HV_PARTITION_ID_SELF
R, RW, RX, RWX = F.READABLE, F.READABLE | F.WRITABLE, F.READABLE | F.EXECUTABLE, F.PERMISSIONS
#: The internal accessed / dirty bits ModifySparseGpaPages keeps with a mapping (actors/gpa.py).
ACCESSED, DIRTY = 1 << 40, 1 << 41


# --- the world ---------------------------------------------------------------------------------
@pytest.fixture
def make_world(make_world: MakeWorld) -> Iterator[MakeWorld]:
    """conftest's worlds, with the gpa-mappings checker run on each at the end of the test."""
    made: list[World] = []

    def make(**kwargs: Any) -> World:
        w = make_world(**kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        assert gpa_mappings(w.sim.hv) == []


def check(w: World) -> None:
    assert gpa_mappings(w.sim.hv) == []


def limit(w: World) -> int:
    """The first GPA page number beyond a child's GPA space."""
    return 1 << (w.sim.config.guest_gpa_bits - 12)


def mapped(w: World, page: int) -> int:
    """How many child GPA pages map host page *page*."""
    return w.sim.hv.memory.mapped[page]


def gpa_of(w: World, pid: int) -> dict[int, Any]:
    return w.sim.hv.partitions[pid].gpa


def in_use(w: World, pid: int) -> int:
    return w.balance(pid).pages_in_use


def empty_pool(w: World, pid: int) -> None:
    """Withdraw every free page of *pid*'s pool back to the host."""
    w.sim.free_host_pages(w.drain(pid))
    assert w.balance(pid).pages_available == 0


def aligned_run(w: World, large_pages: int = 1) -> int:
    """The first page of 512 * *large_pages* contiguous, 2 MiB-aligned, host-allocated pages."""
    count = LARGE_PAGE_PAGES * large_pages
    pages = w.host_pages(count + LARGE_PAGE_PAGES)
    start = next(p for p in pages if p % LARGE_PAGE_PAGES == 0)
    assert pages[pages.index(start) + count - 1] == start + count - 1
    return start


# --- raw invocations (one call, no continuation) -------------------------------------------------
def map_raw(
    w: World, pid: int, base: int, sources: Sequence[int], flags: int, *,
    caller: int | None = None, rep_start: int = 0, padding: int = 0,
) -> HypercallResult:  # fmt: skip
    header = MAP_GPA_PAGES_HEADER.pack(MapGpaPagesHeader(pid, base, flags, padding))
    ctl = control(C.MapGpaPages, rep_count=len(sources), rep_start=rep_start)
    return w.call(ctl, header + w.u64s(sources), caller=caller)


def sparse_raw(
    w: World, pid: int, pairs: Sequence[tuple[int, int]], flags: int, *,
    caller: int | None = None, rep_start: int = 0, reserved: int = 0,
) -> HypercallResult:  # fmt: skip
    header = SPARSE_GPA_HEADER.pack(SparseGpaHeader(pid, flags, reserved))
    body = b"".join(GPA_MAPPING_ELEMENT.pack(GpaMappingElement(t, s)) for t, s in pairs)
    return w.call(
        control(C.MapSparseGpaPages, rep_count=len(pairs), rep_start=rep_start), header + body, caller=caller
    )


def unmap_raw(
    w: World, pid: int, base: int, count: int, flags: int = 0, *,
    caller: int | None = None, rep_start: int = 0, padding: int = 0,
) -> HypercallResult:  # fmt: skip
    header = UNMAP_GPA_PAGES_HEADER.pack(UnmapGpaPagesHeader(pid, base, flags, padding))
    return w.call(control(C.UnmapGpaPages, rep_count=count, rep_start=rep_start), header, caller=caller)


def modify_raw(
    w: World, pid: int, pages: Sequence[int], flags: int, *,
    caller: int | None = None, rep_start: int = 0, reserved: int = 0,
) -> HypercallResult:  # fmt: skip
    header = SPARSE_GPA_HEADER.pack(SparseGpaHeader(pid, flags, reserved))
    ctl = control(C.ModifySparseGpaPages, rep_count=len(pages), rep_start=rep_start)
    return w.call(ctl, header + w.u64s(pages), caller=caller)


def ok(res: HypercallResult, reps: int) -> None:
    assert (res.status, res.reps_completed) == (S.SUCCESS, reps), res


def probe(w: World, pid: int, gpa_page: int, flags: int = T.VALIDATE_READ) -> tuple[RC, int]:
    """The mapping of *gpa_page* as a walk sees it: VP 0 has paging off, so the GVA is the GPA and
    only the GPA access is checked. (result code, cache type)."""
    data = TRANSLATE_VA_INPUT.pack(TranslateVirtualAddressInput(pid, 0, 0, flags, gpa_page))
    res = w.call(control(C.TranslateVirtualAddress), data)
    assert res.status is S.SUCCESS
    out = TRANSLATE_VA_OUTPUT.unpack(res.output)
    assert out.gpa_page == gpa_page
    return RC(out.result & 0xFFFF_FFFF), (out.result >> 32) & 0xFF


def rights(w: World, pid: int, gpa_page: int) -> str:
    """'-' unmapped, '0' inaccessible, 'r' read-only, 'rw' readable and writable."""
    read, _ = probe(w, pid, gpa_page, T.VALIDATE_READ)
    if read is RC.GpaUnmapped:
        return "-"
    if read is RC.GpaNoReadAccess:
        return "0"
    assert read is RC.Success
    write, _ = probe(w, pid, gpa_page, T.VALIDATE_WRITE)
    return "rw" if write is RC.Success else "r"


# --- the four calls, for status tests shared by all of them ----------------------------------------
CallFn = Callable[..., HypercallResult]


def _map(w: World, pid: int, src: int, caller: int | None) -> HypercallResult:
    return map_raw(w, pid, 0x10, [src], RW, caller=caller)


def _sparse(w: World, pid: int, src: int, caller: int | None) -> HypercallResult:
    return sparse_raw(w, pid, [(0x10, src)], RW, caller=caller)


def _unmap(w: World, pid: int, src: int, caller: int | None) -> HypercallResult:
    return unmap_raw(w, pid, 0x10, 1, caller=caller)


def _modify(w: World, pid: int, src: int, caller: int | None) -> HypercallResult:
    return modify_raw(w, pid, [0x10], R, caller=caller)


FOUR_CALLS = pytest.mark.parametrize(
    "call", [_map, _sparse, _unmap, _modify], ids=["Map", "MapSparse", "Unmap", "ModifySparse"]
)


@FOUR_CALLS
def test_7_6_90_a_partition_that_is_not_the_parent_is_access_denied(
    world: World, child: int, intruder: int, call: CallFn
) -> None:
    (src,) = world.host_pages(1)
    ok(map_raw(world, child, 0x10, [src], RW), 1)
    res = call(world, child, src, intruder)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)
    assert rights(world, child, 0x10) == "rw"  # nothing changed


def nested(make_world: MakeWorld) -> tuple[World, int, int]:
    """Depth 3: C (a child with CreatePartitions) and its ACTIVE child GC. GC's structures cost
    nothing, since its parent, a child, cannot deposit host pages."""
    w = make_world(max_depth=3, page_costs=PageCosts(initialize_partition=0, create_vp=0))
    c = w.active_child(privileges=int(w.sim.config.child_default_privileges | PP.CreatePartitions), spare=8)
    gc = w.new_child(parent=c)
    assert w.by_id(C.InitializePartition, gc, caller=c) is S.SUCCESS
    assert w.create_vp(gc, 0, caller=c) is S.SUCCESS
    return w, c, gc


@FOUR_CALLS
def test_a_grandparent_is_access_denied_and_only_the_parent_maps(make_world: MakeWorld, call: CallFn) -> None:
    w, c, gc = nested(make_world)
    (src,) = w.host_pages(1)
    res = call(w, gc, src, None)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)
    assert call(w, gc, src, c).status is not S.ACCESS_DENIED  # C is GC's parent


def test_a_nested_parent_maps_from_its_own_gpa_space(make_world: MakeWorld) -> None:
    w, c, gc = nested(make_world)
    src = w.host_pages(2)
    ok(map_raw(w, c, 0x40, [src[0]], RW), 1)
    ok(map_raw(w, c, 0x41, [0], F.NO_ACCESS), 1)
    # The sources are C's GPA pages: unmapped in C, inaccessible in C, beyond C's space.
    assert map_raw(w, gc, 0, [0x42], RW, caller=c).status is S.OPERATION_DENIED
    assert map_raw(w, gc, 0, [0x41], RW, caller=c).status is S.OPERATION_DENIED
    assert map_raw(w, gc, 0, [limit(w)], RW, caller=c).status is S.INVALID_PARAMETER
    # A host page number is not a GPA page of C (src[1] is not mapped in C).
    assert map_raw(w, gc, 0, [src[1]], RW, caller=c).status is S.OPERATION_DENIED
    # A good source gets as far as the grandchild's pool, which nobody can fill.
    res = map_raw(w, gc, 0, [0x40], RW, caller=c)
    assert (res.status, res.reps_completed) == (S.INSUFFICIENT_MEMORY, 0)
    # A child may not map into its own GPA space (only the root has an identity map to adjust).
    assert map_raw(w, SELF, 0x50, [0x40], RW, caller=c).status is S.ACCESS_DENIED


@FOUR_CALLS
def test_a_nonexistent_target_is_invalid_partition_id(world: World, call: CallFn) -> None:
    (src,) = world.host_pages(1)
    res = call(world, 0x1234, src, None)
    assert (res.status, res.reps_completed) == (S.INVALID_PARTITION_ID, 0)


@FOUR_CALLS
def test_7_6_87_a_created_target_is_invalid_partition_state(world: World, created: int, call: CallFn) -> None:
    (src,) = world.host_pages(1)
    res = call(world, created, src, None)
    assert (res.status, res.reps_completed) == (S.INVALID_PARTITION_STATE, 0)


@FOUR_CALLS
def test_a_finalized_target_is_invalid_partition_state(world: World, child: int, call: CallFn) -> None:
    (src,) = world.host_pages(1)
    ok(map_raw(world, child, 0x10, [src], RW), 1)
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    res = call(world, child, src, None)
    assert (res.status, res.reps_completed) == (S.INVALID_PARTITION_STATE, 0)


# --- MapGpaPages / MapSparseGpaPages: flags -----------------------------------------------------------
BAD_MAP_FLAGS = {
    "W-only": F.WRITABLE,
    "X-only": F.EXECUTABLE,
    "kernel-X-only": F.KERNEL_EXECUTABLE,
    "user-X-only": F.USER_EXECUTABLE,
    "W+X": F.WRITABLE | F.EXECUTABLE,
    "reserved-0x00400000": R | 0x0040_0000,
    "reserved-0x10": R | 0x10,
    "CLEAR_ACCESSED": R | F.CLEAR_ACCESSED,
    "SET_ACCESSED": R | F.SET_ACCESSED,
    "CLEAR_DIRTY": R | F.CLEAR_DIRTY,
    "SET_DIRTY": R | F.SET_DIRTY,
    "DONT_SET_RANGE_ACCESSED": R | F.DONT_SET_RANGE_ACCESSED,
    "NO_ACCESS+R": F.NO_ACCESS | R,
    "ZEROED+RW": F.ZEROED | RW,
    "ONES+RW": F.ONES | RW,
}


@pytest.mark.parametrize("flags", list(BAD_MAP_FLAGS.values()), ids=list(BAD_MAP_FLAGS))
def test_7_6_85_86_illegal_map_flags_are_invalid_parameter(world: World, child: int, flags: int) -> None:
    (src,) = world.host_pages(1)
    before = world.balance(child)
    for res in (map_raw(world, child, 0x10, [src], flags), sparse_raw(world, child, [(0x10, src)], flags)):
        assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert rights(world, child, 0x10) == "-"
    assert world.balance(child) == before and mapped(world, src) == 0


GOOD_MAP_FLAGS = {
    "none": 0,
    "R": R,
    "RW": RW,
    "RX": RX,
    "R+kernel-X": R | F.KERNEL_EXECUTABLE,
    "RWX": RWX,
    "RW+ADJUSTABLE": RW | F.ADJUSTABLE,
    "RW+NO_OVERLAY": RW | F.NO_OVERLAY,
    "RW+NOT_CACHED": RW | F.NOT_CACHED,
}


@pytest.mark.parametrize("flags", list(GOOD_MAP_FLAGS.values()), ids=list(GOOD_MAP_FLAGS))
def test_legal_access_combinations_map(world: World, child: int, flags: int) -> None:
    src = world.host_pages(2)
    ok(map_raw(world, child, 0x10, [src[0]], flags), 1)
    ok(sparse_raw(world, child, [(0x20, src[1])], flags), 1)
    expected = "0" if not flags & R else "rw" if flags & F.WRITABLE else "r"
    assert rights(world, child, 0x10) == rights(world, child, 0x20) == expected
    assert mapped(world, src[0]) == mapped(world, src[1]) == 1


def test_backing_only_mappings_need_no_host_page(world: World, child: int) -> None:
    """NO_ACCESS, ZEROED and ONES map no host page (Linux passes source GPFN 0)."""
    ok(map_raw(world, child, 0x10, [0], F.NO_ACCESS), 1)
    ok(map_raw(world, child, 0x11, [0], F.ZEROED | R), 1)
    ok(map_raw(world, child, 0x12, [0], F.ONES | R), 1)
    assert [rights(world, child, p) for p in (0x10, 0x11, 0x12)] == ["0", "r", "r"]
    assert world.sim.hv.memory.mapped_total == 0
    with pytest.raises(ValueError, match="not backed"):
        world.api.read_guest(child, 0x11 << 12, 8)


def test_header_padding_is_invalid_parameter(world: World, child: int) -> None:
    (src,) = world.host_pages(1)
    assert map_raw(world, child, 0x10, [src], RW, padding=1).status is S.INVALID_PARAMETER
    assert sparse_raw(world, child, [(0x10, src)], RW, reserved=1).status is S.INVALID_PARAMETER
    assert unmap_raw(world, child, 0x10, 1, padding=1).status is S.INVALID_PARAMETER
    assert unmap_raw(world, child, 0x10, 1, flags=0x4).status is S.INVALID_PARAMETER  # unknown unmap flag
    assert modify_raw(world, child, [0x10], R, reserved=1).status is S.INVALID_PARAMETER
    assert rights(world, child, 0x10) == "-"


# --- MapGpaPages: addresses ----------------------------------------------------------------------
def test_7_6_84_target_beyond_the_gpa_space_is_invalid_parameter(world: World, child: int) -> None:
    src = world.host_pages(2)
    top = limit(world)
    res = map_raw(world, child, top, [src[0]], RW)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    res = sparse_raw(world, child, [(top - 1, src[0]), (top, src[1])], RW)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 1)
    # The last page of the space maps; the rep after it is beyond: partial progress.
    res = map_raw(world, child, top - 1, src, RW)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 1)
    assert rights(world, child, top - 1) == "rw" and mapped(world, src[1]) == 0
    check(world)


def test_source_beyond_the_callers_gpa_space_is_invalid_parameter(world: World, child: int) -> None:
    (good,) = world.host_pages(1)
    beyond = world.sim.config.host_pages  # the root's GPA space is host RAM
    res = map_raw(world, child, 0x10, [good, beyond], RW)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 1)
    res = sparse_raw(world, child, [(0x20, beyond + 100)], RW)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert rights(world, child, 0x10) == "rw" and rights(world, child, 0x11) == "-"


def test_large_pages_must_be_2mib_aligned(world: World, child: int) -> None:
    start = aligned_run(world)
    large = RW | F.LARGE_PAGE
    for base, source in ((1, start), (LARGE_PAGE_PAGES, start + 1), (LARGE_PAGE_PAGES + 8, start + 8)):
        res = map_raw(world, child, base, [source], large)
        assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0), (base, source)
    res = sparse_raw(world, child, [(LARGE_PAGE_PAGES, start + 1)], large)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert not gpa_of(world, child) and world.sim.hv.memory.mapped_total == 0
    # The large page's last 4 KiB must lie inside the GPA space as well.
    res = map_raw(world, child, limit(world) - LARGE_PAGE_PAGES, [start], large)
    ok(res, 1)
    res = unmap_raw(world, child, limit(world) - LARGE_PAGE_PAGES, 2, UNMAP_GPA_LARGE_PAGE)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 1)  # partial progress
    assert world.sim.hv.memory.mapped_total == 0


def test_7_4_57_a_deposited_source_page_is_operation_denied(world: World, child: int) -> None:
    g1, g2 = world.host_pages(2)
    ok(world.deposit(child, [g1]), 1)
    other = world.new_child()
    ok(world.deposit(other, [g2]), 1)
    before = world.balance(child)
    for res in (
        map_raw(world, child, 0x10, [g1], RW),
        map_raw(world, child, 0x10, [g2], R),
        sparse_raw(world, child, [(0x10, g1)], RW),
        sparse_raw(world, child, [(0x11, g2)], R),
    ):
        assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 0)
    assert world.balance(child) == before and rights(world, child, 0x10) == "-"


def test_a_large_page_covering_a_deposited_page_is_operation_denied(world: World, child: int) -> None:
    start = aligned_run(world)
    ok(world.deposit(SELF, [start + 300]), 1)
    res = map_raw(world, child, 0, [start], RW | F.LARGE_PAGE)
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 0)
    assert not gpa_of(world, child) and world.sim.hv.memory.mapped_total == 0


# --- pool charges and INSUFFICIENT_MEMORY ---------------------------------------------------------
def test_one_page_table_page_per_2mib_region(world: World, child: int) -> None:
    cost = world.page_costs.gpa_table
    before = in_use(world, child)
    src = world.host_pages(4)
    ok(map_raw(world, child, 0, src[:2], RW), 2)  # region 0
    assert in_use(world, child) == before + cost
    ok(map_raw(world, child, 511, [src[2]], RW), 1)  # still region 0
    assert in_use(world, child) == before + cost
    ok(map_raw(world, child, 512, [src[3]], RW), 1)  # region 1
    assert in_use(world, child) == before + 2 * cost
    ok(unmap_raw(world, child, 512, 1), 1)  # region 1 empty: its table is refunded
    assert in_use(world, child) == before + cost
    ok(unmap_raw(world, child, 0, 512), 512)
    assert in_use(world, child) == before
    check(world)


def test_free_page_tables_satisfy_the_mapping_checker(make_world: MakeWorld) -> None:
    w = make_world(page_costs=PageCosts(gpa_table=0))
    c = w.active_child()
    ok(map_raw(w, c, 0, w.host_pages(2), RW), 2)
    assert w.balance(c).pages_available == 0
    try:
        check(w)
    finally:
        assert w.by_id(C.FinalizePartition, c) is S.SUCCESS  # no mappings left for the teardown check


def test_insufficient_memory_stops_at_the_first_page_of_an_unpaid_region(world: World) -> None:
    c = world.active_child(spare=world.page_costs.gpa_table)  # one region's table, no more
    src = world.host_pages(4)
    res = sparse_raw(world, c, [(5, src[0]), (6, src[1]), (600, src[2]), (7, src[3])], RW)
    assert (res.status, res.reps_completed) == (S.INSUFFICIENT_MEMORY, 2)
    assert [rights(world, c, p) for p in (5, 6, 600, 7)] == ["rw", "rw", "-", "-"]
    assert mapped(world, src[2]) == 0
    world.fund(c, world.page_costs.gpa_table)
    ok(sparse_raw(world, c, [(5, src[0]), (6, src[1]), (600, src[2]), (7, src[3])], RW, rep_start=2), 4)
    assert [rights(world, c, p) for p in (5, 6, 600, 7)] == ["rw"] * 4
    check(world)


def test_a_large_page_needs_its_regions_table(world: World) -> None:
    c = world.active_child()
    start = aligned_run(world)
    res = map_raw(world, c, 0, [start], RW | F.LARGE_PAGE)
    assert (res.status, res.reps_completed) == (S.INSUFFICIENT_MEMORY, 0)
    assert not gpa_of(world, c)
    world.fund(c, world.page_costs.gpa_table)
    ok(map_raw(world, c, 0, [start], RW | F.LARGE_PAGE), 1)
    assert world.balance(c).pages_available == 0


def test_insufficient_memory_reports_absolute_reps_within_one_invocation(world: World) -> None:
    """One invocation crossing into an unpaid region: reps completed counts from element 0, and a
    re-issue with rep start = reps completed finishes the rest (7.4/67 in one call)."""
    c = world.active_child(spare=world.page_costs.gpa_table)
    src = world.host_pages(256)
    res = map_raw(world, c, 384, src, RW)  # pages 384..639: region 0 paid, region 1 not
    assert (res.status, res.reps_completed) == (S.INSUFFICIENT_MEMORY, 128)
    world.fund(c, world.page_costs.gpa_table)
    ok(map_raw(world, c, 384, src, RW, rep_start=128), 256)
    assert sorted(gpa_of(world, c)) == list(range(384, 640))
    check(world)


# --- rep semantics ---------------------------------------------------------------------------------
def test_rep_start_and_absolute_reps_completed(world: World, child: int) -> None:
    src = world.host_pages(10)
    res = map_raw(world, child, 0x100, src, RW, rep_start=4)
    ok(res, 10)
    assert sorted(gpa_of(world, child)) == list(range(0x104, 0x10A))  # elements 0-3 were skipped
    assert [mapped(world, p) for p in src] == [0] * 4 + [1] * 6
    ok(unmap_raw(world, child, 0x100, 10, rep_start=7), 10)
    assert sorted(gpa_of(world, child)) == list(range(0x104, 0x107))


def test_a_long_map_is_cut_by_the_time_budget_and_continued(world: World, child: int) -> None:
    cfg = world.sim.config
    cost = cfg.cost(C.MapGpaPages)
    assert cfg.rep_budget_ns is not None
    fit = (cfg.rep_budget_ns - cost.base_ns) // cost.per_rep_ns
    count = 509  # as many elements as fit one parameter page
    assert fit < count
    src = world.host_pages(count)
    res = map_raw(world, child, 0, src, RW)
    ok(res, fit)  # SUCCESS with fewer reps: continue
    assert len(gpa_of(world, child)) == fit
    ok(map_raw(world, child, 0, src, RW, rep_start=fit), count)
    assert sorted(gpa_of(world, child)) == list(range(count))
    # The same through HostApi, which continues by itself.
    out = world.run(world.api.map_gpa_pages(child, 1024, src, R))
    assert (out.status, out.reps_completed, out.invocations) == (S.SUCCESS, count, 2)
    out = world.run(world.api.unmap_gpa_pages(child, 0, 2048))
    unmap_cost = cfg.cost(C.UnmapGpaPages)
    unmap_fit = (cfg.rep_budget_ns - unmap_cost.base_ns) // unmap_cost.per_rep_ns
    assert (out.status, out.reps_completed) == (S.SUCCESS, 2048)
    assert out.invocations == -(-2048 // unmap_fit)
    assert not gpa_of(world, child) and world.sim.hv.memory.mapped_total == 0


def test_host_api_batches_beyond_one_parameter_page(world: World, child: int) -> None:
    src = world.host_pages(1200)
    out = world.run(world.api.map_gpa_pages(child, 0, src, RW))
    assert (out.status, out.reps_completed) == (S.SUCCESS, 1200)
    pairs = [(4096 + 2 * i, p) for i, p in enumerate(src[:300])]
    out = world.run(world.api.map_sparse_gpa_pages(child, pairs, R))
    assert (out.status, out.reps_completed) == (S.SUCCESS, 300)
    out = world.run(world.api.modify_sparse_gpa_pages(child, list(range(1200)), R))
    assert (out.status, out.reps_completed) == (S.SUCCESS, 1200)
    assert rights(world, child, 1199) == "r"
    assert mapped(world, src[0]) == 2 and mapped(world, src[300]) == 1
    check(world)


# --- sharing, replacing, unmapping -------------------------------------------------------------------
def test_7_6_88_the_same_source_page_maps_twice_and_into_two_children(world: World, child: int) -> None:
    (src,) = world.host_pages(1)
    other = world.active_child(spare=4)
    ok(map_raw(world, child, 0x10, [src], RW), 1)
    ok(map_raw(world, child, 0x800, [src], R), 1)
    ok(sparse_raw(world, other, [(0x30, src)], RW), 1)
    assert mapped(world, src) == 3
    world.api.write_guest(child, 0x10 << 12 | 0x20, b"shared")
    assert world.api.read_guest(child, 0x800 << 12 | 0x20, 6) == b"shared"
    assert world.api.read_guest(other, 0x30 << 12 | 0x20, 6) == b"shared"
    assert rights(world, child, 0x800) == "r"
    check(world)
    ok(unmap_raw(world, child, 0x10, 1), 1)
    assert mapped(world, src) == 2
    assert world.deposit(SELF, [src]).status is S.OPERATION_DENIED  # still mapped elsewhere


def test_a_successful_map_replaces_the_previous_mapping(world: World, child: int) -> None:
    a, b = world.host_pages(2)
    ok(map_raw(world, child, 0x10, [a], RW), 1)
    world.api.write_guest(child, 0x10 << 12, b"A")
    before = world.balance(child)
    ok(map_raw(world, child, 0x10, [b], R), 1)
    assert (mapped(world, a), mapped(world, b)) == (0, 1)
    assert rights(world, child, 0x10) == "r"
    assert world.api.read_guest(child, 0x10 << 12, 1) == b"\0"
    assert world.balance(child) == before  # same region: no new table
    ok(sparse_raw(world, child, [(0x10, a)], RW), 1)  # the legacy rule: sparse maps replace too
    assert (mapped(world, a), mapped(world, b)) == (1, 0)
    assert world.api.read_guest(child, 0x10 << 12, 1) == b"A"
    assert world.deposit(SELF, [b]).status is S.SUCCESS  # no longer mapped anywhere


def test_sparse_map_onto_a_mapped_page_is_object_in_use_when_configured(make_world: MakeWorld) -> None:
    w = make_world(sparse_map_requires_unmapped=True)
    c = w.active_child(spare=4)
    a, b, d = w.host_pages(3)
    ok(sparse_raw(w, c, [(0x10, a)], RW), 1)
    res = sparse_raw(w, c, [(0x11, b), (0x10, d)], RW)
    assert (res.status, res.reps_completed) == (S.OBJECT_IN_USE, 1)
    assert (mapped(w, a), mapped(w, b), mapped(w, d)) == (1, 1, 0)
    ok(unmap_raw(w, c, 0x10, 1), 1)
    ok(sparse_raw(w, c, [(0x11, b), (0x10, d)], RW, rep_start=1), 2)
    assert (mapped(w, a), mapped(w, d)) == (0, 1)
    # MapGpaPages still replaces.
    ok(map_raw(w, c, 0x10, [a], RW), 1)
    assert (mapped(w, a), mapped(w, d)) == (1, 0)


def test_7_6_89_unmapping_unmapped_pages_succeeds(world: World, child: int) -> None:
    before = world.balance(child)
    ok(unmap_raw(world, child, 0x5000, 100), 100)
    (src,) = world.host_pages(1)
    ok(map_raw(world, child, 0x10, [src], RW), 1)
    ok(unmap_raw(world, child, 0x0, 0x20), 0x20)  # mapped and unmapped pages alike
    ok(unmap_raw(world, child, 0x10, 1), 1)  # again
    assert world.balance(child) == before and mapped(world, src) == 0
    assert world.sim.hv.partitions[child].gpa_regions == {}


def test_unmap_target_beyond_the_gpa_space_is_invalid_parameter_with_progress(
    world: World, child: int
) -> None:
    top = limit(world)
    res = unmap_raw(world, child, top - 2, 4)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 2)


def test_keep_precommitted_keeps_the_regions_page_table(world: World, child: int) -> None:
    cost = world.page_costs.gpa_table
    before = in_use(world, child)
    a, b = world.host_pages(2)
    ok(map_raw(world, child, 0x600, [a], RW), 1)
    assert in_use(world, child) == before + cost
    ok(unmap_raw(world, child, 0x600, 1, UNMAP_GPA_KEEP_PRECOMMITTED), 1)
    assert in_use(world, child) == before + cost  # still committed
    assert mapped(world, a) == 0 and rights(world, child, 0x600) == "-"
    check(world)
    empty_pool(world, child)
    ok(map_raw(world, child, 0x601, [b], RW), 1)  # no deposit needed: the table is still there
    assert in_use(world, child) == before + cost
    ok(unmap_raw(world, child, 0x601, 1), 1)  # without the flag the empty region's table goes
    assert in_use(world, child) == before
    assert world.balance(child).pages_available == cost
    check(world)


def test_large_page_map_and_unmap(world: World, child: int) -> None:
    start = aligned_run(world, 2)
    sources = [start, start + LARGE_PAGE_PAGES]
    before = in_use(world, child)
    ok(map_raw(world, child, 2 * LARGE_PAGE_PAGES, sources, RW | F.LARGE_PAGE), 2)
    assert len(gpa_of(world, child)) == 2 * LARGE_PAGE_PAGES
    assert in_use(world, child) == before + 2 * world.page_costs.gpa_table
    assert all(mapped(world, start + k) == 1 for k in range(0, 2 * LARGE_PAGE_PAGES, 37))
    world.api.write_guest(child, (3 * LARGE_PAGE_PAGES + 5) << 12, b"big")
    assert world.sim.hv.memory.read(start + LARGE_PAGE_PAGES + 5, 0, 3) == b"big"
    check(world)
    res = unmap_raw(world, child, 2 * LARGE_PAGE_PAGES + 1, 1, UNMAP_GPA_LARGE_PAGE)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)  # misaligned
    ok(unmap_raw(world, child, 2 * LARGE_PAGE_PAGES, 2, UNMAP_GPA_LARGE_PAGE), 2)
    assert not gpa_of(world, child) and world.sim.hv.memory.mapped_total == 0
    assert in_use(world, child) == before
    # A large unmap also removes a region mapped page by page.
    ok(map_raw(world, child, 0, [start + 3, start + 9], RW), 2)
    ok(unmap_raw(world, child, 0, 1, UNMAP_GPA_LARGE_PAGE), 1)
    assert not gpa_of(world, child)


def test_through_host_api_large_page_unmap_counts_2mib_pages(world: World, child: int) -> None:
    start = aligned_run(world)
    out = world.run(world.api.map_gpa_pages(child, 0, [start], RW | F.LARGE_PAGE))
    assert (out.status, out.reps_completed) == (S.SUCCESS, 1)
    out = world.run(world.api.unmap_gpa_pages(child, 0, 1, UNMAP_GPA_LARGE_PAGE))
    assert (out.status, out.reps_completed) == (S.SUCCESS, 1)
    assert not gpa_of(world, child)


# --- ModifySparseGpaPages ----------------------------------------------------------------------------
def test_modify_changes_access_rights_of_mapped_pages(world: World, child: int) -> None:
    src = world.host_pages(3)
    ok(map_raw(world, child, 0x10, src, RWX), 3)
    before = world.balance(child)
    ok(modify_raw(world, child, [0x10, 0x12], R), 2)
    assert [rights(world, child, p) for p in (0x10, 0x11, 0x12)] == ["r", "rw", "r"]
    ok(modify_raw(world, child, [0x10], 0), 1)  # no access at all
    assert rights(world, child, 0x10) == "0"
    ok(modify_raw(world, child, [0x10], RW | F.NOT_CACHED), 1)
    assert rights(world, child, 0x10) == "rw"
    assert probe(world, child, 0x10)[1] == CACHE_TYPE_UNCACHED
    assert probe(world, child, 0x11)[1] == CACHE_TYPE_WRITEBACK
    ok(modify_raw(world, child, [0x10], RW), 1)  # caching is a modifiable attribute too
    assert probe(world, child, 0x10)[1] == CACHE_TYPE_WRITEBACK
    # Only attributes change: the host pages behind the mappings and the pool stay the same.
    assert [mapped(world, p) for p in src] == [1, 1, 1]
    assert [gpa_of(world, child)[g].spa for g in (0x10, 0x11, 0x12)] == src
    assert world.balance(child) == before


def test_modify_stops_at_an_unmapped_page(world: World, child: int) -> None:
    src = world.host_pages(2)
    ok(map_raw(world, child, 0x10, src, RW), 2)
    res = modify_raw(world, child, [0x10, 0x99, 0x11], R)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 1)
    assert [rights(world, child, p) for p in (0x10, 0x99, 0x11)] == ["r", "-", "rw"]
    assert modify_raw(world, child, [limit(world)], R).status is S.INVALID_PARAMETER
    ok(map_raw(world, child, 0x20, [0], F.ZEROED | R), 1)
    res = modify_raw(world, child, [0x20], R)  # no host page behind it: nothing to re-attribute
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert not gpa_of(world, child).get(0x99)  # never creates a mapping


BAD_MODIFY_FLAGS = {
    "W-only": F.WRITABLE,
    "X-only": F.EXECUTABLE,
    "W+X": F.WRITABLE | F.EXECUTABLE,
    "reserved-0x00400000": R | 0x0040_0000,
    "LARGE_PAGE": R | F.LARGE_PAGE,
    "ADJUSTABLE": R | F.ADJUSTABLE,
    "NO_OVERLAY": R | F.NO_OVERLAY,
    "NO_ACCESS": F.NO_ACCESS,
    "ZEROED": R | F.ZEROED,
}


@pytest.mark.parametrize("flags", list(BAD_MODIFY_FLAGS.values()), ids=list(BAD_MODIFY_FLAGS))
def test_modify_with_immutable_or_illegal_flags_is_invalid_parameter(
    world: World, child: int, flags: int
) -> None:
    (src,) = world.host_pages(1)
    ok(map_raw(world, child, 0x10, [src], RW), 1)
    res = modify_raw(world, child, [0x10], flags)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)
    assert rights(world, child, 0x10) == "rw"


def test_modify_accessed_and_dirty_requests_keep_the_rights(world: World, child: int) -> None:
    src = world.host_pages(2)
    ok(map_raw(world, child, 0x10, src, RW), 2)
    gpa = gpa_of(world, child)
    ok(modify_raw(world, child, [0x10, 0x11], F.SET_ACCESSED | F.SET_DIRTY), 2)
    assert rights(world, child, 0x10) == rights(world, child, 0x11) == "rw"
    assert gpa[0x10].flags & (ACCESSED | DIRTY) == ACCESSED | DIRTY
    ok(modify_raw(world, child, [0x10], F.CLEAR_DIRTY), 1)
    assert gpa[0x10].flags & (ACCESSED | DIRTY) == ACCESSED
    assert gpa[0x11].flags & (ACCESSED | DIRTY) == ACCESSED | DIRTY
    ok(modify_raw(world, child, [0x11], F.CLEAR_ACCESSED | F.DONT_SET_RANGE_ACCESSED), 1)
    assert gpa[0x11].flags & (ACCESSED | DIRTY) == DIRTY
    # Rights together with a state update: both apply.
    ok(modify_raw(world, child, [0x11], R | F.SET_ACCESSED), 1)
    assert rights(world, child, 0x11) == "r" and gpa[0x11].flags & ACCESSED
    # A state update on an unmapped page is still an unmapped page.
    assert modify_raw(world, child, [0x12], F.SET_ACCESSED).status is S.INVALID_PARAMETER


def test_modify_on_the_roots_own_space_is_invalid_parameter(world: World) -> None:
    (g,) = world.host_pages(1)
    res = modify_raw(world, SELF, [g], R)
    assert (res.status, res.reps_completed) == (S.INVALID_PARAMETER, 0)


# --- the root's identity map ------------------------------------------------------------------------
def test_the_root_changes_the_rights_of_its_identity_map_only(world: World) -> None:
    g = world.host_pages(4)
    before = world.balance(SELF)
    ok(map_raw(world, SELF, g[0], [g[0]], R), 1)
    ok(map_raw(world, SELF, g[1], [g[1], g[1] + 1], RW), 2)  # contiguous from the base
    ok(sparse_raw(world, SELF, [(g[3], g[3])], RWX), 1)
    assert world.balance(SELF) == before  # the identity map exists from boot: no page tables
    assert world.sim.hv.memory.mapped_total == 0  # nothing is shared with a child
    res = map_raw(world, SELF, g[0], [g[1]], R)  # not the identity
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)
    res = map_raw(world, SELF, g[0], [g[0], g[0] + 2], R)  # not contiguous
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 1)
    res = sparse_raw(world, SELF, [(g[0], g[0]), (g[2], g[3])], R)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 1)
    assert unmap_raw(world, SELF, g[0], 1).status is S.ACCESS_DENIED  # never unmap its own RAM
    ok(world.deposit(SELF, [g[2]]), 1)  # pages whose rights were not touched stay depositable


def test_the_root_cannot_adjust_a_deposited_page_of_its_identity_map(world: World, created: int) -> None:
    (g,) = world.host_pages(1)
    ok(world.deposit(created, [g]), 1)
    res = map_raw(world, SELF, g, [g], R)
    assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)


def test_the_root_cannot_adjust_its_identity_map_beyond_host_ram(world: World) -> None:
    beyond = world.sim.config.host_pages + 5
    res = map_raw(world, SELF, beyond, [beyond], R)
    assert res.status in (S.INVALID_PARAMETER, S.ACCESS_DENIED)


def test_the_root_cannot_back_its_own_ram_with_the_zero_page(world: World) -> None:
    (g,) = world.host_pages(1)
    for flags in (F.ZEROED | R, F.ONES | R):
        res = map_raw(world, SELF, g, [0], flags)
        assert (res.status, res.reps_completed) == (S.ACCESS_DENIED, 0)


def test_a_page_the_root_made_inaccessible_does_not_map_into_a_child(world: World, child: int) -> None:
    (g,) = world.host_pages(1)
    ok(map_raw(world, SELF, g, [g], 0), 1)  # no access for the root itself
    res = map_raw(world, child, 0x10, [g], RW)
    assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 0)


# --- deposits and FinalizePartition --------------------------------------------------------------
def test_7_4_58_a_mapped_page_cannot_be_deposited_until_unmapped(world: World, child: int) -> None:
    (g,) = world.host_pages(1)
    ok(map_raw(world, child, 0x10, [g], RW), 1)
    for target in (child, SELF):
        res = world.deposit(target, [g])
        assert (res.status, res.reps_completed) == (S.OPERATION_DENIED, 0)
    ok(unmap_raw(world, child, 0x10, 1), 1)
    ok(world.deposit(child, [g]), 1)


def test_finalize_releases_every_mapping(world: World, child: int) -> None:
    start = aligned_run(world)
    small = world.host_pages(8)
    other = world.active_child(spare=4)
    ok(map_raw(world, child, 0, [start], RW | F.LARGE_PAGE), 1)
    ok(sparse_raw(world, child, [(0x9000 + i, p) for i, p in enumerate(small)], R), 8)
    ok(map_raw(world, child, 0x7000, [0], F.ZEROED | R), 1)
    ok(map_raw(world, other, 0x10, [small[0]], RW), 1)
    memory = world.sim.hv.memory
    assert memory.mapped_total == LARGE_PAGE_PAGES + 8 + 1
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    check(world)
    assert memory.mapped_total == 1 and mapped(world, small[0]) == 1  # the other child's mapping stays
    assert not gpa_of(world, child) and not world.sim.hv.partitions[child].gpa_regions
    assert world.balance(child).pages_in_use == 0
    # The pages are the host's alone again: depositable (except the one still mapped elsewhere).
    out = world.run(world.api.deposit(SELF, list(range(start, start + LARGE_PAGE_PAGES)) + small[1:]))
    assert (out.status, out.reps_completed) == (S.SUCCESS, LARGE_PAGE_PAGES + 7)
    assert world.deposit(SELF, [small[0]]).status is S.OPERATION_DENIED
    assert world.by_id(C.FinalizePartition, other) is S.SUCCESS
    assert memory.mapped_total == 0
    ok(world.deposit(SELF, [small[0]]), 1)
    # The finalized children drain and delete as usual.
    for pid in (child, other):
        world.sim.free_host_pages(world.drain(pid))
        assert world.by_id(C.DeletePartition, pid) is S.SUCCESS
    check(world)


# --- guest memory contents --------------------------------------------------------------------------
def test_write_guest_and_read_guest_go_through_the_mappings(world: World, child: int) -> None:
    src = world.host_pages(3)
    ok(sparse_raw(world, child, [(0x20, src[2]), (0x21, src[0]), (0x22, src[1])], RW), 3)
    data = bytes(range(256)) * 20  # 5120 bytes: crosses from page 0x20 into 0x21 and 0x22
    world.api.write_guest(child, (0x20 << 12) + 0xF00, data)
    assert world.api.read_guest(child, (0x20 << 12) + 0xF00, len(data)) == data
    memory = world.sim.hv.memory
    assert memory.read(src[2], 0xF00, 0x100) == data[:0x100]
    assert memory.read(src[0], 0, 4096) == data[0x100:0x1100]
    assert memory.read(src[1], 0, 0x300) == data[0x1100:]
    assert world.api.read_guest(child, 0x30 << 12, 0) == b""
    with pytest.raises(ValueError, match="not backed"):
        world.api.write_guest(child, (0x22 << 12) + 0xFFF, b"xy")  # page 0x23 is unmapped
    with pytest.raises(ValueError, match="not backed"):
        world.api.read_guest(child, 0x40 << 12, 1)


def test_7_4_60_withdrawn_pages_are_zero_filled_and_accessible_again(world: World, child: int) -> None:
    (g,) = world.host_pages(1)
    ok(map_raw(world, child, 0x10, [g], RW), 1)
    world.api.write_guest(child, 0x10 << 12, b"secret" * 100)
    ok(unmap_raw(world, child, 0x10, 1), 1)
    empty_pool(world, child)
    ok(world.deposit(child, [g]), 1)
    res = world.withdraw(child, 1)
    ok(res, 1)
    assert int.from_bytes(res.output[:8], "little") == g
    world.fund(child, world.page_costs.gpa_table)
    ok(map_raw(world, child, 0x10, [g], RW), 1)
    assert world.api.read_guest(child, 0x10 << 12, 4096) == bytes(4096)
