"""The hypervisor ABI (hvsim.actors.hvdef) against ../shared/spec/HYPERCALLS.md.

Expected values are transcribed here from the spec (sections cited per table), independently of
hvdef.py, so a typo in either shows up as a mismatch.
"""

from __future__ import annotations

import re
import struct
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hvsim.actors import hvdef
from hvsim.actors.hvdef import (
    CREATION_FLAGS_KNOWN,
    Control,
    CreationFlags,
    HvStatus,
    HypercallCode,
    Layout,
    PartitionPrivilege,
    PropertyCode,
    RegisterName,
    X64Segment,
    control,
    describe,
    make_result,
    result_reps,
    result_status,
)

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "HYPERCALLS.md"
U64 = (1 << 64) - 1

# --- HYPERCALLS.md 4.0: call-code index (all 47 rows) ---------------------------------------------
SPEC_CALL_CODES = {
    "FlushVirtualAddressSpace": 0x0002,
    "FlushVirtualAddressList": 0x0003,
    "CreatePartition": 0x0040,
    "InitializePartition": 0x0041,
    "FinalizePartition": 0x0042,
    "DeletePartition": 0x0043,
    "GetPartitionProperty": 0x0044,
    "SetPartitionProperty": 0x0045,
    "GetPartitionId": 0x0046,
    "GetNextChildPartition": 0x0047,
    "DepositMemory": 0x0048,
    "WithdrawMemory": 0x0049,
    "GetMemoryBalance": 0x004A,
    "MapGpaPages": 0x004B,
    "UnmapGpaPages": 0x004C,
    "InstallIntercept": 0x004D,
    "CreateVp": 0x004E,
    "DeleteVp": 0x004F,
    "GetVpRegisters": 0x0050,
    "SetVpRegisters": 0x0051,
    "TranslateVirtualAddress": 0x0052,
    "ClearVirtualInterrupt": 0x0056,
    "DeletePort": 0x0058,
    "DisconnectPort": 0x005B,
    "PostMessage": 0x005C,
    "SignalEvent": 0x005D,
    "UnmapStatsPage": 0x006D,
    "MapSparseGpaPages": 0x006E,
    "ModifySparseGpaPages": 0x0090,
    "RegisterInterceptResult": 0x0091,
    "UnregisterInterceptResult": 0x0092,
    "AssertVirtualInterrupt": 0x0094,
    "CreatePort": 0x0095,
    "ConnectPort": 0x0096,
    "StartVirtualProcessor": 0x0099,
    "TranslateVirtualAddressEx": 0x00AC,
    "CheckForIoIntercept": 0x00AD,
    "SignalEventDirect": 0x00C0,
    "PostMessageDirect": 0x00C1,
    "MapVpStatePage": 0x00E1,
    "UnmapVpStatePage": 0x00E2,
    "GetVpCpuidValues": 0x00F4,
    "GetPartitionPropertyEx": 0x0101,
    "SetPartitionPropertyEx": 0x010A,
    "InstallInterceptEx": 0x0110,
    "SetVirtualInterruptTarget": 0x011F,
    "MapStatsPage2": 0x0131,
}

