"""Run a long job in a thread and stream what it emits to the caller.

A server-streaming RPC whose work takes seconds to hours (a fit, an
explanation of many texts) must keep sending progress, notice when its
caller goes away, and stop the work then::

    def work(emit, should_stop):
        for i, part in enumerate(parts):
            if should_stop():
                raise Cancelled("the fit was cancelled")
            emit(Progress(done=i, total=len(parts)))
        return model

    for kind, value in stream_job(work, context, "the fit"):
        if kind == "event":
            yield Response(progress=value)
        else:                       # "result": the work's return value, last
            yield Response(model=encode(value))

Exceptions of the work are raised in the consumer's thread (so
``map_errors`` reports them). When the call ends for any reason (cancelled,
deadline passed, the consumer stopped), ``should_stop()`` turns true and
``on_stop`` is called once (e.g. to cancel requests in flight downstream);
if the caller is gone, :class:`Cancelled` is raised, which ``map_errors``
ends quietly.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from .errors import Cancelled

__all__ = ["Emit", "ShouldStop", "stream_job"]

Emit = Callable[[Any], None]
ShouldStop = Callable[[], bool]

_DONE = object()


def stream_job(work: Callable[[Emit, ShouldStop], Any], context: grpc.ServicerContext, name: str, *,
               on_stop: Callable[[], None] | None = None, poll_interval: float = 0.5,
               join_seconds: float = 30.0) -> Iterator[tuple[str, Any]]:
    """Run ``work(emit, should_stop)`` in a thread; yield ``("event", x)``
    for every ``emit(x)`` as it happens, then ``("result", value)``."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    stopped_once = threading.Lock()

    def halt() -> None:
        if stopped_once.acquire(blocking=False):
            stop.set()
            if on_stop is not None:
                on_stop()

    context.add_callback(halt)  # the call ended: nothing more to compute

    def should_stop() -> bool:
        return stop.is_set() or not context.is_active()

    def run() -> None:
        try:
            result = work(events.put, should_stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            events.put((_DONE, exc, None))
        else:
            events.put((_DONE, None, result))

    thread = threading.Thread(target=run, name=f"job-{name}", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = events.get(timeout=poll_interval)
            except queue.Empty:
                if not context.is_active():
                    halt()
                    thread.join(join_seconds)  # it notices should_stop at its next check
                    raise Cancelled(f"{name} was cancelled") from None
                continue
            if isinstance(item, tuple) and len(item) == 3 and item[0] is _DONE:
                if not context.is_active():  # the work saw should_stop: nobody waits for its result
                    raise Cancelled(f"{name} was cancelled")
                if item[1] is not None:
                    raise item[1]
                yield "result", item[2]
                return
            yield "event", item
    finally:
        halt()
