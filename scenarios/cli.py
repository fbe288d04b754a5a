"""The ``hvsim`` command line: run, list, bench.

Exit codes: 0 success; 1 the run failed (a checker violation, a host error, nondeterminism);
2 bad usage (unknown flag or scenario, broken scenario script) -- always one line on stderr.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from hvsim.faults import FAULT_KINDS, FaultPlan, PlanError, load_plan, swarm_plan
from hvsim.reports.text import render_summary
from hvsim.scenarios.hostload import HostClassError, load_host_class
from hvsim.scenarios.library import DEFAULT_SCENARIO, SCENARIOS, ScenarioError, load
from hvsim.scenarios.runner import run_scenario

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
def run(
    scenario: str,
    seed: int,
    out_dir: Path | None,
    check_determinism: bool,
    check_every_ns: int,
    faults_path: Path | None,
    swarm: bool,
    host_spec: str | None,
) -> None:
    """Run SCENARIO (a built-in name or a path to a scenario script) for one seed.

    Writes OUT/events.jsonl (the event log) and OUT/summary.json, and OUT/plan.toml when faults
    are on (rerun it with --faults to replay the run exactly); OUT defaults to runs/<scenario>-<seed>.
    """
    try:
        sc = load(scenario)
        plan = _plan(faults_path, swarm, seed)
        host_class = load_host_class(host_spec) if host_spec else None
    except (ScenarioError, PlanError, HostClassError) as exc:
        raise click.UsageError(str(exc)) from None
    out = out_dir or Path("runs") / f"{Path(sc.name).stem}-{seed}"
    result = run_scenario(
        sc, seed, out_dir=out, check_every_ns=check_every_ns or None, plan=plan, host_class=host_class
    )
    extra = []
    if plan.faults:
        (out / "plan.toml").write_text(plan.to_toml())
        extra += ["--faults", str(out / "plan.toml")]
    if host_spec:
        extra += ["--host", host_spec]
    click.echo(render_summary(result.summary, str(out)))
    failed = not result.ok
    if failed:
        click.echo(f"reproduce: hvsim run {scenario} --seed {seed} {' '.join(extra)}".rstrip(), err=True)
    if check_determinism:
        failed |= not _compare_with_fresh_process(scenario, seed, out / "events.jsonl", check_every_ns, extra)
    if failed:
        sys.exit(EXIT_FAILED)


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
               "--out", tmp, "--check-every-ns", str(check_every_ns), *extra]  # fmt: skip
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
def bench(out_file: Path, calls: int, repeat: int) -> None:
    """Measure hypercall throughput against raw SimPy on this machine (ratios, same run)."""
    from hvsim.scenarios.bench import run_benchmarks

    report = run_benchmarks(calls=calls, repeat=repeat, echo=click.echo)
    out_file.write_text(report.to_json())
    click.echo(f"wrote {out_file}")


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
