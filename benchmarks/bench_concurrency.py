"""Many users at once: concurrent clients, each explaining its own prompt.

4 and 8 SDK clients each run KernelShap (SMALL perturbations, Score calls of
BATCH) on a different prompt of the same token length, all at once, through
one attribution-service and one model-server; then 3 such clients alongside
one whose job is LARGE_FACTOR times larger. The floor is bare torch running
every forward of every client back to back (batch 25); a second floor runs
the rows KernelShap really scores (its 32 masks less duplicates, plus its
full coalition and the one all-masked empty coalition of its single-token
target rows: 32-33 rows per client) the same way. Besides the ratio,
each row gives the clients' finish times over their mean (fairness: the goal
is every client within 1.5x of the mean for equal work).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_concurrency   # these rows alone, one run each
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_model_server import BATCH as FLOOR_BATCH
from benchmarks.bench_model_server import _load_bare
from benchmarks.common import Row, best_of, recording_backend, sample_texts

SMALL = 32
BATCH = 8  # rows per Score call: each client has several calls in flight
LARGE_FACTOR = 20
CLIENT_COUNTS = (4, 8)
RATIO_GOAL = 0.81
TARGET = " It stayed with them all day."


def _prompts(tokenizer, n: int) -> list[str]:
    """n different prompts whose prompt + target have the same token count."""
    texts = list(dict.fromkeys(sample_texts(200)))
    lengths = [len(tokenizer(t + TARGET, add_special_tokens=False)["input_ids"]) for t in texts]
    common = statistics.mode(lengths)
    same = [t for t, n_tokens in zip(texts, lengths) if n_tokens == common]
    if len(same) < n:
        raise RuntimeError(f"only {len(same)} sample prompts of {common} tokens; need {n}")
    return same[:n]


def _floor(model, tokenizer, jobs: list[tuple[str, int]]):
    """Every forward of every job back to back: n full forwards of its
    prompt + target with random token masks, batch 25, log-softmax."""
    rng = np.random.default_rng(0)
    prepared = []
    for prompt, n in jobs:
        base = torch.tensor(tokenizer(prompt + TARGET, add_special_tokens=False)["input_ids"])
        prepared.append((base, torch.from_numpy(rng.random((n, len(base))) < 0.5)))
    return _bare_forwards(model, tokenizer.pad_token_id, prepared)


def _scored_floor(model, tokenizer, loaded, jobs: list[tuple[str, int]]):
    """The same, over the rows the clients' KernelShap really scores: its n
    masks (deduplicated) plus the full and empty coalitions, recorded from
    the attribution logic."""
    from xaimesh_attribution import explain

    prepared = []
    for i, (prompt, n) in enumerate(jobs):
        backend = recording_backend(loaded)
        explain(backend, "kernel_shap", {"n_perturbations": n, "seed": i}, prompt, TARGET)
        base = torch.from_numpy(backend.sent[0][0])
        prepared.append((base, torch.from_numpy(np.concatenate([keep for _, keep, _ in backend.sent]))))
    return _bare_forwards(model, tokenizer.pad_token_id, prepared), sum(len(keep) for _, keep in prepared)


def _bare_forwards(model, pad: int, prepared: list[tuple[torch.Tensor, torch.Tensor]]):
    def run():
        with torch.inference_mode():
            for base, keep in prepared:
                for start in range(0, len(keep), FLOOR_BATCH):
                    part = keep[start:start + FLOOR_BATCH]
                    model(torch.where(part, base, torch.full_like(base, pad))).logits.log_softmax(-1)

    return run


def _clients(mesh, jobs: list[tuple[str, int]]) -> list[float]:
    """All jobs at once, one thread each; each one's finish time (s from the start)."""
    from xaimesh import KernelShap

    model = mesh.model()
    explainers = [KernelShap(model, model.tokenizer, n_perturbations=n, batch_size=BATCH, seed=i,
                             show_progress=False) for i, (_, n) in enumerate(jobs)]
    start = threading.Barrier(len(jobs) + 1)
    finished = [0.0] * len(jobs)
    errors: list[BaseException] = []

    def client(i: int) -> None:
        start.wait()
        began = time.perf_counter()
        try:
            explainers[i](model_inputs=jobs[i][0], targets=TARGET)
        except BaseException as exc:  # reported after the join
            errors.append(exc)
        finished[i] = time.perf_counter() - began

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return finished


def _spread(times: list[float]) -> str:
    mean = statistics.fmean(times)
    return f"finish / mean {min(times) / mean:.2f}–{max(times) / mean:.2f}"


def run(mesh, model_path, repeat: int = 3) -> list[Row]:
    from xaimesh_model_server.loading import load_model

    model, tokenizer = _load_bare(model_path)
    loaded = load_model(str(model_path), device="cpu", model_id="floor")  # to record the rows scored
    prompts = _prompts(tokenizer, max(CLIENT_COUNTS))
    rows = []
    for n_clients in CLIENT_COUNTS:
        jobs = [(p, SMALL) for p in prompts[:n_clients]]
        floor_s, _ = best_of(_floor(model, tokenizer, jobs), repeat=repeat)
        scored, n_scored = _scored_floor(model, tokenizer, loaded, jobs)
        scored_s, _ = best_of(scored, repeat=repeat)
        runs: list[list[float]] = []
        total_s, _ = best_of(lambda: runs.append(_clients(mesh, jobs)), repeat=repeat)
        finish = runs[-1]
        rows.append(Row(f"{n_clients} clients at once, each KernelShap {SMALL} perturbations of its own prompt "
                        f"(Score calls of {BATCH})", floor_s, total_s,
                        notes=[f"floor = all {n_clients * SMALL} forwards back to back",
                               f"the {n_scored} rows KernelShap scores (the full and empty coalitions too) back "
                               f"to back: {scored_s:.2f} s, xaimesh / that = {total_s / scored_s:.2f}×",
                               f"goal ≤ {RATIO_GOAL}× (the 4-client ratio measured when issue 15 was filed)",
                               f"last run: {_spread(finish)} (goal ≤ 1.5)"]))
    # One client with a 20x larger job alongside 3 small ones: one run (it is long).
    jobs = [(prompts[0], SMALL * LARGE_FACTOR)] + [(p, SMALL) for p in prompts[1:4]]
    floor_s, _ = best_of(_floor(model, tokenizer, jobs), repeat=1, warmup=0)
    started = time.perf_counter()
    finish = _clients(mesh, jobs)
    total_s = time.perf_counter() - started
    small = finish[1:]
    rows.append(Row(f"3 small clients ({SMALL} perturbations) alongside one {LARGE_FACTOR}× larger "
                    f"({SMALL * LARGE_FACTOR})", floor_s, total_s,
                    notes=[f"small clients: {_spread(small)} (goal ≤ 1.5), done at {statistics.fmean(small):.2f} s "
                           f"mean; the large one at {finish[0]:.2f} s (goal: no small client starves: each done "
                           "well before the large one)", "one run"]))
    return rows


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    import xaimesh
    from benchmarks.common import threads
    from benchmarks.run_all import table
    from xaimesh.local_stack import LocalStack
    from xaimesh_model_server.loading import embedded_default_path

    torch.set_num_threads(threads())
    stack = LocalStack()
    with xaimesh.Mesh(stack.start(), stack=stack) as mesh:
        print(table(run(mesh, embedded_default_path(), repeat=1)))


if __name__ == "__main__":
    main()
