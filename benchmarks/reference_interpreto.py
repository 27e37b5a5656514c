"""The reference toolkit (interpreto) on the same model and inputs as the xaimesh benchmarks, in process.

Runs INSIDE the interpreto venv (see benchmarks/reference_env.py), never in the main one:

    ~/.cache/xaimesh/bench-interpreto/venv/bin/python benchmarks/reference_interpreto.py \
        --model ~/.cache/xaimesh/models/smollm2-135m-instruct-0.1.2 --out result.json [--texts-file texts.json]

Steps (each timed as the median of N runs after one warm-up run; N per step in its "repeat"):
  kernelshap   KernelShap, 100 perturbations, WORD granularity, on the seed prompt -> seed target.
  deletion     the Deletion metric (AUC) on that attribution.
  activations  layer-8 TOKEN activations of the texts (ModelWithSplitPoints.get_activations).
  semi_nmf     SemiNMFConcepts(20 concepts).fit on those activations, plus its reconstruction error.
A step that fails records {"error": ...} and the others still run. Writes one JSON file.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import SEED_PROMPT, SEED_TARGET, best_of, sample_texts  # noqa: E402  (stdlib only)

N_PERTURBATIONS = 100
ATTRIBUTION_BATCH = 25  # same batch as the bare-torch floor of the Score benchmark
ACTIVATION_BATCH = 64  # the largest batch of the bare-torch floor of the activations benchmark
LAYER = 8
N_CONCEPTS = 20

warnings.filterwarnings("ignore")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _load(model_path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, attn_implementation="sdpa").eval()
    return model, AutoTokenizer.from_pretrained(model_path)


def _step(rows: dict, name: str, fn) -> None:
    started = time.perf_counter()
    try:
        rows[name] = fn()
    except Exception as exc:  # record and go on
        rows[name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                      "traceback": traceback.format_exc()[-3000:]}
    print(f"{name}: {time.perf_counter() - started:.1f} s total", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local HF folder of the model")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--texts-file", help="JSON list of texts for the activations (default: sample_texts(200))")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per cheap step (after one warm-up)")
    parser.add_argument("--repeat-slow", type=int, default=3, help="timed runs for SemiNMF (after one warm-up)")
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    texts = json.loads(Path(args.texts_file).read_text()) if args.texts_file else sample_texts(200)
    result = {"version": importlib.metadata.version("interpreto"), "torch": torch.__version__,
              "transformers": importlib.metadata.version("transformers"), "threads": torch.get_num_threads(),
              "rows": {}, "notes": []}
    rows, notes = result["rows"], result["notes"]
    state: dict = {}

    from interpreto import Granularity, KernelShap, ModelWithSplitPoints
    from interpreto.attributions import InferenceModes
    from interpreto.attributions.metrics import Deletion
    from interpreto.concepts import SemiNMFConcepts
    from interpreto.concepts.metrics import MSE

    # ------------------------------------------------------------------ attribution
    model, tokenizer = _load(args.model)
    # interpreto's generation explainer prepends a space to a target that lacks one, concatenates, decodes and
    # re-tokenizes; the prompt's trailing space would give "bar,  then" (two spaces, one token more). Giving it
    # the prompt without that space makes the explained text exactly SEED_PROMPT + SEED_TARGET, 15 tokens,
    # tokenized as the xaimesh benchmark tokenizes it.
    prompt, target = SEED_PROMPT.rstrip(), SEED_TARGET

    def kernelshap():
        explainer = KernelShap(model, tokenizer, batch_size=ATTRIBUTION_BATCH, granularity=Granularity.WORD,
                               inference_mode=InferenceModes.LOG_SOFTMAX, n_perturbations=N_PERTURBATIONS)

        def call():
            torch.manual_seed(0)
            with torch.inference_mode():
                return explainer(prompt, target)

        seconds, times = best_of(call, repeat=args.repeat)
        out = call()
        state["explanations"] = out
        elements = out[0].elements
        ids = out[0].model_inputs_to_explain["input_ids"][0].tolist()
        expected = tokenizer(SEED_PROMPT + SEED_TARGET, add_special_tokens=False)["input_ids"]
        if ids != expected:
            notes.append(f"kernelshap: explained ids differ from SEED_PROMPT+SEED_TARGET ({len(ids)} vs "
                         f"{len(expected)} tokens)")
        return {"seconds": seconds, "times": times, "repeat": args.repeat,
                "params": {"n_perturbations": N_PERTURBATIONS, "granularity": "WORD",
                           "inference_mode": "LOG_SOFTMAX", "batch_size": ATTRIBUTION_BATCH,
                           "model_inputs": prompt, "targets": target, "replacement": "new [REPLACE] token",
                           "forwards": N_PERTURBATIONS},
                "tokens": len(ids), "words": len(elements),
                "attribution_shape": list(out[0].attributions.shape)}

    _step(rows, "kernelshap", kernelshap)

    def deletion():
        if "explanations" not in state:
            raise RuntimeError("no KernelShap attribution to evaluate")
        metric = Deletion(model, tokenizer, batch_size=ATTRIBUTION_BATCH, n_perturbations=N_PERTURBATIONS)

        def call():
            with torch.inference_mode():
                return metric.evaluate(state["explanations"])

        seconds, times = best_of(call, repeat=args.repeat)
        auc, scores = call()
        return {"seconds": seconds, "times": times, "repeat": args.repeat, "auc": auc,
                "params": {"n_perturbations": N_PERTURBATIONS, "max_percentage_perturbed": 1.0,
                           "batch_size": ATTRIBUTION_BATCH, "scores": "softmax prob of each target word",
                           "forwards": sum(len(s) for per_sample in scores for s in per_sample),
                           "targets": sum(len(per_sample) for per_sample in scores)}}

    _step(rows, "deletion", deletion)
    del model, tokenizer

    # ------------------------------------------------------------------ activations + concepts
    def activations():
        # a fresh model and tokenizer: the attribution explainers above add a [REPLACE] token to both
        model2, tokenizer2 = _load(args.model)
        splitter = ModelWithSplitPoints(model2, tokenizer=tokenizer2, split_point=LAYER, batch_size=ACTIVATION_BATCH)
        state["splitter"] = splitter
        granularity = ModelWithSplitPoints.activation_granularities.TOKEN

        def call():
            with torch.inference_mode():
                return splitter.get_activations(texts, activation_granularity=granularity)[0]

        seconds, times = best_of(call, repeat=args.repeat)
        acts = call()
        state["activations"] = acts
        row = {"seconds": seconds, "times": times, "repeat": args.repeat, "shape": list(acts.shape),
               "params": {"split_point": splitter.split_point, "activation_granularity": "TOKEN",
                          "batch_size": ACTIVATION_BATCH, "texts": len(texts)}}
        # cross-check against plain transformers: output of decoder layer LAYER == hidden_states[LAYER + 1]
        bare = []
        with torch.inference_mode():
            for start in range(0, len(texts), ACTIVATION_BATCH):
                enc = tokenizer2(texts[start:start + ACTIVATION_BATCH], add_special_tokens=False, padding=True,
                                 return_tensors="pt")
                hidden = model2(**enc, output_hidden_states=True).hidden_states[LAYER + 1]
                bare.append(hidden[enc["attention_mask"].bool()])
        bare = torch.cat(bare)
        row["max_abs_diff_vs_bare_torch"] = (float((bare - acts).abs().max()) if bare.shape == acts.shape
                                             else f"shape {list(bare.shape)} vs {list(acts.shape)}")
        return row

    _step(rows, "activations", activations)

    def semi_nmf():
        if "activations" not in state:
            raise RuntimeError("no activations to fit")
        acts = state["activations"]

        def fit():
            torch.manual_seed(0)
            explainer = SemiNMFConcepts(state["splitter"], nb_concepts=N_CONCEPTS, device="cpu")
            explainer.fit(acts)
            return explainer

        seconds, times = best_of(fit, repeat=args.repeat_slow)
        explainer = fit()
        started = time.perf_counter()
        torch.manual_seed(0)
        frobenius = MSE(explainer).compute(acts)
        mse_seconds = time.perf_counter() - started
        # like-for-like: encode -> decode, then mean squared error per element (numpy, float64)
        torch.manual_seed(0)
        with torch.no_grad():
            recon = explainer.concepts_to_activations(explainer.activations_to_concepts(acts))
        a = acts.double().numpy()
        r = recon.double().cpu().numpy()
        mse = float(np.mean((a - r) ** 2))
        return {"seconds": seconds, "times": times, "repeat": args.repeat_slow,
                "frobenius": frobenius, "mse": mse,
                "relative_sq_error": float(np.sum((a - r) ** 2) / np.sum(a ** 2)),
                "mse_metric_seconds": mse_seconds,
                "params": {"nb_concepts": N_CONCEPTS, "solver": "mu (multiplicative updates)", "fit_max_iter": 500,
                           "tol": 1e-4, "encode_max_iter": 300, "rows": list(acts.shape)}}

    _step(rows, "semi_nmf", semi_nmf)

    notes += [
        "interpreto.concepts.metrics.MSE is the Euclidean distance ||A - decode(encode(A))|| over the whole "
        "(rows x d) matrix: the un-normalised, un-squared Frobenius norm ('frobenius'); 'mse' is the mean squared "
        "error per element of the same reconstruction (numpy), 'relative_sq_error' = ||A - Â||² / ||A||².",
        "SemiNMF encode() re-solves the codes from a random start (300 multiplicative updates, D fixed), so the "
        "reconstruction error is of encode->decode, not of the codes found by fit().",
        f"KernelShap/Deletion on the fp32 model, batch {ATTRIBUTION_BATCH}; interpreto masks with a new [REPLACE] "
        "token (embedding added by resize_token_embeddings), not the pad token.",
        "Deletion runs one perturbation curve per target word (target prefix grows word by word), "
        "min(100, #words)+1 forwards each.",
    ]
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "traceback"} for k, v in rows.items()},
                     indent=1, default=str))


if __name__ == "__main__":
    main()
