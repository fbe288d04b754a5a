"""The fault-plan format: TOML in, validated plan out, one-line errors that point at the right line.

A plan is data: every fault kind parses with its documented defaults, every mistake a user can make
in a plan file is a :class:`PlanError` naming the file, the line and the field, and any plan (hand
written or drawn by the swarm) writes back to TOML that parses to the same plan.
"""

from __future__ import annotations

import random
import typing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from hvsim.faults import FAULT_KINDS, FaultPlan, PlanError, load_plan, parse_plan, swarm_plan
from hvsim.faults import plan as plan_module
from hvsim.faults.plan import IMPLEMENTED_CALLS, REP_CALLS, TRANSIENT_STATUSES
from hvsim.scenarios.cli import cli

SRC = "plans/multi.toml"

#: The knobs a kind cannot do without (everything else has a default).
REQUIRED: dict[str, dict[str, Any]] = {
    "pool.cap": {"max_in_use_pages": 300},
    "pool.fail_nth": {"n": 3},
    "pool.fail_probability": {"probability": 0.25},
    "pool.refuse_large": {"min_pages": 64},
}

KNOWN_BUG_TRANSIENT_DEFAULTS = (
    "BUG faults/plan.py HypercallTransient._allowed: with no `calls` the status is checked against "
    "every call in TRANSIENT_STATUSES, whose sets have an empty intersection, so a hypercall.transient "
    "without `calls` never validates -- not even with its own default status"
)
KNOWN_BUG_VALIDATOR_LINE = (
    "BUG faults/plan.py parse_plan/_line_of: errors raised by a model_validator (unknown hypercall, "
    "partial on a non-rep call, transient status) have no field in their loc, so the message points at "
    "the [[fault]] header line and names no field"
)
KNOWN_BUG_KIND_LINE = (
    "BUG faults/plan.py _line_of: an unknown kind (discriminator error, loc without a field) is reported "
    "at the [[fault]] header line, not at the `kind = ...` line"
)
KNOWN_BUG_UNION_LINE = (
    "BUG faults/plan.py _line_of/_describe_loc: a bad value for a union field (target) has a loc ending in "
    "the union member (\"literal['root','child','any']\"), so the line falls back to the [[fault]] header "
    "and the field is printed as target.literal[...]"
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def one_fault(kind: str, **knobs: Any) -> str:
    body = "".join(f"{k} = {toml_value(v)}\n" for k, v in knobs.items())
    return f'[[fault]]\nkind = "{kind}"\n{body}'


def plan_error(text: str, source: str = SRC) -> str:
    with pytest.raises(PlanError) as info:
        parse_plan(text, source)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    return message


# --- every kind, with its defaults --------------------------------------------------------------
@pytest.mark.parametrize(
    "kind",
    [k for k in sorted(FAULT_KINDS)],
)
def test_every_kind_parses_from_toml_with_defaults(kind: str) -> None:
    required = REQUIRED.get(kind, {})
    plan = parse_plan(one_fault(kind, **required), "k.toml")
    (fault,) = plan.faults
    model = FAULT_KINDS[kind]
    assert fault.kind == kind and type(fault) is model
    for name, info in model.model_fields.items():
        if name == "kind":
            continue
        expected = required.get(name, info.default)
        assert getattr(fault, name) == expected, name
    assert fault == model(kind=kind, **required)
    # Plan-level defaults.
    assert (plan.name, plan.heal_at_ns, plan.liveness_bound_ns) == ("plan", 50_000_000, 200_000_000)


def test_required_knobs_are_exactly_the_ones_without_defaults() -> None:
    for kind, model in FAULT_KINDS.items():
        required = {n for n, f in model.model_fields.items() if f.is_required() and n != "kind"}
        assert required == set(REQUIRED.get(kind, {})), kind


def test_transient_with_calls_and_default_status_parses() -> None:
    (fault,) = parse_plan(one_fault("hypercall.transient", calls=["CreateVp"])).faults
    assert fault.status == "INSUFFICIENT_MEMORY" and fault.calls == ["CreateVp"] and fault.probability == 1.0
    for call, statuses in TRANSIENT_STATUSES.items():
        for status in statuses:
            parse_plan(one_fault("hypercall.transient", calls=[call], status=status))


def test_partial_accepts_every_rep_call_and_latency_every_call() -> None:
    (fault,) = parse_plan(one_fault("hypercall.partial", calls=REP_CALLS, max_reps=2)).faults
    assert fault.calls == REP_CALLS
    (fault,) = parse_plan(one_fault("hypercall.latency", calls=IMPLEMENTED_CALLS)).faults
    assert fault.calls == IMPLEMENTED_CALLS


def test_empty_plan() -> None:
    assert parse_plan("") == FaultPlan() and FaultPlan().faults == []
    assert parse_plan('name = "quiet"\nheal_at_ns = 0\n') == FaultPlan(name="quiet", heal_at_ns=0)


# --- errors: file, line, field --------------------------------------------------------------------
#: A plan with four faults; line numbers (1-based) are what the error tests check.
MULTI = [
    "# a plan with four faults",  # 1
    'name = "multi"',  # 2
    "heal_at_ns = 10_000_000",  # 3
    "",  # 4
    "[[fault]]",  # 5   fault[0]
    'kind = "pool.cap"',  # 6
    "max_in_use_pages = 300",  # 7
    "",  # 8
    "[[fault]]",  # 9   fault[1]
    'kind = "vp.slow"',  # 10
    'target = "child"',  # 11
    "factor = 2.0",  # 12
    "",  # 13
    "[[fault]]",  # 14  fault[2]
    'kind = "hypercall.latency"',  # 15
    'calls = ["CreateVp"]',  # 16
    "extra_ns = 5_000",  # 17
    "",  # 18
    "[[fault]]",  # 19  fault[3]
    'kind = "hypercall.transient"',  # 20
    'calls = ["CreateVp"]',  # 21
    'status = "NO_RESOURCES"',  # 22
]


def multi(**replace: str) -> str:
    """MULTI with some lines replaced: ``multi(l12="factor = 0.5")``."""
    lines = list(MULTI)
    for key, text in replace.items():
        lines[int(key[1:]) - 1] = text
    return "\n".join(lines) + "\n"


def test_multi_plan_parses() -> None:
    plan = parse_plan(multi(), SRC)
    assert [f.kind for f in plan.faults] == [
        "pool.cap",
        "vp.slow",
        "hypercall.latency",
        "hypercall.transient",
    ]
    assert plan.name == "multi" and plan.heal_at_ns == 10_000_000


def case(case_id: str, replace: dict[str, str], line: int, where: str, words: str, bug: str = "") -> Any:
    del bug  # the plan-error bugs these cases documented are fixed
    return pytest.param(replace, line, where, words, id=case_id)


ERROR_CASES = [
    # replaced lines, expected line, expected location text, words expected in the message
    case("unknown-field", {"l13": "speed = 3"}, 13, "fault[1] (vp.slow) field speed", "Extra inputs"),
    case("unknown-field-first-fault", {"l8": "every = true"}, 8, "fault[0] (pool.cap) field every", "Extra"),
    case("out-of-range-factor", {"l12": "factor = 0.5"}, 12, "fault[1] (vp.slow) field factor", "greater"),
    case("out-of-range-pages", {"l7": "max_in_use_pages = -1"}, 7,
         "fault[0] (pool.cap) field max_in_use_pages", "greater than"),
    case("out-of-range-probability", {"l18": "probability = 1.5"}, 18,
         "fault[2] (hypercall.latency) field probability", "less than"),
    case("out-of-range-extra", {"l17": "extra_ns = 0"}, 17, "fault[2] (hypercall.latency) field extra_ns",
         "greater than"),
    case("wrong-type", {"l17": 'extra_ns = "lots"'}, 17, "fault[2] (hypercall.latency) field extra_ns",
         "integer"),
    case("top-level-out-of-range", {"l3": "heal_at_ns = -1"}, 3, "field heal_at_ns", "greater than"),
    case("top-level-unknown", {"l4": "heal_in_ns = 5"}, 4, "field heal_in_ns", "Extra inputs"),
    case("missing-required", {"l7": ""}, 5, "fault[0] (pool.cap) field max_in_use_pages", "Field required"),
    case("unknown-kind", {"l10": 'kind = "vp.nope"'}, 10, "fault[1] (vp.nope)", "vp.nope",
         bug=KNOWN_BUG_KIND_LINE),
    case("unknown-hypercall", {"l16": 'calls = ["CreateVp", "Frobnicate"]'}, 16,
         "fault[2] (hypercall.latency) field calls", "Frobnicate", bug=KNOWN_BUG_VALIDATOR_LINE),
    case("partial-on-non-rep-call", {"l15": 'kind = "hypercall.partial"', "l17": "max_reps = 2"}, 16,
         "fault[2] (hypercall.partial) field calls", "rep calls only", bug=KNOWN_BUG_VALIDATOR_LINE),
    case("transient-status-the-call-cannot-return",
         {"l21": 'calls = ["WithdrawMemory"]', "l22": 'status = "INSUFFICIENT_MEMORY"'}, 22,
         "fault[3] (hypercall.transient) field status", "WithdrawMemory cannot return",
         bug=KNOWN_BUG_VALIDATOR_LINE),
    case("transient-non-status", {"l22": 'status = "ACCESS_DENIED"'}, 22,
         "fault[3] (hypercall.transient) field status", "ACCESS_DENIED", bug=KNOWN_BUG_VALIDATOR_LINE),
    case("bad-target", {"l11": 'target = "rooot"'}, 11, "fault[1] (vp.slow) field target", "root",
         bug=KNOWN_BUG_UNION_LINE),
]  # fmt: skip


@pytest.mark.parametrize(("replace", "line", "where", "words"), ERROR_CASES)
def test_errors_name_file_line_and_field(replace: dict[str, str], line: int, where: str, words: str) -> None:
    message = plan_error(multi(**replace))
    assert message.startswith(f"{SRC}:{line}: "), message
    assert where in message, message
    assert words in message, message


@pytest.mark.parametrize(
    ("kind", "knob", "value", "words"),
    [
        ("message.delay", "kinds", ["post", "carrier-pigeon"], "'post', 'event' or 'doorbell'"),
        ("message.delay", "extra_ns", 0, "greater than or equal to 1"),
        ("message.reorder", "window_ns", 0, "greater than or equal to 1"),
        ("message.drop", "probability", 1.5, "less than or equal to 1"),
        ("message.drop", "target", "peer", "'root', 'child', 'any' or a partition id"),
        ("message.duplicate", "after_ns", -1, "greater than or equal to 0"),
        ("synic.busy_slot", "sint", 16, "less than or equal to 15"),
        ("synic.busy_slot", "sint", "two", "valid integer"),
        ("port.exhaust_buffers", "buffers", 17, "less than or equal to 16"),
    ],
)
def test_message_kind_errors_name_the_knob_and_its_line(kind: str, knob: str, value: Any, words: str) -> None:
    text = "# messaging\n" + one_fault(kind, start_ns=0, **{knob: value})
    message = plan_error(text)
    assert message.startswith(f"{SRC}:5: fault[0] ({kind}) field {knob}: "), message
    assert words in message, message


def test_errors_still_identify_the_fault_and_problem() -> None:
    """What the messages get right besides the line."""
    assert "fault[1] (vp.nope)" in plan_error(multi(l10='kind = "vp.nope"'))
    assert "unknown hypercall 'Frobnicate'" in plan_error(multi(l16='calls = ["Frobnicate"]'))
    message = plan_error(multi(l15='kind = "hypercall.partial"', l17="max_reps = 2"))
    assert "hypercall.partial applies to rep calls only" in message and "fault[2]" in message
    message = plan_error(multi(l22='status = "ACCESS_DENIED"'))
    assert "CreateVp cannot return ACCESS_DENIED" in message and "fault[3]" in message


def test_invalid_toml_names_file_and_line() -> None:
    message = plan_error(multi(l12="factor = "))
    assert message.startswith(f"{SRC}: not valid TOML") and "line 12" in message, message
    message = plan_error(multi(l6='kind = "pool.cap'))
    assert message.startswith(f"{SRC}: not valid TOML") and "line 6" in message, message
    message = plan_error("[[fault]\n")
    assert "not valid TOML" in message and "line 1" in message, message


def test_fault_table_fields_after_a_header_belong_to_that_fault() -> None:
    """A top-level key written after a [[fault]] header is a field of that fault (TOML), and the error
    says so, at its line."""
    message = plan_error('[[fault]]\nkind = "vp.crash"\nheal_at_ns = 5\n')
    assert message.startswith(f"{SRC}:3: fault[0] (vp.crash) field heal_at_ns"), message


def test_inline_fault_array_errors() -> None:
    message = plan_error('name = "x"\nfault = [{kind = "pool.cap", max_in_use_pages = -1}]\n')
    assert message.startswith(f"{SRC}:") and "fault[0] (pool.cap) field max_in_use_pages" in message
    message = plan_error("fault = [{n = 3}]\n")
    assert "fault[0] (?)" in message and "kind" in message


def test_load_plan_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(multi(l12="factor = 0.5"))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}:12: fault[1] (vp.slow) field factor")
    missing = tmp_path / "absent.toml"
    with pytest.raises(PlanError) as info:
        load_plan(missing)
    assert str(info.value).startswith(f"{missing}: cannot read the fault plan") and "\n" not in str(
        info.value
    )
    path.write_text(multi())
    assert load_plan(path) == parse_plan(multi())