# --- HYPERCALLS.md section 2: the HV_STATUS constant block ----------------------------------------
SPEC_STATUSES = {
    "SUCCESS": 0x0000,
    "INVALID_HYPERCALL_CODE": 0x0002,
    "INVALID_HYPERCALL_INPUT": 0x0003,
    "INVALID_ALIGNMENT": 0x0004,
    "INVALID_PARAMETER": 0x0005,
    "ACCESS_DENIED": 0x0006,
    "INVALID_PARTITION_STATE": 0x0007,
    "OPERATION_DENIED": 0x0008,
    "UNKNOWN_PROPERTY": 0x0009,
    "PROPERTY_VALUE_OUT_OF_RANGE": 0x000A,
    "INSUFFICIENT_MEMORY": 0x000B,
    "PARTITION_TOO_DEEP": 0x000C,
    "INVALID_PARTITION_ID": 0x000D,
    "INVALID_VP_INDEX": 0x000E,
    "NOT_FOUND": 0x0010,
    "INVALID_PORT_ID": 0x0011,
    "INVALID_CONNECTION_ID": 0x0012,
    "INSUFFICIENT_BUFFERS": 0x0013,
    "NOT_ACKNOWLEDGED": 0x0014,
    "INVALID_VP_STATE": 0x0015,
    "ACKNOWLEDGED": 0x0016,
    "INVALID_SAVE_RESTORE_STATE": 0x0017,
    "INVALID_SYNIC_STATE": 0x0018,
    "OBJECT_IN_USE": 0x0019,
    "INVALID_PROXIMITY_DOMAIN_INFO": 0x001A,
    "NO_DATA": 0x001B,
    "INACTIVE": 0x001C,
    "NO_RESOURCES": 0x001D,
    "FEATURE_UNAVAILABLE": 0x001E,
    "PARTIAL_PACKET": 0x001F,
    "PROCESSOR_FEATURE_NOT_SUPPORTED": 0x0020,
    "PROCESSOR_CACHE_LINE_FLUSH_SIZE_INCOMPATIBLE": 0x0030,
    "INSUFFICIENT_BUFFER": 0x0033,
    "INCOMPATIBLE_PROCESSOR": 0x0037,
    "INSUFFICIENT_DEVICE_DOMAINS": 0x0038,
    "CPUID_FEATURE_VALIDATION_ERROR": 0x003C,
    "CPUID_XSAVE_FEATURE_VALIDATION_ERROR": 0x003D,
    "PROCESSOR_STARTUP_TIMEOUT": 0x003E,
    "SMX_ENABLED": 0x003F,
    "INVALID_LP_INDEX": 0x0041,
    "INVALID_REGISTER_VALUE": 0x0050,
    "INVALID_VTL_STATE": 0x0051,
    "NX_NOT_DETECTED": 0x0055,
    "INVALID_DEVICE_ID": 0x0057,
    "INVALID_DEVICE_STATE": 0x0058,
    "PENDING_PAGE_REQUESTS": 0x0059,
    "PAGE_REQUEST_INVALID": 0x0060,
    "KEY_ALREADY_EXISTS": 0x0065,
    "DEVICE_ALREADY_IN_DOMAIN": 0x0066,
    "INVALID_CPU_GROUP_ID": 0x006F,
    "INVALID_CPU_GROUP_STATE": 0x0070,
    "OPERATION_FAILED": 0x0071,
    "NOT_ALLOWED_WITH_NESTED_VIRT_ACTIVE": 0x0072,
    "INSUFFICIENT_ROOT_MEMORY": 0x0073,
    "EVENT_BUFFER_ALREADY_FREED": 0x0074,
    "INSUFFICIENT_CONTIGUOUS_MEMORY": 0x0075,
    "TIMEOUT": 0x0078,
    "CALL_PENDING": 0x0079,
    "INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY": 0x0083,
    "VTL_ALREADY_ENABLED": 0x0086,
    "UNKNOWN_REGISTER_NAME": 0x0087,
}

# --- HYPERCALLS.md 5.14: register names (spot checks across every class) --------------------------
SPEC_REGISTERS = {
    "ExplicitSuspend": 0x00000000,
    "InterceptSuspend": 0x00000001,
    "DispatchSuspend": 0x00000003,
    "InternalActivityState": 0x00000004,
    "HypervisorVersion": 0x00000100,
    "PrivilegesAndFeaturesInfo": 0x00000200,
    "GuestCrashP0": 0x00000210,
    "GuestCrashCtl": 0x00000215,
    "PendingInterruption": 0x00010002,
    "InterruptState": 0x00010003,
    "PendingEvent1": 0x00010005,
    "Rax": 0x00020000,
    "Rcx": 0x00020001,
    "Rdx": 0x00020002,
    "Rbx": 0x00020003,
    "Rsp": 0x00020004,
    "Rbp": 0x00020005,
    "R8": 0x00020008,
    "R15": 0x0002000F,
    "Rip": 0x00020010,
    "Rflags": 0x00020011,
    "Xmm0": 0x00030000,
    "Xmm15": 0x0003000F,
    "Cr0": 0x00040000,
    "Cr2": 0x00040001,
    "Cr3": 0x00040002,
    "Cr4": 0x00040003,
    "Cr8": 0x00040004,
    "Xfem": 0x00040005,
    "Dr0": 0x00050000,
    "Dr6": 0x00050004,
    "Dr7": 0x00050005,
    "Es": 0x00060000,
    "Cs": 0x00060001,
    "Ss": 0x00060002,
    "Ds": 0x00060003,
    "Fs": 0x00060004,
    "Gs": 0x00060005,
    "Ldtr": 0x00060006,
    "Tr": 0x00060007,
    "Idtr": 0x00070000,
    "Gdtr": 0x00070001,
    "Tsc": 0x00080000,
    "Efer": 0x00080001,
    "KernelGsBase": 0x00080002,
    "ApicBase": 0x00080003,
    "Pat": 0x00080004,
    "InitialApicId": 0x0008000C,
    "VpRuntime": 0x00090000,
    "Hypercall": 0x00090001,
    "GuestOsId": 0x00090002,
    "VpIndex": 0x00090003,
    "TimeRefCount": 0x00090004,
    "VpAssistPage": 0x00090013,
    "ReferenceTsc": 0x00090017,
    "Sint0": 0x000A0000,
    "Sint15": 0x000A000F,
    "Scontrol": 0x000A0010,
    "Sversion": 0x000A0011,
    "Sifp": 0x000A0012,
    "Sipp": 0x000A0013,
    "Eom": 0x000A0014,
    "Sirbp": 0x000A0015,
}

