"""hvsim chaos on a Dask cluster (a LocalCluster of worker processes): the same rows, artifacts and
exit codes as a local campaign, and a campaign resumes across backends."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from hvsim.scenarios.chaos import Campaign, SeedResult, replay_artifact, run_campaign

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

HVSIM = [sys.executable, "-m", "hvsim.scenarios.cli"]
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
PLAN = """[[fault]]
kind = "hypercall.transient"
calls = ["WithdrawMemory"]
status = "NO_RESOURCES"
probability = 0.5
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a buggy host module; the cluster's workers start here, so they import it."""
    folder = tmp_path_factory.mktemp("dask")
    (folder / "buggyhosts.py").write_text(BUGGY)
    return folder


@pytest.fixture(scope="module")
def scheduler(workdir: Path) -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    mp.chdir(workdir)
    mp.syspath_prepend(str(workdir))
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
        mp.undo()


def comparable(results: list[SeedResult]) -> list[dict[str, Any]]:
    """Everything a row holds except the wall time, which is the one thing not derived from the seed."""
    return [{k: v for k, v in asdict(r).items() if k != "wall_s"} for r in results]


def test_a_dask_campaign_records_what_a_local_one_does(tmp_path: Path, scheduler: str) -> None:
    campaign = Campaign("lifecycle", PLAN, "buggyhosts:TrustsFirstNoResources")
    local = run_campaign(campaign, range(4), tmp_path / "local", jobs=1)
    remote = run_campaign(campaign, range(4), tmp_path / "dask", jobs=1, scheduler=scheduler)
    assert comparable(remote) == comparable(local)
    failed = [r.seed for r in remote if r.outcome != "pass"]
    assert failed, "the buggy host should fail some seeds"
    for seed in failed:
        # The artifact came home from the worker, names its home folder and replays exactly.
        folder = tmp_path / "dask" / "failures" / f"seed-{seed}"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert str(folder / "plan.toml") in manifest["repro"]
        assert replay_artifact(folder).identical
        local_folder = tmp_path / "local" / "failures" / f"seed-{seed}"
        assert (folder / "events.jsonl").read_bytes() == (local_folder / "events.jsonl").read_bytes()


def test_a_campaign_resumes_across_backends(tmp_path: Path, scheduler: str) -> None:
    campaign = Campaign("churn", "swarm")
    run_campaign(campaign, range(3), tmp_path / "c", jobs=1)
    ran: list[int] = []
    both = run_campaign(
        campaign,
        range(6),
        tmp_path / "c",
        jobs=1,
        scheduler=scheduler,
        on_result=lambda r: ran.append(r.seed),
    )
    assert sorted(ran) == [3, 4, 5]  # nothing run twice
    assert comparable(both) == comparable(run_campaign(campaign, range(6), tmp_path / "fresh", jobs=2))


def test_cli_scheduler_runs_the_campaign_and_exits_with_its_outcome(workdir: Path, scheduler: str) -> None:
    (workdir / "plan.toml").write_text(PLAN)
    res = subprocess.run(
        [*HVSIM, "chaos", "--seeds", "3", "--faults", "plan.toml",
         "--host", "buggyhosts:TrustsFirstNoResources", "--scheduler", scheduler, "--out", "cli"],
        cwd=workdir, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 4, res.stdout + res.stderr  # host errors: the liveness / host-error code
    assert "3 seeds:" in res.stdout and "reproduce: hvsim run lifecycle" in res.stdout
    with sqlite3.connect(workdir / "cli" / "results.sqlite") as db:
        assert [s for (s,) in db.execute("SELECT seed FROM seeds ORDER BY seed")] == [0, 1, 2]


def test_cli_unreachable_scheduler_is_one_line_and_a_harness_exit(tmp_path: Path) -> None:
    res = subprocess.run(
        [*HVSIM, "chaos", "--seeds", "1", "--scheduler", "tcp://127.0.0.1:9", "--out", "x"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 6, res.stdout + res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
