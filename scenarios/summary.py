"""``summary.json``: what ran, what it did, where memory ended up, and what the checkers said."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from hvsim.actors.core import CALL_NAMES
from hvsim.actors.hvdef import HvStatus
from hvsim.actors.memory import HOST
from hvsim.scenarios.checkers import Violation, message_counts
from hvsim.scenarios.simulation import Simulation

if TYPE_CHECKING:
    from hvsim.scenarios.library import Scenario


def _version() -> str:
    try:
        return version("hvsim")
    except PackageNotFoundError:
        return "unknown"


def build_summary(
    sc: Scenario,
    sim: Simulation,
    wall_s: float,
    violations: list[Violation],
    error: str | None,
    faults: dict[str, Any] | None = None,
    records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    hv = sim.hv
    by_call: dict[str, dict[str, int]] = {}
    for (code, status), count in sorted(hv.call_counts.items()):
        name = CALL_NAMES.get(code, f"0x{code:04x}")
        status_name = HvStatus(status).name
        by_call.setdefault(name, {})[status_name] = count
    total_calls = sum(hv.call_counts.values())
    created = hv.next_partition_id - hv.config.first_partition_id - 1  # the root is not "created"
    mem = hv.memory
    host_owned = mem.owner.count(HOST)
    checker_names = [
        "page-conservation",
        "pool-balance",
        "gpa-mappings",
        "message-accounting",
        "message-progress",
        "state-transitions",
        "no-use-after-delete",
    ]
    if sc.expect_all_reclaimed:
        checker_names += ["all-reclaimed", "host-pages-returned"]
    if faults is not None:
        checker_names += ["host-finishes", "vps-run"]
    events = sim.log.seq
    return {
        "hvsim": _version(),
        "scenario": sc.name,
        "description": sc.description,
        "seed": sim.seed,
        "ok": error is None and not violations,
        "error": error,
        "sim_time_ns": sim.now_ns,
        "events": events,
        "hypercalls": {"total": total_calls, "by_call": by_call},
        "partitions": {
            "created": created,
            "live": sorted(pid for pid in hv.partitions if pid != hv.root.id),
        },
        "pools": {
            str(pid): {"state": p.state.name, "available": len(p.pool.available), "in_use": p.pool.in_use}
            for pid, p in sorted(hv.partitions.items())
        },
        "host_memory": {
            "pages": mem.pages,
            "host_owned": host_owned,
            "host_free": mem.host_free,
            "in_pools": mem.pages - host_owned,
        },
        "checkers": {
            name: {"ok": not [v for v in violations if v.checker == name]} for name in checker_names
        },
        "messages": message_counts(records, hv) if records is not None else None,
        "counters": dict(sorted(sim.counters.items())),
        "violations": [v.to_json() for v in violations],
        "faults": faults,
        # The only part of a run that is not a function of the seed.
        "wall": {
            "seconds": round(wall_s, 6),
            "events_per_second": round(events / wall_s) if wall_s > 0 else None,
            "sim_to_wall_ratio": round(sim.now_ns / 1e9 / wall_s, 6) if wall_s > 0 else None,
        },
    }
