"""stream_job: a job in a thread whose emits stream out as they happen, its
result last, its errors raised to the consumer, and its stop when the call ends."""

from __future__ import annotations

import threading

import pytest

from xaimesh_runtime.errors import Cancelled, InvalidArgument
from xaimesh_runtime.jobs import stream_job


class FakeContext:
    def __init__(self) -> None:
        self.active = True
        self.callbacks = []

    def is_active(self) -> bool:
        return self.active

    def add_callback(self, fn) -> bool:
        self.callbacks.append(fn)
        return True

    def end(self) -> None:
        self.active = False
        for fn in self.callbacks:
            fn()


def test_events_in_order_then_the_result():
    def work(emit, should_stop):
        for i in range(3):
            emit(i)
        return "done"

    assert list(stream_job(work, FakeContext(), "job", poll_interval=0.01)) == [
        ("event", 0), ("event", 1), ("event", 2), ("result", "done")]


def test_the_work_error_reaches_the_consumer():
    def work(emit, should_stop):
        emit("first")
        raise InvalidArgument("n_steps must be >= 1", field="n_steps")

    events = stream_job(work, FakeContext(), "job", poll_interval=0.01)
    assert next(events) == ("event", "first")
    with pytest.raises(InvalidArgument, match="n_steps"):
        next(events)


def test_a_call_that_ends_stops_the_work_and_calls_on_stop_once():
    context, started, stopped = FakeContext(), threading.Event(), []

    def work(emit, should_stop):
        started.set()
        while not should_stop():
            threading.Event().wait(0.01)
        stopped.append("work")

    events = stream_job(work, context, "the fit", on_stop=lambda: stopped.append("on_stop"), poll_interval=0.01)
    outcome = []

    def consume():
        try:
            list(events)
        except Cancelled as exc:
            outcome.append(str(exc))

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert started.wait(5)
    context.end()
    consumer.join(5)
    assert not consumer.is_alive() and outcome == ["the fit was cancelled"]
    assert stopped.count("on_stop") == 1 and "work" in stopped


def test_a_consumer_that_stops_early_stops_the_work():
    stopped = threading.Event()

    def work(emit, should_stop):
        emit(1)
        while not should_stop():
            threading.Event().wait(0.01)
        stopped.set()

    events = stream_job(work, FakeContext(), "job", poll_interval=0.01)
    assert next(events) == ("event", 1)
    events.close()
    assert stopped.wait(5)
