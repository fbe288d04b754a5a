"""Chaos campaigns: one simulation per seed, in parallel worker processes, results in SQLite.

A campaign is (scenario, seeds, fault source, host). Results go to ``DIR/results.sqlite``; running
the same command again resumes it: seeds already recorded are not run again, so an interrupted
campaign (Ctrl-C, a killed process) finishes with the same results as an uninterrupted one. Each
failing seed leaves an artifact folder with everything needed to reproduce it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shlex
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hvsim.faults import FaultPlan, parse_plan, swarm_plan
from hvsim.reports.campaign import campaign_coverage as coverage_over
from hvsim.scenarios.hostload import load_host_class
from hvsim.scenarios.runner import run_scenario, write_outputs
from hvsim.scenarios.simulation import Limits

#: Outcome -> exit code (documented in the README); the worst outcome of a campaign decides.
EXIT_CODES = {"pass": 0, "safety": 3, "liveness": 4, "host-error": 4, "nondeterminism": 5, "harness": 6}
_SEVERITY = ["pass", "liveness", "host-error", "safety", "nondeterminism", "harness"]
LIVENESS_CHECKERS = frozenset(
    {"host-finishes", "vps-run", "all-reclaimed", "host-pages-returned", "message-progress"}
)

#: "Sometimes" properties: things a good campaign makes happen at least once. A campaign in which
#: one never happens is not exercising what it claims to (flagged in the summary, not a failure).
SOMETIMES = {
    "insufficient-memory-retried": "a call answered INSUFFICIENT_MEMORY and the host went on",
    "continuation": "a rep call returned SUCCESS with fewer reps than asked",
    "withdraw-to-the-end": "WithdrawMemory answered NO_RESOURCES",
    "ap-started": "a guest started an AP with StartVirtualProcessor",
    "host-crash-recovered": "a restarted host finished the job of a crashed one",
    "vp-crashed": "a guest crashed and reported it in its crash registers",
}


def coverage_of(result: Any) -> dict[str, list[str]]:
    """What one run reached: hypercall x status pairs, partition states, "sometimes" properties."""
    calls = sorted(
        f"{call}:{status}" for call, by in result.summary["hypercalls"]["by_call"].items() for status in by
    )
    states: set[str] = set()
    hit: set[str] = set()
    for rec in result.records or result.sim.log.records():
        event = rec["event"]
        if event == "partition.state":
            states.add(str(rec["new"] or "DELETED"))
        elif event == "host.restarted" and result.ok:
            hit.add("host-crash-recovered")
        elif event == "fault" and rec.get("kind") == "vp.crash":
            hit.add("vp-crashed")
        elif event == "hypercall" and rec["status"] == "SUCCESS" and rec["reps"] < rec.get("of", 0):
            hit.add("continuation")
    if any(c.endswith(":INSUFFICIENT_MEMORY") for c in calls):
        hit.add("insufficient-memory-retried")
    if "WithdrawMemory:NO_RESOURCES" in calls:
        hit.add("withdraw-to-the-end")
    if "StartVirtualProcessor:SUCCESS" in calls:
        hit.add("ap-started")
    return {"calls": calls, "states": sorted(states), "sometimes": sorted(hit)}


@dataclass(frozen=True)
class Campaign:
    scenario: str
    faults: str  # "none", "swarm", or a plan's TOML text
    host: str | None = None
    time_limit_s: int = 120

    def plan_for(self, seed: int) -> FaultPlan:
        if self.faults == "none":
            return FaultPlan()
        if self.faults == "swarm":
            return swarm_plan(random.Random(f"swarm:{seed}"), name=f"swarm-{seed}")
        return parse_plan(self.faults, "plan")

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class SeedResult:
    seed: int
    outcome: str
    checker: str | None
    message: str | None
    events: int
    sim_ns: int
    wall_s: float
    digest: str
    fired: str
    coverage: str = "{}"


class _SeedTimeout(BaseException):
    """A BaseException, so the runner's handling of host failures cannot mistake it for one."""


def _on_alarm(_signum: int, _frame: object) -> None:
    raise _SeedTimeout


