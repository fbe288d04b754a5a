"""Registered intercept results and exception intercepts from the caller's side:
RegisterInterceptResult / UnregisterInterceptResult (HYPERCALLS.md 4.25-4.26) and InstallIntercept of
type Exception (4.22, 5.6).

Statuses are judged on the conftest world (P = the root, C = its ACTIVE child with VPs 0 and 1,
G = an unrelated partition). Behaviour is judged end to end: a child booted by the reference host
runs a guest program of CPUID, MSR and memory accesses; its parent (the root, SynIC on SINT 0 of
VP 0) registered results and installed intercepts beforehand, and takes the intercept messages that
still come.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from hvsim.actors.config import HvConfig
from hvsim.actors.hvdef import (
    CPUID_RESULT_PARAMETERS,
    HV_ANY_VP,
    HV_PARTITION_ID_SELF,
    HV_SYNIC_INTERCEPTION_SINT,
    INSTALL_INTERCEPT_INPUT,
    INTERCEPT_EXECUTE,
    INTERCEPT_READ,
    INTERCEPT_WRITE,
    MESSAGE_HEADER,
    MSR_RESULT_PARAMETERS,
    REGISTER_INTERCEPT_RESULT_HEADER,
    VECTOR_GP,
    VECTOR_PF,
    X64_EXCEPTION_INTERCEPT,
    X64_INTERCEPT_HEADER,
    X64_MSR_INTERCEPT,
    CpuidResultParameters,
    HvStatus,
    HypercallCode,
    InstallInterceptInput,
    InterceptType,
    MapGpaFlags,
    MessageHeader,
    MessageType,
    MsrResultParameters,
    RegisterInterceptResultHeader,
    RegisterName,
    X64InterceptHeader,
)
from hvsim.actors.workload import Cpuid, Halt, Msr, Op, Program, ReadMemory, WriteMemory
from hvsim.scenarios import Simulation
from hvsim.scenarios.checkers import check_state
from hvsim.scenarios.host import PartitionSpec, ReferenceHost

if TYPE_CHECKING:
    from conftest import MakeWorld, World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
IT = InterceptType
MT = MessageType
R = RegisterName
F = MapGpaFlags
SELF = HV_PARTITION_ID_SELF
CPUID, MSR = IT.X64Cpuid, IT.X64Msr
READ, WRITE, READ_WRITE = 1, 2, 3  # MSR access types
ACCESS_EXECUTE = 2  # HV_INTERCEPT_ACCESS_TYPE in the intercept header
FAULT, IGNORE = 0, 1  # MSR actions: #GP, or IgnoreWriteReadZero
FULL = 0xFFFF_FFFF
ALL_MASKS = (FULL, FULL, FULL, FULL)
NO_MASKS = (0, 0, 0, 0)
#: MSRs nothing implements (a guest access faults unless something says otherwise), and one the
#: hypervisor virtualizes (LSTAR).
SCRATCH, SCRATCH2, LSTAR = 0xC001_1000, 0xC001_1001, 0xC000_0082
_U32 = struct.Struct("<I")


# --- raw calls ------------------------------------------------------------------------------------
def header(pid: int, vp: int, kind: int) -> bytes:
    return REGISTER_INTERCEPT_RESULT_HEADER.pack(RegisterInterceptResultHeader(pid, vp, kind))


def cpuid_params(
    leaf: int, subleaf: int = 0, values: tuple[int, int, int, int] = (0, 0, 0, 0),
    masks: tuple[int, int, int, int] = ALL_MASKS, *, specific: int = 0, always: int = 0, padding: int = 0,
) -> bytes:  # fmt: skip
    pairs = [x for v, m in zip(values, masks, strict=True) for x in (v, m)]
    return CPUID_RESULT_PARAMETERS.pack(
        CpuidResultParameters(leaf, subleaf, specific, always, padding, *pairs)
    )


def msr_params(index: int, access: int, action: int) -> bytes:
    return MSR_RESULT_PARAMETERS.pack(MsrResultParameters(index, access, action))


def register(w: World, pid: int, vp: int, kind: int, params: bytes, *, caller: int | None = None) -> HvStatus:
    return w.simple(C.RegisterInterceptResult, header(pid, vp, kind) + params, caller=caller)


def unregister(w: World, pid: int, vp: int, kind: int, *words: int, caller: int | None = None) -> HvStatus:
    """UnregisterInterceptResult: CPUID (leaf, subleaf, SubleafSpecific) or MSR (index, access)."""
    params = b"".join(_U32.pack(x) for x in words)
    return w.simple(C.UnregisterInterceptResult, header(pid, vp, kind) + params, caller=caller)


# --- RegisterInterceptResult / UnregisterInterceptResult statuses ------------------------------------
def test_register_target_statuses(world: World, child: int, intruder: int) -> None:
    params = cpuid_params(0x4000_0000)
    assert register(world, child, 0, CPUID, params, caller=intruder) is S.ACCESS_DENIED
    assert unregister(world, child, 0, CPUID, 0x4000_0000, 0, 0, caller=intruder) is S.ACCESS_DENIED
    assert register(world, SELF, 0, CPUID, params) is S.ACCESS_DENIED  # the root has no parent
    assert register(world, SELF, 0, CPUID, params, caller=child) is S.ACCESS_DENIED
    assert register(world, 0x1234, 0, CPUID, params) is S.INVALID_PARTITION_ID
    assert unregister(world, 0x1234, 0, CPUID, 0x4000_0000, 0, 0) is S.INVALID_PARTITION_ID
    created = world.new_child()
    assert register(world, created, 0, CPUID, params) is S.INVALID_PARTITION_STATE
    assert unregister(world, created, 0, CPUID, 0x4000_0000, 0, 0) is S.INVALID_PARTITION_STATE
    assert register(world, child, 0, CPUID, params) is S.SUCCESS
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert register(world, child, 0, CPUID, params) is S.INVALID_PARTITION_STATE
    assert unregister(world, child, 0, CPUID, 0x4000_0000, 0, 0) is S.INVALID_PARTITION_STATE


def test_vp_index_must_name_a_vp_or_be_any_vp(world: World, child: int) -> None:
    for vp in (2, 0xFFFF_FFFE, 2047):
        assert register(world, child, vp, CPUID, cpuid_params(1)) is S.INVALID_VP_INDEX
        assert register(world, child, vp, MSR, msr_params(SCRATCH, READ, IGNORE)) is S.INVALID_VP_INDEX
        assert unregister(world, child, vp, MSR, SCRATCH, READ) is S.INVALID_VP_INDEX
    for vp in (0, 1, HV_ANY_VP):
        assert register(world, child, vp, CPUID, cpuid_params(1)) is S.SUCCESS
        assert register(world, child, vp, MSR, msr_params(SCRATCH, READ, IGNORE)) is S.SUCCESS
        assert unregister(world, child, vp, CPUID, 1, 0, 0) is S.SUCCESS
        assert unregister(world, child, vp, MSR, SCRATCH, READ) is S.SUCCESS


@pytest.mark.parametrize(
    "kind", [IT.X64IoPort, IT.Exception, IT.X64GlobalCpuid, IT.X64MsrIndex, IT.X64IoPortRange, 0x77]
)
def test_only_cpuid_and_msr_results_can_be_registered(world: World, child: int, kind: int) -> None:
    params = msr_params(SCRATCH, READ, IGNORE).ljust(44, b"\0")
    assert register(world, child, 0, kind, params) is S.INVALID_PARAMETER
    assert unregister(world, child, 0, kind, SCRATCH, READ) is S.INVALID_PARAMETER


BAD_PARAMS = {
    "msr-access-0": (MSR, msr_params(SCRATCH, 0, IGNORE)),
    "msr-access-4": (MSR, msr_params(SCRATCH, 4, IGNORE)),
    "msr-access-7": (MSR, msr_params(SCRATCH, 7, FAULT)),
    "msr-access-high-bit": (MSR, msr_params(SCRATCH, READ | 1 << 31, FAULT)),
    "msr-action-2": (MSR, msr_params(SCRATCH, READ, 2)),
    "msr-action-high": (MSR, msr_params(SCRATCH, WRITE, 0xFFFF_FFFF)),
    "cpuid-subleaf-specific-2": (CPUID, cpuid_params(7, specific=2)),
    "cpuid-subleaf-specific-0xff": (CPUID, cpuid_params(7, specific=0xFF)),
    "cpuid-always-override-2": (CPUID, cpuid_params(7, always=2)),
    "cpuid-padding": (CPUID, cpuid_params(7, padding=1)),
}


@pytest.mark.parametrize(("kind", "params"), list(BAD_PARAMS.values()), ids=list(BAD_PARAMS))
def test_bad_registrations_are_invalid_parameter(world: World, child: int, kind: int, params: bytes) -> None:
    assert register(world, child, 0, kind, params) is S.INVALID_PARAMETER
    p = world.sim.hv.partitions[child]
    assert (p.cpuid_results, p.msr_results) == ({}, {})


def test_legal_registrations(world: World, child: int) -> None:
    for params in (
        cpuid_params(7, 1, specific=1),
        cpuid_params(7, 1, specific=1, always=1),
        cpuid_params(0xFFFF_FFFF, 0xFFFF_FFFF, masks=NO_MASKS),
    ):
        assert register(world, child, 0, CPUID, params) is S.SUCCESS
    for access in (READ, WRITE, READ_WRITE):
        for action in (FAULT, IGNORE):
            assert register(world, child, 1, MSR, msr_params(SCRATCH, access, action)) is S.SUCCESS


def test_unregistering_what_was_never_registered_is_invalid_parameter(world: World, child: int) -> None:
    assert unregister(world, child, 0, CPUID, 1, 0, 0) is S.INVALID_PARAMETER
    assert unregister(world, child, 0, MSR, SCRATCH, READ) is S.INVALID_PARAMETER
    assert register(world, child, 0, CPUID, cpuid_params(1)) is S.SUCCESS
    assert register(world, child, 0, MSR, msr_params(SCRATCH, READ, IGNORE)) is S.SUCCESS
    # Not the same pattern: another VP, HV_ANY_VP, subleaf-specific, another MSR access or index.
    assert unregister(world, child, 1, CPUID, 1, 0, 0) is S.INVALID_PARAMETER
    assert unregister(world, child, HV_ANY_VP, CPUID, 1, 0, 0) is S.INVALID_PARAMETER
    assert unregister(world, child, 0, CPUID, 1, 0, 1) is S.INVALID_PARAMETER
    assert unregister(world, child, 0, MSR, SCRATCH, WRITE) is S.INVALID_PARAMETER
    assert unregister(world, child, 0, MSR, SCRATCH2, READ) is S.INVALID_PARAMETER
    assert unregister(world, child, 0, MSR, SCRATCH, 0) is S.INVALID_PARAMETER  # access 0: malformed
    assert unregister(world, child, 0, MSR, SCRATCH, 4) is S.INVALID_PARAMETER
    # The same pattern removes it, once.
    assert unregister(world, child, 0, CPUID, 1, 0, 0) is S.SUCCESS
    assert unregister(world, child, 0, CPUID, 1, 0, 0) is S.INVALID_PARAMETER
    assert unregister(world, child, 0, MSR, SCRATCH, READ) is S.SUCCESS
    assert unregister(world, child, 0, MSR, SCRATCH, READ) is S.INVALID_PARAMETER


def test_unregister_missing_status_is_configurable(make_world: MakeWorld) -> None:
    w = make_world(unregister_missing_status=HvStatus.NOT_FOUND)
    pid = w.active_child(vps=(0, 1))
    assert unregister(w, pid, 0, CPUID, 1, 0, 0) is S.NOT_FOUND
    assert unregister(w, pid, 0, MSR, SCRATCH, READ) is S.NOT_FOUND
    assert unregister(w, pid, 0, MSR, SCRATCH, 0) is S.INVALID_PARAMETER  # malformed, not missing
    assert register(w, pid, 0, CPUID, cpuid_params(7, 3, specific=1)) is S.SUCCESS
    assert unregister(w, pid, 0, CPUID, 7, 3, 0) is S.NOT_FOUND  # registered subleaf-specific
    assert unregister(w, pid, 0, CPUID, 7, 3, 1) is S.SUCCESS


def test_unregistering_a_non_specific_cpuid_ignores_the_subleaf(world: World, child: int) -> None:
    assert register(world, child, 0, CPUID, cpuid_params(0xD, 0)) is S.SUCCESS
    assert unregister(world, child, 0, CPUID, 0xD, 5, 0) is S.SUCCESS


def test_msr_registration_read_and_write_are_separate(world: World, child: int) -> None:
    assert register(world, child, 0, MSR, msr_params(SCRATCH, READ_WRITE, IGNORE)) is S.SUCCESS
    assert unregister(world, child, 0, MSR, SCRATCH, WRITE) is S.SUCCESS
    assert unregister(world, child, 0, MSR, SCRATCH, WRITE) is S.INVALID_PARAMETER
    assert unregister(world, child, 0, MSR, SCRATCH, READ_WRITE) is S.SUCCESS  # the read half was there
    assert unregister(world, child, 0, MSR, SCRATCH, READ) is S.INVALID_PARAMETER


# --- end to end: a guest and its parent -------------------------------------------------------------------
HOST_PAGES = 16384
RAM_PAGES = 32
ENTRY = 0x10_0000
Setup = tuple[int, int, bytes]  # (VP or HV_ANY_VP, intercept type, parameters) to register
Install = tuple[int, int, int]  # (type, access, parameter) to install


class Message(NamedTuple):
    head: MessageHeader
    hdr: X64InterceptHeader
    raw: bytes

    @property
    def body_at(self) -> int:
        return MESSAGE_HEADER.size + X64_INTERCEPT_HEADER.size


class Rig:
    """The root (SynIC on VP 0, SINT 0 unmasked) and a child with RAM at GPA 0 running *ops* once on
    VP 0, then halting. Before the VP runs, the host registers *results*, installs *intercepts* and
    runs *prepare*."""

    def __init__(
        self,
        ops: Iterable[Op],
        results: Iterable[Setup] = (),
        intercepts: Iterable[Install] = (),
        prepare: Callable[[Rig, int], Generator[Any, Any, None]] | None = None,
        vps: int = 1,
    ) -> None:
        self.sim = Simulation(0, config=HvConfig(host_pages=HOST_PAGES))
        self.host = ReferenceHost(self.sim)
        self.api = self.host.api
        out = self.run(self.api.enable_synic(SELF, 0, {HV_SYNIC_INTERCEPTION_SINT: 0x32}))
        assert out.status is S.SUCCESS
        program = Program(setup=tuple(ops), loop=(Halt(),), name="intercept-result-test")
        registrations, installs = list(results), list(intercepts)

        def setup(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
            pages = self.sim.alloc_host_pages(RAM_PAGES)
            host.guest_ram[pid] = pages
            out = yield from host.with_memory(
                lambda: self.api.map_gpa_pages(pid, 0, pages, F.PERMISSIONS), pid, "MapGpaPages"
            )
            assert out.status is S.SUCCESS
            for vp, kind, params in registrations:
                res = yield from self.api.simple(C.RegisterInterceptResult, header(pid, vp, kind) + params)
                assert res.status is S.SUCCESS
            for kind, access, param in installs:
                data = INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(pid, access, kind, param))
                issue = functools.partial(self.api.simple, C.InstallIntercept, data)
                res = yield from host.with_memory(issue, pid, "InstallIntercept")
                assert res.status is S.SUCCESS
            if prepare is not None:
                yield from prepare(self, pid)

        spec = PartitionSpec(vps=vps, entry=ENTRY, program=lambda _i: program, prepare=setup)
        self.pid = self.run(self.host.boot(spec))
        actor = self.sim.vp_actor(self.pid, 0)
        assert actor is not None
        self.actor = actor

    def run(self, gen: Generator[Any, Any, Any]) -> Any:
        return self.sim.run_process(gen)

    @property
    def vp(self) -> Any:
        return self.sim.hv.partitions[self.pid].vps[0]

    def message(self, timeout_ns: int = 1_000_000) -> Message | None:
        raw = self.run(self.host.take_message(HV_SYNIC_INTERCEPTION_SINT, timeout_ns))
        if raw is None:
            return None
        return Message(MESSAGE_HEADER.unpack(raw), X64_INTERCEPT_HEADER.unpack(raw, MESSAGE_HEADER.size), raw)

    def expect(self, mtype: MessageType) -> Message:
        msg = self.message()
        assert msg is not None, "no intercept message"
        assert msg.head.message_type == mtype, hex(msg.head.message_type)
        assert msg.head.origination_id == self.pid and msg.hdr.vp_index == 0
        return msg

    def registers(self, *names: int, vp: int = 0) -> list[int]:
        status, values = self.run(self.api.get_registers(self.pid, vp, names))
        assert status is S.SUCCESS
        return list(values)

    def resume(self, msg: Message, rip_step: int = 2, **regs: int) -> None:
        values = {getattr(R, k.capitalize()): v for k, v in regs.items()}
        values[R.Rip] = msg.hdr.rip + rip_step
        values[R.InterceptSuspend] = 0
        out = self.run(self.api.set_registers(self.pid, 0, values))
        assert out.status is S.SUCCESS

    def cpuid_values(self, vp: int, leaf: int, subleaf: int = 0) -> tuple[int, ...]:
        """GetVpCpuidValues with ApplyRegisteredValues: what the VP's CPUID answers."""
        body = struct.pack("<QIIIIIIQQ", self.pid, vp, 0x2, 0, 0, leaf, subleaf, 0, 0)
        res = self.run(self.api.rep(C.GetVpCpuidValues, body[:24], [body[24:]]))
        assert res.status is S.SUCCESS
        return struct.unpack("<IIII", res.output)

    def finish(self) -> None:
        """Nothing more arrives; the world is consistent; the guest ran to its end."""
        assert self.message(200_000) is None
        assert check_state(self.sim.hv) == []
        assert self.actor.halted


