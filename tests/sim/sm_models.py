"""Model pieces of the hypervisor state machine (``test_state_machine.py``) for three call families.

* Virtual interrupts, AssertVirtualInterrupt / ClearVirtualInterrupt (HYPERCALLS.md 4.34-4.35, 5.13,
  conformance 7.7 99-103): the parameter rule, the x64 destination (APIC ID = VP index), each VP's
  virtual APIC and the partition's ExtInt latch.
* Registered intercept results, RegisterInterceptResult / UnregisterInterceptResult (4.25-4.26), and
  what GetVpCpuidValues with ApplyRegisteredValues (4.15) makes of them.
* Statistics and VP state pages, MapStatsPage2 / UnmapStatsPage / MapVpStatePage / UnmapVpStatePage
  (4.29-4.32, 5.10-5.11, conformance 7.8): the object identities and the parameter rules.

Only plain data, pure functions, input blocks (packed with the hvdef layouts) and strategies live
here; the rules that drive the hypervisor, and the invariants, are the machine's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from hypothesis import strategies as st

from hvsim.actors.hvdef import (
    ASSERT_VIRTUAL_INTERRUPT_INPUT,
    CPUID_QUERY,
    CPUID_RESULT_PARAMETERS,
    CPUID_RESULT_SIZE,
    GET_VP_CPUID_VALUES_HEADER,
    HV_ANY_VP,
    HV_INTERRUPT_VECTOR_NONE,
    HV_VP_INDEX_SELF,
    INTERRUPT_CONTROL_RESERVED,
    MAP_STATS_PAGE2_INPUT,
    MAP_VP_STATE_PAGE_INPUT,
    MSR_RESULT_PARAMETERS,
    PARTITION_ID_INPUT,
    REGISTER_INTERCEPT_RESULT_HEADER,
    STATS_AREA_TYPES,
    UNMAP_STATS_PAGE_INPUT,
    UNMAP_VP_STATE_PAGE_INPUT,
    UNREGISTER_INTERCEPT_RESULT_SIZE,
    AssertVirtualInterruptInput,
    CpuidQuery,
    CpuidResultParameters,
    GetVpCpuidValuesHeader,
    InterceptType,
    InterruptType,
    MapStatsPage2Input,
    MapVpStatePageInput,
    MsrResultParameters,
    PartitionIdInput,
    RegisterInterceptResultHeader,
    StatsObjectType,
    UnmapStatsPageInput,
    UnmapVpStatePageInput,
    VpStatePageType,
)

IT = InterruptType
ST = StatsObjectType
VT = VpStatePageType
U32 = (1 << 32) - 1
NONE = HV_INTERRUPT_VECTOR_NONE
Words = tuple[int, int, int, int]


# --- virtual interrupts ---------------------------------------------------------------------------
class Latch(IntEnum):
    """A partition's ExtInt latch, as ``Partition.ext_int`` holds it (HYPERCALLS.md 4.34-4.35)."""

    NONE = 0
    PENDING = 1
    ACKNOWLEDGED = 2


#: Types that may carry a non-zero vector (HYPERCALLS.md 4.34, INVALID_PARAMETER row).
VECTOR_TYPES = frozenset({IT.Fixed, IT.LowestPriority, IT.ExtInt, IT.Sipi})
KNOWN_TYPES = frozenset(int(t) for t in IT)
#: Physical destination 0xFF: every VP.
BROADCAST = 0xFF


@dataclass
class ApicModel:
    """A VP's virtual APIC: vectors delivered and not yet taken, in arrival order (the busy guest
    never takes one), NMIs seen, the ExtInt vector it holds, and whether it still owes the ExtInt's
    acknowledgement (VP 0 takes an ExtInt, acknowledging it, as soon as it runs)."""

    pending: list[int] = field(default_factory=list)
    nmis: int = 0
    ext_vector: int | None = None
    owes_ack: bool = False

    def ext_int(self, vector: int) -> None:
        """A new ExtInt replaces the one not yet taken; vector NONE withdraws it."""
        if self.ext_vector is not None and self.ext_vector in self.pending:
            self.pending.remove(self.ext_vector)
        self.ext_vector = None if vector == NONE else vector
        self.owes_ack = False
        if vector != NONE:
            self.pending.append(vector)

    def init(self) -> None:
        """INIT clears the local APIC: pending vectors and the ExtInt it held go, and so does the
        acknowledgement VP 0 owed for it (an ExtInt no one took is never acknowledged: 4.35)."""
        self.withdraw()

    def withdraw(self) -> None:
        """Every pending vector goes (INIT, or a level-triggered line withdrawn), an ExtInt too."""
        self.pending.clear()
        self.ext_vector = None
        self.owes_ack = False


