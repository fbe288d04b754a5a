"""Fault plans: what goes wrong, where and when, as data (a TOML file or a Python object).

A plan is a list of faults, each one ``[[fault]]`` table with a ``kind`` and its knobs, plus a
``heal_at_ns`` after which every fault is over and the run's liveness phase begins. Plans are
validated (pydantic); errors name the file, the line and the field. Any plan, including one drawn
by :func:`hvsim.faults.swarm.swarm_plan`, can be written back as TOML and replays identically.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from hvsim.actors.core import CALL_NAMES, CALL_TABLE

#: Which partitions a fault acts on: the root, any child, any partition, or one partition id (>= 1).
Target = Literal["root", "child", "any"] | Annotated[int, Field(ge=1, description="a partition id")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Ns = Annotated[int, Field(ge=0)]

IMPLEMENTED_CALLS = sorted(CALL_NAMES[code] for code in CALL_TABLE)
REP_CALLS = sorted(CALL_NAMES[code] for code, shape in CALL_TABLE.items() if shape.rep)

#: Statuses a call may legitimately return without any side effect, so a host must handle them:
#: the resource statuses the TLFS lists for calls that allocate (HYPERCALLS.md 4.x, 6.4).
TRANSIENT_STATUSES: dict[str, frozenset[str]] = {
    "CreatePartition": frozenset({"INSUFFICIENT_MEMORY", "NO_RESOURCES"}),
    "InitializePartition": frozenset({"INSUFFICIENT_MEMORY", "NO_RESOURCES"}),
    "CreateVp": frozenset({"INSUFFICIENT_MEMORY", "NO_RESOURCES"}),
    "SetPartitionProperty": frozenset({"INSUFFICIENT_MEMORY"}),
    "WithdrawMemory": frozenset({"NO_RESOURCES"}),
}


def transient_calls(status: str) -> list[str]:
    """The calls that may answer *status* without side effect (what an empty ``calls`` means)."""
    return sorted(call for call, allowed in TRANSIENT_STATUSES.items() if status in allowed)


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: When the fault becomes active (simulated ns).
    start_ns: Ns = 0
    #: When it heals by itself (None: at the plan's heal_at_ns).
    end_ns: Ns | None = None


class PoolCap(_Fault):
    """Refuse allocations that would take a pool's in-use pages above *max_in_use_pages*."""

    kind: Literal["pool.cap"]
    target: Target = "child"
    max_in_use_pages: Ns


class PoolFailNth(_Fault):
    """Refuse the *n*-th allocation (counted from the window start) on a target pool; with
    *every*, every *n*-th."""

    kind: Literal["pool.fail_nth"]
    target: Target = "any"
    n: Annotated[int, Field(ge=1)]
    every: bool = False


class PoolFailProbability(_Fault):
    """Refuse each allocation on a target pool with *probability*."""

    kind: Literal["pool.fail_probability"]
    target: Target = "any"
    probability: Probability


class PoolRefuseLarge(_Fault):
    """Refuse allocations of *min_pages* pages or more (a pool short of contiguous memory)."""

    kind: Literal["pool.refuse_large"]
    target: Target = "any"
    min_pages: Annotated[int, Field(ge=1)]


class PoolDrain(_Fault):
    """Take *pages_per_step* free pages out of each ACTIVE target pool every *step_ns*, up to
    *max_pages* per pool (the hypervisor using them internally); they come back when the fault
    heals, or into the partition's own pool when it is finalized."""

    kind: Literal["pool.drain"]
    target: Target = "child"
    pages_per_step: Annotated[int, Field(ge=1)] = 8
    step_ns: Annotated[int, Field(ge=1)] = 100_000
    max_pages: Annotated[int, Field(ge=1)] = 256


class _CallFault(_Fault):
    #: Hypercalls affected (TLFS names, e.g. "DepositMemory"); empty: every eligible call.
    calls: list[str] = []
    probability: Probability = 1.0
    #: Only calls issued by this partition ("root", "child", "any" or an id).
    caller: Target = "any"

    @field_validator("calls")
    @classmethod
    def _known_calls(cls, calls: list[str]) -> list[str]:
        unknown = [c for c in calls if c not in IMPLEMENTED_CALLS]
        if unknown:
            raise ValueError(f"unknown hypercall {unknown[0]!r} (known: {', '.join(IMPLEMENTED_CALLS)})")
        return calls