def run_seed(
    campaign: Campaign, seed: int, artifact_root: str | None, shown_root: str | None = None
) -> SeedResult:
    """One seed, in a worker process (top-level so it pickles). Never raises. A failure's artifact
    goes under *artifact_root*; its repro command names *shown_root* (default: the same), where
    the artifact will be when a remote worker's files have been copied home."""
    start = time.perf_counter()
    # The wall-clock limit needs SIGALRM, which only the main thread of a process can take: local
    # worker processes have it; a Dask worker runs tasks in threads (README: limits on Dask).
    alarm = threading.current_thread() is threading.main_thread()
    if alarm:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(campaign.time_limit_s)
    try:
        plan = campaign.plan_for(seed)
        host_class = load_host_class(campaign.host) if campaign.host else None
        result = run_scenario(campaign.scenario, seed, plan=plan, host_class=host_class)
    except _SeedTimeout:
        return SeedResult(
            seed, "harness", None, f"seed exceeded {campaign.time_limit_s} s", 0, 0, 0.0, "", ""
        )
    except Exception as exc:  # hvsim itself failed: a harness error, reported, never swallowed
        return SeedResult(seed, "harness", None, f"{type(exc).__name__}: {exc}", 0, 0, 0.0, "", "")
    finally:
        if alarm:
            signal.alarm(0)
    lines = result.sim.log.lines
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    if result.ok:
        outcome, checker, message = "pass", None, None
    elif result.error is not None:
        outcome, checker, message = "host-error", None, result.error
    else:
        first = result.violations[0]
        outcome = "liveness" if first.checker in LIVENESS_CHECKERS else "safety"
        checker, message = first.checker, first.message
    fired = json.dumps((result.summary.get("faults") or {}).get("fired", {}), sort_keys=True)
    coverage = json.dumps(coverage_of(result), sort_keys=True)
    if outcome != "pass" and artifact_root is not None:
        folder = f"seed-{seed}"
        shown = Path(shown_root or artifact_root) / folder
        _write_artifact(Path(artifact_root) / folder, campaign, seed, plan, result, shown)
    return SeedResult(
        seed,
        outcome,
        checker,
        message,
        len(lines),
        result.sim.now_ns,
        time.perf_counter() - start,
        digest,
        fired,
        coverage,
    )


def repro_command(campaign: Campaign, seed: int, plan_path: Path | None, limits: Limits | None = None) -> str:
    parts = ["hvsim", "run", campaign.scenario, "--seed", str(seed)]
    if plan_path is not None:
        parts += ["--faults", str(plan_path)]
    if campaign.host:
        parts += ["--host", campaign.host]
    for name, value in (limits or Limits()).to_json().items():
        parts += ["--limit", f"{name}={value}"]
    return shlex.join(parts)  # pasted into a shell as is, whatever the folder names hold


def _write_artifact(
    folder: Path, campaign: Campaign, seed: int, plan: FaultPlan, result: Any, shown: Path
) -> None:
    write_outputs(result, folder)
    plan_path = None
    if plan.faults:
        (folder / "plan.toml").write_text(plan.to_toml())
        plan_path = shown / "plan.toml"
    (folder / "events-tail.jsonl").write_text("\n".join(result.sim.log.lines[-200:]) + "\n")
    manifest = {"campaign": asdict(campaign), "seed": seed, "repro": repro_command(campaign, seed, plan_path)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


class ResultStore:
    """``DIR/results.sqlite``: one row per seed; the campaign's identity in ``meta``."""

    def __init__(self, path: Path, campaign: Campaign) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS seeds (seed INTEGER PRIMARY KEY, outcome TEXT, checker TEXT,"
            " message TEXT, events INTEGER, sim_ns INTEGER, wall_s REAL, digest TEXT, fired TEXT,"
            " coverage TEXT)"
        )
        row = self.db.execute("SELECT value FROM meta WHERE key = 'campaign'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('campaign', ?)", (campaign.key(),))
            # The catalogue travels with the results, so a report can say what each one means.
            self.db.execute("INSERT INTO meta VALUES ('sometimes', ?)", (json.dumps(SOMETIMES),))
            self.db.commit()
        elif row[0] != campaign.key():
            raise ValueError(f"{path} holds a different campaign; use another --out folder")

    def done(self) -> set[int]:
        return {seed for (seed,) in self.db.execute("SELECT seed FROM seeds")}

    def add(self, r: SeedResult) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO seeds VALUES (?,?,?,?,?,?,?,?,?,?)", tuple(asdict(r).values())
        )
        self.db.commit()

    def results(self, seeds: range) -> list[SeedResult]:
        rows = self.db.execute(
            "SELECT * FROM seeds WHERE seed >= ? AND seed < ? ORDER BY seed", (seeds.start, seeds.stop)
        )
        return [SeedResult(*row) for row in rows]


