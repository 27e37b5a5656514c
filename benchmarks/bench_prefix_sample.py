"""Shared prefixes on the 300-word rows, in-process, on a sample of each method's rows.

The full rows (`make bench-large`, benchmarks/bench_prefix.py) take hours on a
2-core CPU. This runs the rows the attribution-service really sends for a
WORDS-word prompt with a 20-token target at WORD granularity (Occlusion,
KernelShap with 512 perturbations, Deletion), recorded in the order it sends
them (a recording backend over the model-server engine that returns random
scores; Deletion ranks by a random attribution, i.e. a different order per
row), and then:

- counts, for all of a method's rows, the token positions the forwards run:
  plain, and with the planner of engine/prefix.py over batches of the size
  the batcher forms (max_batch_tokens / row length rows);
- times one batch of rows in that order (the rows the batcher would put in
  one forward, or SAMPLE rows; of the batches, the one whose planned share
  of positions is nearest all rows') five ways, one after
  the other: the naive floor (bare torch, every row in full with logits and
  log-softmax at every position), the target-only floor (bare torch, logits
  at the target positions only), the engine without sharing (its forwards
  split by Limits.cpu_forward_tokens, and not: the batch in one forward)
  and the engine sharing; and checks shared = plain (max relative
  difference).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.bench_prefix_sample
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Row, recording_backend

ROOT = Path(__file__).resolve().parent.parent
WORDS = int(os.environ.get("XAIMESH_BENCH_PREFIX_WORDS", "300"))
# Rows timed: one batch as the batcher forms it (max_batch_tokens / row length) unless set
SAMPLE = int(os.environ.get("XAIMESH_BENCH_PREFIX_SAMPLE", "0"))


def _recorded_rows(loaded, prompt: str, target: str) -> dict[str, tuple[np.ndarray, np.ndarray, list[int]]]:
    """{method: (input ids, token keep-masks [n, L] in the order sent, target positions)}."""
    from xaimesh_attribution import AttributionResult, evaluate, explain

    rows = {}
    result = None
    for label, method, params in (("Occlusion", "occlusion", {}),
                                  ("KernelShap 512", "kernel_shap", {"n_perturbations": 512, "seed": 0})):
        backend = recording_backend(loaded)
        result = explain(backend, method, params, prompt, target, granularity="word")
        rows[label] = backend.sent
    backend = recording_backend(loaded)
    scores = np.random.default_rng(1).random(np.shape(result.scores))
    ranked = AttributionResult.from_dict({**result.to_dict(), "scores": np.where(np.isnan(result.scores), np.nan,
                                                                                 scores).tolist()})
    evaluate(backend, "deletion", ranked, n_random_orders=0)
    rows["Deletion"] = backend.sent
    out = {}
    for label, sent in rows.items():
        ids, _, positions = sent[0]
        out[label] = (ids, np.concatenate([keep for _, keep, _ in sent]), positions)
    return out


def _positions(loaded, ids, keep, positions, batch_rows: int) -> tuple[int, int]:
    """(plain, shared) token positions run for every row, batch by batch (engine/prefix.py's plan)."""
    from xaimesh_model_server.engine.prefix import plan_shared
    from xaimesh_model_server.engine.score import ScoreItem

    base = torch.tensor(ids)
    gather = torch.tensor(positions) - 1
    pad = torch.tensor(loaded.tokenizer.pad_token_id)
    length, shared = len(ids), 0
    for start in range(0, len(keep), batch_rows):
        items = [ScoreItem(torch.where(torch.from_numpy(k), base, pad), None, gather, base[positions], 0, base=base)
                 for k in keep[start:start + batch_rows]]
        plans, plain = plan_shared(loaded, items)
        shared += len(plain) * length + sum(p.positions(length) for p in plans)
    return len(keep) * length, shared


def run() -> list[Row]:
    from benchmarks.bench_prefix import _inputs
    from xaimesh_model_server import engine
    from xaimesh_model_server.loading import embedded_default_path, load_model

    loaded = load_model(str(embedded_default_path()), device="cpu", model_id="smollm2")
    model, tokenizer = loaded.model, loaded.tokenizer
    prompt, target, n_prompt, n_all = _inputs(tokenizer)
    recorded = _recorded_rows(loaded, prompt, target)
    # warm-up: the first forwards of a fresh process are slower, the first full-vocabulary
    # log-softmax too (a 4-row forward alone left the first method's naive floor 1.25x the others')
    with torch.inference_mode():
        for _ in range(2):
            model(torch.tensor([tokenizer(prompt)["input_ids"]] * 4)).logits.log_softmax(-1)
    load = os.getloadavg()[0]
    out: list[Row] = []
    plain_limits = dataclasses.replace(engine.DEFAULT_LIMITS, share_prefixes=False)
    for label, (ids, keep, positions) in recorded.items():
        length = len(ids)
        batch_rows = engine.DEFAULT_LIMITS.max_batch_tokens // length
        plain_positions, shared_positions = _positions(loaded, ids, keep, positions, batch_rows)
        sample_rows = SAMPLE or batch_rows
        # the batch whose planned share is nearest all rows' (the nearest the middle among equals):
        # batches differ (KernelShap's middle ones share nothing, its first and last ones much)
        starts = range(0, len(keep) - sample_rows + 1, sample_rows)
        planned = {start: _positions(loaded, ids, keep[start:start + sample_rows], positions, sample_rows)
                   for start in starts}
        overall = shared_positions / plain_positions
        chosen = min(starts, key=lambda start: (abs(planned[start][1] / planned[start][0] - overall),
                                                abs(start - len(keep) // 2)))
        sample = keep[chosen:chosen + sample_rows]
        sample_plain, sample_shared = planned[chosen]
        base = torch.tensor(ids)
        rows = torch.where(torch.from_numpy(sample), base, torch.tensor(tokenizer.pad_token_id))
        targets = torch.tensor(positions) - 1

        def naive():
            with torch.inference_mode():
                for part in rows.split(4):
                    model(part).logits.log_softmax(-1)

        def target_only():
            with torch.inference_mode():
                for part in rows.split(4):
                    model.lm_head(model.model(part).last_hidden_state[:, targets]).log_softmax(-1)

        results = {}

        def through(limits, name):
            def go():
                results[name] = engine.score(loaded, ids, sample, target_positions=positions,
                                             inference_mode="LOG_SOFTMAX", limits=limits)
            return go

        timings: dict[str, float] = {}
        whole_limits = dataclasses.replace(plain_limits, cpu_forward_tokens=0)
        for name, fn in (("naive", naive), ("target", target_only), ("plain", through(plain_limits, "plain")),
                         ("whole", through(whole_limits, "whole")),
                         ("shared", through(engine.DEFAULT_LIMITS, "shared"))):
            started = time.perf_counter()
            fn()
            timings[name] = time.perf_counter() - started
        scale = np.maximum(np.abs(results["plain"]), 1e-2)
        diff = float((np.abs(results["shared"] - results["plain"]) / scale).max())
        out.append(Row(
            f"Shared prefixes, sampled: {label} of a {WORDS}-word prompt ({n_prompt} tokens) → 20-token target, "
            f"WORD; {len(sample)} of its {len(keep)} rows (from row {chosen}), in-process", timings["naive"], timings["shared"],
            notes=[f"target-only floor {timings['target']:.2f} s ({timings['target'] / timings['naive']:.2f}×)",
                   f"no sharing {timings['plain']:.2f} s ({timings['plain'] / timings['naive']:.2f}×)",
                   f"no sharing, the batch in one forward (cpu_forward_tokens=0) {timings['whole']:.2f} s "
                   f"({timings['whole'] / timings['naive']:.2f}×)",
                   f"planned positions: {sample_shared / sample_plain:.2f} of plain in this batch, "
                   f"{shared_positions / plain_positions:.2f} over all {len(keep)} rows in batches of {batch_rows}",
                   f"max relative difference shared vs plain {diff:.1e} (goal ≤ 1e-4)", "goal ≤ 0.6× (naive floor)",
                   f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"]))
    return out


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import threads

    from benchmarks.run_all import table

    torch.set_num_threads(threads())
    print(table(run()))


if __name__ == "__main__":
    main()
