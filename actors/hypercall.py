"""Hypercall dispatch: parse and validate the ABI, then call the handler the table names.

Behaviour lives in the handler modules; this module only knows shapes. Validation order follows
HYPERCALLS.md 1.5 steps 1-4: unknown code, reserved control bits, call class (rep count / rep start
/ variable header), then the parameter block (alignment, page crossing, GPA range, fast-call size).
Steps 5-11 are per call, in the handlers.

Rep calls honour the time budget (TLFS continuation): an invocation processes at most as many
elements as fit in ``rep_budget_ns`` (at least one), and returns SUCCESS with fewer reps completed
when it stops early; the caller re-issues with rep start = reps completed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from hvsim.actors.hvdef import (
    FAST_BIT,
    HV_FAST_INPUT_MAX,
    HV_PAGE_SIZE,
    REP_COUNT_MASK,
    REP_COUNT_SHIFT,
    REP_START_MASK,
    REP_START_SHIFT,
    RESERVED_MASK,
    VARHDR_MASK,
    VARHDR_SHIFT,
    HvStatus,
    make_result,
)

if TYPE_CHECKING:
    from hvsim.actors.config import HvConfig
    from hvsim.actors.model import Partition
    from hvsim.actors.seams import CallFault

__all__ = ["Call", "HypercallDef", "HypercallRequest", "HypercallResult", "Shape", "dispatch"]


class HypercallRequest(NamedTuple):
    """A VP executing the hypercall instruction: who, the control word and the parameter block.

    *input* is the input parameter block: for a memory-based call, the bytes at *input_gpa* in the
    caller's memory (zero beyond what is given); for a fast call, the register block (RDX, R8, then
    XMM0-5). *input_gpa* / *output_gpa* default to page-aligned addresses.
    """

    caller: int
    vp: int
    control: int
    input: bytes = b""
    input_gpa: int | None = None
    output_gpa: int | None = None


class HypercallResult(NamedTuple):
    """The 64-bit result value, decoded, plus the output parameter block."""

    value: int
    status: HvStatus
    reps_completed: int
    output: bytes
    cost_ns: int
    #: The caller's VP was suspended instead of completing the call; it re-issues the same call
    #: when it runs again (a flush held by a locked TLB). The guest never sees this result.
    reissue: bool = False


class Call:
    """One invocation as a handler sees it: caller, decoded control and the padded input."""

    __slots__ = (
        "caller",
        "code",
        "input",
        "output",
        "reissue",
        "rep_count",
        "rep_limit",
        "rep_start",
        "reps_done",
        "var_bytes",
        "vp",
    )

    def __init__(
        self,
        caller: Partition,
        vp: int,
        code: int,
        data: bytes,
        output: bytearray,
        rep_start: int,
        rep_count: int,
        rep_limit: int,
        var_bytes: int,
    ) -> None:
        self.caller = caller
        self.vp = vp
        self.code = code
        self.input = data
        self.output = output
        self.rep_start = rep_start
        self.rep_count = rep_count
        #: Exclusive end of the elements this invocation may process (the time budget's cut).
        self.rep_limit = rep_limit
        #: Absolute reps completed; a rep handler sets it before returning.
        self.reps_done = rep_start
        self.var_bytes = var_bytes
        #: Set by a handler that suspended the calling VP instead of completing (see HypercallResult).
        self.reissue = False


Handler = Callable[["Call"], HvStatus]


class Shape(NamedTuple):
    """A hypercall's ABI shape (TLFS sizes in bytes) and the name of its handler method."""

    handler: str
    header_size: int
    output_size: int = 0
    rep: bool = False
    rep_in_size: int = 0
    rep_out_size: int = 0
    variable: bool = False


@dataclass(frozen=True, slots=True)
class HypercallDef:
    """One dispatch-table row: the shape, and the handler bound when the table is built."""

    code: int
    handler: Handler
    shape: Shape


