"""Typed host-side helpers over the hypercall ABI (generator API).

Every helper builds the TLFS input block with ``hvdef`` layouts, issues it through the same path as
:meth:`Simulation.hypercall` and decodes the output. Rep helpers follow the TLFS continuation rule:
while a call returns SUCCESS with fewer reps than asked, re-issue with rep start = reps completed.

Use inside a process (``status, pid = yield from api.create_partition()``) or from plain code with
``sim.run_process(api.create_partition())``.
"""

from __future__ import annotations

import struct
from collections.abc import Generator, Sequence
from typing import Any, NamedTuple

import simpy

from hvsim.actors.hvdef import (
    CREATE_PARTITION_INPUT,
    CREATE_VP_INPUT,
    DELETE_VP_INPUT,
    GET_NEXT_CHILD_PARTITION_INPUT,
    GET_PARTITION_PROPERTY_INPUT,
    HV_COMPATIBILITY_21_H2,
    HV_PARTITION_ID_SELF,
    MEMORY_BALANCE_OUTPUT,
    MEMORY_POOL_INPUT,
    PARTITION_ID_INPUT,
    SET_PARTITION_PROPERTY_INPUT,
    CreatePartitionInput,
    CreateVpInput,
    DeleteVpInput,
    GetNextChildPartitionInput,
    GetPartitionPropertyInput,
    HvStatus,
    HypercallCode,
    MemoryPoolInput,
    PartitionIdInput,
    SetPartitionPropertyInput,
)
from hvsim.scenarios.apicore import ApiCore, RepOutcome
from hvsim.scenarios.gpaapi import GpaApi
from hvsim.scenarios.portapi import PortApi

C = HypercallCode
Gen = Generator[simpy.Event, Any, Any]
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
#: The most GPA page numbers one DepositMemory can carry ((4096 - 8) / 8, Linux HV_DEPOSIT_MAX).
DEPOSIT_MAX = 511
#: The most pages one WithdrawMemory can return (Linux HV_WITHDRAW_BATCH_SIZE).
WITHDRAW_MAX = 512


class Balance(NamedTuple):
    pages_available: int
    pages_in_use: int