def assert_parameters_ok(ctl: int, vector: int, vtl: int, z0: int, z1: int) -> bool:
    """HYPERCALLS.md 4.34 / 5.13: reserved control bits (63:34) and fields zero, a known type, a vector
    in 0-255 or NONE, and a non-zero vector only for Fixed, LowestPriority, ExtInt and SIPI."""
    if ctl & INTERRUPT_CONTROL_RESERVED or vtl or z0 or z1:
        return False
    kind = ctl & U32
    if kind not in KNOWN_TYPES:
        return False
    if vector == NONE:
        return True
    return vector <= 0xFF and (vector == 0 or kind in VECTOR_TYPES)


def destination(vp_indices: list[int], dest: int, logical: bool) -> list[int]:
    """The VPs (ascending) an x64 destination names, APIC ID = VP index: a logical bit mask of APIC
    IDs below 64, or one physical APIC ID (0xFF: all of them)."""
    vps = sorted(vp_indices)
    if logical:
        return [i for i in vps if i < 64 and dest >> i & 1]
    if dest == BROADCAST:
        return vps
    return [i for i in vps if i == dest]


def assert_input(pid: int, ctl: int, dest: int, vector: int, vtl: int = 0, z0: int = 0, z1: int = 0) -> bytes:
    return ASSERT_VIRTUAL_INTERRUPT_INPUT.pack(
        AssertVirtualInterruptInput(pid, ctl, dest, vector, vtl, z0, z1)
    )


def clear_input(pid: int) -> bytes:
    return PARTITION_ID_INPUT.pack(PartitionIdInput(pid))


interrupt_kinds = st.sampled_from(
    [IT.Fixed, IT.Fixed, IT.Fixed, IT.LowestPriority, IT.LowestPriority, IT.LowestPriority, IT.Nmi,
     IT.Init, IT.Sipi, IT.ExtInt, IT.Smi, IT.RemoteRead, IT.LocalInt0, IT.LocalInt1, 10, 0xFFFF, 1 << 31]
)  # fmt: skip
interrupt_vectors = st.one_of(
    st.integers(0x20, 0xFF), st.integers(0x20, 0xFF), st.sampled_from([0, 0xFF, 0x100, 300, NONE, NONE - 1])
)
extint_vectors = st.one_of(st.integers(0x20, 0x2F), st.sampled_from([0, NONE]))
#: Physical APIC IDs (0-3 name the VPs a child has, 0xFF broadcasts) or logical masks (0: empty;
#: 0b11, 0b110, 0b111: several VPs, where LowestPriority picks one).
interrupt_destinations = st.one_of(
    st.integers(0, 7), st.sampled_from([BROADCAST, BROADCAST, 0b11, 0b110, 0b111, 0xFE, 1 << 63])
)
#: Where an assertion may be malformed (else nowhere).
assert_flaws = st.sampled_from([None] * 8 + ["control-34", "control-63", "vtl", "z0", "z1"])


# --- registered intercept results ------------------------------------------------------------------
CPUID, MSR = int(InterceptType.X64Cpuid), int(InterceptType.X64Msr)
CpuidKey = tuple[int, int, int | None]
MsrKey = tuple[int, int, int]
#: MSR access types (bit 0 read, bit 1 write) and actions (0 Fault, 1 IgnoreWriteReadZero).
MSR_ACCESSES = (1, 2)


class CpuidPattern(NamedTuple):
    leaf: int
    subleaf: int
    specific: int
    always: int
    padding: int
    values: Words
    masks: Words


class MsrPattern(NamedTuple):
    msr_index: int
    access: int
    action: int


def cpuid_pattern_ok(c: CpuidPattern) -> bool:
    """SubleafSpecific and AlwaysOverride are booleans; the padding is zero."""
    return c.specific <= 1 and c.always <= 1 and not c.padding


def cpuid_key(vp: int, leaf: int, subleaf: int, specific: int) -> CpuidKey:
    """How a registration is keyed: per subleaf only if SubleafSpecific."""
    return (vp, leaf, subleaf if specific else None)


