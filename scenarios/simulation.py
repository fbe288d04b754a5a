"""``Simulation``: one seed builds one world (hypervisor, root partition, host RAM, root VPs).

Public contract (keep these names and meanings)::

    sim = Simulation(seed=0)
    sim.root_id
    sim.alloc_host_pages(n)                     # -> list[int], now in host use
    res = sim.hypercall(control, input=b"", *, caller=None, vp=0)
    res.value, res.status, res.reps_completed, res.output

``hypercall`` runs the clock until the call returns (other activity, e.g. running VPs, advances
with it). Host code that should run concurrently is written as generators and started with
:meth:`Simulation.process`; :class:`hvsim.scenarios.hostapi.HostApi` gives typed helpers for both.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar, cast

import simpy

from hvsim.actors.config import HvConfig
from hvsim.actors.core import Hypervisor
from hvsim.actors.hypercall import HypercallRequest, HypercallResult
from hvsim.actors.hypervisor import HypervisorActor
from hvsim.actors.partition import ToVp
from hvsim.actors.runtime import SimRuntime, SimulationDeadlock, ask
from hvsim.actors.trace import EventLog
from hvsim.actors.vp import VpActor
from hvsim.actors.workload import IDLE, Program

T = TypeVar("T")
ProgramFactory = Callable[[int], Program]


@dataclass(frozen=True)
class Limits:
    """Caps on a scenario's workload, for shrinking a failure (``hvsim run --limit NAME=N``).

    Scenarios draw their workload as usual and then cut it down, so a cap never shifts a random
    stream: a run with generous caps is identical to one without.
    """

    #: Partitions a scenario creates.
    partitions: int | None = None
    #: VPs per partition.
    vps: int | None = None
    #: Times each guest VP runs its program's loop.
    guest_loops: int | None = None
    #: Simulated ns a scenario lets its partitions run (between boot and teardown).
    run_ns: int | None = None

    def cap(self, name: str, value: int) -> int:
        limit = getattr(self, name)
        return value if limit is None else min(value, limit)

    def to_json(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if v is not None}


LIMIT_NAMES = tuple(f.name for f in fields(Limits))


class Simulation:
    """A deterministic simulated machine: everything random derives from *seed*."""

    def __init__(
        self,
        seed: int = 0,
        *,
        config: HvConfig | None = None,
        log: bool = True,
        guest: Callable[[int, int], Program] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.seed = seed
        self.limits = limits if limits is not None else Limits()
        self.config = config if config is not None else HvConfig()
        # One stream per component, drawn in a fixed order so adding a consumer later never shifts
        # the streams of the existing ones (TigerBeetle's "one seed builds the world").
        world = random.Random(seed)
        self._component_seeds = {
            name: world.getrandbits(64) for name in ("workload", "host", "scenario", "faults")
        }
        self.env = simpy.Environment()
        self.runtime = SimRuntime(self.env)
        self.log = EventLog(self._now, enabled=log)
        self._programs: dict[int, ProgramFactory] = {}
        self._default_guest = guest
        #: The host policy class scenarios instantiate (None: the reference host); see host.new_host.
        self.host_class: type | None = None
        #: Called with each named host step (fault injection's seam into the host).
        self.host_step_hooks: list[Callable[[str], None]] = []
        #: What the scenario counted (requests served, doorbells...), reported in summary.json.
        self.counters: dict[str, int] = {}
        #: Every host process started with :meth:`process` (a host crash ends them all).
        self.host_processes: list[simpy.Process] = []
        with self.runtime.active():
            self._hv_actor = HypervisorActor.spawn(self.config, self.log, self._guest_for)
        self.hv_ref = self._hv_actor.actor_ref
        self.log.emit("sim.start", seed=seed, host_pages=self.config.host_pages, root=self.root_id)
        if self.limits.to_json():
            self.log.emit("sim.limits", **self.limits.to_json())

    def _now(self) -> int:
        return int(self.env.now)

    # --- world ---------------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return int(self.env.now)

    @property
    def hv(self) -> Hypervisor:
        """The hypervisor model, for inspection by checkers and tests (not for driving it)."""
        return self._hv_actor.hv

    @property
    def root_id(self) -> int:
        return self.hv.root.id

    def rng(self, component: str, *salt: object) -> random.Random:
        """A private random stream for *component* (``workload``, ``host`` or ``scenario``)."""
        key = ":".join([str(self._component_seeds[component]), *map(str, salt)])
        return random.Random(key)

    # --- host memory -------------------------------------------------------------------------------
    def alloc_host_pages(self, n: int) -> list[int]:
        """Take *n* free host pages (lowest first) for the host's use, e.g. to deposit them."""
        return self.hv.memory.alloc(n)

    def free_host_pages(self, pages: list[int]) -> None:
        """Return host pages (e.g. withdrawn ones) to the host allocator."""
        self.hv.memory.free(pages)

    # --- guest programs ------------------------------------------------------------------------
    def load_guest(self, partition_id: int, program: Program | ProgramFactory) -> None:
        """Choose what *partition_id*'s VPs execute (call before CreateVp): one program for every
        VP, or a function from VP index to program."""
        if isinstance(program, Program):
            fixed = program
            self._programs[partition_id] = lambda _index: fixed
        else:
            self._programs[partition_id] = program

    def _guest_for(self, partition_id: int, vp_index: int) -> Program:
        if partition_id == self.root_id:
            return IDLE  # the root's VPs run host code (processes), not a guest program
        factory = self._programs.get(partition_id)
        if factory is not None:
            program = factory(vp_index)
        elif self._default_guest is not None:
            program = self._default_guest(partition_id, vp_index)
        else:
            return IDLE
        loops = self.limits.guest_loops
        if loops is not None and (program.max_loops is None or program.max_loops > loops):
            program = replace(program, max_loops=loops)
        return program

    # --- running -----------------------------------------------------------------------------
    def hypercall(
        self,
        control: int,
        input: bytes = b"",
        *,
        caller: int | None = None,
        vp: int = 0,
        input_gpa: int | None = None,
        output_gpa: int | None = None,
    ) -> HypercallResult:
        """Issue one hypercall from *caller*'s VP *vp* (default: the root's VP 0) and run the
        simulation until it returns. Raises ValueError if that VP does not exist."""
        caller_id = self.root_id if caller is None else caller
        req = HypercallRequest(caller_id, vp, control, bytes(input), input_gpa, output_gpa)
        partition = self.hv.partitions.get(caller_id)
        if partition is None or vp not in partition.vps:
            raise ValueError(f"no VP {vp} in partition {caller_id} to issue a hypercall from")
        with self.runtime.active():
            result: HypercallResult = self.hv_ref.ask(req, block=False).get()
        return result

    def issue(self, req: HypercallRequest) -> Generator[simpy.Event, Any, HypercallResult]:
        """Generator API: ``res = yield from sim.issue(req)`` inside a process."""
        result: HypercallResult = yield ask(self.hv_ref, req)
        return result

    def process(self, generator: Generator[Any, Any, T]) -> simpy.Process:
        """Start host code (a generator yielding SimPy events) as a concurrent process."""
        with self.runtime.active():
            proc = self.env.process(generator)
        self.host_processes.append(proc)
        return proc

    def tell_vp(self, partition_id: int, vp_index: int, message: object) -> bool:
        """Deliver a physical event (pause, crash, speed) to a VP actor; False if no such VP."""
        partition = self.hv.partitions.get(partition_id)
        if partition is None or vp_index not in partition.vps:
            return False
        with self.runtime.active():
            self._hv_actor.partition_refs[partition_id].tell(ToVp(vp_index, message))
        return True

    def vp_actor(self, partition_id: int, vp_index: int) -> VpActor | None:
        """The live actor of one VP (host code on a root VP uses its interrupt line and SIM page)."""
        for actor in self.vp_actors():
            if actor.partition_id == partition_id and actor.index == vp_index:
                return actor
        return None

    def vp_actors(self) -> list[VpActor]:
        """The live VP actors (inspection for checkers)."""
        return [a for a in self.runtime.actors if isinstance(a, VpActor) and not a.actor_stopped.is_set()]

    def host_step(self, step: str) -> None:
        """The host reached *step* (e.g. ``teardown.finalized``): tell the hooks (may raise)."""
        for hook in self.host_step_hooks:
            hook(step)

    def run(self, until_ns: int | None = None) -> None:
        """Advance the clock to *until_ns* (or until nothing is left to do)."""
        with self.runtime.active():
            self.env.run(until=until_ns)

    def run_process(self, generator: Generator[Any, Any, T]) -> T:
        """Run host code to completion and return its value (the clock runs meanwhile)."""
        with self.runtime.active():
            proc = self.env.process(generator)
            try:
                self.env.run(until=proc)
            except RuntimeError as exc:
                if "No scheduled events left" in str(exc):
                    raise SimulationDeadlock("the process waits for an event that can never happen") from None
                raise
            return cast(T, proc.value)

    def close(self) -> None:
        """Stop every actor (no further messages are handled)."""
        self.runtime.stop_all()
