"""Executors: where the engine's row-level work runs.

The engine turns every request into *items* (one sequence-level unit of work,
e.g. one row of a score request) of a hashable *kind* (items of the same kind
can share a forward pass) and hands them to an executor together with each
item's length in tokens. The executor packs items into batches and calls a
*runner* `runner(kind, payloads) -> results` (one result per payload, in
order) that does one forward pass.

- `DirectExecutor` packs one caller's items in the calling thread.
- `DynamicBatcher` owns one worker thread per model (torch runs one forward
  at a time anyway) and coalesces the items of many concurrent callers:
  items of the same kind and a similar length (the same length up to 16
  tokens, above that length classes whose bounds grow by 2^(1/8), so padding
  adds at most 9 %) go into one forward, bounded by a token budget
  (`max_batch_tokens`, counted as padded tokens: longest item x items) and
  `max_batch_size`; a batch that is not full waits at most `max_wait_s` after
  its oldest item arrived for more items. A caller's long request is split
  across batches, and it is fed to the queue in windows of `window_items`.
  Results go back to each caller through futures.

  Fairness across callers. A *caller* is whoever the items are for: the
  `is_active` callback a request passes stands for it (callbacks that
  compare equal are one caller: the model-server passes the gRPC call's
  `context.is_active`, or a `Caller` keyed by the request's `xaimesh-caller`
  metadata, which the attribution-service sets to one key per explanation);
  a request without a callback is a caller of its own. Callers take turns:
  each batch is anchored on the oldest item of the caller served least
  recently, and filled from the items of that kind and length class one item
  per caller in turn, starting with the anchor's caller. So a caller with a
  20x larger job gets one share of the forwards, like everybody else, and a
  small job alongside it finishes after about (its items x callers) rows,
  not after the whole large job. With one caller this is arrival order.

  Admission control: the queue holds at most `max_queue_items` items; a new
  request that does not fit raises `ResourceExhausted` (the remaining windows
  of a request already admitted are always accepted). A caller passes an
  `is_active()` callable (e.g. grpc's `context.is_active`); when it turns
  false, the caller gets `Cancelled` and its queued items are dropped.

Kinds may carry batching hints as attributes (`engine.work.WorkKind`;
plain hashable kinds get the defaults): `max_batch_size` (items per batch,
at most the executor's; None = the executor's), `length_classes` (False:
every length shares one queue, for left-padded generation; the token budget
still bounds the batch) and `yields` (True: after a batch of that kind, the
oldest waiting item of *another* kind is served first, so a kind whose
batches take long, generation, cannot hold the worker batch after batch
while other callers wait; it still runs every other batch).

Metrics: `on_batch(BatchStats)` after each batch and `on_queue_wait(seconds)`
for each item when it leaves the queue; `queue_depth()` for a gauge.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

from xaimesh_runtime.errors import Cancelled, ResourceExhausted

log = logging.getLogger(__name__)

Runner = Callable[[Hashable, list[Any]], list[Any]]
IsActive = Callable[[], bool] | None

_POLL_S = 0.05


# Padded positions are not free on any device (on a 2-core CPU, layer-8
# activations of 200 texts of 6-12 tokens: 2.74 s batched in arrival order,
# 1.84 s batched by exact length), so items of one forward have the same
# length where lengths are short and within 2^(1/8) of each other above.
_EXACT_UP_TO = 16
_CLASSES_PER_OCTAVE = 8


def length_bucket(length: int) -> int:
    """Length class: the length itself up to 16 tokens; above, classes whose
    bounds grow by 2^(1/8) (padding adds at most 9 %)."""
    if length <= _EXACT_UP_TO:
        return length
    return _EXACT_UP_TO + 1 + int(_CLASSES_PER_OCTAVE * math.log2(length / _EXACT_UP_TO))


def max_items(kind: Hashable, max_batch_size: int) -> int:
    """Items per batch of `kind`: its own `max_batch_size` hint, at most the executor's."""
    own = getattr(kind, "max_batch_size", None)
    return min(max_batch_size, int(own)) if own else max_batch_size


