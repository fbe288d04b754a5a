"""Everything the TLFS leaves to the implementation, in one place: costs, limits and decisions.

Each field documents its default and why. Where ``HYPERCALLS.md`` marks a choice [inferred], the
field says which reading is the default; the other reading is one keyword away.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from hvsim.actors.hvdef import GUEST_MSR_PRIVILEGES, HvStatus, HypercallCode, PartitionPrivilege


@dataclass(frozen=True, slots=True)
class CallCost:
    """Simulated service time of one hypercall invocation: ``base_ns + per_rep_ns * reps``."""

    base_ns: int
    per_rep_ns: int = 0


_C = HypercallCode

#: Default service times. Nothing documents them; they are in the range real root-partition
#: traces show (a simple call costs about a microsecond, partition creation tens of microseconds).
DEFAULT_CALL_COSTS: dict[int, CallCost] = {
    _C.CreatePartition: CallCost(20_000),
    _C.InitializePartition: CallCost(40_000),
    _C.FinalizePartition: CallCost(30_000),
    _C.DeletePartition: CallCost(8_000),
    _C.GetPartitionProperty: CallCost(800),
    _C.GetPartitionPropertyEx: CallCost(900),
    _C.SetPartitionProperty: CallCost(1_200),
    _C.SetPartitionPropertyEx: CallCost(1_400),
    _C.GetPartitionId: CallCost(300),
    _C.GetNextChildPartition: CallCost(600),
    _C.CreateVp: CallCost(15_000),
    _C.DeleteVp: CallCost(6_000),
    _C.DepositMemory: CallCost(1_000, 150),
    _C.WithdrawMemory: CallCost(1_000, 150),
    _C.GetMemoryBalance: CallCost(500),
    _C.GetVpRegisters: CallCost(600, 60),
    _C.SetVpRegisters: CallCost(700, 80),
    _C.StartVirtualProcessor: CallCost(5_000),
    _C.CreatePort: CallCost(4_000),
    _C.DeletePort: CallCost(3_000),
    _C.ConnectPort: CallCost(4_000),
    _C.DisconnectPort: CallCost(2_000),
    _C.PostMessage: CallCost(1_500),
    _C.SignalEvent: CallCost(700),
    _C.PostMessageDirect: CallCost(1_200),
    _C.SignalEventDirect: CallCost(600),
    _C.MapGpaPages: CallCost(1_500, 100),
    _C.MapSparseGpaPages: CallCost(1_500, 120),
    _C.UnmapGpaPages: CallCost(1_200, 60),
    _C.ModifySparseGpaPages: CallCost(1_200, 80),
    _C.InstallIntercept: CallCost(1_000),
    _C.RegisterInterceptResult: CallCost(1_000),
    _C.UnregisterInterceptResult: CallCost(800),
    _C.AssertVirtualInterrupt: CallCost(800),
    _C.ClearVirtualInterrupt: CallCost(400),
    _C.FlushVirtualAddressSpace: CallCost(2_000),
    _C.FlushVirtualAddressList: CallCost(1_000, 100),
    _C.GetVpCpuidValues: CallCost(600, 80),
    _C.MapStatsPage2: CallCost(2_000),
    _C.UnmapStatsPage: CallCost(1_500),
    _C.MapVpStatePage: CallCost(2_000),
    _C.UnmapVpStatePage: CallCost(1_500),
    _C.CheckForIoIntercept: CallCost(400),
    _C.TranslateVirtualAddress: CallCost(1_000),
    _C.TranslateVirtualAddressEx: CallCost(1_100),
}

#: Cost of a call code missing from the table (and of a call rejected by the common checks).
DEFAULT_CALL_COST = CallCost(500, 50)


@dataclass(frozen=True, slots=True)
class PageCosts:
    """Pool pages the hypervisor charges for the structures it builds (HYPERCALLS.md 6.3).

    No hypercall documents page counts; these stay below what Linux's mshv pre-deposits
    ("determined empirically": 208 for InitializePartition, 90 per VP) so Linux-style hosts succeed.
    """

    #: Partition object, charged to the *parent's* pool; refunded by DeletePartition.
    create_partition: int = 2
    #: Per-partition structures built by InitializePartition, charged to the child.
    initialize_partition: int = 160
    #: One VP (register state, 4 timer + 1 intercept message buffers), charged to the child.
    create_vp: int = 48
    #: A port and its 16 message buffers, charged to the port owner.
    port: int = 1
    #: A connection, charged to the connection owner.
    connection: int = 1
    #: The page table of one 2 MiB GPA region holding mappings, charged to the mapped partition.
    gpa_table: int = 1
    #: A CPUID intercept (the only intercept kind the legacy table lets fail INSUFFICIENT_MEMORY).
    cpuid_intercept: int = 1
    #: A statistics page (charged to the mapping caller) or VP state page (to the VP's partition).
    stats_page: int = 1


@dataclass(frozen=True, slots=True)
class HvConfig:
    """Configuration of one simulated hypervisor and its host machine."""

    #: Host RAM in 4 KiB pages, owned by the root partition (default 1 GiB).
    host_pages: int = 262_144
    #: Root partition VPs (the host's CPUs); host code runs on them.
    root_vps: int = 2
    #: Pages the loader deposits into the root's own pool at boot. 0 by default, so a host must
    #: handle INSUFFICIENT_MEMORY from CreatePartition by depositing into SELF (conformance 7.2/20).
    root_pool_pages: int = 0
    #: Maximum partition depth, root = 1 ([inferred]; the TLFS only requires >= 2).
    max_depth: int = 2
    #: Highest VP index (HV_MAX_VP_INDEX = 2047 on x64).
    max_vp_index: int = 2047
    #: Live partitions (root included) before CreatePartition answers NO_RESOURCES.
    max_partitions: int = 4096
    #: TLFS continuation: a rep call returns early (SUCCESS, fewer reps) once its simulated time
    #: would pass this budget (~50 us in the TLFS). None: never slice.
    rep_budget_ns: int | None = 50_000
    call_costs: dict[int, CallCost] = field(default_factory=lambda: dict(DEFAULT_CALL_COSTS))
    page_costs: PageCosts = PageCosts()
    #: Privileges of a new child until its parent sets PrivilegeFlags ([inferred], HYPERCALLS.md 8.5):
    #: the guest MSR bits plus AccessPartitionId.
    child_default_privileges: int = int(GUEST_MSR_PRIVILEGES | PartitionPrivilege.AccessPartitionId)
    #: GetPartitionProperty on a CREATED partition: allowed (current TLFS reading) or
    #: INVALID_PARTITION_STATE (legacy reference). [inferred] default: allowed.
    get_property_in_created: bool = True
    #: Status for an unknown register name: INVALID_PARAMETER (legacy reference, the default) or
    #: UNKNOWN_REGISTER_NAME (newer builds).
    unknown_register_status: HvStatus = HvStatus.INVALID_PARAMETER
    #: Status for an illegal register value or a write to a read-only register: INVALID_PARAMETER
    #: (legacy reference, the default) or INVALID_REGISTER_VALUE (newer builds).
    invalid_register_value_status: HvStatus = HvStatus.INVALID_PARAMETER
    #: Pages WithdrawMemory leaves behind in an ACTIVE partition ("success is not guaranteed").
    withdraw_reserve_active_pages: int = 0
    #: VirtualTlbPageCount is clamped into this range (legacy reference: out-of-range is clamped).
    virtual_tlb_pages_min: int = 0
    virtual_tlb_pages_max: int = 256
    #: A port accepts one connection (legacy reference) or any number (the current TLFS is silent).
    port_single_connection: bool = True
    #: Event ports: reject BaseFlagNumber + FlagCount >= 2048 (legacy table, the default) or only > 2048.
    event_flags_end_exclusive: bool = True
    #: Simulated time a posted message or event signal spends in transit between the sender's VP
    #: and the target VP's SynIC queue (nothing documents it; a cross-processor IPI is ~1 us).
    message_latency_ns: int = 1_000
    #: Guest message buffers per port (16 in the TLFS); INSUFFICIENT_BUFFERS once all are held.
    port_message_buffers: int = 16
    #: A doorbell write while the port's previous notification is still undelivered is merged into
    #: it ([inferred]: the TLFS does not say; an edge-style notification is what hosts expect).
    doorbell_coalesce: bool = True
    #: Service time of a guest's SynIC MSR write (SCONTROL, SIMP, SINTx, EOM) or doorbell write.
    msr_write_ns: int = 300
    #: Width of a child's GPA space in bits (page numbers beyond it are INVALID_PARAMETER).
    guest_gpa_bits: int = 46
    #: UnregisterInterceptResult of an entry never registered: INVALID_PARAMETER (the default) or
    #: NOT_FOUND; no source says which.
    unregister_missing_status: HvStatus = HvStatus.INVALID_PARAMETER
    #: TranslateVirtualAddress with paging off: the GVA is the GPA, and the GPA's access is still
    #: checked (result codes 4-7, as for any translation: the default), or the translation always
    #: succeeds (the legacy reference's wording, False).
    paging_off_checks_gpa_access: bool = True
    #: A flush naming a VP whose TLB is locked (TlbLocked, set by TranslateVirtualAddress with
    #: TLB_FLUSH_INHIBIT) suspends the flushing VP until the parent clears the lock, then the call
    #: is re-issued (the TLFS rule, the default); False flushes at once, ignoring locks.
    flush_waits_for_tlb_lock: bool = True
    #: MapSparseGpaPages onto a mapped page: replace it (legacy reference, the default) or refuse
    #: it OBJECT_IN_USE (the current TLFS asks for the page to be unmapped first).
    sparse_map_requires_unmapped: bool = False
    #: Partition ids are sequential from here; the root takes the first.
    first_partition_id: int = 1

    def cost(self, code: int) -> CallCost:
        return self.call_costs.get(code, DEFAULT_CALL_COST)

    def with_(self, **changes: Any) -> HvConfig:
        return replace(self, **changes)
