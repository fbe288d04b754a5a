"""The hypervisor model: the call table, bound to the handlers, and the hypercall entry point.

The table is data: code -> shape (TLFS sizes) and the name of the handler method. Codes the TLFS
defines but this build does not implement answer INVALID_HYPERCALL_CODE, as a hypervisor build
without them would; README lists what is implemented.
"""

from __future__ import annotations

from collections.abc import Callable

from hvsim.actors.config import HvConfig
from hvsim.actors.gpa import GpaCalls
from hvsim.actors.hvdef import (
    ASSERT_VIRTUAL_INTERRUPT_INPUT,
    CHECK_FOR_IO_INTERCEPT_INPUT,
    CONNECT_PORT_INPUT,
    CPUID_QUERY,
    CPUID_RESULT_SIZE,
    CREATE_PARTITION_INPUT,
    CREATE_PORT_INPUT,
    CREATE_VP_INPUT,
    DELETE_VP_INPUT,
    FLUSH_VIRTUAL_ADDRESS_INPUT,
    GET_NEXT_CHILD_PARTITION_INPUT,
    GET_PARTITION_PROPERTY_INPUT,
    GET_VP_CPUID_VALUES_HEADER,
    GPA_MAPPING_ELEMENT,
    GPA_PAGE_NUMBER_SIZE,
    HV_PAGE_SIZE,
    HV_REGISTER_VALUE_SIZE,
    INITIAL_VP_CONTEXT,
    INSTALL_INTERCEPT_INPUT,
    MAP_GPA_PAGES_HEADER,
    MAP_STATS_PAGE2_INPUT,
    MAP_VP_STATE_PAGE_INPUT,
    MEMORY_BALANCE_OUTPUT,
    MEMORY_POOL_INPUT,
    PARTITION_ID_INPUT,
    PARTITION_PROPERTY_EX_INPUT,
    PORT_ID_INPUT,
    POST_MESSAGE_DIRECT_INPUT,
    POST_MESSAGE_INPUT,
    REGISTER_ASSOC,
    REGISTER_INTERCEPT_RESULT_SIZE,
    REGISTER_NAME_SIZE,
    SET_PARTITION_PROPERTY_INPUT,
    SIGNAL_EVENT_DIRECT_INPUT,
    SIGNAL_EVENT_DIRECT_OUTPUT,
    SIGNAL_EVENT_INPUT,
    SPARSE_GPA_HEADER,
    START_VIRTUAL_PROCESSOR_HEADER,
    TRANSLATE_VA_EX_OUTPUT,
    TRANSLATE_VA_INPUT,
    TRANSLATE_VA_OUTPUT,
    UNMAP_GPA_PAGES_HEADER,
    UNMAP_STATS_PAGE_INPUT,
    UNMAP_VP_STATE_PAGE_INPUT,
    UNREGISTER_INTERCEPT_RESULT_SIZE,
    VP_REGISTERS_INPUT,
    HvStatus,
    HypercallCode,
    make_result,
)
from hvsim.actors.hypercall import HypercallDef, HypercallRequest, HypercallResult, Shape, dispatch
from hvsim.actors.interceptresults import InterceptResultCalls
from hvsim.actors.intercepts import InterceptCalls
from hvsim.actors.interrupts import InterruptCalls
from hvsim.actors.messages import MessageCalls
from hvsim.actors.partitions import PartitionCalls
from hvsim.actors.pools import PoolCalls
from hvsim.actors.ports import PortCalls
from hvsim.actors.properties import PropertyCalls
from hvsim.actors.seams import CallFault
from hvsim.actors.state import Effects
from hvsim.actors.statspages import StatsPageCalls
from hvsim.actors.trace import EventLog
from hvsim.actors.translate import TranslateCalls
from hvsim.actors.vpstate import VpCalls

C = HypercallCode