class HypercallPartial(_CallFault):
    """Force rep calls to return early (SUCCESS, at most *max_reps* reps done): continuations."""

    kind: Literal["hypercall.partial"]
    max_reps: Annotated[int, Field(ge=1)] = 1

    @field_validator("calls")
    @classmethod
    def _rep_calls_only(cls, calls: list[str]) -> list[str]:
        if [c for c in calls if c in IMPLEMENTED_CALLS and c not in REP_CALLS]:
            raise ValueError(f"hypercall.partial applies to rep calls only: {', '.join(REP_CALLS)}")
        return calls


class HypercallLatency(_CallFault):
    """Add *extra_ns* to the service time of affected calls (a latency spike)."""

    kind: Literal["hypercall.latency"]
    extra_ns: Annotated[int, Field(ge=1)] = 100_000


class HypercallTransient(_CallFault):
    """Answer affected calls with *status*, without executing them (no side effect)."""

    kind: Literal["hypercall.transient"]
    status: str = "INSUFFICIENT_MEMORY"

    @field_validator("status")
    @classmethod
    def _allowed(cls, status: str, info: ValidationInfo) -> str:
        calls = info.data.get("calls") or []
        for call in calls:
            allowed = TRANSIENT_STATUSES.get(call, frozenset())
            if status not in allowed:
                raise ValueError(
                    f"{call} cannot return {status} as a transient status"
                    + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else "")
                )
        if not calls and not transient_calls(status):
            raise ValueError(f"no hypercall returns {status} as a transient status")
        return status


class HostCrash(_Fault):
    """Crash the host when it reaches *step* for the *occurrence*-th time; a fresh host starts
    *restart_after_ns* later and must recover (rediscover children, finish the teardown)."""

    kind: Literal["host.crash"]
    step: str = "teardown.finalized"
    occurrence: Annotated[int, Field(ge=1)] = 1
    restart_after_ns: Ns = 1_000_000


class VpPause(_Fault):
    """Stop VP *vp* of target partitions from executing for *duration_ns* (the host is not told).
    Like every VP fault, it acts once per partition, as soon as that VP runs within the window."""

    kind: Literal["vp.pause"]
    target: Target = "child"
    vp: Annotated[int, Field(ge=0)] = 0
    duration_ns: Annotated[int, Field(ge=1)] = 1_000_000


class VpCrash(_Fault):
    """VP *vp* of target partitions crashes: it stops for good and reports through the guest
    crash registers (GuestCrashCtl, GuestCrashP0-P4), which the host can read."""

    kind: Literal["vp.crash"]
    target: Target = "child"
    vp: Annotated[int, Field(ge=0)] = 0


class VpSlow(_Fault):
    """VPs of target partitions compute *factor* times slower."""

    kind: Literal["vp.slow"]
    target: Target = "child"
    factor: Annotated[float, Field(ge=1.0, le=1000.0)] = 4.0


MessageKind = Literal["post", "event", "doorbell"]


class _MessageFault(_Fault):
    #: Messages whose target partition (the port owner) matches.
    target: Target = "any"
    #: Message kinds affected: "post" (PostMessage), "event" (SignalEvent), "doorbell"; empty:
    #: all three. Direct posts and signals never travel, so no message fault reaches them.
    kinds: list[MessageKind] = []
    probability: Probability = 1.0


class MessageDelay(_MessageFault):
    """Add *extra_ns* to the transit of affected messages."""

    kind: Literal["message.delay"]
    extra_ns: Annotated[int, Field(ge=1)] = 100_000


class MessageReorder(_MessageFault):
    """Delay each affected message by a random 0..*window_ns*, so messages sent close together
    overtake each other (breaking the TLFS's in-order delivery through a port bound to one VP)."""

    kind: Literal["message.reorder"]
    window_ns: Annotated[int, Field(ge=1)] = 50_000


class MessageDrop(_MessageFault):
    """Lose affected messages in transit (the port buffer comes back; nothing is delivered)."""

    kind: Literal["message.drop"]
    probability: Probability = 0.1


class MessageDuplicate(_MessageFault):
    """Deliver a second copy of affected messages *after_ns* after the first."""

    kind: Literal["message.duplicate"]
    probability: Probability = 0.1
    after_ns: Ns = 0


class SynicBusySlot(_Fault):
    """Hold the SIM slot of *sint* (None: every SINT) of target partitions' VPs busy: nothing is
    delivered into it, so messages queue, port buffers run out (INSUFFICIENT_BUFFERS) and direct
    posts answer OBJECT_IN_USE; delivery resumes when the fault heals."""

    kind: Literal["synic.busy_slot"]
    target: Target = "child"
    sint: Annotated[int, Field(ge=0, le=15)] | None = None


class PortBuffers(_Fault):
    """Message ports of target partitions have only *buffers* message buffers (16 normally)."""

    kind: Literal["port.exhaust_buffers"]
    target: Target = "any"
    buffers: Annotated[int, Field(ge=0, le=16)] = 1


