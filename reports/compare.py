"""``hvsim report A B --compare``: two runs side by side, real differences flagged, noise not.

A difference is flagged only when it is larger than noise on both counts: relative to run A (the
baseline) *and* in absolute terms (table :data:`NOISE`). A metric present in only one run is always
flagged. Writes ``compare.html`` and ``compare.json``; reads the two run folders, writes nothing there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hvsim.reports import charts
from hvsim.reports.events import load_run
from hvsim.reports.html import esc, figure, json_bytes, ok_mark, page, table
from hvsim.reports.stats import Analysis, analyze, bin_width

__all__ = ["NOISE", "compare_reports", "differs"]

#: kind -> (relative threshold, absolute threshold, unit): a difference is real when it exceeds both.
NOISE: dict[str, tuple[float, float, str]] = {
    "latency_ns": (0.10, 1000, "ns"),
    "duration_ns": (0.10, 1000, "ns"),
    "count": (0.10, 2, "calls/events"),
    "per_ms": (0.10, 1.0, "per simulated ms"),
    "pages": (0.10, 8, "4 KiB pages"),
    "wall": (0.25, 0, "wall-clock"),
}
NOISE_TEXT = (
    "A difference is flagged when |B - A| is more than the relative threshold of A <em>and</em> more "
    "than the absolute threshold: latency and durations 10% and 1 us; counts 10% and 2; rates 10% and "
    "1 call/ms; pool pages 10% and 8 pages; wall-clock speed 25% (the one measurement that varies from "
    "run to run on the same seed). Small absolute changes in tiny values, and small relative changes "
    "in large ones, are noise. A metric present in only one run is always flagged. Peak throughput is "
    "compared on one grid of at most 20 bins over the longer run: the busiest short bin depends on "
    "where bursts fall on bin edges."
)


def differs(kind: str, a: float | None, b: float | None) -> bool:
    """Whether *a* -> *b* is a real difference for a metric of *kind* (see :data:`NOISE`)."""
    if a is None or b is None:
        return a is not b
    rel_tol, abs_tol, _ = NOISE[kind]
    diff = abs(b - a)
    rel = diff / abs(a) if a else (0.0 if diff == 0 else float("inf"))
    return rel > rel_tol and diff > abs_tol


def _row(metric: str, kind: str, a: Any, b: Any) -> dict[str, Any]:
    diff = b - a if a is not None and b is not None else None
    rel = round(diff / a, 4) if diff is not None and a else None
    return {
        "metric": metric,
        "kind": kind,
        "a": a,
        "b": b,
        "diff": diff,
        "rel": rel,
        "flag": differs(kind, a, b),
    }


def _calls(da: dict[str, Any], db: dict[str, Any]) -> list[dict[str, Any]]:
    ca, cb = da["timing"]["hypercalls"], db["timing"]["hypercalls"]
    out = []
    for call in sorted(set(ca) | set(cb)):
        a, b = ca.get(call), cb.get(call)
        rows = [
            _row(key, kind, a and a[key], b and b[key])
            for key, kind in (("count", "count"), ("p50_ns", "latency_ns"), ("p99_ns", "latency_ns"))
        ]
        keep = ("count", "p50_ns", "p99_ns", "max_ns")
        out.append(
            {
                "call": call,
                "a": {k: a[k] for k in keep} if a else None,
                "b": {k: b[k] for k in keep} if b else None,
                "rows": rows,
                "flag": any(r["flag"] for r in rows),
            }
        )
    return out


def _throughput(a: Analysis, b: Analysis) -> list[dict[str, Any]]:
    da, db = a.data, b.data
    ta, tb = da["throughput"], db["throughput"]
    # Peaks compare only on one grid, and a coarse one: at most 20 bins over the longer run (the
    # busiest short bin moves a lot with how bursts happen to fall on bin edges).
    width = bin_width(5 * max(da["run"]["sim_time_ns"], db["run"]["sim_time_ns"]))
    sa, sb = ta["simulator"] or {}, tb["simulator"] or {}
    return [
        _row("hypercalls", "count", ta["hypercalls"], tb["hypercalls"]),
        _row("events", "count", da["run"]["events"], db["run"]["events"]),
        _row("simulated time (ns)", "duration_ns", da["run"]["sim_time_ns"], db["run"]["sim_time_ns"]),
        _row("mean hypercalls per ms", "per_ms", ta["mean_per_ms"], tb["mean_per_ms"]),
        _row(
            f"peak hypercalls per ms ({width // 1000} us bins)",
            "per_ms",
            a.peak_per_ms(width),
            b.peak_per_ms(width),
        ),
        _row(
            "events per wall second",
            "wall",
            sa.get("events_per_wall_second"),
            sb.get("events_per_wall_second"),
        ),
        _row("simulated s per wall s", "wall", sa.get("sim_to_wall_ratio"), sb.get("sim_to_wall_ratio")),
    ]


def _pools(da: dict[str, Any], db: dict[str, Any]) -> list[dict[str, Any]]:
    pa, pb = da["memory"]["pools"], db["memory"]["pools"]
    out = []
    for pid in sorted(set(pa) | set(pb), key=int):
        a, b = pa.get(pid) or {}, pb.get(pid) or {}
        for key in ("final_in_use", "final_available", "peak_in_use"):
            out.append(_row(f"partition {pid} {key.replace('_', ' ')}", "pages", a.get(key), b.get(key)))
    return out


def _spans(da: dict[str, Any], db: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key in ("boots", "teardowns"):
        a, b = da["timing"][key], db["timing"][key]
        out.append(_row(f"{key} finished", "count", a["count"], b["count"]))
        for stat in ("p50_ns", "max_ns"):
            out.append(_row(f"{key} {stat[:-3]} duration (ns)", "duration_ns", a.get(stat), b.get(stat)))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "&mdash;"
    return f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else esc(v)


def _rows_table(rows: list[dict[str, Any]], names: tuple[str, str]) -> str:
    body = [
        [
            esc(r["metric"]),
            _fmt(r["a"]),
            _fmt(r["b"]),
            _fmt(r["diff"]),
            "&mdash;" if r["rel"] is None else f"{r['rel'] * 100:+.1f}%",
            "<b>differs</b>" if r["flag"] else "",
        ]
        for r in rows
    ]
    return table(
        ["metric", names[0], names[1], "B - A", "relative", ""],
        body,
        numeric=range(1, 5),
        raw=True,
        row_class=["flag" if r["flag"] else "" for r in rows],
    )


def _side(an: Analysis, path: Path) -> dict[str, Any]:
    r = an.data["run"]
    return {
        "path": str(path),
        "folder": path.name,
        "scenario": r["scenario"],
        "seed": r["seed"],
        "ok": r["ok"],
    }


def _html(data: dict[str, Any], a: Analysis, b: Analysis, names: tuple[str, str]) -> str:
    call_rows = [
        row | {"metric": f"{c['call']} {row['metric']}"} for c in data["hypercalls"] for row in c["rows"]
    ]
    heads = [[esc(k), esc(data["a"][k]), esc(data["b"][k])] for k in ("path", "scenario", "seed")] + [
        ["verdict", ok_mark(data["a"]["ok"]), ok_mark(data["b"]["ok"])]
    ]
    body = (
        f"<h1>hvsim compare: {esc(names[0])} vs {esc(names[1])}</h1>"
        + table(["", "A", "B"], heads, raw=True)
        + f"<p><b>{data['flagged']}</b> metrics differ beyond noise.</p>"
        + f"<h2>Noise</h2><p class='note'>{NOISE_TEXT}</p>"
        + "<h2>Hypercall latency and counts</h2>"
        + figure(charts.compare_latency_svg(data["hypercalls"], names), "A and B per call (simulated us).")
        + _rows_table(call_rows, names)
        + "<h2>Throughput</h2>"
        + figure(charts.compare_throughput_svg(a, b, names), "Hypercalls per simulated ms, both runs.")
        + _rows_table(data["throughput"], names)
        + "<h2>Memory pools (final and peak)</h2>"
        + _rows_table(data["pools"], names)
        + "<h2>Boot and teardown</h2>"
        + _rows_table(data["spans"], names)
    )
    return page(f"hvsim compare: {names[0]} vs {names[1]}", body)


def compare_reports(dir_a: str | Path, dir_b: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write out_dir/compare.html and out_dir/compare.json for runs *dir_a* (baseline) and *dir_b*.

    Returns compare.json's content; raises :class:`hvsim.reports.events.ReportError` for a folder
    that is not a readable run.
    """
    run_a, run_b = load_run(dir_a), load_run(dir_b)
    a, b = analyze(run_a), analyze(run_b)
    da, db = a.data, b.data
    data: dict[str, Any] = {
        "format": "hvsim-compare/1",
        "a": _side(a, Path(dir_a)),
        "b": _side(b, Path(dir_b)),
        "noise": {k: {"relative": r, "absolute": ab, "unit": u} for k, (r, ab, u) in NOISE.items()},
        "hypercalls": _calls(da, db),
        "throughput": _throughput(a, b),
        "pools": _pools(da, db),
        "spans": _spans(da, db),
    }
    rows = (
        [r for c in data["hypercalls"] for r in c["rows"]]
        + data["throughput"]
        + data["pools"]
        + data["spans"]
    )
    data["flagged"] = sum(r["flag"] for r in rows)
    names = (f"A: {run_a.path.name}", f"B: {run_b.path.name}")
    if names[0][3:] == names[1][3:]:
        names = ("A", "B")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.html").write_text(_html(data, a, b, names), encoding="utf-8")
    (out / "compare.json").write_bytes(json_bytes(data))
    return data
