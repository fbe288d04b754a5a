"""Reading a run folder: ``events.jsonl`` (required) and ``summary.json`` (optional).

Reports only read: nothing here runs a simulation. Errors are :class:`ReportError` with a one-line
message naming the file (and line), so a command line can show them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ReportError", "Run", "bad_record", "load_run", "percentile"]

EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"


class ReportError(ValueError):
    """A run folder that cannot be read: missing, not a folder, or holding a broken file."""


@dataclass(frozen=True)
class Run:
    """One run as read from disk: its records in ``(t, seq)`` order and its summary, if any."""

    path: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any] | None

    @property
    def root(self) -> int:
        """The root partition's id, from ``sim.start`` (1 when the log has none)."""
        for rec in self.records[:8]:
            if rec["event"] == "sim.start" and isinstance(rec.get("root"), int):
                return int(rec["root"])
        return 1

    @property
    def end_ns(self) -> int:
        """The end of the run in simulated ns: the summary's time, or the last record's."""
        last = self.records[-1]["t"] if self.records else 0
        if self.summary and isinstance(self.summary.get("sim_time_ns"), int):
            return max(last, int(self.summary["sim_time_ns"]))
        return int(last)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _check_dir(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not path.exists():
        raise ReportError(f"{path}: no such folder")
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder (expected a run folder holding {EVENTS_FILE})")
    if not (path / EVENTS_FILE).is_file():
        raise ReportError(f"{path}: no {EVENTS_FILE} here (is it the --out folder of an hvsim run?)")
    return path


def read_events(path: Path) -> list[dict[str, Any]]:
    """The records of an event log, each checked for ``t`` (int), ``seq`` and ``event``."""
    records: list[dict[str, Any]] = []
    loads = orjson.loads
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = loads(line)
            except orjson.JSONDecodeError as exc:
                raise ReportError(f"{path}:{lineno}: not JSON ({_one_line(str(exc))})") from None
            if (
                not isinstance(rec, dict)
                or not isinstance(rec.get("t"), int)
                or not isinstance(rec.get("seq"), int)
                or not isinstance(rec.get("event"), str)
            ):
                raise ReportError(f"{path}:{lineno}: not an event record (needs integer t and seq, event)")
            records.append(rec)
    if any(records[i]["t"] > records[i + 1]["t"] for i in range(len(records) - 1)):
        records.sort(key=lambda r: (r["t"], r["seq"]))
    return records


def read_summary(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON ({_one_line(str(exc))})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a summary (expected a JSON object)")
    return data


def bad_record(where: str, rec: dict[str, Any], exc: Exception) -> ReportError:
    """The error for a record that parses but lacks a field (or has the wrong type) hvsim writes."""
    what = f"{type(exc).__name__}: {_one_line(str(exc))}"
    return ReportError(
        f"{where}: record seq {rec.get('seq')} ({rec.get('event')}) is not as hvsim writes it ({what})"
    )


def load_run(run_dir: str | Path) -> Run:
    """Read *run_dir*; raises :class:`ReportError` when it is not a readable run folder."""
    path = _check_dir(run_dir)
    records = read_events(path / EVENTS_FILE)
    if not records:
        raise ReportError(f"{path / EVENTS_FILE}: empty event log")
    return Run(path, records, read_summary(path / SUMMARY_FILE))


def percentile(sorted_values: list[int], p: int) -> int:
    """The nearest-rank *p*-th percentile of an ascending list: the smallest value with at least
    *p* percent of the values at or below it (an observed value, never interpolated). Integer
    arithmetic, so the rank is exact: p50 of 10 values is the 5th, p90 the 9th, p99 the 10th."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, -(-p * len(sorted_values) // 100))
    return sorted_values[min(rank, len(sorted_values)) - 1]
