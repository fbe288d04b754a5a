"""The report's charts: matplotlib figures rendered to inline SVG strings.

No pyplot and no GUI backend: each chart is a :class:`matplotlib.figure.Figure` saved straight to
SVG (matplotlib's own vector renderer, which needs no display). Text stays text
(``svg.fonttype: none``: no font files or glyph outlines inside), the date is left out of the
metadata and ids are salted per chart, so the same data always gives the same bytes and several
charts can share one page. Long series are thinned to a per-bin envelope (peaks kept).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from matplotlib.typing import RcKeyType

from hvsim.reports.stats import Analysis, FaultMark

__all__ = ["latency_calls_svg", "latency_time_svg", "pools_svg", "throughput_svg", "vps_svg"]

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.size": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "path.simplify": True,
}
PALETTE = [
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
]
FAULT_COLORS = ["#c44e52", "#8172b3", "#dd8452", "#937860", "#da8bc3", "#55a868", "#ccb974", "#64b5cd"]
MAX_POINTS = 1500  # per plotted series, before thinning
MAX_FULL_LINES = 30  # fault firings of one kind drawn full height; more become ticks
WIDTH_IN = 9.0


@contextmanager
def _style(name: str) -> Iterator[None]:
    rc = dict(_RC)
    rc["svg.hashsalt"] = f"hvsim-{name}"
    rc["svg.id"] = f"chart-{name}"
    with rc_context(rc):
        yield


def _render(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inlined in HTML


def _ms(ns: float) -> float:
    return ns / 1e6


def thin(
    points: Sequence[tuple[int, int]], t0: int, t1: int, limit: int = MAX_POINTS
) -> list[tuple[int, int]]:
    """At most about *limit* of *points* (time-ordered ``(t, value)``): per time bin the first, the
    lowest, the highest and the last point, so peaks and steps survive."""
    if len(points) <= limit:
        return list(points)
    nbins = max(1, limit // 4)
    width = max(1, -(-(t1 - t0 + 1) // nbins))
    keep: set[int] = set()
    start = 0
    while start < len(points):
        b = (points[start][0] - t0) // width
        stop = start
        while stop < len(points) and (points[stop][0] - t0) // width == b:
            stop += 1
        chunk = range(start, stop)
        keep.update(
            (start, stop - 1, min(chunk, key=lambda i: points[i][1]), max(chunk, key=lambda i: points[i][1]))
        )
        start = stop
    return [points[i] for i in sorted(keep)]


def fault_overlay(ax: Axes, marks: Sequence[FaultMark], window: tuple[int, int] | None, end: int) -> None:
    """Shade the fault plan's active window and each fault with a duration (a band); draw every other
    firing as a vertical line, one colour per kind -- or, for a kind that fires more than
    MAX_FULL_LINES times, as a short tick along the top edge, so it does not hide the data. Firings
    are merged per ~1/1000 of the run."""
    if window is not None:
        ax.axvspan(
            _ms(window[0]), _ms(window[1]), color="#f6e3b4", alpha=0.45, lw=0, zorder=0, label="faults active"
        )
    quantum = max(1, end // 1000)
    for i, kind in enumerate(sorted({m.kind for m in marks})):
        color = FAULT_COLORS[i % len(FAULT_COLORS)]
        mine = [m for m in marks if m.kind == kind]
        bands = sorted({(m.t, m.dur_ns) for m in mine if m.dur_ns > 0})[:200]
        for j, (t, dur) in enumerate(bands):
            ax.axvspan(
                _ms(t),
                _ms(t + dur),
                color=color,
                alpha=0.18,
                lw=0,
                zorder=0,
                label=f"{kind} (span)" if j == 0 else None,
            )
        xs = sorted({(m.t // quantum) * quantum for m in mine if m.dur_ns == 0})
        if not xs:
            continue
        dense = len(xs) > MAX_FULL_LINES
        ax.vlines(
            [_ms(x) for x in xs],
            0.93 if dense else 0,
            1,
            transform=ax.get_xaxis_transform(),
            colors=color,
            lw=0.7,
            alpha=0.9 if dense else 0.8,
            zorder=1,
            label=f"{kind} ({len(mine)}{', ticks at top' if dense else ''})",
        )


def _log_axis(ax: Axes, which: str) -> None:
    """A log scale labelled with plain numbers (0.3, 1, 10 rather than 10^0 ...); on an axis
    spanning under two decades some minor ticks are labelled too, so a short axis keeps labels."""
    axis: Axis = ax.xaxis if which == "x" else ax.yaxis
    if which == "x":
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
    else:
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 3.0
    digits = "235" if decades < 1 else "25" if decades < 2 else ""

    def minor(v: float, _pos: int | None) -> str:
        return f"{v:g}" if f"{v:e}"[0] in digits else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _legend(ax: Axes) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))


def throughput_svg(an: Analysis) -> str:
    """Hypercalls per simulated ms, one step per time bin, faults drawn over it."""
    end = an.data["run"]["sim_time_ns"]
    per_ms = 1e6 / an.bin_ns
    edges = [_ms(i * an.bin_ns) for i in range(len(an.call_bins) + 1)]
    with _style("throughput"):
        fig = Figure(figsize=(WIDTH_IN, 2.8), layout="constrained")
        ax = fig.add_subplot()
        fault_overlay(ax, an.marks, an.window, end)
        ax.stairs(
            [c * per_ms for c in an.call_bins],
            edges,
            fill=True,
            color=PALETTE[0],
            alpha=0.85,
            label="hypercalls / ms",
        )
        ax.set_xlim(0, max(edges[-1], 1e-6))
        ax.set_xlabel("simulated time (ms)")
        ax.set_ylabel("hypercalls per ms")
        ax.set_title(f"Throughput (bins of {an.bin_ns / 1000:g} us)", loc="left")
        _legend(ax)
        return _render(fig)


def latency_time_svg(an: Analysis) -> str:
    """p50, p99 and max hypercall latency per time bin (log scale), faults drawn over it."""
    end = an.data["run"]["sim_time_ns"]
    mids = [_ms((i + 0.5) * an.bin_ns) for i in range(len(an.latency_bins))]
    with _style("latency-time"):
        fig = Figure(figsize=(WIDTH_IN, 2.8), layout="constrained")
        ax = fig.add_subplot()
        fault_overlay(ax, an.marks, an.window, end)
        for k, (label, color) in enumerate((("p50", PALETTE[0]), ("p99", PALETTE[1]), ("max", PALETTE[3]))):
            ys = [v[k] / 1000 if v else math.nan for v in an.latency_bins]
            ax.plot(mids, ys, color=color, lw=1.0, marker=".", ms=3, label=label)
        if any(an.latency_bins):
            _log_axis(ax, "y")
        ax.set_xlim(0, max(_ms(len(an.latency_bins) * an.bin_ns), 1e-6))
        ax.set_xlabel("simulated time (ms)")
        ax.set_ylabel("latency (us)")
        ax.set_title("Hypercall latency over time (calls starting in each bin)", loc="left")
        _legend(ax)
        return _render(fig)


def latency_calls_svg(calls: dict[str, dict[str, Any]], title: str = "Latency per call") -> str:
    """One row per call name: p50 and p99 bars and the max as a dot (log scale, us)."""
    names = sorted(calls)
    with _style("latency-calls"):
        fig = Figure(figsize=(WIDTH_IN, 0.9 + 0.28 * max(1, len(names))), layout="constrained")
        ax = fig.add_subplot()
        ys = list(range(len(names)))
        for key, color, h, label in (("p99_ns", PALETTE[1], 0.7, "p99"), ("p50_ns", PALETTE[0], 0.4, "p50")):
            ax.barh(ys, [calls[n][key] / 1000 for n in names], height=h, color=color, label=label)
        ax.plot([calls[n]["max_ns"] / 1000 for n in names], ys, "o", color=PALETTE[3], ms=3, label="max")
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        if names:
            _log_axis(ax, "x")
        ax.set_xlabel("latency (us, simulated)")
        ax.set_title(title, loc="left")
        _legend(ax)
        return _render(fig)


def _pool_label(pid: int, root: int) -> str:
    return f"root ({pid})" if pid == root else f"partition {pid}"


def pools_svg(an: Analysis, root: int) -> str:
    """Pages in use and available, per partition pool, over simulated time."""
    end = an.data["run"]["sim_time_ns"]
    pids = sorted(an.pools)
    with _style("pools"):
        fig = Figure(figsize=(WIDTH_IN, 4.4), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        for ax, col, what in ((top, 2, "in use"), (bottom, 1, "available")):
            fault_overlay(ax, an.marks, an.window, end)
            for i, pid in enumerate(pids):
                series = an.pools[pid]
                pts = thin([(t, v[col - 1]) for t, *v in series], 0, end)
                xs = [_ms(t) for t, _ in pts] + [_ms(end)]
                ys = [v for _, v in pts] + [pts[-1][1]]
                ax.step(
                    xs,
                    ys,
                    where="post",
                    lw=1.0,
                    color=PALETTE[i % len(PALETTE)],
                    label=_pool_label(pid, root) if col == 2 and len(pids) <= 16 else None,
                )
            ax.set_ylabel(f"pages {what}")
        top.set_title(f"Memory pools ({len(pids)} partitions; 4 KiB pages)", loc="left")
        bottom.set_xlabel("simulated time (ms)")
        bottom.set_xlim(0, max(_ms(end), 1e-6))
        _legend(top)
        return _render(fig)


def vps_svg(vps: list[dict[str, Any]], limit: int = 64) -> str | None:
    """Run and suspended time per VP as stacked bars; None for more than *limit* VPs."""
    if not vps or len(vps) > limit:
        return None
    labels = [f"p{v['partition']} vp{v['vp']}" for v in vps]
    ys = list(range(len(vps)))
    run = [v["run_ns"] / 1e6 for v in vps]
    with _style("vps"):
        fig = Figure(figsize=(WIDTH_IN, 0.9 + 0.22 * len(vps)), layout="constrained")
        ax = fig.add_subplot()
        ax.barh(ys, run, color=PALETTE[2], label="runnable")
        ax.barh(ys, [v["suspended_ns"] / 1e6 for v in vps], left=run, color="#cccccc", label="suspended")
        ax.set_yticks(ys, labels)
        ax.invert_yaxis()
        ax.set_xlabel("simulated time (ms) from the VP's creation")
        ax.set_title("VP run / suspend time", loc="left")
        _legend(ax)
        return _render(fig)


def compare_throughput_svg(a: Analysis, b: Analysis, names: tuple[str, str]) -> str:
    """Both runs' hypercalls per ms over simulated time."""
    with _style("compare-throughput"):
        fig = Figure(figsize=(WIDTH_IN, 2.8), layout="constrained")
        ax = fig.add_subplot()
        for an, name, color in ((a, names[0], PALETTE[0]), (b, names[1], PALETTE[1])):
            edges = [_ms(i * an.bin_ns) for i in range(len(an.call_bins) + 1)]
            ax.stairs([c * 1e6 / an.bin_ns for c in an.call_bins], edges, color=color, lw=1.2, label=name)
        ax.set_xlabel("simulated time (ms)")
        ax.set_ylabel("hypercalls per ms")
        ax.set_title("Throughput, both runs", loc="left")
        _legend(ax)
        return _render(fig)


