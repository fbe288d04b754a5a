"""Checkers (oracles): judge the hypervisor's state and the event log; they never drive the system.

State checkers run at quiescent points (between simulated instants, after a hypercall returns);
the log checker replays ``partition.state`` records. Each returns a list of :class:`Violation`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hvsim.actors.core import Hypervisor
from hvsim.actors.memory import HOST
from hvsim.actors.model import LEGAL_TRANSITIONS, PartitionState


@dataclass(frozen=True)
class Violation:
    checker: str
    message: str
    objects: dict[str, Any] = field(default_factory=dict)
    t_ns: int | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "message": self.message,
            "objects": self.objects,
            "t": self.t_ns,
            "seq": self.seq,
        }


def page_conservation(hv: Hypervisor) -> list[Violation]:
    """Every host page is exactly one of: host-owned, free in one pool, in use in one pool."""
    out: list[Violation] = []
    mem = hv.memory
    seen: dict[int, str] = {}
    for p in hv.partitions.values():
        places = [("available", p.pool.available)] + [(f"charge {k}", v) for k, v in p.pool.charges.items()]
        for where, pages in places:
            for page in pages:
                here = f"partition {p.id} {where}"
                if page in seen:
                    out.append(
                        Violation(
                            "page-conservation", f"page {page} is in {seen[page]} and {here}", {"page": page}
                        )
                    )
                seen[page] = here
                if not 0 <= page < mem.pages or mem.owner[page] != p.id:
                    owner = mem.owner[page] if 0 <= page < mem.pages else None
                    out.append(
                        Violation(
                            "page-conservation", f"page {page} in {here} but owner is {owner}", {"page": page}
                        )
                    )
    owned_elsewhere = mem.pages - mem.owner.count(HOST)  # array.count: C speed over all of RAM
    if owned_elsewhere != len(seen):
        out.append(
            Violation(
                "page-conservation",
                f"{owned_elsewhere} pages are marked pool-owned but {len(seen)} are in pools",
                {"marked": owned_elsewhere, "in_pools": len(seen)},
            )
        )
    host_owned = mem.pages - owned_elsewhere
    if host_owned + len(seen) != mem.pages:
        out.append(Violation("page-conservation", "pages were created or destroyed", {"total": mem.pages}))
    return out


def pool_balances(hv: Hypervisor) -> list[Violation]:
    """Each pool's in-use count matches the structures charged to it; finalized pools hold nothing."""
    out = []
    for p in hv.partitions.values():
        charged = sum(len(v) for v in p.pool.charges.values())
        if charged != p.pool.in_use:
            out.append(
                Violation(
                    "pool-balance",
                    f"partition {p.id}: in_use {p.pool.in_use} != charged {charged}",
                    {"partition": p.id},
                )
            )
        if p.state is PartitionState.FINALIZED and (p.pool.in_use or p.vps):
            out.append(
                Violation(
                    "pool-balance",
                    f"finalized partition {p.id} still holds {p.pool.in_use} pages / {len(p.vps)} VPs",
                    {"partition": p.id},
                )
            )
    return out


def state_transitions(records: Iterable[dict[str, Any]]) -> list[Violation]:
    """Partitions move only along the legal lifecycle (HYPERCALLS.md 3.2)."""
    out = []
    state: dict[int, str | None] = {}
    for rec in records:
        if rec.get("event") != "partition.state":
            continue
        pid, old, new = rec["partition"], rec["old"], rec["new"]
        known = state.get(pid)
        if known != old or (old, new) not in LEGAL_TRANSITIONS:
            out.append(
                Violation(
                    "state-transitions",
                    f"partition {pid}: {old} -> {new} (tracked state {known})",
                    {"partition": pid},
                    rec.get("t"),
                    rec.get("seq"),
                )
            )
        state[pid] = new
    return out


def no_use_after_delete(records: Iterable[dict[str, Any]]) -> list[Violation]:
    """Partition ids are never reused: nothing may happen to a partition after its deletion (no
    state change, pool change, VP change or fault acting on it; host reports excepted)."""
    out = []
    deleted: set[int] = set()
    for rec in records:
        pid = rec.get("partition")
        if not isinstance(pid, int) or rec["event"].startswith("host."):
            continue  # the host may report on a partition it deleted; the hypervisor may not act
        if pid in deleted:
            out.append(
                Violation(
                    "no-use-after-delete",
                    f"{rec['event']} names partition {pid} after its deletion",
                    {"partition": pid},
                    rec.get("t"),
                    rec.get("seq"),
                )
            )
        elif rec.get("event") == "partition.state" and rec.get("new") is None:
            deleted.add(pid)
    return out


def all_reclaimed(hv: Hypervisor) -> list[Violation]:
    """Liveness at the end of a scenario: no child partition is left and every page that was ever
    deposited into a child is back with the host."""
    out = []
    if hv.root.children:
        out.append(
            Violation(
                "all-reclaimed", f"children left: {hv.root.children}", {"children": list(hv.root.children)}
            )
        )
    in_children = sum(p.pool.total for p in hv.partitions.values() if not p.is_root)
    if in_children:
        out.append(
            Violation("all-reclaimed", f"{in_children} pages still in child pools", {"pages": in_children})
        )
    return out


def host_pages_returned(hv: Hypervisor) -> list[Violation]:
    """Liveness at the end: the host holds no page it allocated (none leaked between allocator,
    deposits and withdrawals)."""
    held = sum(hv.memory.host_allocated)
    if held:
        return [
            Violation("host-pages-returned", f"the host still holds {held} allocated pages", {"pages": held})
        ]
    return []


STATE_CHECKERS: dict[str, Callable[[Hypervisor], list[Violation]]] = {
    "page-conservation": page_conservation,
    "pool-balance": pool_balances,
}


def check_state(hv: Hypervisor) -> list[Violation]:
    return [v for check in STATE_CHECKERS.values() for v in check(hv)]
