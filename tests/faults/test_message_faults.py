"""Message faults as a user meets them: a vmbus (or doorbell) run under a plan, judged by its event log
and its summary.

In a vmbus session the client (partition 2, booted first) posts a request through its connection 1
to the server's message port 1 (partition 3, SINT 2), waits for the server's completion event (the
client's event port 2, SINT 3), then takes the response from its own message port 1; each wait gives
up after 1 ms, so a lost message costs the client a timeout. The server waits for requests with no
timeout. Every message the hypervisor carries is logged as ``message.posted`` (with ``fault`` when a
fault acted on it, ``copy_of`` for a duplicate) and ends in one ``message.delivered``,
``message.freed`` or ``message.dropped``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Generator
from typing import Any

import pytest
import simpy

from hvsim.actors.hvdef import RegisterName
from hvsim.actors.vp import CRASH_NOTIFY
from hvsim.actors.workload import Program, ReceiveMessage
from hvsim.faults import FaultPlan
from hvsim.scenarios.host import PartitionSpec, ReferenceHost
from hvsim.scenarios.library import Scenario
from hvsim.scenarios.messaging import MESSAGE_SINT, doorbell_session, vmbus_session
from hvsim.scenarios.runner import RunResult, run_scenario
from hvsim.scenarios.simulation import Simulation
from hvsim.scenarios.workload import enable_synic

MS = 1_000_000
CLIENT, SERVER = 2, 3
#: The message port of each child (requests reach the server's, responses the client's) and the
#: client's event port (completions).
MSG_PORT, EVENT_PORT = 1, 2
POST_KINDS = ("post", "event", "doorbell")  # what travels; direct posts and signals do not


#: How long the short sessions run before their teardown.
RUN_NS = 30 * MS


def vmbus(run_ns: int = RUN_NS) -> Scenario:
    """A vmbus session cut to *run_ns*, with a request every ~0.25 ms when nothing is lost."""
    return Scenario(
        f"vmbus-{run_ns // MS}ms", "vmbus, short", lambda sim: vmbus_session(sim, run_ns, think_ns=200_000)
    )


def doorbell(run_ns: int = RUN_NS) -> Scenario:
    return Scenario(
        f"doorbell-{run_ns // MS}ms", "doorbell, short", lambda sim: doorbell_session(sim, run_ns)
    )


def make_plan(*faults: dict[str, Any], heal_at_ns: int = 15 * MS) -> FaultPlan:
    return FaultPlan.model_validate({"name": "messages", "heal_at_ns": heal_at_ns, "fault": list(faults)})


def describe(result: RunResult) -> str:
    return f"error={result.error!r} violations={[(v.checker, v.message) for v in result.violations]}"


def events(result: RunResult, name: str) -> list[dict[str, Any]]:
    return [r for r in result.records if r["event"] == name]


def post_calls(
    result: RunResult, caller: int | None = None, call: str = "PostMessage"
) -> list[dict[str, Any]]:
    return [
        r
        for r in events(result, "hypercall")
        if r["call"] == call and (caller is None or r["caller"] == caller)
    ]


def check_balanced(result: RunResult) -> dict[str, Any]:
    """The run is clean and its summary accounts for every message; returns the summary's section."""
    assert result.ok, describe(result)
    counts = result.summary["messages"]
    assert (
        counts["posted"] == counts["delivered"] + counts["freed"] + counts["dropped"] + counts["undelivered"]
    )
    assert counts["posted"] == len(events(result, "message.posted"))
    assert counts["delivered"] == len(events(result, "message.delivered"))
    assert counts["dropped"] == len(events(result, "message.dropped"))
    assert counts["duplicates"] == len([r for r in events(result, "message.posted") if "copy_of" in r])
    return counts


def nothing_lost(counters: dict[str, int]) -> bool:
    """Every request was served and answered -- but for the one exchange that may be under way when
    the session reads its counters."""
    sent = counters["requests_sent"]
    return sent - 1 <= counters["responses_received"] <= counters["requests_served"] <= sent


def transits(result: RunResult) -> list[tuple[dict[str, Any], int]]:
    """Each delivered message's post record with its transit time (delivered t - posted t)."""
    posted = {r["id"]: r for r in events(result, "message.posted")}
    return [(posted[r["id"]], r["t"] - posted[r["id"]]["t"]) for r in events(result, "message.delivered")]


