"""Long inputs: peak memory of the model-server for a 4,000-token input.

Saliency (a gradient method: one forward with autograd, one backward pass
per target token) and Occlusion (a perturbation method: SENTENCE
granularity, one row per sentence of about SENTENCE_TOKENS tokens) of a
prompt + target of LENGTHS tokens on the embedded SmolLM2-135M-Instruct
(8,192 positions), through the services. Each measurement runs in a fresh
model-server process (and an attribution-service in front of it), so its
peak RSS (VmHWM) is that attribution's alone; "over idle" subtracts the
process's RSS once it is serving.

What bounds the memory (engine/gradients.py, "Memory"; engine/prefix.py):
- Saliency: above `--grad-recompute-tokens` (1,024) a gradient forward keeps
  only each block's input and recomputes the block in the backward pass:
  memory linear in the length with a small slope. The path that keeps every
  block's internals (`--grad-recompute-tokens 0`) is measured at the shorter
  length only: at 4,000 tokens it would hold about 5 GB on this shared machine.
- Occlusion: a plain forward holds at most `--max-batch-tokens` tokens (rows
  of a longer input go fewer per forward); a shared-prefix forward holds at
  most `prefix_cache_bytes` of key/value caches (1 GiB). Both are measured.
The goal: nothing grows with the square of the length (16x for 4x the
tokens at these lengths would be 4x for 2x).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.bench_long   # these rows alone
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.bench_prefix import _serve
from benchmarks.common import Row, print_rows_on_default_model, sample_texts

LENGTHS = tuple(int(n) for n in os.environ.get("XAIMESH_BENCH_LONG_LENGTHS", "2000,4000").split(","))
SENTENCE_TOKENS = 1000
TARGET = " Yes"


def _prompt(tokenizer, total_tokens: int) -> str:
    """A prompt of sentences of about SENTENCE_TOKENS tokens each such that
    prompt + TARGET has `total_tokens` tokens."""
    room = total_tokens - len(tokenizer(TARGET, add_special_tokens=False)["input_ids"])
    clauses = [t.rstrip(".") for t in sample_texts(200)]
    sentences, current, i = [], [], 0
    while True:
        current.append(clauses[i % len(clauses)])
        i += 1
        text = " ".join(sentences + [", ".join(current) + "."])
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n >= room:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:room - 1]
            return tokenizer.decode(ids).rstrip(" ,.") + "."
        if len(tokenizer(", ".join(current), add_special_tokens=False)["input_ids"]) >= SENTENCE_TOKENS:
            sentences.append(", ".join(current) + ".")
            current = []


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _measure(model_path, method: str, prompt: str, flags: tuple[str, ...] = ()) -> tuple[float, float, float]:
    """(seconds, model-server peak RSS MiB, peak over idle MiB) of one attribution in fresh processes."""
    import xaimesh
    from xaimesh import Occlusion, Saliency
    from xaimesh.attributions import Granularity

    model_server, model_address, _ = _serve("model", "--model", str(model_path), *flags)
    attribution, attribution_address, _ = _serve("attribution", "--model-server-address", model_address)
    try:
        idle = _status_kib(model_server.pid, "VmRSS")
        with xaimesh.connect(model_address, attribution=attribution_address, wait_seconds=120) as mesh:
            remote = mesh.model()
            if method == "Saliency":
                explainer = Saliency(remote, remote.tokenizer, show_progress=False)
            else:
                explainer = Occlusion(remote, remote.tokenizer, granularity=Granularity.SENTENCE,
                                      show_progress=False)
            started = time.perf_counter()
            explainer(model_inputs=prompt, targets=TARGET)
            seconds = time.perf_counter() - started
        peak = _status_kib(model_server.pid, "VmHWM")
    finally:
        for process in (attribution, model_server):
            process.terminate()
            process.wait(30)
    return seconds, peak / 1024, (peak - idle) / 1024


def run(model_path) -> list[Row]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prompts = {n: _prompt(tokenizer, n) for n in LENGTHS}
    short, long = min(LENGTHS), max(LENGTHS)
    load = os.getloadavg()[0]
    rows = []
    for method, other, flags in (("Saliency", "without block recomputation", ("--grad-recompute-tokens", "0")),
                                 ("Occlusion", "with --no-share-prefixes", ("--no-share-prefixes",))):
        measured = {n: _measure(model_path, method, prompts[n]) for n in (short, long)}
        growth = measured[long][2] / measured[short][2]
        notes = [f"model-server peak RSS {measured[long][1]:.0f} MiB, {measured[long][2]:.0f} MiB over idle; "
                 f"at {short:,} tokens {measured[short][2]:.0f} MiB over idle ({measured[short][0]:.1f} s): "
                 f"×{growth:.1f} for ×{long / short:.0f} tokens",
                 f"goal: at most linear (×{long / short:.0f}), not quadratic (×{(long / short) ** 2:.0f})"]
        lengths = (short,) if method == "Saliency" else (short, long)
        plain = {n: _measure(model_path, method, prompts[n], flags) for n in lengths}
        notes.append(f"{other}: " + ", ".join(f"{plain[n][2]:.0f} MiB over idle at {n:,} tokens ({plain[n][0]:.1f} s)"
                                              for n in lengths))
        if method == "Occlusion":
            notes.insert(0, f"SENTENCE granularity, about {round(long / SENTENCE_TOKENS)} sentences")
        notes.append(f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        rows.append(Row(f"Long input: {method} of a {long:,}-token input ({TARGET.strip()!r} target), peak memory",
                        None, measured[long][0], notes=notes))
    return rows


if __name__ == "__main__":
    print_rows_on_default_model(run)