# --- HYPERCALLS.md 5.1: partition property codes ------------------------------------------------
SPEC_PROPERTIES = {
    "PrivilegeFlags": 0x00010000,
    "SyntheticProcFeatures": 0x00010001,
    "Suspend": 0x00020000,
    "CpuReserve": 0x00020001,
    "CpuCap": 0x00020002,
    "CpuWeight": 0x00020003,
    "CpuGroupId": 0x00020004,
    "TimeFreeze": 0x00030003,
    "ReferenceTime": 0x00030005,
    "VirtualTlbPageCount": 0x00050000,
    "VsmConfig": 0x00050001,
    "ZeroMemoryOnReset": 0x00050002,
    "ProcessorsPerSocket": 0x00050003,
    "NestedTlbSize": 0x00050004,
    "GpaPageAccessTracking": 0x00050005,
    "IsolationState": 0x0005000C,
    "IsolationControl": 0x0005000D,
    "AllocationId": 0x0005000E,
    "MonitoringId": 0x0005000F,
    "ImplementedPhysicalAddressBits": 0x00050010,
    "NonArchitecturalCoreSharing": 0x00050011,
    "HypercallDoorbellPage": 0x00050012,
    "IsolationPolicy": 0x00050014,
    "UnimplementedMsrAction": 0x00050017,
    "PartitionDiagBufferConfig": 0x00050026,
    "ProcessorVendor": 0x00060000,
    "ProcessorXsaveFeatures": 0x00060002,
    "ProcessorClFlushSize": 0x00060003,  # spec spells it ProcessorCLFlushSize
    "EnlightenmentModifications": 0x00060004,
    "CompatibilityVersion": 0x00060005,
    "PhysicalAddressWidth": 0x00060006,
    "XsaveStates": 0x00060007,
    "MaxXsaveDataSize": 0x00060008,
    "ProcessorClockFrequency": 0x00060009,
    "ProcessorFeatures0": 0x0006000A,
    "ProcessorFeatures1": 0x0006000B,
    "GuestOsId": 0x00070000,
    "ProcessorVirtualizationFeatures": 0x00080000,
    "VmmCapabilities": 0x00090007,
}

# --- HYPERCALLS.md 5.2: privilege bits --------------------------------------------------------------
SPEC_PRIVILEGE_BITS = {
    "AccessVpRunTimeReg": 0,
    "AccessPartitionReferenceCounter": 1,
    "AccessSynicRegs": 2,
    "AccessSyntheticTimerRegs": 3,
    "AccessIntrCtrlRegs": 4,
    "AccessHypercallMsrs": 5,
    "AccessVpIndex": 6,
    "AccessResetReg": 7,
    "AccessStatsReg": 8,
    "AccessPartitionReferenceTsc": 9,
    "AccessGuestIdleReg": 10,
    "AccessFrequencyRegs": 11,
    "AccessReenlightenmentControls": 13,
    "CreatePartitions": 32,
    "AccessPartitionId": 33,
    "AccessMemoryPool": 34,
    "PostMessages": 36,
    "SignalEvents": 37,
    "CreatePort": 38,
    "ConnectPort": 39,
    "AccessStats": 40,
    "Debugging": 43,
    "CpuManagement": 44,
    "AccessVSM": 48,
    "AccessVpRegisters": 49,
    "EnableExtendedHypercalls": 52,
    "StartVirtualProcessor": 53,
}


# --- enums ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("enum", "bits"),
    [(HypercallCode, 16), (HvStatus, 16), (RegisterName, 32), (PropertyCode, 32)],
)
def test_enum_values_are_unique_and_fit_their_wire_width(enum: type[Enum], bits: int) -> None:
    values = [m.value for m in enum]
    assert len(enum.__members__) == len(values), "an alias hides a duplicate value"
    assert len(set(values)) == len(values)
    assert all(0 <= v < (1 << bits) for v in values)


