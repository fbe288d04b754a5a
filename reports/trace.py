"""``hvsim trace DIR``: the event log as a Chrome / Perfetto trace (``DIR/trace.json``).

Trace-event JSON format (``{"traceEvents": [...]}``; ``ts``/``dur`` in microseconds as in the
format's definition, exact to the ns). No ``displayTimeUnit``: Perfetto's importer ignores it (and
lists it in the trace's stats) while older versions read every ``ts``/``dur`` in that unit, so "ns"
would shrink the timeline a thousandfold there. Only documented phases and fields:

* a process per partition (``process_name`` "root partition" / "partition N"); a thread per VP
  ("VP k") and a "host" thread in the root process. Thread ids are unique numbers from
  ``TID_BASE`` up, never equal to a pid; counters and process instants use the process's own
  main thread (``tid == pid``), as the format does.
* complete slices (``X``): every hypercall on its caller's VP (args status, reps, fault), VP run
  periods (``vp.state`` runnable true to false, category ``vp``), host boot and teardown spans with
  one child slice per host step, and ``message.*`` posts and deliveries.
* instants (``i``): faults (process scope when they name a partition, else global), partition state
  changes (process), host crashes and restarts, the fault plan and its healing (global).
* counters (``C``): each pool's ``available`` / ``in_use`` pages.
* flows (``s`` / ``f`` with ``bp: e``, one id per message) from a ``message.posted`` record to the
  ``message.delivered`` record with the same ``id``; their fields are ``port``, ``id`` and
  ``src_partition``/``src_vp``, ``dst_partition``/``dst_vp`` (or ``src``/``dst`` objects with
  ``partition`` and ``vp``).

Slices on one thread must nest. Calls overlap on a VP (host processes share the root's VPs), so a
slice that would overlap without nesting goes to the VP's next "lane", an extra thread named
"VP k (2)", "VP k (3)", ... Events are written in (ts, longest first) order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hvsim.actors.hvdef import HypercallCode
from hvsim.reports.events import EVENTS_FILE, ReportError, bad_record, load_run

__all__ = ["TID_BASE", "build_trace", "us", "write_trace"]

TID_BASE = 1_000_000
HOST, VP = 0, 1  # track groups within a process
_CALL_NAMES = {int(c): c.name for c in HypercallCode}
_SKIP = {"t", "seq", "event"}
_GLOBAL = {"host.crashed", "host.restarted", "fault.plan", "fault.healed", "sim.start"}

Key = tuple[int, int, int]  # (pid, group, vp)
#: Which slices may hold which: a VP's run period holds its calls, faults and messages; a call holds
#: the messages it posts. Anything else that overlaps goes to another lane.
_HOLDS = {"vp": {"hypercall", "fault", "message"}, "hypercall": {"message"}}


def _nests(outer: str, inner: str) -> bool:
    return inner in _HOLDS.get(outer, ())


def us(ns: int) -> float:
    """*ns* as microseconds, nudged up by one ulp where needed so that ``int(us * 1000) == ns``:
    Perfetto's importer rounds ``us * 1000`` to the nearest ns, older versions (and other readers)
    truncate it, and both then give *ns*."""
    x = ns / 1000
    if int(x * 1000.0) != ns:
        x = math.nextafter(x, math.inf)
    return x


@dataclass
class _Slice:
    idx: int
    ts: int
    dur: int
    key: Key
    name: str
    cat: str
    args: dict[str, Any]
    parent: int | None = None
    lane: int = 0


def _extra(rec: dict[str, Any]) -> dict[str, Any]:
    """A record's own fields as slice/instant args (nulls left out: not every reader takes them)."""
    return {k: v for k, v in rec.items() if k not in _SKIP and v is not None}


def _endpoint(rec: dict[str, Any], side: str) -> tuple[int, int] | None:
    nested = rec.get(side)
    if isinstance(nested, dict):
        pid, vp = nested.get("partition"), nested.get("vp", 0)
    else:
        pid, vp = rec.get(f"{side}_partition"), rec.get(f"{side}_vp", 0)
    return (pid, vp) if isinstance(pid, int) and isinstance(vp, int) else None