def cpuid_regs(rig: Rig) -> list[int]:
    return rig.registers(R.Rax, R.Rbx, R.Rcx, R.Rdx)


MICROSOFT_HV = (0x4000_000A, 0x7263_694D, 0x666F_736F, 0x7648_2074)
HV = 0x4000_0000


def test_a_registered_cpuid_result_is_answered_without_an_intercept() -> None:
    values = (0x4000_0005, 0x1111, 0x2222, 0x3333)
    rig = Rig(
        [Cpuid(HV), Cpuid(HV + 1)],
        results=[(0, CPUID, cpuid_params(HV, values=values))],
        intercepts=[(IT.X64Cpuid, INTERCEPT_EXECUTE, HV), (IT.X64Cpuid, INTERCEPT_EXECUTE, HV + 1)],
    )
    msg = rig.expect(MT.X64CpuidIntercept)  # only the leaf without a registration
    assert rig.actor.values == [0x4000_0005]
    rig.resume(msg, rax=7, rbx=0, rcx=0, rdx=0)
    rig.finish()
    assert rig.actor.values == [0x4000_0005, 7]
    assert (rig.actor.accesses, rig.actor.intercepted) == (2, 1)


def test_a_registered_result_wins_over_the_global_cpuid_intercept() -> None:
    rig = Rig(
        [Cpuid(1)],
        results=[(0, CPUID, cpuid_params(1, values=(0xAB, 0, 0, 0), masks=(FULL, 0, 0, 0)))],
        intercepts=[(IT.X64GlobalCpuid, INTERCEPT_EXECUTE, 0)],
    )
    rig.finish()
    assert rig.actor.values == [0xAB] and rig.actor.intercepted == 0


