"""The pykka-on-SimPy glue (hvsim.actors.runtime): tell, ask, proxies, hooks, failures, stop.

runtime.py pins itself to pykka internals (``_handle_receive``, ``_actor_loop_setup``,
``_actor_loop_teardown``, private ``Future`` fields), so these tests are the guard for a pykka upgrade.
Each test is SimPy-shaped: a fresh environment, a runtime made current with ``with rt.active():``,
tiny actors, and an assert on a ``log`` list.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Generator
from typing import Any

import pykka
import pytest
import simpy
from pykka._envelope import Envelope

from hvsim.actors.runtime import (
    Deferred,
    DirectTransport,
    SimActor,
    SimFuture,
    SimInbox,
    SimRuntime,
    SimulationDeadlock,
    ask,
    call_later,
)

Log = list[tuple[Any, ...]]
Proc = Generator[simpy.Event, Any, None]


@pytest.fixture
def env() -> simpy.Environment:
    return simpy.Environment()


@pytest.fixture
def rt(env: simpy.Environment) -> SimRuntime:
    return SimRuntime(env)


@pytest.fixture
def log() -> Log:
    return []


class Recorder(SimActor):
    """Logs ``(name, event, now)`` for every hook and message.

    Replies with the message itself, except: ``"boom"`` raises ValueError, ``"kbd"`` raises
    KeyboardInterrupt, ``("defer", value, delay_ns)`` replies *value* after *delay_ns*.
    """

    def __init__(self, log: Log, name: str = "r") -> None:
        super().__init__()
        self.log = log
        self.name = name
        self.counter = 0

    def on_start(self) -> None:
        self.log.append((self.name, "start", self.env.now))

    def on_stop(self) -> None:
        self.log.append((self.name, "stop", self.env.now))

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.log.append((self.name, "failure", self.env.now, repr(exc)))

    def on_receive(self, message: Any) -> Any:
        self.log.append((self.name, message, self.env.now))
        if message == "boom":
            raise ValueError("boom")
        if message == "kbd":
            raise KeyboardInterrupt
        if isinstance(message, tuple) and message[:1] == ("defer",):
            _, value, delay_ns = message
            return Deferred(value, delay_ns)
        return message

    def add(self, a: int, b: int = 0) -> int:
        self.log.append((self.name, "add", self.env.now))
        return a + b

    def add_later(self, a: int, delay_ns: int) -> Deferred:
        return Deferred(a, delay_ns)


class Other(SimActor):
    def on_receive(self, message: Any) -> Any:
        return message


def waiter(env: simpy.Environment, future: SimFuture, log: Log, label: str) -> Proc:
    """A process that yields *future* and logs ``(label, value, now)``."""
    value = yield future
    log.append((label, value, env.now))


def at(env: simpy.Environment, delay_ns: int, fn: Callable[[], None]) -> None:
    call_later(env, delay_ns, fn)


# --- tell ----------------------------------------------------------------------------------------
def test_tell_is_not_handled_before_the_clock_runs(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        ref = Recorder.start(log)
        ref.tell(1)
        ref.tell(2)
        ref.tell(3)
        assert log == []
        assert env.peek() == 0  # the drain is a scheduled event, not a synchronous call
        env.run()
    assert log == [("r", "start", 0), ("r", 1, 0), ("r", 2, 0), ("r", 3, 0)]


def test_tell_is_handled_at_the_current_instant_as_a_scheduled_event(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)
        env.run()
        assert log == [("r", "start", 0)]
        ref.tell("a")
        assert log == [("r", "start", 0)]
        assert env.peek() == 0  # exactly one drain event, at the current instant
        env.step()
        assert log[-1] == ("r", "a", 0)
        assert env.peek() == float("inf")

        def later() -> None:
            ref.tell("b")
            log.append(("timer", "told", env.now))

        at(env, 50, later)
        env.run()
    assert log[-2:] == [("timer", "told", 50), ("r", "b", 50)]


def test_tell_order_within_and_across_actors(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        a = Recorder.start(log, "a")
        b = Recorder.start(log, "b")

        def sender() -> Proc:
            a.tell(1)
            b.tell(1)
            a.tell(2)
            assert [e for e in log if e[1] != "start"] == []  # tell never runs the handler inline
            yield env.timeout(10)
            b.tell(2)
            a.tell(3)
            b.tell(3)

        env.process(sender())
        env.run()
    # The process starts first (SimPy's Initialize is URGENT), so a's first drain also sees 1 and 2.
    assert log == [
        ("a", "start", 0),
        ("a", 1, 0),
        ("a", 2, 0),
        ("b", "start", 0),
        ("b", 1, 0),
        ("b", 2, 10),
        ("b", 3, 10),
        ("a", 3, 10),
    ]


def test_tell_after_delivers_later(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        target = Recorder.start(log, "t")
        timer = Recorder.spawn(log, "timer")
        timer.tell_after(25, target, "ping")
        env.run()
    assert ("t", "ping", 25) in log


# --- ask -----------------------------------------------------------------------------------------
def test_ask_non_blocking_is_a_simpy_event_yielded_from_a_process(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)

        def client() -> Proc:
            future = ref.ask("hello", block=False)
            assert isinstance(future, SimFuture)
            assert isinstance(future, simpy.Event)
            value = yield future
            log.append(("client", value, env.now))
            value = yield ask(ref, ("defer", "later", 40))
            log.append(("client", value, env.now))

        env.process(client())
        env.run()
    assert log == [
        ("r", "start", 0),
        ("r", "hello", 0),
        ("client", "hello", 0),
        ("r", ("defer", "later", 40), 0),
        ("client", "later", 40),
    ]


def test_blocking_ask_from_outside_steps_the_clock_only_as_far_as_needed(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)
        at(env, 1000, lambda: log.append(("timer", env.now)))
        assert ref.ask(("defer", "x", 10)) == "x"
        assert env.now == 10
        assert ("timer", 1000) not in log
        assert ref.ask(7) == 7  # an immediate reply does not move the clock
        assert env.now == 10
        env.run()
    assert log[-1] == ("timer", 1000)


@pytest.mark.parametrize("delay_ns", [0, 1, 7, 1_000_000_000])
def test_deferred_reply_arrives_exactly_delay_ns_later(
    env: simpy.Environment, rt: SimRuntime, log: Log, delay_ns: int
) -> None:
    with rt.active():
        ref = Recorder.start(log)
        env.run(until=100)
        env.process(waiter(env, ask(ref, ("defer", "v", delay_ns)), log, "reply"))
        env.run()
    assert log[-1] == ("reply", "v", 100 + delay_ns)


def test_deferred_reply_does_not_block_the_actor(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        ref = Recorder.start(log)
        env.process(waiter(env, ask(ref, ("defer", "slow", 100)), log, "reply"))
        env.process(waiter(env, ask(ref, ("defer", "mid", 30)), log, "reply"))
        env.process(waiter(env, ask(ref, "fast"), log, "reply"))
        env.run()
    handled = [e for e in log if e[0] == "r" and e[1] != "start"]
    assert [e[2] for e in handled] == [0, 0, 0]
    assert [e for e in log if e[0] == "reply"] == [
        ("reply", "fast", 0),
        ("reply", "mid", 30),
        ("reply", "slow", 100),
    ]


def test_blocking_get_inside_a_process_raises_simulation_deadlock(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)

        def client() -> Proc:
            future = ask(ref, ("defer", "v", 5))
            with pytest.raises(SimulationDeadlock, match="yield"):
                future.get()
            with pytest.raises(SimulationDeadlock):
                ref.ask("blocking")  # ask(block=True) is a get() too
            value = yield future  # the future is still usable the right way
            log.append(("client", value, env.now))

        env.process(client())
        env.run()
    assert log[-1] == ("client", "v", 5)
    assert issubclass(SimulationDeadlock, RuntimeError)


def test_get_when_the_heap_runs_dry_raises_simulation_deadlock(
    env: simpy.Environment, rt: SimRuntime
) -> None:
    with rt.active():
        orphan = SimFuture(env)  # nobody will ever set it
        at(env, 30, lambda: None)
        with pytest.raises(SimulationDeadlock, match="ran dry"):
            orphan.get()
        assert env.now == 30  # it ran everything there was before giving up


def test_get_timeout_is_in_simulated_seconds(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        ref = Recorder.start(log)
        future = ask(ref, ("defer", "v", 2_000))
        with pytest.raises(pykka.Timeout):
            future.get(timeout=1e-6)  # 1,000 ns
        assert env.now <= 1_000
        assert future.get(timeout=2e-6) == "v"  # a reply exactly at the deadline is in time
        assert env.now == 2_000
        with pytest.raises(pykka.Timeout):
            ref.ask(("defer", "w", 10), timeout=9e-9)


@pytest.mark.parametrize(
    "timeout_s",
    [
        0.3,
        1.5,
        4.1,
    ],
)
def test_get_timeout_accepts_a_reply_exactly_at_the_deadline(
    env: simpy.Environment, rt: SimRuntime, log: Log, timeout_s: float
) -> None:
    delay_ns = round(timeout_s * 1_000_000_000)
    with rt.active():
        ref = Recorder.start(log)
        assert ask(ref, ("defer", "v", delay_ns)).get(timeout=timeout_s) == "v"
        assert env.now == delay_ns


def test_exception_in_an_ask_reaches_a_yielding_process(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)

        def client() -> Proc:
            try:
                yield ask(ref, "boom")
            except ValueError as exc:
                log.append(("client caught", str(exc), env.now))

        env.process(client())
        env.run()
        assert ref.is_alive()
    assert log[-1] == ("client caught", "boom", 0)


def test_blocking_ask_inside_an_actor_handler_raises_simulation_deadlock(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    class Caller(SimActor):
        def __init__(self, callee: pykka.ActorRef[Any]) -> None:
            super().__init__()
            self.callee = callee

        def on_receive(self, message: Any) -> Any:
            try:
                log.append(("caller got", self.callee.ask(message), self.env.now))
            except SimulationDeadlock:
                log.append(("caller", "deadlock", self.env.now))

    with rt.active():
        callee = Recorder.start(log, "callee")
        caller = Caller.start(callee)
        at(env, 10, lambda: log.append(("unrelated event", env.now)))
        caller.tell(("defer", "v", 50))
        env.run()
    # The handler must not run the clock (the t=10 event) from inside itself.
    assert ("caller", "deadlock", 0) in log
    assert log.index(("caller", "deadlock", 0)) < log.index(("unrelated event", 10))


def test_negative_deferred_delay_is_rejected_and_time_never_goes_back(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)
        env.run(until=100)
        future = ask(ref, ("defer", "v", -50))
        seen: list[int] = []
        future.callbacks.append(lambda _ev: seen.append(env.now))
        env.run()
        assert all(t >= 100 for t in seen)
        with pytest.raises(ValueError):
            future.get()


def test_negative_tell_after_delay_is_rejected(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        target = Recorder.start(log, "t")
        timer = Recorder.spawn(log, "timer")
        env.run(until=100)
        with pytest.raises(ValueError):
            timer.tell_after(-50, target, "ping")


# --- proxies -------------------------------------------------------------------------------------
def test_proxy_method_call_and_attribute_get(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        ref = Recorder.start(log)
        proxy = ref.proxy()
        assert proxy.add(2, b=3).get() == 5
        assert proxy.name.get() == "r"
        assert proxy.counter.get() == 0
        proxy.counter = 41  # ProxySetAttr: a blocking ask, fine from outside the sim
        assert proxy.counter.get() == 41
    assert ("r", "add", 0) in log


def test_proxy_call_yielded_from_a_process_honours_deferred(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        proxy = Recorder.start(log).proxy()

        def client() -> Proc:
            value = yield proxy.add(1, 2)
            log.append(("client", value, env.now))
            value = yield proxy.add_later(9, 15)
            log.append(("client", value, env.now))

        env.process(client())
        env.run()
    assert log[-2:] == [("client", 3, 0), ("client", 9, 15)]


# --- hooks ---------------------------------------------------------------------------------------
def test_on_start_runs_once_before_the_first_message(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)
        ref.tell(1)
        env.run()
        at(env, 20, lambda: ref.tell(2))
        env.run()
        ref.tell(3)
        env.run()
    assert log == [("r", "start", 0), ("r", 1, 0), ("r", 2, 20), ("r", 3, 20)]


def test_on_start_runs_even_without_messages(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        Recorder.start(log)
        assert log == []
        env.run()
    assert log == [("r", "start", 0)]


def test_on_stop_runs_on_stop(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        ref = Recorder.start(log)
        ref.tell(1)
        assert ref.stop() is True
    assert log == [("r", "start", 0), ("r", 1, 0), ("r", "stop", 0)]
    assert rt.failures == []


def test_exception_in_a_told_message_calls_on_failure_and_kills_the_actor(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        actor = Recorder.spawn(log)
        ref = actor.actor_ref
        ref.tell("boom")
        ref.tell("after")  # queued behind the failure: never handled
        pending = ask(ref, "asked after")
        env.run()
        assert not ref.is_alive()
        with pytest.raises(pykka.ActorDeadError):
            pending.get()
        with pytest.raises(pykka.ActorDeadError):
            ref.tell("later")
        with pytest.raises(pykka.ActorDeadError):
            ref.ask("later")
    assert log == [
        ("r", "start", 0),
        ("r", "boom", 0),
        ("r", "failure", 0, "ValueError('boom')"),
    ]
    assert len(rt.failures) == 1
    who, exc = rt.failures[0]
    assert who == str(actor) == "Recorder (urn:hvsim:Recorder:1)"
    assert isinstance(exc, ValueError)
    assert str(exc) == "boom"


def test_exception_in_an_asked_message_goes_to_the_asker_and_the_actor_survives(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)
        with pytest.raises(ValueError, match="boom"):
            ref.ask("boom")
        assert ref.is_alive()
        assert ref.ask("still here") == "still here"
    assert rt.failures == []
    assert not [e for e in log if e[1] == "failure"]


def test_exception_in_on_start_kills_the_actor(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    class BadStart(Recorder):
        def on_start(self) -> None:
            raise RuntimeError("no start")

    with rt.active():
        ref = BadStart.start(log)
        pending = ask(ref, 1)
        env.run()
        assert not ref.is_alive()
        with pytest.raises(pykka.ActorDeadError):
            pending.get()
    assert [e for e in log if e[1] == 1] == []
    assert [type(exc) for _, exc in rt.failures] == [RuntimeError]


# --- stop ----------------------------------------------------------------------------------------
def test_stop_handles_earlier_messages_and_fails_later_asks(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)
        ref.tell(1)
        ref.tell(2)
        stopped = ref.stop(block=False)
        queued_after_stop = ref.ask(3, block=False)
        env.run()
        assert stopped.get() is True
        with pytest.raises(pykka.ActorDeadError):
            queued_after_stop.get()
        assert ref.is_alive() is False
        with pytest.raises(pykka.ActorDeadError):
            ref.ask(4)
        with pytest.raises(pykka.ActorDeadError):
            ref.tell(5)
        assert ref.stop() is False  # already dead
    assert log == [("r", "start", 0), ("r", 1, 0), ("r", 2, 0), ("r", "stop", 0)]


def test_stop_future_can_be_yielded_from_a_process(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        ref = Recorder.start(log)

        def client() -> Proc:
            result = yield ref.stop(block=False)
            log.append(("client", result, env.now))

        env.process(client())
        env.run()
        assert not ref.is_alive()
    assert ("client", True, 0) in log


def test_unobserved_failed_futures_do_not_crash_env_run(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        ref = Recorder.start(log)
        ask(ref, "boom")  # nobody looks at the failure
        dead = Recorder.start(log, "dead")
        dead.stop()
        ask(dead, "too late")  # fails with ActorDeadError, unobserved
        env.run()
        assert ref.is_alive()
        assert ref.ask("ok") == "ok"
    assert rt.failures == []


# --- identities ----------------------------------------------------------------------------------
def test_actor_urn_is_a_deterministic_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    def urns() -> list[str]:
        rt = SimRuntime(simpy.Environment())
        with rt.active():
            refs = [Recorder.start([]), Other.start(), Recorder.start([])]
        return [r.actor_urn for r in refs] + [str(r) for r in refs]

    first = urns()
    # Whatever uuid4 returns cannot leak into the identities.
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=random.getrandbits(128)))
    second = urns()
    assert (
        first
        == second
        == [
            "urn:hvsim:Recorder:1",
            "urn:hvsim:Other:2",
            "urn:hvsim:Recorder:3",
            "Recorder (urn:hvsim:Recorder:1)",
            "Other (urn:hvsim:Other:2)",
            "Recorder (urn:hvsim:Recorder:3)",
        ]
    )


def test_actor_and_ref_share_the_urn(env: simpy.Environment, rt: SimRuntime) -> None:
    with rt.active():
        actor = Other.spawn()
    assert actor.actor_ref.actor_urn == actor.actor_urn == "urn:hvsim:Other:1"
    assert rt.actors == [actor]


# --- transports ----------------------------------------------------------------------------------
def test_default_transport_is_direct_with_no_latency(env: simpy.Environment, rt: SimRuntime) -> None:
    assert isinstance(rt.transport, DirectTransport)
    assert rt.transport.latency_ns == 0


def test_direct_transport_latency_delays_delivery(env: simpy.Environment, log: Log) -> None:
    rt = SimRuntime(env, transport=DirectTransport(env, latency_ns=25))
    with rt.active():
        ref = Recorder.start(log)
        ref.tell(1)
        ref.tell(2)
        env.process(waiter(env, ask(ref, "q"), log, "reply"))
        env.run()
    # on_start is not a message: it runs at once; messages arrive 25 ns later, in send order.
    assert log == [
        ("r", "start", 0),
        ("r", 1, 25),
        ("r", 2, 25),
        ("r", "q", 25),
        ("reply", "q", 25),
    ]


def test_direct_transport_rejects_negative_latency(env: simpy.Environment) -> None:
    with pytest.raises(ValueError, match="latency_ns"):
        DirectTransport(env, latency_ns=-1)


class RecordingTransport:
    """Sees every envelope; drops messages equal to ``"lost"``; delays ``("slow", n)`` by n ns."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.seen: list[Any] = []

    def submit(self, envelope: Envelope[Any], dst: SimInbox) -> None:
        message = envelope.message
        self.seen.append(message)
        if message == "lost":
            return
        if isinstance(message, tuple) and message[:1] == ("slow",):
            call_later(self.env, message[1], lambda: dst.deliver(envelope))
            return
        dst.deliver(envelope)