def test_plan_errors_on_the_command_line_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hvsim.scenarios.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(multi(l7="max_in_use_pages = -1"))
    with pytest.raises(SystemExit) as info:
        main(["run", "--faults", str(path), "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"hvsim: error: {path}:7: "), err
    with pytest.raises(SystemExit) as info:
        main(["run", "--faults", str(path), "--swarm"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--faults and --swarm" in err


# --- round trips ------------------------------------------------------------------------------------
HAND_WRITTEN = [
    FaultPlan(),
    FaultPlan(name="quiet \"quoted\" plan", heal_at_ns=0, liveness_bound_ns=1),
    parse_plan(multi()),
    FaultPlan.model_validate(
        {
            "name": "everything",
            "heal_at_ns": 12_345_678,
            "liveness_bound_ns": 99_000_000,
            "fault": [
                {"kind": "pool.cap", "target": 2, "max_in_use_pages": 0, "start_ns": 5, "end_ns": 6},
                {"kind": "pool.fail_nth", "target": "root", "n": 7, "every": True},
                {"kind": "pool.fail_probability", "probability": 0.125, "end_ns": 0},
                {"kind": "pool.refuse_large", "target": "child", "min_pages": 1},
                {"kind": "pool.drain", "pages_per_step": 3, "step_ns": 1, "max_pages": 9},
                {"kind": "hypercall.partial", "calls": ["WithdrawMemory"], "max_reps": 5, "caller": "root"},
                {"kind": "hypercall.latency", "calls": [], "probability": 0.3, "extra_ns": 1, "caller": 3},
                {"kind": "hypercall.transient", "calls": ["CreatePartition", "CreateVp"],
                 "status": "NO_RESOURCES"},
                {"kind": "host.crash", "step": "boot.created", "occurrence": 4, "restart_after_ns": 0},
                {"kind": "vp.pause", "target": "any", "vp": 3, "duration_ns": 1},
                {"kind": "vp.crash", "vp": 0, "start_ns": 1_000},
                {"kind": "vp.slow", "factor": 1000.0},
                {"kind": "message.delay", "target": 3, "kinds": ["post", "event"], "probability": 0.5,
                 "extra_ns": 2_500},
                {"kind": "message.reorder", "target": "child", "kinds": ["doorbell"], "window_ns": 1},
                {"kind": "message.drop", "probability": 1.0, "start_ns": 7, "end_ns": 8},
                {"kind": "message.duplicate", "target": "root", "probability": 0.0, "after_ns": 0},
                {"kind": "synic.busy_slot", "target": 2, "sint": 15, "end_ns": 4_000},
                {"kind": "port.exhaust_buffers", "target": "any", "buffers": 0},
            ],
        }
    ),
]  # fmt: skip


@pytest.mark.parametrize("plan", HAND_WRITTEN, ids=lambda p: p.name)
def test_to_toml_round_trips_hand_written_plans(plan: FaultPlan) -> None:
    text = plan.to_toml()
    again = parse_plan(text)
    assert again == plan
    assert again.to_toml() == text


def test_to_toml_writes_every_kind() -> None:
    text = HAND_WRITTEN[-1].to_toml()
    for kind in FAULT_KINDS:
        assert f'kind = "{kind}"' in text


def cli_swarm(seed: int) -> FaultPlan:
    """The plan `hvsim run --swarm --seed SEED` draws."""
    return swarm_plan(random.Random(f"swarm:{seed}"), name=f"swarm-{seed}")


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_swarm_plans_round_trip_through_toml(seed: int) -> None:
    plan = swarm_plan(random.Random(seed))
    text = plan.to_toml()
    assert parse_plan(text) == plan
    assert parse_plan(text).to_toml() == text
    assert parse_plan(cli_swarm(seed).to_toml()) == cli_swarm(seed)


@settings(max_examples=100)
@given(st.integers(min_value=0, max_value=2**32), st.sampled_from(sorted(FAULT_KINDS)))
def test_single_kind_swarm_plans_round_trip(seed: int, kind: str) -> None:
    plan = swarm_plan(random.Random(seed), kinds=[kind])
    assert [f.kind for f in plan.faults] == [kind]
    assert parse_plan(plan.to_toml()) == plan


def test_swarm_plans_are_a_function_of_the_seed() -> None:
    for seed in range(50):
        assert swarm_plan(random.Random(seed)) == swarm_plan(random.Random(seed))
        assert cli_swarm(seed).to_toml() == cli_swarm(seed).to_toml()
    texts = {swarm_plan(random.Random(seed)).to_toml() for seed in range(200)}
    assert len(texts) == 200
    assert len({cli_swarm(seed).to_toml() for seed in range(200)}) == 200


def test_swarm_draws_every_kind_and_subsets() -> None:
    seen: set[str] = set()
    sizes: set[int] = set()
    for seed in range(200):
        kinds = [f.kind for f in swarm_plan(random.Random(seed)).faults]
        assert kinds and len(kinds) == len(set(kinds))
        seen.update(kinds)
        sizes.add(len(kinds))
    assert seen == set(FAULT_KINDS)
    assert len(sizes) > 3  # subsets of different sizes, not all-or-nothing


def test_hvsim_faults_swarm_prints_the_cli_plan(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["faults", "swarm", "--seed", "17"])
    assert res.exit_code == 0
    assert res.output == cli_swarm(17).to_toml()
    out = tmp_path / "p.toml"
    res = CliRunner().invoke(cli, ["faults", "swarm", "--seed", "17", "--out", str(out)])
    assert res.exit_code == 0 and load_plan(out) == cli_swarm(17)


# --- the kind registry ------------------------------------------------------------------------------
def _fault_union_members() -> set[type]:
    union = typing.get_args(plan_module.Fault)[0]
    return set(typing.get_args(union))


def _concrete_fault_models() -> set[type]:
    found: set[type] = set()
    todo = list(plan_module._Fault.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "kind" in cls.model_fields:
            found.add(cls)
    return found


def test_fault_kinds_cover_every_kind() -> None:
    models = set(FAULT_KINDS.values())
    assert models == _fault_union_members() == _concrete_fault_models()
    for kind, model in FAULT_KINDS.items():
        assert typing.get_args(model.model_fields["kind"].annotation) == (kind,)
    assert len(FAULT_KINDS) == 18
    assert {k for k in FAULT_KINDS if k.startswith(("message.", "synic.", "port."))} == {
        "message.delay",
        "message.reorder",
        "message.drop",
        "message.duplicate",
        "synic.busy_slot",
        "port.exhaust_buffers",
    }


def test_hvsim_faults_list_names_every_kind_and_knob() -> None:
    res = CliRunner().invoke(cli, ["faults", "list"])
    assert res.exit_code == 0
    listed = [line for line in res.output.splitlines() if line and not line.startswith(" ")]
    assert listed == sorted(FAULT_KINDS)
    for model in FAULT_KINDS.values():
        for knob in model.model_fields:
            if knob != "kind":
                assert knob in res.output


def readme_plans() -> list[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = readme.split("```toml\n")[1:]
    return [block.split("```", 1)[0] for block in blocks if "[[fault]]" in block]


def test_the_readme_plans_parse_and_round_trip() -> None:
    plans = readme_plans()
    assert plans, "the README shows a fault plan"
    for text in plans:
        plan = parse_plan(text, "README.md")
        assert plan.faults and parse_plan(plan.to_toml()) == plan