def inversions(result: RunResult) -> dict[tuple[int, int], int]:
    """Per (target partition, port): how many consecutive deliveries came in the reverse of post order."""
    order = {r["id"]: i for i, r in enumerate(events(result, "message.posted"))}
    per_port: dict[tuple[int, int], list[int]] = defaultdict(list)
    for r in events(result, "message.delivered"):
        if r["port"] is not None:
            per_port[(r["dst_partition"], r["port"])].append(order[r["id"]])
    return {key: sum(b < a for a, b in itertools.pairwise(seq)) for key, seq in per_port.items()}


# --- the fault-free baseline ------------------------------------------------------------------------
#: Per scenario, the (target partition, port) pairs messages travel through: vmbus requests to the
#: server, responses and completion events to the client; doorbell rings to the root's doorbell port
#: and completion events to the guest.
PORTS = {
    "vmbus": {(SERVER, MSG_PORT), (CLIENT, MSG_PORT), (CLIENT, EVENT_PORT)},
    "doorbell": {(1, 7), (2, 8)},
}


@pytest.mark.parametrize("name", sorted(PORTS))
def test_without_faults_every_port_delivers_in_post_order(name: str) -> None:
    result = run_scenario(vmbus() if name == "vmbus" else doorbell(), 0)
    check_balanced(result)
    found = inversions(result)
    assert set(found) == PORTS[name]
    assert found == dict.fromkeys(found, 0)
    latency = result.sim.config.message_latency_ns
    assert {t for rec, t in transits(result) if rec["kind"] != "direct"} == {latency}
    assert not [r for r in events(result, "message.posted") if "fault" in r]
    if name == "vmbus":  # the roles this file assumes
        first = next(r for r in events(result, "message.posted") if r["kind"] == "post")
        assert (first["src_partition"], first["dst_partition"], first["port"]) == (CLIENT, SERVER, MSG_PORT)


# --- message.drop -----------------------------------------------------------------------------------
def test_message_drop_loses_messages_and_the_client_recovers_by_timeout() -> None:
    heal = 15 * MS
    result = run_scenario(
        vmbus(), 0, plan=make_plan({"kind": "message.drop", "probability": 0.3}, heal_at_ns=heal)
    )
    counts = check_balanced(result)  # the accounting checker passed: every post ended exactly once
    dropped = events(result, "message.dropped")
    assert dropped and counts["dropped"] == len(dropped) > 0
    assert {r["fault"] for r in dropped} == {"message.drop#0"}
    assert all(r["t"] < heal for r in dropped)
    # A dropped message was posted (with the fault's label) at the instant it was lost, and never
    # delivered.
    posted = {r["id"]: r for r in events(result, "message.posted")}
    assert all(
        posted[r["id"]]["fault"] == "message.drop#0" and posted[r["id"]]["t"] == r["t"] for r in dropped
    )
    assert not {r["id"] for r in dropped} & {r["id"] for r in events(result, "message.delivered")}
    assert result.summary["faults"]["fired"] == {"message.drop": len(dropped)}
    # The client lost requests or responses, timed out, and went on: responses reach it after the heal.
    counters = result.summary["counters"]
    assert counters["client_timeouts"] > 0
    assert counters["requests_sent"] > counters["responses_received"] > 0
    late = [r for r in events(result, "message.delivered") if r["t"] > heal]
    assert [r for r in late if (r["dst_partition"], r["port"]) == (CLIENT, MSG_PORT)]


def test_message_drop_of_events_only_leaves_requests_and_responses_alone() -> None:
    plan = make_plan({"kind": "message.drop", "kinds": ["event"], "probability": 0.5})
    result = run_scenario(vmbus(), 0, plan=plan)
    check_balanced(result)
    posted = {r["id"]: r for r in events(result, "message.posted")}
    dropped = events(result, "message.dropped")
    assert dropped and {posted[r["id"]]["kind"] for r in dropped} == {"event"}
    # A lost completion costs the client one wait; the response is still there to take. (The
    # counters are read at the end of the session: one request may be on its way then.)
    counters = result.summary["counters"]
    assert counters["client_timeouts"] == len(dropped)
    assert nothing_lost(counters)
    assert counters["completions_seen"] == counters["responses_received"] - len(dropped)