class HostApi(PortApi, GpaApi, ApiCore):
    """Hypercalls issued by partition *caller* (default: the root) on its VP *vp*."""

    # --- partitions ------------------------------------------------------------------------------
    def create_partition(
        self,
        *,
        flags: int = 0,
        proximity: int = 0,
        compatibility_version: int = HV_COMPATIBILITY_21_H2,
        disabled_features: tuple[int, int] = (0, 0),
        disabled_xsave: int = 0,
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, int]]:
        data = CREATE_PARTITION_INPUT.pack(
            CreatePartitionInput(
                flags, proximity, compatibility_version, 0, *disabled_features, disabled_xsave, 0
            )
        )
        res = yield from self.simple(C.CreatePartition, data)
        return res.status, _U64.unpack_from(res.output)[0] if res.status is HvStatus.SUCCESS else 0

    def _by_id(self, code: int, partition_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        res = yield from self.simple(code, PARTITION_ID_INPUT.pack(PartitionIdInput(partition_id)))
        return res.status

    def initialize_partition(self, partition_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        return (yield from self._by_id(C.InitializePartition, partition_id))

    def finalize_partition(self, partition_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        return (yield from self._by_id(C.FinalizePartition, partition_id))

    def delete_partition(self, partition_id: int) -> Generator[simpy.Event, Any, HvStatus]:
        return (yield from self._by_id(C.DeletePartition, partition_id))

    def set_property(self, partition_id: int, code: int, value: int) -> Generator[simpy.Event, Any, HvStatus]:
        data = SET_PARTITION_PROPERTY_INPUT.pack(SetPartitionPropertyInput(partition_id, code, 0, value))
        return (yield from self.simple(C.SetPartitionProperty, data)).status

    def get_property(self, partition_id: int, code: int) -> Generator[simpy.Event, Any, tuple[HvStatus, int]]:
        data = GET_PARTITION_PROPERTY_INPUT.pack(GetPartitionPropertyInput(partition_id, code, 0))
        res = yield from self.simple(C.GetPartitionProperty, data)
        return res.status, _U64.unpack_from(res.output)[0]

    def next_child(
        self, previous: int = 0, parent: int = HV_PARTITION_ID_SELF
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, int]]:
        data = GET_NEXT_CHILD_PARTITION_INPUT.pack(GetNextChildPartitionInput(parent, previous))
        res = yield from self.simple(C.GetNextChildPartition, data)
        return res.status, _U64.unpack_from(res.output)[0]

    def children(self) -> Generator[simpy.Event, Any, list[int]]:
        """Enumerate the caller's children with GetNextChildPartition (creation order)."""
        found: list[int] = []
        prev = 0
        while True:
            status, nxt = yield from self.next_child(prev)
            if status is not HvStatus.SUCCESS or nxt == 0:
                return found
            found.append(nxt)
            prev = nxt

    # --- memory ------------------------------------------------------------------------------
    def deposit(self, partition_id: int, pages: Sequence[int]) -> Generator[simpy.Event, Any, RepOutcome]:
        """DepositMemory *pages* (any number: split into 511-page calls, each continued)."""
        done, invocations = 0, 0
        # An empty list still makes one call (rep count 0), answered as the ABI says.
        for start in range(0, len(pages), DEPOSIT_MAX) or [0]:
            chunk = pages[start : start + DEPOSIT_MAX]
            out = yield from self.rep(
                C.DepositMemory, PARTITION_ID_INPUT.pack(PartitionIdInput(partition_id)),
                [_U64.pack(p) for p in chunk],
            )  # fmt: skip
            done += out.reps_completed
            invocations += out.invocations
            if out.status is not HvStatus.SUCCESS:
                return RepOutcome(out.status, done, b"", invocations)
        return RepOutcome(HvStatus.SUCCESS, done, b"", invocations)

    def withdraw(
        self, partition_id: int, count: int = WITHDRAW_MAX, proximity: int = 0
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, list[int]]]:
        """One WithdrawMemory of up to *count* (<= 512) pages, continued; the returned page numbers."""
        header = MEMORY_POOL_INPUT.pack(MemoryPoolInput(partition_id, proximity))
        out = yield from self.rep(C.WithdrawMemory, header, count)
        pages = [p for (p,) in _U64.iter_unpack(out.output[: 8 * out.reps_completed])]
        return out.status, pages

    def balance(
        self, partition_id: int, proximity: int = 0
    ) -> Generator[simpy.Event, Any, tuple[HvStatus, Balance]]:
        data = MEMORY_POOL_INPUT.pack(MemoryPoolInput(partition_id, proximity))
        res = yield from self.simple(C.GetMemoryBalance, data)
        return res.status, Balance(*MEMORY_BALANCE_OUTPUT.unpack(res.output))

    # --- VPs ---------------------------------------------------------------------------------
    def create_vp(
        self, partition_id: int, vp_index: int, *, flags: int = 0
    ) -> Generator[simpy.Event, Any, HvStatus]:
        data = CREATE_VP_INPUT.pack(CreateVpInput(partition_id, vp_index, bytes(3), 0, 0, 0, flags))
        return (yield from self.simple(C.CreateVp, data)).status

    def delete_vp(self, partition_id: int, vp_index: int) -> Generator[simpy.Event, Any, HvStatus]:
        data = DELETE_VP_INPUT.pack(DeleteVpInput(partition_id, vp_index, 0))
        return (yield from self.simple(C.DeleteVp, data)).status


__all__ = ["DEPOSIT_MAX", "WITHDRAW_MAX", "Balance", "HostApi", "RepOutcome"]
