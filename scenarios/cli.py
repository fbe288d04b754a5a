"""The ``hvsim`` command line: run, list, bench.

Exit codes: 0 success; 1 the run failed (a checker violation, a host error, nondeterminism);
2 bad usage (unknown flag or scenario, broken scenario script) -- always one line on stderr.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from hvsim.faults import FAULT_KINDS, FaultPlan, PlanError, load_plan, swarm_plan
from hvsim.reports.cli import report_command, trace_command
from hvsim.reports.text import render_summary
from hvsim.scenarios.hostload import HostClassError, load_host_class
from hvsim.scenarios.library import DEFAULT_SCENARIO, SCENARIOS, ScenarioError, load
from hvsim.scenarios.runner import run_scenario
from hvsim.scenarios.simulation import LIMIT_NAMES, Limits

EXIT_FAILED = 1
EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hvsim")
def cli() -> None:
    """hvsim: a deterministic simulated Hyper-V hypervisor for testing virtualization hosts."""


@cli.command("list")
def list_scenarios() -> None:
    """List the built-in scenarios."""
    width = max(map(len, SCENARIOS))
    for name, sc in SCENARIOS.items():
        mark = " (default)" if name == DEFAULT_SCENARIO else ""
        click.echo(f"{name:<{width}}  {sc.description}{mark}")


@cli.command("run")
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="World seed.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--check-determinism", is_flag=True, help="Run twice (second in a fresh process) and compare logs."
)
@click.option("--check-every-ns", type=click.IntRange(0), default=1_000_000, show_default=True,
              help="Simulated ns between quiescent-point state checks (0: only at the end).")  # fmt: skip
@click.option("--faults", "faults_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A fault plan (TOML) to run under.")  # fmt: skip
@click.option("--swarm", is_flag=True, help="Draw a random fault plan from the seed (swarm testing).")
@click.option("--host", "host_spec", metavar="MODULE:CLASS",
              help="Host policy to test instead of the reference host.")  # fmt: skip
@click.option("--no-report", is_flag=True, help="Do not write OUT/report.html (and its JSON/CSV).")
@click.option("--limit", "limit_specs", multiple=True, metavar="NAME=N",
              help=f"Cap the workload ({', '.join(LIMIT_NAMES)}); repeatable.")  # fmt: skip
def run(
    scenario: str,
    seed: int,
    out_dir: Path | None,
    check_determinism: bool,
    check_every_ns: int,
    faults_path: Path | None,
    swarm: bool,
    host_spec: str | None,
    no_report: bool,
    limit_specs: tuple[str, ...],
) -> None:
    """Run SCENARIO (a built-in name or a path to a scenario script) for one seed.

    Writes OUT/events.jsonl (the event log) and OUT/summary.json, and OUT/plan.toml when faults
    are on (rerun it with --faults to replay the run exactly); OUT defaults to runs/<scenario>-<seed>.
    """
    try:
        sc = load(scenario)
        plan = _plan(faults_path, swarm, seed)
        host_class = load_host_class(host_spec) if host_spec else None
        limits = parse_limits(limit_specs)
    except (ScenarioError, PlanError, HostClassError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    out = out_dir or Path("runs") / f"{Path(sc.name).stem}-{seed}"
    result = run_scenario(
        sc, seed, out_dir=out, check_every_ns=check_every_ns or None, plan=plan, host_class=host_class,
        limits=limits,
    )  # fmt: skip
    extra = [arg for name, value in limits.to_json().items() for arg in ("--limit", f"{name}={value}")]
    if plan.faults:
        (out / "plan.toml").write_text(plan.to_toml())
        extra += ["--faults", str(out / "plan.toml")]
    if host_spec:
        extra += ["--host", host_spec]
    click.echo(render_summary(result.summary, str(out)))
    if not no_report:
        from hvsim.reports.report import write_report  # matplotlib loads only when a report is wanted

        write_report(out)
        click.echo(f"  report: {out}/report.html (trace for Perfetto: hvsim trace {out})")
    failed = not result.ok
    if failed:
        click.echo(f"reproduce: hvsim run {scenario} --seed {seed} {' '.join(extra)}".rstrip(), err=True)
    if check_determinism:
        failed |= not _compare_with_fresh_process(scenario, seed, out / "events.jsonl", check_every_ns, extra)
    if failed:
        sys.exit(EXIT_FAILED)


def parse_limits(specs: tuple[str, ...]) -> Limits:
    """``("partitions=1", "vps=2")`` -> Limits; a bad spec is a one-line ValueError."""
    values: dict[str, int] = {}
    for spec in specs:
        name, _, number = spec.partition("=")
        if name not in LIMIT_NAMES or not number.isdigit():
            raise ValueError(f"--limit {spec!r}: expected NAME=N with NAME one of {', '.join(LIMIT_NAMES)}")
        values[name] = int(number)
    return Limits(**values)


def _plan(faults_path: Path | None, swarm: bool, seed: int) -> FaultPlan:
    if faults_path is not None and swarm:
        raise PlanError("--faults and --swarm are alternatives: give one")
    if faults_path is not None:
        return load_plan(faults_path)
    if swarm:
        return swarm_plan(random.Random(f"swarm:{seed}"), name=f"swarm-{seed}")
    return FaultPlan()


def _compare_with_fresh_process(
    scenario: str, seed: int, first: Path, check_every_ns: int, extra: list[str]
) -> bool:
    with tempfile.TemporaryDirectory(prefix="hvsim-det-") as tmp:
        env = dict(os.environ, PYTHONHASHSEED=str(int.from_bytes(os.urandom(2), "little")))
        cmd = [sys.executable, "-m", "hvsim.scenarios.cli", "run", scenario, "--seed", str(seed),
               "--out", tmp, "--check-every-ns", str(check_every_ns), "--no-report", *extra]  # fmt: skip
        subprocess.run(cmd, env=env, capture_output=True, check=False)
        second = Path(tmp) / "events.jsonl"
        if not second.exists():
            click.echo("determinism: the second run wrote no event log", err=True)
            return False
        a, b = first.read_bytes().splitlines(), second.read_bytes().splitlines()
    for i, (line_a, line_b) in enumerate(zip(a, b, strict=False)):
        if line_a != line_b:
            click.echo(f"determinism: FAILED, first difference at event {i}:", err=True)
            click.echo(f"  run 1: {line_a.decode()}\n  run 2: {line_b.decode()}", err=True)
            return False
    if len(a) != len(b):
        click.echo(f"determinism: FAILED, {len(a)} events vs {len(b)}", err=True)
        return False
    click.echo(f"determinism: OK, {len(a)} events identical in a fresh process")
    return True


@cli.command("chaos")
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option("--seeds", type=click.IntRange(1), default=100, show_default=True, help="How many seeds.")
@click.option("--start", type=click.IntRange(0), default=0, show_default=True, help="First seed.")
@click.option("--swarm", is_flag=True, help="A random fault plan per seed.")
@click.option("--faults", "faults_path", type=click.Path(dir_okay=False, path_type=Path),
              help="One fault plan for every seed.")  # fmt: skip
@click.option("--host", "host_spec", metavar="MODULE:CLASS", help="Host policy under test.")
@click.option("--jobs", type=click.IntRange(1), default=os.cpu_count() or 1, show_default="all cores",
              help="Worker processes.")  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Campaign folder (default: chaos/<scenario>).")  # fmt: skip
@click.option("--time-limit", type=click.IntRange(1), default=120, show_default=True,
              help="Wall seconds one seed may take.")  # fmt: skip
@click.option("--check-determinism", is_flag=True, help="Rerun a sample of seeds and compare event logs.")
@click.option("--no-report", is_flag=True, help="Do not write DIR/report.html (and its JSON/CSV).")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run on a Dask cluster (e.g. tcp://host:8786) instead of local workers.")  # fmt: skip
def chaos(
    scenario: str,
    seeds: int,
    start: int,
    swarm: bool,
    faults_path: Path | None,
    host_spec: str | None,
    jobs: int,
    out_dir: Path | None,
    time_limit: int,
    check_determinism: bool,
    no_report: bool,
    scheduler: str | None,
) -> None:
    """Run SCENARIO for many seeds in parallel; resume with the same command after an interruption.

    Exit status: 0 every seed passed; 3 a safety violation; 4 a liveness violation or host error;
    5 nondeterminism; 6 a harness error (hvsim failed, or a seed exceeded --time-limit).
    """
    from hvsim.scenarios.chaos import EXIT_CODES, Campaign, SeedResult, run_campaign, run_seed, worst
    from hvsim.scenarios.dask_backend import DaskUnavailable

    try:
        sc = load(scenario)
        if faults_path is not None and swarm:
            raise PlanError("--faults and --swarm are alternatives: give one")
        faults = "swarm" if swarm else load_plan(faults_path).to_toml() if faults_path else "none"
        if host_spec:
            load_host_class(host_spec)
    except (ScenarioError, PlanError, HostClassError) as exc:
        raise click.UsageError(str(exc)) from None
    campaign = Campaign(scenario, faults, host_spec, time_limit)
    out = out_dir or Path("chaos") / Path(sc.name).stem
    seed_range = range(start, start + seeds)
    failures = [0]
    began = time.perf_counter()

    def show(r: SeedResult | None) -> str:
        rate = bar.pos / max(time.perf_counter() - began, 1e-9) if r is not None else 0.0
        return f"{failures[0]} failed, {rate:.1f} seeds/s"

    try:
        with click.progressbar(length=seeds, label="seeds", show_eta=True, item_show_func=show) as bar:

            def on_result(r: SeedResult) -> None:
                failures[0] += r.outcome != "pass"
                bar.update(1, r)

            bar.update(0)
            results = run_campaign(
                campaign, seed_range, out, jobs=jobs, on_result=on_result, scheduler=scheduler
            )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except DaskUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CODES["harness"])
    outcome = worst(results)
    _chaos_table(results, out)
    if not no_report:
        from hvsim.reports.campaign import write_campaign_report

        write_campaign_report(out)
        click.echo(f"report: {out}/report.html")
    if check_determinism:
        sample = results[:: max(1, len(results) // 10)][:10]
        for r in sample:
            again = run_seed(campaign, r.seed, None)
            if again.digest != r.digest:
                click.echo(f"determinism: FAILED for seed {r.seed} (event-log digests differ)", err=True)
                outcome = "nondeterminism"
                break
        else:
            click.echo(f"determinism: OK, {len(sample)} seeds rerun with identical event logs")
    sys.exit(EXIT_CODES[outcome])


def _chaos_table(results: list[Any], out: Path) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    click.echo(f"{len(results)} seeds: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    failed = [r for r in results if r.outcome != "pass"]
    if failed:
        click.echo(f"{'seed':>8}  {'outcome':<14} {'checker':<20} message")
        for r in failed[:20]:
            click.echo(f"{r.seed:>8}  {r.outcome:<14} {r.checker or '-':<20} {(r.message or '')[:80]}")
        if len(failed) > 20:
            click.echo(f"... {len(failed) - 20} more in {out}/results.sqlite")
        first = failed[0]
        manifest = out / "failures" / f"seed-{first.seed}" / "manifest.json"
        if manifest.exists():
            click.echo("reproduce: " + json.loads(manifest.read_text())["repro"])
    from hvsim.scenarios.chaos import SOMETIMES, campaign_coverage

    cov = campaign_coverage(results)
    fired = ", ".join(f"{k} ({n} seeds)" for k, n in cov["fault_kinds_fired"].items()) or "none"
    click.echo(f"coverage: faults fired: {fired}")
    click.echo(
        f"coverage: {len(cov['call_status_pairs'])} hypercall x status pairs; "
        f"partition states reached: {', '.join(cov['partition_states'])}"
    )
    for name in cov["sometimes_never_hit"]:
        click.echo(f"coverage: never happened: {name} ({SOMETIMES[name]})")
    slowest = sorted(results, key=lambda r: -r.wall_s)[:3]
    click.echo("slowest seeds: " + ", ".join(f"{r.seed} ({r.wall_s:.2f} s)" for r in slowest))
    click.echo(f"results: {out}/results.sqlite")


@cli.command("replay")
@click.argument("artifact", type=click.Path(file_okay=False, path_type=Path))
def replay(artifact: Path) -> None:
    """Rerun a chaos failure artifact (DIR/failures/seed-N) and check it reproduces exactly.

    Exit status: 0 identical event log; 5 it differs (nondeterminism).
    """
    from hvsim.scenarios.chaos import EXIT_CODES, replay_artifact

    if not (artifact / "manifest.json").is_file():
        raise click.UsageError(f"{artifact} is not a failure artifact (no manifest.json)")
    try:
        outcome = replay_artifact(artifact)
    except (ScenarioError, PlanError, HostClassError) as exc:
        raise click.UsageError(str(exc)) from None
    verdict = "passed" if outcome.ok else "failed again"
    if outcome.identical:
        click.echo(f"replay: identical, {outcome.events} events; the run {verdict}")
        return
    index, recorded, replayed = outcome.first_difference or (0, "", "")
    click.echo(
        f"replay: DIFFERENT at event {index}:\n  recorded: {recorded}\n  replayed: {replayed}", err=True
    )
    sys.exit(EXIT_CODES["nondeterminism"])


@cli.command("promote")
@click.argument("artifact", type=click.Path(file_okay=False, path_type=Path))
@click.option("--corpus", type=click.Path(file_okay=False, path_type=Path), default=Path("tests/corpus"),
              show_default=True, help="Regression corpus folder the test suite replays.")  # fmt: skip
@click.option("--name", help="Case name (default: <scenario>-seed-<seed>).")
def promote_command(artifact: Path, corpus: Path, name: str | None) -> None:
    """Keep a chaos failure as a regression case: the test suite replays it and expects a pass."""
    from hvsim.scenarios.chaos import promote

    if not (artifact / "manifest.json").is_file():
        raise click.UsageError(f"{artifact} is not a failure artifact (no manifest.json)")
    try:
        folder = promote(artifact, corpus, name)
    except FileExistsError:
        raise click.UsageError(f"{corpus}/{name or 'that case'} exists already; choose --name") from None
    click.echo(f"promoted to {folder} (tests/test_corpus.py replays it)")


@cli.command("shrink")
@click.argument("artifact", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the minimal artifact (default: ARTIFACT-min).")  # fmt: skip
def shrink_command(artifact: Path, out_dir: Path | None) -> None:
    """Shrink a failure artifact: the fewest faults and the smallest workload that still fail the
    same way."""
    from hvsim.scenarios.shrink import shrink_artifact

    if not (artifact / "manifest.json").is_file():
        raise click.UsageError(f"{artifact} is not a failure artifact (no manifest.json)")
    out = out_dir or artifact.with_name(artifact.name + "-min")
    try:
        s = shrink_artifact(artifact, out)
    except (ValueError, ScenarioError, PlanError, HostClassError) as exc:
        raise click.UsageError(str(exc)) from None
    limits = ", ".join(f"{k}={v}" for k, v in s.limits.items()) or "none"
    click.echo(
        f"shrunk: {s.signature}; faults {s.faults_before} -> {s.faults_after}, limits {limits}, "
        f"events {s.events_before} -> {s.events_after}, {s.runs} runs in {s.seconds:.1f} s"
    )
    click.echo(
        f"wrote {s.folder}; reproduce: {json.loads((s.folder / 'manifest.json').read_text())['repro']}"
    )


@cli.group("faults")
def faults_group() -> None:
    """Fault kinds and plans."""


@faults_group.command("list")
def faults_list() -> None:
    """List the fault kinds and their knobs."""
    for kind, model in sorted(FAULT_KINDS.items()):
        doc = " ".join((model.__doc__ or "").split())
        knobs = [name for name in model.model_fields if name != "kind"]
        click.echo(f"{kind}\n    {doc}\n    knobs: {', '.join(knobs)}")


@faults_group.command("swarm")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the plan here (default: print it).")  # fmt: skip
def faults_swarm(seed: int, out_file: Path | None) -> None:
    """Print (or write) the plan `hvsim run --swarm --seed SEED` would draw."""
    text = swarm_plan(random.Random(f"swarm:{seed}"), name=f"swarm-{seed}").to_toml()
    if out_file is None:
        click.echo(text, nl=False)
    else:
        out_file.write_text(text)


@cli.command("bench")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("bench.json"), show_default=True, help="Where to write the JSON.")  # fmt: skip
@click.option("--calls", type=click.IntRange(1000), default=200_000, show_default=True,
              help="Hypercall round trips per measurement.")  # fmt: skip
@click.option("--repeat", type=click.IntRange(1, 20), default=3, show_default=True, help="Best of N.")
@click.option("--chaos-seeds", type=click.IntRange(0), default=40, show_default=True,
              help="Seeds per chaos measurement (0: skip it).")  # fmt: skip
def bench(out_file: Path, calls: int, repeat: int, chaos_seeds: int) -> None:
    """Measure hypercall throughput against raw SimPy on this machine (ratios, same run)."""
    from hvsim.scenarios.bench import run_benchmarks

    report = run_benchmarks(calls=calls, repeat=repeat, echo=click.echo, chaos_seeds=chaos_seeds)
    out_file.write_text(report.to_json())
    click.echo(f"wrote {out_file}")


cli.add_command(report_command)
cli.add_command(trace_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: click in non-standalone mode so every usage error is one line."""
    try:
        cli.main(args=argv, prog_name="hvsim", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"hvsim: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        click.echo("hvsim: aborted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