def test_call_codes_match_the_spec_index() -> None:
    assert {m.name: m.value for m in HypercallCode} == SPEC_CALL_CODES
    assert HypercallCode.CreatePartition == 0x40
    assert HypercallCode.DepositMemory == 0x48
    assert HypercallCode.WithdrawMemory == 0x49
    assert HypercallCode.GetMemoryBalance == 0x4A
    assert HypercallCode.SetPartitionPropertyEx == 0x10A
    assert HypercallCode.MapStatsPage2 == 0x131


def test_statuses_match_the_spec() -> None:
    assert {m.name: m.value for m in HvStatus} == SPEC_STATUSES
    assert HvStatus.INSUFFICIENT_MEMORY == 0x0B
    assert HvStatus.NO_RESOURCES == 0x1D
    assert HvStatus.TIMEOUT == 0x78  # erratum D16: not the internal 0x1016
    assert HvStatus.UNKNOWN_REGISTER_NAME == 0x87


@pytest.mark.parametrize(("name", "value"), sorted(SPEC_REGISTERS.items()))
def test_register_names_match_the_spec(name: str, value: int) -> None:
    assert RegisterName[name] == value


def test_register_name_spot_checks() -> None:
    assert RegisterName.Rsp == 0x00020004
    assert RegisterName.Rip == 0x00020010
    assert RegisterName.Efer == 0x00080001
    assert RegisterName.Sint0 == 0x000A0000
    assert [RegisterName[f"Sint{i}"] for i in range(16)] == list(range(0x000A0000, 0x000A0010))
    assert [RegisterName[f"Xmm{i}"] for i in range(16)] == list(range(0x00030000, 0x00030010))
    gprs = ["Rax", "Rcx", "Rdx", "Rbx", "Rsp", "Rbp", "Rsi", "Rdi", *(f"R{i}" for i in range(8, 16))]
    assert [RegisterName[n] for n in gprs] == list(range(0x00020000, 0x00020010))


def test_property_codes_match_the_spec() -> None:
    assert {m.name: m.value for m in PropertyCode} == SPEC_PROPERTIES


def test_privilege_bits_match_the_spec() -> None:
    assert {p.name: p.value for p in PartitionPrivilege} == {
        n: 1 << b for n, b in SPEC_PRIVILEGE_BITS.items()
    }
    assert PartitionPrivilege.CreatePartitions == 1 << 32
    assert PartitionPrivilege.AccessMemoryPool == 1 << 34
    assert PartitionPrivilege.AccessVpRegisters == 1 << 49
    assert PartitionPrivilege.StartVirtualProcessor == 1 << 53
    assert sum(1 << b for b in (*range(12), 13)) == hvdef.GUEST_MSR_PRIVILEGES
    assert sum(p.value for p in PartitionPrivilege) == hvdef.ALL_PRIVILEGES


def test_creation_flags_are_single_bits_and_known_mask() -> None:
    assert CREATION_FLAGS_KNOWN == 0x59A713
    values = [f.value for f in CreationFlags]
    assert all(v and v & (v - 1) == 0 for v in values)
    assert sum(values) == CREATION_FLAGS_KNOWN
    bits = {0, 1, 4, 8, 9, 10, 13, 15, 16, 19, 20, 22}  # HYPERCALLS.md 5.3
    assert set(values) == {1 << b for b in bits}


@pytest.mark.skipif(
    not SPEC.is_file(), reason="../shared/spec/HYPERCALLS.md not checked out next to the repo"
)
def test_enums_against_the_spec_file_itself() -> None:
    """When the spec is on disk, re-read its tables rather than trusting the transcription above."""
    text = SPEC.read_text(encoding="utf-8")
    codes = {m[2]: int(m[1], 16) for m in re.finditer(r"^\| (0x[0-9A-F]{4}) \| HvCall(\w+) \|", text, re.M)}
    assert codes == {m.name: m.value for m in HypercallCode}
    block = text[text.index("HV_STATUS = dict(") :]
    block = block[: block.index("```")]
    statuses = {k: int(v, 16) for k, v in re.findall(r"(\w+)=(0x[0-9A-Fa-f]+)", block)}
    assert statuses == {m.name: m.value for m in HvStatus}


# --- control word, HYPERCALLS.md 1.1 -------------------------------------------------------------
def bits(lo: int, hi: int) -> int:
    return ((1 << (hi - lo + 1)) - 1) << lo


