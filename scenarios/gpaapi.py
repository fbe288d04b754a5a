"""Host-side helpers for guest physical memory: GPA mappings, translation, and the host's view of
a child's RAM (part of HostApi)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Sequence
from typing import Any

import simpy

from hvsim.actors.hvdef import (
    GPA_MAPPING_ELEMENT,
    LARGE_PAGE_PAGES,
    MAP_GPA_PAGES_HEADER,
    SPARSE_GPA_HEADER,
    TRANSLATE_VA_EX_OUTPUT,
    TRANSLATE_VA_INPUT,
    TRANSLATE_VA_OUTPUT,
    UNMAP_GPA_LARGE_PAGE,
    UNMAP_GPA_PAGES_HEADER,
    GpaMappingElement,
    HvStatus,
    HypercallCode,
    MapGpaFlags,
    MapGpaPagesHeader,
    SparseGpaHeader,
    TranslateVirtualAddressInput,
    UnmapGpaPagesHeader,
)
from hvsim.scenarios.apicore import ApiCore, RepOutcome

C = HypercallCode
#: Elements per call that fit one 4 KiB parameter page after the header (Linux's batch sizes).
MAP_GPA_BATCH = (4096 - 24) // 8
SPARSE_BATCH = (4096 - 16) // 16
MODIFY_BATCH = (4096 - 16) // 8
#: The rep count field is 12 bits.
REP_COUNT_MAX = 4095
Gen = Generator[simpy.Event, Any, Any]
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class GpaApi(ApiCore):
    # --- guest physical memory -------------------------------------------------------------------
    def _batched(
        self, code: int, header: Callable[[int], bytes], elements: Sequence[bytes] | int, per_call: int
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        """A rep call too big for one parameter page (or for the 12-bit rep count): one call per
        *per_call* elements, each continued to completion, its header built for its first element
        (``header(index)``); reps completed are counted over the whole list."""
        total = elements if isinstance(elements, int) else len(elements)
        done = invocations = 0
        for start in range(0, total, per_call) or [0]:
            count = min(per_call, total - start)
            chunk = count if isinstance(elements, int) else elements[start : start + count]
            out = yield from self.rep(code, header(start), chunk)
            done += out.reps_completed
            invocations += out.invocations
            if out.status is not HvStatus.SUCCESS:
                return RepOutcome(out.status, done, b"", invocations)
        return RepOutcome(HvStatus.SUCCESS, done, b"", invocations)

    def map_gpa_pages(
        self, partition_id: int, target_gpa_base: int, sources: Sequence[int], flags: int
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        """MapGpaPages: target pages from *target_gpa_base* onto the caller's pages *sources*
        (2 MiB pages with LARGE_PAGE), in calls of up to 509 pages (one parameter page)."""
        step = LARGE_PAGE_PAGES if flags & MapGpaFlags.LARGE_PAGE else 1

        def header(i: int) -> bytes:
            return MAP_GPA_PAGES_HEADER.pack(
                MapGpaPagesHeader(partition_id, target_gpa_base + i * step, flags, 0)
            )

        elements = [_U64.pack(p) for p in sources]
        return (yield from self._batched(C.MapGpaPages, header, elements, MAP_GPA_BATCH))

    def map_sparse_gpa_pages(
        self, partition_id: int, pairs: Sequence[tuple[int, int]], flags: int
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        """MapSparseGpaPages: (target GPA page, source GPA page) pairs."""
        header = SPARSE_GPA_HEADER.pack(SparseGpaHeader(partition_id, flags, 0))
        elements = [GPA_MAPPING_ELEMENT.pack(GpaMappingElement(t, s)) for t, s in pairs]
        return (yield from self._batched(C.MapSparseGpaPages, lambda _i: header, elements, SPARSE_BATCH))

    def unmap_gpa_pages(
        self, partition_id: int, target_gpa_base: int, count: int, flags: int = 0
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        """UnmapGpaPages of *count* pages (2 MiB pages with LARGE_PAGE), 4095 per call at most."""
        step = LARGE_PAGE_PAGES if flags & UNMAP_GPA_LARGE_PAGE else 1

        def header(i: int) -> bytes:
            return UNMAP_GPA_PAGES_HEADER.pack(
                UnmapGpaPagesHeader(partition_id, target_gpa_base + i * step, flags, 0)
            )

        return (yield from self._batched(C.UnmapGpaPages, header, count, REP_COUNT_MAX))

    def modify_sparse_gpa_pages(
        self, partition_id: int, pages: Sequence[int], flags: int
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        header = SPARSE_GPA_HEADER.pack(SparseGpaHeader(partition_id, flags, 0))
        elements = [_U64.pack(p) for p in pages]
        return (yield from self._batched(C.ModifySparseGpaPages, lambda _i: header, elements, MODIFY_BATCH))

    def translate(
        self, partition_id: int, vp_index: int, gva_page: int, flags: int, *, ex: bool = False
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, int, int]]:
        """TranslateVirtualAddress(Ex): (status, HV_TRANSLATE_GVA_RESULT, GPA page)."""
        data = TRANSLATE_VA_INPUT.pack(
            TranslateVirtualAddressInput(partition_id, vp_index, 0, flags, gva_page)
        )
        res = yield from self.simple(C.TranslateVirtualAddressEx if ex else C.TranslateVirtualAddress, data)
        if ex:
            out = TRANSLATE_VA_EX_OUTPUT.unpack(res.output)
            return res.status, out.result, out.gpa_page
        plain = TRANSLATE_VA_OUTPUT.unpack(res.output)
        return res.status, plain.result, plain.gpa_page

    def write_guest(self, partition_id: int, gpa: int, data: bytes) -> None:
        """Write *data* into a child's RAM at *gpa* through the host pages mapped there (the host
        writing its own memory: no hypercall). Raises ValueError where a page is not backed."""
        for page, offset, chunk in self._guest_pages(partition_id, gpa, len(data)):
            self.sim.hv.memory.write(
                page, offset, data[chunk : chunk + min(4096 - offset, len(data) - chunk)]
            )

    def read_guest(self, partition_id: int, gpa: int, length: int) -> bytes:
        out = bytearray()
        for page, offset, chunk in self._guest_pages(partition_id, gpa, length):
            out += self.sim.hv.memory.read(page, offset, min(4096 - offset, length - chunk))
        return bytes(out)

    def _guest_pages(self, partition_id: int, gpa: int, length: int) -> list[tuple[int, int, int]]:
        """(host page, offset in it, offset in the data) for each page the range touches."""
        partition = self.sim.hv.partitions[partition_id]
        out, done = [], 0
        while done < length:
            address = gpa + done
            mapping = partition.gpa.get(address >> 12)
            if mapping is None or mapping.spa is None:
                raise ValueError(f"GPA {address:#x} of partition {partition_id} is not backed by host memory")
            out.append((mapping.spa, address & 0xFFF, done))
            done += 4096 - (address & 0xFFF)
        return out
