"""``write_trace``: the Chrome / Perfetto trace-event document, checked against the format's rules."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hvsim.reports.events import ReportError
from hvsim.reports.trace import TID_BASE, build_trace, us, write_trace

#: Keys the trace-event format documents for the phases written here.
ALLOWED_KEYS = {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args", "s", "id", "bp"}
REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "i": {"name", "ph", "ts", "pid", "tid", "s"},
    "C": {"name", "ph", "ts", "pid", "tid", "args"},
    "M": {"name", "ph", "pid", "args"},
    "s": {"name", "cat", "ph", "ts", "pid", "tid", "id"},
    "f": {"name", "cat", "ph", "ts", "pid", "tid", "id", "bp"},
}


def ns(value: float) -> int:
    """What a trace reader makes of a ts/dur: microseconds times 1000, truncated."""
    return int(value * 1000.0)


def validate(doc: dict[str, Any]) -> None:
    """The trace-event format rules, as far as this writer uses the format."""
    assert list(doc) == ["displayTimeUnit", "traceEvents"] or set(doc) == {"displayTimeUnit", "traceEvents"}
    assert doc["displayTimeUnit"] == "ns"
    events = doc["traceEvents"]
    assert isinstance(events, list) and events
    process_names: dict[int, str] = {}
    thread_names: dict[int, tuple[int, str]] = {}
    stacks: dict[tuple[int, int], list[int]] = {}
    last_ts: dict[tuple[int, int], int] = {}
    flows: dict[int, dict[str, dict[str, Any]]] = {}
    open_at: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for ev in events:
        ph = ev["ph"]
        assert ph in REQUIRED, ev
        assert REQUIRED[ph] <= set(ev), (ph, ev)
        assert set(ev) <= ALLOWED_KEYS, ev
        assert isinstance(ev["name"], str) and isinstance(ev["pid"], int)
        if "args" in ev:
            assert isinstance(ev["args"], dict) and None not in ev["args"].values(), ev
        if ph == "M":
            assert ev["name"] in ("process_name", "thread_name") and isinstance(ev["args"]["name"], str)
            if ev["name"] == "process_name":
                process_names[ev["pid"]] = ev["args"]["name"]
            else:
                assert ev["tid"] not in thread_names, "thread ids are unique across processes"
                assert ev["tid"] != ev["pid"]
                thread_names[ev["tid"]] = (ev["pid"], ev["args"]["name"])
            continue
        assert isinstance(ev["ts"], float | int) and ev["ts"] >= 0
        track = (ev["pid"], ev["tid"])
        ts = ns(ev["ts"])
        if ph == "X":
            dur = ns(ev["dur"])
            assert dur >= 0
            assert ts >= last_ts.get(track, 0), f"X events out of order on {track}"
            last_ts[track] = ts
            stack = stacks.setdefault(track, [])
            while stack and stack[-1] <= ts:
                stack.pop()
            assert not stack or ts + dur <= stack[-1], f"slices overlap without nesting on {track}: {ev}"
            stack.append(ts + dur)
            open_at.setdefault(track, []).append((ts, ts + dur))
        elif ph == "i":
            assert ev["s"] in ("g", "p", "t")
            if ev["s"] == "p":
                assert ev["tid"] == ev["pid"]
        elif ph == "C":
            assert ev["tid"] == ev["pid"]
            assert ev["args"] and all(isinstance(v, int | float) for v in ev["args"].values())
        else:  # flows
            assert ev["id"] not in flows or ph not in flows[ev["id"]], "one s and one f per flow id"
            flows.setdefault(ev["id"], {})[ph] = ev
            if ph == "f":
                assert ev["bp"] == "e"
            # bound to a slice on the same thread that encloses ts
            assert any(a <= ts <= b for a, b in open_at.get(track, [])), f"flow {ev} has no enclosing slice"
    for ev in events:
        if ev["ph"] != "M":
            assert ev["pid"] in process_names, f"unnamed process {ev['pid']}"
            if ev["tid"] != ev["pid"]:
                assert thread_names[ev["tid"]][0] == ev["pid"], "a thread belongs to one process"
    for fid, pair in flows.items():
        assert set(pair) == {"s", "f"}, f"flow {fid} unpaired"
        assert pair["s"]["name"] == pair["f"]["name"] and pair["s"]["cat"] == pair["f"]["cat"]
        assert pair["s"]["ts"] <= pair["f"]["ts"]


@pytest.fixture
def trace(hand_run: Path) -> dict[str, Any]:
    path = write_trace(hand_run)
    assert path == hand_run / "trace.json"
    doc = json.loads(path.read_text())
    validate(doc)
    return doc


def names(doc: dict[str, Any]) -> tuple[dict[int, str], dict[int, tuple[int, str]]]:
    procs = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    threads = {
        e["tid"]: (e["pid"], e["args"]["name"]) for e in doc["traceEvents"] if e["name"] == "thread_name"
    }
    return procs, threads


def test_microseconds_round_trip_to_the_exact_ns() -> None:
    for n in [*range(0, 200_000, 7), 23_400, 999, 1_000_001, 123_456_789_012]:
        assert ns(us(n)) == n, n
    assert us(23_400) == 23.4 and us(0) == 0.0


def test_processes_and_threads(trace: dict[str, Any]) -> None:
    procs, threads = names(trace)
    assert procs == {1: "root partition", 2: "partition 2"}
    by_pid: dict[int, list[str]] = {}
    for pid, name in threads.values():
        by_pid.setdefault(pid, []).append(name)
    assert {"host", "VP 0", "VP 1"} <= set(by_pid[1])
    assert {"VP 0", "VP 1"} <= set(by_pid[2])
    assert all(tid >= TID_BASE for tid in threads)


def xs(doc: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and all(e.get(k) == v for k, v in match.items())]


def test_hypercall_slices_on_the_callers_vp(trace: dict[str, Any]) -> None:
    _, threads = names(trace)
    calls = xs(trace, cat="hypercall")
    assert len(calls) == 16
    gets = [e for e in calls if e["name"] == "GetVpRegisters"]
    assert {threads[e["tid"]] for e in gets} <= {(2, "VP 0"), (2, "VP 0 (2)")}
    assert [ns(e["dur"]) for e in gets] == [1_000 * (i + 1) for i in range(10)]
    faulted = [e for e in calls if "fault" in e["args"]]
    assert [(e["name"], e["args"]) for e in faulted] == [
        ("DepositMemory", {"status": "SUCCESS", "reps": 8, "fault": "hypercall.partial#0"})
    ]
    failed = [e for e in calls if e["args"]["status"] != "SUCCESS"]
    assert [(e["name"], ns(e["ts"]), ns(e["dur"])) for e in failed] == [("CreatePartition", 0, 20_000)]


def test_vp_run_periods_and_host_spans(trace: dict[str, Any]) -> None:
    _, threads = names(trace)
    runs = xs(trace, cat="vp")
    assert [(threads[e["tid"]], ns(e["ts"]), ns(e["dur"])) for e in runs] == [
        ((2, "VP 0"), 100_000, 300_000),
        ((2, "VP 0"), 500_000, 100_000),
    ]
    spans = xs(trace, cat="host")
    assert [(e["name"], ns(e["ts"]), ns(e["dur"])) for e in spans] == [
        ("boot partition 2", 0, 100_000),
        ("teardown partition 2", 600_000, 100_000),
        ("reclaim", 850_000, 0),
    ]
    assert {threads[e["tid"]] for e in spans} == {(1, "host")}
    steps = [(e["name"], ns(e["ts"]), ns(e["dur"])) for e in xs(trace, cat="host.step")]
    assert steps == [
        ("created", 0, 40_000),
        ("initialized", 40_000, 20_000),
        ("end", 60_000, 40_000),
        ("stopped", 600_000, 10_000),
        ("finalized", 610_000, 30_000),
        ("end", 640_000, 60_000),
    ]


def test_instants_and_counters(trace: dict[str, Any]) -> None:
    inst = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    by_name = Counter((e["name"], e["s"]) for e in inst)
    assert by_name[("fault vp.pause", "p")] == 1 and by_name[("fault host.crash", "g")] == 1
    assert by_name[("host.crashed", "g")] == 1 and by_name[("host.restarted", "g")] == 1
    assert by_name[("none -> CREATED", "p")] == 1 and by_name[("FINALIZED -> deleted", "p")] == 1
    assert by_name[("fault.plan", "g")] == 1 and by_name[("fault.healed", "g")] == 1
    pause = next(e for e in inst if e["name"] == "fault vp.pause")
    assert pause["pid"] == 2 and pause["args"]["duration_ns"] == 50_000
    counters = [(e["pid"], ns(e["ts"]), e["args"]) for e in trace["traceEvents"] if e["ph"] == "C"]
    assert counters[:2] == [
        (1, 20_000, {"available": 16, "in_use": 0}),
        (1, 23_000, {"available": 14, "in_use": 2}),
    ]
    assert len(counters) == 5 and all(e["name"] == "pool" for e in trace["traceEvents"] if e["ph"] == "C")
    # the vp.pause fault is also a span on the paused VP
    assert [(ns(e["ts"]), ns(e["dur"])) for e in xs(trace, cat="fault")] == [(150_000, 50_000)]


def test_message_flows(trace: dict[str, Any]) -> None:
    _, threads = names(trace)
    flows = [e for e in trace["traceEvents"] if e["ph"] in "sf"]
    assert [(e["ph"], e["id"], threads[e["tid"]], ns(e["ts"])) for e in flows] == [
        ("s", 1, (2, "VP 0"), 200_000),
        ("f", 1, (1, "VP 1"), 210_000),
    ]
    msgs = xs(trace, cat="message")
    assert [(e["name"], e["args"]["id"]) for e in msgs] == [
        ("post port 5", 7),
        ("post port 5", 8),
        ("deliver port 5", 7),
    ]
    # the post nests inside the GetVpRegisters call that was running at 200 us
    post = msgs[0]
    call = next(e for e in xs(trace, cat="hypercall", tid=post["tid"]) if ns(e["ts"]) == 200_000)
    assert call["name"] == "GetVpRegisters"


def test_overlapping_calls_get_lanes_and_unfinished_spans_are_closed() -> None:
    call = {"event": "hypercall", "caller": 1, "vp": 0, "status": "SUCCESS", "reps": 0, "cost_ns": 100}
    recs = [
        {"t": 0, "seq": 0, **call, "call": "A"},
        {"t": 0, "seq": 1, **call, "call": "B"},
        {"t": 50, "seq": 2, **call, "call": "C"},
        {"t": 60, "seq": 3, "event": "host.boot.created", "host_vp": 0, "partition": 3, "vps": 1},
        {"t": 70, "seq": 4, "event": "vp.state", "partition": 3, "vp": 0, "runnable": True},
        {"t": 500, "seq": 5, "event": "sim.end"},
    ]
    doc = build_trace(recs)
    validate(doc)
    _, threads = names(doc)
    lanes = {e["name"]: threads[e["tid"]][1] for e in xs(doc, cat="hypercall")}
    assert lanes == {"A": "VP 0", "B": "VP 0 (2)", "C": "VP 0 (3)"}  # equal calls never nest
    assert [(e["name"], ns(e["dur"]), e["args"]) for e in xs(doc, cat="vp")] == [
        ("running", 430, {"open_at_end": True})
    ]
    assert [e["name"] for e in xs(doc, cat="host")] == ["boot partition 3 (unfinished)"]


def test_real_runs_validate(tmp_path: Path, synthetic: Any, make_run: Any) -> None:
    run = make_run("synthetic", synthetic(5_000, seed=2))
    doc = json.loads(write_trace(run).read_text())
    validate(doc)
    assert len(xs(doc, cat="hypercall")) > 3_000


def test_missing_folder() -> None:
    with pytest.raises(ReportError, match="no such folder"):
        write_trace("/nonexistent/run")
