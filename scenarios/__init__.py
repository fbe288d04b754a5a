"""hvsim.scenarios: build a world from a seed, drive it with host code, judge the result."""

from hvsim.scenarios.hostapi import Balance, HostApi, RepOutcome
from hvsim.scenarios.simulation import Simulation

__all__ = ["Balance", "HostApi", "RepOutcome", "Simulation"]
