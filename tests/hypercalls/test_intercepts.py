"""Intercepts from the caller's side: InstallIntercept and CheckForIoIntercept (HYPERCALLS.md 4.22,
4.24, 5.6, conformance 7.6 94-98), then end to end: a child's guest program touches IO ports, MSRs,
CPUID and memory, and its parent (the root, SynIC enabled on SINT 0 of VP 0) receives the intercept
messages, emulates, writes the result registers and clears InterceptSuspend.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from hvsim.actors.config import HvConfig
from hvsim.actors.hvdef import (
    CHECK_FOR_IO_INTERCEPT_INPUT,
    HV_PARTITION_ID_SELF,
    HV_SYNIC_INTERCEPTION_SINT,
    INSTALL_INTERCEPT_INPUT,
    INTERCEPT_EXECUTE,
    INTERCEPT_READ,
    INTERCEPT_WRITE,
    MESSAGE_HEADER,
    X64_CPUID_INTERCEPT,
    X64_INTERCEPT_HEADER,
    X64_IO_PORT_INTERCEPT,
    X64_MEMORY_INTERCEPT,
    X64_MSR_INTERCEPT,
    CheckForIoInterceptInput,
    HvStatus,
    HypercallCode,
    InstallInterceptInput,
    InterceptType,
    MapGpaFlags,
    MessageHeader,
    MessageType,
    RegisterName,
    X64InterceptHeader,
    control,
)
from hvsim.actors.workload import Cpuid, Halt, IoPort, Msr, Op, Program, ReadMemory, WriteMemory
from hvsim.scenarios import Simulation
from hvsim.scenarios.checkers import check_state
from hvsim.scenarios.host import PartitionSpec, ReferenceHost

if TYPE_CHECKING:
    from conftest import World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
IT = InterceptType
MT = MessageType
R = RegisterName
F = MapGpaFlags
RW = INTERCEPT_READ | INTERCEPT_WRITE
SELF = HV_PARTITION_ID_SELF
ACCESS_READ, ACCESS_WRITE, ACCESS_EXECUTE = 0, 1, 2
_U64 = struct.Struct("<Q")


# --- raw calls ------------------------------------------------------------------------------------
def install(
    w: World, pid: int, kind: int, param: int = 0, access: int = RW, *, caller: int | None = None
) -> HvStatus:
    data = INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(pid, access, kind, param))
    return w.simple(C.InstallIntercept, data, caller=caller)


def check_io(
    w: World, pid: int, port: int, size: int = 1, write: bool = False, *, vp: int = 0,
    vtl: int = 0, padding0: int = 0, padding1: bytes = bytes(6), is_write: int | None = None,
    caller: int | None = None,
) -> tuple[HvStatus, bool]:  # fmt: skip
    flag = int(write) if is_write is None else is_write
    data = CHECK_FOR_IO_INTERCEPT_INPUT.pack(
        CheckForIoInterceptInput(pid, vp, vtl, padding0, port, size, flag, padding1)
    )
    res = w.call(control(C.CheckForIoIntercept), data, caller=caller)
    assert len(res.output) == 8
    if res.status is S.SUCCESS:
        assert res.output[0] in (0, 1) and res.output[1:] == bytes(7)
    return res.status, bool(res.output[0])


def intercepted(w: World, pid: int, port: int, size: int = 1, write: bool = False) -> bool:
    status, hit = check_io(w, pid, port, size, write)
    assert status is S.SUCCESS
    return hit


# --- InstallIntercept -------------------------------------------------------------------------------
def test_7_6_94_io_port_intercept_is_reported_by_check_for_io_intercept(world: World, child: int) -> None:
    assert not intercepted(world, child, 0x60)
    assert install(world, child, IT.X64IoPort, 0x60) is S.SUCCESS
    assert intercepted(world, child, 0x60)
    assert intercepted(world, child, 0x60, write=True)
    assert check_io(world, child, 0x60, vp=1) == (S.SUCCESS, True)  # partition-wide
    assert not intercepted(world, child, 0x61)


@pytest.mark.parametrize("kind", [0x77, 0x04, 0x12, 0x13, 0xFFFF_FFFF])
def test_7_6_95_unknown_intercept_type_is_invalid_parameter(world: World, child: int, kind: int) -> None:
    assert install(world, child, kind, 0, INTERCEPT_READ) is S.INVALID_PARAMETER


BAD_INSTALLS = {
    "IoPort-execute": (IT.X64IoPort, 0x60, INTERCEPT_EXECUTE),
    "IoPort-read-execute": (IT.X64IoPort, 0x60, INTERCEPT_READ | INTERCEPT_EXECUTE),
    "IoPortRange-execute": (IT.X64IoPortRange, 0x60 | 0x64 << 16, INTERCEPT_EXECUTE),
    "Msr-execute": (IT.X64Msr, 0, INTERCEPT_EXECUTE),
    "MsrIndex-execute": (IT.X64MsrIndex, 0x10, INTERCEPT_EXECUTE),
    "Cpuid-read": (IT.X64Cpuid, 1, INTERCEPT_READ),
    "Cpuid-write": (IT.X64Cpuid, 1, INTERCEPT_WRITE),
    "GlobalCpuid-read": (IT.X64GlobalCpuid, 0, INTERCEPT_READ),
    "Exception-write": (IT.Exception, 14, INTERCEPT_WRITE),
    "unknown-access-bit": (IT.X64IoPort, 0x60, INTERCEPT_READ | 0x8),
    "IoPort-beyond-0xFFFF": (IT.X64IoPort, 0x1_0000, RW),
    "IoPortRange-base-above-end": (IT.X64IoPortRange, 0x70 | 0x60 << 16, RW),
    "IoPortRange-beyond-32-bits": (IT.X64IoPortRange, 0x60 | 0x70 << 16 | 1 << 32, RW),
    "Exception-vector-32": (IT.Exception, 32, INTERCEPT_EXECUTE),
    "Cpuid-beyond-32-bits": (IT.X64Cpuid, 1 << 32, INTERCEPT_EXECUTE),
    "MsrIndex-beyond-32-bits": (IT.X64MsrIndex, 1 << 32, RW),
}


@pytest.mark.parametrize(("kind", "param", "access"), list(BAD_INSTALLS.values()), ids=list(BAD_INSTALLS))
def test_access_type_and_parameter_rules(
    world: World, child: int, kind: int, param: int, access: int
) -> None:
    before = world.balance(child)
    assert install(world, child, kind, param, access) is S.INVALID_PARAMETER
    assert world.balance(child) == before
    assert world.sim.hv.partitions[child].intercepts == {}


GOOD_INSTALLS = {
    "IoPort-0xFFFF-read": (IT.X64IoPort, 0xFFFF, INTERCEPT_READ),
    "IoPortRange-single-port": (IT.X64IoPortRange, 0x80 | 0x80 << 16, INTERCEPT_WRITE),
    "Msr-all": (IT.X64Msr, 0, RW),
    "MsrIndex": (IT.X64MsrIndex, 0xC001_1000, INTERCEPT_READ),
    "Exception-31": (IT.Exception, 31, INTERCEPT_EXECUTE),
    "Cpuid": (IT.X64Cpuid, 0xFFFF_FFFF, INTERCEPT_EXECUTE),
    "GlobalCpuid": (IT.X64GlobalCpuid, 0, INTERCEPT_EXECUTE),
}


@pytest.mark.parametrize(("kind", "param", "access"), list(GOOD_INSTALLS.values()), ids=list(GOOD_INSTALLS))
def test_legal_intercepts_install(world: World, child: int, kind: int, param: int, access: int) -> None:
    assert install(world, child, kind, param, access) is S.SUCCESS


def test_install_target_statuses(world: World, child: int, intruder: int) -> None:
    assert install(world, child, IT.X64IoPort, 0x60, caller=intruder) is S.ACCESS_DENIED
    assert install(world, 0x1234, IT.X64IoPort, 0x60) is S.INVALID_PARTITION_ID
    assert install(world, SELF, IT.X64IoPort, 0x60) is S.ACCESS_DENIED  # the root has no parent
    created = world.new_child()
    assert install(world, created, IT.X64IoPort, 0x60) is S.INVALID_PARTITION_STATE
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert install(world, child, IT.X64IoPort, 0x60) is S.INVALID_PARTITION_STATE


def test_7_6_96_only_cpuid_intercepts_need_pool_memory(world: World) -> None:
    c = world.active_child(spare=0)
    assert world.balance(c).pages_available == 0
    for kind, param, access in (
        (IT.X64IoPort, 0x60, RW),
        (IT.X64IoPortRange, 0x70 | 0x7F << 16, INTERCEPT_WRITE),
        (IT.X64Msr, 0, RW),
        (IT.X64MsrIndex, 0x174, INTERCEPT_READ),
        (IT.Exception, 6, INTERCEPT_EXECUTE),
    ):
        assert install(world, c, kind, param, access) is S.SUCCESS, kind.name
    assert install(world, c, IT.X64Cpuid, 1, INTERCEPT_EXECUTE) is S.INSUFFICIENT_MEMORY
    before = world.balance(c)
    cost = world.page_costs.cpuid_intercept
    world.fund(c, cost)
    assert install(world, c, IT.X64Cpuid, 1, INTERCEPT_EXECUTE) is S.SUCCESS
    assert world.balance(c) == (before.pages_available, before.pages_in_use + cost)
    assert install(world, c, IT.X64Cpuid, 1, INTERCEPT_EXECUTE) is S.SUCCESS  # already there: no charge
    assert install(world, c, IT.X64Cpuid, 2, INTERCEPT_EXECUTE) is S.INSUFFICIENT_MEMORY
    assert install(world, c, IT.X64Cpuid, 1, 0) is S.SUCCESS  # removed: the page comes back
    assert world.balance(c) == (before.pages_available + cost, before.pages_in_use)
    assert install(world, c, IT.X64Cpuid, 2, INTERCEPT_EXECUTE) is S.SUCCESS


def test_7_6_97_access_type_0_removes_an_intercept(world: World, child: int) -> None:
    assert install(world, child, IT.X64IoPort, 0x60) is S.SUCCESS
    assert install(world, child, IT.X64IoPortRange, 0x60 | 0x61 << 16, INTERCEPT_WRITE) is S.SUCCESS
    assert install(world, child, IT.X64IoPort, 0x60, 0) is S.SUCCESS
    assert not intercepted(world, child, 0x60)
    assert intercepted(world, child, 0x60, write=True)  # the range still covers writes
    assert install(world, child, IT.X64IoPortRange, 0x60 | 0x61 << 16, 0) is S.SUCCESS
    assert not intercepted(world, child, 0x60, write=True)
    assert install(world, child, IT.X64IoPort, 0x99, 0) is S.SUCCESS  # removing nothing is fine


def test_a_later_install_replaces_the_access_mask(world: World, child: int) -> None:
    assert install(world, child, IT.X64IoPort, 0x60, RW) is S.SUCCESS
    assert install(world, child, IT.X64IoPort, 0x60, INTERCEPT_WRITE) is S.SUCCESS
    assert (intercepted(world, child, 0x60), intercepted(world, child, 0x60, write=True)) == (False, True)


@pytest.mark.parametrize("code", [C.InstallInterceptEx, C.SetVirtualInterruptTarget])
def test_7_6_98_arm64_only_calls_are_invalid_hypercall_code(world: World, child: int, code: int) -> None:
    for ctl in (control(code), control(code, rep_count=1)):
        res = world.call(ctl, _U64.pack(child) + bytes(120))
        assert (res.status, res.reps_completed) == (S.INVALID_HYPERCALL_CODE, 0)


# --- CheckForIoIntercept -----------------------------------------------------------------------------
def test_ranges_are_inclusive_and_multi_byte_accesses_count_any_port(world: World, child: int) -> None:
    assert install(world, child, IT.X64IoPortRange, 0x3F9 | 0x3FF << 16) is S.SUCCESS
    assert install(world, child, IT.X64IoPort, 0x60) is S.SUCCESS
    assert [intercepted(world, child, p) for p in (0x3F8, 0x3F9, 0x3FC, 0x3FF, 0x400)] == [
        False, True, True, True, False,
    ]  # fmt: skip
    # Multi-byte accesses: any port they cover.
    assert intercepted(world, child, 0x3F8, 2)
    assert intercepted(world, child, 0x3F6, 4)
    assert not intercepted(world, child, 0x3F4, 4)
    assert intercepted(world, child, 0x3FF, 4)
    assert intercepted(world, child, 0x5F, 2) and intercepted(world, child, 0x5D, 4)
    assert not intercepted(world, child, 0x5E, 2) and not intercepted(world, child, 0x5C, 4)
    assert not intercepted(world, child, 0x61, 4)


def test_read_only_and_write_only_intercepts(world: World, child: int) -> None:
    assert install(world, child, IT.X64IoPort, 0x70, INTERCEPT_READ) is S.SUCCESS
    assert install(world, child, IT.X64IoPortRange, 0x80 | 0x8F << 16, INTERCEPT_WRITE) is S.SUCCESS
    assert intercepted(world, child, 0x70) and not intercepted(world, child, 0x70, write=True)
    assert intercepted(world, child, 0x6F, 2) and not intercepted(world, child, 0x6F, 2, write=True)
    assert intercepted(world, child, 0x80, write=True) and not intercepted(world, child, 0x80)
    assert intercepted(world, child, 0x8E, 4, write=True) and not intercepted(world, child, 0x8E, 4)


def test_check_for_io_intercept_statuses(world: World, child: int, intruder: int) -> None:
    assert install(world, child, IT.X64IoPort, 0x60) is S.SUCCESS
    for size in (0, 3, 8):
        assert check_io(world, child, 0x60, size)[0] is S.INVALID_PARAMETER, size
    assert check_io(world, child, 0x60, is_write=2)[0] is S.INVALID_PARAMETER
    assert check_io(world, child, 0x60, padding0=1)[0] is S.INVALID_PARAMETER
    assert check_io(world, child, 0x60, padding1=b"\0\0\0\0\0\1")[0] is S.INVALID_PARAMETER
    for vtl in (0x11, 0x20, 0x80):  # VTL 1 (not enabled), reserved HV_INPUT_VTL bits
        assert check_io(world, child, 0x60, vtl=vtl)[0] is S.INVALID_PARAMETER, vtl
    assert check_io(world, child, 0x60, vp=2)[0] is S.INVALID_VP_INDEX
    assert check_io(world, child, 0x60, caller=intruder)[0] is S.ACCESS_DENIED
    assert check_io(world, 0x1234, 0x60)[0] is S.INVALID_PARTITION_ID
    assert check_io(world, world.new_child(), 0x60)[0] is S.INVALID_PARTITION_STATE
    assert world.by_id(C.FinalizePartition, child) is S.SUCCESS
    assert check_io(world, child, 0x60)[0] is S.INVALID_PARTITION_STATE


# --- end to end: a guest and its parent ----------------------------------------------------------------
#: Host RAM for the end-to-end worlds (64 MiB: enough for a partition, quick to build).
HOST_PAGES = 16384
RAM_PAGES = 32
RWX = F.PERMISSIONS
ENTRY = 0x10_0000
Install = tuple[int, int, int]  # (type, access, parameter)


class Message(NamedTuple):
    head: MessageHeader
    hdr: X64InterceptHeader
    raw: bytes

    @property
    def body_at(self) -> int:
        return MESSAGE_HEADER.size + X64_INTERCEPT_HEADER.size


class Rig:
    """The root (SynIC on VP 0, SINT 0 unmasked) and one child running *ops* once, then halting.
    Before the VP runs, the host maps RAM_PAGES of read/write/execute RAM at GPA 0, installs
    *intercepts* and runs *prepare* (more mappings, page tables, registers)."""

    def __init__(
        self,
        ops: Iterable[Op],
        intercepts: Iterable[Install] = (),
        prepare: Callable[[Rig, int], Generator[Any, Any, None]] | None = None,
    ) -> None:
        self.sim = Simulation(0, config=HvConfig(host_pages=HOST_PAGES))
        self.host = ReferenceHost(self.sim)
        self.api = self.host.api
        out = self.run(self.api.enable_synic(SELF, 0, {HV_SYNIC_INTERCEPTION_SINT: 0x32}))
        assert out.status is S.SUCCESS
        program = Program(setup=tuple(ops), loop=(Halt(),), name="intercept-test")
        installs = list(intercepts)

        def setup(host: ReferenceHost, pid: int) -> Generator[Any, Any, None]:
            pages = self.sim.alloc_host_pages(RAM_PAGES)
            out = yield from host.with_memory(
                lambda: self.api.map_gpa_pages(pid, 0, pages, RWX), pid, "MapGpaPages"
            )
            assert out.status is S.SUCCESS
            for kind, access, param in installs:
                data = INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(pid, access, kind, param))
                res = yield from host.with_memory(
                    lambda data=data: self.api.simple(C.InstallIntercept, data), pid, "InstallIntercept"
                )
                assert res.status is S.SUCCESS
            if prepare is not None:
                yield from prepare(self, pid)

        spec = PartitionSpec(vps=1, entry=ENTRY, program=lambda _i: program, prepare=setup)
        self.pid = self.run(self.host.boot(spec))
        actor = self.sim.vp_actor(self.pid, 0)
        assert actor is not None
        self.actor = actor

    def run(self, gen: Generator[Any, Any, Any]) -> Any:
        return self.sim.run_process(gen)

    def settle(self, ns: int = 1_000_000) -> None:
        self.sim.run(self.sim.now_ns + ns)

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
        assert msg.head.origination_id == self.pid  # the sender partition
        assert msg.hdr.vp_index == 0 and msg.hdr.instruction_length_cr8 & 0xF == 2
        return msg

    def register(self, name: int) -> int:
        status, values = self.run(self.api.get_registers(self.pid, 0, [name]))
        assert status is S.SUCCESS
        return int(values[0])

    def resume(self, msg: Message, **regs: int) -> None:
        """Emulation done: write the results, step RIP past the instruction, clear InterceptSuspend."""
        values = {getattr(R, k.capitalize()): v for k, v in regs.items()}
        values[R.Rip] = msg.hdr.rip + (msg.hdr.instruction_length_cr8 & 0xF)
        values[R.InterceptSuspend] = 0
        out = self.run(self.api.set_registers(self.pid, 0, values))
        assert out.status is S.SUCCESS

    def finish(self) -> None:
        """Nothing more arrives; the world is consistent."""
        assert self.message(200_000) is None
        assert check_state(self.sim.hv) == []


def test_an_intercepted_out_suspends_the_vp_until_its_parent_resumes_it() -> None:
    rig = Rig([IoPort(0x3F8, 1, True, 0x41), IoPort(0x3F8, 2, True, 0xBEEF)], [(IT.X64IoPort, RW, 0x3F8)])
    msg = rig.expect(MT.X64IoPortIntercept)
    assert msg.head.payload_size == X64_INTERCEPT_HEADER.size + X64_IO_PORT_INTERCEPT.size
    assert msg.hdr.access_type == ACCESS_WRITE and msg.hdr.rip == ENTRY
    io = X64_IO_PORT_INTERCEPT.unpack(msg.raw, msg.body_at)
    assert (io.port, io.access_info & 0x7, io.rax) == (0x3F8, 1, 0x41)
    # Suspended: not runnable, and it stays that way however long the parent takes.
    assert rig.register(R.InterceptSuspend) == 1 and not rig.vp.runnable
    rig.settle(2_000_000)
    assert not rig.vp.runnable and rig.actor.accesses == 1 and rig.message(100_000) is None
    rig.resume(msg)
    msg = rig.expect(MT.X64IoPortIntercept)  # the next OUT, once resumed
    io = X64_IO_PORT_INTERCEPT.unpack(msg.raw, msg.body_at)
    assert (io.port, io.access_info & 0x7, io.rax) == (0x3F8, 2, 0xBEEF)
    assert msg.hdr.rip == ENTRY + 2  # the parent stepped RIP
    rig.resume(msg)
    rig.finish()
    assert rig.register(R.InterceptSuspend) == 0
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (2, 2, 0)
    assert rig.vp.runnable and rig.actor.halted  # it ran on to the end of its program


def test_an_intercepted_in_returns_what_the_parent_wrote_to_rax() -> None:
    rig = Rig([IoPort(0x60, 1), IoPort(0x60, 2), IoPort(0x5F, 4)], [(IT.X64IoPort, INTERCEPT_READ, 0x60)])
    for size, rax in ((1, 0x1234_5678), (2, 0x1234_5678), (4, 0xFFFF_FFFF_8765_4321)):
        msg = rig.expect(MT.X64IoPortIntercept)
        io = X64_IO_PORT_INTERCEPT.unpack(msg.raw, msg.body_at)
        assert msg.hdr.access_type == ACCESS_READ and io.access_info & 0x7 == size
        rig.resume(msg, rax=rax)
    rig.finish()
    assert rig.actor.values == [0x78, 0x5678, 0x8765_4321]  # masked to the access size


def test_un_intercepted_ports_read_all_ones_and_writes_vanish() -> None:
    rig = Rig(
        [IoPort(0x80, 1), IoPort(0x80, 2), IoPort(0x80, 4), IoPort(0x70, 1, True, 5), IoPort(0x70, 1)],
        [(IT.X64IoPort, INTERCEPT_READ, 0x70)],
    )
    msg = rig.expect(MT.X64IoPortIntercept)  # only the IN of port 0x70
    assert X64_IO_PORT_INTERCEPT.unpack(msg.raw, msg.body_at).port == 0x70
    assert msg.hdr.access_type == ACCESS_READ
    rig.resume(msg, rax=0x42)
    rig.finish()
    assert rig.actor.values == [0xFF, 0xFFFF, 0xFFFF_FFFF, 0x42]
    assert (rig.actor.accesses, rig.actor.intercepted) == (5, 1)


def test_msr_intercepts_carry_edx_eax_and_reads_return_them() -> None:
    scratch = 0xC001_1000
    rig = Rig([Msr(scratch, True, 0x1_2345_6789), Msr(scratch)], [(IT.X64MsrIndex, RW, scratch)])
    msg = rig.expect(MT.X64MsrIntercept)
    body = X64_MSR_INTERCEPT.unpack(msg.raw, msg.body_at)
    assert msg.hdr.access_type == ACCESS_WRITE
    assert (body.msr, body.rdx, body.rax) == (scratch, 0x1, 0x2345_6789)
    rig.resume(msg)
    msg = rig.expect(MT.X64MsrIntercept)
    assert (
        msg.hdr.access_type == ACCESS_READ and X64_MSR_INTERCEPT.unpack(msg.raw, msg.body_at).msr == scratch
    )
    rig.resume(msg, rax=0xFFFF_FFFF_DEAD_BEEF, rdx=0x12)
    rig.finish()
    assert rig.actor.values == [0x12_DEAD_BEEF]  # EDX:EAX


def test_virtualized_msrs_bypass_the_all_msr_intercept_and_unknown_ones_fault() -> None:
    lstar, unknown = 0xC000_0082, 0xC001_1001
    value = 0xFFFF_8000_0012_3000
    rig = Rig(
        [Msr(lstar, True, value), Msr(lstar), Msr(unknown), Msr(unknown, True, 7)],
        [(IT.X64Msr, INTERCEPT_READ, 0)],
    )
    msg = rig.expect(MT.X64MsrIntercept)  # only the read of the MSR nothing implements
    assert X64_MSR_INTERCEPT.unpack(msg.raw, msg.body_at).msr == unknown
    rig.resume(msg, rax=3, rdx=0)
    rig.finish()
    assert rig.actor.values == [value, 3]
    assert rig.register(R.Lstar) == value
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (4, 1, 1)  # the WRMSR: #GP


def test_the_guest_crash_msrs_are_the_crash_registers() -> None:
    crash_p0, crash_p4, crash_ctl = 0x4000_0100, 0x4000_0104, 0x4000_0105
    notify = 1 << 63
    rig = Rig(
        [Msr(crash_p0, True, 0xDEAD), Msr(crash_p4, True, 4), Msr(crash_ctl, True, notify), Msr(crash_p0)]
    )
    rig.finish()
    assert (rig.actor.faults, rig.actor.values) == (0, [0xDEAD])
    assert (rig.register(R.GuestCrashP0), rig.register(R.GuestCrashP4)) == (0xDEAD, 4)
    assert rig.register(R.GuestCrashCtl) == notify  # what the host reads to learn of the crash


def test_a_reserved_crash_ctl_bit_faults() -> None:
    rig = Rig([Msr(0x4000_0105, True, 1)])
    rig.finish()
    assert rig.actor.faults == 1 and rig.register(R.GuestCrashCtl) == 0


def test_an_unimplemented_msr_without_intercept_faults() -> None:
    rig = Rig([Msr(0xC001_1000), Msr(0xC001_1000, True, 1), Msr(0x3A)])
    rig.finish()
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (3, 0, 3)
    assert rig.actor.values == []


def test_cpuid_intercept_carries_the_default_result() -> None:
    leaf = 0x4000_0000
    rig = Rig([Cpuid(leaf, 3), Cpuid(0)], [(IT.X64Cpuid, INTERCEPT_EXECUTE, leaf)])
    msg = rig.expect(MT.X64CpuidIntercept)
    assert msg.hdr.access_type == ACCESS_EXECUTE
    c = X64_CPUID_INTERCEPT.unpack(msg.raw, msg.body_at)
    assert (c.rax, c.rcx) == (leaf, 3)
    # What the VP would have seen: "Microsoft Hv".
    assert (c.default_rax, c.default_rbx, c.default_rcx, c.default_rdx) == (
        0x4000_000A, 0x7263_694D, 0x666F_736F, 0x7648_2074,
    )  # fmt: skip
    rig.resume(msg, rax=0x4000_0005, rbx=0x6D69_7376, rcx=0, rdx=0)
    rig.finish()
    assert rig.actor.values == [0x4000_0005, 0xD]  # then CPUID 0, not intercepted
    assert rig.register(R.Rbx) == 0x756E_6547  # "Genu"


def _registers(values: dict[int, int]) -> Callable[[Rig, int], Generator[Any, Any, None]]:
    def prepare(rig: Rig, pid: int) -> Generator[Any, Any, None]:
        out = yield from rig.api.set_registers(pid, 0, values)
        assert out.status is S.SUCCESS

    return prepare


def test_cpuid_intercept_carries_the_guests_rdx_and_rbx() -> None:
    leaf = 0x4000_0000
    rig = Rig(
        [Cpuid(leaf)], [(IT.X64Cpuid, INTERCEPT_EXECUTE, leaf)], _registers({R.Rdx: 0x2222, R.Rbx: 0x1111})
    )
    msg = rig.expect(MT.X64CpuidIntercept)
    rig.resume(msg, rax=1)
    c = X64_CPUID_INTERCEPT.unpack(msg.raw, msg.body_at)
    assert (c.rdx, c.rbx) == (0x2222, 0x1111)


def test_global_cpuid_intercepts_every_leaf() -> None:
    rig = Rig([Cpuid(7)], [(IT.X64GlobalCpuid, INTERCEPT_EXECUTE, 0)])
    msg = rig.expect(MT.X64CpuidIntercept)
    assert X64_CPUID_INTERCEPT.unpack(msg.raw, msg.body_at).rax == 7
    rig.resume(msg, rax=0x99)
    rig.finish()
    assert rig.actor.values == [0x99]


def _map(flags: int, gpa_page: int, content: bytes = b"") -> Callable[[Rig, int], Generator[Any, Any, None]]:
    def prepare(rig: Rig, pid: int) -> Generator[Any, Any, None]:
        (page,) = rig.sim.alloc_host_pages(1)
        rig.host.guest_ram[pid] = [*rig.host.guest_ram.get(pid, []), page]
        out = yield from rig.api.map_gpa_pages(pid, gpa_page, [page], flags)
        assert out.status is S.SUCCESS
        if content:
            rig.api.write_guest(pid, gpa_page << 12, content)

    return prepare


def test_guest_ram_reads_and_writes_need_no_parent() -> None:
    rig = Rig([WriteMemory(0x3008, 0x1122_3344_5566_7788), ReadMemory(0x3008), ReadMemory(0x300C, 2)])
    rig.finish()
    assert rig.actor.values == [0x1122_3344_5566_7788, 0x3344]
    assert rig.api.read_guest(rig.pid, 0x3008, 8) == (0x1122_3344_5566_7788).to_bytes(8, "little")
    assert (rig.actor.accesses, rig.actor.intercepted) == (3, 0)


def test_a_read_of_an_unmapped_gpa_is_an_unmapped_gpa_intercept() -> None:
    rig = Rig([ReadMemory(0xFED0_0010, 4)])
    msg = rig.expect(MT.UnmappedGpa)
    assert msg.head.payload_size == X64_INTERCEPT_HEADER.size + X64_MEMORY_INTERCEPT.size
    mem = X64_MEMORY_INTERCEPT.unpack(msg.raw, msg.body_at)
    assert msg.hdr.access_type == ACCESS_READ
    assert (mem.gpa, mem.access_info & 0b11) == (0xFED0_0010, 0)  # no GVA
    rig.resume(msg, rax=0xABCD)
    rig.finish()
    assert rig.actor.values == [0xABCD]


def test_a_write_to_a_read_only_mapping_is_a_gpa_intercept() -> None:
    rig = Rig(
        [ReadMemory(0x4_0010, 1), WriteMemory(0x4_0010, 0x5A, 1), ReadMemory(0x4_0010, 1)],
        prepare=_map(F.READABLE, 0x40, b"\0" * 16 + b"\x11"),
    )
    msg = rig.expect(MT.GpaIntercept)  # only the write
    mem = X64_MEMORY_INTERCEPT.unpack(msg.raw, msg.body_at)
    assert msg.hdr.access_type == ACCESS_WRITE and mem.gpa == 0x4_0010
    rig.resume(msg)
    rig.finish()
    assert rig.actor.values == [0x11, 0x11]  # the parent did not emulate the store
    assert (rig.actor.accesses, rig.actor.intercepted) == (3, 1)


def test_an_inaccessible_mapping_intercepts_reads_too() -> None:
    rig = Rig([ReadMemory(0x4_0000, 8)], prepare=_map(0, 0x40))
    msg = rig.expect(MT.GpaIntercept)
    assert X64_MEMORY_INTERCEPT.unpack(msg.raw, msg.body_at).gpa == 0x4_0000
    rig.resume(msg, rax=1)
    rig.finish()


# --- guest virtual addresses ------------------------------------------------------------------------------
PML4, PDPT, PD, PT = 0x1000, 0x2000, 0x3000, 0x4000
HIGH_HALF = 0xFFFF_8000_0000_0000


def _paging(rig: Rig, pid: int) -> Generator[Any, Any, None]:
    """4-level tables: GVA 0x5000 (and its high-half alias) -> GPA 0x9000; GVA 0x6000 -> GPA
    0x10_0000 (unmapped); GVA 0x7000 not present."""
    for gpa, entry in (
        (PML4, PDPT | 7), (PML4 + 8 * 256, PDPT | 7), (PDPT, PD | 7), (PD, PT | 7),
        (PT + 8 * 5, 0x9000 | 7), (PT + 8 * 6, 0x10_0000 | 7),
    ):  # fmt: skip
        rig.api.write_guest(pid, gpa, entry.to_bytes(8, "little"))
    regs = {R.Cr3: PML4, R.Cr4: 0x20, R.Efer: 0x500, R.Cr0: 0x8001_0011}
    out = yield from rig.api.set_registers(pid, 0, regs)
    assert out.status is S.SUCCESS


def test_gva_accesses_go_through_the_guests_page_tables() -> None:
    rig = Rig(
        [
            WriteMemory(HIGH_HALF + 0x5008, 0xCAFE_F00D, 8, virtual=True),
            ReadMemory(0x5008, 8, virtual=True),
            ReadMemory(0x9008, 4),  # the same bytes by GPA
        ],
        prepare=_paging,
    )
    rig.finish()
    assert rig.actor.values == [0xCAFE_F00D, 0xCAFE_F00D]
    assert rig.api.read_guest(rig.pid, 0x9008, 8) == (0xCAFE_F00D).to_bytes(8, "little")
    pte = int.from_bytes(rig.api.read_guest(rig.pid, PT + 8 * 5, 8), "little")
    assert pte & 0x60 == 0x60  # the walk set accessed and dirty
    assert (rig.actor.intercepted, rig.actor.faults) == (0, 0)


def test_a_not_present_gva_faults_without_an_intercept() -> None:
    rig = Rig(
        [ReadMemory(0x7000, 8, virtual=True), WriteMemory(0x0000_8000_0000_0000, 1, virtual=True)],
        prepare=_paging,
    )
    rig.finish()  # no message: the guest's own kernel handles a #PF
    assert (rig.actor.accesses, rig.actor.intercepted, rig.actor.faults) == (2, 0, 2)
    assert rig.actor.values == []


def test_a_gva_backed_by_an_unmapped_gpa_is_an_intercept_with_both_addresses() -> None:
    rig = Rig([WriteMemory(0x6010, 0x77, 4, virtual=True)], prepare=_paging)
    msg = rig.expect(MT.UnmappedGpa)
    mem = X64_MEMORY_INTERCEPT.unpack(msg.raw, msg.body_at)
    assert msg.hdr.access_type == ACCESS_WRITE
    assert (mem.gva, mem.gpa, mem.access_info & 0b11) == (0x6010, 0x10_0010, 0b11)
    assert msg.hdr.execution_state & 1 << 4  # EFER.LMA: long mode
    assert rig.register(R.Rax) == 0x77  # the value being stored, for the parent's emulation
    rig.resume(msg)
    rig.finish()


def test_removing_an_intercept_lets_the_guest_through() -> None:
    def remove(rig: Rig, pid: int) -> Generator[Any, Any, None]:
        data = INSTALL_INTERCEPT_INPUT.pack(InstallInterceptInput(pid, 0, IT.X64IoPort, 0x60))
        res = yield from rig.api.simple(C.InstallIntercept, data)
        assert res.status is S.SUCCESS

    rig = Rig([IoPort(0x60, 1)], [(IT.X64IoPort, RW, 0x60)], prepare=remove)
    rig.finish()
    assert rig.actor.values == [0xFF]
