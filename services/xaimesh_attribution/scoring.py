"""Scoring element keep-masks: the one place perturbation methods and
metrics meet the model-server's Score.

Every perturbation is ONE teacher-forced forward that scores every target
(all target tokens of a generation, or all target classes): masks are
expanded to token keep-masks and sent to `backend.score` in batches of
`batch_size` rows, with progress reported and `should_stop` honoured between
batches. Identical masks are scored once, and masks are sent in element
(token) order, so that rows scored together have long common prefixes.

Row sub-games. Row t is attributed over the elements it covers, C_t (see
elements.py); its value at an element mask m is f_t(m restricted to C_t,
every other element kept). A forward of m itself gives that value whenever
m keeps row t's own target element, or when that element is a single token
(a token's teacher-forced score does not depend on the token itself, and a
causal model's score of element t does not depend on later elements) —
except under the REMOVE replacement, where a removed target token cannot be
scored. Otherwise (a multi-token target element masked out by m: its own
earlier tokens would be replaced while its later tokens are scored) the
engine scores the canonical mask "m on C_t, everything else kept" in an
extra forward. Methods that sample masks independently per element use only
the valid (mask, row) pairs instead (`valid()`), which keeps the sampling
distribution of each row's sub-game intact at no extra cost.

Pipelining. A backend with `max_in_flight` > 1 (the gRPC model client:
4) gets that many Score requests at once, from a small thread pool, so the
model-server's batcher has work queued behind the batch it is running.
Batches are consumed in order, so results, the cache and progress are those
of sequential scoring; `should_stop` is polled before each batch is sent,
and on any exit the batches not yet started are dropped (the backend's
`cancel()`, called when the call ends, cancels those in flight).

REMOVE (the model-server drops masked tokens and remaps target positions; a
removed target token cannot be scored): rows of a batch that keep the same
target tokens go in one Score request that asks for those targets only. A
mask that leaves no token before the first target is an InvalidArgument.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from xaimesh_runtime.errors import Cancelled, InvalidArgument

from .backend import ModelBackend, Replacement
from .elements import Problem
from .options import InferenceMode

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]


def check_stop(should_stop: StopFn | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("the attribution was cancelled")


class MaskScorer:
    def __init__(
        self,
        backend: ModelBackend,
        problem: Problem,
        replacement: Replacement,
        inference_mode: InferenceMode,
        *,
        batch_size: int = 32,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        stage: str = "scoring",
        max_in_flight: int | None = None,
    ) -> None:
        self.backend = backend
        self.problem = problem
        self.replacement = replacement
        self.mode = inference_mode
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.should_stop = should_stop
        self.stage = stage
        depth = getattr(backend, "max_in_flight", 1) if max_in_flight is None else max_in_flight
        self.max_in_flight = max(1, int(depth or 1))
        self._cache: dict[bytes, np.ndarray] = {}
        self.n_forwards = 0  # sequences sent to the backend so far
        p = problem
        if p.is_generation:
            single = p.element_sizes()[p.row_element] == 1
            self.self_independent = single & (replacement.policy != "remove")
        else:
            self.self_independent = np.ones(p.n_rows, dtype=bool)

    # ------------------------------------------------------------ validity

    def valid(self, masks: np.ndarray) -> np.ndarray:
        """bool [n, T]: whether the forward of each mask gives each row's
        sub-game value directly."""
        masks = np.asarray(masks, dtype=bool)
        p = self.problem
        if not p.is_generation:
            return np.ones((masks.shape[0], p.n_rows), dtype=bool)
        return masks[:, p.row_element] | self.self_independent[None, :]

    def canonical(self, mask: np.ndarray, row: int) -> np.ndarray:
        """The mask restricted to row's covered elements, all others kept."""
        c = np.asarray(mask, dtype=bool).copy()
        c[~self.problem.coverage[row]] = True
        return c

    # ------------------------------------------------------------ scoring

    def evaluate(self, masks: np.ndarray, need: np.ndarray | None = None) -> np.ndarray:
        """Row sub-game values float64 [n, T] of element masks bool [n, E];
        entries not in `need` (bool [n, T], default all) are NaN."""
        masks = np.asarray(masks, dtype=bool)
        n, T = masks.shape[0], self.problem.n_rows
        need = np.ones((n, T), dtype=bool) if need is None else np.asarray(need, dtype=bool)
        out = np.full((n, T), np.nan)
        if n == 0 or not need.any():
            return out
        valid = self.valid(masks)
        order: dict[bytes, int] = {}  # forward key -> index in `todo`
        todo: list[np.ndarray] = []

        def key_of(m: np.ndarray) -> bytes:
            k = np.packbits(m).tobytes()
            if k not in self._cache and k not in order:
                order[k] = len(todo)
                todo.append(m)
            return k

        plan: list[tuple[int, int, bytes]] = []
        for k in range(n):
            rows = np.flatnonzero(need[k])
            if not len(rows):
                continue
            direct = rows[valid[k, rows]]
            if len(direct):
                key = key_of(masks[k])
                plan.extend((k, t, key) for t in direct)
            for t in rows[~valid[k, rows]]:
                plan.append((k, int(t), key_of(self.canonical(masks[k], int(t)))))
        # in element order, which is token order: rows sent together then share their leading tokens,
        # which the model-server runs once (its engine/prefix.py)
        keys = sorted(order)
        self._run([todo[order[k]] for k in keys], keys)
        for k, t, key in plan:
            out[k, t] = self._cache[key][t]
        return out

    def full_scores(self) -> np.ndarray:
        """float64 [T]: the rows' scores on the unperturbed input."""
        return self.evaluate(np.ones((1, self.problem.n_elements), dtype=bool))[0]

    def _run(self, todo: list[np.ndarray], keys: list[bytes]) -> None:
        total = len(todo)
        if not total:
            return
        p = self.problem
        done = 0
        if self.progress is not None:
            self.progress(0, total, self.stage)

        def score(start: int) -> np.ndarray:
            batch = np.stack(todo[start : start + self.batch_size])
            return p.combine(self._score(p.token_keep(batch)), self.mode)

        def store(start: int, rows: np.ndarray) -> None:
            nonlocal done
            for j in range(len(rows)):
                self._cache[keys[start + j]] = rows[j]
            done += len(rows)
            self.n_forwards += len(rows)
            if self.progress is not None:
                self.progress(done, total, self.stage)

        starts = iter(range(0, total, self.batch_size))
        if self.max_in_flight == 1 or total <= self.batch_size:
            for start in starts:
                check_stop(self.should_stop)
                store(start, score(start))
        else:
            pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="attribution-score")
            pending: deque = deque()
            try:
                exhausted = False
                while True:
                    while not exhausted and len(pending) < self.max_in_flight:
                        start = next(starts, None)
                        if start is None:
                            exhausted = True
                            break
                        check_stop(self.should_stop)
                        pending.append((start, pool.submit(score, start)))
                    if not pending:
                        break
                    start, future = pending.popleft()
                    store(start, future.result())
            finally:
                for _, future in pending:
                    future.cancel()
                pool.shutdown(wait=False, cancel_futures=True)
        check_stop(self.should_stop)

    def _score(self, keep: np.ndarray) -> np.ndarray:
        """Scored columns float64 [n, n_cols] of token keep-masks [n, L]."""
        p = self.problem
        ids = [int(i) for i in p.input_ids]
        if p.target_positions is None:
            if self.replacement.policy == "remove":
                self._check_remove(keep)
            raw = self.backend.score(
                ids,
                keep,
                self.replacement,
                target_classes=[int(c) for c in p.target_classes],
                inference_mode=self.mode.value,
            )
            return self._checked(raw, len(keep), len(p.target_classes))
        positions = p.target_positions
        if self.replacement.policy == "remove":
            self._check_remove(keep)
        if self.replacement.policy != "remove":
            raw = self.backend.score(
                ids,
                keep,
                self.replacement,
                target_positions=[int(i) for i in positions],
                inference_mode=self.mode.value,
                source_length=p.source_length,
            )
            return self._checked(raw, len(keep), len(positions))
        # REMOVE: a removed token cannot be scored, so each group of rows that
        # keeps the same target tokens asks for those only (the others are NaN:
        # no row's value is read from a forward that removes its own tokens).
        out = np.full((len(keep), len(positions)), np.nan)
        kept = keep[:, positions]
        patterns, inverse = np.unique(kept, axis=0, return_inverse=True)
        for k, pattern in enumerate(patterns):
            cols = np.flatnonzero(pattern)
            rows = np.flatnonzero(inverse.reshape(-1) == k)
            if not len(cols):
                continue
            raw = self.backend.score(
                ids,
                keep[rows],
                self.replacement,
                target_positions=[int(i) for i in positions[cols]],
                inference_mode=self.mode.value,
                source_length=p.source_length,
            )
            out[np.ix_(rows, cols)] = self._checked(raw, len(rows), len(cols))
        return out

    def _check_remove(self, keep: np.ndarray) -> None:
        """REMOVE cannot score a sequence with nothing left before a target."""
        p = self.problem
        first = int(p.target_positions[0]) if p.target_positions is not None else len(p.input_ids)
        if not keep[:, :first].any(axis=1).all():
            raise InvalidArgument(
                "the REMOVE replacement would remove every token of the prompt, leaving nothing to score the "
                "targets from (this method scores the empty coalition / fully removed input): use another "
                "replacement (pad_token, zero_embedding...), or a model whose tokenizer adds a BOS token with "
                "TOKEN / WORD / SENTENCE granularity (special tokens are never removed)",
                field="parameters.replacement.policy",
            )

    @staticmethod
    def _checked(raw: np.ndarray, n: int, t: int) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if raw.shape != (n, t):
            raise RuntimeError(f"backend.score returned shape {raw.shape} for {n} sequences x {t} targets")
        return raw


__all__ = ["MaskScorer", "check_stop", "ProgressFn", "StopFn"]
