"""``compare_reports``: two runs side by side; real differences flagged, noise not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hvsim.reports.compare import differs
from hvsim.reports.report import compare_reports


@pytest.mark.parametrize(
    ("kind", "a", "b", "flag"),
    [
        ("latency_ns", 10_000, 10_500, False),  # 5%: noise
        ("latency_ns", 10_000, 12_000, True),  # 20% and 2 us
        ("latency_ns", 1_000, 1_500, False),  # 50% but only 0.5 us
        ("latency_ns", 300, 600, False),  # doubled, 0.3 us
        ("latency_ns", 50_000, 44_000, True),  # faster counts too
        ("count", 100, 104, False),
        ("count", 100, 120, True),
        ("count", 1, 3, False),  # tiny counts: 2 is within the absolute threshold
        ("count", 0, 5, True),
        ("per_ms", 80.0, 85.0, False),
        ("per_ms", 80.0, 95.0, True),
        ("pages", 48, 52, False),
        ("pages", 160, 208, True),
        ("wall", 40_000, 46_000, False),  # wall-clock speed: 25%
        ("wall", 40_000, 60_000, True),
        ("count", None, None, False),
        ("count", 3, None, True),  # only in one run
    ],
)
def test_noise_rule(kind: str, a: float | None, b: float | None, flag: bool) -> None:
    assert differs(kind, a, b) is flag


def rows_by_metric(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = [r | {"metric": f"{c['call']} {r['metric']}"} for c in data["hypercalls"] for r in c["rows"]]
    rows += data["throughput"] + data["pools"] + data["spans"]
    return {r["metric"]: r for r in rows}


def test_noise_is_not_flagged(tmp_path: Path, make_run: Any, synthetic: Any) -> None:
    a = make_run("a", synthetic(3_000, seed=1))
    b = make_run("b", synthetic(3_000, seed=1, cost_scale=1.05))  # every call 5% slower
    data = compare_reports(a, b, tmp_path / "cmp")
    flagged = [m for m, r in rows_by_metric(data).items() if r["flag"]]
    assert flagged == [] and data["flagged"] == 0
    dep = rows_by_metric(data)["DepositMemory p50_ns"]
    assert dep["a"] == 3_400 and dep["b"] == 3_570 and dep["diff"] == 170 and dep["rel"] == 0.05


def test_real_differences_are_flagged(tmp_path: Path, make_run: Any, synthetic: Any) -> None:
    a = make_run("a", synthetic(3_000, seed=1))
    c = make_run("c", synthetic(3_000, seed=1, cost_scale=2.0))  # every call twice as slow
    out = tmp_path / "cmp"
    data = compare_reports(a, c, out)
    rows = rows_by_metric(data)
    # DepositMemory goes 3.4 -> 6.8 us: flagged; the sub-microsecond calls double by < 1 us: noise
    assert rows["DepositMemory p50_ns"]["flag"] and rows["DepositMemory p99_ns"]["flag"]
    assert not rows["GetPartitionId p50_ns"]["flag"] and not rows["GetVpRegisters p50_ns"]["flag"]
    assert rows["mean hypercalls per ms"]["flag"] and rows["simulated time (ns)"]["flag"]
    assert not rows["hypercalls"]["flag"]  # same number of calls
    assert data["flagged"] == sum(r["flag"] for r in rows.values()) >= 4
    assert json.loads((out / "compare.json").read_text()) == data
    html = (out / "compare.html").read_text()
    assert html.count("<svg") == 2 and "<script" not in html
    assert "differs" in html and "relative threshold" in html and 'class="flag"' in html
    assert "A: a" in html and "B: c" in html


def test_a_call_in_one_run_only_and_pool_changes(tmp_path: Path, make_run: Any, synthetic: Any) -> None:
    recs = synthetic(2_000, seed=3)
    extra = dict(
        recs[-1],
        seq=len(recs),
        event="hypercall",
        caller=1,
        vp=0,
        call="WithdrawMemory",
        status="NO_RESOURCES",
        reps=0,
        cost_ns=5_000,
    )
    extra.pop("fired", None)
    bigger_pool = [dict(r, in_use=r["in_use"] + 100) if r["event"] == "pool" else r for r in recs]
    a = make_run("a", recs)
    b = make_run("b", [*bigger_pool, extra])
    data = compare_reports(a, b, tmp_path / "cmp")
    withdraw = next(c for c in data["hypercalls"] if c["call"] == "WithdrawMemory")
    assert withdraw["a"] is None and withdraw["b"]["count"] == 1 and withdraw["flag"]
    rows = rows_by_metric(data)
    assert rows["partition 2 peak in use"]["flag"] and rows["partition 2 peak in use"]["diff"] == 100
    assert not rows["partition 2 final available"]["flag"]


def test_compare_is_deterministic(tmp_path: Path, make_run: Any, synthetic: Any) -> None:
    a = make_run("a", synthetic(1_500, seed=4))
    b = make_run("b", synthetic(1_500, seed=5))
    compare_reports(a, b, tmp_path / "one")
    compare_reports(a, b, tmp_path / "two")
    for name in ("compare.json", "compare.html"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
