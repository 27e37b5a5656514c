"""A bounded thread pool that yields results as they complete."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Callable, Iterable, Iterator, TypeVar

from xaimesh_runtime.errors import Cancelled

T = TypeVar("T")
R = TypeVar("R")

_POLL_SECONDS = 0.05


def run_bounded(
    items: Iterable[T],
    fn: Callable[[T], R],
    max_concurrency: int,
    should_stop: Callable[[], bool] | None = None,
    thread_name_prefix: str = "labeling",
) -> Iterator[R]:
    """Runs ``fn(item)`` with at most ``max_concurrency`` calls in flight and
    yields each result as soon as it is ready (completion order). ``fn`` should
    not raise; if it does, the exception propagates to the consumer. When
    ``should_stop()`` turns true, nothing new starts, queued work is dropped
    and ``Cancelled`` is raised (calls already running finish in the
    background, their results discarded). Closing the iterator early does the
    same without raising."""
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be >= 1")
    stop = should_stop or (lambda: False)
    pending_items = iter(items)
    executor = cf.ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix=thread_name_prefix)
    in_flight: set[cf.Future] = set()
    exhausted = False
    try:
        while True:
            if stop():
                raise Cancelled("labeling was cancelled")
            while not exhausted and len(in_flight) < max_concurrency:
                try:
                    item = next(pending_items)
                except StopIteration:
                    exhausted = True
                    break
                in_flight.add(executor.submit(fn, item))
            if not in_flight:
                return
            done, in_flight = cf.wait(in_flight, timeout=_POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
    finally:
        for fut in in_flight:
            fut.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