class _Builder:
    def __init__(self, root: int, end: int) -> None:
        self.root, self.end = root, end
        self.slices: list[_Slice] = []
        self.marks: list[tuple[int, int, dict[str, Any]]] = []  # (ts_ns, order, event): C and i
        self.pids: set[int] = {root}
        self.tracks: set[Key] = {(root, HOST, 0)}
        self.running: dict[tuple[int, int], int] = {}
        self.spans: dict[tuple[str, int], tuple[int, int | None, list[tuple[int, str]]]] = {}
        self.posted: dict[Any, int] = {}
        self.flows: list[tuple[int, int]] = []

    def slice(
        self,
        ts: int,
        dur: int,
        key: Key,
        name: str,
        cat: str,
        args: dict[str, Any],
        parent: int | None = None,
    ) -> int:
        self.pids.add(key[0])
        self.tracks.add(key)
        self.slices.append(_Slice(len(self.slices), ts, max(0, dur), key, name, cat, args, parent))
        return len(self.slices) - 1

    def instant(self, ts: int, name: str, cat: str, args: dict[str, Any], pid: int | None) -> None:
        ev: dict[str, Any] = {"name": name, "cat": cat, "ph": "i", "ts": us(ts), "args": args}
        if pid is None:
            ev.update(s="g", pid=self.root, tid=self.root)
        else:
            self.pids.add(pid)
            ev.update(s="p", pid=pid, tid=pid)
        self.marks.append((ts, len(self.marks), ev))

    # -- record handlers ------------------------------------------------------------------------
    def hypercall(self, rec: dict[str, Any]) -> None:
        args = {"status": rec["status"], "reps": rec["reps"]}
        if rec.get("fault"):
            args["fault"] = rec["fault"]
        self.slice(
            rec["t"], int(rec["cost_ns"]), (rec["caller"], VP, rec["vp"]), str(rec["call"]), "hypercall", args
        )

    def vp_state(self, rec: dict[str, Any]) -> None:
        key = (rec["partition"], rec["vp"])
        self.tracks.add((key[0], VP, key[1]))
        self.pids.add(key[0])
        if rec["event"] != "vp.state":
            return
        if rec.get("runnable"):
            self.running.setdefault(key, rec["t"])
        else:
            self.stop_vp(key, rec["t"], {})

    def stop_vp(self, key: tuple[int, int], t: int, args: dict[str, Any]) -> None:
        since = self.running.pop(key, None)
        if since is not None:
            self.slice(since, t - since, (key[0], VP, key[1]), "running", "vp", args)

    def host_step(self, rec: dict[str, Any], step: str) -> None:
        t, pid = rec["t"], rec.get("partition")
        kind, _, what = step.partition(".")
        key = (self.root, HOST, 0)
        if not isinstance(pid, int) or kind not in ("boot", "teardown"):
            self.slice(t, 0, key, step, "host", _extra(rec))
            return
        if what in ("created", "begin"):
            self.spans[(kind, pid)] = (t, rec.get("host_vp"), [(t, what)])
            return
        span = self.spans.get((kind, pid))
        if span is None and what != "end":
            self.slice(t, 0, key, step, "host", _extra(rec))
            return
        if span is not None:
            span[2].append((t, what))
        if what == "end":
            self.spans.pop((kind, pid), None)
            dur = rec.get("duration_ns")
            start = t - dur if isinstance(dur, int) else (span[0] if span else t)
            steps = span[2] if span else [(t, "end")]
            self.emit_span(kind, pid, start, t, rec.get("host_vp"), steps, "")

    def emit_span(
        self, kind: str, pid: int, start: int, end: int, host_vp: Any, steps: list[tuple[int, str]], note: str
    ) -> None:
        key = (self.root, HOST, 0)
        args = {"partition": pid, "host_vp": host_vp, "duration_ns": end - start}
        if host_vp is None:
            del args["host_vp"]
        parent = self.slice(start, end - start, key, f"{kind} partition {pid}{note}", "host", args)
        prev = start
        for t, what in steps:
            t = min(max(t, prev), end)
            if t > prev:  # one child per host step, ending at the step; zero-length ones add nothing
                self.slice(prev, t - prev, key, what, "host.step", {"step": f"host.{kind}.{what}"}, parent)
            prev = t

    def close_spans(self, t: int, note: str) -> None:
        for (kind, pid), (start, host_vp, steps) in sorted(self.spans.items()):
            self.emit_span(kind, pid, start, t, host_vp, steps, note)
        self.spans.clear()

    def message(self, rec: dict[str, Any], posted: bool) -> None:
        ep = _endpoint(rec, "src" if posted else "dst")
        if ep is None:
            self.instant(rec["t"], rec["event"], "message", _extra(rec), None)
            return
        verb = "post" if posted else "deliver"
        key = (ep[0], VP, ep[1])
        idx = self.slice(rec["t"], 1, key, f"{verb} port {rec.get('port')}", "message", _extra(rec))
        mid = rec.get("id")
        if posted:
            self.posted[mid] = idx
        elif mid in self.posted:
            self.flows.append((self.posted.pop(mid), idx))

    def record(self, rec: dict[str, Any]) -> None:
        event: str = rec["event"]
        t = rec["t"]
        if event == "hypercall":
            self.hypercall(rec)
        elif event == "pool":
            pid = rec["partition"]
            self.pids.add(pid)
            ev = {
                "name": "pool",
                "cat": "memory",
                "ph": "C",
                "ts": us(t),
                "pid": pid,
                "tid": pid,
                "args": {"available": rec["available"], "in_use": rec["in_use"]},
            }
            self.marks.append((t, len(self.marks), ev))
        elif event in ("vp.state", "vp.created", "vp.started"):
            self.vp_state(rec)
        elif event == "partition.state":
            old, new = rec.get("old"), rec.get("new")
            self.instant(
                t, f"{old or 'none'} -> {new or 'deleted'}", "partition", _extra(rec), rec["partition"]
            )
            if new is None:
                for key in sorted(k for k in self.running if k[0] == rec["partition"]):
                    self.stop_vp(key, t, {"until": "partition deleted"})
        elif event == "hypercall.orphaned":
            code = rec.get("code")
            name = _CALL_NAMES.get(code, str(code)) if isinstance(code, int) else "?"
            self.slice(t, 0, (rec["caller"], VP, rec["vp"]), f"orphaned {name}", "hypercall", _extra(rec))
        elif event in ("message.posted", "message.delivered"):
            self.message(rec, event == "message.posted")
        elif event == "host.crashed":
            self.close_spans(t, " (host crashed)")
            self.instant(t, event, "fault", _extra(rec), None)
        elif event.startswith("host.") and event not in _GLOBAL:
            self.host_step(rec, event[5:])
        elif event == "fault":
            pid = rec.get("partition")
            self.instant(
                t, f"fault {rec.get('kind')}", "fault", _extra(rec), pid if isinstance(pid, int) else None
            )
            dur, vp = rec.get("duration_ns"), rec.get("vp")
            if isinstance(pid, int) and isinstance(vp, int) and isinstance(dur, int) and dur > 0:
                self.slice(t, dur, (pid, VP, vp), f"fault {rec.get('kind')}", "fault", _extra(rec))
        else:
            pid = rec.get("partition")
            scoped = isinstance(pid, int) and event not in _GLOBAL
            self.instant(t, event, event.split(".")[0], _extra(rec), pid if scoped else None)

    # -- output ---------------------------------------------------------------------------------
    def place(self) -> dict[tuple[Key, int], int]:
        """Put each slice on a lane of its track so that slices on one thread nest, and only where
        nesting means something: a host step inside its span, a call or a fault inside a VP's run
        period, a message inside a call. Returns the tid of every (track, lane)."""
        lanes: dict[Key, list[list[tuple[int, str]]]] = {}
        for s in sorted(self.slices, key=lambda s: (s.ts, -s.dur, s.idx)):
            stacks = lanes.setdefault(s.key, [])
            end = s.ts + s.dur
            order = range(len(stacks))
            if s.parent is not None:
                first = self.slices[s.parent].lane
                order = range(first, first + 1)
            for i in order:
                stack = stacks[i]
                while stack and stack[-1][0] <= s.ts:
                    stack.pop()
                if not stack or (
                    end <= stack[-1][0] and (s.parent is not None or _nests(stack[-1][1], s.cat))
                ):
                    stack.append((end, s.cat))
                    s.lane = i
                    break
            else:
                stacks.append([(end, s.cat)])
                s.lane = len(stacks) - 1
        names = {(k, lane) for k, stacks in lanes.items() for lane in range(len(stacks))}
        names |= {(k, 0) for k in self.tracks}
        return {track: TID_BASE + n for n, track in enumerate(sorted(names))}

    def events(self) -> list[dict[str, Any]]:
        for key in sorted(self.running):
            self.stop_vp(key, self.end, {"open_at_end": True})
        self.close_spans(self.end, " (unfinished)")
        tids = self.place()
        meta: list[dict[str, Any]] = []
        for pid in sorted(self.pids):
            pname = "root partition" if pid == self.root else f"partition {pid}"
            meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": pid, "args": {"name": pname}})
        for ((pid, group, vp), lane), tid in sorted(tids.items(), key=lambda kv: kv[1]):
            label = "host" if group == HOST else f"VP {vp}"
            name = label if lane == 0 else f"{label} ({lane + 1})"
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
        timed: list[tuple[tuple[int, int, int, int], dict[str, Any]]] = []
        for s in self.slices:
            ev = {
                "name": s.name,
                "cat": s.cat,
                "ph": "X",
                "ts": us(s.ts),
                "dur": us(s.dur),
                "pid": s.key[0],
                "tid": tids[(s.key, s.lane)],
                "args": s.args,
            }
            timed.append(((s.ts, -s.dur, s.idx, 0), ev))
        for flow_id, (src, dst) in enumerate(self.flows, 1):
            for ph, s in (("s", self.slices[src]), ("f", self.slices[dst])):
                ev = {
                    "name": "message",
                    "cat": "message",
                    "ph": ph,
                    "id": flow_id,
                    "ts": us(s.ts),
                    "pid": s.key[0],
                    "tid": tids[(s.key, s.lane)],
                }
                if ph == "f":
                    ev["bp"] = "e"
                timed.append(((s.ts, -s.dur, s.idx, 1), ev))
        base = len(self.slices)
        timed += [((ts, 0, base + order, 0), ev) for ts, order, ev in self.marks]
        timed.sort(key=lambda item: item[0])
        return meta + [ev for _, ev in timed]


def build_trace(records: list[dict[str, Any]], root: int = 1, end_ns: int | None = None) -> dict[str, Any]:
    """The trace-event document for *records* (an event log in ``(t, seq)`` order)."""
    end = end_ns if end_ns is not None else (records[-1]["t"] if records else 0)
    builder = _Builder(root, end)
    rec: dict[str, Any] = {}
    try:
        for rec in records:
            builder.record(rec)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad_record(EVENTS_FILE, rec, exc) from None
    return {"traceEvents": builder.events()}


def write_trace(run_dir: str | Path) -> Path:
    """Write run_dir/trace.json from run_dir/events.jsonl and return its path.

    Raises :class:`hvsim.reports.events.ReportError` when *run_dir* is not a readable run folder.
    """
    run = load_run(run_dir)
    try:
        doc = build_trace(run.records, run.root, run.end_ns)
    except ReportError as exc:
        raise ReportError(f"{run.path}/{exc}") from None
    out = run.path / "trace.json"
    out.write_bytes(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    return out
