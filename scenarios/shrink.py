"""Shrinking a failure: the smallest fault plan and workload that still make the same check fail.

1. The run is already cut at the failure: a safety violation stops it at the quiescent point that
   found it, a host error where the host gave up.
2. Delta debugging (Zeller's ddmin) over the plan's faults: drop chunks of faults, keep any smaller
   plan under which the run still fails the same way (same outcome class and checker, or the same
   host error step), until no single fault can go.
3. The workload, one :class:`Limits` knob at a time (partitions, VPs per partition, guest loop
   iterations -- hence hypercalls and messages --, run time): the smallest cap, tried from the
   bottom up, under which the run still fails the same way with fewer events.

The seed, scenario and host stay as they are; the minimal artifact records plan and limits, and
replays to its own event log exactly.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hvsim.faults import FaultPlan, parse_plan
from hvsim.scenarios.chaos import Campaign, repro_command
from hvsim.scenarios.hostload import load_host_class
from hvsim.scenarios.runner import RunResult, run_scenario, write_outputs
from hvsim.scenarios.simulation import LIMIT_NAMES, Limits


def signature(result: RunResult) -> str | None:
    """How a run failed, coarsely enough to survive shrinking; None if it passed."""
    if result.ok:
        return None
    if result.error is not None:
        # "HostError: DeletePartition(2): OPERATION_DENIED (0x0008): ..." without ids and prose
        text = re.sub(r"\(\d+(?:, \d+)*\)", "", result.error)
        return "host-error: " + ":".join(text.split(":")[:3]).strip()
    return "violation: " + result.violations[0].checker


@dataclass
class Shrunk:
    signature: str
    faults_before: int
    faults_after: int
    limits: dict[str, int]
    events_before: int
    events_after: int
    runs: int
    seconds: float
    folder: Path


#: Workload knobs in the order they are shrunk: run time first, since it decides what a try costs.
SHRINK_ORDER = ("run_ns", "partitions", "guest_loops", "vps")
assert sorted(SHRINK_ORDER) == sorted(LIMIT_NAMES)


def _candidates(name: str, first: RunResult) -> list[int]:
    """Caps to try for one workload knob, smallest first (the first that still fails wins)."""
    if name == "run_ns":
        return [first.sim.now_ns >> shift for shift in (12, 9, 6, 4, 2, 1)]
    if name == "guest_loops":
        return [0, 1, 2, 4, 8, 16, 64]
    return [1, 2, 3, 4, 6, 8, 12, 16]


def shrink_artifact(artifact: Path, out: Path) -> Shrunk:
    start = time.perf_counter()
    manifest = json.loads((artifact / "manifest.json").read_text())
    campaign = Campaign(**manifest["campaign"])
    seed = int(manifest["seed"])
    plan_file = artifact / "plan.toml"
    plan = parse_plan(plan_file.read_text(), str(plan_file)) if plan_file.exists() else FaultPlan()
    host_class = load_host_class(campaign.host) if campaign.host else None
    limits = Limits(**manifest.get("limits", {}))
    runs = [0]

    def run(faults: list[Any], caps: Limits | None = None) -> RunResult:
        runs[0] += 1
        candidate = plan.model_copy(update={"fault": faults})
        return run_scenario(
            campaign.scenario, seed, plan=candidate, host_class=host_class, limits=caps or limits
        )

    first = run(plan.faults)
    target = signature(first)
    if target is None:
        raise ValueError(f"{artifact}: the run passes now; nothing to shrink")
    faults, best = plan.faults, first

    def shrink_workload() -> None:
        """Each knob in turn: the smallest cap that still fails the same way, with fewer events."""
        nonlocal limits, best
        for name in SHRINK_ORDER:
            for cap in _candidates(name, first):
                current = getattr(limits, name)
                if current is not None and cap >= current:
                    break
                trial = replace(limits, **{name: cap})
                result = run(faults, trial)
                if signature(result) == target and len(result.sim.log.lines) < len(best.sim.log.lines):
                    limits, best = trial, result
                    break

    # The workload first: a shorter run makes every later try cheaper. Then the plan, then the
    # workload again (a fault that went may have been what needed the bigger workload).
    shrink_workload()
    granularity = 2
    while len(faults) >= 2:
        chunk = max(1, len(faults) // granularity)
        reduced = False
        for i in range(0, len(faults), chunk):
            complement = faults[:i] + faults[i + chunk :]
            result = run(complement)
            if signature(result) == target:
                faults, best, reduced = complement, result, True
                granularity = max(granularity - 1, 2)
                break
        if not reduced:
            if chunk == 1:
                break
            granularity = min(len(faults), granularity * 2)
    if faults:  # a single remaining fault may still be unnecessary
        result = run([])
        if signature(result) == target:
            faults, best = [], result
    shrink_workload()
    minimal = plan.model_copy(update={"fault": faults})  # same name: the recorded log says it
    write_outputs(best, out)
    plan_path = None
    if minimal.faults:
        plan_path = out / "plan.toml"
        plan_path.write_text(minimal.to_toml())
    shrunk_manifest = {
        "campaign": manifest["campaign"],
        "seed": seed,
        "limits": limits.to_json(),
        "repro": repro_command(campaign, seed, plan_path, limits),
        "shrunk_from": str(artifact),
        "signature": target,
    }
    (out / "manifest.json").write_text(json.dumps(shrunk_manifest, indent=2, sort_keys=True) + "\n")
    return Shrunk(
        target,
        len(plan.faults),
        len(faults),
        limits.to_json(),
        len(first.sim.log.lines),
        len(best.sim.log.lines),
        runs[0],
        time.perf_counter() - start,
        out,
    )