# --- message.duplicate ------------------------------------------------------------------------------
def test_message_duplicate_delivers_a_second_copy() -> None:
    """Duplicated requests for 5 ms. Each extra request makes the server post an extra response, which
    the client (one response per request) never catches up with: a few stay queued on its port. Many
    more -- with a longer window -- would fill its 16 buffers, and then the server's replies wait
    for the client and its own request queue backs up (a property of the guests' protocol)."""
    after, heal = 20_000, 5 * MS
    plan = make_plan(
        {
            "kind": "message.duplicate",
            "target": SERVER,
            "kinds": ["post"],
            "probability": 0.5,
            "after_ns": after,
        },
        heal_at_ns=heal,
    )
    result = run_scenario(vmbus(), 0, plan=plan)
    counts = check_balanced(result)
    posted = {r["id"]: r for r in events(result, "message.posted")}
    delivered = {r["id"]: r for r in events(result, "message.delivered")}
    copies = [r for r in posted.values() if "copy_of" in r]
    assert len(copies) >= 5 and counts["duplicates"] == len(copies)
    latency = result.sim.config.message_latency_ns
    for copy in copies:
        original = posted[copy["copy_of"]]
        assert copy["fault"] == original["fault"] == "message.duplicate#0"
        assert copy["id"] > original["id"] and copy["t"] == original["t"] < heal
        same = ("kind", "src_partition", "src_vp", "dst_partition", "dst_vp", "sint", "port")
        assert {k: copy[k] for k in same} == {k: original[k] for k in same}
        assert (copy["dst_partition"], copy["kind"]) == (SERVER, "post")
        # Both are delivered; the copy *after_ns* after the original (later if the slot is full).
        assert copy["id"] in delivered and original["id"] in delivered
        assert delivered[copy["id"]]["t"] >= original["t"] + latency + after
    # The server served the duplicated requests too: more than the client sent.
    counters = result.summary["counters"]
    assert counters["requests_served"] == counters["requests_sent"] + len(copies)
    # The surplus responses are still queued for the client when it is torn down.
    freed = events(result, "message.freed")
    assert {posted[r["id"]]["dst_partition"] for r in freed} <= {CLIENT}
    assert all(r["t"] >= RUN_NS for r in freed)


# --- message.reorder --------------------------------------------------------------------------------
def test_message_reorder_with_a_wide_window_breaks_post_order() -> None:
    plan = make_plan({"kind": "message.reorder", "window_ns": 5 * MS}, heal_at_ns=20 * MS)
    result = run_scenario(vmbus(), 0, plan=plan)
    check_balanced(result)
    found = inversions(result)
    assert sum(found.values()) > 0, found
    assert found[(SERVER, MSG_PORT)] > 0  # requests overtook each other
    fired = [r for r in events(result, "fault") if r["kind"] == "message.reorder"]
    assert fired and all(0 <= r["extra_ns"] <= 5 * MS for r in fired)
    assert len({r["extra_ns"] for r in fired}) > len(fired) // 2  # random delays, not one value


def test_message_reorder_with_a_window_below_the_message_spacing_keeps_order() -> None:
    """Through one port the vmbus channel posts at most one message per ~0.2 ms: a 50 us window
    delays messages but cannot make them overtake each other."""
    plan = make_plan({"kind": "message.reorder", "window_ns": 50_000}, heal_at_ns=20 * MS)
    result = run_scenario(vmbus(), 0, plan=plan)
    check_balanced(result)
    assert [r for r in events(result, "message.posted") if r.get("fault") == "message.reorder#0"]
    assert sum(inversions(result).values()) == 0


# --- message.delay ----------------------------------------------------------------------------------
def test_message_delay_adds_extra_ns_to_the_transit_of_affected_messages() -> None:
    extra, heal = 77_000, 15 * MS
    plan = make_plan({"kind": "message.delay", "extra_ns": extra, "probability": 0.5}, heal_at_ns=heal)
    result = run_scenario(vmbus(), 0, plan=plan)
    check_balanced(result)
    latency = result.sim.config.message_latency_ns
    delayed = [(rec, t) for rec, t in transits(result) if "fault" in rec]
    plain = [(rec, t) for rec, t in transits(result) if "fault" not in rec and rec["kind"] in POST_KINDS]
    assert delayed and plain and {rec["kind"] for rec, _ in delayed} == {"post", "event"}
    assert {t for _, t in delayed} == {latency + extra}
    assert {t for _, t in plain} == {latency}
    assert all(rec["t"] < heal and rec["fault"] == "message.delay#0" for rec, _ in delayed)
    assert [rec for rec, _ in plain if rec["t"] < heal]  # probability 0.5: some went through untouched
    # Delays on the way cost the client nothing but time: no request or response was lost.
    counters = result.summary["counters"]
    assert nothing_lost(counters) and counters["client_timeouts"] == 0


