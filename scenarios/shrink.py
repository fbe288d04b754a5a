"""Shrinking a failure: the smallest fault plan that still makes the same checker fail.

Delta debugging (Zeller's ddmin) over the plan's faults: drop chunks of faults, keep any smaller
plan under which the run still fails the same way (same outcome class and checker, or the same host
error step), until no single fault can go. The seed, scenario and host stay as they are.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvsim.faults import FaultPlan, parse_plan
from hvsim.scenarios.chaos import Campaign, repro_command
from hvsim.scenarios.hostload import load_host_class
from hvsim.scenarios.runner import RunResult, run_scenario, write_outputs


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
    events_before: int
    events_after: int
    runs: int
    seconds: float
    folder: Path


def shrink_artifact(artifact: Path, out: Path) -> Shrunk:
    start = time.perf_counter()
    manifest = json.loads((artifact / "manifest.json").read_text())
    campaign = Campaign(**manifest["campaign"])
    seed = int(manifest["seed"])
    plan_file = artifact / "plan.toml"
    plan = parse_plan(plan_file.read_text(), str(plan_file)) if plan_file.exists() else FaultPlan()
    host_class = load_host_class(campaign.host) if campaign.host else None
    runs = [0]

    def run(faults: list[Any]) -> RunResult:
        runs[0] += 1
        candidate = plan.model_copy(update={"fault": faults})
        return run_scenario(
            campaign.scenario, seed, plan=candidate, host_class=host_class, check_every_ns=None
        )

    first = run(plan.faults)
    target = signature(first)
    if target is None:
        raise ValueError(f"{artifact}: the run passes now; nothing to shrink")
    faults = plan.faults
    best = first
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
    minimal = plan.model_copy(update={"fault": faults})  # same name: the recorded log says it
    write_outputs(best, out)
    plan_path = None
    if minimal.faults:
        plan_path = out / "plan.toml"
        plan_path.write_text(minimal.to_toml())
    shrunk_manifest = {
        "campaign": manifest["campaign"],
        "seed": seed,
        "repro": repro_command(campaign, seed, plan_path),
        "shrunk_from": str(artifact),
        "signature": target,
    }
    (out / "manifest.json").write_text(json.dumps(shrunk_manifest, indent=2, sort_keys=True) + "\n")
    return Shrunk(
        target,
        len(plan.faults),
        len(faults),
        len(first.sim.log.lines),
        len(best.sim.log.lines),
        runs[0],
        time.perf_counter() - start,
        out,
    )