def uses_length_classes(kind: Hashable) -> bool:
    """Whether items of `kind` are grouped by length class (the default)."""
    return bool(getattr(kind, "length_classes", True))


def plan_batches(
    lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int, *, length_classes: bool = True
) -> list[list[int]]:
    """Indices grouped into batches: sorted by length, one length class per
    batch (unless not `length_classes`), each batch's padded size (longest x
    count) within the budget (a single longer item goes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = max(longest, lengths[i])
        if current and (size * (len(current) + 1) > max_batch_tokens or len(current) >= max_batch_size
                        or (length_classes
                            and length_bucket(lengths[i]) != length_bucket(lengths[current[0]]))):
            batches.append(current)
            current, longest = [], 0
            size = lengths[i]
        current.append(i)
        longest = size
    if current:
        batches.append(current)
    return batches


def _check_active(is_active: IsActive) -> None:
    if is_active is not None and not is_active():
        raise Cancelled("the call was cancelled by the client")


@dataclass
class BatchStats:
    """What one batch did (for metrics)."""

    kind: str
    items: int
    tokens: int  # real tokens
    padded_tokens: int  # longest x items
    callers: int  # distinct requests merged
    queue_wait_s: float  # longest wait of an item in the batch
    run_s: float


class Handle:
    """Results of a submission; `result()` waits for all of them, in order."""

    def __init__(self, results: list[Any] | None = None, error: BaseException | None = None) -> None:
        self._results = results
        self._error = error

    def result(self, timeout: float | None = None) -> list[Any]:
        if self._error is not None:
            raise self._error
        assert self._results is not None
        return self._results

    def cancel(self) -> None:
        pass


class DirectExecutor:
    """Runs items in the calling thread, packed by length and token budget."""

    def __init__(
        self,
        runner: Runner,
        *,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 256,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.runner = runner
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.on_batch = on_batch

    def run(self, kind: Hashable, payloads: Sequence[Any], lengths: Sequence[int], *, is_active: IsActive = None) -> list[Any]:
        results: list[Any] = [None] * len(payloads)
        for batch in plan_batches(lengths, self.max_batch_tokens, max_items(kind, self.max_batch_size),
                                  length_classes=uses_length_classes(kind)):
            _check_active(is_active)
            start = time.perf_counter()
            out = self.runner(kind, [payloads[i] for i in batch])
            for i, r in zip(batch, out):
                results[i] = r
            if self.on_batch is not None:
                longest = max(lengths[i] for i in batch)
                self.on_batch(
                    BatchStats(_kind_name(kind), len(batch), sum(lengths[i] for i in batch),
                               longest * len(batch), 1, 0.0, time.perf_counter() - start)
                )
        return results

    def submit(
        self, kind: Hashable, payloads: Sequence[Any], lengths: Sequence[int], *, is_active: IsActive = None,
        admitted: bool = False,
    ) -> Handle:
        """Runs the items now; errors are raised by Handle.result()."""
        try:
            return Handle(self.run(kind, payloads, lengths, is_active=is_active))
        except BaseException as exc:  # delivered by result(), like a future
            return Handle(error=exc)

    def queue_depth(self) -> int:
        return 0

    def close(self) -> None:
        pass


def _kind_name(kind: Hashable) -> str:
    if isinstance(kind, tuple) and kind:
        return str(kind[0])
    return str(kind)


@dataclass(frozen=True)
class Caller:
    """An `is_active` callback that names the caller it stands for: two
    `Caller`s with the same `key` are one caller for the batcher's turns."""

    key: Hashable
    is_active: Callable[[], bool] = field(compare=False)

    def __call__(self) -> bool:
        return self.is_active()


