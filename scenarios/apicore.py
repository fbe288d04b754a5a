"""The raw hypercall path every host-side helper uses: one invocation, a simple call, and a rep
call continued to completion (the TLFS continuation rule)."""

from __future__ import annotations

import struct
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import simpy

from hvsim.actors.hvdef import (
    REGISTER_ASSOC,
    VP_REGISTERS_INPUT,
    HvStatus,
    HypercallCode,
    RegisterAssoc,
    VpRegistersInput,
    control,
)
from hvsim.actors.hypercall import HypercallRequest, HypercallResult
from hvsim.scenarios.simulation import Simulation

C = HypercallCode
_U32 = struct.Struct("<I")


class RepOutcome(NamedTuple):
    """A rep call driven to completion (or to its first error)."""

    status: HvStatus
    reps_completed: int
    output: bytes
    #: How many invocations it took (continuations + 1).
    invocations: int


class ApiCore:
    """Hypercalls issued by partition *caller* (default: the root) on its VP *vp*."""

    def __init__(self, sim: Simulation, *, caller: int | None = None, vp: int = 0) -> None:
        self.sim = sim
        self.caller = sim.root_id if caller is None else caller
        self.vp = vp

    # --- raw ---------------------------------------------------------------------------------
    def invoke(self, ctl: int, data: bytes = b"") -> Generator[simpy.Event, Any, HypercallResult]:
        """One invocation: exactly what the hypercall instruction does."""
        return (yield from self.sim.issue(HypercallRequest(self.caller, self.vp, ctl, data)))

    def simple(self, code: int, data: bytes = b"") -> Generator[simpy.Event, Any, HypercallResult]:
        return (yield from self.invoke(control(code), data))

    def rep(
        self, code: int, header: bytes, elements: Sequence[bytes] | int, *, rep_start: int = 0
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        """A rep call over *elements* (or *elements* output-only reps), continued to completion."""
        count = elements if isinstance(elements, int) else len(elements)
        data = header if isinstance(elements, int) else header + b"".join(elements)
        done, invocations = rep_start, 0
        out = bytearray()
        while True:
            res = yield from self.invoke(control(code, rep_count=count, rep_start=done), data)
            invocations += 1
            # Output elements land at absolute positions; only [rep start, reps completed) is defined.
            if not out:
                out = bytearray(len(res.output))
            size = len(res.output) // count if count else 0
            out[done * size : res.reps_completed * size] = res.output[done * size : res.reps_completed * size]
            if res.status is not HvStatus.SUCCESS or res.reps_completed >= count:
                return RepOutcome(res.status, res.reps_completed, bytes(out), invocations)
            done = res.reps_completed

    # --- VP registers (used by several helper groups) -------------------------------------------
    def get_registers(
        self, partition_id: int, vp_index: int, names: Iterable[int]
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, list[int]]]:
        names = list(names)
        header = VP_REGISTERS_INPUT.pack(VpRegistersInput(partition_id, vp_index, 0, bytes(3)))
        out = yield from self.rep(C.GetVpRegisters, header, [_U32.pack(n) for n in names])
        values = [
            int.from_bytes(out.output[16 * i : 16 * i + 16], "little") for i in range(out.reps_completed)
        ]
        return out.status, values

    def set_registers(
        self, partition_id: int, vp_index: int, values: Mapping[int, int]
    ) -> Generator[simpy.Event, Any, RepOutcome]:
        header = VP_REGISTERS_INPUT.pack(VpRegistersInput(partition_id, vp_index, 0, bytes(3)))
        elements = [
            REGISTER_ASSOC.pack(RegisterAssoc(name, bytes(12), v & (2**64 - 1), v >> 64))
            for name, v in values.items()
        ]
        return (yield from self.rep(C.SetVpRegisters, header, elements))
