"""Run folders for the report tests: a small log written by hand, whose numbers are worked out in the
tests, and a synthetic generator for large logs and for pairs of runs to compare.

Fixtures hand out callables (conftest modules are not importable under ``--import-mode=importlib``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

Record = dict[str, Any]
MakeRun = Callable[..., Path]


class Log:
    """Records in the order written, with ``seq`` numbered as hvsim numbers it."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def __call__(self, t: int, event: str, **fields: Any) -> None:
        self.records.append({"t": t, "seq": len(self.records), "event": event, **fields})

    def call(
        self, t: int, caller: int, vp: int, call: str, cost: int, status: str = "SUCCESS", **kw: Any
    ) -> None:
        self(
            t,
            "hypercall",
            caller=caller,
            vp=vp,
            call=call,
            status=status,
            reps=kw.pop("reps", 0),
            cost_ns=cost,
            **kw,
        )


def hand_log() -> list[Record]:
    """The hand-written run (root 1, child 2 with VPs 0 and 1). Expected numbers, worked out:

    * GetVpRegisters: 10 calls costing 1..10 us -> p50 5 us, p90 9 us, p99 = max 10 us.
    * DepositMemory: 3, 3, 5 and 40 us -> p50 3 us (2nd of 4), p90 = p99 = max 40 us; one faulted.
    * CreatePartition: 2 calls of 20 us, one INSUFFICIENT_MEMORY.
    * boot of 2: 0 -> 100 us; teardown: 600 -> 700 us.
    * VP 2/0: created 90 us, runnable 100-400 us and 500-600 us, gone at 700 us:
      run 400 us, suspended 210 us, 2 periods. VP 2/1: created 95 us, never runnable: suspended 605 us.
    * pools: 1 ends 14 available / 2 in use (peak 2 at 23 us); 2 ends 256 / 0 (peak 160 at 83 us).
    * 16 hypercalls in 1 ms (summary): 16.0 per ms on average; bins of 10 us, the busiest (20-30 us)
      holds 2 calls: 200.0 per ms.
    * faults: vp.pause at 150 us (50 us), host.crash at 800 us; the plan is active 0-900 us.
    * a message 7 from 2/0 (posted 200 us) to 1/1 (delivered 210 us); message 8 never delivered.
    """
    log = Log()
    log(0, "sim.start", seed=5, host_pages=1024, root=1)
    log(0, "fault.plan", name="hand", faults=2, heal_at_ns=900_000)
    log.call(0, 1, 0, "CreatePartition", 20_000, "INSUFFICIENT_MEMORY")
    log(20_000, "pool", partition=1, available=16, in_use=0)
    log.call(20_000, 1, 0, "DepositMemory", 3_000, reps=16)
    log(23_000, "partition.state", partition=2, old=None, new="CREATED", parent=1)
    log(23_000, "pool", partition=1, available=14, in_use=2)
    log.call(23_000, 1, 0, "CreatePartition", 20_000)
    log(40_000, "host.boot.created", host_vp=0, partition=2, vps=2)
    log(43_000, "pool", partition=2, available=256, in_use=0)
    log.call(43_000, 1, 0, "DepositMemory", 40_000, reps=256)
    log(60_000, "host.boot.initialized", host_vp=0, partition=2)
    log(83_000, "pool", partition=2, available=96, in_use=160)
    log(83_000, "partition.state", partition=2, old="CREATED", new="ACTIVE")
    log(90_000, "vp.created", partition=2, vp=0)
    log(95_000, "vp.created", partition=2, vp=1)
    log(100_000, "vp.state", partition=2, vp=0, runnable=True)
    log(100_000, "host.boot.end", host_vp=0, partition=2, duration_ns=100_000)
    for i in range(10):
        t = 100_000 + 20_000 * i
        log.call(t, 2, 0, "GetVpRegisters", 1_000 * (i + 1), reps=1)
        if i == 2:
            log(150_000, "fault", kind="vp.pause", index=1, partition=2, vp=0, duration_ns=50_000)
        if i == 5:
            log(200_000, "message.posted", id=7, port=5, src_partition=2, src_vp=0, dst_partition=1, dst_vp=1)
            log(
                205_000,
                "message.posted",
                id=8,
                port=5,
                src={"partition": 2, "vp": 0},
                dst={"partition": 1, "vp": 0},
            )
            log(
                210_000,
                "message.delivered",
                id=7,
                port=5,
                src_partition=2,
                src_vp=0,
                dst_partition=1,
                dst_vp=1,
            )
    log.call(300_000, 1, 1, "DepositMemory", 3_000, reps=16)
    log.call(310_000, 1, 1, "DepositMemory", 5_000, reps=8, fault="hypercall.partial#0")
    log(400_000, "vp.state", partition=2, vp=0, runnable=False)
    log(500_000, "vp.state", partition=2, vp=0, runnable=True)
    log(600_000, "host.teardown.begin", host_vp=0, partition=2)
    log(600_000, "vp.state", partition=2, vp=0, runnable=False)
    log(610_000, "host.teardown.stopped", host_vp=0, partition=2)
    log(620_000, "partition.state", partition=2, old="ACTIVE", new="FINALIZED")
    log(620_000, "pool", partition=2, available=256, in_use=0)
    log(640_000, "host.teardown.finalized", host_vp=0, partition=2)
    log(700_000, "partition.state", partition=2, old="FINALIZED", new=None)
    log(700_000, "host.teardown.end", host_vp=0, partition=2, pages=256, duration_ns=100_000)
    log(800_000, "fault", kind="host.crash", index=0, step="teardown.end", occurrence=1)
    log(800_000, "host.crashed", step="teardown.end", processes_ended=1, host_pages_freed=0)
    log(800_000, "host.restarted", after_step="teardown.end")
    log(850_000, "host.reclaim", host_vp=0, partitions=[])
    log(900_000, "fault.healed", fired={"host.crash": 1, "vp.pause": 1})
    return log.records


