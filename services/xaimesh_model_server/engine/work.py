"""Work kinds, the registry from kind to runner, and the executors.

A request becomes *items* of one *work kind*: a frozen (hashable) dataclass
such as `ScoreWork(task)`; items of equal kinds may share a forward pass.
Each kind module registers the function that runs a batch of its items::

    @runs(ScoreWork)
    def run_score(loaded, kind, items, limits) -> list[result]: ...

`run_rows(loaded, kind, payloads)` is the executor's runner: it looks the
kind's runner up in `RUNNERS`. A runner takes `loaded.lock` itself, so two
forwards never run on one model at the same time.

A kind also tells the batcher how its items batch (class attributes read
by `batching.DynamicBatcher`): `max_batch_size` (items per batch, None =
the batcher's), `length_classes` (False: every length shares one queue,
e.g. left-padded generation) and `yields` (True: after a batch of this kind
the batcher serves other waiting kinds first, so long work cannot hold the
worker batch after batch).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from ..batching import DirectExecutor, DynamicBatcher
from ..loading import LoadedModel
from .limits import DEFAULT_LIMITS, Limits


@dataclass(frozen=True)
class WorkKind:
    """Base of the work kinds; `str(kind)` is its metrics label."""

    label: ClassVar[str] = "work"
    max_batch_size: ClassVar[int | None] = None
    length_classes: ClassVar[bool] = True
    yields: ClassVar[bool] = False

    def __str__(self) -> str:
        return self.label


Runner = Callable[[LoadedModel, Any, list[Any], Limits], list[Any]]

# Work kind class -> the function that runs one batch of its items.
RUNNERS: dict[type[WorkKind], Runner] = {}


def runs(kind: type[WorkKind]) -> Callable[[Runner], Runner]:
    """Registers the decorated function as the runner of `kind`."""

    def register(fn: Runner) -> Runner:
        RUNNERS[kind] = fn
        return fn

    return register


def run_rows(loaded: LoadedModel, kind: WorkKind, payloads: list[Any], *, limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    """The executor runner: one batch of items of one kind -> one result per item."""
    return RUNNERS[type(kind)](loaded, kind, payloads, limits)


def _runner(loaded: LoadedModel, limits: Limits):
    return functools.partial(run_rows, loaded, limits=limits)


def get_executor(loaded: LoadedModel, executor: Any = None, limits: Limits | None = None) -> Any:
    """The executor to use: the given one, the model's, or a DirectExecutor."""
    if executor is not None:
        return executor
    if loaded.executor is not None:
        return loaded.executor
    limits = limits or DEFAULT_LIMITS
    return DirectExecutor(
        _runner(loaded, limits), max_batch_tokens=limits.max_batch_tokens, max_batch_size=limits.max_batch_size
    )


def make_dynamic_batcher(loaded: LoadedModel, *, limits: Limits | None = None, **options: Any) -> DynamicBatcher:
    """A DynamicBatcher whose runner is run_rows(loaded); options go to DynamicBatcher."""
    return DynamicBatcher(_runner(loaded, limits or DEFAULT_LIMITS), name=loaded.model_id, **options)


def attach_dynamic_batcher(loaded: LoadedModel, *, limits: Limits | None = None, **options: Any) -> DynamicBatcher:
    """Makes the model's calls go through a new DynamicBatcher (returned)."""
    batcher = make_dynamic_batcher(loaded, limits=limits, **options)
    loaded.executor = batcher
    return batcher
