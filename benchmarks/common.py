"""Shared pieces of the benchmarks: timing, the seed inputs, result rows."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SEED_PROMPT = "Alice and Bob enter the bar, "
SEED_TARGET = "then Alice offers a drink to Bob."

_SUBJECTS = ["I", "My sister", "The old man", "Our team", "She", "The children", "My best friend", "He",
             "The neighbours", "Everyone at work"]
_FEELINGS = ["felt so happy about the news", "was furious when the train was late again",
             "is scared of the dark forest", "cried quietly after the goodbye", "was amazed by the fireworks",
             "loves the smell of fresh bread", "feels nervous before the exam", "laughed at the silly joke",
             "got angry at the rude driver", "was surprised by the party", "misses the summer by the sea",
             "is worried about the storm", "felt calm by the lake", "hated the cold soup",
             "was thrilled to win the match", "felt lonely in the big city", "trembled at the loud thunder",
             "smiled at the tiny puppy", "was shocked by the price", "adores the quiet mornings"]


def sample_texts(n: int) -> list[str]:
    """n short, varied English sentences (deterministic)."""
    return [f"{_SUBJECTS[i % len(_SUBJECTS)]} {_FEELINGS[(i * 7 + i // len(_SUBJECTS)) % len(_FEELINGS)]}."
            for i in range(n)]


def best_of(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `repeat` runs after `warmup` runs (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


@dataclass
class Row:
    name: str
    floor_s: float | None
    xaimesh_s: float
    reference_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return self.xaimesh_s / self.floor_s if self.floor_s else None

    @property
    def reference_ratio(self) -> float | None:
        return self.reference_s / self.xaimesh_s if self.reference_s else None


def scrape_metric(metrics_port: int, pattern: str) -> float:
    """Sum of the samples on a local service's /metrics whose line starts with
    the regular expression `pattern` (0 when none does)."""
    import re
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r"^" + pattern + r"[^\n]* ([0-9.e+]+)$", text, re.M))


def threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))


def print_rows_on_default_model(run: Callable[[object], list[Row]]) -> None:
    """`python -m benchmarks.<one>`: run(the embedded default model's path) printed as make bench's table."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import torch

    from benchmarks.run_all import table
    from xaimesh_model_server.loading import embedded_default_path

    torch.set_num_threads(threads())
    print(table(run(embedded_default_path())))


def recording_backend(loaded):
    """The model-server engine as an attribution backend (the tests' helper)
    whose Score calls are recorded, not run: `.sent` holds (input ids, token
    keep-masks [n, L], target positions) per call in the order sent, and the
    scores returned are random (seeded by the call's number). What a method
    sends does not depend on the scores, except a metric's order, which the
    caller sets."""
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit" / "attribution"))
    from attr_backends import EngineBackend

    class Recording(EngineBackend):
        def __init__(self, model) -> None:
            super().__init__(model)
            self.sent: list[tuple[np.ndarray, np.ndarray, list[int]]] = []

        def score(self, input_ids, keep_mask, replacement, *, target_positions=None, **_):
            self.sent.append((np.asarray(input_ids), np.asarray(keep_mask, bool), list(target_positions)))
            return np.random.default_rng(len(self.sent)).random((len(keep_mask), len(target_positions)))

    return Recording(loaded)