def test_control_masks_are_the_spec_bit_positions() -> None:
    assert bits(0, 15) == hvdef.CODE_MASK
    assert hvdef.FAST_BIT == 1 << 16
    assert bits(17, 26) == hvdef.VARHDR_MASK
    assert hvdef.VARHDR_SHIFT == 17
    assert hvdef.NESTED_BIT == 1 << 31
    assert bits(32, 43) == hvdef.REP_COUNT_MASK
    assert hvdef.REP_COUNT_SHIFT == 32
    assert bits(48, 59) == hvdef.REP_START_MASK
    assert hvdef.REP_START_SHIFT == 48
    assert bits(27, 30) | bits(44, 47) | bits(60, 63) == hvdef.RESERVED_MASK
    masks = [
        hvdef.CODE_MASK,
        hvdef.FAST_BIT,
        hvdef.VARHDR_MASK,
        hvdef.NESTED_BIT,
        hvdef.REP_COUNT_MASK,
        hvdef.REP_START_MASK,
        hvdef.RESERVED_MASK,
    ]
    assert sum(masks) == U64  # disjoint and covering all 64 bits
    for i, a in enumerate(masks):
        for b in masks[i + 1 :]:
            assert a & b == 0


def test_control_encodes_each_field_at_its_bit_position() -> None:
    assert Control(code=0xFFFF).encode() == 0xFFFF
    assert Control(code=0, fast=True).encode() == 1 << 16
    assert Control(code=0, varhdr_qwords=1).encode() == 1 << 17
    assert Control(code=0, varhdr_qwords=1023).encode() == bits(17, 26)
    assert Control(code=0, nested=True).encode() == 1 << 31
    assert Control(code=0, rep_count=1).encode() == 1 << 32
    assert Control(code=0, rep_count=0xFFF).encode() == bits(32, 43)
    assert Control(code=0, rep_start=1).encode() == 1 << 48
    assert Control(code=0, rep_start=0xFFF).encode() == bits(48, 59)
    for bit in (*range(27, 31), *range(44, 48), *range(60, 64)):
        assert Control.decode(1 << bit) == Control(code=0, reserved=1 << bit)
    assert control(HypercallCode.DepositMemory, rep_count=3) == 0x0000_0003_0000_0048
    assert control(HypercallCode.SetPartitionPropertyEx, fast=True, varhdr_qwords=2) == 0x0005_010A
    assert control(HypercallCode.GetVpRegisters, rep_count=10, rep_start=5) == 0x0005_000A_0000_0050


controls = st.builds(
    Control,
    code=st.integers(0, 0xFFFF),
    fast=st.booleans(),
    varhdr_qwords=st.integers(0, 1023),
    rep_count=st.integers(0, 0xFFF),
    rep_start=st.integers(0, 0xFFF),
    nested=st.booleans(),
    reserved=st.sets(st.sampled_from([*range(27, 31), *range(44, 48), *range(60, 64)])).map(
        lambda bs: sum(1 << b for b in bs)
    ),
)


@given(controls)
def test_control_round_trip(c: Control) -> None:
    value = c.encode()
    assert 0 <= value <= U64
    assert Control.decode(value) == c
    expected = (
        c.code
        | (c.fast << 16)
        | (c.varhdr_qwords << 17)
        | (c.nested << 31)
        | (c.rep_count << 32)
        | (c.rep_start << 48)
        | c.reserved
    )
    assert value == expected


@given(st.integers(0, U64))
def test_control_decode_then_encode_is_identity(value: int) -> None:
    assert Control.decode(value).encode() == value


@pytest.mark.parametrize(
    "fields",
    [
        {"code": -1},
        {"code": 0x10000},
        {"varhdr_qwords": -1},
        {"varhdr_qwords": 1024},
        {"rep_count": -1},
        {"rep_count": 0x1000},
        {"rep_start": -1},
        {"rep_start": 0x1000},
    ],
)
def test_control_encode_rejects_out_of_range_fields(fields: dict[str, int]) -> None:
    fields = dict(fields)
    c = Control(code=fields.pop("code", 0x48))._replace(**fields)
    with pytest.raises(ValueError, match="out of range"):
        c.encode()


# --- result value, HYPERCALLS.md 1.2 (erratum D1) ----------------------------------------------
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFF))
def test_result_round_trip_and_reserved_bits_zero(status: int, reps: int) -> None:
    value = make_result(status, reps)
    assert result_status(value) == status
    assert result_reps(value) == reps
    assert value & bits(16, 31) == 0
    assert value & bits(44, 63) == 0
    assert value == status | (reps << 32)