def _fail(status: HvStatus, reps: int, cost_ns: int, out_size: int = 0) -> HypercallResult:
    return HypercallResult(make_result(status, reps), status, reps, bytes(out_size), cost_ns)


def dispatch(
    table: dict[int, HypercallDef],
    config: HvConfig,
    caller: Partition,
    gpa_limit: int,
    req: HypercallRequest,
    fault: CallFault | None = None,
) -> HypercallResult:
    """Validate *req* against its definition and run its handler. Never raises on any input.

    A *fault* (from the interposer seam) acts only on a call that passed the common checks: an
    injected status replaces the handler, a rep cap shortens the invocation, extra time is added.
    """
    value = req.control & 0xFFFF_FFFF_FFFF_FFFF
    code = value & 0xFFFF
    cost = config.cost(code)
    row = table.get(code)
    if row is None:
        return _fail(HvStatus.INVALID_HYPERCALL_CODE, 0, cost.base_ns)
    d = row.shape
    if value & RESERVED_MASK:
        return _fail(HvStatus.INVALID_HYPERCALL_INPUT, 0, cost.base_ns)
    rep_count = (value & REP_COUNT_MASK) >> REP_COUNT_SHIFT
    rep_start = (value & REP_START_MASK) >> REP_START_SHIFT
    varhdr = (value & VARHDR_MASK) >> VARHDR_SHIFT
    if d.rep:
        if rep_count == 0 or rep_start >= rep_count:
            return _fail(HvStatus.INVALID_HYPERCALL_INPUT, 0, cost.base_ns)
    elif rep_count or rep_start:
        return _fail(HvStatus.INVALID_HYPERCALL_INPUT, 0, cost.base_ns)
    if varhdr and not d.variable:
        return _fail(HvStatus.INVALID_HYPERCALL_INPUT, rep_start, cost.base_ns)

    var_bytes = 8 * varhdr
    in_size = d.header_size + var_bytes + d.rep_in_size * rep_count
    out_size = d.output_size + d.rep_out_size * rep_count
    data = req.input
    if value & FAST_BIT:
        if len(data) > HV_FAST_INPUT_MAX or in_size + out_size > HV_FAST_INPUT_MAX:
            return _fail(HvStatus.INVALID_HYPERCALL_INPUT, rep_start, cost.base_ns)
    else:
        for gpa, size in ((req.input_gpa, in_size), (req.output_gpa, out_size)):
            if gpa is None or size == 0:
                continue  # a block a call does not use is ignored (TLFS)
            if gpa % 8 or (gpa % HV_PAGE_SIZE) + size > HV_PAGE_SIZE or not 0 <= gpa < gpa_limit:
                return _fail(HvStatus.INVALID_ALIGNMENT, rep_start, cost.base_ns)
        if in_size > HV_PAGE_SIZE or out_size > HV_PAGE_SIZE:
            return _fail(HvStatus.INVALID_ALIGNMENT, rep_start, cost.base_ns)
    if len(data) < in_size:
        data = data + bytes(in_size - len(data))

    extra_ns = 0
    rep_limit = rep_count
    if d.rep and config.rep_budget_ns is not None and cost.per_rep_ns > 0:
        fit = max(1, (config.rep_budget_ns - cost.base_ns) // cost.per_rep_ns)
        rep_limit = min(rep_count, rep_start + fit)
    if fault is not None:
        extra_ns = fault.extra_ns
        if fault.status is not None:
            return _fail(fault.status, rep_start if d.rep else 0, cost.base_ns + extra_ns, out_size)
        if fault.rep_cap is not None and d.rep:
            rep_limit = min(rep_limit, rep_start + max(1, fault.rep_cap))
    call = Call(caller, req.vp, code, data, bytearray(out_size), rep_start, rep_count, rep_limit, var_bytes)
    status = row.handler(call)
    reps = call.reps_done if d.rep else 0
    cost_ns = cost.base_ns + cost.per_rep_ns * max(0, reps - rep_start) + extra_ns
    return HypercallResult(make_result(status, reps), status, reps, bytes(call.output), cost_ns, call.reissue)