def compare_latency_svg(rows: list[dict[str, Any]], names: tuple[str, str]) -> str:
    """Per call: p50 and p99 of run A and run B side by side (log scale, us)."""
    calls = [r["call"] for r in rows]
    ys = list(range(len(calls)))
    with _style("compare-latency"):
        fig = Figure(figsize=(WIDTH_IN, 0.9 + 0.36 * max(1, len(calls))), layout="constrained")
        ax = fig.add_subplot()
        bars = (
            ("a", "p99_ns", -0.2, PALETTE[0], 0.35),
            ("b", "p99_ns", 0.2, PALETTE[1], 0.35),
            ("a", "p50_ns", -0.2, "#1f3b66", 0.15),
            ("b", "p50_ns", 0.2, "#8a4a1c", 0.15),
        )
        for side, key, off, color, h in bars:
            vals = [((r[side] or {}).get(key) or 0) / 1000 for r in rows]
            label = f"{names[0] if side == 'a' else names[1]} {key[:3]}"
            ax.barh([y + off for y in ys], vals, height=h, color=color, label=label)
        ax.set_yticks(ys, calls)
        ax.invert_yaxis()
        if calls:
            _log_axis(ax, "x")
        ax.set_xlabel("latency (us, simulated)")
        ax.set_title("Latency per call: p99 (wide) and p50 (narrow)", loc="left")
        _legend(ax)
        return _render(fig)
