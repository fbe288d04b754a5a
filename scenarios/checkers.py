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
from hvsim.actors.synic import Fate, sim_enabled


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


def gpa_mappings(hv: Hypervisor) -> list[Violation]:
    """Mapped host pages stay with the host: every child mapping backed by a host page points at
    a host-owned (never a pool) page; the per-page mapping counts equal the mappings; each 2 MiB
    region's page count is right and its page table is charged exactly while the region exists."""
    out = []
    counts: dict[int, int] = {}
    memory = hv.memory
    for p in hv.partitions.values():
        if p.is_root:
            continue
        regions: dict[int, int] = {}
        for gpfn, mapping in p.gpa.items():
            regions[gpfn >> 9] = regions.get(gpfn >> 9, 0) + 1
            if mapping.spa is None:
                continue
            counts[mapping.spa] = counts.get(mapping.spa, 0) + 1
            if memory.owner[mapping.spa] != HOST:
                out.append(
                    Violation(
                        "gpa-mappings",
                        f"partition {p.id} GPA page {gpfn:#x} maps host page {mapping.spa}, "
                        f"which is in the pool of partition {memory.owner[mapping.spa]}",
                        {"partition": p.id, "gpa_page": gpfn, "page": mapping.spa},
                    )
                )
        live = {r: n for r, n in p.gpa_regions.items() if n}
        tables = {int(key[4:]) for key in p.pool.charges if key.startswith("gpt:")}
        charged = hv.config.page_costs.gpa_table > 0  # with a zero cost no table is charged
        if live != regions or (charged and not set(live) <= tables) or not tables <= set(p.gpa_regions):
            out.append(
                Violation(
                    "gpa-mappings",
                    f"partition {p.id}: region counts {live} vs mappings {regions}, tables {sorted(tables)}",
                    {"partition": p.id},
                )
            )
    # Per mapped page, then in total (so no other page has a count): no walk over all of RAM.
    wrong = [(page, memory.mapped[page], n) for page, n in sorted(counts.items()) if memory.mapped[page] != n]
    if wrong or memory.mapped_total != sum(counts.values()):
        out.append(
            Violation(
                "gpa-mappings",
                f"host-page mapping counts disagree with the maps: {wrong[:10]} "
                f"(total {memory.mapped_total} recorded, {sum(counts.values())} mapped)",
                {},
            )
        )
    return out


def message_buffers(hv: Hypervisor) -> list[Violation]:
    """Every port's buffers in use are exactly its undelivered posted messages; every queued
    message is in its target's queue and every queue holds only undelivered messages."""
    out = []
    held: dict[int, int] = {}
    queued: set[int] = set()
    for msg in hv.undelivered.values():
        if msg.holds_buffer and msg.port is not None:
            held[id(msg.port)] = held.get(id(msg.port), 0) + 1
        if msg.fate is Fate.QUEUED:
            queued.add(msg.id)
    for p in hv.partitions.values():
        for port in p.ports.values():
            expected = held.get(id(port), 0)
            if port.buffers_in_use != expected or expected > hv.config.port_message_buffers:
                out.append(
                    Violation(
                        "message-accounting",
                        f"port {port.id} of partition {p.id}: {port.buffers_in_use} buffers in use, "
                        f"{expected} messages hold one",
                        {"partition": p.id, "port": port.id},
                    )
                )
        for vp in p.vps.values():
            for sint, queue in enumerate(vp.synic.queues):
                for msg in queue:
                    if msg.id not in queued or hv.undelivered.get(msg.id) is not msg:
                        out.append(
                            Violation(
                                "message-accounting",
                                f"message {msg.id} is in the queue of partition {p.id} VP {vp.index} "
                                f"SINT {sint} but is {msg.fate.value}",
                                {"message": msg.id},
                            )
                        )
                    queued.discard(msg.id)
    for mid in sorted(queued):
        out.append(Violation("message-accounting", f"message {mid} is queued nowhere", {"message": mid}))
    return out


def stalled_queues(hv: Hypervisor) -> dict[tuple[int, int, int], int]:
    """(partition, VP, SINT) -> id of the queue's head, for every queue the hypervisor would deliver
    from at the next scan but has not: messages wait, the slot is empty, SynIC and SIMP enabled.
    Legitimate only for an instant (a guest between clearing the slot and writing EOM)."""
    out = {}
    for p in hv.partitions.values():
        for vp in p.vps.values():
            for sint, queue in enumerate(vp.synic.queues):
                if queue and not vp.synic.slot_type(sint) and sim_enabled(vp.regs):
                    out[(p.id, vp.index, sint)] = queue[0].id
    return out


