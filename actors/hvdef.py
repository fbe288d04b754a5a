"""The hypervisor ABI, transcribed once: call codes, statuses, bits, names and byte layouts.

Names follow the TLFS (member = spec name without its ``HvCall``/``HV_STATUS_``/``HvRegister``
prefix) so that grep works between spec and code. Values come from ``../shared/spec/HYPERCALLS.md``
and follow its errata decisions (section 0.3, D1-D16). Stdlib only, no behaviour: every other module
imports its numbers from here and none redefines one.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag
from typing import Any, Generic, NamedTuple, TypeVar

HV_PAGE_SIZE = 4096
HV_PAGE_SHIFT = 12
HV_PARTITION_ID_INVALID = 0
HV_PARTITION_ID_SELF = 0xFFFF_FFFF_FFFF_FFFF
HV_VP_INDEX_SELF = 0xFFFF_FFFE
HV_ANY_VP = 0xFFFF_FFFF
HV_MAXIMUM_PROCESSORS = 2048
HV_MAX_VP_INDEX = HV_MAXIMUM_PROCESSORS - 1
#: RDX + R8 + XMM0-XMM5: the most a fast (register-based) call can carry.
HV_FAST_INPUT_MAX = 112
HV_REGISTER_VALUE_SIZE = 16
#: HV_COMPATIBILITY_21_H2, what Linux's mshv passes to CreatePartition.
HV_COMPATIBILITY_21_H2 = 0x0609


class HypercallCode(IntEnum):
    """HV_CALL_CODE: bits 15:0 of the hypercall input value (HYPERCALLS.md 4.0)."""

    FlushVirtualAddressSpace = 0x0002
    FlushVirtualAddressList = 0x0003
    CreatePartition = 0x0040
    InitializePartition = 0x0041
    FinalizePartition = 0x0042
    DeletePartition = 0x0043
    GetPartitionProperty = 0x0044
    SetPartitionProperty = 0x0045
    GetPartitionId = 0x0046
    GetNextChildPartition = 0x0047
    DepositMemory = 0x0048
    WithdrawMemory = 0x0049
    GetMemoryBalance = 0x004A
    MapGpaPages = 0x004B
    UnmapGpaPages = 0x004C
    InstallIntercept = 0x004D
    CreateVp = 0x004E
    DeleteVp = 0x004F
    GetVpRegisters = 0x0050
    SetVpRegisters = 0x0051
    TranslateVirtualAddress = 0x0052
    ClearVirtualInterrupt = 0x0056
    DeletePort = 0x0058
    DisconnectPort = 0x005B
    PostMessage = 0x005C
    SignalEvent = 0x005D
    UnmapStatsPage = 0x006D
    MapSparseGpaPages = 0x006E
    ModifySparseGpaPages = 0x0090
    RegisterInterceptResult = 0x0091
    UnregisterInterceptResult = 0x0092
    AssertVirtualInterrupt = 0x0094
    CreatePort = 0x0095
    ConnectPort = 0x0096
    StartVirtualProcessor = 0x0099
    TranslateVirtualAddressEx = 0x00AC
    CheckForIoIntercept = 0x00AD
    SignalEventDirect = 0x00C0
    PostMessageDirect = 0x00C1
    MapVpStatePage = 0x00E1
    UnmapVpStatePage = 0x00E2
    GetVpCpuidValues = 0x00F4
    GetPartitionPropertyEx = 0x0101
    SetPartitionPropertyEx = 0x010A
    InstallInterceptEx = 0x0110
    SetVirtualInterruptTarget = 0x011F
    MapStatsPage2 = 0x0131


class HvStatus(IntEnum):
    """HV_STATUS (u16), HYPERCALLS.md section 2. Use :func:`describe` for the meaning."""

    SUCCESS = 0x0000
    INVALID_HYPERCALL_CODE = 0x0002
    INVALID_HYPERCALL_INPUT = 0x0003
    INVALID_ALIGNMENT = 0x0004
    INVALID_PARAMETER = 0x0005
    ACCESS_DENIED = 0x0006
    INVALID_PARTITION_STATE = 0x0007
    OPERATION_DENIED = 0x0008
    UNKNOWN_PROPERTY = 0x0009
    PROPERTY_VALUE_OUT_OF_RANGE = 0x000A
    INSUFFICIENT_MEMORY = 0x000B
    PARTITION_TOO_DEEP = 0x000C
    INVALID_PARTITION_ID = 0x000D
    INVALID_VP_INDEX = 0x000E
    NOT_FOUND = 0x0010
    INVALID_PORT_ID = 0x0011
    INVALID_CONNECTION_ID = 0x0012
    INSUFFICIENT_BUFFERS = 0x0013
    NOT_ACKNOWLEDGED = 0x0014
    INVALID_VP_STATE = 0x0015
    ACKNOWLEDGED = 0x0016
    INVALID_SAVE_RESTORE_STATE = 0x0017
    INVALID_SYNIC_STATE = 0x0018
    OBJECT_IN_USE = 0x0019
    INVALID_PROXIMITY_DOMAIN_INFO = 0x001A
    NO_DATA = 0x001B
    INACTIVE = 0x001C
    NO_RESOURCES = 0x001D
    FEATURE_UNAVAILABLE = 0x001E
    PARTIAL_PACKET = 0x001F
    PROCESSOR_FEATURE_NOT_SUPPORTED = 0x0020
    PROCESSOR_CACHE_LINE_FLUSH_SIZE_INCOMPATIBLE = 0x0030
    INSUFFICIENT_BUFFER = 0x0033
    INCOMPATIBLE_PROCESSOR = 0x0037
    INSUFFICIENT_DEVICE_DOMAINS = 0x0038
    CPUID_FEATURE_VALIDATION_ERROR = 0x003C
    CPUID_XSAVE_FEATURE_VALIDATION_ERROR = 0x003D
    PROCESSOR_STARTUP_TIMEOUT = 0x003E
    SMX_ENABLED = 0x003F
    INVALID_LP_INDEX = 0x0041
    INVALID_REGISTER_VALUE = 0x0050
    INVALID_VTL_STATE = 0x0051
    NX_NOT_DETECTED = 0x0055
    INVALID_DEVICE_ID = 0x0057
    INVALID_DEVICE_STATE = 0x0058
    PENDING_PAGE_REQUESTS = 0x0059
    PAGE_REQUEST_INVALID = 0x0060
    KEY_ALREADY_EXISTS = 0x0065
    DEVICE_ALREADY_IN_DOMAIN = 0x0066
    INVALID_CPU_GROUP_ID = 0x006F
    INVALID_CPU_GROUP_STATE = 0x0070
    OPERATION_FAILED = 0x0071
    NOT_ALLOWED_WITH_NESTED_VIRT_ACTIVE = 0x0072
    INSUFFICIENT_ROOT_MEMORY = 0x0073
    EVENT_BUFFER_ALREADY_FREED = 0x0074
    INSUFFICIENT_CONTIGUOUS_MEMORY = 0x0075
    TIMEOUT = 0x0078
    CALL_PENDING = 0x0079
    INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY = 0x0083
    VTL_ALREADY_ENABLED = 0x0086
    UNKNOWN_REGISTER_NAME = 0x0087


_STATUS_MEANING = {
    HvStatus.SUCCESS: "no error",
    HvStatus.INVALID_HYPERCALL_CODE: "call code not recognised",
    HvStatus.INVALID_HYPERCALL_INPUT: "bad control word (rep fields, reserved bits, variable header)",
    HvStatus.INVALID_ALIGNMENT: "misaligned, page-crossing or out-of-range parameter block",
    HvStatus.INVALID_PARAMETER: "bad argument",
    HvStatus.ACCESS_DENIED: "missing privilege, or not the parent",
    HvStatus.INVALID_PARTITION_STATE: "target partition in the wrong lifecycle state",
    HvStatus.OPERATION_DENIED: "operation refused in the current circumstances",
    HvStatus.UNKNOWN_PROPERTY: "property code not recognised",
    HvStatus.PROPERTY_VALUE_OUT_OF_RANGE: "property value out of range, or a static privilege changed",
    HvStatus.INSUFFICIENT_MEMORY: "memory pool too small: deposit and retry",
    HvStatus.PARTITION_TOO_DEEP: "would exceed the maximum partition depth",
    HvStatus.INVALID_PARTITION_ID: "no such partition",
    HvStatus.INVALID_VP_INDEX: "no such VP, index out of range, or already in use",
    HvStatus.NO_RESOURCES: "resource unavailable (WithdrawMemory: no free page left)",
    HvStatus.INVALID_VP_STATE: "VP not in a state suitable for the operation",
    HvStatus.OBJECT_IN_USE: "object already in use",
    HvStatus.INVALID_REGISTER_VALUE: "register value rejected",
    HvStatus.UNKNOWN_REGISTER_NAME: "unknown register name",
}


def describe(status: int) -> str:
    """``NAME (0xNNNN): meaning`` for a status value, also for values outside the enum."""
    try:
        st = HvStatus(status)
    except ValueError:
        return f"UNKNOWN_STATUS (0x{status:04x})"
    meaning = _STATUS_MEANING.get(st)
    return f"{st.name} (0x{status:04x})" + (f": {meaning}" if meaning else "")


# --- hypercall input value (control word), HYPERCALLS.md 1.1 ------------------------------------
CODE_MASK = 0x0000_0000_0000_FFFF
FAST_BIT = 0x0000_0000_0001_0000
VARHDR_SHIFT = 17
VARHDR_MASK = 0x0000_0000_07FE_0000
NESTED_BIT = 0x0000_0000_8000_0000
REP_COUNT_SHIFT = 32
REP_COUNT_MASK = 0x0000_0FFF_0000_0000
REP_START_SHIFT = 48
REP_START_MASK = 0x0FFF_0000_0000_0000
RESERVED_MASK = 0x0000_0000_7800_0000 | 0x0000_F000_0000_0000 | 0xF000_0000_0000_0000
REP_MAX = 0xFFF


class Control(NamedTuple):
    """The decoded 64-bit hypercall input value."""

    code: int
    fast: bool = False
    varhdr_qwords: int = 0
    rep_count: int = 0
    rep_start: int = 0
    nested: bool = False
    reserved: int = 0

    def encode(self) -> int:
        if not (0 <= self.code <= CODE_MASK and 0 <= self.varhdr_qwords < 1024):
            raise ValueError(f"control field out of range: {self}")
        if not (0 <= self.rep_count <= REP_MAX and 0 <= self.rep_start <= REP_MAX):
            raise ValueError(f"rep field out of range: {self}")
        return (
            self.code
            | (FAST_BIT if self.fast else 0)
            | (self.varhdr_qwords << VARHDR_SHIFT)
            | (NESTED_BIT if self.nested else 0)
            | (self.rep_count << REP_COUNT_SHIFT)
            | (self.rep_start << REP_START_SHIFT)
            | (self.reserved & RESERVED_MASK)
        )

    @classmethod
    def decode(cls, value: int) -> Control:
        value &= 0xFFFF_FFFF_FFFF_FFFF
        return cls(
            code=value & CODE_MASK,
            fast=bool(value & FAST_BIT),
            varhdr_qwords=(value & VARHDR_MASK) >> VARHDR_SHIFT,
            rep_count=(value & REP_COUNT_MASK) >> REP_COUNT_SHIFT,
            rep_start=(value & REP_START_MASK) >> REP_START_SHIFT,
            nested=bool(value & NESTED_BIT),
            reserved=value & RESERVED_MASK,
        )


def control(
    code: int, *, fast: bool = False, rep_count: int = 0, rep_start: int = 0, varhdr_qwords: int = 0
) -> int:
    """Encode a hypercall input value; the usual way to build one."""
    return Control(int(code), fast, varhdr_qwords, rep_count, rep_start).encode()


# --- hypercall result value, HYPERCALLS.md 1.2 (erratum D1: reps completed is bits 43:32) ------
RESULT_STATUS_MASK = 0xFFFF
RESULT_REPS_SHIFT = 32
RESULT_REPS_MASK = 0xFFF


def make_result(status: int, reps_completed: int = 0) -> int:
    return (status & RESULT_STATUS_MASK) | ((reps_completed & RESULT_REPS_MASK) << RESULT_REPS_SHIFT)


def result_status(value: int) -> int:
    return value & RESULT_STATUS_MASK


def result_reps(value: int) -> int:
    return (value >> RESULT_REPS_SHIFT) & RESULT_REPS_MASK


# --- privileges, creation flags, proximity --------------------------------------------------------
class PartitionPrivilege(IntFlag):
    """HV_PARTITION_PRIVILEGE_MASK (u64), HYPERCALLS.md 5.2."""

    AccessVpRunTimeReg = 1 << 0
    AccessPartitionReferenceCounter = 1 << 1
    AccessSynicRegs = 1 << 2
    AccessSyntheticTimerRegs = 1 << 3
    AccessIntrCtrlRegs = 1 << 4
    AccessHypercallMsrs = 1 << 5
    AccessVpIndex = 1 << 6
    AccessResetReg = 1 << 7
    AccessStatsReg = 1 << 8
    AccessPartitionReferenceTsc = 1 << 9
    AccessGuestIdleReg = 1 << 10
    AccessFrequencyRegs = 1 << 11
    AccessReenlightenmentControls = 1 << 13
    CreatePartitions = 1 << 32
    AccessPartitionId = 1 << 33
    AccessMemoryPool = 1 << 34
    PostMessages = 1 << 36
    SignalEvents = 1 << 37
    CreatePort = 1 << 38
    ConnectPort = 1 << 39
    AccessStats = 1 << 40
    Debugging = 1 << 43
    CpuManagement = 1 << 44
    AccessVSM = 1 << 48
    AccessVpRegisters = 1 << 49
    EnableExtendedHypercalls = 1 << 52
    StartVirtualProcessor = 1 << 53


#: The guest-visible MSR-access privileges (bits 0-11 and 13): what every guest typically has.
GUEST_MSR_PRIVILEGES = PartitionPrivilege(0x2FFF)

#: Every privilege the TLFS defines.
ALL_PRIVILEGES = PartitionPrivilege(sum(p.value for p in PartitionPrivilege))


class CreationFlags(IntFlag):
    """HV_PARTITION_CREATION_FLAGS (u64), HYPERCALLS.md 5.3."""

    SMT_ENABLED_GUEST = 0x1
    NESTED_VIRTUALIZATION_CAPABLE = 0x2
    GPA_SUPER_PAGES_ENABLED = 0x10
    EXO_PARTITION = 0x100
    VTL1_OVERRIDE = 0x200
    VTL2_OVERRIDE = 0x400
    LAPIC_ENABLED = 0x2000
    ENABLE_PERFMON_PMU = 0x8000
    ENABLE_PERFMON_LBR = 0x10000
    INTERCEPT_MESSAGE_PAGE_ENABLED = 0x80000
    HYPERCALL_DOORBELL_PAGE_ENABLED = 0x100000
    X2APIC_CAPABLE = 0x400000


CREATION_FLAGS_KNOWN = 0x59A713
assert sum(f.value for f in CreationFlags) == CREATION_FLAGS_KNOWN

PROXIMITY_PREFERRED = 1 << 0
PROXIMITY_INFO_VALID = 1 << 31
PROXIMITY_RESERVED_MASK = 0x7FFF_FFFE
PROXIMITY_DOMAIN_MAX = 63


def proximity_info(domain_id: int = 0, *, valid: bool = False, preferred: bool = False) -> int:
    """HV_PROXIMITY_DOMAIN_INFO as a u64 (Id u32 @0, Flags u32 @4)."""
    flags = (PROXIMITY_INFO_VALID if valid else 0) | (PROXIMITY_PREFERRED if preferred else 0)
    return (domain_id & 0xFFFF_FFFF) | (flags << 32)


# --- partition properties, HYPERCALLS.md 5.1 ------------------------------------------------------
class PropertyCode(IntEnum):
    """HV_PARTITION_PROPERTY_CODE (u32): the codes this model knows."""

    PrivilegeFlags = 0x00010000
    SyntheticProcFeatures = 0x00010001
    Suspend = 0x00020000
    CpuReserve = 0x00020001
    CpuCap = 0x00020002
    CpuWeight = 0x00020003
    CpuGroupId = 0x00020004
    TimeFreeze = 0x00030003
    ReferenceTime = 0x00030005
    VirtualTlbPageCount = 0x00050000
    VsmConfig = 0x00050001
    ZeroMemoryOnReset = 0x00050002
    ProcessorsPerSocket = 0x00050003
    NestedTlbSize = 0x00050004
    GpaPageAccessTracking = 0x00050005
    IsolationState = 0x0005000C
    IsolationControl = 0x0005000D
    AllocationId = 0x0005000E
    MonitoringId = 0x0005000F
    ImplementedPhysicalAddressBits = 0x00050010
    NonArchitecturalCoreSharing = 0x00050011
    HypercallDoorbellPage = 0x00050012
    IsolationPolicy = 0x00050014
    UnimplementedMsrAction = 0x00050017
    PartitionDiagBufferConfig = 0x00050026
    ProcessorVendor = 0x00060000
    ProcessorXsaveFeatures = 0x00060002
    ProcessorClFlushSize = 0x00060003
    EnlightenmentModifications = 0x00060004
    CompatibilityVersion = 0x00060005
    PhysicalAddressWidth = 0x00060006
    XsaveStates = 0x00060007
    MaxXsaveDataSize = 0x00060008
    ProcessorClockFrequency = 0x00060009
    ProcessorFeatures0 = 0x0006000A
    ProcessorFeatures1 = 0x0006000B
    GuestOsId = 0x00070000
    ProcessorVirtualizationFeatures = 0x00080000
    VmmCapabilities = 0x00090007


# --- register names, HYPERCALLS.md 5.14 -----------------------------------------------------------
class RegisterName(IntEnum):
    """HV_REGISTER_NAME (u32), x64 subset this model implements."""

    ExplicitSuspend = 0x00000000
    InterceptSuspend = 0x00000001
    InstructionEmulationHints = 0x00000002
    DispatchSuspend = 0x00000003
    InternalActivityState = 0x00000004
    HypervisorVersion = 0x00000100
    PrivilegesAndFeaturesInfo = 0x00000200
    GuestCrashP0 = 0x00000210
    GuestCrashP1 = 0x00000211
    GuestCrashP2 = 0x00000212
    GuestCrashP3 = 0x00000213
    GuestCrashP4 = 0x00000214
    GuestCrashCtl = 0x00000215
    PendingInterruption = 0x00010002
    InterruptState = 0x00010003
    PendingEvent0 = 0x00010004
    PendingEvent1 = 0x00010005
    Rax = 0x00020000
    Rcx = 0x00020001
    Rdx = 0x00020002
    Rbx = 0x00020003
    Rsp = 0x00020004
    Rbp = 0x00020005
    Rsi = 0x00020006
    Rdi = 0x00020007
    R8 = 0x00020008
    R9 = 0x00020009
    R10 = 0x0002000A
    R11 = 0x0002000B
    R12 = 0x0002000C
    R13 = 0x0002000D
    R14 = 0x0002000E
    R15 = 0x0002000F
    Rip = 0x00020010
    Rflags = 0x00020011
    Xmm0 = 0x00030000
    Xmm1 = 0x00030001
    Xmm2 = 0x00030002
    Xmm3 = 0x00030003
    Xmm4 = 0x00030004
    Xmm5 = 0x00030005
    Xmm6 = 0x00030006
    Xmm7 = 0x00030007
    Xmm8 = 0x00030008
    Xmm9 = 0x00030009
    Xmm10 = 0x0003000A
    Xmm11 = 0x0003000B
    Xmm12 = 0x0003000C
    Xmm13 = 0x0003000D
    Xmm14 = 0x0003000E
    Xmm15 = 0x0003000F
    Cr0 = 0x00040000
    Cr2 = 0x00040001
    Cr3 = 0x00040002
    Cr4 = 0x00040003
    Cr8 = 0x00040004
    Xfem = 0x00040005
    Dr0 = 0x00050000
    Dr1 = 0x00050001
    Dr2 = 0x00050002
    Dr3 = 0x00050003
    Dr6 = 0x00050004
    Dr7 = 0x00050005
    Es = 0x00060000
    Cs = 0x00060001
    Ss = 0x00060002
    Ds = 0x00060003
    Fs = 0x00060004
    Gs = 0x00060005
    Ldtr = 0x00060006
    Tr = 0x00060007
    Idtr = 0x00070000
    Gdtr = 0x00070001
    Tsc = 0x00080000
    Efer = 0x00080001
    KernelGsBase = 0x00080002
    ApicBase = 0x00080003
    Pat = 0x00080004
    SysenterCs = 0x00080005
    SysenterEip = 0x00080006
    SysenterEsp = 0x00080007
    Star = 0x00080008
    Lstar = 0x00080009
    Cstar = 0x0008000A
    Sfmask = 0x0008000B
    InitialApicId = 0x0008000C
    Xss = 0x0008008B
    VpRuntime = 0x00090000
    Hypercall = 0x00090001
    GuestOsId = 0x00090002
    VpIndex = 0x00090003
    TimeRefCount = 0x00090004
    VpAssistPage = 0x00090013
    ReferenceTsc = 0x00090017
    Sint0 = 0x000A0000
    Sint1 = 0x000A0001
    Sint2 = 0x000A0002
    Sint3 = 0x000A0003
    Sint4 = 0x000A0004
    Sint5 = 0x000A0005
    Sint6 = 0x000A0006
    Sint7 = 0x000A0007
    Sint8 = 0x000A0008
    Sint9 = 0x000A0009
    Sint10 = 0x000A000A
    Sint11 = 0x000A000B
    Sint12 = 0x000A000C
    Sint13 = 0x000A000D
    Sint14 = 0x000A000E
    Sint15 = 0x000A000F
    Scontrol = 0x000A0010
    Sversion = 0x000A0011
    Sifp = 0x000A0012
    Sipp = 0x000A0013
    Eom = 0x000A0014
    Sirbp = 0x000A0015


# --- byte layouts -------------------------------------------------------------------------------
T = TypeVar("T", bound=tuple[Any, ...])


class Layout(Generic[T]):
    """A fixed little-endian wire structure bound to a NamedTuple of its fields.

    The size is asserted at import against the TLFS, like openvmm's ``const_assert!``.
    """

    __slots__ = ("_make", "fields", "name", "size", "struct")

    def __init__(self, record: type[T], fmt: str, size: int) -> None:
        self.struct = struct.Struct(fmt)
        self.name = record.__name__
        if self.struct.size != size:
            raise AssertionError(f"{self.name}: format is {self.struct.size} bytes, TLFS says {size}")
        self.fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
        if len(self.fields) != len(self.struct.unpack(bytes(size))):
            raise AssertionError(f"{self.name}: field count does not match format {fmt!r}")
        self._make = record._make  # type: ignore[attr-defined]
        self.size = size

    def pack(self, value: tuple[Any, ...]) -> bytes:
        return self.struct.pack(*value)

    def unpack(self, buf: bytes | bytearray | memoryview, offset: int = 0) -> T:
        """Decode from *buf* at *offset*; the caller guarantees ``size`` bytes are there."""
        return self._make(self.struct.unpack_from(buf, offset))  # type: ignore[no-any-return]


class PartitionIdInput(NamedTuple):
    """Initialize/Finalize/DeletePartition, GetPartitionProperty-less calls: PartitionId u64 @0."""

    partition_id: int


class CreatePartitionInput(NamedTuple):
    """HvCallCreatePartition input, x64 (56 B); DisabledProcessorFeatures is two u64 banks."""

    flags: int
    proximity_domain_info: int
    compatibility_version: int
    padding: int
    disabled_processor_features0: int
    disabled_processor_features1: int
    disabled_processor_xsave_features: int
    reserved_z0: int


class PartitionIdOutput(NamedTuple):
    """CreatePartition / GetPartitionId / GetNextChildPartition output: a partition id u64 @0."""

    partition_id: int


class GetPartitionPropertyInput(NamedTuple):
    partition_id: int
    property_code: int
    reserved: int


class SetPartitionPropertyInput(NamedTuple):
    partition_id: int
    property_code: int
    padding: int
    property_value: int


class PartitionPropertyExInput(NamedTuple):
    """Set/GetPartitionPropertyEx fixed header (24 B; erratum D13: the argument is a u64 @16)."""

    partition_id: int
    property_code: int
    padding: int
    property_argument: int


class PropertyValueOutput(NamedTuple):
    property_value: int


class GetNextChildPartitionInput(NamedTuple):
    parent_partition_id: int
    previous_child_partition_id: int


class CreateVpInput(NamedTuple):
    """HvCallCreateVp input (40 B): ReservedZ0 is three bytes @12, SubnodeType one byte @15."""

    partition_id: int
    vp_index: int
    reserved_z0: bytes
    subnode_type: int
    subnode_id: int
    proximity_domain_info: int
    flags: int


class DeleteVpInput(NamedTuple):
    partition_id: int
    vp_index: int
    padding: int


class MemoryPoolInput(NamedTuple):
    """WithdrawMemory header and GetMemoryBalance input: PartitionId u64 @0, ProximityDomainInfo @8."""

    partition_id: int
    proximity_domain_info: int


class MemoryBalanceOutput(NamedTuple):
    """GetMemoryBalance output (erratum D12: PagesAvailable @0, PagesInUse @8)."""

    pages_available: int
    pages_in_use: int


class VpRegistersInput(NamedTuple):
    """Get/SetVpRegisters header (16 B): TargetVtl is an HV_INPUT_VTL byte, RsvdZ three bytes."""

    partition_id: int
    vp_index: int
    target_vtl: int
    reserved: bytes


class RegisterAssoc(NamedTuple):
    """SetVpRegisters rep element (32 B): Name u32 @0, RsvdZ 12 B @4, Value 16 B @16."""

    name: int
    reserved: bytes
    value_low: int
    value_high: int


class StartVirtualProcessorHeader(NamedTuple):
    """HvCallStartVirtualProcessor header (16 B); the 224-byte HV_INITIAL_VP_CONTEXT follows @16."""

    partition_id: int
    vp_index: int
    target_vtl: int
    reserved: bytes


class InitialVpContext(NamedTuple):
    """HV_INITIAL_VP_CONTEXT, x64 (224 B); segments are (base, limit, selector, attributes)."""

    rip: int
    rsp: int
    rflags: int
    cs: bytes
    ds: bytes
    es: bytes
    fs: bytes
    gs: bytes
    ss: bytes
    tr: bytes
    ldtr: bytes
    idtr: bytes
    gdtr: bytes
    efer: int
    cr0: int
    cr3: int
    cr4: int
    msr_cr_pat: int


PARTITION_ID_INPUT = Layout(PartitionIdInput, "<Q", 8)
CREATE_PARTITION_INPUT = Layout(CreatePartitionInput, "<QQIIQQQQ", 56)
PARTITION_ID_OUTPUT = Layout(PartitionIdOutput, "<Q", 8)
GET_PARTITION_PROPERTY_INPUT = Layout(GetPartitionPropertyInput, "<QII", 16)
SET_PARTITION_PROPERTY_INPUT = Layout(SetPartitionPropertyInput, "<QIIQ", 24)
PARTITION_PROPERTY_EX_INPUT = Layout(PartitionPropertyExInput, "<QIIQ", 24)
PROPERTY_VALUE_OUTPUT = Layout(PropertyValueOutput, "<Q", 8)
GET_NEXT_CHILD_PARTITION_INPUT = Layout(GetNextChildPartitionInput, "<QQ", 16)
CREATE_VP_INPUT = Layout(CreateVpInput, "<QI3sBQQQ", 40)
DELETE_VP_INPUT = Layout(DeleteVpInput, "<QII", 16)
MEMORY_POOL_INPUT = Layout(MemoryPoolInput, "<QQ", 16)
MEMORY_BALANCE_OUTPUT = Layout(MemoryBalanceOutput, "<QQ", 16)
VP_REGISTERS_INPUT = Layout(VpRegistersInput, "<QIB3s", 16)
REGISTER_ASSOC = Layout(RegisterAssoc, "<I12sQQ", 32)
START_VIRTUAL_PROCESSOR_HEADER = Layout(StartVirtualProcessorHeader, "<QIB3s", 16)
INITIAL_VP_CONTEXT = Layout(InitialVpContext, "<QQQ" + "16s" * 10 + "QQQQQ", 224)

#: Rep element sizes (bytes).
GPA_PAGE_NUMBER_SIZE = 8
REGISTER_NAME_SIZE = 4

#: HV_INPUT_VTL: bits 3:0 TargetVtl, bit 4 UseTargetVtl, bits 7:5 reserved.
INPUT_VTL_RESERVED_MASK = 0xE0


class X64Segment(NamedTuple):
    """HV_X64_SEGMENT_REGISTER (16 B) as a 128-bit register value."""

    base: int
    limit: int
    selector: int
    attributes: int

    def to_value(self) -> int:
        return int.from_bytes(SEGMENT.pack(self), "little")

    @classmethod
    def from_value(cls, value: int) -> X64Segment:
        return SEGMENT.unpack(value.to_bytes(16, "little"))


class X64Table(NamedTuple):
    """HV_X64_TABLE_REGISTER (16 B): Pad u16[3], Limit u16, Base u64."""

    pad0: int
    pad1: int
    pad2: int
    limit: int
    base: int


SEGMENT = Layout(X64Segment, "<QIHH", 16)
TABLE = Layout(X64Table, "<HHHHQ", 16)

#: Segment attribute bits 11:8 are reserved.
SEGMENT_ATTRIBUTES_RESERVED = 0x0F00


def register_value_bytes(value: int) -> bytes:
    """HV_REGISTER_VALUE: 128 bits, little-endian, zero-extended."""
    return (value & ((1 << 128) - 1)).to_bytes(HV_REGISTER_VALUE_SIZE, "little")


# --- ports and connections, HYPERCALLS.md 4.37-4.40 and 5.5 ------------------------------------
class PortType(IntEnum):
    """HV_PORT_TYPE (u32)."""

    Message = 1
    Event = 2
    Monitor = 3
    Doorbell = 4


#: HV_PORT_ID / HV_CONNECTION_ID: bits 23:0 the id, bits 31:24 reserved.
PORT_ID_MASK = 0x00FF_FFFF
HV_SYNIC_SINT_COUNT = 16
HV_EVENT_FLAGS_COUNT = 2048
HV_MESSAGE_BUFFERS_PER_PORT = 16
#: HV_CONNECTION_INFO doorbell flags: trigger size (bits 2:0) and TRIGGER_ANY_VALUE (bit 31).
DOORBELL_FLAGS_KNOWN = 0x8000_0007
DOORBELL_TRIGGER_ANY_VALUE = 0x8000_0000
#: Doorbell trigger size code (flags bits 2:0) -> bytes; 0 is "any size".
DOORBELL_TRIGGER_BYTES = {0: 0, 1: 1, 2: 2, 3: 4, 4: 8}


class CreatePortInput(NamedTuple):
    """HvCallCreatePort input (56 B); PortInfo is the 24-byte HV_PORT_INFO @24."""

    port_partition_id: int
    port_id: int
    port_vtl: int
    min_connection_vtl: int
    reserved_z0: int
    connection_partition_id: int
    port_info: bytes
    proximity_domain_info: int


class PortInfo(NamedTuple):
    """HV_PORT_INFO (24 B), erratum D5: TargetSint u32 @8, TargetVp u32 @12; the 8 bytes @16 hold
    BaseFlagNumber u16 / FlagCount u16 / RsvdZ u32 for event ports and are reserved otherwise.
    For monitor ports the u64 @8 is MonitorAddress (target_sint | target_vp << 32)."""

    port_type: int
    padding: int
    target_sint: int
    target_vp: int
    base_flag_number: int
    flag_count: int
    reserved: int


class ConnectPortInput(NamedTuple):
    """HvCallConnectPort input (72 B); ConnectionInfo is the 32-byte HV_CONNECTION_INFO @32."""

    connection_partition_id: int
    connection_id: int
    connection_vtl: int
    reserved_z0: int
    reserved_z1: int
    port_partition_id: int
    port_id: int
    reserved_z2: int
    connection_info: bytes
    proximity_domain_info: int


class ConnectionInfo(NamedTuple):
    """HV_CONNECTION_INFO (32 B): PortType, padding, then per type: message/event reserved;
    monitor MonitorAddress @8; doorbell GuestPhysicalAddress @8, TriggerValue @16, Flags @24."""

    port_type: int
    padding: int
    address: int
    trigger_value: int
    flags: int


class PortIdInput(NamedTuple):
    """DeletePort / DisconnectPort input (16 B): partition, port or connection id, a u32 @12."""

    partition_id: int
    id: int
    flags: int


CREATE_PORT_INPUT = Layout(CreatePortInput, "<QIBBHQ24sQ", 56)
PORT_INFO = Layout(PortInfo, "<IIIIHHI", 24)
CONNECT_PORT_INPUT = Layout(ConnectPortInput, "<QIBBHQII32sQ", 72)
CONNECTION_INFO = Layout(ConnectionInfo, "<IIQQQ", 32)
PORT_ID_INPUT = Layout(PortIdInput, "<QII", 16)


# --- SynIC messages and events, HYPERCALLS.md 4.41-4.44 and 5.9 ---------------------------------
HV_MESSAGE_SIZE = 256
HV_MESSAGE_PAYLOAD_SIZE = 240
#: HV_MESSAGE_FLAGS bit 0: more messages are queued for this SINT (the guest must write EOM).
HV_MESSAGE_FLAG_PENDING = 0x01
#: HV_SYNIC_SINT bits: vector 7:0, masked 16, auto-EOI 17, polling 18.
SINT_MASKED = 1 << 16
SINT_AUTO_EOI = 1 << 17
SINT_POLLING = 1 << 18
#: Bit 0 of SCONTROL, SIMP and SIEFP: enabled.
SYNIC_ENABLE = 1
#: HV_EVENT_FLAGS_COUNT bytes-per-SINT area in the SIEF page (2048 flags = 256 bytes).
HV_EVENT_FLAGS_BYTES = HV_EVENT_FLAGS_COUNT // 8
#: Linux/mshv convention: SINT 5 receives doorbell notifications.
HV_SYNIC_DOORBELL_SINT = 5


class MessageType(IntEnum):
    """HV_MESSAGE_TYPE (u32), the values this model sends. Bit 31 set: hypervisor-reserved."""

    None_ = 0x0000_0000
    UnmappedGpa = 0x8000_0000
    GpaIntercept = 0x8000_0001
    SynicSintIntercept = 0x8000_0061
    X64IoPortIntercept = 0x8001_0000
    X64MsrIntercept = 0x8001_0001
    X64CpuidIntercept = 0x8001_0002
    ExceptionIntercept = 0x8001_0003


#: MessageType bit 31: reserved for the hypervisor; guests may post only types 1..0x7FFFFFFF.
MESSAGE_TYPE_HYPERVISOR = 1 << 31


class MessageHeader(NamedTuple):
    """HV_MESSAGE header (16 B): type u32, PayloadSize u8, MessageFlags u8, reserved u16,
    OriginationId u64 (the PortId for posted messages, the sender partition for intercepts)."""

    message_type: int
    payload_size: int
    flags: int
    reserved: int
    origination_id: int


class PostMessageInput(NamedTuple):
    """HvCallPostMessage input (256 B)."""

    connection_id: int
    reserved: int
    message_type: int
    payload_size: int
    payload: bytes


class SignalEventInput(NamedTuple):
    """HvCallSignalEvent input (8 B, fast)."""

    connection_id: int
    flag_number: int
    reserved: int


class PostMessageDirectInput(NamedTuple):
    """HvCallPostMessageDirect input (280 B, erratum D4: the header layout of Linux and openvmm);
    *message* is a complete HV_MESSAGE."""

    partition_id: int
    vp_index: int
    vtl: int
    padding0: bytes
    sint_index: int
    message: bytes
    padding1: int


class SignalEventDirectInput(NamedTuple):
    """HvCallSignalEventDirect input (16 B)."""

    partition_id: int
    vp_index: int
    vtl: int
    sint: int
    flag_number: int


class SignalEventDirectOutput(NamedTuple):
    """HvCallSignalEventDirect output (8 B): NewlySignaled u8 + 7 reserved."""

    newly_signaled: int
    reserved: bytes


MESSAGE_HEADER = Layout(MessageHeader, "<IBBHQ", 16)
POST_MESSAGE_INPUT = Layout(PostMessageInput, "<IIII240s", 256)
SIGNAL_EVENT_INPUT = Layout(SignalEventInput, "<IHH", 8)
POST_MESSAGE_DIRECT_INPUT = Layout(PostMessageDirectInput, "<QIB3sI256sI", 280)
SIGNAL_EVENT_DIRECT_INPUT = Layout(SignalEventDirectInput, "<QIBBH", 16)
SIGNAL_EVENT_DIRECT_OUTPUT = Layout(SignalEventDirectOutput, "<B7s", 8)


# --- GPA mappings, HYPERCALLS.md 4.16-4.19 and 5.7 ------------------------------------------------
class MapGpaFlags:
    """HV_MAP_GPA_FLAGS (u32)."""

    READABLE = 0x1
    WRITABLE = 0x2
    KERNEL_EXECUTABLE = 0x4
    USER_EXECUTABLE = 0x8
    EXECUTABLE = 0xC
    PERMISSIONS = 0xF
    ADJUSTABLE = 0x8000
    #: Bits 17:16: 1 NO_ACCESS, 2 ZEROED (shared zero page), 3 ONES (all-ones page).
    BACKING_MASK = 0x30000
    NO_ACCESS = 0x10000
    ZEROED = 0x20000
    ONES = 0x30000
    NO_OVERLAY = 0x100000
    NOT_CACHED = 0x200000
    #: State updates, for ModifySparseGpaPages only.
    CLEAR_ACCESSED = 0x0100_0000
    SET_ACCESSED = 0x0200_0000
    CLEAR_DIRTY = 0x0400_0000
    SET_DIRTY = 0x0800_0000
    DONT_SET_RANGE_ACCESSED = 0x1000_0000
    STATE_UPDATES = 0x1F00_0000
    LARGE_PAGE = 0x8000_0000
    #: What MapGpaPages / MapSparseGpaPages accept; anything else is INVALID_PARAMETER.
    MAP_KNOWN = PERMISSIONS | ADJUSTABLE | BACKING_MASK | NO_OVERLAY | NOT_CACHED | LARGE_PAGE
    #: What ModifySparseGpaPages may change (access rights, caching, state updates).
    MODIFY_KNOWN = PERMISSIONS | NOT_CACHED | STATE_UPDATES


#: HV_UNMAP_GPA_FLAGS: Linux's value for LARGE_PAGE (0x2); KEEP_PRECOMMITTED taken as 0x1 [inferred].
UNMAP_GPA_KEEP_PRECOMMITTED = 0x1
UNMAP_GPA_LARGE_PAGE = 0x2
#: 4 KiB pages in a 2 MiB large page.
LARGE_PAGE_PAGES = 512


class MapGpaPagesHeader(NamedTuple):
    """HvCallMapGpaPages header (24 B); rep elements are source GPA page numbers (u64)."""

    partition_id: int
    target_gpa_base: int
    map_flags: int
    padding: int


class SparseGpaHeader(NamedTuple):
    """MapSparseGpaPages / ModifySparseGpaPages header (16 B)."""

    partition_id: int
    map_flags: int
    reserved: int


class GpaMappingElement(NamedTuple):
    """HV_GPA_MAPPING (16 B): one MapSparseGpaPages element."""

    target_gpa_page: int
    source_gpa_page: int


class UnmapGpaPagesHeader(NamedTuple):
    """HvCallUnmapGpaPages header (24 B); rep count = pages (or 2 MiB pages), no element list."""

    partition_id: int
    target_gpa_base: int
    unmap_flags: int
    padding: int


MAP_GPA_PAGES_HEADER = Layout(MapGpaPagesHeader, "<QQII", 24)
SPARSE_GPA_HEADER = Layout(SparseGpaHeader, "<QII", 16)
GPA_MAPPING_ELEMENT = Layout(GpaMappingElement, "<QQ", 16)
UNMAP_GPA_PAGES_HEADER = Layout(UnmapGpaPagesHeader, "<QQII", 24)


# --- address translation, HYPERCALLS.md 4.20-4.21 and 5.8 -----------------------------------------
class TranslateGvaFlags:
    """HV_TRANSLATE_GVA_CONTROL_FLAGS (x64); bits 63:56 are the input VTL."""

    VALIDATE_READ = 0x1
    VALIDATE_WRITE = 0x2
    VALIDATE_EXECUTE = 0x4
    PRIVILEGE_EXEMPT = 0x8
    SET_PAGE_TABLE_BITS = 0x10
    TLB_FLUSH_INHIBIT = 0x20
    SUPERVISOR_ACCESS = 0x40
    USER_ACCESS = 0x80
    ENFORCE_SMAP = 0x100
    OVERRIDE_SMAP = 0x200
    SHADOW_STACK = 0x400
    VALIDATE = 0x7
    KNOWN = 0x7FF
    VTL_SHIFT = 56


class TranslateResultCode(IntEnum):
    """HV_TRANSLATE_GVA_RESULT_CODE."""

    Success = 0
    PageNotPresent = 1
    PrivilegeViolation = 2
    InvalidPageTableFlags = 3
    GpaUnmapped = 4
    GpaNoReadAccess = 5
    GpaNoWriteAccess = 6
    GpaIllegalOverlayAccess = 7
    Intercept = 8
    GpaUnaccepted = 9


#: HV_CACHE_TYPE WriteBack, reported for ordinary RAM; Uncached for NOT_CACHED mappings.
CACHE_TYPE_WRITEBACK = 6
CACHE_TYPE_UNCACHED = 0
#: HV_TRANSLATE_GVA_RESULT bit 40: the GPA is an overlay page (SIMP, SIEFP, ...).
TRANSLATE_RESULT_OVERLAY = 1 << 40


class TranslateVirtualAddressInput(NamedTuple):
    """TranslateVirtualAddress(Ex) input (32 B)."""

    partition_id: int
    vp_index: int
    reserved: int
    control_flags: int
    gva_page: int


class TranslateVirtualAddressOutput(NamedTuple):
    """TranslateVirtualAddress output (16 B): HV_TRANSLATE_GVA_RESULT, GpaPage."""

    result: int
    gpa_page: int


class TranslateVirtualAddressExOutput(NamedTuple):
    """TranslateVirtualAddressEx output, x64 (56 B, erratum D7): result, reserved, the
    HV_X64_PENDING_EVENT the access would inject (32 B), GpaPage @48."""

    result: int
    reserved: int
    event_info: bytes
    gpa_page: int


TRANSLATE_VA_INPUT = Layout(TranslateVirtualAddressInput, "<QIIQQ", 32)
TRANSLATE_VA_OUTPUT = Layout(TranslateVirtualAddressOutput, "<QQ", 16)
TRANSLATE_VA_EX_OUTPUT = Layout(TranslateVirtualAddressExOutput, "<QQ32sQ", 56)


# --- intercepts, HYPERCALLS.md 4.22-4.26 and 5.6 --------------------------------------------------
class InterceptType(IntEnum):
    """HV_INTERCEPT_TYPE (u32), x64 values."""

    X64IoPort = 0x00
    X64Msr = 0x01
    X64Cpuid = 0x02
    Exception = 0x03
    Mmio = 0x05
    X64GlobalCpuid = 0x06
    X64ApicSmi = 0x07
    Hypercall = 0x08
    X64ApicInitSipi = 0x09
    X64McUpdatePatchLevelMsrRead = 0x0A
    X64ApicWrite = 0x0B
    X64MsrIndex = 0x0C
    UnknownSynicConnection = 0x0D
    X64ApicEoi = 0x0E
    RetargetInterruptWithUnknownDeviceId = 0x0F
    X64ExceptionTrap = 0x10
    X64IoPortRange = 0x11


#: HV_INTERCEPT_ACCESS_TYPE_MASK.
INTERCEPT_READ, INTERCEPT_WRITE, INTERCEPT_EXECUTE = 0x1, 0x2, 0x4
#: SINT 0 receives intercept messages (HV_SYNIC_INTERCEPTION_SINT_INDEX).
HV_SYNIC_INTERCEPTION_SINT = 0


class InstallInterceptInput(NamedTuple):
    """HvCallInstallIntercept input (24 B)."""

    partition_id: int
    access_type: int
    intercept_type: int
    parameter: int


class CheckForIoInterceptInput(NamedTuple):
    """HvCallCheckForIoIntercept input (18 B, padded to 24)."""

    partition_id: int
    vp_index: int
    target_vtl: int
    padding0: int
    port: int
    size: int
    is_write: int
    padding1: bytes


INSTALL_INTERCEPT_INPUT = Layout(InstallInterceptInput, "<QIIQ", 24)
CHECK_FOR_IO_INTERCEPT_INPUT = Layout(CheckForIoInterceptInput, "<QIBBHBB6s", 24)


class X64InterceptHeader(NamedTuple):
    """HV_X64_INTERCEPT_MESSAGE_HEADER (40 B) [hdr Linux hvhdk.h]: VpIndex; InstructionLength
    (bits 3:0) | Cr8 (bits 7:4); InterceptAccessType (0 read, 1 write, 2 execute);
    ExecutionState (bits 1:0 CPL, 2 CR0.PE, 3 CR0.AM, 4 EFER.LMA, ...); CS; RIP; RFLAGS."""

    vp_index: int
    instruction_length_cr8: int
    access_type: int
    execution_state: int
    cs: bytes
    rip: int
    rflags: int


class X64IoPortInterceptMessage(NamedTuple):
    """HV_X64_IO_PORT_INTERCEPT_MESSAGE payload after the header (88 B): port, access info
    (bits 2:0 access size, 3 string op, 4 rep prefix), instruction byte count, RAX, instruction
    bytes, DS, ES, RCX, RSI, RDI."""

    port: int
    access_info: int
    instruction_byte_count: int
    reserved: int
    rax: int
    instruction_bytes: bytes
    ds: bytes
    es: bytes
    rcx: int
    rsi: int
    rdi: int


class X64MsrInterceptMessage(NamedTuple):
    """HV_X64_MSR_INTERCEPT_MESSAGE payload after the header (24 B)."""

    msr: int
    reserved: int
    rdx: int
    rax: int


class X64CpuidInterceptMessage(NamedTuple):
    """HV_X64_CPUID_INTERCEPT_MESSAGE payload after the header (64 B): the guest's RAX/RCX/RDX/RBX
    and the result the hypervisor would give without the intercept."""

    rax: int
    rcx: int
    rdx: int
    rbx: int
    default_rax: int
    default_rcx: int
    default_rdx: int
    default_rbx: int


class X64MemoryInterceptMessage(NamedTuple):
    """HV_X64_MEMORY_INTERCEPT_MESSAGE payload after the header (40 B): cache type, instruction byte
    count, access info (bit 0 GVA valid, bit 1 GVA->GPA valid), TPR priority, GVA, GPA,
    instruction bytes."""

    cache_type: int
    instruction_byte_count: int
    access_info: int
    tpr_priority: int
    reserved: int
    gva: int
    gpa: int
    instruction_bytes: bytes


X64_INTERCEPT_HEADER = Layout(X64InterceptHeader, "<IBBH16sQQ", 40)
X64_IO_PORT_INTERCEPT = Layout(X64IoPortInterceptMessage, "<HBBIQ16s16s16sQQQ", 88)
X64_MSR_INTERCEPT = Layout(X64MsrInterceptMessage, "<IIQQ", 24)
X64_CPUID_INTERCEPT = Layout(X64CpuidInterceptMessage, "<QQQQQQQQ", 64)
X64_MEMORY_INTERCEPT = Layout(X64MemoryInterceptMessage, "<IBBBBQQ16s", 40)
#: HV_INTERCEPT_ACCESS_TYPE values in an intercept message header.
ACCESS_READ, ACCESS_WRITE, ACCESS_EXECUTE = 0, 1, 2


# --- virtual interrupts, HYPERCALLS.md 4.34-4.35 and 5.13 -----------------------------------------
class InterruptType(IntEnum):
    """HV_INTERRUPT_TYPE (x64)."""

    Fixed = 0
    LowestPriority = 1
    Smi = 2
    RemoteRead = 3
    Nmi = 4
    Init = 5
    Sipi = 6
    ExtInt = 7
    LocalInt0 = 8
    LocalInt1 = 9


#: HV_INTERRUPT_CONTROL (x64): bits 31:0 type, bit 32 level-triggered, bit 33 logical destination.
INTERRUPT_LEVEL = 1 << 32
INTERRUPT_LOGICAL = 1 << 33
INTERRUPT_CONTROL_RESERVED = ~((1 << 34) - 1) & ((1 << 64) - 1)
HV_INTERRUPT_VECTOR_NONE = 0xFFFF_FFFF


class AssertVirtualInterruptInput(NamedTuple):
    """HvCallAssertVirtualInterrupt input (32 B)."""

    partition_id: int
    control: int
    destination: int
    vector: int
    target_vtl: int
    reserved_z0: int
    reserved_z1: int


ASSERT_VIRTUAL_INTERRUPT_INPUT = Layout(AssertVirtualInterruptInput, "<QQQIBBH", 32)


# --- TLB flushes, HYPERCALLS.md 4.27-4.28 ---------------------------------------------------------
#: HvRegisterInterceptSuspend bit 1, TlbLocked: flushes of this VP's TLB wait until it clears.
INTERCEPT_SUSPEND_TLB_LOCKED = 0x2
FLUSH_ALL_PROCESSORS = 0x1
FLUSH_ALL_VIRTUAL_ADDRESS_SPACES = 0x2
FLUSH_NON_GLOBAL_MAPPINGS_ONLY = 0x4
FLUSH_USE_EXTENDED_RANGE_FORMAT = 0x8


class FlushVirtualAddressInput(NamedTuple):
    """FlushVirtualAddressSpace / FlushVirtualAddressList header (24 B)."""

    address_space: int
    flags: int
    processor_mask: int


FLUSH_VIRTUAL_ADDRESS_INPUT = Layout(FlushVirtualAddressInput, "<QQQ", 24)


# --- CPUID, HYPERCALLS.md 4.15 ----------------------------------------------------------------------
class GetVpCpuidValuesHeader(NamedTuple):
    """HvCallGetVpCpuidValues header (24 B): flags bit 0 UseVpXfemXss, bit 1 ApplyRegisteredValues."""

    partition_id: int
    vp_index: int
    flags: int
    reserved: int
    padding: int


class CpuidQuery(NamedTuple):
    """One GetVpCpuidValues element (24 B, D6): leaf, subleaf, XFEM, XSS."""

    eax: int
    ecx: int
    xfem: int
    xss: int


GET_VP_CPUID_VALUES_HEADER = Layout(GetVpCpuidValuesHeader, "<QIIII", 24)
CPUID_QUERY = Layout(CpuidQuery, "<IIQQ", 24)
CPUID_RESULT_SIZE = 16


# --- statistics and VP state pages, HYPERCALLS.md 4.29-4.32 and 5.10-5.11 --------------------------
class StatsObjectType(IntEnum):
    """HV_STATS_OBJECT_TYPE."""

    Hypervisor = 0x0000_0001
    LogicalProcessor = 0x0000_0002
    Partition = 0x0001_0001
    Vp = 0x0001_0002


#: HV_STATS_AREA_TYPE (byte 15 of the object identity): SELF, PARENT, INTERNAL.
STATS_AREA_TYPES = 3


class MapStatsPage2Input(NamedTuple):
    """HvCallMapStatsPage2 input (32 B)."""

    stats_type: int
    reserved: int
    identity: bytes
    map_location: int


class UnmapStatsPageInput(NamedTuple):
    """HvCallUnmapStatsPage input (24 B)."""

    stats_type: int
    padding: int
    identity: bytes


class MapVpStatePageInput(NamedTuple):
    """HvCallMapVpStatePage input (24 B): flags bit 0 MapLocationProvided."""

    partition_id: int
    vp_index: int
    page_type: int
    input_vtl: int
    flags: int
    requested_map_location: int


class UnmapVpStatePageInput(NamedTuple):
    """HvCallUnmapVpStatePage input (16 B)."""

    partition_id: int
    vp_index: int
    page_type: int
    input_vtl: int
    reserved: int


class VpStatePageType(IntEnum):
    """HV_VP_STATE_PAGE_TYPE."""

    Registers = 0
    InterceptMessage = 1
    Ghcb = 2


MAP_STATS_PAGE2_INPUT = Layout(MapStatsPage2Input, "<II16sQ", 32)
UNMAP_STATS_PAGE_INPUT = Layout(UnmapStatsPageInput, "<II16s", 24)
MAP_VP_STATE_PAGE_INPUT = Layout(MapVpStatePageInput, "<QIHBBQ", 24)
UNMAP_VP_STATE_PAGE_INPUT = Layout(UnmapVpStatePageInput, "<QIHBB", 16)


# --- registered intercept results, HYPERCALLS.md 4.25-4.26 -----------------------------------------
class RegisterInterceptResultHeader(NamedTuple):
    """Register/UnregisterInterceptResult header (16 B): the parameters follow @16."""

    partition_id: int
    vp_index: int
    intercept_type: int


class CpuidResultParameters(NamedTuple):
    """CPUID registration @16 (44 B, D8): the leaf, subleaf, SubleafSpecific, AlwaysOverride, then
    the result and its masks (mask bits say which result bits override the hypervisor's)."""

    eax: int
    ecx: int
    subleaf_specific: int
    always_override: int
    padding: int
    result_eax: int
    eax_mask: int
    result_ebx: int
    ebx_mask: int
    result_ecx: int
    ecx_mask: int
    result_edx: int
    edx_mask: int


class MsrResultParameters(NamedTuple):
    """MSR registration @16 (12 B): index, access type (>= 1 bit), action (0 Fault, 1
    IgnoreWriteReadZero)."""

    msr_index: int
    access_type: int
    action: int


REGISTER_INTERCEPT_RESULT_HEADER = Layout(RegisterInterceptResultHeader, "<QII", 16)
CPUID_RESULT_PARAMETERS = Layout(CpuidResultParameters, "<IIBBHIIIIIIII", 44)
MSR_RESULT_PARAMETERS = Layout(MsrResultParameters, "<III", 12)
#: RegisterInterceptResult input: the 60-byte CPUID form padded to 64; Unregister's 28 padded to 32.
REGISTER_INTERCEPT_RESULT_SIZE = 64
UNREGISTER_INTERCEPT_RESULT_SIZE = 32


class X64ExceptionInterceptMessage(NamedTuple):
    """HV_X64_EXCEPTION_INTERCEPT_MESSAGE payload after the header (200 B) [hdr Linux]: vector,
    info (bit 0 error code valid), instruction byte count, error code, parameter (CR2 for #PF),
    instruction bytes, DS, SS, then RAX..R15."""

    vector: int
    info: int
    instruction_byte_count: int
    error_code: int
    parameter: int
    reserved: int
    instruction_bytes: bytes
    ds: bytes
    ss: bytes
    gprs: bytes


X64_EXCEPTION_INTERCEPT = Layout(X64ExceptionInterceptMessage, "<HBBIQQ16s16s16s128s", 200)
#: x64 exception vectors the guest model raises.
VECTOR_GP, VECTOR_PF = 13, 14
