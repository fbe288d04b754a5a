"""``write_report``: the numbers of a hand-written log, the files written, and what the page holds."""

from __future__ import annotations

import ast
import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hvsim.reports.events import ReportError, percentile
from hvsim.reports.report import write_report
from hvsim.reports.stats import bin_width
from hvsim.reports.trace import write_trace

REPORTS = Path(__file__).resolve().parents[2] / "reports"


@pytest.fixture
def report(hand_run: Path) -> dict[str, Any]:
    return write_report(hand_run)


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 11))
    assert [percentile(values, p) for p in (50, 90, 99, 100)] == [5, 9, 10, 10]
    assert percentile([7], 50) == 7 and percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 101)), 7) == 7  # exact rank: no float rounding up to 8
    with pytest.raises(ValueError):
        percentile([], 50)


def test_bin_width_is_a_round_number_giving_at_most_100_bins() -> None:
    assert bin_width(1_000_000) == 10_000
    assert bin_width(20_394_800) == 500_000
    assert bin_width(10) == 1_000
    assert bin_width(250_000_000) == 5_000_000


def test_latency_per_call(report: dict[str, Any]) -> None:
    calls = report["timing"]["hypercalls"]
    assert calls["GetVpRegisters"] == {
        "count": 10,
        "non_success": 0,
        "p50_ns": 5_000,
        "p90_ns": 9_000,
        "p99_ns": 10_000,
        "max_ns": 10_000,
    }
    assert calls["DepositMemory"] == {
        "count": 4,
        "non_success": 0,
        "p50_ns": 3_000,
        "p90_ns": 40_000,
        "p99_ns": 40_000,
        "max_ns": 40_000,
    }
    assert calls["CreatePartition"]["count"] == 2 and calls["CreatePartition"]["non_success"] == 1
    assert calls["CreatePartition"]["p50_ns"] == 20_000
    assert list(calls) == sorted(calls)
    assert report["timing"]["hypercalls_all"]["count"] == 16


def test_boot_teardown_and_vp_times(report: dict[str, Any]) -> None:
    t = report["timing"]
    assert t["boots"]["rows"] == [
        {"partition": 2, "host_vp": 0, "start_ns": 0, "end_ns": 100_000, "duration_ns": 100_000}
    ]
    assert t["boots"]["count"] == 1 and t["boots"]["p50_ns"] == 100_000 and t["boots"]["unfinished"] == []
    assert t["teardowns"]["rows"] == [
        {"partition": 2, "host_vp": 0, "start_ns": 600_000, "end_ns": 700_000, "duration_ns": 100_000}
    ]
    assert t["vps"] == [
        {
            "partition": 2,
            "vp": 0,
            "created_ns": 90_000,
            "end_ns": 700_000,
            "run_ns": 400_000,
            "suspended_ns": 210_000,
            "run_periods": 2,
            "runnable_at_end": False,
        },
        {
            "partition": 2,
            "vp": 1,
            "created_ns": 95_000,
            "end_ns": 700_000,
            "run_ns": 0,
            "suspended_ns": 605_000,
            "run_periods": 0,
            "runnable_at_end": False,
        },
    ]
    assert "intercept" in t["intercepts"]["note"].lower()


def test_throughput_memory_faults_checkers(report: dict[str, Any]) -> None:
    tp = report["throughput"]
    assert tp["bin_ns"] == 10_000 and len(tp["bins"]) == 100
    assert tp["hypercalls"] == 16 and tp["mean_per_ms"] == 16.0 and tp["peak_per_ms"] == 200.0
    assert tp["bins"][2] == [20_000, 2, 200.0]
    assert tp["latency_bins"][4] == [40_000, 40_000, 40_000, 40_000]
    assert tp["simulator"] == {"wall_seconds": 0.5, "events_per_wall_second": 100, "sim_to_wall_ratio": 0.002}
    pools = report["memory"]["pools"]
    assert pools["1"] == {
        "changes": 2,
        "final_available": 14,
        "final_in_use": 2,
        "peak_in_use": 2,
        "peak_in_use_t": 23_000,
        "peak_available": 16,
    }
    assert pools["2"]["final_in_use"] == 0 and pools["2"]["peak_in_use"] == 160
    assert pools["2"]["peak_in_use_t"] == 83_000
    f = report["faults"]
    assert [(x["t"], x["kind"]) for x in f["fired"]] == [(150_000, "vp.pause"), (800_000, "host.crash")]
    assert f["by_kind"] == {"host.crash": 1, "vp.pause": 1}
    assert f["hypercalls_faulted"] == {"hypercall.partial#0": 1}
    assert f["host_crashes"] == [{"t": 800_000, "step": "teardown.end"}] and f["host_restarts"] == [800_000]
    assert f["window_ns"] == [0, 900_000] and f["plan"]["name"] == "hand"
    c = report["checkers"]
    assert c["ok"] is False and c["results"] == {"all-reclaimed": False, "page-conservation": True}
    assert c["violations"][0]["message"] == "partition 3 left"
    assert report["run"]["scenario"] == "hand" and report["run"]["sim_time_ns"] == 1_000_000


