"""The campaign report (``hvsim report DIR`` on a chaos folder, and the end of ``hvsim chaos``), from
the user's side: the numbers agree with results.sqlite and the failure manifests, the page is
self-contained and renders in a real browser, and the CLI writes (or skips) it as documented."""

from __future__ import annotations

import csv
import html
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hvsim.reports.campaign import SEED_COLUMNS, write_campaign_report
from hvsim.scenarios.chaos import Campaign, ResultStore, run_campaign

HVSIM = [sys.executable, "-m", "hvsim.scenarios.cli"]
CHROMIUM = Path("/usr/bin/chromium")
OUTPUTS = ("report.html", "report.json", "report-seeds.csv")
HOST_MODULE = "campaign_report_buggy_host"  # not "buggy": other tests load a module of that name
HOST = f"{HOST_MODULE}:TrustsFirstNoResources"
BUGGY = '''
from hvsim.actors.hvdef import HvStatus as S
from hvsim.scenarios.host import ReferenceHost

class TrustsFirstNoResources(ReferenceHost):
    """Deletes after the first NO_RESOURCES without checking GetMemoryBalance."""
    def drain(self, partition_id):
        total = 0
        while True:
            status, pages = yield from self.api.withdraw(partition_id)
            self.sim.free_host_pages(pages)
            total += len(pages)
            if status is not S.SUCCESS:
                return total
'''
# The transient NO_RESOURCES trips the buggy host in some seeds (0, 1, 2 and 5 of 0-5); the latency
# fault fires in every seed, so the two kinds have different failed counts.
PLAN = """[[fault]]
kind = "hypercall.transient"
calls = ["WithdrawMemory"]
status = "NO_RESOURCES"
probability = 0.1

[[fault]]
kind = "hypercall.latency"
probability = 0.2
"""
SEEDS = range(6)
# A folder name that needs escaping in HTML: the repro commands name it.
FOLDER_NAME = "R&D <campaign>"


def hvsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVSIM, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def db_rows(folder: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(folder / "results.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM seeds ORDER BY seed")]


