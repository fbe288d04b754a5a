"""hvsim.actors: the modelled system (hypervisor, partitions, VPs) as pykka actors on a SimPy clock.

Imports stdlib, simpy, pykka, structlog and orjson only; never ``hvsim.faults``, ``hvsim.scenarios``
or ``hvsim.reports`` (checked by tests/test_layout.py).
"""

from hvsim.actors.config import CallCost, HvConfig, PageCosts
from hvsim.actors.core import CALL_TABLE, Hypervisor
from hvsim.actors.hvdef import (
    Control,
    CreationFlags,
    HvStatus,
    HypercallCode,
    PartitionPrivilege,
    PropertyCode,
    RegisterName,
    control,
)
from hvsim.actors.hypercall import HypercallRequest, HypercallResult
from hvsim.actors.model import Partition, PartitionState, Vp
from hvsim.actors.runtime import Deferred, SimActor, SimFuture, SimRuntime, SimulationDeadlock
from hvsim.actors.trace import EventLog
from hvsim.actors.workload import Compute, Halt, Hypercall, Program

__all__ = [
    "CALL_TABLE",
    "CallCost",
    "Compute",
    "Control",
    "CreationFlags",
    "Deferred",
    "EventLog",
    "Halt",
    "HvConfig",
    "HvStatus",
    "Hypercall",
    "HypercallCode",
    "HypercallRequest",
    "HypercallResult",
    "Hypervisor",
    "PageCosts",
    "Partition",
    "PartitionPrivilege",
    "PartitionState",
    "Program",
    "PropertyCode",
    "RegisterName",
    "SimActor",
    "SimFuture",
    "SimRuntime",
    "SimulationDeadlock",
    "Vp",
    "control",
]
