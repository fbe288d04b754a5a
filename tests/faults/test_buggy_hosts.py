"""The checkers catch real host bugs: deliberately buggy host policies, each caught under a fault plan.

Every buggy host here passes the same scenario *without* faults (its bug needs the fault to show),
fails under the plan -- with the checker or host error that caught it named -- while the reference
host passes the very same plan and seed. Hosts are also loaded the way ``hvsim run --host`` loads
them: ``module:Class`` from the current directory.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import simpy

from hvsim.actors.hvdef import (
    HV_PARTITION_ID_SELF,
    PARTITION_ID_INPUT,
    HvStatus,
    HypercallCode,
    PartitionIdInput,
    control,
)
from hvsim.faults import FaultPlan, parse_plan
from hvsim.scenarios.host import HostError, PartitionSpec, ReferenceHost
from hvsim.scenarios.hostapi import DEPOSIT_MAX, RepOutcome
from hvsim.scenarios.hostload import HostClassError, load_host_class
from hvsim.scenarios.runner import RunResult, run_scenario

S = HvStatus
MS = 1_000_000
_U64 = struct.Struct("<Q")
Gen = Generator[simpy.Event, Any, Any]
HVSIM = [sys.executable, "-m", "hvsim.scenarios.cli"]


def _status(result: Any) -> HvStatus:
    return HvStatus(result[0] if isinstance(result, tuple) else cast(int, result))


# --- the buggy hosts -------------------------------------------------------------------------------
class ForgetsToResumeWithdraw(ReferenceHost):
    """Recovery after a crash: finalizes and deletes every child, but a child that is *already*
    FINALIZED (the dead host got past finalize) is assumed to be drained as well -- so its pool is
    never withdrawn, and the delete (whose status it does not check) is refused."""

    def reclaim_all(self) -> Gen:
        reclaimed = []
        for pid in (yield from self.api.children()):
            status = yield from self.api.finalize_partition(pid)
            if status is S.SUCCESS:
                yield from self.drain(pid)
            # BUG: INVALID_PARTITION_STATE means "finalized before the crash", not "drained".
            yield from self.api.delete_partition(pid)  # best effort, status ignored
            self.managed.pop(pid, None)
            reclaimed.append(pid)
        self.note("reclaim", partitions=reclaimed)
        return reclaimed


class IgnoresPartialReps(ReferenceHost):
    """Deposits with one DepositMemory per 511-page chunk and takes SUCCESS to mean every page went
    in, instead of continuing from reps completed (the TLFS continuation). The pages the hypervisor
    did not take stay allocated to the host forever."""

    def deposit(self, partition_id: int, count: int) -> Gen:
        pages = self.sim.alloc_host_pages(count)
        header = PARTITION_ID_INPUT.pack(PartitionIdInput(partition_id))
        for start in range(0, len(pages), DEPOSIT_MAX):
            chunk = pages[start : start + DEPOSIT_MAX]
            ctl = control(HypercallCode.DepositMemory, rep_count=len(chunk))
            res = yield from self.api.invoke(ctl, header + b"".join(_U64.pack(p) for p in chunk))
            if res.status is not S.SUCCESS:
                self.sim.free_host_pages(pages[start + res.reps_completed :])
                raise HostError(f"DepositMemory({partition_id})", res.status)
            # BUG: res.reps_completed may be < len(chunk); the rest is neither re-issued nor freed.
        return RepOutcome(S.SUCCESS, len(pages), b"", 1)


class GivesUpOnInsufficientMemory(ReferenceHost):
    """Sizes every deposit from the page costs up front -- so an undisturbed hypervisor never answers
    it INSUFFICIENT_MEMORY -- and treats INSUFFICIENT_MEMORY as fatal instead of depositing and
    retrying (a pool can be short for reasons the host cannot see)."""

    def boot(self, spec: PartitionSpec) -> Gen:
        costs = self.sim.config.page_costs
        yield from self.deposit(HV_PARTITION_ID_SELF, costs.create_partition)
        need = costs.initialize_partition + spec.vps * costs.create_vp
        return (yield from super().boot(replace(spec, initial_pages=max(spec.initial_pages, need))))

    def with_memory(self, issue: Callable[[], Gen], pool: int, step: str) -> Gen:
        result = yield from issue()
        if _status(result) is S.INSUFFICIENT_MEMORY:
            raise HostError(f"{step} (gave up: the pool was sized exactly)", S.INSUFFICIENT_MEMORY)
        return result


class TrustsFirstNoResources(ReferenceHost):
    """Drains a finalized partition until the first NO_RESOURCES and deletes it, without asking
    GetMemoryBalance whether the pool really is empty (NO_RESOURCES may come early)."""

    def drain(self, partition_id: int) -> Gen:
        total = 0
        while True:
            status, pages = yield from self.api.withdraw(partition_id)
            self.sim.free_host_pages(pages)
            total += len(pages)
            self.note("teardown.withdrew", partition=partition_id, pages=len(pages))
            if status is not S.SUCCESS:
                return total  # BUG: the balance is the arbiter, not the first NO_RESOURCES


class NoBackoffOnNoResources(ReferenceHost):
    """Retries a call that answered NO_RESOURCES immediately, a few times, then gives up: a limit
    that clears with time is never given the time."""

    def with_memory(self, issue: Callable[[], Gen], pool: int, step: str) -> Gen:
        status = S.SUCCESS
        for _ in range(8):
            result = yield from issue()
            status = _status(result)
            if status is S.INSUFFICIENT_MEMORY:
                yield from self.deposit(pool, self.retry_pages)
            elif status is not S.NO_RESOURCES:
                return result
            # BUG: NO_RESOURCES retried at once, no back-off
        raise HostError(f"{step} (gave up after 8 immediate retries)", status)


class LeaksOnCrashRecovery(ReferenceHost):
    """Recovery that deletes what it can but never drains a partition the dead host had not yet
    finalized: it assumes finalize returns the pages to the host (it returns them to the pool)."""

    def reclaim_all(self) -> Gen:
        reclaimed = []
        for pid in (yield from self.api.children()):
            status = yield from self.api.finalize_partition(pid)
            if status is not S.SUCCESS:
                yield from self.drain(pid)  # only partitions the dead host had finalized
            yield from self.api.delete_partition(pid)
            reclaimed.append(pid)
        self.note("reclaim", partitions=reclaimed)
        return reclaimed


class SkipsEom(ReferenceHost):
    """Takes each message out of its SINT slot like a SINT handler, but never writes EOM when the
    message carried MessagePending: the message queued behind it is never delivered."""

    def take_message(self, sint: int, timeout_ns: int | None = None) -> Gen:
        actor = self.sim.vp_actor(self.api.caller, self.api.vp)
        assert actor is not None
        env = self.sim.env
        deadline = None if timeout_ns is None else self.sim.now_ns + timeout_ns
        while not actor.synic.slot_type(sint):
            if deadline is not None and self.sim.now_ns >= deadline:
                return None
            irq = actor.next_interrupt()
            yield irq if deadline is None else env.any_of([irq, env.timeout(deadline - self.sim.now_ns)])
        message, _pending = actor.synic.take_slot(sint)
        return message  # BUG: MessagePending means "write EOM", or the queue stalls


def plan(*faults: dict[str, Any], heal_at_ns: int = 50 * MS) -> FaultPlan:
    return FaultPlan.model_validate({"name": "buggy-host", "heal_at_ns": heal_at_ns, "fault": list(faults)})


TRANSIENT_WITHDRAW = {"kind": "hypercall.transient", "calls": ["WithdrawMemory"], "status": "NO_RESOURCES"}

#: (host, scenario, seed, plan, what catches it: "checker:<name>" or "error:<text in the host error>")
CASES: list[tuple[type[ReferenceHost], str, int, FaultPlan, str]] = [
    (ForgetsToResumeWithdraw, "lifecycle", 0,
     plan({"kind": "host.crash", "step": "teardown.finalized"}), "checker:all-reclaimed"),
    (ForgetsToResumeWithdraw, "lifecycle", 1,
     plan({"kind": "host.crash", "step": "teardown.withdrew"}, {**TRANSIENT_WITHDRAW, "start_ns": 20 * MS},
          heal_at_ns=30 * MS), "checker:all-reclaimed"),
    (IgnoresPartialReps, "lifecycle", 0,
     plan({"kind": "hypercall.partial", "calls": ["DepositMemory"], "max_reps": 100}),
     "checker:host-pages-returned"),
    (IgnoresPartialReps, "churn", 3,
     plan({"kind": "hypercall.partial", "calls": ["DepositMemory"], "max_reps": 16, "probability": 0.3}),
     "checker:host-pages-returned"),
    (GivesUpOnInsufficientMemory, "lifecycle", 0, plan({"kind": "pool.fail_nth", "n": 5}),
     "error:gave up: the pool was sized exactly"),
    (GivesUpOnInsufficientMemory, "lifecycle", 1, plan({"kind": "pool.fail_probability", "probability": 0.2}),
     "error:gave up: the pool was sized exactly"),
    (TrustsFirstNoResources, "lifecycle", 0,
     plan({**TRANSIENT_WITHDRAW, "probability": 0.5}, heal_at_ns=30 * MS), "error:DeletePartition"),
    (NoBackoffOnNoResources, "lifecycle", 0,
     plan({**TRANSIENT_WITHDRAW, "calls": ["CreateVp"]}, heal_at_ns=5 * MS),
     "error:CreateVp (gave up after 8 immediate retries)"),
    (LeaksOnCrashRecovery, "lifecycle", 2, plan({"kind": "host.crash", "step": "boot.end"}),
     "checker:all-reclaimed"),
    (SkipsEom, "doorbell", 0,
     plan({"kind": "message.duplicate", "kinds": ["doorbell"], "probability": 0.5}, heal_at_ns=20 * MS),
     "checker:message-progress"),
]  # fmt: skip


def verdict(result: RunResult) -> str:
    return f"error={result.error!r} violations={[(v.checker, v.message) for v in result.violations]}"


@pytest.mark.parametrize(
    ("host", "scenario", "seed", "fault_plan", "caught_by"),
    CASES,
    ids=[f"{c[0].__name__}-{c[1]}-{c[2]}" for c in CASES],
)
def test_buggy_host_is_caught_and_reference_host_passes(
    host: type[ReferenceHost], scenario: str, seed: int, fault_plan: FaultPlan, caught_by: str
) -> None:
    reference = run_scenario(scenario, seed, plan=fault_plan)
    assert reference.ok, "reference host: " + verdict(reference)
    buggy = run_scenario(scenario, seed, plan=fault_plan, host_class=host)
    assert not buggy.ok, f"{host.__name__} was not caught"
    how, _, what = caught_by.partition(":")
    if how == "checker":
        assert what in {v.checker for v in buggy.violations}, verdict(buggy)
        assert buggy.summary["checkers"][what]["ok"] is False
    else:
        assert buggy.error is not None and what in buggy.error, verdict(buggy)
    assert buggy.summary["ok"] is False and buggy.summary["faults"]["fired"]


BUGGY_HOSTS = sorted({c[0] for c in CASES}, key=lambda h: h.__name__)


@pytest.mark.parametrize("host", BUGGY_HOSTS, ids=[h.__name__ for h in BUGGY_HOSTS])
def test_buggy_hosts_pass_without_faults(host: type[ReferenceHost]) -> None:
    """Each bug needs its fault: an undisturbed run does not show it."""
    for scenario, seed in {(c[1], c[2]) for c in CASES if c[0] is host}:
        result = run_scenario(scenario, seed, host_class=host)
        assert result.ok, f"{host.__name__} {scenario} {seed}: {verdict(result)}"


def test_leaked_pages_are_the_ones_the_partial_deposit_left_behind() -> None:
    fault_plan = plan({"kind": "hypercall.partial", "calls": ["DepositMemory"], "max_reps": 100})
    buggy = run_scenario("lifecycle", 0, plan=fault_plan, host_class=IgnoresPartialReps)
    cut = [r for r in buggy.sim.log.records() if r["event"] == "hypercall" and "fault" in r]
    # Every 256-page initial deposit went in 100 pages at a time: 156 pages left behind per partition.
    (violation,) = [v for v in buggy.violations if v.checker == "host-pages-returned"]
    assert violation.objects["pages"] == sum(256 - r["reps"] for r in cut)


# --- loading a host policy as --host module:Class ------------------------------------------------
HOST_MODULE = '''
"""A user's host policies, loaded with --host."""
from hvsim.actors.hvdef import HvStatus
from hvsim.scenarios.host import ReferenceHost