#: Every hypercall this build answers.
CALL_TABLE: dict[int, Shape] = {
    C.CreatePartition: Shape("create_partition", CREATE_PARTITION_INPUT.size, 8),
    C.InitializePartition: Shape("initialize_partition", PARTITION_ID_INPUT.size),
    C.FinalizePartition: Shape("finalize_partition", PARTITION_ID_INPUT.size),
    C.DeletePartition: Shape("delete_partition", PARTITION_ID_INPUT.size),
    C.GetPartitionProperty: Shape("get_partition_property", GET_PARTITION_PROPERTY_INPUT.size, 8),
    C.SetPartitionProperty: Shape("set_partition_property", SET_PARTITION_PROPERTY_INPUT.size),
    C.GetPartitionPropertyEx: Shape(
        "get_partition_property_ex", PARTITION_PROPERTY_EX_INPUT.size, HV_PAGE_SIZE - 24
    ),
    C.SetPartitionPropertyEx: Shape(
        "set_partition_property_ex", PARTITION_PROPERTY_EX_INPUT.size, variable=True
    ),
    C.GetPartitionId: Shape("get_partition_id", 0, 8),
    C.GetNextChildPartition: Shape("get_next_child_partition", GET_NEXT_CHILD_PARTITION_INPUT.size, 8),
    C.CreateVp: Shape("create_vp", CREATE_VP_INPUT.size),
    C.DeleteVp: Shape("delete_vp", DELETE_VP_INPUT.size),
    C.DepositMemory: Shape(
        "deposit_memory", PARTITION_ID_INPUT.size, rep=True, rep_in_size=GPA_PAGE_NUMBER_SIZE
    ),
    C.WithdrawMemory: Shape(
        "withdraw_memory", MEMORY_POOL_INPUT.size, rep=True, rep_out_size=GPA_PAGE_NUMBER_SIZE
    ),
    C.GetMemoryBalance: Shape("get_memory_balance", MEMORY_POOL_INPUT.size, MEMORY_BALANCE_OUTPUT.size),
    C.GetVpRegisters: Shape(
        "get_vp_registers",
        VP_REGISTERS_INPUT.size,
        rep=True,
        rep_in_size=REGISTER_NAME_SIZE,
        rep_out_size=HV_REGISTER_VALUE_SIZE,
    ),
    C.SetVpRegisters: Shape(
        "set_vp_registers", VP_REGISTERS_INPUT.size, rep=True, rep_in_size=REGISTER_ASSOC.size
    ),
    C.CreatePort: Shape("create_port", CREATE_PORT_INPUT.size),
    C.DeletePort: Shape("delete_port", PORT_ID_INPUT.size),
    C.ConnectPort: Shape("connect_port", CONNECT_PORT_INPUT.size),
    C.DisconnectPort: Shape("disconnect_port", PORT_ID_INPUT.size),
    C.PostMessage: Shape("post_message", POST_MESSAGE_INPUT.size),
    C.SignalEvent: Shape("signal_event", SIGNAL_EVENT_INPUT.size),
    C.PostMessageDirect: Shape("post_message_direct", POST_MESSAGE_DIRECT_INPUT.size),
    C.SignalEventDirect: Shape(
        "signal_event_direct", SIGNAL_EVENT_DIRECT_INPUT.size, SIGNAL_EVENT_DIRECT_OUTPUT.size
    ),
    C.MapGpaPages: Shape(
        "map_gpa_pages", MAP_GPA_PAGES_HEADER.size, rep=True, rep_in_size=GPA_PAGE_NUMBER_SIZE
    ),
    C.MapSparseGpaPages: Shape(
        "map_sparse_gpa_pages", SPARSE_GPA_HEADER.size, rep=True, rep_in_size=GPA_MAPPING_ELEMENT.size
    ),
    C.UnmapGpaPages: Shape("unmap_gpa_pages", UNMAP_GPA_PAGES_HEADER.size, rep=True),
    C.ModifySparseGpaPages: Shape(
        "modify_sparse_gpa_pages", SPARSE_GPA_HEADER.size, rep=True, rep_in_size=GPA_PAGE_NUMBER_SIZE
    ),
    C.TranslateVirtualAddress: Shape(
        "translate_virtual_address", TRANSLATE_VA_INPUT.size, TRANSLATE_VA_OUTPUT.size
    ),
    C.TranslateVirtualAddressEx: Shape(
        "translate_virtual_address_ex", TRANSLATE_VA_INPUT.size, TRANSLATE_VA_EX_OUTPUT.size
    ),
    C.InstallIntercept: Shape("install_intercept", INSTALL_INTERCEPT_INPUT.size),
    C.CheckForIoIntercept: Shape("check_for_io_intercept", CHECK_FOR_IO_INTERCEPT_INPUT.size, 8),
    C.AssertVirtualInterrupt: Shape("assert_virtual_interrupt", ASSERT_VIRTUAL_INTERRUPT_INPUT.size),
    C.ClearVirtualInterrupt: Shape("clear_virtual_interrupt", PARTITION_ID_INPUT.size),
    C.FlushVirtualAddressSpace: Shape("flush_virtual_address_space", FLUSH_VIRTUAL_ADDRESS_INPUT.size),
    C.FlushVirtualAddressList: Shape(
        "flush_virtual_address_list", FLUSH_VIRTUAL_ADDRESS_INPUT.size, rep=True, rep_in_size=8
    ),
    C.GetVpCpuidValues: Shape(
        "get_vp_cpuid_values",
        GET_VP_CPUID_VALUES_HEADER.size,
        rep=True,
        rep_in_size=CPUID_QUERY.size,
        rep_out_size=CPUID_RESULT_SIZE,
    ),
    C.MapStatsPage2: Shape("map_stats_page2", MAP_STATS_PAGE2_INPUT.size),
    C.UnmapStatsPage: Shape("unmap_stats_page", UNMAP_STATS_PAGE_INPUT.size),
    C.MapVpStatePage: Shape("map_vp_state_page", MAP_VP_STATE_PAGE_INPUT.size, 8),
    C.UnmapVpStatePage: Shape("unmap_vp_state_page", UNMAP_VP_STATE_PAGE_INPUT.size),
    C.RegisterInterceptResult: Shape("register_intercept_result", REGISTER_INTERCEPT_RESULT_SIZE),
    C.UnregisterInterceptResult: Shape("unregister_intercept_result", UNREGISTER_INTERCEPT_RESULT_SIZE),
    C.StartVirtualProcessor: Shape(
        "start_virtual_processor", START_VIRTUAL_PROCESSOR_HEADER.size + INITIAL_VP_CONTEXT.size
    ),
}


