"""The campaign report: ``hvsim report DIR`` on a chaos folder (``hvsim chaos --out DIR``).

Reads only what the campaign left: ``DIR/results.sqlite`` (one row per seed, the campaign's
identity and its "sometimes" catalogue in ``meta``) and each failure's ``manifest.json``. Writes
``DIR/report.html`` (self-contained), ``DIR/report.json`` and ``DIR/report-seeds.csv``: outcomes per
seed, the failures with their repro commands, fault coverage (and how often each kind's seeds
failed), call x status pairs and states reached, "sometimes" properties never hit, slowest seeds.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from matplotlib.figure import Figure

from hvsim.reports.charts import PALETTE, WIDTH_IN, _render, _style
from hvsim.reports.events import ReportError
from hvsim.reports.html import esc, figure, json_bytes, page, table, write_csv

OUTCOME_COLORS = {
    "pass": "#55a868",
    "liveness": "#dd8452",
    "host-error": "#ccb974",
    "safety": "#c44e52",
    "nondeterminism": "#8172b3",
    "harness": "#8c8c8c",
}
SEED_COLUMNS = ["seed", "outcome", "checker", "message", "events", "sim_ns", "wall_s", "digest"]
SLOWEST = 10
SLOW_COLUMNS = ("seed", "outcome", "events", "sim_ns", "wall_s")


class SeedRow(Protocol):
    """What coverage needs of a result row (a chaos ``SeedResult`` or a row read back here)."""

    fired: str
    coverage: str


def campaign_coverage(rows: Iterable[SeedRow], sometimes: Iterable[str]) -> dict[str, Any]:
    """Coverage over a campaign: fault kinds fired (seeds each), call x status pairs, partition
    states reached, and the *sometimes* properties that never happened."""
    kinds: Counter[str] = Counter()
    calls: set[str] = set()
    states: set[str] = set()
    hit: set[str] = set()
    for r in rows:
        kinds.update(json.loads(r.fired or "{}").keys())
        cov = json.loads(r.coverage or "{}")
        calls.update(cov.get("calls", []))
        states.update(cov.get("states", []))
        hit.update(cov.get("sometimes", []))
    return {
        "fault_kinds_fired": dict(sorted(kinds.items())),
        "call_status_pairs": sorted(calls),
        "partition_states": sorted(states),
        "sometimes_never_hit": sorted(set(sometimes) - hit),
    }


class _Row:
    __slots__ = ("coverage", "data", "fired")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.fired = data.get("fired") or "{}"
        self.coverage = data.get("coverage") or "{}"


def load_campaign(folder: Path) -> tuple[dict[str, Any], dict[str, str], list[_Row]]:
    """The campaign's identity, its "sometimes" catalogue and its rows (seed order)."""
    db_path = folder / "results.sqlite"
    if not db_path.is_file():
        raise ReportError(f"{folder} is not a chaos campaign folder (no results.sqlite)")
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            meta = {row["key"]: row["value"] for row in db.execute("SELECT key, value FROM meta")}
            rows = [_Row(dict(row)) for row in db.execute("SELECT * FROM seeds ORDER BY seed")]
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{db_path}: cannot read the campaign results: {exc}") from None
    campaign = json.loads(meta.get("campaign", "{}"))
    sometimes = json.loads(meta.get("sometimes", "{}"))
    return campaign, sometimes, rows


def analyze_campaign(folder: Path) -> dict[str, Any]:
    campaign, sometimes, rows = load_campaign(folder)
    outcomes = Counter(r.data["outcome"] for r in rows)
    failures = []
    for r in rows:
        if r.data["outcome"] == "pass":
            continue
        manifest = folder / "failures" / f"seed-{r.data['seed']}" / "manifest.json"
        repro = json.loads(manifest.read_text())["repro"] if manifest.is_file() else None
        failures.append({**{k: r.data[k] for k in SEED_COLUMNS if k != "digest"}, "repro": repro})
    fired_by_kind: Counter[str] = Counter()
    failed_by_kind: Counter[str] = Counter()
    for r in rows:
        for kind in json.loads(r.fired):
            fired_by_kind[kind] += 1
            failed_by_kind[kind] += r.data["outcome"] != "pass"
    slowest = sorted(rows, key=lambda r: -float(r.data["wall_s"] or 0))[:SLOWEST]
    wall = sum(float(r.data["wall_s"] or 0) for r in rows)
    return {
        "campaign": campaign,
        "seeds": len(rows),
        "first_seed": rows[0].data["seed"] if rows else None,
        "last_seed": rows[-1].data["seed"] if rows else None,
        "outcomes": dict(sorted(outcomes.items())),
        "failures": failures,
        "fault_kinds": {
            kind: {"seeds_fired": n, "seeds_failed": failed_by_kind[kind]}
            for kind, n in sorted(fired_by_kind.items())
        },
        "coverage": campaign_coverage(rows, sometimes),
        "sometimes": sometimes,
        "slowest": [
            {k: r.data[k] for k in ("seed", "outcome", "events", "sim_ns", "wall_s")} for r in slowest
        ],
        "wall_s_total": round(wall, 3),
        "events_total": sum(int(r.data["events"] or 0) for r in rows),
        "per_seed": [{k: r.data[k] for k in SEED_COLUMNS} for r in rows],
    }