def test_masks_merge_registered_bits_into_the_hypervisors_result() -> None:
    values = (0x1234_5678, 0xFFFF_FFFF, 0, 0xAAAA_AAAA)
    masks = (0x0000_FF00, 0xF000_0000, 0xFFFF_FFFF, 0)
    rig = Rig([Cpuid(HV)], results=[(0, CPUID, cpuid_params(HV, values=values, masks=masks))])
    rig.finish()
    eax, ebx, _, edx = MICROSOFT_HV
    expected = [
        (eax & ~0xFF00) | 0x5600,
        (ebx & 0x0FFF_FFFF) | 0xF000_0000,
        0,
        edx,
    ]
    assert cpuid_regs(rig) == expected
    assert rig.actor.values == [expected[0]]
    assert list(rig.cpuid_values(0, HV)) == expected  # GetVpCpuidValues agrees


def test_subleaf_specific_registrations_match_only_their_subleaf() -> None:
    rig = Rig(
        [Cpuid(7, 0), Cpuid(7, 1), Cpuid(7, 2), Cpuid(0xD, 0), Cpuid(0xD, 9)],
        results=[
            (0, CPUID, cpuid_params(7, 1, (0x71, 0, 0, 0), specific=1)),
            (0, CPUID, cpuid_params(7, 0, (0x70, 0, 0, 0))),  # not subleaf-specific: every subleaf
            (0, CPUID, cpuid_params(0xD, 5, (0xD0, 0, 0, 0))),
        ],
    )
    rig.finish()
    assert rig.actor.values == [0x70, 0x71, 0x70, 0xD0, 0xD0]