Fault = Annotated[
    PoolCap
    | PoolFailNth
    | PoolFailProbability
    | PoolRefuseLarge
    | PoolDrain
    | HypercallPartial
    | HypercallLatency
    | HypercallTransient
    | HostCrash
    | VpPause
    | VpCrash
    | VpSlow
    | MessageDelay
    | MessageReorder
    | MessageDrop
    | MessageDuplicate
    | SynicBusySlot
    | PortBuffers,
    Field(discriminator="kind"),
]

FAULT_KINDS: dict[str, type[_Fault]] = {
    model.model_fields["kind"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        PoolCap, PoolFailNth, PoolFailProbability, PoolRefuseLarge, PoolDrain, HypercallPartial,
        HypercallLatency, HypercallTransient, HostCrash, VpPause, VpCrash, VpSlow, MessageDelay,
        MessageReorder, MessageDrop, MessageDuplicate, SynicBusySlot, PortBuffers,
    )
}  # fmt: skip


class FaultPlan(BaseModel):
    """A whole plan. ``FaultPlan()`` is the empty plan: a run with it equals a run without faults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "plan"
    #: Every fault is over by this simulated time; the liveness phase follows.
    heal_at_ns: Ns = 50_000_000
    #: After healing, how long (simulated) the system has to converge before liveness is judged.
    liveness_bound_ns: Annotated[int, Field(ge=1)] = 200_000_000
    fault: list[Fault] = []

    @property
    def faults(self) -> list[Any]:
        return list(self.fault)

    def to_toml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=False)
        data["fault"] = [{k: v for k, v in f.items() if v is not None} for f in data["fault"]]
        return tomli_w.dumps(data)


class PlanError(Exception):
    """A plan file that cannot be used; ``str()`` is one line naming file, line and field."""


def load_plan(path: Path) -> FaultPlan:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the fault plan: {exc.strerror}") from None
    return parse_plan(text, str(path))


def parse_plan(text: str, source: str = "<plan>") -> FaultPlan:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{source}: not valid TOML: {exc}") from None
    try:
        return FaultPlan.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if err["type"] == "union_tag_invalid":
            loc.append("kind")  # the tag itself is what is wrong
        loc = _field_path(loc, data)
        where = _line_of(text, loc)
        field = _describe_loc(loc, data)
        msg = err["msg"]
        if loc[-1] in ("target", "caller"):
            msg = "should be 'root', 'child', 'any' or a partition id (>= 1)"
        raise PlanError(f"{source}:{where}: {field}: {msg}") from None


def _field_path(loc: list[str], data: dict[str, Any]) -> list[str]:
    """Drop pydantic's internal parts (the kind tag, union member names) from a location."""
    if len(loc) >= 2 and loc[0] == "fault" and loc[1].isdigit():
        index = int(loc[1])
        faults = data.get("fault", [])
        fields = faults[index] if index < len(faults) and isinstance(faults[index], dict) else {}
        model = FAULT_KINDS.get(str(fields.get("kind")))
        names = set(fields) | {"kind"} | (set(model.model_fields) if model is not None else set())
        known = [p for p in loc[2:] if p in names]
        return loc[:2] + known[:1]
    return loc[:1]


def _describe_loc(loc: list[str], data: dict[str, Any]) -> str:
    if len(loc) >= 2 and loc[0] == "fault" and loc[1].isdigit():
        index = int(loc[1])
        faults = data.get("fault", [])
        kind = (
            faults[index].get("kind", "?") if index < len(faults) and isinstance(faults[index], dict) else "?"
        )
        rest = loc[2:]
        return f"fault[{index}] ({kind})" + (f" field {'.'.join(rest)}" if rest else "")
    return "field " + ".".join(loc)


def _line_of(text: str, loc: list[str]) -> int:
    """Best line for an error location: the field's line inside the i-th [[fault]] table."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    field = loc[-1] if loc else ""
    if len(loc) >= 2 and loc[0] == "fault" and loc[1].isdigit():
        headers = [i for i, line in enumerate(lines) if re.match(r"\s*\[\[\s*fault\s*\]\]", line)]
        index = int(loc[1])
        if index < len(headers):
            start = headers[index]
            end = headers[index + 1] if index + 1 < len(headers) else len(lines)
            field = loc[-1] if len(loc) > 2 else ""
    for i in range(start, end):
        if field and re.match(rf"\s*{re.escape(field)}\s*=", lines[i]):
            return i + 1
    return start + 1


__all__ = ["FAULT_KINDS", "Fault", "FaultPlan", "PlanError", "load_plan", "parse_plan"]
