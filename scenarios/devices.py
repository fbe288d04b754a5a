"""The host's side of intercepts: a small device model, the service that answers intercept
messages, and the ``devices`` scenario (a child that builds page tables, uses GVAs, and touches IO
ports, MSRs, CPUID and MMIO behind intercepts).

The service runs on root VP 0: it takes each intercept message from SINT 0, has the device model
emulate the access, writes the result registers (RAX, and RBX/RCX/RDX for CPUID), advances RIP past
the instruction and clears InterceptSuspend, which resumes the VP.
"""

from __future__ import annotations

import functools
import struct
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    HV_SYNIC_INTERCEPTION_SINT,
    INTERCEPT_EXECUTE,
    INTERCEPT_READ,
    INTERCEPT_WRITE,
    MESSAGE_HEADER,
    X64_CPUID_INTERCEPT,
    X64_INTERCEPT_HEADER,
    X64_IO_PORT_INTERCEPT,
    X64_MEMORY_INTERCEPT,
    X64_MSR_INTERCEPT,
    HypercallCode,
    InterceptType,
    MapGpaFlags,
    MessageType,
    RegisterName,
)
from hvsim.actors.workload import Compute, Cpuid, IoPort, Msr, Op, Program, ReadMemory, WriteMemory
from hvsim.scenarios.host import PartitionSpec, ReferenceHost, new_host
from hvsim.scenarios.library import scenario
from hvsim.scenarios.simulation import Simulation
from hvsim.scenarios.workload import LONG_MODE_EFER, set_own_registers

R = RegisterName
MT = MessageType
Gen = Generator[simpy.Event, Any, Any]
MS = 1_000_000
_INSTALL = struct.Struct("<QIIQ")

SERIAL, SERIAL_LSR = 0x3F8, 0x3FD
LSR_IDLE = 0x60  # THR empty, transmitter idle
SCRATCH_MSR = 0xC001_1000
HVSIM_LEAF = 0x4000_0100
MMIO_TIMER_GPA = 0xFED0_0000
GUEST_RAM_PAGES = 64
#: The guest's tables: PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000; one 2 MiB page maps GPA 0.
PML4, PDPT, PD, DATA = 0x1000, 0x2000, 0x3000, 0x10000
HIGH_HALF = 0xFFFF_8000_0000_0000


