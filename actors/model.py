"""The hypervisor's records of partitions and VPs (plain data; behaviour lives in the handlers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

from hvsim.actors.memory import Pool
from hvsim.actors.registers import reset_file
from hvsim.actors.synic import Synic


class PartitionState(IntEnum):
    """Hypercall-visible partition states (HYPERCALLS.md 3.1, decision D2).

    "Initialized" of the TLFS table is an alias of ACTIVE: no hypercall moves between them.
    DELETED is not stored: a deleted partition's id simply stops resolving.
    """

    CREATED = 1
    ACTIVE = 2
    FINALIZED = 3


#: Legal transitions; ``None`` is "does not exist" (before create / after delete).
LEGAL_TRANSITIONS: frozenset[tuple[str | None, str | None]] = frozenset(
    {
        (None, "CREATED"),
        ("CREATED", "ACTIVE"),
        ("ACTIVE", "FINALIZED"),
        ("CREATED", None),
        ("FINALIZED", None),
    }
)


class GpaMapping(NamedTuple):
    """One GPA page of a partition: the host page behind it (None: no backing -- NO_ACCESS, ZEROED
    and ONES mappings) and its HV_MAP_GPA_FLAGS."""

    spa: int | None
    flags: int


@dataclass(slots=True, eq=False)
class Vp:
    """One virtual processor's architectural and scheduling state."""

    index: int
    regs: dict[int, int]
    explicit_suspend: int = 1
    intercept_suspend: int = 0
    dispatch_suspend: int = 0
    #: VP 0 starts at reset; APs wait for SIPI or HvCallStartVirtualProcessor.
    started: bool = False
    runnable: bool = False
    #: Simulated ns at which the VP last became runnable (None while not runnable).
    run_since_ns: int | None = None
    runtime_ns: int = 0
    synic: Synic = field(default_factory=Synic)
    #: Translation cache: GVA page -> (GPA page, whether writes may use it: writable and dirty),
    #: filled by the guest's GVA accesses.
    tlb: dict[int, tuple[int, bool]] = field(default_factory=dict)
    tlb_flushes: int = 0
    #: The VPs whose locked TLB (TlbLocked) holds this VP's flush hypercall: it is suspended until
    #: every lock is gone, then re-issues the call.
    flush_wait: tuple[int, ...] = ()
    #: Counters for statistics pages: hypercalls issued by call code, intercepts taken, messages
    #: delivered to it.
    calls_by_code: dict[int, int] = field(default_factory=dict)
    intercepts: int = 0
    messages_received: int = 0
    #: The last intercept message this VP caused (its intercept-message state page).
    last_intercept: bytes = b""

    @classmethod
    def reset(cls, index: int) -> Vp:
        return cls(index=index, regs=reset_file(index), started=(index == 0))

    @property
    def hypercalls(self) -> int:
        """Hypercalls this VP issued (counted once, by code: the statistics pages read both)."""
        return sum(self.calls_by_code.values())

    def wants_to_run(self) -> bool:
        return (
            self.started
            and not (self.explicit_suspend & 1)
            and not (self.intercept_suspend & 1)
            and not (self.dispatch_suspend & 1)
            and not self.flush_wait
        )


@dataclass(slots=True, eq=False)
class Port:
    """A receiving endpoint in its owner partition (HYPERCALLS.md 4.37)."""

    id: int
    type: int
    #: The only partition allowed to connect (0: any).
    connection_partition_id: int
    target_sint: int = 0
    target_vp: int = 0
    base_flag: int = 0
    flag_count: int = 0
    monitor_address: int = 0
    #: (connection partition id, connection id) of the connection to it, if any.
    connection: tuple[int, int] | None = None
    #: Message buffers held by posted messages not yet delivered into a SIM slot.
    buffers_in_use: int = 0
    #: Round-robin cursor over the owner's VPs for a port bound to HV_ANY_VP.
    next_vp: int = 0


@dataclass(slots=True, eq=False)
class Connection:
    """A sending endpoint in its owner partition, naming a port (HYPERCALLS.md 4.39)."""

    id: int
    port_partition_id: int
    port_id: int
    type: int
    address: int = 0
    trigger_value: int = 0
    flags: int = 0
    #: The port object connected to: a port deleted and re-created under the same id is another
    #: port, which this connection does not reach.
    target: Port | None = None


@dataclass(slots=True, eq=False)
class Partition:
    """One partition as the hypervisor tracks it."""

    id: int
    parent_id: int | None
    depth: int
    privileges: int
    state: PartitionState = PartitionState.CREATED
    creation_flags: int = 0
    compatibility_version: int = 0
    disabled_processor_features: tuple[int, int] = (0, 0)
    disabled_xsave_features: int = 0
    pool: Pool = field(init=False)
    properties: dict[int, int] = field(default_factory=dict)
    #: Wide property values set through SetPartitionPropertyEx (e.g. VmmCapabilities).
    wide_properties: dict[int, bytes] = field(default_factory=dict)
    guest_os_id: int = 0
    #: Children in creation order (GetNextChildPartition enumerates this).
    children: list[int] = field(default_factory=list)
    vps: dict[int, Vp] = field(default_factory=dict)
    ports: dict[int, Port] = field(default_factory=dict)
    connections: dict[int, Connection] = field(default_factory=dict)
    #: True once any VP's ExplicitSuspend has been cleared (informational, D2).
    has_run: bool = False
    #: GPA page -> mapping (HvCallMapGpaPages); the root's own space is identity-mapped host RAM.
    gpa: dict[int, GpaMapping] = field(default_factory=dict)
    #: 2 MiB GPA regions -> mapped pages in them (each region's page-table page is charged once).
    gpa_regions: dict[int, int] = field(default_factory=dict)
    #: Statistics pages this partition mapped: object key -> map location (GPA page).
    stats_pages: dict[tuple[int, ...], int] = field(default_factory=dict)
    #: VP state pages mapped for this partition's VPs: (VP index, page type) -> location.
    vp_state_pages: dict[tuple[int, int], int] = field(default_factory=dict)
    messages_posted: int = 0
    #: Host pages this partition deposited from its own RAM (as a nested host) -> (its GPA page,
    #: the mapping's flags), to put back on withdraw.
    deposited: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: ExtInt latch: 0 none, 1 asserted (pending), 2 acknowledged by VP 0 (until cleared).
    ext_int: int = 0
    #: RegisterInterceptResult: (VP or HV_ANY_VP, leaf, subleaf or None) -> (values, masks), and
    #: (VP or HV_ANY_VP, MSR index, access 1 read / 2 write) -> action.
    cpuid_results: dict[tuple[int, int, int | None], tuple[tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=dict
    )
    msr_results: dict[tuple[int, int, int], int] = field(default_factory=dict)
    #: (HV_INTERCEPT_TYPE, parameter) -> access mask, installed by the parent.
    intercepts: dict[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pool = Pool(self.id)

    @property
    def is_root(self) -> bool:
        return self.parent_id is None