def outcomes_svg(data: dict[str, Any]) -> str | None:
    """Each seed's wall time, coloured by outcome: failures and slow seeds stand out."""
    seeds = data["per_seed"]
    if not seeds:
        return None
    with _style("campaign-outcomes"):
        fig = Figure(figsize=(WIDTH_IN, 2.6), layout="constrained")
        ax = fig.add_subplot()
        for outcome, color in OUTCOME_COLORS.items():
            xs = [s["seed"] for s in seeds if s["outcome"] == outcome]
            if xs:
                ys = [float(s["wall_s"] or 0) for s in seeds if s["outcome"] == outcome]
                ax.scatter(xs, ys, s=9, color=color, label=f"{outcome} ({len(xs)})")
        ax.set_xlabel("seed")
        ax.set_ylabel("wall seconds")
        ax.set_title("Outcome and wall time per seed", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _render(fig)


def fault_kinds_svg(data: dict[str, Any]) -> str | None:
    """Seeds in which each fault kind fired, and how many of those failed."""
    kinds = data["fault_kinds"]
    if not kinds:
        return None
    names = sorted(kinds)
    with _style("campaign-faults"):
        fig = Figure(figsize=(WIDTH_IN, 0.6 + 0.22 * len(names)), layout="constrained")
        ax = fig.add_subplot()
        fired = [kinds[k]["seeds_fired"] for k in names]
        failed = [kinds[k]["seeds_failed"] for k in names]
        ax.barh(names, fired, color=PALETTE[0], alpha=0.8, label="seeds where it fired")
        ax.barh(names, failed, color=PALETTE[3], alpha=0.9, label="... of which failed")
        ax.invert_yaxis()
        ax.set_xlabel("seeds")
        ax.set_title("Fault coverage", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _render(fig)


def render_campaign_html(data: dict[str, Any]) -> str:
    c = data["campaign"]
    faults = c.get("faults", "?")
    faults_shown = faults if faults in ("none", "swarm") else "one plan for every seed"
    span = f"seeds {data['first_seed']}-{data['last_seed']}" if data["seeds"] else "no seed finished yet"
    title = f"hvsim campaign: {c.get('scenario', '?')}, {span}"
    head = table(
        None,
        [
            ["scenario", c.get("scenario")],
            ["faults", faults_shown],
            ["host", c.get("host") or "reference host"],
            ["seeds", data["seeds"]],
            ["outcomes", ", ".join(f"{n} {k}" for k, n in data["outcomes"].items())],
            ["simulated events", f"{data['events_total']:,}"],
            ["wall time (sum over seeds)", f"{data['wall_s_total']:,.1f} s"],
        ],
    )
    fail_rows = [
        [f["seed"], f["outcome"], f["checker"] or "", (f["message"] or "")[:160],
         f"<code>{esc(f['repro'])}</code>" if f["repro"] else "&mdash;"]
        for f in data["failures"][:200]
    ]  # fmt: skip
    failures = _raw_table(["seed", "outcome", "checker", "message", "reproduce"], fail_rows)
    cov = data["coverage"]
    never = [[name, data["sometimes"].get(name, "")] for name in cov["sometimes_never_hit"]]
    slow = [
        [
            s["seed"],
            s["outcome"],
            s["events"],
            f"{(s['sim_ns'] or 0) / 1e6:,.3f}",
            f"{float(s['wall_s'] or 0):.3f}",
        ]
        for s in data["slowest"]
    ]
    body = "".join(
        [
            f"<h1>{esc(title)}</h1>",
            '<nav><a href="#failures">Failures</a><a href="#coverage">Coverage</a>'
            '<a href="#slowest">Slowest seeds</a></nav>',
            head,
            figure(outcomes_svg(data), "Each dot is a seed; colour is its outcome."),
            f'<h2 id="failures">Failures ({len(data["failures"])})</h2>',
            failures if data["failures"] else '<p class="ok">every seed passed</p>',
            '<h2 id="coverage">Coverage</h2>',
            figure(fault_kinds_svg(data), "Seeds in which each fault kind fired (red: those that failed)."),
            "<h3>Sometimes properties never hit</h3>",
            table(["property", "meaning"], never) if never else '<p class="ok">all were hit</p>',
            f"<h3>Partition states reached</h3><p>{esc(', '.join(cov['partition_states']))}</p>",
            f"<h3>Hypercall x status pairs ({len(cov['call_status_pairs'])})</h3>",
            f"<p><code>{esc(', '.join(cov['call_status_pairs']))}</code></p>",
            '<h2 id="slowest">Slowest seeds (wall time)</h2>',
            table(["seed", "outcome", "events", "simulated ms", "wall s"], slow, numeric=[0, 2, 3, 4]),
            "<footer><p class='note'>Data: results.sqlite and failures/*/manifest.json. Per-seed rows: "
            "report-seeds.csv.</p></footer>",
        ]
    )
    return page(title, body)


def _raw_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A table whose last column is already HTML (the repro command); the rest escaped."""
    escaped = [[esc(v) for v in row[:-1]] + [row[-1]] for row in rows]
    return table(headers, escaped, numeric=[0], raw=True)


def write_campaign_report(folder: Path) -> dict[str, Any]:
    """Write report.html, report.json and report-seeds.csv into the campaign *folder*."""
    data = analyze_campaign(folder)
    data["files"] = ["report.html", "report.json", "report-seeds.csv"]
    (folder / "report.html").write_text(render_campaign_html(data), encoding="utf-8")
    (folder / "report.json").write_bytes(json_bytes({k: v for k, v in data.items() if k != "per_seed"}))
    write_csv(
        folder / "report-seeds.csv", SEED_COLUMNS, ([s[k] for k in SEED_COLUMNS] for s in data["per_seed"])
    )
    return data