def test_a_vp_registration_wins_over_hv_any_vp() -> None:
    rig = Rig(
        [Cpuid(HV + 1), Cpuid(HV + 2), Cpuid(HV + 3, 4)],
        results=[
            (HV_ANY_VP, CPUID, cpuid_params(HV + 1, values=(0xA1, 0, 0, 0))),
            (0, CPUID, cpuid_params(HV + 1, values=(0x01, 0, 0, 0))),
            (HV_ANY_VP, CPUID, cpuid_params(HV + 2, values=(0xA2, 0, 0, 0))),
            # A VP's registration for any subleaf still beats a partition-wide subleaf-specific one.
            (HV_ANY_VP, CPUID, cpuid_params(HV + 3, 4, (0xA3, 0, 0, 0), specific=1)),
            (0, CPUID, cpuid_params(HV + 3, 0, (0x03, 0, 0, 0))),
        ],
        vps=2,
    )
    rig.finish()
    assert rig.actor.values == [0x01, 0xA2, 0x03]
    assert rig.cpuid_values(1, HV + 1)[0] == 0xA1  # VP 1 has only the partition-wide one
    assert rig.cpuid_values(1, HV + 3, 4)[0] == 0xA3


def test_an_unregistered_cpuid_result_is_intercepted_again() -> None:
    def unregister_it(rig: Rig, pid: int) -> Generator[Any, Any, None]:
        data = header(pid, 0, CPUID) + struct.pack("<III", HV, 0, 0)
        res = yield from rig.api.simple(C.UnregisterInterceptResult, data)
        assert res.status is S.SUCCESS

    rig = Rig(
        [Cpuid(HV)],
        results=[(0, CPUID, cpuid_params(HV, values=(1, 2, 3, 4)))],
        intercepts=[(IT.X64Cpuid, INTERCEPT_EXECUTE, HV)],
        prepare=unregister_it,
    )
    msg = rig.expect(MT.X64CpuidIntercept)
    rig.resume(msg, rax=0x55, rbx=0, rcx=0, rdx=0)
    rig.finish()
    assert rig.actor.values == [0x55]


