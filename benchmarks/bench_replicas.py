"""Several model-server replicas behind one attribution-service address.

One KernelShap explanation (N_PERTURBATIONS perturbations of a PROMPT_WORDS-
word prompt, Score calls of BATCH rows, the attribution-service's default
calls in flight) through an attribution-service that reaches one model-server
process, then through one that reaches two (`--model-server-address a,b`,
client-side round-robin). Every process is fresh and serves the embedded
SmolLM2 with the caller's OMP_NUM_THREADS (one thread each under
`OMP_NUM_THREADS=1`), so two replicas can use two cores where one uses one.
The floor is bare torch running the rows KernelShap really scores (recorded
from the attribution logic) back to back in one process, batch 25.

A third run kills one of the two replicas (SIGKILL) once it has answered a
few Score calls: the explanation must finish on the other replica with the
one-replica numbers; the row gives its time and the retries the
attribution-service counted.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_replicas   # these rows alone
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import torch

from benchmarks.bench_model_server import BATCH as FLOOR_BATCH
from benchmarks.bench_model_server import _load_bare
from benchmarks.bench_prefix import _serve
from benchmarks.common import Row, best_of, print_rows_on_default_model, recording_backend, sample_texts, scrape_metric

PROMPT_WORDS = 30
TARGET = " They all went home happy."
N_PERTURBATIONS = 128
BATCH = 16  # rows per Score call: 9 calls, 4 in flight at a time (the attribution-service's default)
SEED = 3


def _prompt() -> str:
    words = " ".join(sample_texts(40)).split()
    return " ".join(words[:PROMPT_WORDS])


def _scores_served(metrics_port: int) -> int:
    return int(scrape_metric(metrics_port, r'xaimesh_grpc_requests_total\{(?=[^}]*code="OK")(?=[^}]*/Score")'))


def _retries(metrics_port: int) -> int:
    return int(scrape_metric(metrics_port, r'xaimesh_downstream_retries_total\{[^}]*model-server'))


def _scored_floor(model, tokenizer, loaded, prompt: str):
    """Bare torch over the rows KernelShap scores for this request (batch 25, log-softmax)."""
    from xaimesh_attribution import explain

    backend = recording_backend(loaded)
    explain(backend, "kernel_shap", {"n_perturbations": N_PERTURBATIONS, "seed": SEED}, prompt, TARGET)
    base = torch.from_numpy(backend.sent[0][0])
    keep = torch.from_numpy(np.concatenate([mask for _, mask, _ in backend.sent]))
    pad = torch.full_like(base, tokenizer.pad_token_id)

    def run():
        with torch.inference_mode():
            for start in range(0, len(keep), FLOOR_BATCH):
                model(torch.where(keep[start:start + FLOOR_BATCH], base, pad)).logits.log_softmax(-1)

    return run, len(keep)


def _explain(attribution_address: str, model_address: str, prompt: str):
    import xaimesh
    from xaimesh import KernelShap

    with xaimesh.connect(model_address, attribution=attribution_address, wait_seconds=120) as mesh:
        remote = mesh.model()
        explainer = KernelShap(remote, remote.tokenizer, n_perturbations=N_PERTURBATIONS, batch_size=BATCH,
                               seed=SEED, show_progress=False)
        (out,) = explainer(model_inputs=prompt, targets=TARGET)
        return out


def _killed_mid_job(replicas, attribution, prompt: str):
    """(seconds, result, Score calls the killed replica answered, retries) of one explanation
    through `attribution` over two replicas, the first killed once it has answered a few Score calls."""
    (victim, _, victim_metrics), (_, survivor_address, _) = replicas
    _, attribution_address, attribution_metrics = attribution
    before, retries_before = _scores_served(victim_metrics), _retries(attribution_metrics)
    outcome: dict = {}

    def job():
        try:
            outcome["out"] = _explain(attribution_address, survivor_address, prompt)
        except BaseException as exc:  # re-raised by the caller's thread
            outcome["error"] = exc

    started = time.perf_counter()
    worker = threading.Thread(target=job)
    worker.start()
    while _scores_served(victim_metrics) < before + 2 and worker.is_alive():
        time.sleep(0.01)
    answered = _scores_served(victim_metrics) - before
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    worker.join()
    seconds = time.perf_counter() - started
    if "error" in outcome:
        raise RuntimeError("the explanation failed after a replica was killed") from outcome["error"]
    return seconds, outcome["out"], answered, _retries(attribution_metrics) - retries_before


def run(model_path) -> list[Row]:
    from xaimesh_model_server.loading import load_model

    model, tokenizer = _load_bare(model_path)
    loaded = load_model(str(model_path), device="cpu", model_id="floor")
    prompt = _prompt()
    floor, n_rows = _scored_floor(model, tokenizer, loaded, prompt)
    floor_s, _ = best_of(floor)
    del model, loaded  # the replicas need the memory and the cores

    replicas = [_serve("model", "--model", str(model_path)) for _ in range(2)]
    one = _serve("attribution", "--model-server-address", replicas[1][1])
    two = _serve("attribution", "--model-server-address", ",".join(r[1] for r in replicas))
    try:
        results = {}

        def timed(name, attribution):
            return lambda: results.__setitem__(name, _explain(attribution[1], replicas[1][1], prompt))

        one_s, _ = best_of(timed("one", one))
        before = [_scores_served(r[2]) for r in replicas]
        two_s, _ = best_of(timed("two", two))
        served = [_scores_served(r[2]) - b for r, b in zip(replicas, before)]
        gap = float(np.nanmax(np.abs(results["two"].attributions - results["one"].attributions)))
        killed_s, killed, answered, retries = _killed_mid_job(replicas, two, prompt)
        killed_gap = float(np.nanmax(np.abs(killed.attributions - results["one"].attributions)))
    finally:
        for process, _, _ in (one, two, *replicas):
            process.terminate()
            process.wait(30)
    n_words = len(prompt.split())
    return [
        Row(f"Replicas: KernelShap {N_PERTURBATIONS} perturbations of a {n_words}-word prompt over 2 model-server "
            f"replicas (Score calls of {BATCH})", floor_s, two_s,
            notes=[f"floor = the {n_rows} rows KernelShap scores, bare torch in one process",
                   f"one replica {one_s:.2f} s ({one_s / floor_s:.2f}× the floor); two / one = {two_s / one_s:.2f}× "
                   "(each replica one process of OMP_NUM_THREADS threads)",
                   f"Score calls answered per replica over 4 runs: {served[0]} and {served[1]}",
                   f"max |Δ attribution| two vs one replica = {gap:.1e}"]),
        Row("Replicas: that KernelShap with one of the 2 replicas killed (SIGKILL) mid-explanation", floor_s,
            killed_s,
            notes=[f"killed after answering {answered} Score calls; the attribution-service retried "
                   f"{retries} calls on the other replica", f"max |Δ attribution| vs one replica = "
                   f"{killed_gap:.1e} (goal: the one-replica result, not a failed explanation)", "one run"]),
    ]


if __name__ == "__main__":
    print_rows_on_default_model(run)