class MessageProgress:
    """Liveness of message delivery, at quiescent points: a queue whose slot is empty must not stay
    stuck on the same head message from one point to the next. It catches a receiver that clears
    a slot with MessagePending set but never writes EOM, and a hypervisor that misses a rescan.
    (Run it only while no fault holds slots busy or pauses VPs.)"""

    def __init__(self) -> None:
        self.last: dict[tuple[int, int, int], int] = {}

    def __call__(self, hv: Hypervisor) -> list[Violation]:
        now = stalled_queues(hv)
        out = [
            Violation(
                "message-progress",
                f"partition {p} VP {vp} SINT {sint}: message {mid} waits behind an empty slot "
                "since the last check (MessagePending without EOM?)",
                {"partition": p, "vp": vp, "sint": sint, "message": mid},
            )
            for (p, vp, sint), mid in now.items()
            if self.last.get((p, vp, sint)) == mid
        ]
        self.last = now
        return out


#: The hypercall that posts each kind of message ("doorbell" has none: a guest memory write).
POSTING_CALLS = {
    "PostMessage": "post",
    "SignalEvent": "event",
    "PostMessageDirect": "direct",
    "SignalEventDirect": "direct_event",
}


def message_counts(records: Iterable[dict[str, Any]], hv: Hypervisor) -> dict[str, Any]:
    """How every message attempt ended: refused by the call (per status), posted, and then
    delivered, freed, dropped by a fault, or still undelivered (in transit or queued)."""
    attempts: dict[str, dict[str, int]] = {}
    ends = {"message.delivered": 0, "message.freed": 0, "message.dropped": 0}
    posted = copies = 0
    for rec in records:
        event = rec["event"]
        if event in ends:
            ends[event] += 1
        elif event == "message.posted":
            posted += 1
            copies += "copy_of" in rec
        elif event == "hypercall" and rec["call"] in POSTING_CALLS:
            per_status = attempts.setdefault(rec["call"], {})
            per_status[rec["status"]] = per_status.get(rec["status"], 0) + 1
    refused = sum(n for per in attempts.values() for st, n in per.items() if st != "SUCCESS")
    return {
        "attempts": attempts,
        "refused": refused,
        "posted": posted,
        "duplicates": copies,
        "delivered": ends["message.delivered"],
        "freed": ends["message.freed"],
        "dropped": ends["message.dropped"],
        "undelivered": len(hv.undelivered),
    }


def message_accounting(records: list[dict[str, Any]], hv: Hypervisor) -> list[Violation]:
    """Every message is accounted for: each post ends at most once (delivered, freed or dropped),
    the ones that have not ended are exactly the hypervisor's undelivered messages, and each
    posting call's successes match the messages it posted (the rest were refused with a status)."""
    out = []
    open_ids: dict[int, dict[str, Any]] = {}
    kinds: dict[str, int] = {}
    succeeded: dict[str, int] = {}  # posting call -> SUCCESS records, counted in the same pass
    for rec in records:
        event = rec["event"]
        if event == "hypercall":
            if rec["status"] == "SUCCESS" and rec["call"] in POSTING_CALLS:
                succeeded[rec["call"]] = succeeded.get(rec["call"], 0) + 1
        elif event == "message.posted":
            open_ids[rec["id"]] = rec
            if "copy_of" not in rec:
                kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + 1
        elif event in ("message.delivered", "message.freed", "message.dropped"):
            ended = open_ids.pop(rec["id"], None)
            if ended is None:
                out.append(
                    Violation(
                        "message-accounting",
                        f"{event} for message {rec['id']}, which was not posted or already ended",
                        {"message": rec["id"]},
                        rec.get("t"),
                        rec.get("seq"),
                    )
                )
    if sorted(open_ids) != sorted(hv.undelivered):
        out.append(
            Violation(
                "message-accounting",
                f"{len(open_ids)} messages have no end in the log but the hypervisor holds "
                f"{len(hv.undelivered)} undelivered",
                {"log": sorted(open_ids)[:20], "hypervisor": sorted(hv.undelivered)[:20]},
            )
        )
    for call, kind in POSTING_CALLS.items():
        ok = succeeded.get(call, 0)
        if ok != kinds.get(kind, 0):
            out.append(
                Violation(
                    "message-accounting",
                    f"{ok} {call} calls succeeded but {kinds.get(kind, 0)} '{kind}' messages were posted",
                    {"call": call},
                )
            )
    return out


STATE_CHECKERS: dict[str, Callable[[Hypervisor], list[Violation]]] = {
    "page-conservation": page_conservation,
    "pool-balance": pool_balances,
    "gpa-mappings": gpa_mappings,
    "message-accounting": message_buffers,
}


def check_state(hv: Hypervisor) -> list[Violation]:
    return [v for check in STATE_CHECKERS.values() for v in check(hv)]


def memory_fingerprint(hv: Hypervisor) -> tuple[int, ...]:
    """Changes whenever page ownership or any pool's free / in-use split changes: while it stays
    the same, the page and pool checkers would find what they found last time."""
    key = [hv.memory.version]
    for p in hv.partitions.values():
        key += (p.id, len(p.pool.available), p.pool.in_use, len(p.pool.charges))
    return tuple(key)
