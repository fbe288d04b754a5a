"""Futures for actors on a SimPy clock: pykka futures that are SimPy events.

A :class:`SimFuture` is both a ``pykka.Future`` and a ``simpy.Event``: a SimPy process ``yield``\\ s
it, and ``get()`` from outside the simulation steps the clock until the reply arrives. Derived
futures (``map``, ``filter``, ``join``, ``reduce``, ``stop(block=False)``) are SimFutures too,
triggered when their sources complete. Like ``runtime.py``, this module touches pykka internals
(``_Unset``, ``_ActorStop``), hence the pin to one pykka minor series.
"""

from __future__ import annotations

import contextvars
import functools
import sys
from collections.abc import Callable
from typing import Any, Protocol

import pykka
import simpy
from pykka._future import _Unset
from pykka.messages import _ActorStop
from simpy.core import EmptySchedule

__all__ = ["SimActorRef", "SimFuture", "SimulationDeadlock", "ask", "current_runtime"]


class RuntimeLike(Protocol):
    env: simpy.Environment
    handling: int


#: The runtime whose clock new actors and futures use (set by ``SimRuntime.active()``).
current_runtime: contextvars.ContextVar[RuntimeLike] = contextvars.ContextVar("hvsim_runtime")


def _active_env() -> simpy.Environment:
    try:
        return current_runtime.get().env
    except LookupError:
        raise RuntimeError(
            "no active hvsim runtime: create actors and futures inside `with runtime.active():`"
        ) from None


class SimulationDeadlock(RuntimeError):
    """A blocking wait cannot complete: the event heap ran dry, or it was called inside the sim."""


class SimFuture(pykka.Future[Any], simpy.Event):
    """A pykka future that is also a SimPy event: ``yield`` it inside a process."""

    def __init__(self, env: simpy.Environment | None = None) -> None:
        # pykka builds derived futures (map, join, stop) with a bare ``self.__class__()``.
        simpy.Event.__init__(self, env if env is not None else _active_env())
        # pykka.Future.__init__ would chain into simpy.Event.__init__ without env: set its fields here.
        self._get_hook = None
        self._get_hook_result = _Unset()

    def __repr__(self) -> str:
        state = "processed" if self.processed else ("triggered" if self.triggered else "pending")
        return f"<SimFuture {state}>"

    def set(self, value: Any = None) -> None:
        self.set_after(value, 0)

    def set_after(self, value: Any, delay_ns: int) -> None:
        if delay_ns < 0:
            raise ValueError(f"negative delay {delay_ns} ns: the clock cannot go backwards")
        if self.triggered or self._get_hook is not None:
            raise RuntimeError(f"{self!r} has already been set")
        self._ok = True
        self._value = value
        self.env.schedule(self, delay=delay_ns)

    def set_exception(self, exc_info: Any = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        exc = exc_info[1] if exc_info[1] is not None else exc_info[0]()
        if self.triggered:
            raise RuntimeError(f"{self!r} has already been set")
        # pykka treats an error nobody asked for as silent; SimPy would crash env.run() on it.
        self._defused = True
        self.fail(exc)

    def get(self, *, timeout: float | None = None) -> Any:
        """The reply; outside the simulation, runs the clock until it arrives.

        *timeout* is in simulated seconds. Raises :class:`SimulationDeadlock` when called from
        inside a running SimPy process (yield the future there) or when the heap runs dry first.
        """
        if self._get_hook is not None:
            if isinstance(self._get_hook_result, _Unset):
                self._get_hook_result = self._get_hook(timeout)
            return self._get_hook_result
        if self.callbacks is not None:  # not processed yet
            env = self.env
            if env.active_process is not None:
                raise SimulationDeadlock(
                    "blocking get() inside a simulation process would deadlock: yield the future"
                )
            runtime = current_runtime.get(None)
            if runtime is not None and runtime.handling:
                raise SimulationDeadlock(
                    "blocking get() inside an actor's message handler would deadlock: "
                    "return a Deferred reply or tell a reply message instead"
                )
            arrived: list[Any] = []
            self.callbacks.append(arrived.append)
            deadline = None if timeout is None else env.now + round(timeout * 1_000_000_000)
            while not arrived:
                if deadline is not None and env.peek() > deadline:
                    raise pykka.Timeout(f"{timeout} simulated seconds")
                try:
                    env.step()
                except EmptySchedule:
                    raise SimulationDeadlock("the event heap ran dry before the reply arrived") from None
        if not self._ok:
            raise self._value
        return self._value

    # Derived futures: pykka builds them with get hooks, which a SimPy process could never yield.
    def _derive(self, compute: Callable[[Any], Any]) -> SimFuture:
        derived = SimFuture(self.env)

        def resolve(source: simpy.Event) -> None:
            if not source._ok:
                derived.set_exception((type(source._value), source._value, None))
                return
            try:
                value = compute(source._value)
            except Exception:
                derived.set_exception()
            else:
                derived.set(value)

        if self.processed:
            resolve(self)
        else:
            self.callbacks.append(resolve)
        return derived

    def map(self, func: Callable[[Any], Any]) -> SimFuture:
        return self._derive(func)

    def filter(self, func: Callable[[Any], bool]) -> SimFuture:
        return self._derive(lambda value: list(filter(func, value)))

    def reduce(self, func: Callable[[Any, Any], Any], *args: Any) -> SimFuture:
        return self._derive(lambda value: functools.reduce(func, value, *args))

    def join(self, *futures: pykka.Future[Any]) -> SimFuture:
        sources = [self, *futures]
        if not all(isinstance(f, SimFuture) for f in sources):
            raise TypeError("SimFuture.join() takes SimFutures")
        return _joined_event(self.env, sources)._derive(lambda values: values)


def _joined_event(env: simpy.Environment, sources: list[Any]) -> SimFuture:
    """A future holding the list of *sources*' values, once all are processed."""
    joined = SimFuture(env)
    remaining = [len(sources)]

    def one_done(source: simpy.Event) -> None:
        if joined.triggered:
            return
        if not source._ok:
            joined.set_exception((type(source._value), source._value, None))
            return
        remaining[0] -= 1
        if remaining[0] == 0:
            joined.set([s._value for s in sources])

    for source in sources:
        if source.callbacks is None:
            one_done(source)
        else:
            source.callbacks.append(one_done)
    return joined


class SimActorRef(pykka.ActorRef[Any]):
    """pykka's ActorRef, with a ``stop(block=False)`` future a SimPy process can yield."""

    def stop(self, *, block: bool = True, timeout: float | None = None) -> Any:
        ask_future = self.ask(_ActorStop(), block=False)
        assert isinstance(ask_future, SimFuture)
        # True if the actor was stopped by this request, False if it was already dead (pykka).
        stopped = ask_future._derive(lambda _value: True)
        result = SimFuture(ask_future.env)

        def convert(source: simpy.Event) -> None:
            result.set(bool(source._ok))

        stopped.callbacks.append(convert)
        return result.get(timeout=timeout) if block else result


def ask(ref: pykka.ActorRef[Any], message: Any) -> SimFuture:
    """``ref.ask(message, block=False)``, typed as the SimPy event it is (for ``yield``)."""
    future = ref.ask(message, block=False)
    assert isinstance(future, SimFuture)
    return future
