"""Shared prefixes: a long prompt, a 20-token target, WORD granularity.

Occlusion, KernelShap (512 perturbations) and Deletion of a WORDS-word prompt
(default 300) with a 20-token target, through the services, against two
model-servers of this run: one sharing prefixes (the default) and one with
`--no-share-prefixes`. Floors, in bare torch on the same number of rows the
model-server scored (read from its /metrics):

- naive: every row a full forward with logits at every position, batch 25;
- target-only: every row a full forward, logits at the target positions only.

A full forward of the same shape costs the same whatever the mask, so the
floors time `FLOOR_SAMPLE` rows and scale to the row count (said in the row).

    OMP_NUM_THREADS=1 XAIMESH_BENCH_PREFIX_WORDS=40 XAIMESH_BENCH_PREFIX_KERNELSHAP=128 \\
        .venv/bin/python -m benchmarks.bench_prefix        # a shorter run of these rows alone
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch

from benchmarks.bench_model_server import BATCH, _load_bare
from benchmarks.common import Row, print_rows_on_default_model, sample_texts, scrape_metric

WORDS = int(os.environ.get("XAIMESH_BENCH_PREFIX_WORDS", "300"))
KERNELSHAP = int(os.environ.get("XAIMESH_BENCH_PREFIX_KERNELSHAP", "512"))
TARGET_TOKENS = 20
FLOOR_SAMPLE = 50
TARGET_TEXT = (" So in the end they all went home together, tired but happy, and promised to meet again at the "
               "same place next summer.")


def _inputs(tokenizer) -> tuple[str, str, int, int]:
    """(prompt of WORDS words, 20-token target, prompt tokens, all tokens)."""
    words = " ".join(sample_texts(200)).split()
    prompt = " ".join((words * (WORDS // len(words) + 1))[:WORDS])
    target_ids = tokenizer(TARGET_TEXT, add_special_tokens=False)["input_ids"][:TARGET_TOKENS]
    target = tokenizer.decode(target_ids)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    n_all = len(tokenizer(prompt + target, add_special_tokens=False)["input_ids"])
    return prompt, target, n_prompt, n_all


def _serve(service: str, *args: str) -> tuple[subprocess.Popen, str, int]:
    from xaimesh.local_stack import free_port
    from xaimesh_contracts.channels import wait_for_health

    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xaimesh_runtime.cli", "serve", service, "--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", str(metrics_port), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_for_health(f"127.0.0.1:{port}", timeout=300)
    return process, f"127.0.0.1:{port}", metrics_port


def _rows_scored(metrics_port: int) -> int:
    return int(scrape_metric(metrics_port, r'xaimesh_model_batch_rows_sum\{kind="score"\}'))


def _floors(model, tokenizer, prompt: str, target: str, n_prompt: int) -> tuple[float, float]:
    """Seconds per row: (naive: all logits; target-only), from FLOOR_SAMPLE rows."""
    ids = torch.tensor(tokenizer(prompt + target, add_special_tokens=False)["input_ids"])
    rows = torch.where(torch.rand(FLOOR_SAMPLE, len(ids), generator=torch.Generator().manual_seed(0)) < 0.5,
                       ids, torch.tensor(tokenizer.pad_token_id))
    targets = torch.arange(n_prompt - 1, len(ids) - 1)

    def timed(run) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, FLOOR_SAMPLE, BATCH):
                run(rows[start:start + BATCH])
        return (time.perf_counter() - started) / FLOOR_SAMPLE

    naive = timed(lambda batch: model(batch).logits.log_softmax(-1))
    target_only = timed(lambda batch: model.lm_head(model.model(batch).last_hidden_state[:, targets]).log_softmax(-1))
    return naive, target_only


def run(model_path) -> list[Row]:
    import xaimesh
    from xaimesh import KernelShap, Occlusion
    from xaimesh.attributions import Granularity
    from xaimesh.attributions.metrics import Deletion

    model, tokenizer = _load_bare(model_path)
    prompt, target, n_prompt, n_all = _inputs(tokenizer)
    naive_row_s, target_row_s = _floors(model, tokenizer, prompt, target, n_prompt)
    del model
    servers = {}
    processes = []
    try:
        for name, flags in (("shared", []), ("unshared", ["--no-share-prefixes"])):
            model_server = _serve("model", "--model", str(model_path), *flags)
            attribution = _serve("attribution", "--model-server-address", model_server[1])
            processes += [model_server[0], attribution[0]]
            servers[name] = (model_server[1], model_server[2], attribution[1])
        timings: dict[str, dict[str, tuple[float, int]]] = {}
        for name, (model_address, metrics_port, attribution_address) in servers.items():
            with xaimesh.connect(model_address, attribution=attribution_address, wait_seconds=120) as mesh:
                remote = mesh.model()
                explainers = {
                    "Occlusion": Occlusion(remote, remote.tokenizer, granularity=Granularity.WORD,
                                           show_progress=False),
                    f"KernelShap {KERNELSHAP}": KernelShap(remote, remote.tokenizer, n_perturbations=KERNELSHAP,
                                                            granularity=Granularity.WORD, seed=0,
                                                            show_progress=False)}
                timings[name] = {}
                attribution_out = None
                for label, explain in explainers.items():
                    rows_before, started = _rows_scored(metrics_port), time.perf_counter()
                    (attribution_out,) = explain(model_inputs=prompt, targets=target)
                    timings[name][label] = (time.perf_counter() - started, _rows_scored(metrics_port) - rows_before)
                deletion = Deletion(remote, remote.tokenizer, n_random_orders=0)
                rows_before, started = _rows_scored(metrics_port), time.perf_counter()
                deletion.evaluate(attribution_out)
                timings[name]["Deletion"] = (time.perf_counter() - started, _rows_scored(metrics_port) - rows_before)
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    rows = []
    for label, (shared_s, n_rows) in timings["shared"].items():
        unshared_s, _ = timings["unshared"][label]
        naive_s, target_s = naive_row_s * n_rows, target_row_s * n_rows
        rows.append(Row(
            f"Shared prefixes: {label}, {WORDS}-word prompt ({n_prompt} tokens) → {TARGET_TOKENS}-token "
            f"target, WORD", naive_s, shared_s,
            notes=[f"{n_rows} rows; target-only floor {target_s:.2f} s ({shared_s / target_s:.2f}×)",
                   f"--no-share-prefixes {unshared_s:.2f} s ({unshared_s / naive_s:.2f}×)",
                   f"floors: {FLOOR_SAMPLE} rows timed, scaled", "goal ≤ 0.6×"]))
    return rows


if __name__ == "__main__":
    print_rows_on_default_model(run)