def run_campaign(
    campaign: Campaign,
    seeds: range,
    out_dir: Path,
    *,
    jobs: int,
    on_result: Callable[[SeedResult], None] = lambda _r: None,
    scheduler: str | None = None,
) -> list[SeedResult]:
    """Run every seed of *seeds* not yet in *out_dir*'s store, *jobs* at a time (or on the Dask
    cluster whose scheduler is at *scheduler*); return all rows, in seed order."""
    store = ResultStore(out_dir / "results.sqlite", campaign)
    todo = [s for s in seeds if s not in store.done()]
    artifacts = str(out_dir / "failures")
    if scheduler is not None:
        from hvsim.scenarios.dask_backend import run_on_dask

        for r in run_on_dask(campaign, todo, scheduler, Path(artifacts)):
            store.add(r)
            on_result(r)
    elif jobs <= 1:
        for seed in todo:
            r = run_seed(campaign, seed, artifacts)
            store.add(r)
            on_result(r)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            pending: set[Future[SeedResult]] = set()
            queue: Iterator[int] = iter(todo)
            for seed in queue:
                pending.add(pool.submit(run_seed, campaign, seed, artifacts))
                if len(pending) >= 2 * jobs:
                    break
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    r = fut.result()
                    store.add(r)
                    on_result(r)
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.add(pool.submit(run_seed, campaign, nxt, artifacts))
    return store.results(seeds)


@dataclass
class Replay:
    identical: bool
    events: int
    #: (index, recorded line, replayed line) of the first difference, if any.
    first_difference: tuple[int, str, str] | None
    ok: bool


def replay_artifact(folder: Path) -> Replay:
    """Rerun a failure artifact's seed, plan and host; compare with its recorded event log."""
    manifest = json.loads((folder / "manifest.json").read_text())
    campaign = Campaign(**manifest["campaign"])
    plan_file = folder / "plan.toml"
    plan = parse_plan(plan_file.read_text(), str(plan_file)) if plan_file.exists() else FaultPlan()
    host_class = load_host_class(campaign.host) if campaign.host else None
    limits = Limits(**manifest.get("limits", {}))
    result = run_scenario(
        campaign.scenario, manifest["seed"], plan=plan, host_class=host_class, limits=limits
    )
    recorded = (folder / "events.jsonl").read_text().splitlines()
    replayed = result.sim.log.lines
    diff = next(((i, a, b) for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)) if a != b), None)
    if diff is None and len(recorded) != len(replayed):
        n = min(len(recorded), len(replayed))
        diff = (
            n,
            recorded[n] if n < len(recorded) else "<end>",
            replayed[n] if n < len(replayed) else "<end>",
        )
    return Replay(diff is None, len(replayed), diff, result.ok)


def campaign_coverage(results: list[SeedResult]) -> dict[str, Any]:
    """Coverage over a campaign (see :func:`hvsim.reports.campaign.campaign_coverage`)."""
    return coverage_over(results, SOMETIMES)


def promote(artifact: Path, corpus: Path, name: str | None = None) -> Path:
    """Store a failure artifact's case (scenario, seed, plan, host, limits) in a regression corpus.

    The test suite replays every case there and expects it to pass: once the bug is fixed it stays
    fixed. Only the inputs are kept (a few hundred bytes), not the event log.
    """
    manifest = json.loads((artifact / "manifest.json").read_text())
    campaign = manifest["campaign"]
    case_name = name or f"{Path(campaign['scenario']).stem}-seed-{manifest['seed']}"
    folder = corpus / case_name
    folder.mkdir(parents=True, exist_ok=False)
    case = {
        "scenario": campaign["scenario"],
        "seed": manifest["seed"],
        "host": campaign["host"],
        "limits": manifest.get("limits", {}),
    }
    (folder / "case.json").write_text(json.dumps(case, indent=2, sort_keys=True) + "\n")
    if (artifact / "plan.toml").exists():
        (folder / "plan.toml").write_text((artifact / "plan.toml").read_text())
    return folder


def run_corpus_case(folder: Path) -> Any:
    """Run one regression-corpus case; the caller asserts ``result.ok``."""
    case = json.loads((folder / "case.json").read_text())
    plan_file = folder / "plan.toml"
    plan = parse_plan(plan_file.read_text(), str(plan_file)) if plan_file.exists() else FaultPlan()
    host_class = load_host_class(case["host"]) if case.get("host") else None
    limits = Limits(**case.get("limits", {}))
    return run_scenario(case["scenario"], case["seed"], plan=plan, host_class=host_class, limits=limits)


def worst(results: list[SeedResult]) -> str:
    return max((r.outcome for r in results), key=_SEVERITY.index, default="pass")