class CarefulHost(ReferenceHost):
    """The reference policy, with a bigger top-up."""

    def __init__(self, sim, **kwargs):
        super().__init__(sim, **kwargs)
        self.retry_pages = 64


class TrustsFirstNoResources(ReferenceHost):
    def drain(self, partition_id):
        total = 0
        while True:
            status, pages = yield from self.api.withdraw(partition_id)
            self.sim.free_host_pages(pages)
            total += len(pages)
            if status is not HvStatus.SUCCESS:
                return total


class NotAHost:
    pass


NOT_A_CLASS = 3
'''

TRANSIENT_WITHDRAW_TOML = """heal_at_ns = 30_000_000

[[fault]]
kind = "hypercall.transient"
calls = ["WithdrawMemory"]
status = "NO_RESOURCES"
probability = 0.5
"""


@pytest.fixture
def host_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A host module in a fresh directory that is the cwd; sys.path and sys.modules restored after."""
    name = f"user_hosts_{os.getpid()}_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(HOST_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        yield name
    finally:
        sys.modules.pop(name, None)


def test_load_host_class_imports_from_the_current_directory(host_module: str) -> None:
    cls = load_host_class(f"{host_module}:CarefulHost")
    assert cls.__name__ == "CarefulHost" and issubclass(cls, ReferenceHost)
    assert os.getcwd() in sys.path
    result = run_scenario("lifecycle", 0, host_class=cls)
    assert result.ok, verdict(result)
    # The loaded policy is the one that ran: its top-ups are 64 pages.
    deposits = [
        r for r in result.sim.log.records() if r["event"] == "hypercall" and r["call"] == "DepositMemory"
    ]
    assert 64 in {r["reps"] for r in deposits}


def test_a_loaded_buggy_host_is_caught(host_module: str) -> None:
    cls = load_host_class(f"{host_module}:TrustsFirstNoResources")
    fault_plan = parse_plan(TRANSIENT_WITHDRAW_TOML)
    assert run_scenario("lifecycle", 0, plan=fault_plan).ok
    buggy = run_scenario("lifecycle", 0, plan=fault_plan, host_class=cls)
    assert not buggy.ok and buggy.error is not None and "DeletePartition" in buggy.error


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nocolon", "expected MODULE:CLASS"),
        (":CarefulHost", "expected MODULE:CLASS"),
        ("{mod}:", "expected MODULE:CLASS"),
        ("absent_hvsim_test_hosts:Host", "cannot import absent_hvsim_test_hosts: ModuleNotFoundError"),
        ("{mod}:Missing", "has no class Missing"),
        ("{mod}:NOT_A_CLASS", "has no class NOT_A_CLASS"),
        ("{mod}:NotAHost", "NotAHost has no boot() (subclass ReferenceHost)"),
    ],
)  # fmt: skip
def test_load_host_class_errors_are_one_line(host_module: str, spec: str, needle: str) -> None:
    with pytest.raises(HostClassError) as info:
        load_host_class(spec.format(mod=host_module))
    message = str(info.value)
    assert message.startswith("--host ") and needle in message and "\n" not in message


def hvsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVSIM, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line_usage_error(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.startswith("hvsim: error:") and res.stderr.count("\n") == 1, res.stderr
    assert needle in res.stderr, res.stderr


def test_cli_host_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "cli_hosts.py").write_text(HOST_MODULE)
    one_line_usage_error(hvsim("run", "--host", "cli_hosts", cwd=tmp_path), "expected MODULE:CLASS")
    one_line_usage_error(
        hvsim("run", "--host", "absent_cli_hosts:X", cwd=tmp_path), "cannot import absent_cli_hosts"
    )
    one_line_usage_error(
        hvsim("run", "--host", "cli_hosts:Missing", cwd=tmp_path), "cli_hosts has no class Missing"
    )
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_cli_host_import_error_with_a_multi_line_message_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "validates_at_import.py").write_text(
        "from hvsim.faults import FaultPlan\nPLAN = FaultPlan(heal_at_ns=-1)\n"
    )
    one_line_usage_error(
        hvsim("run", "--host", "validates_at_import:Host", cwd=tmp_path), "validates_at_import"
    )


def test_cli_runs_a_buggy_host_and_the_reproduce_line_names_it(tmp_path: Path) -> None:
    (tmp_path / "cli_hosts.py").write_text(HOST_MODULE)
    (tmp_path / "plan.toml").write_text(TRANSIENT_WITHDRAW_TOML)
    res = hvsim(
        "run",
        "--faults",
        "plan.toml",
        "--host",
        "cli_hosts:TrustsFirstNoResources",
        "--out",
        "o",
        cwd=tmp_path,
    )
    assert res.returncode == 1, res.stderr
    assert (
        "reproduce: hvsim run lifecycle --seed 0 --faults o/plan.toml --host cli_hosts:TrustsFirstNoResources"
        in res.stderr
    )
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert not summary["ok"] and "DeletePartition" in summary["error"]
    res = hvsim("run", "--faults", "plan.toml", "--host", "cli_hosts:CarefulHost", "--out", "p", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_a_host_written_from_scratch_only_needs_boot_teardown_recover(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """
        class Minimal:
            def __init__(self, sim, *, vp=0, **kwargs):
                from hvsim.scenarios.host import ReferenceHost
                self._inner = ReferenceHost(sim, vp=vp, **kwargs)
            def boot(self, spec):
                return self._inner.boot(spec)
            def teardown(self, pid):
                return self._inner.teardown(pid)
            def recover(self):
                return self._inner.recover()
            def lifecycle(self, spec, run_ns):
                return self._inner.lifecycle(spec, run_ns)
        """
    )
    (tmp_path / "scratch_hosts.py").write_text(source)
    res = hvsim("run", "churn", "--host", "scratch_hosts:Minimal", "--out", "o", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
