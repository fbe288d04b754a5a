"""pykka actors on a SimPy clock: no OS threads, one event heap, deterministic.

This module and ``futures.py`` are the only ones that touch pykka internals (``_handle_receive``,
``_actor_loop_setup``, ``_actor_loop_teardown``, ``Future`` private fields), which is why pyproject
pins pykka to one minor series and ``tests/unit/test_runtime.py`` covers tell, ask, proxies, hooks,
failures and stop.

Design (see RUNTIME_NOTES.md for the measurements behind it):

* An actor's inbox is a deque. ``tell``/``ask`` hand the envelope to a :class:`Transport` (the seam
  where message faults plug in); delivery appends to the deque and, if the actor is idle, schedules
  one *drain* event on the SimPy heap. The drain callback handles every queued envelope with pykka's
  own receive semantics. So every message is an event on the simulated clock, ordered by SimPy's
  ``(time, priority, eid)`` key, and an idle actor costs nothing.
* ``ask`` returns a :class:`SimFuture`, which *is* a ``simpy.Event``: a SimPy process simply
  ``yield``\\ s it. ``get()`` outside the simulation steps the clock until the reply arrives; inside a
  running process it raises instead of deadlocking.
* A handler may return :class:`Deferred` to have its reply delivered after a simulated delay (a
  hypercall's service time) without blocking the actor.
* Actor identities are counters (``urn:hvsim:<Class>:<n>``), never pykka's random UUIDs, and actors
  are kept in the :class:`SimRuntime`, not in pykka's process-global registry.
* Futures derived from others (``map``, ``filter``, ``join``, ``reduce``, ``stop(block=False)``)
  are SimPy events too, triggered when their sources complete, so a process can yield them.
"""

from __future__ import annotations

import contextlib
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol, Self, cast

import pykka
import simpy
from pykka._envelope import Envelope

from hvsim.actors.futures import SimActorRef, SimFuture, SimulationDeadlock, ask, current_runtime

__all__ = [
    "Deferred",
    "DirectTransport",
    "SimActor",
    "SimFuture",
    "SimInbox",
    "SimRuntime",
    "SimulationDeadlock",
    "Transport",
    "ask",
    "call_later",
]


class Deferred(NamedTuple):
    """Return this from ``on_receive`` to deliver *value* as the reply after *delay_ns*."""

    value: Any
    delay_ns: int


class Transport(Protocol):
    """How an envelope travels to an inbox. ``faults/`` wraps this; actors never see it."""

    def submit(self, envelope: Envelope[Any], dst: SimInbox) -> None: ...


class DirectTransport:
    """Delivers every envelope after a fixed latency (0: at the current instant, in send order)."""

    def __init__(self, env: simpy.Environment, latency_ns: int = 0) -> None:
        if latency_ns < 0:
            raise ValueError("latency_ns must be >= 0")
        self.env = env
        self.latency_ns = latency_ns

    def submit(self, envelope: Envelope[Any], dst: SimInbox) -> None:
        if self.latency_ns == 0:
            dst.deliver(envelope)
        else:
            call_later(self.env, self.latency_ns, lambda: dst.deliver(envelope))


class SimRuntime:
    """One simulation's actor runtime: the SimPy environment, its actors and its transport."""

    def __init__(self, env: simpy.Environment, transport: Transport | None = None) -> None:
        self.env = env
        self.transport: Transport = transport if transport is not None else DirectTransport(env)
        self.actors: list[SimActor] = []
        #: Actors that died of an unhandled exception in a told message or hook, in order.
        self.failures: list[tuple[str, BaseException]] = []
        #: Depth of actor message handling in progress: a blocking get() there would deadlock.
        self.handling = 0
        self._next_id = 0

    def next_urn(self, kind: str) -> str:
        self._next_id += 1
        return f"urn:hvsim:{kind}:{self._next_id}"

    @contextlib.contextmanager
    def active(self) -> Iterator[Self]:
        """Make this runtime current, so actors and futures created inside use its clock."""
        token = current_runtime.set(self)
        try:
            yield self
        finally:
            current_runtime.reset(token)

    def stop_all(self) -> None:
        """Stop every live actor at once (teardown; no further messages are handled)."""
        with self.active():  # on_stop hooks may stop or tell other actors
            for actor in reversed(self.actors):
                if not actor.actor_stopped.is_set():
                    actor._stop()
        self.actors.clear()

    @staticmethod
    def current() -> SimRuntime:
        try:
            runtime = current_runtime.get()
        except LookupError:
            raise RuntimeError(
                "no active hvsim runtime: create actors and futures inside `with runtime.active():`"
            ) from None
        assert isinstance(runtime, SimRuntime)
        return runtime


