"""``write_trace``: the Chrome / Perfetto trace-event document, checked against the format's rules."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hvsim.faults import FaultPlan
from hvsim.reports.events import ReportError
from hvsim.reports.trace import TID_BASE, build_trace, us, write_trace
from hvsim.scenarios.runner import run_scenario
from hvsim.scenarios.simulation import Limits


def _load_rules() -> ModuleType:
    """tests/reports/perfetto_rules.py (test modules are not importable under --import-mode=importlib)."""
    name = "hvsim_tests_perfetto_rules"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("perfetto_rules.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


rules = _load_rules()

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
    assert list(doc) == ["traceEvents"]  # no displayTimeUnit: see perfetto_rules and reports/trace.py
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
    assert rules.perfetto_import_problems(path.read_bytes()) == []
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
    assert rules.perfetto_import_problems(doc) == []
    _, threads = names(doc)
    lanes = {e["name"]: threads[e["tid"]][1] for e in xs(doc, cat="hypercall")}
    assert lanes == {"A": "VP 0", "B": "VP 0 (2)", "C": "VP 0 (3)"}  # equal calls never nest
    assert [(e["name"], ns(e["dur"]), e["args"]) for e in xs(doc, cat="vp")] == [
        ("running", 430, {"open_at_end": True})
    ]
    assert [e["name"] for e in xs(doc, cat="host")] == ["boot partition 3 (unfinished)"]


def test_real_runs_validate(tmp_path: Path, synthetic: Any, make_run: Any) -> None:
    run = make_run("synthetic", synthetic(5_000, seed=2))
    raw = write_trace(run).read_bytes()
    doc = json.loads(raw)
    validate(doc)
    assert len(xs(doc, cat="hypercall")) > 3_000
    assert rules.perfetto_import_problems(raw) == []


def test_missing_folder() -> None:
    with pytest.raises(ReportError, match="no such folder"):
        write_trace("/nonexistent/run")


# --- Perfetto's JSON importer (tests/reports/perfetto_rules.py) on traces of real runs ---------------
MS = 1_000_000


def _plan(*faults: dict[str, Any]) -> FaultPlan:
    return FaultPlan.model_validate({"name": "trace", "heal_at_ns": 15 * MS, "fault": list(faults)})


MESSAGE_FAULTS = _plan(
    {"kind": "message.duplicate", "probability": 0.5},
    {"kind": "message.reorder", "window_ns": 50_000},
    {"kind": "message.delay", "probability": 0.3, "extra_ns": 20_000},
    {"kind": "message.drop", "probability": 0.1},
)
HOST_FAULTS = _plan(
    {"kind": "vp.pause", "duration_ns": 200_000},
    {"kind": "hypercall.partial"},
    {"kind": "host.crash"},
)
#: (scenario, seed, run_ns limit, plan): messaging with and without message faults, and runs where
#: VPs pause, rep calls stop part-way and the host crashes and recovers.
RUNS = {
    "vmbus": ("vmbus", 0, 20 * MS, None),
    "vmbus-message-faults": ("vmbus", 1, 20 * MS, MESSAGE_FAULTS),
    "doorbell": ("doorbell", 0, 10 * MS, None),
    "lifecycle-host-faults": ("lifecycle", 2, 5 * MS, HOST_FAULTS),
    "recover": ("recover", 3, None, None),
}


@pytest.mark.parametrize("case", sorted(RUNS))
def test_real_runs_import_cleanly_into_perfetto(tmp_path: Path, case: str) -> None:
    scenario, seed, run_ns, plan = RUNS[case]
    run_scenario(scenario, seed, out_dir=tmp_path, limits=Limits(run_ns=run_ns), plan=plan)
    raw = write_trace(tmp_path).read_bytes()
    doc = json.loads(raw)
    validate(doc)
    imported = rules.perfetto_import(raw)
    assert imported.problems == []
    events = doc["traceEvents"]
    # every arrow leaves a message post and enters the delivery of the same message
    assert len(imported.flows) == sum(e["ph"] == "s" for e in events)
    for out, into in imported.flows:
        assert events[out]["name"].startswith("post port") and events[into]["name"].startswith("deliver port")
        assert events[out]["args"]["id"] == events[into]["args"]["id"]
    if scenario in ("vmbus", "doorbell"):
        assert imported.flows
    if plan is HOST_FAULTS:
        faults = {e["name"] for e in events if e["ph"] == "i" and e["cat"] == "fault"}
        assert {"fault vp.pause", "fault host.crash", "host.crashed"} <= faults


def test_hand_trace_flow_binds_the_post_to_the_delivery(trace: dict[str, Any]) -> None:
    imported = rules.perfetto_import(trace)
    events = trace["traceEvents"]
    assert [(events[a]["name"], events[b]["name"]) for a, b in imported.flows] == [
        ("post port 5", "deliver port 5")
    ]


# --- the checker catches each rule: a small good trace, broken one way at a time ----------------------
def _good() -> dict[str, Any]:
    """Process 1 with thread 10: a call [1, 9] us holding a post [2, 3]; thread 11: a delivery [5, 6]
    us; a flow from the post to the delivery; a counter and a process instant."""
    meta = [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 1, "args": {"name": "p"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 10, "args": {"name": "a"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 11, "args": {"name": "b"}},
    ]
    timed = [
        {"ph": "X", "name": "call", "cat": "c", "ts": 1, "dur": 8, "pid": 1, "tid": 10},
        {"ph": "X", "name": "post", "cat": "m", "ts": 2, "dur": 1, "pid": 1, "tid": 10},
        {"ph": "s", "name": "msg", "cat": "m", "id": 1, "ts": 2, "pid": 1, "tid": 10},
        {"ph": "X", "name": "deliver", "cat": "m", "ts": 5, "dur": 1, "pid": 1, "tid": 11},
        {"ph": "f", "name": "msg", "cat": "m", "id": 1, "ts": 5, "pid": 1, "tid": 11, "bp": "e"},
        {"ph": "C", "name": "pool", "ts": 5, "pid": 1, "tid": 1, "args": {"free": 3}},
        {"ph": "i", "name": "state", "s": "p", "ts": 7, "pid": 1, "tid": 1},
    ]
    return {"traceEvents": meta + timed}


def test_the_good_trace_is_good() -> None:
    doc = _good()
    imported = rules.perfetto_import(doc)
    assert imported.problems == []
    assert imported.flows == [(4, 6)]  # post -> deliver
    assert rules.perfetto_import_problems(json.dumps(doc).encode()) == []


def _ev(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in doc["traceEvents"] if e["name"] == name and e["ph"] != "M")


def _add(*events: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["traceEvents"].extend(copy.deepcopy(list(events)))


def _set(target: str, /, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: _ev(doc, target).update(fields)


def _drop(name: str, *keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        for key in keys:
            del _ev(doc, name)[key]

    return edit


def _x(name: str, ts: float, dur: float, tid: int = 10) -> dict[str, Any]:
    return {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid}


def _deep(doc: dict[str, Any]) -> None:
    doc["traceEvents"] += [_x(f"d{i}", 100 + i, 10_000 - 2 * i) for i in range(rules.MAX_DEPTH + 1)]


def _flow_before_its_slice(ph: str, slice_name: str) -> Callable[[dict[str, Any]], None]:
    """Move the flow event *ph* before the slice it binds to (same ts): file order then binds it
    to whatever is open on the thread (or to nothing)."""

    def edit(doc: dict[str, Any]) -> None:
        events = doc["traceEvents"]
        flow = next(e for e in events if e["ph"] == ph)
        events.remove(flow)
        events.insert(events.index(_ev(doc, slice_name)), flow)

    return edit


#: (rule, edit of the good trace, words the problem must contain)
BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "displayTimeUnit": (lambda d: d.update(displayTimeUnit="ns"), "json_display_time_unit"),
    "traceEvents not an array": (lambda d: d.update(traceEvents={}), "traceEvents is not an array"),
    "systemTraceEvents": (lambda d: d.update(systemTraceEvents=[]), "systemTraceEvents is not a string"),
    "event not an object": (lambda d: d["traceEvents"].append([1]), "is not an object"),
    "no ph": (_drop("call", "ph"), "no ph"),
    "long ph": (_set("call", ph="XX"), "first character"),
    "unknown phase": (_set("state", ph="Q"), "is not imported"),
    "no ts": (_drop("call", "ts"), "no ts"),
    "string ts": (_set("call", ts="1"), "ts '1' is not a number"),
    "negative ts": (_set("state", ts=-1), "trace_sorter_negative_timestamp_dropped"),
    "string dur": (_set("call", dur="8"), "the tokenizer stops"),
    "X without dur": (_drop("call", "dur"), "'X' without dur"),
    "negative dur": (_set("call", dur=-1), "slice_negative_duration"),
    "ts rounded vs truncated": (_set("call", ts=0.0015), "llround"),
    "partial overlap": (_add(_x("late", 8, 4)), "slice_drop_overlapping_complete_event"),
    "too deep": (_deep, "slice_max_depth_exceeded"),
    "string pid": (_set("state", pid="p"), "pid is a string"),
    "negative tid": (_set("call", tid=-3), "not a uint32"),
    "tid 0": (_set("state", tid=0), "tid 0 is read as tid = pid"),
    "tid in two processes": (_set("deliver", pid=2), "tid 11 is used in processes [1, 2]"),
    "unnamed process": (_set("state", pid=3, tid=3), "process 3 has no process_name"),
    "unnamed thread": (_set("deliver", tid=12), "thread 12 of process 1 has no thread_name"),
    "unknown metadata": (_add({"ph": "M", "name": "labels", "pid": 1, "args": {"x": 1}}), "is ignored"),
    "empty process name": (
        _add({"ph": "M", "name": "process_name", "pid": 1, "args": {"name": ""}}),
        "args.name is not a non-empty string",
    ),
    "no name": (_drop("call", "name"), "[No name]"),
    "args not an object": (_set("call", args=[1]), "args is not an object"),
    "counter not numeric": (_set("pool", args={"free": "many"}), "counter value free='many'"),
    "counter without args": (_drop("pool", "args"), "counter without args"),
    "instant scope": (_set("state", s="x"), "instant scope 'x'"),
    "async without id": (_add({"ph": "b", "name": "a", "ts": 1, "pid": 1}), "async event without"),
    "flow without a slice": (_set("deliver", tid=12, dur=0, ts=4), "flow_no_enclosing_slice"),
    "flow on a finished slice": (_set("msg", ts=4), "does not enclose it"),
    "flow id twice": (
        _add({"ph": "s", "name": "msg", "cat": "m", "id": 1, "ts": 2, "pid": 1, "tid": 10}),
        "flow_duplicate_id",
    ),
    "flow end without start": (_set("msg", id=2), "flow_end_without_start"),
    "flow id not an integer": (_set("msg", id=1.5), "flow_invalid_id"),
    "flow end waiting for a next slice": (
        lambda d: next(e for e in d["traceEvents"] if e["ph"] == "f").pop("bp"),
        "waits for a next slice",
    ),
    "flow end before its slice": (_flow_before_its_slice("f", "deliver"), "[equal timestamps in file order]"),
    "flow start before its slice": (
        _flow_before_its_slice("s", "post"),
        "flow arrows bind to different slices depending on how equal timestamps are ordered",
    ),
    "bind_id without direction": (_set("call", bind_id=7), "flow_without_direction"),
    "E without B": (_add({"ph": "E", "ts": 20, "pid": 1, "tid": 10}), "ends no open 'B'"),
    "B never ends": (_add({"ph": "B", "name": "open", "ts": 20, "pid": 1, "tid": 10}), "never ends"),
    "misplaced end": (
        _add({"ph": "B", "name": "inner", "ts": 3, "pid": 1, "tid": 10}, _x("after", 12, 1)),
        "misplaced_end_event",
    ),
    "backslash at the end of a string": (_set("call", args={"path": "C:\\"}), "ending in a backslash"),
    "control character": (_set("call", name="a\x01b"), "control character"),
}


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_the_checker_catches(rule: str) -> None:
    edit, words = BROKEN[rule]
    doc = _good()
    edit(doc)
    problems = rules.perfetto_import_problems(doc)
    assert any(words in p for p in problems), problems


def test_the_checker_reads_numbers_and_the_document_as_written() -> None:
    good = json.dumps(_good())
    assert rules.perfetto_import_problems(good) == []
    for text, words in [
        ("  ({}", "does not start with"),
        (good[:-2], "not valid JSON"),
        (good.replace('"ts": 7', '"ts": NaN'), "is not JSON"),
        (good.replace('"name": "p"', '"name": "\\ud800"'), "\\uD8xx"),
        (good.replace('"ts": 7', '"ts": 0.00000000000000000001'), "overflows json_parser.h StringToDouble"),
        (good.replace('"ts": 7', '"ts": 1.0005'), "1.0005 is 1001 ns to the current importer"),
    ]:
        problems = rules.perfetto_import_problems(text)
        assert any(words in p for p in problems), (text[:60], problems)
    assert rules.perfetto_ns("123456.789") == (123_456_789, 123_456_789, None)
    assert rules.perfetto_ns("12") == (12_000, 12_000, None)