def test_result_reps_are_bits_43_to_32() -> None:
    assert make_result(HvStatus.SUCCESS, 10) == 10 << 32
    assert make_result(HvStatus.INSUFFICIENT_MEMORY, 0xFFF) == 0x0000_0FFF_0000_000B
    assert result_reps(bits(44, 63) | bits(16, 31)) == 0
    assert result_status(bits(16, 63)) == 0


# --- byte layouts, HYPERCALLS.md 4.0.1 and the per-call tables -----------------------------------
SPEC_SIZES: dict[str, int] = {
    "PARTITION_ID_INPUT": 8,  # Initialize/Finalize/DeletePartition
    "CREATE_PARTITION_INPUT": 56,
    "PARTITION_ID_OUTPUT": 8,  # CreatePartition output
    "GET_PARTITION_PROPERTY_INPUT": 16,
    "SET_PARTITION_PROPERTY_INPUT": 24,
    "PARTITION_PROPERTY_EX_INPUT": 24,
    "PROPERTY_VALUE_OUTPUT": 8,
    "GET_NEXT_CHILD_PARTITION_INPUT": 16,
    "CREATE_VP_INPUT": 40,
    "DELETE_VP_INPUT": 16,
    "MEMORY_POOL_INPUT": 16,  # GetMemoryBalance input, WithdrawMemory header
    "MEMORY_BALANCE_OUTPUT": 16,
    "VP_REGISTERS_INPUT": 16,
    "REGISTER_ASSOC": 32,
    "START_VIRTUAL_PROCESSOR_HEADER": 16,
    "INITIAL_VP_CONTEXT": 224,
    "SEGMENT": 16,
    "TABLE": 16,
    "CREATE_PORT_INPUT": 56,  # HYPERCALLS.md 4.37
    "PORT_INFO": 24,  # 5.5 (erratum D5)
    "CONNECT_PORT_INPUT": 72,  # 4.39
    "CONNECTION_INFO": 32,  # 5.5
    "PORT_ID_INPUT": 16,  # DeletePort / DisconnectPort
    "MESSAGE_HEADER": 16,  # 5.9 HV_MESSAGE header
    "POST_MESSAGE_INPUT": 256,  # 4.42
    "SIGNAL_EVENT_INPUT": 8,  # 4.43
    "POST_MESSAGE_DIRECT_INPUT": 280,  # 4.41 (erratum D4)
    "SIGNAL_EVENT_DIRECT_INPUT": 16,  # 4.44
    "SIGNAL_EVENT_DIRECT_OUTPUT": 8,  # 4.44
    "MAP_GPA_PAGES_HEADER": 24,  # 4.16
    "SPARSE_GPA_HEADER": 16,  # 4.17 / 4.19
    "GPA_MAPPING_ELEMENT": 16,  # 4.17 HV_GPA_MAPPING
    "UNMAP_GPA_PAGES_HEADER": 24,  # 4.18
    "TRANSLATE_VA_INPUT": 32,  # 4.20
    "TRANSLATE_VA_OUTPUT": 16,  # 4.20
    "TRANSLATE_VA_EX_OUTPUT": 56,  # 4.21 (D7: GpaPage @48, Linux)
    "INSTALL_INTERCEPT_INPUT": 24,  # 4.22
    "CHECK_FOR_IO_INTERCEPT_INPUT": 24,  # 4.24 (18 B padded)
    "X64_INTERCEPT_HEADER": 40,  # Linux hvhdk.h HV_X64_INTERCEPT_MESSAGE_HEADER
    "X64_IO_PORT_INTERCEPT": 88,  # ... IO port message, 128 B with the header
    "X64_MSR_INTERCEPT": 24,  # ... MSR message, 64 B with the header
    "X64_CPUID_INTERCEPT": 64,  # ... CPUID message, 104 B with the header
    "X64_MEMORY_INTERCEPT": 40,  # ... memory message, 80 B with the header
    "ASSERT_VIRTUAL_INTERRUPT_INPUT": 32,  # 4.34
    "FLUSH_VIRTUAL_ADDRESS_INPUT": 24,  # 4.27
    "GET_VP_CPUID_VALUES_HEADER": 24,  # 4.15
    "CPUID_QUERY": 24,  # 4.15 (D6)
    "MAP_STATS_PAGE2_INPUT": 32,  # 4.29
    "UNMAP_STATS_PAGE_INPUT": 24,  # 4.30 (D11)
    "MAP_VP_STATE_PAGE_INPUT": 24,  # 4.31
    "UNMAP_VP_STATE_PAGE_INPUT": 16,  # 4.32
    "REGISTER_INTERCEPT_RESULT_HEADER": 16,  # 4.25
    "CPUID_RESULT_PARAMETERS": 44,  # 4.25 (D8)
    "MSR_RESULT_PARAMETERS": 12,  # 4.25
    "X64_EXCEPTION_INTERCEPT": 200,  # Linux hvhdk.h exception message, 240 B with the header
}

