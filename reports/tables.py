"""The report's tables as CSV files (``report-*.csv``): all rows; the HTML page shows the first ones."""

from __future__ import annotations

from pathlib import Path

import orjson

from hvsim.reports.html import write_csv
from hvsim.reports.stats import Analysis

__all__ = ["CSV_FILES", "write_tables"]

CSV_FILES = (
    "report-latency.csv",
    "report-spans.csv",
    "report-vps.csv",
    "report-throughput.csv",
    "report-pools.csv",
    "report-faults.csv",
)


def write_tables(out: Path, an: Analysis) -> None:
    """Write the CSV_FILES into *out*."""
    d = an.data
    t = d["timing"]
    write_csv(
        out / "report-latency.csv",
        ["call", "count", "non_success", "p50_ns", "p90_ns", "p99_ns", "max_ns"],
        (
            [n, c["count"], c["non_success"], c["p50_ns"], c["p90_ns"], c["p99_ns"], c["max_ns"]]
            for n, c in t["hypercalls"].items()
        ),
    )
    spans = [
        [kind, s["partition"], s["host_vp"], s["start_ns"], s["end_ns"], s["duration_ns"]]
        for kind, key in (("boot", "boots"), ("teardown", "teardowns"))
        for s in t[key]["rows"]
    ]
    write_csv(
        out / "report-spans.csv", ["kind", "partition", "host_vp", "start_ns", "end_ns", "duration_ns"], spans
    )
    vp_cols = [
        "partition",
        "vp",
        "created_ns",
        "end_ns",
        "run_ns",
        "suspended_ns",
        "run_periods",
        "runnable_at_end",
    ]
    write_csv(out / "report-vps.csv", vp_cols, ([v[k] for k in vp_cols] for v in t["vps"]))
    tp = d["throughput"]
    write_csv(
        out / "report-throughput.csv",
        [
            "bin_start_ns",
            "bin_ns",
            "hypercalls",
            "per_ms",
            "latency_p50_ns",
            "latency_p99_ns",
            "latency_max_ns",
        ],
        (
            [b[0], tp["bin_ns"], b[1], b[2], *lat[1:]]
            for b, lat in zip(tp["bins"], tp["latency_bins"], strict=True)
        ),
    )
    write_csv(
        out / "report-pools.csv",
        ["t_ns", "partition", "available", "in_use"],
        sorted((ts, pid, avail, used) for pid, series in an.pools.items() for ts, avail, used in series),
    )
    write_csv(
        out / "report-faults.csv",
        ["t_ns", "seq", "kind", "index", "details"],
        (
            [
                f["t"],
                f["seq"],
                f["kind"],
                f["index"],
                orjson.dumps(f["details"], option=orjson.OPT_SORT_KEYS).decode(),
            ]
            for f in d["faults"]["fired"]
        ),
    )