def db_meta(folder: Path) -> dict[str, str]:
    with sqlite3.connect(folder / "results.sqlite") as db:
        return dict(db.execute("SELECT key, value FROM meta"))


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lifecycle campaign of 6 seeds with a buggy host that fails some seeds but not all, reported."""
    base = tmp_path_factory.mktemp("campaign")
    (base / f"{HOST_MODULE}.py").write_text(BUGGY)
    folder = base / FOLDER_NAME
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)  # load_host_class imports MODULE from the current directory
        run_campaign(Campaign("lifecycle", PLAN, HOST), SEEDS, folder, jobs=1)
    outcomes = [r["outcome"] for r in db_rows(folder)]
    assert "pass" in outcomes and set(outcomes) != {"pass"}, outcomes  # the test needs a mix
    write_campaign_report(folder)
    return folder


@pytest.fixture(scope="module")
def all_pass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("all-pass") / "c"
    run_campaign(Campaign("lifecycle", "none"), range(3), folder, jobs=1)
    write_campaign_report(folder)
    return folder


def report_json(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "report.json").read_text())
    return data


# -- 1. a campaign with failures ------------------------------------------------------------------


def test_outcomes_are_the_counts_of_the_stored_rows(failing: Path) -> None:
    data = report_json(failing)
    rows = db_rows(failing)
    assert data["outcomes"] == dict(Counter(r["outcome"] for r in rows))
    assert data["seeds"] == len(SEEDS) and (data["first_seed"], data["last_seed"]) == (0, 5)
    assert data["events_total"] == sum(r["events"] for r in rows)
    assert data["campaign"] == json.loads(db_meta(failing)["campaign"])
    assert set(data["files"]) == set(OUTPUTS)


def test_failures_list_exactly_the_failing_seeds_with_their_manifest_repro(failing: Path) -> None:
    data = report_json(failing)
    failed = [r for r in db_rows(failing) if r["outcome"] != "pass"]
    assert [f["seed"] for f in data["failures"]] == [r["seed"] for r in failed]
    for f, r in zip(data["failures"], failed, strict=True):
        manifest = json.loads((failing / "failures" / f"seed-{r['seed']}" / "manifest.json").read_text())
        assert f["repro"] == manifest["repro"]
        assert f["repro"].startswith(f"hvsim run lifecycle --seed {r['seed']} ")
        assert (f["outcome"], f["checker"], f["message"]) == (r["outcome"], r["checker"], r["message"])


def test_fault_kinds_count_seeds_fired_and_failed_per_kind(failing: Path) -> None:
    fired: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for r in db_rows(failing):
        for kind, times in json.loads(r["fired"]).items():
            assert times > 0
            fired[kind] += 1
            failed[kind] += r["outcome"] != "pass"
    expected = {k: {"seeds_fired": fired[k], "seeds_failed": failed[k]} for k in fired}
    data = report_json(failing)
    assert data["fault_kinds"] == expected
    assert set(expected) == {"hypercall.transient", "hypercall.latency"}
    # The latency fault fires everywhere, the transient one only where the host then failed.
    assert expected["hypercall.latency"]["seeds_fired"] == len(SEEDS)
    transient = expected["hypercall.transient"]
    assert transient["seeds_fired"] == transient["seeds_failed"] == len(data["failures"])
    assert data["coverage"]["fault_kinds_fired"] == dict(fired)


def test_slowest_seeds_are_sorted_by_wall_time_descending(failing: Path) -> None:
    slowest = report_json(failing)["slowest"]
    walls = [s["wall_s"] for s in slowest]
    assert walls == sorted(walls, reverse=True) and len(slowest) == len(SEEDS)
    by_seed = {r["seed"]: r for r in db_rows(failing)}
    for s in slowest:
        assert s == {k: by_seed[s["seed"]][k] for k in ("seed", "outcome", "events", "sim_ns", "wall_s")}


def test_slowest_keeps_the_ten_slowest_of_a_bigger_campaign(tmp_path: Path, failing: Path) -> None:
    folder = tmp_path / "big"
    shutil.copytree(failing, folder)
    with sqlite3.connect(folder / "results.sqlite") as db:  # 8 more rows, copies with new timings
        walls = (3.0, 0.5, 7.0, 0.01, 2.5, 9.0, 1.5, 4.0)
        for i, wall in enumerate(walls):
            db.execute(
                "INSERT INTO seeds SELECT ?, outcome, checker, message, events, sim_ns, ?, digest,"
                " fired, coverage FROM seeds WHERE seed = ?",
                (100 + i, wall, i % len(SEEDS)),
            )
    data = write_campaign_report(folder)
    rows = db_rows(folder)
    assert data["seeds"] == 14
    top = sorted(rows, key=lambda r: -r["wall_s"])[:10]
    assert [s["seed"] for s in data["slowest"]] == [r["seed"] for r in top]
    assert [s["seed"] for s in data["slowest"][:3]] == [105, 102, 107]


def test_sometimes_never_hit_names_only_catalogue_properties(failing: Path) -> None:
    catalogue = json.loads(db_meta(failing)["sometimes"])
    assert catalogue  # the catalogue travels with the results
    hit = {name for r in db_rows(failing) for name in json.loads(r["coverage"])["sometimes"]}
    data = report_json(failing)
    never = data["coverage"]["sometimes_never_hit"]
    assert set(never) <= set(catalogue)
    assert never == sorted(set(catalogue) - hit)
    assert "host-crash-recovered" in never and "vp-crashed" in never  # no crash faults in the plan
    assert data["sometimes"] == catalogue


def test_seeds_csv_has_one_row_per_seed(failing: Path) -> None:
    with (failing / "report-seeds.csv").open(newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == SEED_COLUMNS
    rows = db_rows(failing)
    assert [int(r[0]) for r in table[1:]] == [r["seed"] for r in rows]
    for line, r in zip(table[1:], rows, strict=True):
        assert line[1] == r["outcome"] and line[-1] == r["digest"] and int(line[4]) == r["events"]
        assert line[3] == (r["message"] or "")


def test_html_is_self_contained_with_both_charts_repros_and_meanings(failing: Path) -> None:
    page = (failing / "report.html").read_text()
    assert "<script" not in page.lower() and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|file:)""", page)
    assert page.count("<svg") == 2  # outcome per seed, fault coverage
    assert "Seeds in which each fault kind fired" in page
    data = report_json(failing)
    for f in data["failures"]:
        assert f"<code>{html.escape(f['repro'])}</code>" in page
    assert FOLDER_NAME not in page  # only escaped: "&amp;" and "&lt;campaign&gt;"
    for name in data["coverage"]["sometimes_never_hit"]:
        assert f"<td>{html.escape(name)}</td><td>{html.escape(data['sometimes'][name])}</td>" in page
    assert "every seed passed" not in page


def test_same_campaign_same_report_bytes(tmp_path: Path, failing: Path) -> None:
    first = {name: (failing / name).read_bytes() for name in OUTPUTS}
    write_campaign_report(failing)
    assert {name: (failing / name).read_bytes() for name in OUTPUTS} == first