def msr_access_ok(access: int) -> bool:
    return bool(access) and not access & ~0x3


def msr_pattern_ok(m: MsrPattern) -> bool:
    return msr_access_ok(m.access) and m.action <= 1


def registered_cpuid(
    results: dict[CpuidKey, tuple[Words, Words]], vp: int, leaf: int, subleaf: int, result: Words
) -> Words:
    """*result* with the registration that applies merged in (its mask bits win): the VP's own for the
    subleaf, the VP's own for any subleaf, then HV_ANY_VP's likewise; the first that exists."""
    for key in ((vp, leaf, subleaf), (vp, leaf, None), (HV_ANY_VP, leaf, subleaf), (HV_ANY_VP, leaf, None)):
        entry = results.get(key)
        if entry is not None:
            values, masks = entry
            a, b, c, d = (
                (old & ~mask & U32) | (new & mask)
                for old, new, mask in zip(result, values, masks, strict=True)
            )
            return (a, b, c, d)
    return result


def result_header(pid: int, vp: int, kind: int) -> bytes:
    return REGISTER_INTERCEPT_RESULT_HEADER.pack(RegisterInterceptResultHeader(pid, vp, kind))


def cpuid_parameters(c: CpuidPattern) -> bytes:
    pairs = [x for v, m in zip(c.values, c.masks, strict=True) for x in (v, m)]
    return CPUID_RESULT_PARAMETERS.pack(
        CpuidResultParameters(c.leaf, c.subleaf, c.specific, c.always, c.padding, *pairs)
    )


def msr_parameters(m: MsrPattern) -> bytes:
    return MSR_RESULT_PARAMETERS.pack(MsrResultParameters(m.msr_index, m.access, m.action))


#: UnregisterInterceptResult's parameter block (no source defines its layout, HYPERCALLS.md 4.26):
#: "the same pattern used to register", cut to the call's input size.
_UNREGISTER_PARAMETERS = UNREGISTER_INTERCEPT_RESULT_SIZE - REGISTER_INTERCEPT_RESULT_HEADER.size


def unregister_cpuid_parameters(leaf: int, subleaf: int, specific: int) -> bytes:
    c = CpuidPattern(leaf, subleaf, specific, 0, 0, (0, 0, 0, 0), (0, 0, 0, 0))
    return cpuid_parameters(c)[:_UNREGISTER_PARAMETERS]


def unregister_msr_parameters(index: int, access: int) -> bytes:
    return msr_parameters(MsrPattern(index, access, 0))


def cpuid_values_input(pid: int, vp: int, flags: int, reserved: int, padding: int) -> bytes:
    return GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(pid, vp, flags, reserved, padding))


def cpuid_query(leaf: int, subleaf: int) -> bytes:
    return CPUID_QUERY.pack(CpuidQuery(leaf, subleaf, 0, 0))


#: HV_CPUID_RESULT {Eax, Ebx, Ecx, Edx} (hvdef gives only its size).
_CPUID_RESULT = struct.Struct("<IIII")
assert _CPUID_RESULT.size == CPUID_RESULT_SIZE


def cpuid_results(output: bytes) -> list[Words]:
    return [(a, b, c, d) for a, b, c, d in _CPUID_RESULT.iter_unpack(output)]


#: Leaves (with the subleaves 0-2 the patterns draw): basic, features, extended, Hyper-V's.
CPUID_LEAVES = (0, 1, 7, 0xD, 0x4000_0000, 0x4000_0001, 0x8000_0001)
u32 = st.integers(0, U32)
words = st.tuples(u32, u32, u32, u32)
masks = st.one_of(
    st.sampled_from([(U32, U32, U32, U32), (0, 0, 0, 0), (U32, 0, 0, 0), (0xFF00, 0, 0x8000_0000, 0)]), words
)
cpuid_patterns = st.builds(
    CpuidPattern,
    leaf=st.sampled_from(CPUID_LEAVES),
    subleaf=st.integers(0, 2),
    specific=st.sampled_from([0, 0, 0, 1, 1, 2, 0xFF]),
    always=st.sampled_from([0, 0, 0, 1, 2]),
    padding=st.sampled_from([0] * 7 + [1]),
    values=words,
    masks=masks,
)
#: MSRs nothing implements, and one the hypervisor virtualizes (LSTAR).
msr_patterns = st.builds(
    MsrPattern,
    msr_index=st.sampled_from([0xC001_1000, 0xC001_1001, 0xC000_0082]),
    access=st.sampled_from([1, 2, 3, 3, 0, 4]),
    action=st.sampled_from([0, 1, 1, 2]),
)
result_vps = st.sampled_from([0, 0, 1, 2, HV_ANY_VP, HV_ANY_VP, 5, HV_VP_INDEX_SELF])
result_kinds = st.sampled_from(
    [CPUID, CPUID, CPUID, MSR, MSR, int(InterceptType.X64IoPort), int(InterceptType.Exception), 0x77]
)
cpuid_queries = st.lists(st.tuples(st.sampled_from(CPUID_LEAVES), st.integers(0, 2)), min_size=1, max_size=4)
#: GetVpCpuidValues flags: bit 0 UseVpXfemXss, bit 1 ApplyRegisteredValues, the rest reserved.
cpuid_flags = st.sampled_from([0, 1, 2, 3, 2, 3, 0x4, 1 << 31])


