"""hvsim.faults: fault injectors that plug into the actors' seams, and the plans that drive them.

A :class:`FaultPlan` (TOML or Python) lists faults; :class:`FaultInjector` implements the
hypervisor's ``Interposer`` seam (``hvsim.actors.seams``) and runs timed faults; ``swarm_plan``
draws a random plan per seed. ``hvsim.scenarios.faulting`` composes them with a simulation.
"""

from hvsim.faults.inject import FaultInjector, HostCrashed
from hvsim.faults.plan import FAULT_KINDS, FaultPlan, PlanError, load_plan, parse_plan
from hvsim.faults.swarm import swarm_plan

__all__ = [
    "FAULT_KINDS",
    "FaultInjector",
    "FaultPlan",
    "HostCrashed",
    "PlanError",
    "load_plan",
    "parse_plan",
    "swarm_plan",
]