#: (field, offset, size) from the spec's per-call offset tables.
SPEC_OFFSETS: dict[str, list[tuple[str, int, int]]] = {
    "CREATE_PARTITION_INPUT": [
        ("flags", 0, 8),
        ("proximity_domain_info", 8, 8),
        ("compatibility_version", 16, 4),
        ("padding", 20, 4),
        ("disabled_processor_features0", 24, 8),
        ("disabled_processor_features1", 32, 8),
        ("disabled_processor_xsave_features", 40, 8),
        ("reserved_z0", 48, 8),
    ],
    "CREATE_VP_INPUT": [
        ("partition_id", 0, 8),
        ("vp_index", 8, 4),
        ("reserved_z0", 12, 3),
        ("subnode_type", 15, 1),
        ("subnode_id", 16, 8),
        ("proximity_domain_info", 24, 8),
        ("flags", 32, 8),
    ],
    "DELETE_VP_INPUT": [("partition_id", 0, 8), ("vp_index", 8, 4), ("padding", 12, 4)],
    "GET_PARTITION_PROPERTY_INPUT": [("partition_id", 0, 8), ("property_code", 8, 4), ("reserved", 12, 4)],
    "SET_PARTITION_PROPERTY_INPUT": [
        ("partition_id", 0, 8),
        ("property_code", 8, 4),
        ("padding", 12, 4),
        ("property_value", 16, 8),
    ],
    "PARTITION_PROPERTY_EX_INPUT": [  # erratum D13: the argument is a u64 @16
        ("partition_id", 0, 8),
        ("property_code", 8, 4),
        ("padding", 12, 4),
        ("property_argument", 16, 8),
    ],
    "MEMORY_POOL_INPUT": [("partition_id", 0, 8), ("proximity_domain_info", 8, 8)],
    "MEMORY_BALANCE_OUTPUT": [("pages_available", 0, 8), ("pages_in_use", 8, 8)],  # erratum D12
    "VP_REGISTERS_INPUT": [
        ("partition_id", 0, 8),
        ("vp_index", 8, 4),
        ("target_vtl", 12, 1),
        ("reserved", 13, 3),
    ],
    "REGISTER_ASSOC": [("name", 0, 4), ("reserved", 4, 12), ("value_low", 16, 8), ("value_high", 24, 8)],
    "START_VIRTUAL_PROCESSOR_HEADER": [
        ("partition_id", 0, 8),
        ("vp_index", 8, 4),
        ("target_vtl", 12, 1),
        ("reserved", 13, 3),
    ],
    "INITIAL_VP_CONTEXT": [
        ("rip", 0, 8),
        ("rsp", 8, 8),
        ("rflags", 16, 8),
        *((seg, 24 + 16 * i, 16) for i, seg in enumerate(("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldtr"))),
        ("idtr", 152, 16),
        ("gdtr", 168, 16),
        ("efer", 184, 8),
        ("cr0", 192, 8),
        ("cr3", 200, 8),
        ("cr4", 208, 8),
        ("msr_cr_pat", 216, 8),
    ],
    "SEGMENT": [("base", 0, 8), ("limit", 8, 4), ("selector", 12, 2), ("attributes", 14, 2)],
    "TABLE": [("pad0", 0, 2), ("pad1", 2, 2), ("pad2", 4, 2), ("limit", 6, 2), ("base", 8, 8)],
}

LAYOUTS: dict[str, Layout[Any]] = {name: obj for name, obj in vars(hvdef).items() if isinstance(obj, Layout)}


def test_every_layout_has_a_spec_size() -> None:
    assert set(LAYOUTS) == set(SPEC_SIZES), "add the TLFS size of a new Layout to SPEC_SIZES"


@pytest.mark.parametrize("name", sorted(SPEC_SIZES))
def test_layout_size_matches_the_spec(name: str) -> None:
    layout = LAYOUTS[name]
    assert layout.size == SPEC_SIZES[name]
    assert layout.struct.size == layout.size
    assert layout.struct.format.startswith("<")  # little-endian, no native padding
    assert len(layout.pack(layout.unpack(bytes(layout.size)))) == layout.size


def test_start_virtual_processor_input_is_240_bytes() -> None:
    assert hvdef.START_VIRTUAL_PROCESSOR_HEADER.size + hvdef.INITIAL_VP_CONTEXT.size == 240