def test_custom_transport_sees_every_envelope(env: simpy.Environment, log: Log) -> None:
    transport = RecordingTransport(env)
    rt = SimRuntime(env, transport=transport)
    assert rt.transport is transport
    with rt.active():
        ref = Recorder.start(log)
        ref.tell("told")
        assert ref.ask("asked") == "asked"
        assert ref.proxy().add(1, 1).get() == 2
        ref.stop()
    kinds = [m if isinstance(m, str) else type(m).__name__ for m in transport.seen]
    assert kinds == ["told", "asked", "ProxyCall", "_ActorStop"]


def test_custom_transport_can_drop_and_delay_messages(env: simpy.Environment, log: Log) -> None:
    rt = SimRuntime(env, transport=RecordingTransport(env))
    with rt.active():
        ref = Recorder.start(log)
        ref.tell(("slow", 10))
        ref.tell("lost")
        ref.tell("fast")
        env.run()
        assert log == [("r", "start", 0), ("r", "fast", 0), ("r", ("slow", 10), 10)]
        with pytest.raises(SimulationDeadlock):
            ref.ask("lost")  # the request never arrives: the heap runs dry


# --- runtime -------------------------------------------------------------------------------------
def test_current_outside_active_raises_a_clear_error(env: simpy.Environment) -> None:
    with pytest.raises(RuntimeError, match=r"no active hvsim runtime.*runtime\.active\(\)"):
        SimRuntime.current()
    with pytest.raises(RuntimeError, match="no active hvsim runtime"):
        Other.start()
    outer, inner = SimRuntime(env), SimRuntime(simpy.Environment())
    with outer.active() as current:
        assert current is outer
        assert SimRuntime.current() is outer
        with inner.active():
            assert SimRuntime.current() is inner
            assert Other.spawn().env is inner.env
        assert SimRuntime.current() is outer
    with pytest.raises(RuntimeError):
        SimRuntime.current()