def hand_summary() -> dict[str, Any]:
    return {
        "scenario": "hand",
        "description": "written by hand",
        "seed": 5,
        "hvsim": "0.1.0",
        "ok": False,
        "error": None,
        "sim_time_ns": 1_000_000,
        "events": 0,
        "checkers": {"all-reclaimed": {"ok": False}, "page-conservation": {"ok": True}},
        "violations": [
            {"checker": "all-reclaimed", "t": 1_000_000, "seq": 50, "message": "partition 3 left"}
        ],
        "wall": {"seconds": 0.5, "events_per_second": 100, "sim_to_wall_ratio": 0.002},
    }


def synthetic_log(
    n_events: int, *, seed: int = 0, cost_scale: float = 1.0, cost_add: int = 0, calls_per_burst: int = 20
) -> list[Record]:
    """A plausible log of about *n_events* records: partitions booting, running VPs that make
    hypercalls in bursts, pool changes, faults firing, and teardown; latencies scaled by *cost_scale*."""
    rng = random.Random(seed)
    costs = {"GetVpRegisters": 840, "SetVpRegisters": 860, "GetPartitionId": 300, "DepositMemory": 3_400}
    log = Log()
    log(0, "sim.start", seed=seed, host_pages=262_144, root=1)
    log(0, "fault.plan", name="synthetic", faults=3, heal_at_ns=5_000_000)
    t, pid = 0, 1
    while len(log.records) < n_events:
        pid += 1
        t += 10_000
        start = t
        log(t, "partition.state", partition=pid, old=None, new="CREATED", parent=1)
        log(t, "host.boot.created", host_vp=pid % 2, partition=pid, vps=4)
        log(t, "pool", partition=pid, available=256, in_use=0)
        for vp in range(4):
            log(t, "vp.created", partition=pid, vp=vp)
            log(t, "vp.state", partition=pid, vp=vp, runnable=True)
        log(t + 1_000, "host.boot.end", host_vp=pid % 2, partition=pid, duration_ns=t + 1_000 - start)
        for burst in range(25):
            vp = burst % 4
            for _ in range(calls_per_burst):
                name = rng.choice(sorted(costs))
                cost = int(costs[name] * cost_scale) + cost_add
                log.call(t, pid, vp, name, cost, reps=1)
                t += cost + rng.randrange(100, 400)
            log(t, "pool", partition=pid, available=256 - burst, in_use=burst)
            if burst % 10 == 3:
                log(t, "fault", kind="pool.refuse_large", index=0, partition=pid, pages=160)
        log(t, "host.teardown.begin", host_vp=pid % 2, partition=pid)
        for vp in range(4):
            log(t, "vp.state", partition=pid, vp=vp, runnable=False)
        log(t + 500, "partition.state", partition=pid, old="ACTIVE", new=None)
        log(t + 500, "host.teardown.end", host_vp=pid % 2, partition=pid, duration_ns=500)
        t += 500
    log(t, "fault.healed", fired={"pool.refuse_large": 1})
    return log.records


def write_run(path: Path, records: list[Record], summary: dict[str, Any] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "events.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    if summary is not None:
        (path / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return path


@pytest.fixture
def hand_run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "hand", hand_log(), hand_summary())


@pytest.fixture
def make_run(tmp_path: Path) -> MakeRun:
    """``make_run(name, records, summary=None)`` writes a run folder under tmp_path."""

    def make(name: str, records: list[Record], summary: dict[str, Any] | None = None) -> Path:
        return write_run(tmp_path / name, records, summary)

    return make


@pytest.fixture
def synthetic() -> Callable[..., list[Record]]:
    return synthetic_log


@pytest.fixture
def hand_records() -> list[Record]:
    return hand_log()
