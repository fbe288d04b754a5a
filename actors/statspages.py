"""Statistics and VP state pages: MapStatsPage2, UnmapStatsPage, MapVpStatePage, UnmapVpStatePage
(HYPERCALLS.md 4.29-4.32, 5.10-5.11).

A mapped page is an overlay the caller reads. Its contents are live: :meth:`StatsPageCalls.read_stats`,
:meth:`StatsPageCalls.read_call_counts`, :meth:`StatsPageCalls.read_stats_page` and
:meth:`StatsPageCalls.read_vp_state` compute them at the moment they are read. The statistics page is
an array of 512 u64 counters (the TLFS does not publish the hypervisor's own counter indices, so
these are hvsim's): the named counters of ``STATS_COUNTERS`` from index 0, and from index
``CALL_COUNTER_BASE`` one counter per hypercall code (index = base + code) for the hypervisor, an LP
(its root VP), a partition (the sum over its VPs) or a VP.
"""

from __future__ import annotations

from hvsim.actors.hvdef import (
    MAP_STATS_PAGE2_INPUT,
    MAP_VP_STATE_PAGE_INPUT,
    STATS_AREA_TYPES,
    UNMAP_STATS_PAGE_INPUT,
    UNMAP_VP_STATE_PAGE_INPUT,
    HvStatus,
    PartitionPrivilege,
    StatsObjectType,
    VpStatePageType,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Partition, PartitionState
from hvsim.actors.state import CREATE_PARTITIONS, OK, HvState

S = HvStatus
ST = StatsObjectType
ACCESS_STATS = int(PartitionPrivilege.AccessStats)
#: Counter names per object, in page order (u64 index = position).
STATS_COUNTERS: dict[ST, tuple[str, ...]] = {
    ST.Hypervisor: ("partitions", "hypercalls", "pool_pages", "messages_in_transit"),
    ST.LogicalProcessor: ("lp_index", "hypercalls"),
    ST.Partition: (
        "vps", "hypercalls", "intercepts", "messages_posted", "messages_delivered", "pages_available",
        "pages_in_use", "tlb_flushes", "vp_run_time_ns",
    ),
    ST.Vp: ("run_time_ns", "hypercalls", "intercepts", "messages_received", "tlb_flushes", "runnable"),
}  # fmt: skip
#: u64 index of the counter of hypercall code 0; codes up to 0x1BF fit in the 4 KiB page.
CALL_COUNTER_BASE = 64
STATS_PAGE_COUNTERS = 4096 // 8
#: The VP state pages this model has (GHCB pages exist only for SEV-SNP guests).
STATE_PAGE_TYPES = frozenset({VpStatePageType.Registers, VpStatePageType.InterceptMessage})
#: Where the hypervisor places a VP state page when the caller does not choose (GPA page numbers).
STATE_PAGE_AREA = 0xF_F000_0000 >> 12


class StatsPageCalls(HvState):
    # --- statistics pages -----------------------------------------------------------------------------
    def _stats_object(
        self, caller: Partition, stats_type: int, identity: bytes
    ) -> tuple[HvStatus, tuple[int, ...] | None]:
        """The object a stats identity names, as a key, after the access rules."""
        if not caller.privileges & ACCESS_STATS:
            return S.ACCESS_DENIED, None
        try:
            kind = ST(stats_type)
        except ValueError:
            return S.INVALID_PARAMETER, None
        area = identity[15]
        if area >= STATS_AREA_TYPES:
            return S.INVALID_PARAMETER, None
        if kind in (ST.Hypervisor, ST.LogicalProcessor):
            lp = int.from_bytes(identity[:4], "little")
            reserved = identity[:15] if kind is ST.Hypervisor else identity[4:15]
            if any(reserved):
                return S.INVALID_PARAMETER, None
            if not caller.is_root:
                return S.ACCESS_DENIED, None
            if kind is ST.LogicalProcessor and lp >= self.config.root_vps:
                return S.INVALID_PARAMETER, None  # LPs: one per root VP in this model
            return OK, (kind, 0 if kind is ST.Hypervisor else lp, area)
        pid = int.from_bytes(identity[:8], "little")
        reserved = identity[8:15] if kind is ST.Partition else identity[12:15]
        if any(reserved):
            return S.INVALID_PARAMETER, None
        target = self.resolve(caller, pid)
        if target is None:
            return S.INVALID_PARTITION_ID, None
        if target is not caller and target.parent_id != caller.id:
            return S.ACCESS_DENIED, None
        if target.state is not PartitionState.ACTIVE:
            return S.INVALID_PARTITION_STATE, None
        if kind is ST.Partition:
            return OK, (kind, target.id, area)
        vp = int.from_bytes(identity[8:12], "little")
        if vp not in target.vps:
            return S.INVALID_VP_INDEX, None
        return OK, (kind, target.id, vp, area)

    def map_stats_page2(self, call: Call) -> HvStatus:
        inp = MAP_STATS_PAGE2_INPUT.unpack(call.input)
        if inp.reserved:
            return S.INVALID_PARAMETER
        status, key = self._stats_object(call.caller, inp.stats_type, inp.identity)
        if key is None:
            return status
        caller = call.caller
        if key in caller.stats_pages:
            return S.OPERATION_DENIED  # unmap it first
        if not self.charge(caller, _charge_key(key), self.config.page_costs.stats_page):
            return S.INSUFFICIENT_MEMORY  # the caller's own pool pays (Linux deposits into SELF)
        caller.stats_pages[key] = inp.map_location
        self.pool_changed(caller)
        return OK

    def unmap_stats_page(self, call: Call) -> HvStatus:
        inp = UNMAP_STATS_PAGE_INPUT.unpack(call.input)
        if inp.padding:
            return S.INVALID_PARAMETER
        status, key = self._stats_object(call.caller, inp.stats_type, inp.identity)
        if key is None:
            return status
        if call.caller.stats_pages.pop(key, None) is None:
            return S.OPERATION_DENIED  # never mapped
        call.caller.pool.release(_charge_key(key))
        self.pool_changed(call.caller)
        return OK

    def drop_stats_pages(self, partition_id: int, vp: int | None = None) -> None:
        """The object went (a VP deleted, a partition finalized): every statistics page mapped for
        it, by anyone, goes too and its pool page returns to the caller that mapped it."""
        for caller in self.partitions.values():
            dropped = False
            for key in list(caller.stats_pages):
                kind, pid = key[0], key[1]
                if kind not in (ST.Partition, ST.Vp) or pid != partition_id:
                    continue
                if vp is None or (kind == ST.Vp and key[2] == vp):
                    del caller.stats_pages[key]
                    caller.pool.release(_charge_key(key))
                    dropped = True
            if dropped:
                self.pool_changed(caller)  # the pool series in reports follow the returned page

    def read_stats(self, caller_id: int, key: tuple[int, ...]) -> dict[str, int]:
        """The counters of a mapped statistics page, as they are now (KeyError if not mapped)."""
        caller = self.partitions[caller_id]
        caller.stats_pages[key]
        kind = ST(key[0])
        values: tuple[int, ...]
        if kind is ST.Hypervisor:
            pools = sum(p.pool.total for p in self.partitions.values())
            values = (len(self.partitions), sum(self.call_counts.values()), pools, len(self.undelivered))
        elif kind is ST.LogicalProcessor:
            values = (key[1], self.root.vps[key[1]].hypercalls if key[1] in self.root.vps else 0)
        elif kind is ST.Partition:
            p = self.partitions[key[1]]
            vps = p.vps.values()
            values = (
                len(p.vps), sum(v.hypercalls for v in vps), sum(v.intercepts for v in vps), p.messages_posted,
                sum(v.messages_received for v in vps), len(p.pool.available), p.pool.in_use,
                sum(v.tlb_flushes for v in vps), sum(self.vp_runtime_ns(v) for v in vps),
            )  # fmt: skip
        else:
            vp = self.partitions[key[1]].vps[key[2]]
            values = (
                self.vp_runtime_ns(vp), vp.hypercalls, vp.intercepts, vp.messages_received, vp.tlb_flushes,
                int(vp.runnable),
            )  # fmt: skip
        return dict(zip(STATS_COUNTERS[kind], values, strict=True))

    def read_call_counts(self, caller_id: int, key: tuple[int, ...]) -> dict[int, int]:
        """Hypercalls by code (only codes called) on a mapped statistics page, as they are now."""
        caller = self.partitions[caller_id]
        caller.stats_pages[key]
        kind = ST(key[0])
        counts: dict[int, int] = {}
        if kind is ST.Hypervisor:
            for (code, _status), n in self.call_counts.items():
                counts[code] = counts.get(code, 0) + n
        elif kind is ST.LogicalProcessor:
            vp = self.root.vps.get(key[1])
            counts = dict(vp.calls_by_code) if vp is not None else {}
        elif kind is ST.Partition:
            for vp in self.partitions[key[1]].vps.values():
                for code, n in vp.calls_by_code.items():
                    counts[code] = counts.get(code, 0) + n
        else:
            counts = dict(self.partitions[key[1]].vps[key[2]].calls_by_code)
        return dict(sorted(counts.items()))

    def read_stats_page(self, caller_id: int, key: tuple[int, ...]) -> bytes:
        """The 4 KiB statistics page as the caller's overlay holds it now (layout: module docstring)."""
        counters = [0] * STATS_PAGE_COUNTERS
        for i, value in enumerate(self.read_stats(caller_id, key).values()):
            counters[i] = value
        for code, n in self.read_call_counts(caller_id, key).items():
            if CALL_COUNTER_BASE + code < STATS_PAGE_COUNTERS:
                counters[CALL_COUNTER_BASE + code] = n
        return b"".join((v & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little") for v in counters)

    # --- VP state pages -----------------------------------------------------------------------------
    def map_vp_state_page(self, call: Call) -> HvStatus:
        inp = MAP_VP_STATE_PAGE_INPUT.unpack(call.input)
        status, target = self._state_page_target(call.caller, inp.partition_id)
        if target is None:
            return status
        if inp.vp_index not in target.vps:
            return S.INVALID_VP_INDEX
        if inp.page_type not in STATE_PAGE_TYPES:
            return S.INVALID_PARAMETER  # GHCB pages exist only for SEV-SNP guests
        if (
            inp.input_vtl not in (0, 0x10)
            or inp.flags & ~1
            or (not inp.flags & 1 and inp.requested_map_location)
        ):
            return S.INVALID_PARAMETER
        key = (inp.vp_index, inp.page_type)
        if key in target.vp_state_pages:
            return S.OBJECT_IN_USE  # [inferred] one page per (VP, type)
        if not self.charge(
            target, f"vpstate:{inp.vp_index}:{inp.page_type}", self.config.page_costs.stats_page
        ):
            return S.INSUFFICIENT_MEMORY  # Linux deposits one page into the target and retries
        location = (
            inp.requested_map_location
            if inp.flags & 1
            else STATE_PAGE_AREA + 2 * inp.vp_index + inp.page_type
        )
        target.vp_state_pages[key] = location
        call.output[:8] = location.to_bytes(8, "little")
        self.pool_changed(target)
        return OK

    def unmap_vp_state_page(self, call: Call) -> HvStatus:
        inp = UNMAP_VP_STATE_PAGE_INPUT.unpack(call.input)
        status, target = self._state_page_target(call.caller, inp.partition_id)
        if target is None:
            return status
        if inp.vp_index not in target.vps:
            return S.INVALID_VP_INDEX
        if inp.page_type not in STATE_PAGE_TYPES or inp.input_vtl not in (0, 0x10) or inp.reserved:
            return S.INVALID_PARAMETER  # as MapVpStatePage (HYPERCALLS.md 4.32 mirrors 4.31)
        if target.vp_state_pages.pop((inp.vp_index, inp.page_type), None) is None:
            return S.OPERATION_DENIED  # [inferred] not mapped
        target.pool.release(f"vpstate:{inp.vp_index}:{inp.page_type}")
        self.pool_changed(target)
        return OK

    def _state_page_target(self, caller: Partition, partition_id: int) -> tuple[HvStatus, Partition | None]:
        if not caller.privileges & CREATE_PARTITIONS:
            return S.ACCESS_DENIED, None  # the parent's privilege, checked before any lookup
        target = self.resolve(caller, partition_id)
        if target is None:
            return S.INVALID_PARTITION_ID, None
        if target.parent_id != caller.id:
            return S.ACCESS_DENIED, None
        if target.state is not PartitionState.ACTIVE:
            return S.INVALID_PARTITION_STATE, None
        return OK, target

    def read_vp_state(self, partition_id: int, vp_index: int, page_type: int) -> dict[int, int] | bytes:
        """A mapped VP state page as it is now: the register file (name -> value) for a registers
        page, the last intercept message (256 bytes) for an intercept message page."""
        p = self.partitions[partition_id]
        p.vp_state_pages[(vp_index, page_type)]
        vp = p.vps[vp_index]
        if page_type == VpStatePageType.Registers:
            return dict(vp.regs)
        return vp.last_intercept


def _charge_key(key: tuple[int, ...]) -> str:
    return "stats:" + ":".join(map(str, key))
