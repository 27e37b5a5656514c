"""The seed flow through the SDK, step by step, against the bare-torch floor.

KernelShap (100 perturbations) and Deletion of the seed prompt + target,
get_activations of 200 texts at layer 8 (stored by the concept-service),
SemiNMF with 20 concepts (time and MSE), and LLM labels of those concepts by
the local instruct model.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import torch

from benchmarks.bench_model_server import BATCH, N_PERTURBATIONS, _load_bare, _masks
from benchmarks.common import SEED_PROMPT, SEED_TARGET, Row, best_of, sample_texts


def _bare_forwards(model_path, n_forwards: int):
    """The floor: n_forwards full forwards of the seed sequence, batch 25, in bare torch."""
    model, tokenizer = _load_bare(model_path)
    ids = tokenizer(SEED_PROMPT + SEED_TARGET, add_special_tokens=False)["input_ids"]
    masks = np.resize(_masks(tokenizer, ids, 0), (n_forwards, len(ids)))
    base = torch.tensor(ids)

    def run():
        with torch.inference_mode():
            for start in range(0, n_forwards, BATCH):
                keep = torch.from_numpy(masks[start:start + BATCH])
                model(torch.where(keep, base, torch.full_like(base, tokenizer.pad_token_id))).logits.log_softmax(-1)

    return run


PIPELINE_BATCH = 4  # small Score calls: many round trips, where keeping calls in flight matters


def _kernelshap_in_flight_vs_one_at_a_time(mesh, explainer_class, repeat: int = 3) -> tuple[float, float]:
    """KernelShap sent in Score calls of PIPELINE_BATCH perturbations, through
    the mesh's attribution-service (4 calls in flight) and through a second
    one on the same model-server that sends them one at a time (as before
    pipelining); runs interleaved so both see the same machine. Medians."""
    import statistics

    import xaimesh
    from xaimesh.local_stack import free_port
    from xaimesh_contracts.channels import wait_for_health

    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "xaimesh_runtime.cli", "serve", "attribution", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--metrics-port", "-1",
         "--model-server-address", mesh.addresses["model"], "--score-in-flight", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for_health(address, timeout=120)
        with xaimesh.connect(mesh.addresses["model"], attribution=address) as sequential:
            explainers = []
            for m in (mesh, sequential):
                model = m.model()
                explainers.append(explainer_class(model, model.tokenizer, n_perturbations=N_PERTURBATIONS,
                                                  batch_size=PIPELINE_BATCH, show_progress=False))
            times: list[list[float]] = [[], []]
            for round_ in range(repeat + 1):  # the first round warms up
                for i, explain in enumerate(explainers):
                    started = time.perf_counter()
                    explain(model_inputs=SEED_PROMPT, targets=SEED_TARGET)
                    if round_:
                        times[i].append(time.perf_counter() - started)
        return statistics.median(times[0]), statistics.median(times[1])
    finally:
        process.terminate()
        process.wait(30)


def run(mesh, model_path, floors: dict[str, float]) -> tuple[list[Row], dict]:
    import xaimesh
    from xaimesh import KernelShap
    from xaimesh.attributions.metrics import Deletion
    from xaimesh.concepts import LLMLabels, SemiNMFConcepts
    from xaimesh.concepts.metrics import MSE
    from xaimesh.llm import ModelServerLLM

    model = mesh.model()
    explainer = KernelShap(model, model.tokenizer, n_perturbations=N_PERTURBATIONS, batch_size=BATCH,
                           show_progress=False)
    attributions = None

    def kernelshap():
        nonlocal attributions
        attributions = explainer(model_inputs=SEED_PROMPT, targets=SEED_TARGET)

    kernelshap_s, _ = best_of(kernelshap)
    floor_100, _ = best_of(_bare_forwards(model_path, N_PERTURBATIONS))
    rows = [Row(f"KernelShap, {N_PERTURBATIONS} perturbations, seed prompt → target (SDK → attribution → model)",
                floor_100, kernelshap_s, notes=[f"floor = {N_PERTURBATIONS} bare forwards, batch {BATCH}"])]

    in_flight_s, one_at_a_time_s = _kernelshap_in_flight_vs_one_at_a_time(mesh, KernelShap)
    rows.append(Row(f"Pipelining: that KernelShap in Score calls of {PIPELINE_BATCH}, 4 calls in flight (one at a time: "
                    f"{one_at_a_time_s:.2f} s, --score-in-flight 1)", floor_100, in_flight_s,
                    notes=[f"in flight / one at a time = {in_flight_s / one_at_a_time_s:.2f}x, interleaved runs"]))

    deletion = Deletion(model, model.tokenizer, n_random_orders=0)
    deletion_s, _ = best_of(lambda: deletion.evaluate(attributions))
    auc, _detail = deletion.evaluate(attributions)
    rows.append(Row("Deletion of that attribution (no random baseline)", floor_100, deletion_s,
                    notes=[f"AUC {auc:.4f}; floor = {N_PERTURBATIONS} bare forwards"]))

    texts = sample_texts(200)
    split_model = xaimesh.ModelWithSplitPoints(model, split_points=[8])
    activations = None

    def get_activations():
        nonlocal activations
        if activations is not None:
            activations.delete()
        activations = split_model.get_activations(texts, activation_granularity="TOKEN", show_progress=False)

    activations_s, _ = best_of(get_activations)
    rows.append(Row(f"get_activations, 200 texts, layer 8 ({activations.shape[0]} rows) stored in the concept-service",
                    floors.get("activations"), activations_s, notes=["floor = bare forwards stopped at layer 8, texts of one length per batch"]))

    concepts = SemiNMFConcepts(split_model, nb_concepts=20, seed=0)
    fit_s, _ = best_of(lambda: concepts.fit(activations), repeat=1)
    mse = MSE(concepts).compute(activations)
    rows.append(Row("SemiNMF fit, 20 concepts, on those activations", None, fit_s,
                    notes=[f"MSE per element {mse:.4f}"]))

    labeller = LLMLabels(concept_explainer=concepts, activation_granularity="TOKEN", llm_interface=ModelServerLLM(),
                         k_examples=20, show_progress=False)
    started = time.perf_counter()
    labels = labeller.interpret(latent_activations=activations, concepts_indices="all")
    labels_s = time.perf_counter() - started
    rows.append(Row("LLM labels of the 20 concepts by the local SmolLM2 (model-server Generate)", None, labels_s,
                    notes=[f"{sum(v is not None for v in labels.values())} labelled"]))
    activations.delete()
    return rows, {"mse": mse, "deletion_auc": auc}
