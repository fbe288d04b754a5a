"""GPA mapping hypercalls: MapGpaPages, MapSparseGpaPages, UnmapGpaPages, ModifySparseGpaPages
(HYPERCALLS.md 4.16-4.19, 5.7), and the guest-physical memory they give a partition.

A partition's GPA page is unmapped, or mapped to a host page with access flags (or to no backing:
NO_ACCESS, ZEROED, ONES). The root's own GPA space is host RAM, identity-mapped. A host page mapped
into a child stays host-owned and host-accessible (shared memory); it cannot be deposited while
mapped, and a deposited page cannot be mapped. The target's pool pays one page per 2 MiB GPA region
holding mappings (its page table), charged when the region's first page is mapped and refunded when
its last is unmapped (unless KEEP_PRECOMMITTED). Every change is counted in ``HostMemory.mapped``,
which the mapping checker holds against the partitions' maps.
"""

from __future__ import annotations

import struct

from hvsim.actors.hvdef import (
    GPA_MAPPING_ELEMENT,
    GPA_PAGE_NUMBER_SIZE,
    LARGE_PAGE_PAGES,
    MAP_GPA_PAGES_HEADER,
    SPARSE_GPA_HEADER,
    UNMAP_GPA_KEEP_PRECOMMITTED,
    UNMAP_GPA_LARGE_PAGE,
    UNMAP_GPA_PAGES_HEADER,
    HvStatus,
    MapGpaFlags,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.memory import HOST
from hvsim.actors.model import GpaMapping, Partition, PartitionState
from hvsim.actors.state import CREATE_PARTITIONS, OK, HvState

S = HvStatus
F = MapGpaFlags
_U64 = struct.Struct("<Q")
#: Internal bits kept with a mapping's flags (above the 32 ABI bits): the page was read or written.
ACCESSED = 1 << 40
DIRTY = 1 << 41
_REGION_SHIFT = 9  # 512 pages = 2 MiB


def map_flags_ok(flags: int) -> bool:
    """Known bits only, and a legal access-right combination: none, R, R+W, R+X, R+W+X (x64)."""
    if flags & ~F.MAP_KNOWN:
        return False
    perms, backing = flags & F.PERMISSIONS, flags & F.BACKING_MASK
    if perms & (F.WRITABLE | F.EXECUTABLE) and not perms & F.READABLE:
        return False
    if backing == F.NO_ACCESS and perms:
        return False  # NO_ACCESS grants nothing
    return not (backing in (F.ZEROED, F.ONES) and perms & F.WRITABLE)  # shared read-only pages


class GpaCalls(HvState):
    # --- who may map where ------------------------------------------------------------------------
    def gpa_page_limit(self) -> int:
        """GPA page numbers of a child are below this (its GPA space width)."""
        return 1 << (self.config.guest_gpa_bits - 12)

    def _gpa_target(self, caller: Partition, partition_id: int) -> tuple[HvStatus, Partition | None]:
        """The parent (with CreatePartitions) on an ACTIVE child, or the root on itself."""
        if not caller.privileges & CREATE_PARTITIONS:
            return S.ACCESS_DENIED, None  # before the lookup: no probing for partition ids
        target = self.resolve(caller, partition_id)
        if target is None:
            return S.INVALID_PARTITION_ID, None
        own_identity_map = target is caller and caller.is_root
        if not own_identity_map and target.parent_id != caller.id:
            return S.ACCESS_DENIED, None
        if target.state is not PartitionState.ACTIVE:
            return S.INVALID_PARTITION_STATE, None
        return OK, target

    def source_page(self, caller: Partition, gpfn: int) -> tuple[HvStatus, int | None]:
        """The host page behind the caller's GPA page *gpfn*, if the caller may map it on."""
        if caller.is_root:
            if not 0 <= gpfn < self.memory.pages:
                return S.INVALID_PARAMETER, None  # beyond the caller's GPA space
            if self.memory.owner[gpfn] != HOST:
                return S.OPERATION_DENIED, None  # deposited: inaccessible to everyone
            own = caller.gpa.get(gpfn)  # rights the root set on its identity map
            if own is not None and not own.flags & F.READABLE:
                return S.OPERATION_DENIED, None
            return OK, gpfn
        if gpfn >= self.gpa_page_limit():
            return S.INVALID_PARAMETER, None
        mapping = caller.gpa.get(gpfn)
        if mapping is None or mapping.spa is None or not mapping.flags & F.READABLE:
            return S.OPERATION_DENIED, None  # unmapped (or inaccessible) in the caller
        return OK, mapping.spa

    # --- the mapping engine --------------------------------------------------------------------------
    def _map(self, target: Partition, gpfn: int, spa: int | None, flags: int, pages: int = 1) -> bool:
        """Map *pages* consecutive GPA pages from *gpfn* (sources from *spa* on); False if the pool
        cannot pay for a new region's page table (nothing changed)."""
        region = gpfn >> _REGION_SHIFT
        memory, child = self.memory, not target.is_root
        if region not in target.gpa_regions:
            # The root's identity map exists from boot: changing its rights builds no page table.
            if child and not self.charge(target, f"gpt:{region}", self.config.page_costs.gpa_table):
                return False
            target.gpa_regions[region] = 0
        for k in range(pages):
            page = spa + k if spa is not None else None
            old = target.gpa.get(gpfn + k)
            if old is None:
                target.gpa_regions[region] += 1
            elif old.spa is not None and child:
                memory.map_ref(old.spa, -1)
            target.gpa[gpfn + k] = GpaMapping(page, flags)
            if page is not None and child:
                memory.map_ref(page, +1)
        return True

    def _unmap(self, target: Partition, gpfn: int, keep: bool) -> None:
        old = target.gpa.pop(gpfn, None)
        if old is None:
            return  # already unmapped: a silent success
        if old.spa is not None and not target.is_root:
            self.memory.map_ref(old.spa, -1)
        region = gpfn >> _REGION_SHIFT
        target.gpa_regions[region] -= 1
        if not target.gpa_regions[region] and not keep:
            del target.gpa_regions[region]
            target.pool.release(f"gpt:{region}")

    def unmap_for_deposit(self, p: Partition, gpfn: int) -> None:
        self._unmap(p, gpfn, keep=True)  # the page table stays: the page comes back on withdraw

    def remap_after_withdraw(self, p: Partition, gpfn: int, spa: int, flags: int) -> None:
        # Cannot fail for want of a page table: the deposit kept the region's (and a nested host
        # with children cannot be finalized, which alone drops regions).
        self._map(p, gpfn, spa, flags)

    def remove_mappings(self, p: Partition) -> None:
        """Drop *p*'s whole address space (FinalizePartition); its page tables go with the pool."""
        for gpfn in list(p.gpa):
            self._unmap(p, gpfn, keep=True)
        for region in list(p.gpa_regions):
            p.pool.release(f"gpt:{region}")
        p.gpa_regions.clear()

    def _map_element(self, call: Call, target: Partition, gpfn: int, source: int, flags: int) -> HvStatus:
        """One rep of MapGpaPages / MapSparseGpaPages."""
        large = flags & F.LARGE_PAGE
        pages = LARGE_PAGE_PAGES if large else 1
        if gpfn + pages > self.gpa_page_limit():
            return S.INVALID_PARAMETER  # beyond the target's GPA space
        if large and (gpfn % LARGE_PAGE_PAGES or source % LARGE_PAGE_PAGES):
            return S.INVALID_PARAMETER  # [inferred] a 2 MiB page must be 2 MiB aligned
        stored = flags & ~F.LARGE_PAGE
        spa: int | None = None  # NO_ACCESS / ZEROED / ONES: no host page behind it
        if target is call.caller:  # the root adjusting its identity map's access rights
            memory = self.memory
            if gpfn != source or flags & F.BACKING_MASK:
                return S.ACCESS_DENIED  # never a non-identity mapping
            if gpfn + pages > memory.pages:
                return S.INVALID_PARAMETER  # beyond host RAM
            if any(memory.owner[page] != HOST for page in range(gpfn, gpfn + pages)):
                return S.ACCESS_DENIED  # the range includes an inaccessible (deposited) page
            spa = source
        elif flags & F.BACKING_MASK:
            pass  # Linux passes GPFN 0 as the source
        else:
            for k in range(pages):
                status, page = self.source_page(call.caller, source + k)
                if page is None:
                    return status
                if spa is None:
                    spa = page
                elif page != spa + k:
                    return S.INVALID_PARAMETER  # [inferred] a large page needs contiguous memory
        if not self._map(target, gpfn, spa, stored, pages):
            return S.INSUFFICIENT_MEMORY
        return OK

    # --- hypercalls ----------------------------------------------------------------------------------
    def map_gpa_pages(self, call: Call) -> HvStatus:
        hdr = MAP_GPA_PAGES_HEADER.unpack(call.input)
        status, target = self._gpa_target(call.caller, hdr.partition_id)
        if target is None:
            return status
        if not map_flags_ok(hdr.map_flags) or hdr.padding:
            return S.INVALID_PARAMETER
        step = LARGE_PAGE_PAGES if hdr.map_flags & F.LARGE_PAGE else 1
        base, data = 24 + call.var_bytes, call.input
        i = call.rep_start
        while i < call.rep_limit:
            source = _U64.unpack_from(data, base + GPA_PAGE_NUMBER_SIZE * i)[0]
            status = self._map_element(call, target, hdr.target_gpa_base + step * i, source, hdr.map_flags)
            if status is not OK:
                break
            i += 1
        return self.rep_finished(call, i, target, status)

    def map_sparse_gpa_pages(self, call: Call) -> HvStatus:
        hdr = SPARSE_GPA_HEADER.unpack(call.input)
        status, target = self._gpa_target(call.caller, hdr.partition_id)
        if target is None:
            return status
        if not map_flags_ok(hdr.map_flags) or hdr.reserved:
            return S.INVALID_PARAMETER
        base, data = 16 + call.var_bytes, call.input
        i = call.rep_start
        while i < call.rep_limit:
            element = GPA_MAPPING_ELEMENT.unpack(data, base + GPA_MAPPING_ELEMENT.size * i)
            if self.config.sparse_map_requires_unmapped and element.target_gpa_page in target.gpa:
                status = S.OBJECT_IN_USE
                break
            status = self._map_element(
                call, target, element.target_gpa_page, element.source_gpa_page, hdr.map_flags
            )
            if status is not OK:
                break
            i += 1
        return self.rep_finished(call, i, target, status)

    def unmap_gpa_pages(self, call: Call) -> HvStatus:
        hdr = UNMAP_GPA_PAGES_HEADER.unpack(call.input)
        status, target = self._gpa_target(call.caller, hdr.partition_id)
        if target is None:
            return status
        if target is call.caller:
            return S.ACCESS_DENIED  # the root may not unmap its own RAM
        if hdr.unmap_flags & ~(UNMAP_GPA_LARGE_PAGE | UNMAP_GPA_KEEP_PRECOMMITTED) or hdr.padding:
            return S.INVALID_PARAMETER
        large = hdr.unmap_flags & UNMAP_GPA_LARGE_PAGE
        keep = bool(hdr.unmap_flags & UNMAP_GPA_KEEP_PRECOMMITTED)
        step = LARGE_PAGE_PAGES if large else 1
        status = OK
        i = call.rep_start
        while i < call.rep_limit:
            gpfn = hdr.target_gpa_base + step * i
            if gpfn + step > self.gpa_page_limit() or (large and gpfn % LARGE_PAGE_PAGES):
                status = S.INVALID_PARAMETER
                break
            for k in range(step):
                self._unmap(target, gpfn + k, keep)
            i += 1
        return self.rep_finished(call, i, target, status)

    def modify_sparse_gpa_pages(self, call: Call) -> HvStatus:
        hdr = SPARSE_GPA_HEADER.unpack(call.input)
        status, target = self._gpa_target(call.caller, hdr.partition_id)
        if target is None:
            return status
        flags = hdr.map_flags
        if flags & ~F.MODIFY_KNOWN or hdr.reserved or target is call.caller:
            return S.INVALID_PARAMETER
        perms = flags & F.PERMISSIONS
        sets_rights = bool(perms) or not flags & F.STATE_UPDATES  # state updates alone keep rights
        if sets_rights and not map_flags_ok(perms | (flags & F.NOT_CACHED)):
            return S.INVALID_PARAMETER
        base, data = 16 + call.var_bytes, call.input
        status = OK
        i = call.rep_start
        while i < call.rep_limit:
            gpfn = _U64.unpack_from(data, base + GPA_PAGE_NUMBER_SIZE * i)[0]
            old = target.gpa.get(gpfn) if gpfn < self.gpa_page_limit() else None
            if old is None or old.flags & F.BACKING_MASK:
                status = S.INVALID_PARAMETER  # [inferred] only backed, mapped pages change rights
                break
            new = old.flags
            if sets_rights:
                new = (new & ~(F.PERMISSIONS | F.NOT_CACHED)) | perms | (flags & F.NOT_CACHED)
            new = _state_update(new, flags)
            target.gpa[gpfn] = GpaMapping(old.spa, new)
            i += 1
        self.memory.version += 1
        return self.rep_finished(call, i, target, status)


def _state_update(flags: int, request: int) -> int:
    """Apply ModifySparseGpaPages' accessed/dirty requests to a mapping's internal A/D bits."""
    if request & F.CLEAR_ACCESSED:
        flags &= ~ACCESSED
    if request & F.SET_ACCESSED:
        flags |= ACCESSED
    if request & F.CLEAR_DIRTY:
        flags &= ~DIRTY
    if request & F.SET_DIRTY:
        flags |= DIRTY
    return flags
