"""Perfetto's JSON trace importer, written down as checks.

``perfetto_import_problems(trace)`` lists everything in a Chrome trace-event document that Perfetto's
trace processor (the engine the Perfetto UI runs, compiled to WebAssembly) would reject, drop, count
in its ``stats`` table (the UI's "Info and stats" page; stats.h: kError stats are "also surfaced in
the web UI") or import differently from what the document means. ``perfetto_import(trace)`` also
returns the flow arrows as the importer would bind them, to check they join the intended slices.

Every rule below names the google/perfetto file it comes from (paths in that repository) and, where
there is one, the stat it bumps. Files read:

* ``src/trace_processor/importers/json/json_trace_tokenizer.cc``: the document's shape, the fields
  read from each event, ``ts``/``dur`` to ns (``CoerceToTs``), ``displayTimeUnit`` (the current
  version and older ones, which had ``MaybeParseDisplayTimeUnit``);
* ``src/trace_processor/util/json_parser.h``: the JSON scanner the current tokenizer uses
  (``ScanString``, ``ParseNumber``, ``StringToDouble``);
* ``src/trace_processor/importers/json/json_trace_parser.cc`` (``json_trace_parser_impl.cc`` in some
  versions): what each phase does (``ParseJsonPacket``, ``MaybeAddFlow``);
* ``src/trace_processor/importers/json/json_utils.cc`` and ``json_tracker.h``: the older ``CoerceToTs``
  (truncating; scaled by ``displayTimeUnit``);
* ``src/trace_processor/importers/common/slice_tracker.cc``: nesting (``MaybeCloseStack``, ``Scoped``,
  ``End``, ``GetTopmostSliceOnTrack``);
* ``src/trace_processor/importers/common/flow_tracker.cc``: flow binding (``Begin``/``Step``/``End``);
* ``src/trace_processor/sorter/trace_sorter.h``: the order of events with equal timestamps;
* thread identity (one thread per tid, ``UpdateThread(tid, pid)``) as the parser calls
  ``process_tracker``; process_tracker.cc itself was not read;
* ``src/trace_processor/storage/stats.h``: stat names and severities.

The order of events with equal timestamps differs between versions (plain file order; or, in later
ones, events with a ``dur`` first, longest first, and ``E`` events before everything): the nesting
and flow rules are checked under both. Where versions read a document differently (``displayTimeUnit``,
ts/dur rounding), the document must mean the same to all of them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1
MAX_DEPTH = 512  # slice_tracker.cc kMaxDepth
#: Phases ParseJsonPacket handles (json_trace_parser.cc); 'P' (V8 samples) is taken by the tokenizer.
PHASES = set("BEXiIRCstfMbenP")
METADATA = {"process_name", "thread_name", "process_sort_index", "thread_sort_index"}
TS_KEYS = ("ts", "dur", "tts", "tdur")


class _Num(float):
    """A JSON number as written: the value (for Python) and its text (for Perfetto's own parser)."""

    text: str

    def __new__(cls, text: str) -> _Num:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


def _number_text(value: float | int) -> str:
    if isinstance(value, _Num):
        return value.text
    if isinstance(value, float):
        try:
            import orjson  # the writer's serializer: its text is what Perfetto reads

            return orjson.dumps(value).decode()
        except ImportError:  # pragma: no cover
            return repr(value)
    return str(value)


def _llround(x: float) -> int:
    """C's llround: to nearest, halves away from zero."""
    r = math.floor(abs(x))
    if abs(x) - r >= 0.5:
        r += 1
    return int(math.copysign(r, x))


_NUMBER = re.compile(r"-?(0|[1-9]\d*)(?:\.(\d+))?(?:[eE]([+-]?)(\d+))?")


def perfetto_ns(text: str) -> tuple[int | None, int | None, str | None]:
    """A ts/dur number (its JSON text, in us) as ns: (current importer, older importers, problem).

    Current: json_parser.h ParseNumber (int64 when there is no '.'/'e', else StringToDouble, which
    adds the integer part and ``fract_int / 10**digits`` with fract_int an int64), then
    json_trace_tokenizer.cc CoerceToTs: an integral double ``* 1000``, else ``llround(v * 1000.0)``.
    Older: json_utils.cc CoerceToTs: ``static_cast<int64_t>(value.asDouble() * 1000.0)`` (truncation)."""
    m = _NUMBER.fullmatch(text)
    if m is None:
        return None, None, f"{text!r} is not a JSON number"
    int_digits, frac, exp_sign, exp = m.groups()
    neg = text.startswith("-")
    if frac is None and exp is None:  # int-like: StringToInt64, then * 1000
        n = int(text)
        if abs(n) > INT64_MAX:
            return None, None, f"{text} overflows int64 (json_parser.h StringToInt64)"
        return n * 1000, n * 1000, None
    problem = None
    int_part = int(int_digits)
    if int_part > INT64_MAX:
        problem = f"integer part of {text} overflows int64 in json_parser.h StringToDouble"
    fraction = 0.0
    if frac:
        if int(frac) > INT64_MAX or len(frac) > 19:  # fract_int is an int64, the divisor 10**n a uint64
            problem = f"the fraction of {text} overflows json_parser.h StringToDouble (int64 / uint64 10**n)"
        fraction = float(int(frac)) / float(10 ** len(frac))
    out = float(int_part) + fraction
    if exp:
        if exp_sign == "-":
            out /= math.pow(10, int(exp))
        elif int(exp) > 0:
            out *= math.pow(10, int(exp))
    out = -out if neg else out
    new = int(out) * 1000 if out == math.trunc(out) else _llround(out * 1000.0)
    old = int(float(text) * 1000.0)
    return new, old, problem


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string (object keys too) under *value*, with where it is."""
    if isinstance(value, str):
        return [(path, value)]
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((f"{path} key", k))
            out += _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _strings(v, f"{path}[{i}]")
    return out


@dataclass
class _Slice:
    index: int  # position in traceEvents
    ts: int
    dur: int | None  # None: a 'B' not ended yet
    name: str
    cat: str = ""

    def end(self) -> int | None:
        return None if self.dur is None else self.ts + self.dur

    def holds(self, ts: int) -> bool:
        end = self.end()
        return self.ts <= ts and (end is None or ts <= end)


@dataclass
class Import:
    """What the importer makes of a document: its problems, and each flow arrow as the indexes (in
    traceEvents) of the slice events it leaves and enters."""

    problems: list[str] = field(default_factory=list)
    flows: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Timed:
    ts: int
    index: int
    ev: dict[str, Any]
    ph: str
    track: tuple[Any, ...]
    dur: int | None = None


class _Trackers:
    """slice_tracker.cc and flow_tracker.cc, run over events in the sorter's order."""

    def __init__(self, describe: dict[int, str]) -> None:
        self.describe = describe
        self.stacks: dict[tuple[Any, ...], list[_Slice]] = {}
        self.problems: list[str] = []
        self.v1: dict[tuple[Any, ...], int] = {}  # flow_to_slice_map_ for v1 (id, cat, name) keys
        self.v2: dict[int, int] = {}
        self.pending: dict[tuple[Any, ...], list[tuple[tuple[Any, ...], int]]] = {}
        self.flows: list[tuple[int, int]] = []

    def say(self, msg: str) -> None:
        self.problems.append(msg)

    def close_stack(self, track: tuple[Any, ...], ts: int, dur: int | None, index: int) -> bool:
        """MaybeCloseStack: pop what ended; False when the new slice partially overlaps one."""
        stack = self.stacks.setdefault(track, [])
        incomplete_descendent = False
        i = len(stack) - 1
        while i >= 0:
            s = stack[i]
            end = s.end()
            if end is None:
                incomplete_descendent = True
                i -= 1
                continue
            if incomplete_descendent:
                if ts > end:
                    # slice_tracker.cc: "Incorrect ordering of begin/end slice events" -> misplaced_end_event
                    self.say(
                        "misplaced_end_event (slice_tracker.cc MaybeCloseStack): "
                        f"{self.describe[index]} comes after the end of {self.describe[s.index]} "
                        "while a 'B' inside it is still open; "
                        "the open slices are cut to that end"
                    )
                    for child in stack[i + 1 :]:
                        child.dur = end - child.ts
                    del stack[i:]
                    incomplete_descendent = False
                i -= 1
                continue
            ends_before = end < ts
            ends_same_and_should_drop = end == ts and not (s.dur == 0 and dur == 0)
            if ends_before or ends_same_and_should_drop:
                stack.pop()  # StackPop pops the back of the stack
                i -= 1
                continue
            if dur is not None and ts < end and ts + dur > end:
                self.say(
                    "slice_drop_overlapping_complete_event / slice_spill_overlapping_complete_event "
                    f"(slice_tracker.cc MaybeCloseStack, stats.h kError): {self.describe[index]} partially "
                    f"overlaps {self.describe[s.index]} on the same thread: dropped (or, in the newest "
                    "version, moved to an overflow track)"
                )
                return False
            i -= 1
        return True

    def push(self, track: tuple[Any, ...], sl: _Slice, ev: dict[str, Any]) -> None:
        stack = self.stacks.setdefault(track, [])
        if len(stack) >= MAX_DEPTH:
            self.say(f"slice_max_depth_exceeded (slice_tracker.cc kMaxDepth 512): {self.describe[sl.index]}")
            return
        stack.append(sl)
        # a slice beginning on the track binds the 'f' events waiting for it (ClosePendingEventsOnTrack)
        for key, f_index in self.pending.pop(track, []):
            if key in self.v1:
                self.flows.append((self.v1[key], sl.index))
            else:
                self.say(f"flow_end_without_start (flow_tracker.cc End): {self.describe[f_index]}")
        bind_id = ev.get("bind_id")
        if bind_id is not None:  # MaybeAddFlow: flow v2 on a slice event
            fid = _flow_id(bind_id)
            if fid is None:
                self.say(f"flow_invalid_id (json_trace_parser.cc): bind_id of {self.describe[sl.index]}")
                return
            flow_in, flow_out = ev.get("flow_in") is True, ev.get("flow_out") is True
            if flow_in and flow_out:  # FlowTracker::Step
                if fid in self.v2:
                    self.flows.append((self.v2[fid], sl.index))
                    self.v2[fid] = sl.index
                else:
                    self.say(f"flow_step_without_start (flow_tracker.cc Step): {self.describe[sl.index]}")
            elif flow_out:  # FlowTracker::Begin
                if fid in self.v2:
                    self.say(f"flow_duplicate_id (flow_tracker.cc Begin): {self.describe[sl.index]}")
                else:
                    self.v2[fid] = sl.index
            elif flow_in:  # FlowTracker::End, always bound to the enclosing slice
                if fid in self.v2:
                    self.flows.append((self.v2[fid], sl.index))
                else:
                    self.say(f"flow_end_without_start (flow_tracker.cc End): {self.describe[sl.index]}")
            else:
                self.say(
                    f"flow_without_direction (json_trace_parser.cc MaybeAddFlow): {self.describe[sl.index]} "
                    "has bind_id but neither flow_in nor flow_out is true"
                )

    def topmost(self, track: tuple[Any, ...]) -> _Slice | None:
        """GetTopmostSliceOnTrack: the back of the stack, which may have ended already (nothing pops
        a finished slice until another slice begins on the track)."""
        stack = self.stacks.get(track)
        return stack[-1] if stack else None

    def event(self, t: _Timed) -> None:
        ev, ph, track = t.ev, t.ph, t.track
        name = ev.get("name") if isinstance(ev.get("name"), str) else ""
        cat = ev.get("cat") if isinstance(ev.get("cat"), str) else ""
        if ph == "X" or (ph in "iIR" and ev.get("s", "t") == "t"):
            dur = t.dur if ph == "X" else 0
            if dur is None or dur < 0:
                return  # reported with the event's fields
            if self.close_stack(track, t.ts, dur, t.index):
                self.push(track, _Slice(t.index, t.ts, dur, name, cat), ev)
        elif ph == "B":
            if self.close_stack(track, t.ts, None, t.index):
                self.push(track, _Slice(t.index, t.ts, None, name, cat), ev)
        elif ph == "E":
            self.close_stack(track, t.ts, None, t.index)
            stack = self.stacks.get(track, [])
            for j in range(len(stack) - 1, -1, -1):  # MatchingIncompleteSliceIndex
                s = stack[j]
                if s.dur is None and (not cat or s.cat == cat) and (not name or not s.name or s.name == name):
                    s.dur = t.ts - s.ts
                    if j == len(stack) - 1:
                        stack.pop()
                    break
            else:
                self.say(
                    f"{self.describe[t.index]} ends no open 'B' on its thread: ignored (slice_tracker.cc End)"
                )
        elif ph in "stf":
            self.flow_v1(t)

    def flow_v1(self, t: _Timed) -> None:
        ev, ph, track = t.ev, t.ph, t.track
        fid = _flow_id(ev.get("id"))
        if fid is None:
            self.say(f"flow_invalid_id (json_trace_parser.cc): {self.describe[t.index]} has no usable id")
            return
        key = (fid, ev.get("cat") if isinstance(ev.get("cat"), str) else "", ev.get("name"))
        if ph == "f" and ev.get("bp") != "e":
            # bound to the next slice that begins on this thread (FlowTracker::End, !bind_enclosing_slice)
            self.pending.setdefault(track, []).append((key, t.index))
            return
        top = self.topmost(track)
        if top is None:
            self.say(
                f"flow_no_enclosing_slice (flow_tracker.cc, stats.h kError): {self.describe[t.index]} has no "
                "open slice on its thread at that point of the import: the arrow is lost"
            )
            return
        if not top.holds(t.ts):
            self.say(
                f"{self.describe[t.index]} binds to {self.describe[top.index]}, which does not enclose it "
                "(flow_tracker.cc takes the slice on top of the thread's stack): the arrow is misplaced"
            )
        if ph == "s":
            if key in self.v1:
                self.say(
                    f"flow_duplicate_id (flow_tracker.cc Begin, stats.h kError): {self.describe[t.index]}"
                )
                return
            self.v1[key] = top.index
        elif key not in self.v1:
            stat = "flow_step_without_start" if ph == "t" else "flow_end_without_start"
            self.say(f"{stat} (flow_tracker.cc): {self.describe[t.index]} has no 's' before it: no arrow")
        else:
            self.flows.append((self.v1[key], top.index))
            if ph == "t":
                self.v1[key] = top.index

    def finish(self) -> None:
        for stack in self.stacks.values():
            for s in stack:
                if s.dur is None:
                    self.say(f"{self.describe[s.index]} never ends: imported as an unfinished slice")
        for waiting in self.pending.values():
            for _, f_index in waiting:
                self.say(
                    f"{self.describe[f_index]} (no bp:'e') waits for a next slice on its thread "
                    "that never comes"
                )


def _flow_id(value: Any) -> int | None:
    """json_trace_tokenizer.cc ExtractId + json_trace_parser.cc MaybeExtractFlowIdentifier: an
    integer, or a string read as hex; anything else is flow_invalid_id."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value % 2**64
    if isinstance(value, str):
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


def _load(text: bytes | str, problems: list[str]) -> Any:
    def constant(name: str) -> float:
        problems.append(f"{name} is not JSON: json_parser.h ParseValue fails and the import stops")
        return 0.0

    try:
        return json.loads(text, parse_float=_Num, parse_constant=constant)
    except ValueError as exc:
        problems.append(f"not valid JSON ({exc}): the import stops (json_trace_tokenizer.cc)")
        return None


def perfetto_import(trace: Any) -> Import:
    """Check *trace*: a trace-event document as written (bytes or str: its numbers are read from
    their text, as Perfetto does) or as loaded (a dict or list)."""
    result = Import()
    say = result.problems.append
    if isinstance(trace, bytes | str):
        raw = trace.encode() if isinstance(trace, str) else trace
        stripped = raw.lstrip(b" \t\n\r")
        # json_trace_tokenizer.cc Parse: "first non-whitespace character is not [ or {"
        if stripped[:1] not in (b"{", b"["):
            say(
                "the document does not start with '{' or '[': the import stops "
                "(json_trace_tokenizer.cc Parse)"
            )
            return result
        # json_parser.h UnescapeString: "\uD800".."\uDFFF" escapes are "reserved for surrogate pairs"
        if re.search(rb"(?<!\\)(?:\\\\)*\\u[dD][89abAB]", raw):
            say(r"a \uD8xx..\uDFxx escape: json_parser.h UnescapeString fails and the import stops")
        trace = _load(raw, result.problems)
        if trace is None:
            return result
    events = _events(trace, say)
    if events is None:
        return result
    _check(events, result)
    return result


def perfetto_import_problems(trace: Any) -> list[str]:
    """Everything in *trace* that Perfetto's JSON importer rejects, drops, counts as an error or a
    data loss in its stats, or reads differently from what the document says (see the module)."""
    return perfetto_import(trace).problems


def _events(doc: Any, say: Any) -> list[Any] | None:
    if isinstance(doc, list):  # "[{...": kOnlyTraceEvents
        return doc
    if not isinstance(doc, dict):
        say("the document is neither an object nor an array: the import stops (json_trace_tokenizer.cc)")
        return None
    events = doc.get("traceEvents")
    if "traceEvents" in doc and not isinstance(events, list):
        say("traceEvents is not an array: the import stops (json_trace_tokenizer.cc HandleDictionaryKey)")
        return None
    if "systemTraceEvents" in doc and not isinstance(doc["systemTraceEvents"], str):
        say(
            "systemTraceEvents is not a string: the import stops "
            "(json_trace_tokenizer.cc HandleDictionaryKey)"
        )
    if "displayTimeUnit" in doc:
        if not isinstance(doc["displayTimeUnit"], str):
            say(
                "displayTimeUnit is not a string: 'Could not parse displayTimeUnit' (json_trace_tokenizer.cc)"
            )
        else:
            # current: ignored, counted as json_display_time_unit (stats.h kInfo); older versions
            # (MaybeParseDisplayTimeUnit + json_utils.cc CoerceToTs(TimeUnit)): ts/dur read in that unit
            say(
                "displayTimeUnit is set: the current importer ignores it and reports json_display_time_unit "
                "(stats.h); older importers read every ts/dur in that unit instead of us "
                "(json_trace_tokenizer.cc MaybeParseDisplayTimeUnit, json_utils.cc CoerceToTs)"
            )
    for path, s in _strings({k: v for k, v in doc.items() if k != "traceEvents"}, "document"):
        if s.endswith("\\"):
            say(
                f"{path}: a string ending in a backslash "
                "(json_parser.h ScanString takes its closing quote as escaped)"
            )
    if events is None:
        say("no traceEvents: nothing to import")
        return None
    return events


def _check(events: list[Any], result: Import) -> None:
    say = result.problems.append
    timed: list[_Timed] = []
    describe: dict[int, str] = {}
    threads: dict[int, set[int]] = {}  # tid -> pids (process_tracker UpdateThread(tid, pid))
    named_procs: dict[int, str] = {}
    named_threads: dict[tuple[int, int], str] = {}
    used_pids: set[int] = set()
    thread_tracks: set[tuple[int, int]] = set()
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            say(f"traceEvents[{i}] is not an object: 'Failure parsing JSON' and the import stops")
            continue
        ph_raw = ev.get("ph")
        desc = f"traceEvents[{i}] ({ph_raw!r} {ev.get('name')!r})"
        describe[i] = desc
        # -- tokenizer: strings, ph, ts, dur ---------------------------------------------------------
        for path, s in _strings(ev, f"traceEvents[{i}]"):
            if s.endswith("\\"):
                say(
                    f"{path}: a string ending in a backslash: json_parser.h ScanString reads its "
                    "closing quote as escaped, and the rest of the file is misread"
                )
        for key in ("name", "cat", "ph", "s", "bp", "id"):
            v = ev.get(key)
            if isinstance(v, str) and any(ord(c) < 32 and c not in "\b\f\n\r\t" for c in v):
                say(
                    f"{desc}: {key} has a control character, written as \\u00XX, which older tokenizers "
                    "reject ('Illegal character in JSON', json_trace_tokenizer.cc AppendUnescapedCharacter)"
                )
        if not isinstance(ph_raw, str) or not ph_raw:
            say(f"{desc}: no ph: json_tokenizer_failure, dropped (json_trace_tokenizer.cc)")
            continue
        ph = ph_raw[0]
        if len(ph_raw) != 1:
            say(f"{desc}: ph {ph_raw!r} is read as its first character {ph!r}")
        if ph not in PHASES:
            say(f"{desc}: phase {ph!r} is not imported (json_trace_parser.cc ParseJsonPacket ignores it)")
        ns: dict[str, int] = {}
        fatal = False
        for key in TS_KEYS:
            if key not in ev:
                continue
            v = ev[key]
            if not _is_number(v):
                if key == "ts":
                    say(f"{desc}: ts {v!r} is not a number: json_tokenizer_failure, dropped")
                else:  # CoerceToTs fails -> json_tokenizer_failure and ParseTraceEventContents returns false
                    say(
                        f"{desc}: {key} {v!r} is not a number: the tokenizer stops there "
                        "('JSON trace file is incomplete', json_trace_tokenizer.cc)"
                    )
                fatal = True
                continue
            new, old, problem = perfetto_ns(_number_text(v))
            if problem:
                say(f"{desc}: {key}: {problem}")
            if new is None or old is None:
                fatal = True
                continue
            if new != old:
                say(
                    f"{desc}: {key} {_number_text(v)} is {new} ns to the current importer (llround) "
                    f"and {old} ns to older ones (truncation): "
                    "json_trace_tokenizer.cc vs json_utils.cc CoerceToTs"
                )
            ns[key] = new
        if fatal:
            continue
        if ph != "M" and "ts" not in ns:
            say(f"{desc}: no ts: json_tokenizer_failure, dropped (json_trace_tokenizer.cc)")
            continue
        ts = ns.get("ts", 0)
        if ts < 0:
            say(f"{desc}: negative ts: trace_sorter_negative_timestamp_dropped (stats.h kError)")
            continue
        # -- pid / tid ---------------------------------------------------------------------------
        ids: dict[str, int] = {}
        for key in ("pid", "tid"):
            if key not in ev:
                continue
            v = ev[key]
            if isinstance(v, str):
                say(f"{desc}: {key} is a string: Perfetto uses the interned string's id as the {key}")
            elif not _is_number(v):
                say(f"{desc}: {key} {v!r} is not a number: ignored")
            elif v != math.trunc(v) or not 0 <= v <= UINT32_MAX:
                say(f"{desc}: {key} {v!r} is not a uint32: read as {int(v) if 0 <= v <= UINT32_MAX else 0}")
            else:
                ids[key] = int(v)
        pid = ids.get("pid", 0)
        tid = ids.get("tid", 0)
        if tid == 0 and pid != 0:  # "Make the tid equal to the pid if tid is not set."
            if "tid" in ids:
                say(f"{desc}: tid 0 is read as tid = pid ({pid}) (json_trace_tokenizer.cc)")
            tid = pid
        threads.setdefault(tid, set()).add(pid)
        # -- per phase (json_trace_parser.cc ParseJsonPacket) ---------------------------------------
        name = ev.get("name")
        if "name" in ev and not isinstance(name, str):
            say(f"{desc}: name is not a string: imported as '[No name]'")
        elif ph not in "EM" and not name:
            say(f"{desc}: no name: imported as '[No name]'")
        if "cat" in ev and not isinstance(ev["cat"], str):
            say(f"{desc}: cat is not a string: ignored")
        args = ev.get("args")
        if "args" in ev and not isinstance(args, dict):
            say(f"{desc}: args is not an object: ignored")
            args = None
        if ph == "M":
            _metadata(ev, desc, pid, tid, args, named_procs, named_threads, say)
            continue
        used_pids.add(pid)
        track: tuple[Any, ...] = ("thread", pid, tid)
        if ph == "X":
            if "dur" not in ns:
                say(f"{desc}: 'X' without dur: json_parser_failure, dropped (json_trace_parser.cc)")
                continue
            if ns["dur"] < 0:
                say(f"{desc}: negative dur: slice_negative_duration, dropped (slice_tracker.cc Scoped)")
                continue
            thread_tracks.add((pid, tid))
        elif ph in "BE":
            thread_tracks.add((pid, tid))
        elif ph in "iIR":
            scope = ev.get("s")
            if scope is not None and scope not in ("g", "p", "t"):
                say(
                    f"{desc}: instant scope {scope!r}: json_parser_failure in older importers "
                    "(json_trace_parser_impl.cc)"
                )
            if scope in (None, "t"):
                thread_tracks.add((pid, tid))
            elif scope == "p" and "pid" not in ids:
                say(f"{desc}: process instant without pid: json_parser_failure")
            track = ("instant", scope, pid)
            if scope in (None, "t"):
                track = ("thread", pid, tid)
        elif ph == "C":
            _counter(desc, args, say)
        elif ph in "stf":
            thread_tracks.add((pid, tid))
        elif ph in "ben":
            if "pid" not in ids or ("id" not in ev and "id2" not in ev):
                say(f"{desc}: async event without pid or id/id2: json_parser_failure, dropped")
                continue
            track = ("async", pid, ev.get("cat"), json.dumps(ev.get("id", ev.get("id2")), sort_keys=True))
        timed.append(_Timed(ts, i, ev, ph, track, ns.get("dur")))
    # -- processes and threads (process_tracker.cc via UpdateThread(tid, pid)) ------------------------
    for tid, pids in sorted(threads.items()):
        if len(pids) > 1:
            say(
                f"tid {tid} is used in processes {sorted(pids)}: Perfetto keeps one thread per tid and "
                "starts a new thread each time the process changes"
            )
    for pid in sorted(used_pids - set(named_procs)):
        say(f"process {pid} has no process_name metadata: shown as 'Process {pid}'")
    for pid, tid in sorted(thread_tracks):
        if tid != pid and (pid, tid) not in named_threads:
            say(f"thread {tid} of process {pid} has no thread_name metadata: shown as 'Thread {tid}'")
    # -- sorter, slice tracker, flow tracker -----------------------------------------------------
    bindings: dict[str, list[tuple[int, int]]] = {}
    seen: dict[str, str] = {}
    orders = {
        "file order": lambda t: (t.ts, t.index),
        # trace_sorter.h SlowOperatorLess: E first, then events with dur (longest first), then the rest
        "longest first": lambda t: (
            t.ts,
            -(2**63) if t.ph == "E" else -(t.dur or 0) if t.dur is not None else 0,
            t.index,
        ),
    }
    for label, key in orders.items():
        trackers = _Trackers(describe)
        for t in sorted(timed, key=key):
            trackers.event(t)
        trackers.finish()
        bindings[label] = trackers.flows
        for msg in trackers.problems:
            seen[msg] = "both" if seen.get(msg, label) != label else label
    for msg, where in seen.items():
        say(msg if where == "both" else f"{msg} [equal timestamps in {where}]")
    if bindings["file order"] != bindings["longest first"]:
        say("flow arrows bind to different slices depending on how equal timestamps are ordered")
    result.flows = bindings["longest first"]


def _metadata(
    ev: dict[str, Any],
    desc: str,
    pid: int,
    tid: int,
    args: dict[str, Any] | None,
    named_procs: dict[int, str],
    named_threads: dict[tuple[int, int], str],
    say: Any,
) -> None:
    name = ev.get("name")
    if name not in METADATA:
        say(f"{desc}: metadata {name!r} is ignored (json_trace_parser.cc handles {sorted(METADATA)})")
        return
    if not args:
        say(f"{desc}: metadata without args: ignored")
        return
    if name in ("process_sort_index", "thread_sort_index"):
        if not _is_number(args.get("sort_index")):
            say(f"{desc}: sort_index is not a number: json_parser_failure")
        return
    value = args.get("name")
    if not isinstance(value, str) or not value:
        say(f"{desc}: args.name is not a non-empty string: json_parser_failure")
        return
    if name == "process_name":
        if named_procs.get(pid, value) != value:
            say(f"{desc}: process {pid} named twice ({named_procs[pid]!r}, {value!r}): the last wins")
        named_procs[pid] = value
    else:
        if named_threads.get((pid, tid), value) != value:
            say(f"{desc}: thread {tid} named twice: the last wins")
        named_threads[(pid, tid)] = value


def _counter(desc: str, args: dict[str, Any] | None, say: Any) -> None:
    if not args:
        say(f"{desc}: counter without args: json_parser_failure, dropped")
        return
    for k, v in args.items():
        if _is_number(v):
            continue
        if isinstance(v, str):
            try:
                float(v)
                continue
            except ValueError:
                pass
        say(f"{desc}: counter value {k}={v!r} is not a number: json_parser_failure, not imported")