def field_sizes(layout: Layout[Any]) -> list[int]:
    """Each field's width in bytes, found by packing its widest value (independent of the format)."""
    zero = layout.unpack(bytes(layout.size))
    widths = []
    for i, default in enumerate(zero):
        if isinstance(default, bytes):
            widths.append(len(default))
            continue
        for width in (8, 4, 2, 1):
            try:
                layout.pack((*zero[:i], (1 << 8 * width) - 1, *zero[i + 1 :]))
            except struct.error:
                continue
            widths.append(width)
            break
    return widths


def field_span(layout: Layout[Any], index: int, width: int) -> tuple[int, int]:
    """Where field *index* lands in the packed bytes: (offset, size)."""
    zero = layout.unpack(bytes(layout.size))
    ones: Any = b"\xff" * width if isinstance(zero[index], bytes) else (1 << (8 * width)) - 1
    packed = layout.pack((*zero[:index], ones, *zero[index + 1 :]))
    hot = [i for i, byte in enumerate(packed) if byte]
    return hot[0], hot[-1] - hot[0] + 1


@pytest.mark.parametrize("name", sorted(SPEC_OFFSETS))
def test_layout_field_offsets_match_the_spec(name: str) -> None:
    layout = LAYOUTS[name]
    widths = field_sizes(layout)
    actual = [
        (field, *field_span(layout, i, width))
        for i, (field, width) in enumerate(zip(layout.fields, widths, strict=True))
    ]
    assert actual == SPEC_OFFSETS[name]


def field_strategy(layout: Layout[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    zero = layout.unpack(bytes(layout.size))
    parts = [
        st.binary(min_size=w, max_size=w) if isinstance(z, bytes) else st.integers(0, (1 << (8 * w)) - 1)
        for z, w in zip(zero, field_sizes(layout), strict=True)
    ]
    return st.tuples(*parts)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@given(data=st.data())
def test_layout_pack_unpack_round_trip(name: str, data: st.DataObject) -> None:
    layout = LAYOUTS[name]
    values = data.draw(field_strategy(layout))
    record = layout._make(values)
    packed = layout.pack(record)
    assert len(packed) == layout.size
    unpacked = layout.unpack(packed)
    assert unpacked == record
    assert type(unpacked).__name__ == layout.name
    assert tuple(unpacked._fields) == layout.fields
    prefix = data.draw(st.binary(max_size=24))
    assert layout.unpack(prefix + packed + b"\xee", len(prefix)) == record
    assert layout.pack(layout.unpack(bytearray(packed))) == packed


# --- segments and register values -----------------------------------------------------------------
segments = st.builds(
    X64Segment,
    base=st.integers(0, U64),
    limit=st.integers(0, 0xFFFF_FFFF),
    selector=st.integers(0, 0xFFFF),
    attributes=st.integers(0, 0xFFFF),
)


@given(segments)
def test_segment_value_round_trip(seg: X64Segment) -> None:
    value = seg.to_value()
    assert 0 <= value < 1 << 128
    assert value == seg.base | (seg.limit << 64) | (seg.selector << 96) | (seg.attributes << 112)
    assert X64Segment.from_value(value) == seg


@given(st.integers(0, (1 << 128) - 1))
def test_segment_from_value_then_to_value_is_identity(value: int) -> None:
    assert X64Segment.from_value(value).to_value() == value


def test_register_value_bytes_are_128_bit_little_endian() -> None:
    assert hvdef.register_value_bytes(1) == b"\x01" + bytes(15)
    assert hvdef.register_value_bytes(-1) == b"\xff" * 16
    assert hvdef.register_value_bytes(1 << 128) == bytes(16)


# --- describe ------------------------------------------------------------------------------------
def test_describe_known_statuses() -> None:
    assert describe(HvStatus.SUCCESS) == "SUCCESS (0x0000): no error"
    assert describe(0x0B).startswith("INSUFFICIENT_MEMORY (0x000b): ")
    assert "deposit" in describe(0x0B)
    assert describe(HvStatus.NO_RESOURCES).startswith("NO_RESOURCES (0x001d): ")
    assert describe(HvStatus.TIMEOUT) == "TIMEOUT (0x0078)"  # known, no meaning text
    for status in HvStatus:
        assert describe(status).startswith(f"{status.name} (0x{status.value:04x})")


@pytest.mark.parametrize("value", [0x0001, 0x000F, 0x1016, 0xFFFF])
def test_describe_unknown_status(value: int) -> None:
    assert describe(value) == f"UNKNOWN_STATUS (0x{value:04x})"