def test_msr_ignore_write_read_zero_reads_0_and_drops_writes() -> None:
    rig = Rig(
        [Msr(SCRATCH), Msr(SCRATCH, True, 0x1234), Msr(SCRATCH), Msr(SCRATCH2, True, 5), Msr(SCRATCH2)],
        results=[
            (0, MSR, msr_params(SCRATCH, READ_WRITE, IGNORE)),
            (HV_ANY_VP, MSR, msr_params(SCRATCH2, WRITE, IGNORE)),  # only writes
        ],
        intercepts=[(IT.X64MsrIndex, INTERCEPT_READ | INTERCEPT_WRITE, SCRATCH)],  # the result wins
    )
    rig.finish()
    assert rig.actor.values == [0, 0]
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (5, 0, 1)  # SCRATCH2's RDMSR


def test_msr_fault_action_makes_a_gp() -> None:
    rig = Rig(
        [Msr(SCRATCH), Msr(SCRATCH, True, 1), Msr(SCRATCH2)],
        results=[(0, MSR, msr_params(SCRATCH, READ_WRITE, FAULT))],
        intercepts=[(IT.X64MsrIndex, INTERCEPT_READ | INTERCEPT_WRITE, SCRATCH)],
    )
    rig.finish()  # the registered Fault wins over the MSR intercept: no message
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (3, 0, 3)
    assert rig.actor.values == []