#: Code -> TLFS name, for records that people read.
CALL_NAMES: dict[int, str] = {int(c): c.name for c in HypercallCode}


class Hypervisor(
    StatsPageCalls,
    InterruptCalls,
    InterceptCalls,
    InterceptResultCalls,
    GpaCalls,
    TranslateCalls,
    PortCalls,
    MessageCalls,
    PartitionCalls,
    PoolCalls,
    PropertyCalls,
    VpCalls,
):
    """The hypervisor's behaviour and state; :meth:`hypercall` is the only way in for callers."""

    def __init__(
        self,
        config: HvConfig,
        clock: Callable[[], int],
        log: EventLog,
        effects: Effects | None = None,
    ) -> None:
        super().__init__(config, clock, log, effects)
        self.table: dict[int, HypercallDef] = {
            code: HypercallDef(code, getattr(self, shape.handler), shape)
            for code, shape in CALL_TABLE.items()
        }
        self._rep_codes = frozenset(code for code, shape in CALL_TABLE.items() if shape.rep)

    def gpa_limit(self, caller_id: int) -> int:
        """Bytes of GPA space a caller's parameter blocks may live in."""
        if caller_id == self.root.id:
            return self.config.host_pages * HV_PAGE_SIZE
        return 1 << 46

    def _extra_fields(self, code: int, control: int, fault: CallFault | None) -> dict[str, object]:
        """Optional record fields: ``of`` (rep count, so continuations show) and the fault."""
        extra: dict[str, object] = {}
        if code in self._rep_codes:
            extra["of"] = (control >> 32) & 0xFFF
        if fault is not None:
            extra["fault"] = fault.fault
        return extra

    def hypercall(self, req: HypercallRequest) -> HypercallResult:
        caller = self.partitions.get(req.caller)
        vp = caller.vps.get(req.vp) if caller is not None else None
        if caller is None or vp is None:
            # The VP was deleted (or its partition finalized) in the very instant its guest
            # executed the hypercall instruction: no guest is left to see a result.
            self.log.emit("hypercall.orphaned", caller=req.caller, vp=req.vp, code=req.control & 0xFFFF)
            status = HvStatus.INVALID_VP_INDEX
            return HypercallResult(make_result(status), status, 0, b"", 0)
        code = req.control & 0xFFFF
        fault = None
        if self.interposer is not None:
            ctl = req.control
            fault = self.interposer.on_hypercall(
                req.caller, req.vp, code, (ctl >> 48) & 0xFFF, (ctl >> 32) & 0xFFF
            )
        res = dispatch(self.table, self.config, caller, self.gpa_limit(caller.id), req, fault)
        if res.reissue:
            return res  # the VP was suspended instead; its call completes when re-issued
        vp.calls_by_code[code] = vp.calls_by_code.get(code, 0) + 1
        key = (code, int(res.status))
        self.call_counts[key] = self.call_counts.get(key, 0) + 1
        if self.log.enabled:
            self.log.emit(
                "hypercall",
                caller=req.caller,
                vp=req.vp,
                call=CALL_NAMES.get(code) or f"0x{code:04x}",
                status=res.status.name,
                reps=res.reps_completed,
                cost_ns=res.cost_ns,
                **self._extra_fields(code, req.control, fault),
            )
        return res