def test_files_json_and_csv_agree(hand_run: Path, report: dict[str, Any]) -> None:
    assert json.loads((hand_run / "report.json").read_text()) == report
    assert sorted(report["files"]) == sorted(p.name for p in hand_run.glob("report*"))
    with (hand_run / "report-latency.csv").open() as f:
        rows = {r["call"]: r for r in csv.DictReader(f)}
    assert rows["GetVpRegisters"] == {
        "call": "GetVpRegisters",
        "count": "10",
        "non_success": "0",
        "p50_ns": "5000",
        "p90_ns": "9000",
        "p99_ns": "10000",
        "max_ns": "10000",
    }
    spans = (hand_run / "report-spans.csv").read_text().splitlines()
    assert spans == [
        "kind,partition,host_vp,start_ns,end_ns,duration_ns",
        "boot,2,0,0,100000,100000",
        "teardown,2,0,600000,700000,100000",
    ]
    vps = list(csv.DictReader((hand_run / "report-vps.csv").open()))
    assert [(v["vp"], v["run_ns"], v["suspended_ns"]) for v in vps] == [
        ("0", "400000", "210000"),
        ("1", "0", "605000"),
    ]
    pools = (hand_run / "report-pools.csv").read_text().splitlines()
    assert pools[0] == "t_ns,partition,available,in_use" and pools[1:3] == ["20000,1,16,0", "23000,1,14,2"]
    assert len(pools) == 1 + 5
    tp = list(csv.reader((hand_run / "report-throughput.csv").open()))
    assert tp[3][:4] == ["20000", "10000", "2", "200.0"] and len(tp) == 101
    faults = list(csv.DictReader((hand_run / "report-faults.csv").open()))
    assert faults[0]["kind"] == "vp.pause" and json.loads(faults[0]["details"])["duration_ns"] == 50_000


def test_html_is_self_contained_with_inline_svg_charts(hand_run: Path, report: dict[str, Any]) -> None:
    html = (hand_run / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") >= 5  # latency per call, latency over time, VPs, throughput, pools
    for chart in ("latency-calls", "latency-time", "vps", "throughput", "pools"):
        assert f'id="chart-{chart}"' in html
    assert (
        "<script" not in html and "<link" not in html and "@import" not in html and "@font-face" not in html
    )
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html)
    assert not re.search(r"url\((?!#)", html)  # only in-document references (SVG clip paths)
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    for text in (
        "GetVpRegisters",
        "5.000",
        "Partition boot",
        "VP run / suspend",
        "Intercept round trips",
        "faults active",
        "vp.pause",
        "all-reclaimed",
        "FAILED",
        "Simulator speed",
        "partition 3 left",
    ):
        assert text in html, text


def test_report_without_summary(make_run: Any, hand_records: list[dict[str, Any]]) -> None:
    run = make_run("no-summary", hand_records)
    data = write_report(run)
    assert data["checkers"] is None and data["throughput"]["simulator"] is None
    assert data["run"]["sim_time_ns"] == 900_000  # the last record
    assert "No summary.json" in (run / "report.html").read_text()


def test_a_run_with_no_faults_hypercalls_or_vps(make_run: Any) -> None:
    run = make_run("empty", [{"t": 0, "seq": 0, "event": "sim.start", "seed": 0, "host_pages": 1, "root": 1}])
    data = write_report(run)
    assert data["timing"]["hypercalls"] == {} and data["throughput"]["hypercalls"] == 0
    assert data["faults"]["fired"] == [] and data["memory"]["pools"] == {}
    html = (run / "report.html").read_text()
    assert "No hypercalls." in html and "No fault plan" in html


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such folder"),
        ("", "empty event log"),
        ("not json\n", "events.jsonl:1: not JSON"),
        ('{"t": 0, "seq": 0, "event": "sim.start"}\n[1, 2]\n', "events.jsonl:2: not an event record"),
        ('{"t": "0", "seq": 0, "event": "x"}\n', "events.jsonl:1: not an event record"),
    ],
)
def test_bad_run_folders_raise_one_line_errors(tmp_path: Path, content: str | None, message: str) -> None:
    run = tmp_path / "run"
    if content is not None:
        run.mkdir()
        (run / "events.jsonl").write_text(content)
    with pytest.raises(ReportError, match=re.escape(message)) as info:
        write_report(run)
    assert "\n" not in str(info.value)


def test_a_folder_without_a_log_and_a_broken_summary(tmp_path: Path, make_run: Any) -> None:
    with pytest.raises(ReportError, match=r"no events\.jsonl"):
        write_report(tmp_path)
    run = make_run("broken", [{"t": 0, "seq": 0, "event": "sim.start"}])
    (run / "summary.json").write_text("{")
    with pytest.raises(ReportError, match=r"summary\.json: not JSON"):
        write_report(run)


def test_reports_never_import_the_simulation_layers() -> None:
    """hvsim.reports reads logs: it may name things from hvsim.actors.hvdef, never run a simulation."""
    offenders = []
    for path in sorted(REPORTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                if name.startswith(("hvsim.scenarios", "hvsim.faults")) or (
                    name.startswith("hvsim.actors")
                    and not name.startswith("hvsim.actors.hvdef")
                    and name != "hvsim.actors"
                ):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_a_record_missing_a_field_is_a_one_line_error(
    make_run: Any, hand_records: list[dict[str, Any]]
) -> None:
    broken = [{k: v for k, v in r.items() if k != "cost_ns"} if r["seq"] == 4 else r for r in hand_records]
    run = make_run("broken", broken)
    for write in (write_report, write_trace):
        expected = r"events\.jsonl: record seq 4 \(hypercall\) is not as hvsim writes it"
        with pytest.raises(ReportError, match=expected) as e:
            write(run)
        assert "cost_ns" in str(e.value) and "\n" not in str(e.value)