def test_stop_all_stops_every_actor_at_once(env: simpy.Environment, rt: SimRuntime, log: Log) -> None:
    with rt.active():
        a = Recorder.start(log, "a")
        b = Recorder.start(log, "b")
        env.run()
        a.tell("never")
        pending = ask(b, "never")
        rt.stop_all()
        assert rt.actors == []
        assert not a.is_alive()
        assert not b.is_alive()
        env.run()
        with pytest.raises(pykka.ActorDeadError):
            pending.get()
        with pytest.raises(pykka.ActorDeadError):
            a.tell("x")
    assert log == [("a", "start", 0), ("b", "start", 0), ("b", "stop", 0), ("a", "stop", 0)]


def test_stop_all_before_the_clock_runs_never_starts_a_stopped_actor(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        Recorder.start(log, "a")
        Recorder.start(log, "b")
        rt.stop_all()
        env.run()
    for name in ("a", "b"):
        events = [e[1] for e in log if e[0] == name]
        assert events.count("start") <= 1
        assert events[-1] == "stop", events


def test_base_exception_propagates_out_of_env_run_and_stops_all_actors(
    env: simpy.Environment, rt: SimRuntime, log: Log
) -> None:
    with rt.active():
        a = Recorder.start(log, "a")
        b = Recorder.start(log, "b")
        c = Recorder.start(log, "c")
        env.run()
        b.tell("kbd")
        b.tell("after")
        pending = ask(c, "never")  # c drains after b: never handled
        c.tell("queued")
        with pytest.raises(KeyboardInterrupt):
            env.run()
        assert rt.actors == []
        assert [r.is_alive() for r in (a, b, c)] == [False, False, False]
        with pytest.raises(pykka.ActorDeadError):
            pending.get()
    assert ("b", "after", 0) not in log
    assert ("c", "queued", 0) not in log
    assert ("c", "never", 0) not in log
    assert sorted(e[0] for e in log if e[1] == "stop") == ["a", "b", "c"]


# --- determinism ---------------------------------------------------------------------------------
class Relay(SimActor):
    """Forwards ``(hop, origin)`` around a ring, mixing tell, tell_after and Deferred replies."""

    def __init__(self, log: Log, peers: list[pykka.ActorRef[Any]]) -> None:
        super().__init__()
        self.log = log
        self.peers = peers

    def on_receive(self, message: Any) -> Any:
        hop, origin = message
        self.log.append((self.env.now, self.actor_urn, hop, origin))
        if hop < 5:
            nxt = self.peers[(hop * 7 + len(origin)) % len(self.peers)]
            if hop % 2:
                self.tell_after(hop * 3, nxt, (hop + 1, origin))
            else:
                nxt.tell((hop + 1, origin))
        return Deferred((hop, origin), hop * 5)


def run_relay_system() -> tuple[Log, int]:
    env = simpy.Environment()
    rt = SimRuntime(env)
    log: Log = []
    peers: list[pykka.ActorRef[Any]] = []
    with rt.active():
        peers.extend(Relay.start(log, peers) for _ in range(5))
        rng = random.Random(1234)

        def teller(name: str) -> Proc:
            for i in range(12):
                peers[rng.randrange(len(peers))].tell((0, f"{name}{i}"))
                yield env.timeout(rng.choice((0, 0, 1, 2)))

        def asker(name: str) -> Proc:
            for i in range(8):
                reply = yield ask(peers[rng.randrange(len(peers))], (rng.randrange(4), f"{name}{i}"))
                log.append((env.now, "reply", *reply))

        env.process(teller("t"))
        env.process(asker("a"))
        env.process(teller("u"))
        env.run()
        rt.stop_all()
    return log, env.now


def test_identical_systems_produce_identical_logs() -> None:
    first_log, first_end = run_relay_system()
    second_log, second_end = run_relay_system()
    assert first_log == second_log
    assert first_end == second_end
    assert len(first_log) > 100
    times = [entry[0] for entry in first_log]
    assert len(times) > len(set(times))  # many same-instant events: ordering really was exercised


def test_no_os_thread_is_started() -> None:
    before = threading.active_count()
    idents = {t.ident for t in threading.enumerate()}
    run_relay_system()
    assert threading.active_count() == before
    assert {t.ident for t in threading.enumerate()} == idents
