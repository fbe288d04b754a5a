"""What a run did, computed in one pass over its event log: the content of ``report.json``.

Everything here is a function of the records and the summary (sorted keys, integer ns, rates rounded
to 3 decimals), so the same run folder always gives the same numbers. Percentiles are nearest-rank
(:func:`hvsim.reports.events.percentile`): always a latency that some call really had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hvsim.actors.hvdef import HypercallCode
from hvsim.reports.events import EVENTS_FILE, Run, bad_record, percentile

__all__ = ["MAX_BINS", "Analysis", "FaultMark", "analyze", "bin_width", "latency_stats"]

#: Throughput and latency-over-time charts use at most this many time bins.
MAX_BINS = 100
INTERCEPT_NOTE = (
    "Intercept round trips: none in this log -- hvsim does not model intercepts yet "
    "(InstallIntercept answers INVALID_HYPERCALL_CODE), so there is nothing to time."
)
_CALL_NAMES = {int(c): c.name for c in HypercallCode}
_RECORD_KEYS = {"t", "seq", "event"}


@dataclass(frozen=True)
class FaultMark:
    """A fault drawn over the time charts: an instant (``dur_ns`` 0) or a band."""

    t: int
    dur_ns: int
    kind: str


@dataclass
class Analysis:
    """``data`` is report.json; the rest are the series the charts draw."""

    data: dict[str, Any]
    bin_ns: int
    call_bins: list[int]
    latency_bins: list[tuple[int, int, int] | None]
    pools: dict[int, list[tuple[int, int, int]]]
    marks: list[FaultMark]
    window: tuple[int, int] | None
    call_times: list[int]

    def peak_per_ms(self, width: int) -> float:
        """The most hypercalls started in one *width*-ns bin, per ms (to compare runs on one grid)."""
        counts: dict[int, int] = {}
        for t in self.call_times:
            counts[t // width] = counts.get(t // width, 0) + 1
        return round(max(counts.values(), default=0) * 1_000_000 / width, 3)


@dataclass
class _Vp:
    created: int
    since: int | None = None
    run_ns: int = 0
    periods: int = 0
    end: int | None = None

    def stop(self, t: int) -> None:
        if self.since is not None:
            self.run_ns += t - self.since
            self.periods += 1
            self.since = None


@dataclass
class _Acc:
    """Running state of the one pass."""

    costs: dict[str, list[int]] = field(default_factory=dict)
    non_success: dict[str, int] = field(default_factory=dict)
    call_t: list[int] = field(default_factory=list)
    call_cost: list[int] = field(default_factory=list)
    faulted_calls: dict[str, int] = field(default_factory=dict)
    orphaned: dict[str, int] = field(default_factory=dict)
    spans: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"boot": [], "teardown": []})
    open_spans: dict[tuple[str, int], tuple[int, int | None]] = field(default_factory=dict)
    vps: dict[tuple[int, int], _Vp] = field(default_factory=dict)
    gone_vps: list[tuple[tuple[int, int], _Vp]] = field(default_factory=list)  # partition deleted
    pools: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    fired: list[dict[str, Any]] = field(default_factory=list)
    marks: list[FaultMark] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    healed: dict[str, Any] | None = None
    crashes: list[dict[str, Any]] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)
    current: dict[str, Any] = field(default_factory=dict)  # the record being read, for errors


def bin_width(span_ns: int) -> int:
    """The smallest of 1, 2, 5 x 10^k ns (at least 1 us) cutting *span_ns* into <= MAX_BINS bins."""
    span = max(span_ns, 1)
    decade = 1000
    while True:
        for m in (1, 2, 5):
            width = m * decade
            if -(-span // width) <= MAX_BINS:
                return width
        decade *= 10


def latency_stats(costs: list[int]) -> dict[str, int]:
    """count, p50, p90, p99 and max of a list of ns values (sorted here)."""
    ordered = sorted(costs)
    out = {"count": len(ordered), "max_ns": ordered[-1]}
    for p in (50, 90, 99):
        out[f"p{p}_ns"] = percentile(ordered, p)
    return out


def _extra(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in _RECORD_KEYS}


def _on_hypercall(acc: _Acc, rec: dict[str, Any]) -> None:
    call, cost = str(rec["call"]), int(rec["cost_ns"])
    acc.costs.setdefault(call, []).append(cost)
    if rec.get("status") != "SUCCESS":
        acc.non_success[call] = acc.non_success.get(call, 0) + 1
    acc.call_t.append(rec["t"])
    acc.call_cost.append(cost)
    fault = rec.get("fault")
    if fault:
        acc.faulted_calls[str(fault)] = acc.faulted_calls.get(str(fault), 0) + 1


def _on_host(acc: _Acc, rec: dict[str, Any], step: str) -> None:
    t, pid = rec["t"], rec.get("partition")
    if step == "crashed":
        acc.crashes.append({"t": t, "step": rec.get("step")})
        acc.marks.append(FaultMark(t, 0, "host.crashed"))
        return
    if step == "restarted":
        acc.restarts.append(t)
        acc.marks.append(FaultMark(t, 0, "host.restarted"))
        return
    if not isinstance(pid, int):
        return
    kind, _, what = step.partition(".")
    if kind not in acc.spans:
        return
    if what in ("created", "begin"):
        acc.open_spans[(kind, pid)] = (t, rec.get("host_vp"))
    elif what == "end":
        opened = acc.open_spans.pop((kind, pid), None)
        dur = rec.get("duration_ns")
        if not isinstance(dur, int):
            dur = t - opened[0] if opened else 0
        acc.spans[kind].append(
            {
                "partition": pid,
                "host_vp": rec.get("host_vp"),
                "start_ns": t - dur,
                "end_ns": t,
                "duration_ns": dur,
            }
        )


def _on_vp(acc: _Acc, rec: dict[str, Any], event: str) -> None:
    t = rec["t"]
    key = (int(rec["partition"]), int(rec["vp"]))
    vp = acc.vps.get(key)
    if vp is None:
        vp = acc.vps[key] = _Vp(created=t)
    if event != "vp.state":
        return
    if rec.get("runnable"):
        if vp.since is None:
            vp.since = t
    else:
        vp.stop(t)


def _on_fault(acc: _Acc, rec: dict[str, Any], event: str) -> None:
    t = rec["t"]
    if event == "fault":
        kind = str(rec.get("kind", "?"))
        details = {k: v for k, v in _extra(rec).items() if k not in ("kind", "index")}
        acc.fired.append(
            {"t": t, "seq": rec["seq"], "kind": kind, "index": rec.get("index"), "details": details}
        )
        dur = rec.get("duration_ns")
        acc.marks.append(FaultMark(t, dur if isinstance(dur, int) and dur > 0 else 0, kind))
    elif event == "fault.plan":
        acc.plan = {"t": t, **_extra(rec)}
    elif event == "fault.healed":
        acc.healed = {"t": t, **_extra(rec)}


def _scan(run: Run) -> _Acc:
    acc = _Acc()
    try:
        _scan_records(acc, run.records)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad_record(str(run.path / EVENTS_FILE), acc.current, exc) from None
    return acc


def _scan_records(acc: _Acc, records: list[dict[str, Any]]) -> None:
    for rec in records:
        acc.current = rec
        event = rec["event"]
        if event == "hypercall":
            _on_hypercall(acc, rec)
        elif event == "pool":
            acc.pools.setdefault(int(rec["partition"]), []).append(
                (rec["t"], rec["available"], rec["in_use"])
            )
        elif event.startswith("vp."):
            _on_vp(acc, rec, event)
        elif event == "partition.state" and rec.get("new") is None:
            for key in [k for k in acc.vps if k[0] == rec["partition"]]:
                vp = acc.vps.pop(key)
                vp.stop(rec["t"])
                vp.end = rec["t"]
                acc.gone_vps.append((key, vp))
        elif event.startswith("host."):
            _on_host(acc, rec, event[5:])
        elif event.startswith("fault"):
            _on_fault(acc, rec, event)
        elif event == "hypercall.orphaned":
            code = rec.get("code")
            name = _CALL_NAMES.get(code, f"0x{code:04x}") if isinstance(code, int) else str(rec.get("call"))
            acc.orphaned[name] = acc.orphaned.get(name, 0) + 1


def _span_table(rows: list[dict[str, Any]], unfinished: list[dict[str, Any]]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: (r["start_ns"], r["partition"]))
    out: dict[str, Any] = {"rows": rows, "unfinished": unfinished}
    out.update(latency_stats([r["duration_ns"] for r in rows]) if rows else {"count": 0})
    return out


def _timing(acc: _Acc, end: int) -> dict[str, Any]:
    calls = {}
    for call, costs in sorted(acc.costs.items()):
        calls[call] = {**latency_stats(costs), "non_success": acc.non_success.get(call, 0)}
    vps = []
    every = acc.gone_vps + list(acc.vps.items())
    for (pid, idx), vp in sorted(every, key=lambda kv: (kv[0], kv[1].created)):
        stop = vp.end if vp.end is not None else end
        running_at_end = vp.since is not None
        run_ns = vp.run_ns + (stop - vp.since if vp.since is not None else 0)
        periods = vp.periods + (1 if running_at_end else 0)
        vps.append({
            "partition": pid, "vp": idx, "created_ns": vp.created, "end_ns": stop, "run_ns": run_ns,
            "suspended_ns": stop - vp.created - run_ns, "run_periods": periods,
            "runnable_at_end": running_at_end,
        })  # fmt: skip
    unfinished: dict[str, list[dict[str, Any]]] = {"boot": [], "teardown": []}
    for (kind, pid), (t, host_vp) in sorted(acc.open_spans.items()):
        unfinished[kind].append({"partition": pid, "host_vp": host_vp, "since_ns": t})
    return {
        "hypercalls": calls,
        "hypercalls_all": latency_stats(acc.call_cost) if acc.call_cost else {"count": 0},
        "orphaned": dict(sorted(acc.orphaned.items())),
        "boots": _span_table(acc.spans["boot"], unfinished["boot"]),
        "teardowns": _span_table(acc.spans["teardown"], unfinished["teardown"]),
        "vps": vps,
        "intercepts": {"note": INTERCEPT_NOTE},
    }


def _bins(acc: _Acc, end: int) -> tuple[int, list[int], list[tuple[int, int, int] | None]]:
    width = bin_width(end)
    n = max(1, -(-end // width))
    counts = [0] * n
    per_bin: list[list[int]] = [[] for _ in range(n)]
    for t, cost in zip(acc.call_t, acc.call_cost, strict=True):
        i = min(t // width, n - 1)
        counts[i] += 1
        per_bin[i].append(cost)
    lat: list[tuple[int, int, int] | None] = []
    for costs in per_bin:
        if costs:
            costs.sort()
            lat.append((percentile(costs, 50), percentile(costs, 99), costs[-1]))
        else:
            lat.append(None)
    return width, counts, lat


def _memory(acc: _Acc) -> dict[str, Any]:
    pools = {}
    for pid, series in sorted(acc.pools.items()):
        peak = max(series, key=lambda s: (s[2], -s[0]))
        pools[str(pid)] = {
            "changes": len(series),
            "final_available": series[-1][1],
            "final_in_use": series[-1][2],
            "peak_in_use": peak[2],
            "peak_in_use_t": peak[0],
            "peak_available": max(s[1] for s in series),
        }
    return {"pools": pools}


def _run_info(run: Run, end: int, calls: int) -> dict[str, Any]:
    s = run.summary or {}
    return {
        "scenario": s.get("scenario"),
        "description": s.get("description"),
        "seed": s.get("seed"),
        "hvsim": s.get("hvsim"),
        "ok": s.get("ok"),
        "error": s.get("error"),
        "sim_time_ns": end,
        "events": len(run.records),
        "hypercalls": calls,
        "has_summary": run.summary is not None,
    }


def _checkers(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {
        "ok": summary.get("ok"),
        "error": summary.get("error"),
        "results": {k: bool(v.get("ok")) for k, v in sorted((summary.get("checkers") or {}).items())},
        "violations": summary.get("violations") or [],
    }


def _simulator(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    wall = (summary or {}).get("wall")
    if not isinstance(wall, dict):
        return None
    return {
        "wall_seconds": wall.get("seconds"),
        "events_per_wall_second": wall.get("events_per_second"),
        "sim_to_wall_ratio": wall.get("sim_to_wall_ratio"),
    }


def analyze(run: Run) -> Analysis:
    """Everything the report shows, from *run*."""
    acc = _scan(run)
    end = max(run.end_ns, (acc.call_t[-1] + 1) if acc.call_t else 0)
    width, counts, lat = _bins(acc, end)
    per_ms = 1_000_000 / width
    total = len(acc.call_t)
    window = None
    if acc.plan is not None:
        heal = acc.healed["t"] if acc.healed else min(int(acc.plan.get("heal_at_ns") or end), end)
        window = (int(acc.plan["t"]), max(int(acc.plan["t"]), heal))
    by_kind: dict[str, int] = {}
    for f in acc.fired:
        by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
    data = {
        "format": "hvsim-report/1",
        "run": _run_info(run, end, total),
        "timing": _timing(acc, end),
        "throughput": {
            "bin_ns": width,
            "bins": [[i * width, c, round(c * per_ms, 3)] for i, c in enumerate(counts)],
            "latency_bins": [[i * width, *(v if v else (None, None, None))] for i, v in enumerate(lat)],
            "hypercalls": total,
            "mean_per_ms": round(total * 1_000_000 / max(end, 1), 3),
            "peak_per_ms": round(max(counts) * per_ms, 3),
            "simulator": _simulator(run.summary),
        },
        "memory": _memory(acc),
        "faults": {
            "plan": acc.plan,
            "window_ns": list(window) if window else None,
            "fired": acc.fired,
            "by_kind": dict(sorted(by_kind.items())),
            "hypercalls_faulted": dict(sorted(acc.faulted_calls.items())),
            "host_crashes": acc.crashes,
            "host_restarts": acc.restarts,
            "healed": acc.healed,
        },
        "checkers": _checkers(run.summary),
    }
    return Analysis(data, width, counts, lat, acc.pools, acc.marks, window, acc.call_t)
