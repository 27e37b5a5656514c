"""Every row of one method on the 300-word prompt: the engine sharing
prefixes (in-process, in the batcher's batches of max_batch_tokens) against
the naive floor (bare torch, every row in full with log-softmax at every
position, batches of 4), one after the other in one process. The rows are
bench_prefix_sample's recording (KernelShap 512: 520 rows, about 20 minutes
here; Occlusion: 318 rows; Deletion's 60,849 rows take hours).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_prefix_all_rows "KernelShap 512"
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import bench_prefix_sample
    from benchmarks.bench_prefix import _inputs
    from benchmarks.common import threads
    from xaimesh_model_server import engine
    from xaimesh_model_server.loading import embedded_default_path, load_model

    torch.set_num_threads(threads())
    label = sys.argv[1] if len(sys.argv) > 1 else "KernelShap 512"
    loaded = load_model(str(embedded_default_path()), device="cpu", model_id="smollm2")
    model, tokenizer = loaded.model, loaded.tokenizer
    prompt, target, _, _ = _inputs(tokenizer)
    ids, keep, positions = bench_prefix_sample._recorded_rows(loaded, prompt, target)[label]
    base = torch.tensor(ids)
    rows = torch.where(torch.from_numpy(keep), base, torch.tensor(tokenizer.pad_token_id))
    with torch.inference_mode():  # warm-up, as bench_prefix_sample
        for _ in range(2):
            model(rows[:4]).logits.log_softmax(-1)
    print(f"{label}: {len(keep)} rows of {len(ids)} tokens; load average {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    engine.score(loaded, ids, keep, target_positions=positions, inference_mode="LOG_SOFTMAX")
    shared = time.perf_counter() - started
    print(f"engine, sharing: {shared:.1f} s", flush=True)
    started = time.perf_counter()
    with torch.inference_mode():
        for part in rows.split(4):
            model(part).logits.log_softmax(-1)
    naive = time.perf_counter() - started
    print(f"naive floor: {naive:.1f} s; sharing / naive {shared / naive:.3f} (goal ≤ 0.6); "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
