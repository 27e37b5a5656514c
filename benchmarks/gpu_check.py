"""The GPU check behind `scripts/gpu_check.sh` (needs CUDA; never run by the tests).

1. Numbers: the model-server engine on CUDA (float32 and bfloat16) against the
   same engine on the CPU (float32), on the embedded default model (SmolLM2):
   Score of 100 word-masked perturbations (log-probabilities of the target
   tokens), integrated-gradient DOT_DELTA (16 steps) and layer-8 activations
   of 200 texts. Tolerances: float32 1e-3 on log-probabilities, relative 1e-3
   (of the largest magnitude) on gradients and activations; bfloat16 (8
   mantissa bits) 0.25 on log-probabilities and relative 5e-2. A difference
   above them fails the check (exit 1).
2. Timings on the GPU, per dtype: that Score through the model-server's gRPC
   API (a local model-server process on CUDA) against bare torch running the
   same forwards (batch 25) on the same GPU, medians of 3 after a warm-up.
3. Writes the "## GPU" section at the end of docs/benchmarks.md (replacing
   the one there), which `make bench` keeps.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_model_server import BATCH, LAYER, N_PERTURBATIONS, _masks  # noqa: E402
from benchmarks.common import SEED_PROMPT, SEED_TARGET, best_of, sample_texts  # noqa: E402

GPU_HEADING = "## GPU (scripts/gpu_check.sh)"
TOLERANCES = {"float32": {"logp": 1e-3, "relative": 1e-3}, "bfloat16": {"logp": 0.25, "relative": 5e-2}}


def _results(device: str, dtype: str, model_path: Path) -> dict[str, np.ndarray]:
    from xaimesh_model_server import engine
    from xaimesh_model_server.engine import EmbeddingSamples
    from xaimesh_model_server.loading import load_model

    loaded = load_model(str(model_path), device=device, dtype=dtype, model_id="check")
    tokenizer = loaded.tokenizer
    prompt_ids = tokenizer(SEED_PROMPT, add_special_tokens=False)["input_ids"]
    ids = tokenizer(SEED_PROMPT + SEED_TARGET, add_special_tokens=False)["input_ids"]
    targets = list(range(len(prompt_ids), len(ids)))
    score = engine.score(loaded, ids, _masks(tokenizer, ids, len(prompt_ids)), target_positions=targets,
                         inference_mode="log_softmax")
    grads = engine.gradients(loaded, ids, target_positions=targets, inference_mode="log_softmax",
                             samples=EmbeddingSamples(alphas=[(i + 0.5) / 16 for i in range(16)]),
                             outputs=["dot_delta"])["dot_delta"]
    rows = [batch.rows[next(iter(batch.rows))] for batch in
            engine.activations(loaded, sample_texts(200), [LAYER], "token")]
    return {"score": np.asarray(score, np.float64), "gradients": np.asarray(grads, np.float64),
            "activations": torch.cat(rows).double().numpy()}


def check_numbers(model_path: Path) -> list[str]:
    """One line per (dtype, quantity); raises SystemExit(1) after printing when one is off."""
    cpu = _results("cpu", "float32", model_path)
    lines, failed = [], False
    for dtype, tol in TOLERANCES.items():
        gpu = _results("cuda", dtype, model_path)
        for name, want in cpu.items():
            gap = float(np.abs(gpu[name] - want).max())
            limit = tol["logp"] if name == "score" else tol["relative"] * float(np.abs(want).max())
            ok = gap <= limit
            failed |= not ok
            lines.append(f"{dtype} {name}: max |GPU − CPU| = {gap:.2e} (limit {limit:.2e}) {'ok' if ok else 'FAILED'}")
            print(lines[-1], flush=True)
    if failed:
        raise SystemExit(1)
    return lines


def _model_server(model_path: Path, dtype: str):
    from xaimesh.local_stack import free_port
    from xaimesh_contracts.channels import wait_for_health

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xaimesh_runtime.cli", "serve", "model", "--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", "-1", "--model", str(model_path)],
        env={**os.environ, "XAIMESH_DEVICE": "cuda", "XAIMESH_DTYPE": dtype},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_for_health(f"127.0.0.1:{port}", timeout=180)
    return process, f"127.0.0.1:{port}"


def time_score(model_path: Path, dtype: str) -> tuple[float, float]:
    """(bare torch on the GPU, the model-server's Score on the GPU), seconds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xaimesh_contracts.channels import make_channel
    from xaimesh_contracts.tensors import to_tensor
    from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc, tensor_pb2

    torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch_dtype,
                                                 attn_implementation="sdpa").cuda().eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prompt_ids = tokenizer(SEED_PROMPT, add_special_tokens=False)["input_ids"]
    ids = tokenizer(SEED_PROMPT + SEED_TARGET, add_special_tokens=False)["input_ids"]
    targets = list(range(len(prompt_ids), len(ids)))
    masks = _masks(tokenizer, ids, len(prompt_ids))
    base = torch.tensor(ids, device="cuda")
    keep_all = torch.from_numpy(masks).cuda()

    def bare():
        with torch.inference_mode():
            for start in range(0, N_PERTURBATIONS, BATCH):
                keep = keep_all[start:start + BATCH]
                batch = torch.where(keep, base, torch.full_like(base, tokenizer.pad_token_id))
                model(batch).logits.float().log_softmax(-1)[:, [p - 1 for p in targets]].cpu()
        torch.cuda.synchronize()

    floor, _ = best_of(bare)
    del model
    torch.cuda.empty_cache()
    process, address = _model_server(model_path, dtype)
    try:
        with make_channel(address) as channel:
            stub = model_pb2_grpc.ModelServiceStub(channel)
            request = model_pb2.ScoreRequest(
                input_ids=ids, keep_mask=to_tensor(masks), target_positions=targets,
                inference_mode=tensor_pb2.INFERENCE_MODE_LOG_SOFTMAX,
                replacement=model_pb2.Replacement(policy=model_pb2.REPLACEMENT_POLICY_PAD_TOKEN))
            served, _ = best_of(lambda: stub.Score(request, timeout=120))
    finally:
        process.terminate()
        process.wait(30)
    return floor, served