@dataclass
class DeviceModel:
    """What the host emulates for a child: a 16550-style serial port (bytes written to THR are
    collected, LSR reads idle), an MSR the hypervisor does not implement (a scratch register), a
    CPUID leaf naming hvsim, and an MMIO timer page reading simulated microseconds."""

    serial: bytearray = field(default_factory=bytearray)
    msrs: dict[int, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def io(self, port: int, write: bool, value: int) -> int:
        self.counts["io"] += 1
        if write and port == SERIAL:
            self.serial.append(value & 0xFF)
        return LSR_IDLE if port == SERIAL_LSR else 0

    def msr(self, index: int, write: bool, value: int) -> int:
        self.counts["msr"] += 1
        if write:
            self.msrs[index] = value
        return self.msrs.get(index, 0)

    def cpuid(self, leaf: int, default: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        self.counts["cpuid"] += 1
        if leaf == HVSIM_LEAF:
            return 0x4000_0100, 0x6D69_7376, 0x0000_6868, 0  # "vsim" "hh": a signature of our own
        return default

    def mmio(self, gpa: int, write: bool, now_ns: int) -> int:
        self.counts["mmio"] += 1
        return 0 if write else now_ns // 1000


def serve_intercepts(host: ReferenceHost, devices: DeviceModel, until_ns: int) -> Gen:
    """Answer intercept messages on the host's VP until *until_ns*."""
    sim = host.sim
    while sim.now_ns < until_ns:
        message = yield from host.take_message(HV_SYNIC_INTERCEPTION_SINT, until_ns - sim.now_ns)
        if message is None:
            return
        yield from handle_intercept(host, devices, message)


def handle_intercept(host: ReferenceHost, devices: DeviceModel, message: bytes) -> Gen:
    head = MESSAGE_HEADER.unpack(message)
    partition = head.origination_id
    hdr = X64_INTERCEPT_HEADER.unpack(message, 16)
    body = 16 + X64_INTERCEPT_HEADER.size
    write = hdr.access_type == 1
    regs: dict[int, int] = {}
    if head.message_type == MT.X64IoPortIntercept:
        io = X64_IO_PORT_INTERCEPT.unpack(message, body)
        result = devices.io(io.port, write, io.rax)
        if not write:
            regs[R.Rax] = result
    elif head.message_type == MT.X64MsrIntercept:
        msr = X64_MSR_INTERCEPT.unpack(message, body)
        result = devices.msr(msr.msr, write, (msr.rdx << 32) | msr.rax)
        if not write:
            regs[R.Rax], regs[R.Rdx] = result & 0xFFFF_FFFF, result >> 32
    elif head.message_type == MT.X64CpuidIntercept:
        c = X64_CPUID_INTERCEPT.unpack(message, body)
        eax, ebx, ecx, edx = devices.cpuid(
            c.rax, (c.default_rax, c.default_rbx, c.default_rcx, c.default_rdx)
        )
        regs.update({R.Rax: eax, R.Rbx: ebx, R.Rcx: ecx, R.Rdx: edx})
    elif head.message_type in (MT.UnmappedGpa, MT.GpaIntercept):
        mem = X64_MEMORY_INTERCEPT.unpack(message, body)
        result = devices.mmio(mem.gpa, write, host.sim.now_ns)
        if not write:
            regs[R.Rax] = result
    else:
        devices.counts["unknown"] += 1
    regs[R.Rip] = hdr.rip + (hdr.instruction_length_cr8 & 0xF)
    regs[R.InterceptSuspend] = 0  # resume the VP
    out = yield from host.api.set_registers(partition, hdr.vp_index, regs)
    host.expect(out.status, f"SetVpRegisters({partition}, {hdr.vp_index}, intercept result)")


def devices_guest(loops: int | None = None) -> Program:
    """Build 4-level page tables (one 2 MiB page for GPA 0, mapped low and in the high half), turn
    on long-mode paging, then loop: store and load through GVAs, write "hvsim\\n" to the serial
    port, read its LSR, use the scratch MSR, CPUID (intercepted and not), read the MMIO timer."""
    large_page = 0x83  # present, writable, 2 MiB
    setup: list[Op] = [
        WriteMemory(PML4, PDPT | 3), WriteMemory(PML4 + 8 * 256, PDPT | 3),
        WriteMemory(PDPT, PD | 3), WriteMemory(PD, large_page),
        set_own_registers({R.Cr3: PML4, R.Cr4: 0x20, R.Efer: LONG_MODE_EFER | 0x800}),
        set_own_registers({R.Cr0: 0x8001_0031}),  # PG | WP | NE | ET | PE
    ]  # fmt: skip
    loop: list[Op] = [Compute(50_000), WriteMemory(HIGH_HALF + DATA, 0x1234_5678, 8, virtual=True)]
    loop += [ReadMemory(DATA, 8, virtual=True)]
    loop += [IoPort(SERIAL, 1, True, b) for b in b"hvsim\n"]
    loop += [IoPort(SERIAL_LSR, 1), Msr(SCRATCH_MSR, True, 0xABCD), Msr(SCRATCH_MSR)]
    loop += [Cpuid(HVSIM_LEAF), Cpuid(0), ReadMemory(MMIO_TIMER_GPA, 4)]
    return Program(tuple(setup), tuple(loop), name="devices-guest", max_loops=loops)


def prepare_devices(host: ReferenceHost, pid: int) -> Gen:
    """Guest RAM at GPA 0 and the intercepts the device model serves."""
    pages = host.sim.alloc_host_pages(GUEST_RAM_PAGES)
    host.guest_ram[pid] = pages
    flags = MapGpaFlags.READABLE | MapGpaFlags.WRITABLE | MapGpaFlags.EXECUTABLE
    out = yield from host.with_memory(
        lambda: host.api.map_gpa_pages(pid, 0, pages, flags), pid, "MapGpaPages"
    )
    host.expect(out.status, "MapGpaPages(guest RAM)")
    rw = INTERCEPT_READ | INTERCEPT_WRITE
    for kind, access, param in (
        (InterceptType.X64IoPort, rw, SERIAL),
        (InterceptType.X64IoPortRange, rw, (SERIAL + 1) | (SERIAL + 7) << 16),
        (InterceptType.X64MsrIndex, rw, SCRATCH_MSR),
        (InterceptType.X64Cpuid, INTERCEPT_EXECUTE, HVSIM_LEAF),
    ):
        data = _INSTALL.pack(pid, access, kind, param)
        install = functools.partial(host.api.simple, HypercallCode.InstallIntercept, data)
        res = yield from host.with_memory(install, pid, "InstallIntercept")
        host.expect(res.status, f"InstallIntercept({kind.name})")


def devices_session(sim: Simulation, run_ns: int, loops: int | None = None) -> Gen:
    host = new_host(sim)
    devices = DeviceModel()
    out = yield from host.api.enable_synic(
        HV_PARTITION_ID_SELF, host.api.vp, {HV_SYNIC_INTERCEPTION_SINT: 0x32}
    )
    host.expect(out.status, "SetVpRegisters(root SynIC)")
    end = sim.limits.cap("run_ns", run_ns)
    server = sim.process(serve_intercepts(host, devices, end))
    guest = devices_guest(loops)
    pid = yield from host.boot(PartitionSpec(vps=1, program=lambda _i: guest, prepare=prepare_devices))
    yield server
    actor = sim.vp_actor(pid, 0)
    sim.counters.update(
        serial_bytes=len(devices.serial),
        guest_accesses=actor.accesses if actor else 0,
        guest_intercepted=actor.intercepted if actor else 0,
        guest_faults=actor.faults if actor else 0,
        **{f"emulated_{k}": v for k, v in sorted(devices.counts.items())},
    )
    yield from host.teardown(pid)
    sim.free_host_pages(host.guest_ram.pop(pid))


@scenario(
    "devices",
    "a child builds its page tables and touches IO ports, an MSR, CPUID and MMIO behind intercepts "
    "the reference host emulates",
    duration_ns=50 * MS,
)
def devices(sim: Simulation) -> Gen:
    yield from devices_session(sim, 50 * MS)
