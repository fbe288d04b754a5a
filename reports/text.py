"""A short human summary of a run, from its ``summary.json`` content."""

from __future__ import annotations

from typing import Any


def render_summary(summary: dict[str, Any], out_dir: str | None = None) -> str:
    calls = summary["hypercalls"]
    failed = sum(
        n for by_status in calls["by_call"].values() for status, n in by_status.items() if status != "SUCCESS"
    )
    mem = summary["host_memory"]
    lines = [
        f"hvsim {summary['hvsim']}: scenario {summary['scenario']} seed {summary['seed']}: "
        + ("OK" if summary["ok"] else "FAILED"),
        f"  simulated {summary['sim_time_ns'] / 1e6:.3f} ms, {summary['events']} events, "
        f"{calls['total']} hypercalls ({failed} non-SUCCESS), "
        f"{summary['partitions']['created']} partitions created",
        f"  host memory: {mem['host_owned']}/{mem['pages']} pages with the host, {mem['in_pools']} in pools",
        "  checkers: "
        + ", ".join(f"{k} {'ok' if v['ok'] else 'FAILED'}" for k, v in summary["checkers"].items()),
    ]
    faults = summary.get("faults")
    if faults:
        fired = ", ".join(f"{k} x{n}" for k, n in faults["fired"].items()) or "none fired"
        crashes = f"; host crashed at {', '.join(faults['host_crashes'])}" if faults["host_crashes"] else ""
        lines.append(f"  faults ({faults['plan']}): {fired}{crashes}")
    if summary["error"]:
        lines.append(f"  error: {summary['error']}")
    for v in summary["violations"][:5]:
        lines.append(f"  violation [{v['checker']}] at t={v['t']} seq={v['seq']}: {v['message']}")
    wall = summary["wall"]
    if wall["events_per_second"]:
        lines.append(
            f"  wall {wall['seconds']:.3f} s ({wall['events_per_second']} events/s, "
            f"{wall['sim_to_wall_ratio']:.4f} simulated s per wall s)"
        )
    if out_dir:
        lines.append(f"  wrote {out_dir}/events.jsonl and {out_dir}/summary.json")
    return "\n".join(lines)