# --- statistics and VP state pages ---------------------------------------------------------------------
#: A statistics object as the hypervisor keys it: (type, 0 | LP index | partition, [VP,] area type).
StatsKey = tuple[int, ...]
STATS_TYPES = frozenset(int(t) for t in ST)
#: The objects that belong to a partition (they go with it, or with their VP).
PARTITION_OBJECTS = frozenset({int(ST.Partition), int(ST.Vp)})


def identity_of(key: StatsKey) -> tuple[int, int, int, int]:
    """(type, LP index or partition, VP, area type) of a mapped object's key, to name it again."""
    if key[0] == ST.Vp:
        return key[0], key[1], key[2], key[3]
    return key[0], key[1], 0, key[2]


def stats_identity(kind: int, target: int, vp: int, area: int, flaw: int | None = None) -> bytes:
    """HV_STATS_OBJECT_IDENTITY (16 B, HYPERCALLS.md 5.10): the object's fields in order (LpIndex u32;
    PartitionId u64; PartitionId u64 and VpIndex u32), zero reserved bytes (but the *flaw*-th, set),
    StatsAreaType u8 last. The identity is ``16s`` in the hvdef layouts, so it is built here."""
    if kind == ST.Hypervisor:
        fields = b""
    elif kind == ST.LogicalProcessor:
        fields = target.to_bytes(4, "little")
    elif kind == ST.Vp:
        fields = target.to_bytes(8, "little") + vp.to_bytes(4, "little")
    else:
        fields = target.to_bytes(8, "little")
    reserved = bytearray(15 - len(fields))
    if flaw is not None:
        reserved[flaw % len(reserved)] = 1
    return fields + bytes(reserved) + bytes([area])


def stats_parameters_ok(kind: int, area: int, flawed: bool) -> bool:
    """A known object type, an area type below 3, zero reserved identity bytes (HYPERCALLS.md 5.10)."""
    return kind in STATS_TYPES and area < STATS_AREA_TYPES and not flawed


def map_stats_input(kind: int, identity: bytes, location: int, reserved: int = 0) -> bytes:
    return MAP_STATS_PAGE2_INPUT.pack(MapStatsPage2Input(kind, reserved, identity, location))


def unmap_stats_input(kind: int, identity: bytes, padding: int = 0) -> bytes:
    return UNMAP_STATS_PAGE_INPUT.pack(UnmapStatsPageInput(kind, padding, identity))


#: HV_INPUT_VTL: 0 (the current VTL) or 0x10 (bit 4 UseTargetVtl, target VTL 0); no other VTL here.
STATE_PAGE_VTLS = (0, 0x10)
MAP_LOCATION_PROVIDED = 0x1


def state_page_flags_ok(vtl: int, flags: int, location: int) -> bool:
    """MapVpStatePage: VTL 0, only flag bit 0 (MapLocationProvided), no location unless provided."""
    return vtl in STATE_PAGE_VTLS and not flags & ~MAP_LOCATION_PROVIDED and bool(flags & 1 or not location)


def map_state_input(pid: int, vp: int, page_type: int, vtl: int, flags: int, location: int) -> bytes:
    return MAP_VP_STATE_PAGE_INPUT.pack(MapVpStatePageInput(pid, vp, page_type, vtl, flags, location))


