"""pytest plugin (auto-loaded once hvsim is installed): chaos campaigns inside a user's test suite.

    def test_my_host_survives_swarm(hvsim_chaos):
        hvsim_chaos(MyHost, scenario="churn", swarm=True)

runs ``--hvsim-seeds`` seeds (default 20) in this process and fails with every failing seed's
outcome and a command that reproduces it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hvsim.faults import FaultPlan, load_plan
from hvsim.scenarios.chaos import Campaign, SeedResult, run_campaign

DEFAULT_SEEDS = 20


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hvsim")
    group.addoption("--hvsim-seeds", type=int, default=DEFAULT_SEEDS, help="Seeds per hvsim_chaos campaign.")
    group.addoption("--hvsim-start", type=int, default=0, help="First seed of hvsim_chaos campaigns.")


@pytest.fixture
def hvsim_chaos(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., list[SeedResult]]:
    """Run a chaos campaign against a host class; fail the test if any seed fails."""
    seeds = int(request.config.getoption("--hvsim-seeds"))
    start = int(request.config.getoption("--hvsim-start"))

    def run(
        host: type | str | None = None,
        *,
        scenario: str = "lifecycle",
        swarm: bool = False,
        plan: FaultPlan | Path | None = None,
    ) -> list[SeedResult]:
        host_spec = (
            host if isinstance(host, str) or host is None else f"{host.__module__}:{host.__qualname__}"
        )
        faults = "swarm" if swarm else "none"
        if plan is not None:
            faults = (load_plan(plan) if isinstance(plan, Path) else plan).to_toml()
        campaign = Campaign(scenario, faults, host_spec)
        results = run_campaign(campaign, range(start, start + seeds), tmp_path / "chaos", jobs=1)
        failed = [r for r in results if r.outcome != "pass"]
        if failed:
            pytest.fail(_report(failed, tmp_path / "chaos", campaign), pytrace=False)
        return results

    return run


def _report(failed: list[SeedResult], out: Path, campaign: Campaign) -> str:
    lines = [f"{len(failed)} hvsim seed(s) failed ({campaign.scenario}, faults: {_faults(campaign)}):"]
    for r in failed[:10]:
        lines.append(f"  seed {r.seed}: {r.outcome} {r.checker or ''} {r.message or ''}".rstrip())
    first = out / "failures" / f"seed-{failed[0].seed}" / "manifest.json"
    if first.exists():
        import json

        lines.append("reproduce: " + json.loads(first.read_text())["repro"])
    return "\n".join(lines)


def _faults(campaign: Campaign) -> Any:
    return campaign.faults if campaign.faults in ("none", "swarm") else "plan"