def test_the_repro_shown_is_a_command_line_a_shell_runs_as_is(failing: Path) -> None:
    for f in report_json(failing)["failures"]:
        plan = failing / "failures" / f"seed-{f['seed']}" / "plan.toml"
        assert str(plan) in shlex.split(f["repro"])


# -- 2. an all-pass campaign ----------------------------------------------------------------------


def test_all_pass_campaign_says_so_and_draws_no_fault_chart(all_pass: Path) -> None:
    data = report_json(all_pass)
    assert data["outcomes"] == {"pass": 3}
    assert data["failures"] == [] and data["fault_kinds"] == {}
    assert data["coverage"]["fault_kinds_fired"] == {}
    assert not (all_pass / "failures").exists()
    page = (all_pass / "report.html").read_text()
    assert "every seed passed" in page and "Failures (0)" in page
    assert page.count("<svg") == 1  # the outcome chart only
    assert "Seeds in which each fault kind fired" not in page
    assert "<script" not in page.lower()
    with (all_pass / "report-seeds.csv").open(newline="") as f:
        assert [r[:2] for r in list(csv.reader(f))[1:]] == [["0", "pass"], ["1", "pass"], ["2", "pass"]]


def test_a_campaign_with_no_finished_seed_yet_reports_without_none(tmp_path: Path) -> None:
    ResultStore(tmp_path / "results.sqlite", Campaign("lifecycle", "none")).db.close()
    data = write_campaign_report(tmp_path)
    assert data["seeds"] == 0 and data["outcomes"] == {}
    assert "None" not in (tmp_path / "report.html").read_text()


# -- 3. the command line --------------------------------------------------------------------------


def test_hvsim_report_on_a_campaign_folder_writes_and_names_the_three_files(
    tmp_path: Path, all_pass: Path
) -> None:
    shutil.copytree(all_pass, tmp_path / "c")
    for name in OUTPUTS:
        (tmp_path / "c" / name).unlink()
    res = hvsim("report", "c", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines() == [f"wrote c/{name}" for name in OUTPUTS]
    for name in OUTPUTS:
        assert (tmp_path / "c" / name).read_bytes() == (all_pass / name).read_bytes()


def test_hvsim_chaos_writes_the_report_unless_told_not_to(tmp_path: Path) -> None:
    res = hvsim("chaos", "lifecycle", "--seeds", "2", "--jobs", "1", "--out", "c", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "report: c/report.html" in res.stdout.splitlines()
    assert all((tmp_path / "c" / name).is_file() for name in OUTPUTS)
    assert report_json(tmp_path / "c")["outcomes"] == {"pass": 2}
    res = hvsim(
        "chaos", "lifecycle", "--seeds", "1", "--jobs", "1", "--out", "d", "--no-report", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "report:" not in res.stdout
    assert (tmp_path / "d" / "results.sqlite").is_file()
    assert not any((tmp_path / "d" / name).exists() for name in OUTPUTS)


def test_hvsim_report_on_a_garbage_results_file_is_a_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.sqlite").write_bytes(b"\x00\xffnot an SQLite file\n" * 64)
    res = hvsim("report", "c", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("hvsim: error:") and res.stderr.count("\n") == 1, res.stderr
    assert "results.sqlite" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "c" / "report.html").exists()


# -- 4. a real browser ----------------------------------------------------------------------------


def test_campaign_report_renders_in_chromium(tmp_path: Path, failing: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install the Debian package chromium for the real-browser check")
    from PIL import Image  # a matplotlib dependency

    png = tmp_path / "report.png"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1200,2000",
        "--enable-logging=stderr",
        "--v=0",
        (failing / "report.html").as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert png.is_file(), f"no screenshot (exit {res.returncode}): {res.stderr[-2000:]}"
    # This Chromium logs console.error() as INFO:CONSOLE, so look for any console line: a page
    # without scripts has none.
    for bad in ("Uncaught", ":CONSOLE"):
        assert bad not in res.stderr, res.stderr[-2000:]
    with Image.open(png) as im:
        rgb = im.convert("RGB")
    assert rgb.size == (1200, 2000)
    colours = dict((c, n) for n, c in rgb.getcolors(maxcolors=1 << 24) or [])
    assert len(colours) > 300, len(colours)  # a blank page has one colour
    # The outcome chart's dots: pass green and host-error yellow, as opaque pixels.
    assert {(85, 168, 104), (204, 185, 116)} <= set(colours)
    # The fault chart's bars: many strongly coloured pixels (text and table borders are grey).
    saturated = sum(n for c, n in colours.items() if max(c) - min(c) > 60)
    assert saturated > 3000, saturated
