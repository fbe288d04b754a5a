"""``hvsim report DIR``: timing, throughput, memory and fault report of one run.

Writes, next to the run's ``events.jsonl``: ``report.html`` (one self-contained page: inline CSS and
SVG charts, no scripts, fonts or links to fetch), ``report.json`` (every number on the page) and the
tables as ``report-*.csv``. Only reads the run; the same files always give the same bytes (the
folder's own name and path are not part of the content).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from hvsim.reports import charts
from hvsim.reports.compare import compare_reports
from hvsim.reports.events import load_run
from hvsim.reports.html import esc, figure, json_bytes, ok_mark, page, table, us
from hvsim.reports.stats import Analysis, analyze
from hvsim.reports.tables import CSV_FILES, write_tables

__all__ = ["compare_reports", "render_html", "write_report"]

MAX_ROWS = 50  # per HTML table; the CSV files hold every row


def _more(n: int, where: str) -> str:
    return f'<p class="note">{n - MAX_ROWS} more rows in <code>{where}</code>.</p>' if n > MAX_ROWS else ""


def _summary_section(d: dict[str, Any]) -> str:
    r, tp = d["run"], d["throughput"]
    rows = [
        ["scenario", esc(r["scenario"]), "seed", esc(r["seed"])],
        ["verdict", ok_mark(r["ok"]), "hvsim", esc(r["hvsim"])],
        ["simulated time", f"{r['sim_time_ns'] / 1e6:,.3f} ms", "events", f"{r['events']:,}"],
        ["hypercalls", f"{r['hypercalls']:,}", "mean rate", f"{tp['mean_per_ms']:,.3f} / ms"],
    ]
    desc = f'<p class="muted">{esc(r["description"])}</p>' if r["description"] else ""
    missing = (
        ""
        if r["has_summary"]
        else '<p class="note">No summary.json: checker and wall-clock sections are empty.</p>'
    )
    return f'<section id="summary">{desc}{table(None, rows, raw=True)}{missing}</section>'


def _span_rows(spans: dict[str, Any]) -> list[list[Any]]:
    return [
        [s["partition"], s["host_vp"], us(s["start_ns"]), us(s["end_ns"]), us(s["duration_ns"])]
        for s in spans["rows"][:MAX_ROWS]
    ]


def _spans_html(title: str, spans: dict[str, Any]) -> str:
    if not spans["count"] and not spans["unfinished"]:
        return f"<h3>{title}</h3><p class='note'>None in this log.</p>"
    head = f"<h3>{title}</h3>"
    if spans["count"]:
        head += (
            f"<p>{spans['count']} finished: p50 {us(spans['p50_ns'])} us, p90 {us(spans['p90_ns'])} us, "
            f"max {us(spans['max_ns'])} us.</p>"
        )
        cols = ["partition", "host VP", "start (us)", "end (us)", "duration (us)"]
        head += table(cols, _span_rows(spans), numeric=range(5)) + _more(spans["count"], "report-spans.csv")
    if spans["unfinished"]:
        left = ", ".join(
            f"partition {u['partition']} (since {us(u['since_ns'])} us)" for u in spans["unfinished"]
        )
        head += f"<p class='note'>Never finished (host crash or end of run): {esc(left)}.</p>"
    return head


def _timing_section(an: Analysis) -> str:
    t = an.data["timing"]
    calls = t["hypercalls"]
    rows = [
        [
            name,
            c["count"],
            c["non_success"],
            us(c["p50_ns"]),
            us(c["p90_ns"]),
            us(c["p99_ns"]),
            us(c["max_ns"]),
        ]
        for name, c in calls.items()
    ]
    a = t["hypercalls_all"]
    if a["count"]:
        rows.append(
            [
                "all calls",
                a["count"],
                sum(c["non_success"] for c in calls.values()),
                us(a["p50_ns"]),
                us(a["p90_ns"]),
                us(a["p99_ns"]),
                us(a["max_ns"]),
            ]
        )
    cols = ["call", "count", "non-SUCCESS", "p50 (us)", "p90 (us)", "p99 (us)", "max (us)"]
    parts = [
        '<section id="timing"><h2>Timing</h2>',
        "<h3>Hypercall latency (simulated)</h3><p class='note'>Latency is the call's service time "
        "<code>cost_ns</code>: the caller sees the result at <code>t + cost_ns</code>. Percentiles are "
        "nearest-rank (p99 of 10 calls is the slowest).</p>",
        table(cols, rows, numeric=range(1, 7)) if rows else "<p class='note'>No hypercalls.</p>",
    ]
    if calls:
        parts.append(figure(charts.latency_calls_svg(calls), "p50/p99 bars and max dots per call."))
        parts.append(
            figure(
                charts.latency_time_svg(an),
                "Latency of calls starting in each time bin; "
                "shaded: the fault plan's active window, lines: faults firing.",
            )
        )
    if t["orphaned"]:
        parts.append(f"<p>Orphaned hypercalls (caller gone): {esc(t['orphaned'])}</p>")
    parts += [
        _spans_html("Partition boot (host)", t["boots"]),
        _spans_html("Partition teardown (host)", t["teardowns"]),
    ]
    vps = t["vps"]
    parts.append("<h3>VP run / suspend time</h3>")
    if vps:
        vp_rows = [
            [
                v["partition"],
                v["vp"],
                us(v["created_ns"]),
                us(v["end_ns"]),
                us(v["run_ns"]),
                us(v["suspended_ns"]),
                v["run_periods"],
                v["runnable_at_end"],
            ]
            for v in vps[:MAX_ROWS]
        ]
        cols = [
            "partition",
            "VP",
            "created (us)",
            "gone / end (us)",
            "runnable (us)",
            "suspended (us)",
            "run periods",
            "runnable at end",
        ]
        parts += [
            table(cols, vp_rows, numeric=range(7)),
            _more(len(vps), "report-vps.csv"),
            figure(charts.vps_svg(vps), "Runnable (vp.state runnable) vs. suspended time per VP."),
        ]
    else:
        parts.append("<p class='note'>No VPs in this log.</p>")
    parts.append(
        f"<h3>Intercept round trips</h3><p class='note'>{esc(t['intercepts']['note'])}</p></section>"
    )
    return "".join(parts)


def _throughput_section(an: Analysis) -> str:
    tp = an.data["throughput"]
    sim = tp["simulator"]
    speed = (
        table(
            ["wall seconds", "events per wall second", "simulated s per wall s"],
            [[sim["wall_seconds"], sim["events_per_wall_second"], sim["sim_to_wall_ratio"]]],
            numeric=range(3),
        )
        + "<p class='note'>From summary.json: the one measurement of a run that is not a function "
        "of its seed.</p>"
        if sim
        else "<p class='note'>No wall-clock figures (no summary.json).</p>"
    )
    return (
        '<section id="throughput"><h2>Throughput</h2>'
        f"<p>{tp['hypercalls']:,} hypercalls: {tp['mean_per_ms']:,.3f} per simulated ms on average, "
        f"{tp['peak_per_ms']:,.3f} in the busiest {us(tp['bin_ns'], 0)} us bin.</p>"
        + figure(
            charts.throughput_svg(an),
            "Hypercalls started per simulated ms; shaded: the fault plan's "
            "active window and faults with a duration; lines: faults firing.",
        )
        + f"<h3>Simulator speed</h3>{speed}</section>"
    )


def _memory_section(an: Analysis, root: int) -> str:
    pools = an.data["memory"]["pools"]
    if not pools:
        return '<section id="memory"><h2>Memory</h2><p class="note">No pool records.</p></section>'
    rows = [
        [
            ("root " if int(pid) == root else "") + pid,
            p["changes"],
            p["final_available"],
            p["final_in_use"],
            p["peak_in_use"],
            us(p["peak_in_use_t"]),
            p["peak_available"],
        ]
        for pid, p in pools.items()
    ]
    cols = [
        "partition",
        "changes",
        "final available",
        "final in use",
        "peak in use",
        "peak at (us)",
        "peak available",
    ]
    return (
        '<section id="memory"><h2>Memory</h2>'
        + table(cols, rows[:MAX_ROWS], numeric=range(1, 7))
        + _more(len(rows), "report.json (memory.pools)")
        + figure(
            charts.pools_svg(an, root),
            "Pool pages (4 KiB) after each change; full series in report-pools.csv.",
        )
        + "</section>"
    )


def _faults_section(d: dict[str, Any]) -> str:
    f = d["faults"]
    if f["plan"] is None and not f["fired"] and not f["host_crashes"]:
        return '<section id="faults"><h2>Faults</h2><p class="note">No fault plan in this run.</p></section>'
    plan = f["plan"] or {}
    parts = [
        '<section id="faults"><h2>Faults</h2>',
        f"<p>Plan <b>{esc(plan.get('name'))}</b>: {esc(plan.get('faults'))} faults, heal at "
        f"{us(plan.get('heal_at_ns'))} us; healed at {us((f['healed'] or {}).get('t'))} us.</p>",
    ]
    if f["by_kind"]:
        parts.append(table(["kind", "fired"], list(f["by_kind"].items()), numeric=[1]))
    if f["hypercalls_faulted"]:
        parts.append("<p>Hypercalls shaped by a fault: " + esc(f["hypercalls_faulted"]) + "</p>")
    for c in f["host_crashes"]:
        parts.append(f"<p>Host crashed at {us(c['t'])} us (step {esc(c['step'])}).</p>")
    if f["fired"]:
        rows = [
            [
                us(x["t"]),
                x["seq"],
                x["kind"],
                x["index"],
                orjson.dumps(x["details"], option=orjson.OPT_SORT_KEYS).decode(),
            ]
            for x in f["fired"][:MAX_ROWS]
        ]
        parts += [
            table(["t (us)", "seq", "kind", "index", "what"], rows, numeric=[0, 1, 3]),
            _more(len(f["fired"]), "report-faults.csv"),
        ]
    return "".join(parts) + "</section>"


def _checkers_section(d: dict[str, Any]) -> str:
    c = d["checkers"]
    if c is None:
        return '<section id="checkers"><h2>Checkers</h2><p class="note">No summary.json.</p></section>'
    rows = [[esc(k), ok_mark(v)] for k, v in c["results"].items()]
    parts = [
        '<section id="checkers"><h2>Checkers</h2>',
        f"<p>Run verdict: {ok_mark(c['ok'])}</p>",
        table(["checker", "result"], rows, raw=True),
    ]
    if c["error"]:
        parts.append(f"<p class='bad'>Error: {esc(c['error'])}</p>")
    if c["violations"]:
        vrows = [
            [v.get("checker"), v.get("t"), v.get("seq"), v.get("message")] for v in c["violations"][:MAX_ROWS]
        ]
        parts.append(table(["checker", "t (ns)", "seq", "message"], vrows, numeric=[1, 2]))
    return "".join(parts) + "</section>"


def render_html(an: Analysis, root: int) -> str:
    d = an.data
    r = d["run"]
    title = f"hvsim report: {r['scenario']} seed {r['seed']}" if r["scenario"] else "hvsim report"
    nav = "".join(
        f'<a href="#{s}">{s.capitalize()}</a>'
        for s in ("timing", "throughput", "memory", "faults", "checkers")
    )
    files = ", ".join(f"<code>{n}</code>" for n in ("report.json", *CSV_FILES))
    body = (
        f"<h1>{esc(title)}</h1><nav>{nav}</nav>"
        + _summary_section(d)
        + _timing_section(an)
        + _throughput_section(an)
        + _memory_section(an, root)
        + _faults_section(d)
        + _checkers_section(d)
        + f"<footer><p class='note'>All times are simulated unless marked wall. Data: {files}.</p></footer>"
    )
    return page(title, body)


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Write report.html, report.json and report-*.csv into *run_dir*; return report.json's content.

    Raises :class:`hvsim.reports.events.ReportError` when *run_dir* is not a readable run folder.
    """
    run = load_run(run_dir)
    an = analyze(run)
    an.data["files"] = ["report.html", "report.json", *CSV_FILES]
    out = run.path
    (out / "report.html").write_text(render_html(an, run.root), encoding="utf-8")
    (out / "report.json").write_bytes(json_bytes(an.data))
    write_tables(out, an)
    return an.data