def test_a_vp_msr_registration_wins_over_hv_any_vp() -> None:
    rig = Rig(
        [Msr(SCRATCH)],
        results=[
            (HV_ANY_VP, MSR, msr_params(SCRATCH, READ, FAULT)),
            (0, MSR, msr_params(SCRATCH, READ, IGNORE)),
        ],
    )
    rig.finish()
    assert (rig.actor.values, rig.actor.faults) == ([0], 0)


def test_msr_registrations_do_not_touch_virtualized_msrs() -> None:
    value = 0xFFFF_8000_0000_1000
    rig = Rig(
        [Msr(LSTAR, True, value), Msr(LSTAR)],
        results=[(0, MSR, msr_params(LSTAR, READ_WRITE, IGNORE))],
    )
    rig.finish()
    assert rig.actor.values == [value] and rig.registers(R.Lstar) == [value]


# --- exception intercepts ----------------------------------------------------------------------------
PML4, PDPT, PD, PT = 0x1000, 0x2000, 0x3000, 0x4000


def _paging(rig: Rig, pid: int) -> Generator[Any, Any, None]:
    """4-level tables: GVA 0x5000 -> GPA 0x9000 (read/write), GVA 0x8000 -> GPA 0xA000 (read-only),
    GVA 0x7000 not present."""
    for gpa, entry in (
        (PML4, PDPT | 7), (PDPT, PD | 7), (PD, PT | 7), (PT + 8 * 5, 0x9000 | 7), (PT + 8 * 8, 0xA000 | 5),
    ):  # fmt: skip
        rig.api.write_guest(pid, gpa, entry.to_bytes(8, "little"))
    regs: dict[int, int] = {
        R.Cr3: PML4,
        R.Cr4: 0x20,
        R.Efer: 0x500,
        R.Cr0: 0x8001_0011,
        R.Rbx: 0xB0B,
        R.R15: 0xF15,
    }
    out = yield from rig.api.set_registers(pid, 0, regs)
    assert out.status is S.SUCCESS