class _Ticket:
    __slots__ = ("is_active", "caller", "cancelled", "keys")

    def __init__(self, is_active: IsActive) -> None:
        self.is_active = is_active
        self.caller: Hashable = is_active if is_active is not None else self
        self.cancelled = False
        self.keys: set[tuple] = set()

    def active(self) -> bool:
        if self.cancelled:
            return False
        if self.is_active is not None:
            try:
                return bool(self.is_active())
            except Exception:  # a broken callback must not kill the worker
                return True
        return True


class _Item:
    __slots__ = ("seq", "key", "kind", "payload", "length", "future", "ticket", "enqueued")

    def __init__(self, seq, key, kind, payload, length, ticket) -> None:
        self.seq = seq
        self.key = key
        self.kind = kind
        self.payload = payload
        self.length = length
        self.future: Future = Future()
        self.ticket = ticket
        self.enqueued = time.perf_counter()


class _DynamicHandle(Handle):
    def __init__(self, batcher: "DynamicBatcher", futures: list[Future], ticket: _Ticket) -> None:
        super().__init__()
        self._batcher = batcher
        self._futures = futures
        self._ticket = ticket

    def result(self, timeout: float | None = None) -> list[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for fut in self._futures:
            out.append(self._batcher._wait(fut, self._ticket, deadline))
        return out

    def cancel(self) -> None:
        self._batcher._cancel(self._ticket)


class DynamicBatcher:
    """Cross-request dynamic batching on one worker thread (see module doc)."""

    def __init__(
        self,
        runner: Runner,
        *,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 256,
        max_wait_s: float = 0.002,
        max_queue_items: int = 16384,
        window_items: int = 1024,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_queue_wait: Callable[[float], None] | None = None,
        name: str = "model",
    ) -> None:
        self.runner = runner
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_items = max_queue_items
        self.window_items = max(1, window_items)
        self.on_batch = on_batch
        self.on_queue_wait = on_queue_wait
        self.name = name
        self._cv = threading.Condition()
        # (kind, length class) -> caller -> that caller's items, oldest first
        self._queues: dict[tuple, dict[Hashable, deque[_Item]]] = {}
        self._queued = 0
        self._seq = itertools.count()
        # caller -> when it last anchored a batch (or arrived): the least recent goes next
        self._last_turn: dict[Hashable, int] = {}
        self._turns = itertools.count()
        self._closed = False
        # The kind of the last batch taken, when it yields to other kinds.
        self._yielding: Hashable | None = None
        self.batches_run = 0
        self.items_run = 0
        self._worker = threading.Thread(target=self._loop, name=f"xaimesh-batcher-{name}", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ callers

    def queue_depth(self) -> int:
        return self._queued

    def submit(
        self,
        kind: Hashable,
        payloads: Sequence[Any],
        lengths: Sequence[int],
        *,
        is_active: IsActive = None,
        admitted: bool = False,
        _ticket: _Ticket | None = None,
    ) -> Handle:
        """Queues items; Handle.result() waits for their results, in order.

        Raises ResourceExhausted when the queue is full, unless `admitted`
        (the items continue a request that was already accepted).
        """
        if len(payloads) != len(lengths):
            raise ValueError("payloads and lengths differ in length")
        ticket = _ticket or _Ticket(is_active)
        with self._cv:
            if self._closed:
                raise ResourceExhausted("the model-server is shutting down; retry on another replica")
            if not admitted and self._queued > 0 and self._queued + len(payloads) > self.max_queue_items:
                raise ResourceExhausted(
                    f"model-server queue is full ({self._queued} items queued, limit "
                    f"{self.max_queue_items}); retry with backoff"
                )
            futures = []
            for payload, length in zip(payloads, lengths):
                key = (kind, length_bucket(int(length)) if uses_length_classes(kind) else 0)
                item = _Item(next(self._seq), key, kind, payload, int(length), ticket)
                self._queues.setdefault(key, {}).setdefault(ticket.caller, deque()).append(item)
                ticket.keys.add(key)
                futures.append(item.future)
            self._queued += len(payloads)
            # a caller new to the queue takes its turn after those already waiting
            self._last_turn.setdefault(ticket.caller, next(self._turns))
            self._cv.notify()
        return _DynamicHandle(self, futures, ticket)

    def run(self, kind: Hashable, payloads: Sequence[Any], lengths: Sequence[int], *, is_active: IsActive = None) -> list[Any]:
        """Submits the items (in windows) and waits for all results, in order."""
        n = len(payloads)
        if n == 0:
            return []
        _check_active(is_active)
        ticket = _Ticket(is_active)
        w = self.window_items
        windows = [(i, min(n, i + w)) for i in range(0, n, w)]
        handles: deque[tuple[int, Handle]] = deque()
        results: list[Any] = [None] * n
        next_window = 0
        try:
            while next_window < len(windows) or handles:
                # keep two windows in flight so the worker never starves
                while next_window < len(windows) and len(handles) < 2:
                    a, b = windows[next_window]
                    handles.append((a, self.submit(kind, payloads[a:b], lengths[a:b], _ticket=ticket,
                                                   admitted=next_window > 0)))
                    next_window += 1
                a, handle = handles.popleft()
                for j, r in enumerate(handle.result()):
                    results[a + j] = r
        except BaseException:
            self._cancel(ticket)
            raise
        return results

    def _wait(self, fut: Future, ticket: _Ticket, deadline: float | None) -> Any:
        while True:
            timeout = _POLL_S
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()))
            try:
                return fut.result(timeout=timeout)
            except FutureTimeout:
                pass
            except CancelledError:
                raise Cancelled("the call was cancelled by the client") from None
            if not ticket.active():
                self._cancel(ticket)
                raise Cancelled("the call was cancelled by the client")
            if deadline is not None and time.monotonic() >= deadline:
                self._cancel(ticket)
                raise Cancelled("the call ran past its deadline")

    def _cancel(self, ticket: _Ticket) -> None:
        """Drops the ticket's queued items (a batch already running finishes)."""
        with self._cv:
            ticket.cancelled = True
            for key in list(ticket.keys):
                per_caller = self._queues.get(key, {})
                queue = per_caller.get(ticket.caller)
                if not queue:
                    continue
                kept = deque(item for item in queue if item.ticket is not ticket)
                dropped = len(queue) - len(kept)
                for item in queue:
                    if item.ticket is ticket:
                        item.future.cancel()
                self._queued -= dropped
                if kept:
                    per_caller[ticket.caller] = kept
                else:
                    del per_caller[ticket.caller]
                    if not per_caller:
                        del self._queues[key]

    def close(self, wait: bool = True) -> None:
        """Stops the worker after the queued work is done."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if wait and self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join()

    def __enter__(self) -> "DynamicBatcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ worker

    def _take_batch(self) -> list[_Item] | None:
        """Under the lock: the next batch, or None (wait, then retry)."""
        heads = self._waiting_heads()
        if not heads:
            return None
        if self._yielding is not None:  # after a batch of a yielding kind, another kind first
            others = {c: [i for i in items if i.kind != self._yielding] for c, items in heads.items()}
            heads = {c: items for c, items in others.items() if items} or heads
        caller = min(heads, key=self._last_turn.__getitem__)
        anchor = min(heads[caller], key=lambda item: item.seq)
        per_caller = self._queues[anchor.key]
        order = [caller] + sorted((c for c in per_caller if c != caller), key=self._last_turn.__getitem__)
        taken, full = self._fill(anchor, [per_caller[c] for c in order])
        if not full and not self._closed and time.perf_counter() < anchor.enqueued + self.max_wait_s:
            return None  # wait a little for other callers
        batch = []
        for c, n in zip(order, taken):
            queue = per_caller[c]
            batch += [queue.popleft() for _ in range(n)]
            if not queue:
                del per_caller[c]
        if not per_caller:
            del self._queues[anchor.key]
        self._queued -= len(batch)
        self._last_turn[caller] = next(self._turns)
        self._yielding = anchor.kind if getattr(anchor.kind, "yields", False) else None
        return batch

    def _waiting_heads(self) -> dict[Hashable, list[_Item]]:
        """Under the lock: each waiting caller's oldest item per queue, after
        dropping cancelled items at the heads; callers with nothing left
        lose their turn history."""
        heads: dict[Hashable, list[_Item]] = {}
        for key in list(self._queues):
            per_caller = self._queues[key]
            for caller in list(per_caller):
                queue = per_caller[caller]
                while queue and queue[0].ticket.cancelled:
                    queue.popleft().future.cancel()
                    self._queued -= 1
                if queue:
                    heads.setdefault(caller, []).append(queue[0])
                else:
                    del per_caller[caller]
            if not per_caller:
                del self._queues[key]
        for caller in [c for c in self._last_turn if c not in heads]:
            del self._last_turn[caller]
        return heads

    def _fill(self, anchor: _Item, queues: list[deque[_Item]]) -> tuple[list[int], bool]:
        """How many items to take from each caller's queue (the anchor's
        first), one per caller in turn, within the token budget and the
        kind's batch size; and whether the batch is full."""
        limit = max_items(anchor.kind, self.max_batch_size)
        taken = [0] * len(queues)
        count = longest = 0
        while True:
            progressed = False
            for i, queue in enumerate(queues):
                if taken[i] >= len(queue):
                    continue
                size = max(longest, queue[taken[i]].length)
                if count and (size * (count + 1) > self.max_batch_tokens or count >= limit):
                    return taken, True
                taken[i] += 1
                count += 1
                longest = size
                progressed = True
            if not progressed:
                return taken, count >= limit

    def _next_deadline(self) -> float:
        oldest = min((q[0].enqueued for per_caller in self._queues.values() for q in per_caller.values() if q),
                     default=None)
        if oldest is None:
            return 1.0
        return max(0.0, oldest + self.max_wait_s - time.perf_counter())

    def _loop(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._queued == 0:
                        if self._closed:
                            return
                        self._cv.wait()
                        continue
                    batch = self._take_batch()
                    if batch is not None:
                        break
                    if self._queued == 0:
                        continue
                    self._cv.wait(timeout=max(self._next_deadline(), 1e-4))
            self._execute(batch)

    def _execute(self, batch: list[_Item]) -> None:
        now = time.perf_counter()
        live = []
        for item in batch:
            if not item.ticket.active():
                item.future.cancel()
                continue
            if not item.future.set_running_or_notify_cancel():
                continue
            live.append(item)
        if not live:
            return
        waits = [now - item.enqueued for item in live]
        if self.on_queue_wait is not None:
            for w in waits:
                _safe(self.on_queue_wait, w)
        kind = live[0].kind
        start = time.perf_counter()
        try:
            results = self._run_split(kind, live)
        except BaseException as exc:
            for item in live:
                item.future.set_exception(exc)
        else:
            for item, result in zip(live, results):
                item.future.set_result(result)
        self.batches_run += 1
        self.items_run += len(live)
        if self.on_batch is not None:
            longest = max(item.length for item in live)
            _safe(
                self.on_batch,
                BatchStats(
                    kind=_kind_name(kind),
                    items=len(live),
                    tokens=sum(item.length for item in live),
                    padded_tokens=longest * len(live),
                    callers=len({id(item.ticket) for item in live}),
                    queue_wait_s=max(waits),
                    run_s=time.perf_counter() - start,
                ),
            )

    def _run_split(self, kind: Hashable, items: list[_Item]) -> list[Any]:
        """Runs the batch; on an out-of-memory error, retries it in halves."""
        try:
            return self.runner(kind, [item.payload for item in items])
        except Exception as exc:
            if len(items) > 1 and _is_oom(exc):
                log.warning("out of memory on a batch of %d items; retrying in halves", len(items))
                half = len(items) // 2
                return self._run_split(kind, items[:half]) + self._run_split(kind, items[half:])
            raise


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _safe(fn: Callable, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # metrics must never break serving
        log.exception("metrics callback failed")