class SimInbox:
    """An actor's inbox: a deque filled by the transport and drained by one scheduled event."""

    __slots__ = ("_drain_pending", "actor", "env", "queue", "transport")

    def __init__(self, runtime: SimRuntime) -> None:
        self.env = runtime.env
        self.transport = runtime.transport
        self.queue: deque[Envelope[Any]] = deque()
        self.actor: SimActor | None = None
        self._drain_pending = False

    # pykka's ActorInbox protocol -------------------------------------------------------------
    def put(self, envelope: Envelope[Any], /) -> None:
        self.transport.submit(envelope, self)

    def get(self) -> Envelope[Any]:
        return self.queue.popleft()

    def empty(self) -> bool:
        return not self.queue

    # delivery ---------------------------------------------------------------------------------
    def deliver(self, envelope: Envelope[Any]) -> None:
        """Called by the transport when the envelope arrives."""
        self.queue.append(envelope)
        if not self._drain_pending:
            self.schedule_drain()

    def schedule_drain(self) -> None:
        self._drain_pending = True
        ev = simpy.Event(self.env)
        ev.callbacks.append(self._drain)
        ev._ok = True
        ev._value = None
        self.env.schedule(ev)

    def _drain(self, _ev: simpy.Event) -> None:
        self._drain_pending = False
        actor = self.actor
        if actor is not None:
            actor._drain()


class SimActor(pykka.Actor):
    """A pykka actor whose inbox and loop run on the current :class:`SimRuntime`'s SimPy clock.

    Subclass it like ``pykka.ThreadingActor``; ``start()`` must run inside ``runtime.active()``.
    ``on_start`` runs at the first drain (a scheduled event), then messages are handled in order.
    """

    runtime: SimRuntime
    env: simpy.Environment

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runtime = SimRuntime.current()
        self.env = self.runtime.env
        # Counter identities instead of uuid4: str(actor) appears in errors and must be reproducible.
        self.actor_urn = self.runtime.next_urn(type(self).__name__)
        self._actor_ref = SimActorRef(self)
        self._started = False
        inbox = self.actor_inbox
        assert isinstance(inbox, SimInbox)
        inbox.actor = self

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> pykka.ActorRef[Self]:
        return cls.spawn(*args, **kwargs).actor_ref

    @classmethod
    def spawn(cls, *args: Any, **kwargs: Any) -> Self:
        """Like ``start()``, but returns the actor itself (for the simulation's own inspection)."""
        obj = cls(*args, **kwargs)
        obj.runtime.actors.append(obj)
        obj._start_actor_loop()
        return obj

    @staticmethod
    def _create_actor_inbox() -> SimInbox:
        return SimInbox(SimRuntime.current())

    @staticmethod
    def _create_future() -> SimFuture:
        return SimFuture(SimRuntime.current().env)

    def _start_actor_loop(self) -> None:
        inbox = self.actor_inbox
        assert isinstance(inbox, SimInbox)
        inbox.schedule_drain()

    def _stop(self) -> None:
        # pykka's _stop also unregisters from its global registry (a no-op for us: never registered).
        super()._stop()
        self._flush_dead_letters()

    def _flush_dead_letters(self) -> None:
        with contextlib.suppress(Exception):
            self._actor_loop_teardown()

    def _handle_failure(self, *exc_info: Any) -> None:
        super()._handle_failure(*exc_info)
        self.runtime.failures.append((str(self), exc_info[1]))

    def _drain(self) -> None:
        """pykka's ``_actor_loop_running``, as one non-blocking pass over the queued envelopes."""
        stopped = self.actor_stopped
        if not self._started:
            self._started = True
            if stopped.is_set():
                return  # stopped before its first turn: on_start must not run after on_stop
            self._actor_loop_setup()
        queue = self.actor_inbox.queue  # type: ignore[attr-defined]
        runtime = self.runtime
        runtime.handling += 1
        try:
            self._drain_queue(queue, stopped)
        finally:
            runtime.handling -= 1
        if stopped.is_set():
            self._flush_dead_letters()

    def _drain_queue(self, queue: deque[Envelope[Any]], stopped: Any) -> None:
        while queue and not stopped.is_set():
            envelope = queue.popleft()
            try:
                response = self._handle_receive(envelope.message)
                reply_to = envelope.reply_to
                if reply_to is not None:
                    if type(response) is Deferred:
                        cast(SimFuture, reply_to).set_after(response.value, response.delay_ns)
                    else:
                        reply_to.set(response)
            except Exception:
                if envelope.reply_to is not None:
                    envelope.reply_to.set_exception()
                else:
                    self._handle_failure(*sys.exc_info())
                    try:
                        self.on_failure(*sys.exc_info())
                    except Exception:
                        self._handle_failure(*sys.exc_info())
            except BaseException:
                self._stop()
                self.runtime.stop_all()
                raise

    def _handle_receive(self, message: Any) -> Any:
        # Fast path: plain messages skip pykka's four isinstance checks for proxy/stop messages.
        if type(message).__module__ != "pykka.messages":
            return self.on_receive(message)
        return super()._handle_receive(message)

    def tell_after(self, delay_ns: int, target: pykka.ActorRef[Any], message: Any) -> None:
        """Tell *target* the *message* after *delay_ns* of simulated time (a timer)."""
        call_later(self.env, delay_ns, lambda: target.tell(message))


def call_later(env: simpy.Environment, delay_ns: int, fn: Callable[[], None]) -> None:
    """Run *fn* at ``now + delay_ns`` as a scheduled event (no process, no generator)."""
    if delay_ns < 0:
        raise ValueError(f"negative delay {delay_ns} ns: the clock cannot go backwards")
    ev = simpy.Event(env)
    ev.callbacks.append(lambda _ev: fn())
    ev._ok = True
    ev._value = None
    env.schedule(ev, delay=delay_ns)
