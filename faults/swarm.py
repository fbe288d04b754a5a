"""Swarm testing: a random plan per seed -- a random subset of fault kinds, targets and intensities.

Swarm testing (Groce et al., 2012) finds more bugs than one plan with every fault on at once: each
seed leaves some faults out, so the ones it keeps can drive the system into corners they would not
reach while others interfere. Every drawn plan is an ordinary :class:`FaultPlan`: write it with
``to_toml()`` and it replays to the identical event log.
"""

from __future__ import annotations

import random
from typing import Any

from hvsim.faults.plan import FAULT_KINDS, REP_CALLS, TRANSIENT_STATUSES, FaultPlan

#: Host steps a swarm may crash at (the reference host's teardown and boot steps).
CRASH_STEPS = (
    "boot.initialized",
    "teardown.stopped",
    "teardown.finalized",
    "teardown.withdrew",
    "teardown.drained",
)


def _knobs(kind: str, rng: random.Random, heal_at_ns: int) -> dict[str, Any]:
    # Half the faults are on from the start: scenarios do most of their allocating early.
    start = 0 if rng.random() < 0.5 else rng.randrange(0, max(1, heal_at_ns // 2))
    knobs: dict[str, Any] = {"kind": kind, "start_ns": start}
    if kind == "pool.cap":
        knobs |= {"target": "child", "max_in_use_pages": rng.choice([160, 200, 300, 500])}
    elif kind == "pool.fail_nth":
        knobs |= {
            "target": rng.choice(["any", "child", "root"]),
            "n": rng.randint(1, 8),
            "every": rng.random() < 0.5,
        }
    elif kind == "pool.fail_probability":
        knobs |= {"target": rng.choice(["any", "child"]), "probability": round(rng.uniform(0.05, 0.6), 3)}
    elif kind == "pool.refuse_large":
        knobs |= {"min_pages": rng.choice([32, 64, 128])}
    elif kind == "pool.drain":
        knobs |= {"pages_per_step": rng.randint(1, 32), "step_ns": rng.choice([50_000, 200_000, 1_000_000])}
    elif kind == "hypercall.partial":
        calls = rng.sample(REP_CALLS, rng.randint(1, len(REP_CALLS)))
        knobs |= {
            "calls": sorted(calls),
            "max_reps": rng.randint(1, 16),
            "probability": round(rng.uniform(0.1, 1), 3),
        }
    elif kind == "hypercall.latency":
        knobs |= {
            "probability": round(rng.uniform(0.01, 0.2), 3),
            "extra_ns": rng.choice([10_000, 200_000, 2_000_000]),
        }
    elif kind == "hypercall.transient":
        call = rng.choice(sorted(TRANSIENT_STATUSES))
        status = rng.choice(sorted(TRANSIENT_STATUSES[call]))
        knobs |= {"calls": [call], "status": status, "probability": round(rng.uniform(0.05, 0.5), 3)}
    elif kind == "host.crash":
        knobs |= {
            "step": rng.choice(CRASH_STEPS),
            "occurrence": rng.randint(1, 3),
            "restart_after_ns": rng.choice([0, 100_000, 2_000_000]),
        }
        knobs["start_ns"] = 0
    elif kind == "vp.pause":
        knobs |= {"vp": rng.randint(0, 2), "duration_ns": rng.choice([100_000, 2_000_000, 10_000_000])}
    elif kind == "vp.crash":
        knobs |= {"vp": rng.randint(0, 3)}
    elif kind == "vp.slow":
        knobs |= {"factor": rng.choice([2.0, 5.0, 20.0])}
    elif kind == "message.delay":
        knobs |= {"probability": round(rng.uniform(0.05, 1), 3), "extra_ns": rng.choice([10_000, 1_000_000])}
    elif kind == "message.reorder":
        knobs |= {"window_ns": rng.choice([5_000, 50_000, 500_000])}
    elif kind in ("message.drop", "message.duplicate"):
        knobs |= {"probability": round(rng.uniform(0.01, 0.3), 3)}
    elif kind == "synic.busy_slot":
        knobs |= {"end_ns": knobs["start_ns"] + rng.choice([100_000, 1_000_000, 5_000_000])}
    elif kind == "port.exhaust_buffers":
        knobs |= {"buffers": rng.randint(0, 4)}
    return knobs


def swarm_plan(rng: random.Random, *, kinds: list[str] | None = None, name: str = "swarm") -> FaultPlan:
    """Draw a plan: each fault kind is in with probability 1/2 (at least one is), with random knobs."""
    pool = sorted(kinds or FAULT_KINDS)
    chosen = [k for k in pool if rng.random() < 0.5] or [rng.choice(pool)]
    heal_at_ns = rng.choice([5_000_000, 15_000_000, 40_000_000])
    faults = [_knobs(kind, rng, heal_at_ns) for kind in chosen]
    return FaultPlan.model_validate({"name": name, "heal_at_ns": heal_at_ns, "fault": faults})