def unmap_state_input(pid: int, vp: int, page_type: int, vtl: int, reserved: int = 0) -> bytes:
    return UNMAP_VP_STATE_PAGE_INPUT.pack(UnmapVpStatePageInput(pid, vp, page_type, vtl, reserved))


stats_kinds = st.sampled_from(
    [ST.Partition, ST.Partition, ST.Vp, ST.Vp, ST.Hypervisor, ST.LogicalProcessor, 0x1_0003, 0]
)
stats_areas = st.sampled_from([0, 0, 0, 0, 1, 2, 3])
#: Where a statistics call may be malformed: nowhere, the header's reserved field, an identity byte.
stats_flaws = st.sampled_from([None] * 8 + ["header", "identity"])
stats_vps = st.sampled_from([0, 0, 1, 2, 3])
#: LP indices: the root has 2 VPs, so 2 LPs.
stats_lps = st.sampled_from([0, 1, 1, 2, U32])
stats_locations = st.integers(0, 0xF_FFFF)
state_page_types = st.sampled_from(
    [VT.Registers, VT.Registers, VT.InterceptMessage, VT.InterceptMessage, VT.Ghcb, 7]
)
#: (flags, requested location): hypervisor-chosen, provided, and malformed.
state_page_placements = st.sampled_from(
    [(0, 0), (0, 0), (1, 0x1_2345), (1, 0x20), (0, 0x100), (0x2, 0), (0x80, 0)]
)
state_page_vtls = st.sampled_from([0, 0, 0, 0, 0x10, 1, 0x11])


# --- the arguments each rule draws (besides the partition and ``data``), for its rule and for the
# traffic rule that makes several calls in a row (values typed Any: ``@rule(**ARGS)`` must not look
# like it could pass ``target``) ------------------------------------------------------------------------
ASSERT_ARGS: dict[str, Any] = {
    "kind": interrupt_kinds,
    "vector": interrupt_vectors,
    "dest": interrupt_destinations,
    "level": st.booleans(),
    "logical": st.booleans(),
    "flaw": assert_flaws,
}
EXT_INT_ARGS: dict[str, Any] = {
    "vector": extint_vectors,
    "again": extint_vectors,
    "vp0": st.sampled_from(["as is", "as is", "suspended", "suspended, then run"]),
    "then": st.sampled_from(["nothing", "clear", "assert again", "clear, assert again"]),
}
RESULT_ARGS: dict[str, Any] = {
    "vp": result_vps,
    "kind": result_kinds,
    "cpuid": cpuid_patterns,
    "msr": msr_patterns,
}
CPUID_VALUES_ARGS: dict[str, Any] = {
    "vp": st.sampled_from([0, 0, 1, 2, HV_ANY_VP]),
    "flags": cpuid_flags,
    "flaw": st.sampled_from([None] * 6 + ["reserved", "padding"]),
    "queries": cpuid_queries,
}
STATS_ARGS: dict[str, Any] = {
    "kind": stats_kinds,
    "lp": stats_lps,
    "vp": stats_vps,
    "area": stats_areas,
    "flaw": stats_flaws,
}
MAP_STATS_ARGS: dict[str, Any] = {
    **STATS_ARGS,
    "location": stats_locations,
    "top_up": st.booleans(),
}
MAP_STATE_ARGS: dict[str, Any] = {
    "vp": stats_vps,
    "page_type": state_page_types,
    "placement": state_page_placements,
    "vtl": state_page_vtls,
    "top_up": st.booleans(),
}
UNMAP_STATE_ARGS: dict[str, Any] = {
    "vp": stats_vps,
    "page_type": state_page_types,
    "vtl": state_page_vtls,
    "reserved": st.sampled_from([0] * 7 + [1]),
}
#: The calls of each family the traffic rule makes, with the arguments their rules draw.
TRAFFIC: dict[str, dict[str, dict[str, Any]]] = {
    "interrupts": {
        "assert_interrupt": ASSERT_ARGS,
        "ext_int": EXT_INT_ARGS,
        "clear_interrupt": {},
    },
    "intercept results": {
        "register_result": RESULT_ARGS,
        "unregister_result": RESULT_ARGS,
        "cpuid_values": CPUID_VALUES_ARGS,
    },
    "pages": {
        "map_stats": MAP_STATS_ARGS,
        "unmap_stats": STATS_ARGS,
        "map_vp_state": MAP_STATE_ARGS,
        "unmap_vp_state": UNMAP_STATE_ARGS,
        "replace_vp": {},
    },
}
