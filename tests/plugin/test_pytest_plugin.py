"""The pytest plugin, as a user's test suite uses it (pytester runs an inner pytest session)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

GOOD = """
from hvsim.scenarios.host import ReferenceHost

def test_reference_host(hvsim_chaos):
    results = hvsim_chaos(ReferenceHost, scenario="churn", swarm=True)
    assert len(results) == 3
"""

BAD = """
from hvsim.faults import parse_plan
from hvsim.scenarios.host import ReferenceHost

class NeverWithdraws(ReferenceHost):
    def drain(self, partition_id):
        return 0
        yield

PLAN = parse_plan('[[fault]]\\nkind = "hypercall.latency"\\nprobability = 0.1\\n')

def test_forgetful_host(hvsim_chaos):
    hvsim_chaos(NeverWithdraws, scenario="churn", plan=PLAN)
"""


def test_a_good_host_passes_a_small_campaign(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GOOD)
    result = pytester.runpytest_subprocess("--hvsim-seeds", "3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_buggy_host_fails_with_seeds_and_a_repro_command(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BAD)
    result = pytester.runpytest_subprocess("--hvsim-seeds", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*hvsim seed(s) failed (churn, faults: plan)*", "*reproduce: hvsim run churn --seed*"]
    )
