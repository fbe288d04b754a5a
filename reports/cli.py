"""``hvsim report`` and ``hvsim trace``: standalone click commands, registered on the ``hvsim`` group.

Both only read run folders (``hvsim run --out DIR``). Bad usage -- a missing folder, one without an
``events.jsonl``, a broken log, the wrong number of folders -- is a :class:`click.UsageError` with a
one-line message (exit code 2). The writers are imported when a command runs, so registering the
commands on the ``hvsim`` group costs ``hvsim run`` no matplotlib import.
"""

from __future__ import annotations

from pathlib import Path

import click

from hvsim.reports.events import ReportError

__all__ = ["report_command", "trace_command"]


@click.command("report")
@click.argument("dirs", nargs=-1, metavar="DIR [DIR_B]", type=click.Path(path_type=Path))
@click.option("--compare", is_flag=True, help="Compare two runs: hvsim report A B --compare.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where --compare writes compare.html/json (default: ./compare-A-vs-B).",
)
def report_command(dirs: tuple[Path, ...], compare: bool, out_dir: Path | None) -> None:
    """Write DIR/report.html, report.json and report-*.csv for the run (or chaos campaign) in DIR.

    With --compare, read runs A and B and write compare.html and compare.json to --out,
    flagging the differences larger than noise.
    """
    from hvsim.reports.report import compare_reports, write_report

    try:
        if compare:
            if len(dirs) != 2:
                raise click.UsageError(f"--compare takes two run folders (A B), got {len(dirs)}")
            a, b = dirs
            out = out_dir or Path(f"compare-{a.resolve().name}-vs-{b.resolve().name}")
            data = compare_reports(a, b, out)
            click.echo(f"wrote {out / 'compare.html'} and {out / 'compare.json'}")
            click.echo(f"{data['flagged']} metrics differ beyond noise")
            return
        if out_dir is not None:
            raise click.UsageError("--out is for --compare; a single report is written into DIR")
        if len(dirs) != 1:
            raise click.UsageError(f"expected one run folder, got {len(dirs)} (two need --compare)")
        (run_dir,) = dirs
        if (run_dir / "results.sqlite").is_file():  # a chaos campaign folder
            from hvsim.reports.campaign import write_campaign_report

            data = write_campaign_report(run_dir)
        else:
            data = write_report(run_dir)
    except ReportError as exc:
        raise click.UsageError(str(exc)) from None
    for name in data["files"]:
        click.echo(f"wrote {run_dir / name}")


@click.command("trace")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
def trace_command(run_dir: Path) -> None:
    """Write DIR/trace.json, the run as a Chrome/Perfetto trace (open it in ui.perfetto.dev)."""
    from hvsim.reports.trace import write_trace

    try:
        out = write_trace(run_dir)
    except ReportError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote {out} (open it in the Perfetto UI or chrome://tracing)")