@pytest.mark.parametrize(
    ("target", "kinds", "expect"),
    [
        (SERVER, [], {(SERVER, "post")}),
        ("child", ["event"], {(CLIENT, "event")}),
        (CLIENT, ["post", "event"], {(CLIENT, "post"), (CLIENT, "event")}),
        ("root", [], set()),
    ],
)
def test_message_delay_acts_only_on_its_target_and_kinds(
    target: int | str, kinds: list[str], expect: set[tuple[int, str]]
) -> None:
    heal = 10 * MS
    plan = make_plan(
        {"kind": "message.delay", "target": target, "kinds": kinds, "extra_ns": 5_000}, heal_at_ns=heal
    )
    result = run_scenario(vmbus(), 0, plan=plan)
    check_balanced(result)
    early = [r for r in events(result, "message.posted") if r["t"] < heal and r["kind"] in POST_KINDS]
    hit = {(r["dst_partition"], r["kind"]) for r in early if "fault" in r}
    assert hit == expect
    # Probability 1: every matching message in the window was delayed; direct posts never are.
    assert all("fault" in r for r in early if (r["dst_partition"], r["kind"]) in expect)
    assert not [r for r in events(result, "message.posted") if r["kind"] == "direct" and "fault" in r]


# --- synic.busy_slot --------------------------------------------------------------------------------
def test_synic_busy_slot_holds_deliveries_until_the_fault_ends() -> None:
    start, end = 5 * MS, 45 * MS
    plan = make_plan(
        {"kind": "synic.busy_slot", "target": SERVER, "sint": MESSAGE_SINT, "start_ns": start, "end_ns": end},
        heal_at_ns=50 * MS,
    )
    result = run_scenario(vmbus(70 * MS), 0, plan=plan)
    check_balanced(result)
    (fired,) = [r for r in events(result, "fault") if r["kind"] == "synic.busy_slot"]
    assert (fired["partition"], fired["vp"], fired["sint"]) == (SERVER, 0, MESSAGE_SINT)
    assert start <= fired["t"] < end
    to_server = [r["t"] for r in events(result, "message.delivered") if r["dst_partition"] == SERVER]
    assert not [t for t in to_server if start <= t < end]
    assert [t for t in to_server if t < start]
    # Delivery resumes the instant the fault ends: the requests queued meanwhile go in one by one.
    resumed = [t for t in to_server if t >= end]
    assert resumed and resumed[0] == end
    # Meanwhile the requests held the port's 16 buffers: the client's PostMessage met
    # INSUFFICIENT_BUFFERS (and retried), only while the slot was held.
    full = [r for r in post_calls(result, CLIENT) if r["status"] == "INSUFFICIENT_BUFFERS"]
    assert full and all(start <= r["t"] <= end for r in full)
    held = [
        r for r in events(result, "message.posted") if r["dst_partition"] == SERVER and start <= r["t"] < end
    ]
    assert len([r for r in held if r["kind"] == "post"]) == 16  # the port's buffers, all in use
    # Nothing was lost: every request sent was served once the slot freed (the responses to the
    # ones the client had given up on pile up on its side: it takes one per request).
    counters = result.summary["counters"]
    assert counters["requests_sent"] - 1 <= counters["requests_served"] <= counters["requests_sent"]


# --- port.exhaust_buffers ---------------------------------------------------------------------------
def test_port_with_no_buffers_refuses_posts_until_the_heal() -> None:
    start, heal = 5 * MS, 15 * MS
    plan = make_plan(
        {"kind": "port.exhaust_buffers", "target": SERVER, "buffers": 0, "start_ns": start}, heal_at_ns=heal
    )
    result = run_scenario(vmbus(), 0, plan=plan)
    check_balanced(result)
    (fired,) = [r for r in events(result, "fault") if r["kind"] == "port.exhaust_buffers"]
    assert (fired["partition"], fired["port"]) == (SERVER, MSG_PORT)
    to_server = post_calls(result, CLIENT)
    during = [r for r in to_server if start <= r["t"] < heal]
    outside = [r for r in to_server if not start <= r["t"] < heal]
    assert during and {r["status"] for r in during} == {"INSUFFICIENT_BUFFERS"}
    assert [r for r in outside if r["t"] < start] and [r for r in outside if r["t"] >= heal]
    assert {r["status"] for r in outside} == {"SUCCESS"}
    # The server's own posts go to the client's port: never refused.
    assert {r["status"] for r in post_calls(result, SERVER) if r["t"] < heal} == {"SUCCESS"}
    # Refused posts took no buffer and posted nothing: no request reached the server meanwhile.
    assert not [
        r for r in events(result, "message.posted")
        if r["dst_partition"] == SERVER and r["kind"] == "post" and start <= r["t"] < heal
    ]  # fmt: skip
    assert result.summary["messages"]["attempts"]["PostMessage"]["INSUFFICIENT_BUFFERS"] == len(during)


