"""Seeded guest workloads: the programs child VPs run in the built-in scenarios.

The default guest behaves like an enlightened OS booting on Hyper-V: VP 0 starts the APs with
HvCallStartVirtualProcessor, then every VP alternates compute slices with hypercalls on itself
(GetVpRegisters, SetVpRegisters, GetPartitionId), drawn from the VP's own random stream.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    HV_VP_INDEX_SELF,
    INITIAL_VP_CONTEXT,
    POST_MESSAGE_INPUT,
    REGISTER_ASSOC,
    SIGNAL_EVENT_INPUT,
    START_VIRTUAL_PROCESSOR_HEADER,
    SYNIC_ENABLE,
    VP_REGISTERS_INPUT,
    HvStatus,
    HypercallCode,
    InitialVpContext,
    PostMessageInput,
    RegisterAssoc,
    RegisterName,
    SignalEventInput,
    StartVirtualProcessorHeader,
    VpRegistersInput,
    X64Segment,
    control,
)
from hvsim.actors.workload import Compute, Hypercall, Op, Program, WriteMsr

C = HypercallCode
R = RegisterName
_U32 = struct.Struct("<I")

#: 64-bit long-mode state an AP is started in (flat code/data segments, paging on).
LONG_MODE_CR0 = 0x8000_0031  # PG | NE | ET | PE
LONG_MODE_CR4 = 0x20  # PAE
LONG_MODE_EFER = 0x500  # LMA | LME
_CODE64 = X64Segment(0, 0xFFFF_FFFF, 0x10, 0xA09B).to_value().to_bytes(16, "little")
_DATA64 = X64Segment(0, 0xFFFF_FFFF, 0x18, 0xC093).to_value().to_bytes(16, "little")
_TSS = X64Segment(0, 0x67, 0x28, 0x8B).to_value().to_bytes(16, "little")
_LDT = X64Segment(0, 0, 0, 0x82).to_value().to_bytes(16, "little")
_TABLE = (0xFFF << 48).to_bytes(16, "little")


def start_ap(vp_index: int, rip: int, rsp: int) -> Hypercall:
    """HvCallStartVirtualProcessor on the guest's own partition."""
    header = START_VIRTUAL_PROCESSOR_HEADER.pack(
        StartVirtualProcessorHeader(HV_PARTITION_ID_SELF, vp_index, 0, bytes(3))
    )
    context = INITIAL_VP_CONTEXT.pack(
        InitialVpContext(
            rip, rsp, 0x2, _CODE64, _DATA64, _DATA64, _DATA64, _DATA64, _DATA64, _TSS, _LDT, _TABLE,
            _TABLE, LONG_MODE_EFER, LONG_MODE_CR0, 0x10_0000, LONG_MODE_CR4, 0x0007_0406_0007_0406,
        )
    )  # fmt: skip
    return Hypercall(control(C.StartVirtualProcessor), header + context, "StartVirtualProcessor")


def get_own_registers(names: Sequence[int]) -> Hypercall:
    header = VP_REGISTERS_INPUT.pack(VpRegistersInput(HV_PARTITION_ID_SELF, HV_VP_INDEX_SELF, 0, bytes(3)))
    body = b"".join(_U32.pack(n) for n in names)
    return Hypercall(control(C.GetVpRegisters, rep_count=len(names)), header + body, "GetVpRegisters")


def set_own_registers(values: dict[int, int]) -> Hypercall:
    header = VP_REGISTERS_INPUT.pack(VpRegistersInput(HV_PARTITION_ID_SELF, HV_VP_INDEX_SELF, 0, bytes(3)))
    body = b"".join(REGISTER_ASSOC.pack(RegisterAssoc(n, bytes(12), v, 0)) for n, v in values.items())
    return Hypercall(control(C.SetVpRegisters, rep_count=len(values)), header + body, "SetVpRegisters")


GET_PARTITION_ID = Hypercall(control(C.GetPartitionId), b"", "GetPartitionId")


def guest_os(rng: random.Random, vp_index: int, vp_count: int, *, slice_ns_mean: int = 50_000) -> Program:
    """The default guest: boot the APs from VP 0, then compute and make hypercalls on itself."""
    setup: list[Op] = [Compute(rng.randrange(20_000, 200_000))]  # firmware / early boot
    if vp_index == 0:
        for ap in range(1, vp_count):
            setup.append(start_ap(ap, rip=0x10_0000 + 0x1000 * ap, rsp=0x20_0000 + 0x1000 * ap))
    loop: list[Op] = []
    for _ in range(rng.randrange(4, 9)):
        loop.append(Compute(max(1_000, int(rng.expovariate(1 / slice_ns_mean)))))
        kind = rng.randrange(3)
        if kind == 0:
            loop.append(get_own_registers([R.Rip, R.Rsp, R.Rflags, R.Cr0][: rng.randrange(1, 5)]))
        elif kind == 1:
            loop.append(set_own_registers({R.Rax: rng.getrandbits(64), R.Rbx: rng.getrandbits(64)}))
        else:
            loop.append(GET_PARTITION_ID)
    return Program(
        tuple(setup),
        tuple(loop),
        name="guest-os",
        params={"vp": vp_index, "vps": vp_count, "slice_ns_mean": slice_ns_mean},
    )


def hypercall_storm(vp_index: int) -> Program:
    """Back-to-back GetVpRegisters on itself with no compute: the benchmark's guest."""
    del vp_index
    return Program(loop=(get_own_registers([R.Rip]),), name="hypercall-storm")


# --- SynIC guest code ------------------------------------------------------------------------------
#: Where guests map their SynIC overlay pages (any GPA works: the hypervisor overlays them).
SIMP_GPA = 0xFEB0_0000
SIEFP_GPA = 0xFEB0_1000


def enable_synic(sints: dict[int, int]) -> tuple[Op, ...]:
    """What a Hyper-V guest does at boot: map SIMP and SIEFP, unmask its SINTs (SINT -> vector),
    then set SCONTROL.enable."""
    ops: list[Op] = [WriteMsr(R.Sipp, SIMP_GPA | SYNIC_ENABLE), WriteMsr(R.Sifp, SIEFP_GPA | SYNIC_ENABLE)]
    ops += [WriteMsr(R.Sint0 + sint, vector) for sint, vector in sorted(sints.items())]
    ops.append(WriteMsr(R.Scontrol, SYNIC_ENABLE))
    return tuple(ops)


def post_message(
    connection_id: int, message_type: int, payload: bytes, *, retry_ns: int = 10_000
) -> Hypercall:
    """HvCallPostMessage; the guest waits and retries while the port's buffers are all in use."""
    data = POST_MESSAGE_INPUT.pack(PostMessageInput(connection_id, 0, message_type, len(payload), payload))
    return Hypercall(
        control(C.PostMessage),
        data,
        "PostMessage",
        retry_on=(HvStatus.INSUFFICIENT_BUFFERS,),
        retry_ns=retry_ns,
    )


def signal_event(connection_id: int, flag: int) -> Hypercall:
    data = SIGNAL_EVENT_INPUT.pack(SignalEventInput(connection_id, flag, 0))
    return Hypercall(control(C.SignalEvent, fast=True), data, "SignalEvent")