def write_section(lines: list[str], timings: dict[str, tuple[float, float]]) -> None:
    name = torch.cuda.get_device_name(0)
    table = ["| benchmark | dtype | bare torch (GPU) | xaimesh (GPU) | xaimesh / floor |", "|---|---|---|---|---|"]
    for dtype, (floor, served) in timings.items():
        table.append(f"| Score {N_PERTURBATIONS} perturbations of the seed prompt+target | {dtype} | "
                     f"{floor * 1000:.1f} ms | {served * 1000:.1f} ms | {served / floor:.2f}× |")
    section = "\n".join([
        GPU_HEADING, "",
        f"Measured {datetime.date.today()} on {name}, torch {torch.__version__}, by `scripts/gpu_check.sh` "
        "(medians of 3 after a warm-up). GPU results against the CPU (float32):", "",
        *[f"- {line}" for line in lines], "", *table, ""])
    out = ROOT / "docs" / "benchmarks.md"
    text = out.read_text()
    if GPU_HEADING in text:
        start = text.index(GPU_HEADING)
        end = text.find("\n## ", start + len(GPU_HEADING))
        text = text[:start] + (text[end + 1:] if end >= 0 else "")
    out.write_text(text.rstrip("\n") + "\n\n" + section)
    print(f"wrote the GPU section of {out.relative_to(ROOT)}")


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    from xaimesh_model_server.loading import embedded_default_path

    model_path = embedded_default_path()
    lines = check_numbers(model_path)
    timings = {dtype: time_score(model_path, dtype) for dtype in TOLERANCES}
    write_section(lines, timings)


if __name__ == "__main__":
    main()