def exception(msg: Message) -> Any:
    assert msg.head.payload_size == X64_INTERCEPT_HEADER.size + X64_EXCEPTION_INTERCEPT.size
    return X64_EXCEPTION_INTERCEPT.unpack(msg.raw, msg.body_at)


def test_a_gp_goes_to_the_parent_as_an_exception_intercept_and_the_vp_waits() -> None:
    rig = Rig(
        [Msr(SCRATCH), Msr(SCRATCH2, True, 9)],
        intercepts=[(IT.Exception, INTERCEPT_EXECUTE, VECTOR_GP)],
        prepare=_paging,
    )
    msg = rig.expect(MT.ExceptionIntercept)
    body = exception(msg)
    assert (body.vector, body.info & 1, body.error_code) == (VECTOR_GP, 1, 0)
    assert (msg.hdr.rip, msg.hdr.access_type) == (ENTRY, ACCESS_EXECUTE)
    gprs = struct.unpack("<16Q", body.gprs)
    assert (gprs[3], gprs[15]) == (0xB0B, 0xF15)  # RBX, R15
    # Suspended until its parent resumes it, however long that takes.
    assert rig.registers(R.InterceptSuspend) == [1] and not rig.vp.runnable
    rig.sim.run(rig.sim.now_ns + 2_000_000)
    assert not rig.vp.runnable and rig.actor.accesses == 1 and rig.message(100_000) is None
    rig.resume(msg, rax=0x77, rdx=0)  # the parent emulated the RDMSR
    msg = rig.expect(MT.ExceptionIntercept)  # the WRMSR of the other MSR
    assert exception(msg).vector == VECTOR_GP and msg.hdr.rip == ENTRY + 2
    rig.resume(msg)
    rig.finish()
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (2, 2, 0)
    assert rig.actor.values == [0x77]