def test_port_with_one_buffer_still_carries_the_one_outstanding_request() -> None:
    plan = make_plan({"kind": "port.exhaust_buffers", "buffers": 1})
    result = run_scenario(vmbus(), 0, plan=plan)
    check_balanced(result)
    assert {r["status"] for r in post_calls(result)} == {"SUCCESS"}
    counters = result.summary["counters"]
    assert nothing_lost(counters) and counters["responses_received"] > 50


# --- everything at once -----------------------------------------------------------------------------
ALL_MESSAGE_FAULTS = make_plan(
    {"kind": "message.delay", "probability": 0.2, "extra_ns": 30_000},
    {"kind": "message.reorder", "probability": 0.3, "window_ns": 2 * MS},
    {"kind": "message.drop", "probability": 0.1},
    {"kind": "message.duplicate", "probability": 0.2, "after_ns": 5_000},
    {"kind": "synic.busy_slot", "start_ns": 6 * MS, "end_ns": 9 * MS},
    {"kind": "port.exhaust_buffers", "buffers": 1, "start_ns": 10 * MS},
    heal_at_ns=20 * MS,
)


def test_a_run_with_every_message_fault_is_deterministic() -> None:
    first = run_scenario(vmbus(), 5, plan=ALL_MESSAGE_FAULTS)
    second = run_scenario(vmbus(), 5, plan=ALL_MESSAGE_FAULTS)
    check_balanced(first)
    assert set(first.summary["faults"]["fired"]) == {f.kind for f in ALL_MESSAGE_FAULTS.faults}
    assert first.sim.log.lines == second.sim.log.lines
    assert first.summary["messages"] == second.summary["messages"]
    assert first.summary["counters"] == second.summary["counters"]
    assert run_scenario(vmbus(), 6, plan=ALL_MESSAGE_FAULTS).sim.log.lines != first.sim.log.lines


@pytest.mark.parametrize("seed", [0, 1])
def test_doorbell_survives_every_message_fault(seed: int) -> None:
    result = run_scenario(doorbell(), seed, plan=ALL_MESSAGE_FAULTS)
    check_balanced(result)
    fired = result.summary["faults"]["fired"]
    assert {"message.delay", "message.reorder", "message.drop", "message.duplicate"} <= set(fired)
    counters = result.summary["counters"]
    assert counters["notifications"] == counters["completions_signaled"] > 0


# --- VP crashes meet SynIC waits (implementation bugs) -----------------------------------------------


def test_a_vp_crash_reaches_a_vp_idle_in_a_message_wait() -> None:
    seen: dict[str, Any] = {}
    names = [RegisterName.GuestCrashCtl, RegisterName.GuestCrashP1]
    listener = Program(enable_synic({MESSAGE_SINT: 0x30}), (ReceiveMessage(MESSAGE_SINT),), name="listener")

    def main(sim: Simulation) -> Generator[simpy.Event, Any, None]:
        host = ReferenceHost(sim)
        pid = yield from host.boot(PartitionSpec(vps=1, program=lambda _i: listener))
        yield sim.env.timeout(3 * MS - sim.now_ns)
        seen["crash"] = yield from host.api.get_registers(pid, 0, names)
        yield sim.env.timeout(20 * MS - sim.now_ns)
        yield from host.teardown(pid)

    plan = make_plan({"kind": "vp.crash", "start_ns": 2 * MS}, heal_at_ns=10 * MS)
    result = run_scenario(Scenario("listener", "one VP waiting for a message", main), 0, plan=plan)
    (fired,) = [r for r in events(result, "fault") if r["kind"] == "vp.crash"]
    assert fired["t"] == 2 * MS
    _status, (ctl, vp) = seen["crash"]
    assert ctl & CRASH_NOTIFY and vp == 0, "the crashed VP never wrote its crash registers"
    assert result.ok, describe(result)


def test_the_server_idle_after_its_client_crashed_is_not_a_liveness_failure() -> None:
    """The server then waits for a request that can never come: idle, like HLT, not stuck."""
    plan = make_plan({"kind": "vp.crash", "target": CLIENT, "start_ns": 2 * MS}, heal_at_ns=10 * MS)
    result = run_scenario(vmbus(), 0, plan=plan)
    assert [r for r in events(result, "fault") if r["kind"] == "vp.crash"]
    assert not [
        r for r in events(result, "message.posted") if r["src_partition"] == CLIENT and r["t"] > 3 * MS
    ]
    assert result.ok, describe(result)