def test_a_registered_msr_fault_can_be_intercepted_as_a_gp() -> None:
    rig = Rig(
        [Msr(SCRATCH, True, 3)],
        results=[(0, MSR, msr_params(SCRATCH, WRITE, FAULT))],
        intercepts=[(IT.Exception, INTERCEPT_EXECUTE, VECTOR_GP)],
    )
    msg = rig.expect(MT.ExceptionIntercept)
    assert exception(msg).vector == VECTOR_GP
    rig.resume(msg)
    rig.finish()


@pytest.mark.parametrize(
    ("op", "error_code", "cr2"),
    [
        (ReadMemory(0x7010, 8, virtual=True), 0, 0x7010),  # not present, read
        (WriteMemory(0x7FF8, 1, 8, virtual=True), 2, 0x7FF8),  # not present, write
        (WriteMemory(0x8008, 1, 8, virtual=True), 3, 0x8008),  # present, write to a read-only page
    ],
    ids=["read-not-present", "write-not-present", "write-read-only"],
)
def test_a_pf_goes_to_the_parent_with_error_code_and_cr2(op: Op, error_code: int, cr2: int) -> None:
    rig = Rig(
        [op, ReadMemory(0x5000, 8, virtual=True)],
        intercepts=[(IT.Exception, INTERCEPT_EXECUTE, VECTOR_PF)],
        prepare=_paging,
    )
    msg = rig.expect(MT.ExceptionIntercept)
    body = exception(msg)
    assert (body.vector, body.info & 1, body.error_code, body.parameter) == (VECTOR_PF, 1, error_code, cr2)
    assert not rig.vp.runnable
    rig.resume(msg, rip_step=4)
    rig.finish()  # the second read goes through the tables as usual
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (2, 1, 0)


def test_without_the_intercept_the_guest_takes_the_fault_itself() -> None:
    rig = Rig(
        [Msr(SCRATCH), ReadMemory(0x7000, 8, virtual=True), ReadMemory(0x5000, 8, virtual=True)],
        intercepts=[(IT.Exception, INTERCEPT_EXECUTE, 6)],  # #UD: neither of these
        prepare=_paging,
    )
    rig.finish()
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (3, 0, 2)
    assert rig.vp.intercepts == 0


def test_intercepting_pf_leaves_gp_to_the_guest_and_back() -> None:
    rig = Rig(
        [Msr(SCRATCH), ReadMemory(0x7000, 8, virtual=True)],
        intercepts=[(IT.Exception, INTERCEPT_EXECUTE, VECTOR_PF)],
        prepare=_paging,
    )
    msg = rig.expect(MT.ExceptionIntercept)
    assert exception(msg).vector == VECTOR_PF and rig.actor.faults == 1  # the #GP was the guest's
    rig.resume(msg)
    rig.finish()


def test_removing_the_exception_intercept_gives_the_fault_back_to_the_guest() -> None:
    def remove(rig: Rig, pid: int) -> Generator[Any, Any, None]:
        data = INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(pid, 0, IT.Exception, VECTOR_GP))
        res = yield from rig.api.simple(C.InstallIntercept, data)
        assert res.status is S.SUCCESS

    rig = Rig([Msr(SCRATCH)], intercepts=[(IT.Exception, INTERCEPT_EXECUTE, VECTOR_GP)], prepare=remove)
    rig.finish()
    assert rig.actor.faults == 1


def test_the_msr_intercept_itself_is_not_an_exception() -> None:
    rig = Rig(
        [Msr(SCRATCH)],
        intercepts=[(IT.X64MsrIndex, INTERCEPT_READ, SCRATCH), (IT.Exception, INTERCEPT_EXECUTE, VECTOR_GP)],
    )
    msg = rig.expect(MT.X64MsrIntercept)
    assert X64_MSR_INTERCEPT.unpack(msg.raw, msg.body_at).msr == SCRATCH
    rig.resume(msg, rax=1, rdx=0)
    rig.finish()
    assert rig.actor.values == [1]
