"""xaimesh.interpreto against interpreto 0.5.2 itself, on the same tiny
GPT-2 (causal LM) and BERT (classifier) checkpoints: the same activations
(one split point, and every block boundary: AllLayersSplitter), the same
logit lens and tuned lens (fitted with the same settings), the same probe
scores (the concept-service's FitProbe logic, every row used for fitting),
the same Occlusion and Saliency attributions where the definitions coincide
(TOKEN granularity; BERT has a mask token, so both replace by it; Saliency
with input_x_gradient=False), the same Deletion curves for the same
attribution.

interpreto runs in its own venv (benchmarks/reference_env.py builds it once
under ~/.cache/xaimesh/bench-interpreto, as `make bench` does); a machine where it
cannot be installed fails this test with the reason instead of skipping it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
def _planted_probe_set(n: int = 300, d: int = 8):
    rng = np.random.default_rng(5)
    u = rng.normal(size=d)
    y = (rng.random(n) < 0.35).astype(np.int64)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d) + 3.0 * u / np.linalg.norm(u) * y[:, None]
    return x.astype(np.float32), y


PROBE_X, PROBE_Y = _planted_probe_set()
SPEC = {"texts": ["Alice and Bob enter the bar.", "The cat sleeps on the warm mat.", "I am so happy today!"],
        "prompt": "Alice and Bob enter the bar,", "target": " then Alice offers a drink", "split_point": 1,
        "text": "the cat sleeps on the warm mat", "classes": [0, 1, 2], "probe_x": PROBE_X.tolist(),
        "probe_y": PROBE_Y.tolist()}


def _close(ours, theirs, rtol: float, what: str) -> None:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs interpreto's {theirs.shape}"
    covered = ~np.isnan(theirs)  # interpreto: NaN where a generation row does not cover an element
    assert np.array_equal(covered, ~np.isnan(ours)), f"{what}: not the same cells covered"
    scale = max(float(np.abs(theirs[covered]).max()), 1e-12)
    worst = float(np.abs(ours[covered] - theirs[covered]).max()) / scale
    print(f"{what}: max difference {worst:.2e} of the scale")  # the figures of docs/interpreto-compat.md
    assert worst <= rtol, f"{what}: max difference {worst:.2e} of the scale (allowed {rtol:.0e})"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from benchmarks.reference_env import ensure_interpreto_venv
    from tests.fixtures.family_models import family_dir

    python = ensure_interpreto_venv()
    if isinstance(python, str):
        pytest.fail(f"interpreto 0.5.2 could not be installed in its venv: {python}")
    tmp = tmp_path_factory.mktemp("reference")
    (tmp / "spec.json").write_text(json.dumps(SPEC))
    dirs = {"gpt2": family_dir("gpt2"), "bert": family_dir("bert")}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(python), str(ROOT / "tests" / "fixtures" / "interpreto_reference.py"),
                           "--gpt2", str(dirs["gpt2"]), "--bert", str(dirs["bert"]), "--spec", str(tmp / "spec.json"),
                           "--out", str(tmp / "out.json")], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp / "out.json").read_text()), dirs


@pytest.fixture(scope="module")
def models(reference, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from tests.fixtures.sdk_state import fresh_sdk_state

    dirs = reference[1]
    with fresh_sdk_state(tmp_path_factory.mktemp("home")):
        yield ((AutoModelForCausalLM.from_pretrained(dirs["gpt2"]), AutoTokenizer.from_pretrained(dirs["gpt2"])),
               (AutoModelForSequenceClassification.from_pretrained(dirs["bert"]),
                AutoTokenizer.from_pretrained(dirs["bert"])))


def test_activations_equal_interpretos(reference, models):
    from xaimesh.interpreto import ModelWithSplitPoints

    ref = reference[0]
    for (model, tokenizer), key in zip(models, ("gpt2_activations", "bert_activations"), strict=True):
        splitter = ModelWithSplitPoints(model, split_point=SPEC["split_point"], tokenizer=tokenizer)
        acts, _ = splitter.get_activations(SPEC["texts"],
                                           activation_granularity=splitter.activation_granularities.TOKEN)
        _close(acts.numpy(), ref[key], 1e-4, key)


def test_saliency_and_occlusion_equal_interpretos_where_the_definitions_coincide(reference, models):
    import torch

    from xaimesh.interpreto import Granularity, Occlusion, Saliency

    ref = reference[0]
    (gpt2, gpt2_tok), (bert, bert_tok) = models
    ours = Saliency(gpt2, gpt2_tok, granularity=Granularity.TOKEN, input_x_gradient=False)(
        SPEC["prompt"], SPEC["target"])[0]
    assert ours.elements == ref["gpt2_saliency"]["elements"]
    _close(ours.attributions.numpy(), ref["gpt2_saliency"]["attributions"], 1e-3, "GPT-2 Saliency")

    classes = torch.tensor([SPEC["classes"]])
    occlusion = Occlusion(bert, bert_tok, granularity=Granularity.TOKEN)(SPEC["text"], classes)
    # interpreto shows WordPiece tokens ("##s"), the mesh the text they cover ("s")
    assert occlusion[0].elements == [e.removeprefix("##") for e in ref["bert_occlusion"]["elements"]]
    _close(occlusion[0].attributions.numpy(), ref["bert_occlusion"]["attributions"], 1e-4, "BERT Occlusion")
    saliency = Saliency(bert, bert_tok, granularity=Granularity.TOKEN, input_x_gradient=False)(SPEC["text"], classes)
    _close(saliency[0].attributions.numpy(), ref["bert_saliency"], 1e-3, "BERT Saliency")


def test_deletion_curves_equal_interpretos_for_the_same_attribution(reference, models):
    import torch

    from xaimesh.interpreto import Granularity, Occlusion
    from xaimesh.interpreto.attributions.metrics import Deletion

    ref = reference[0]["bert_deletion"]
    bert, bert_tok = models[1]
    occlusion = Occlusion(bert, bert_tok, granularity=Granularity.TOKEN)(SPEC["text"], torch.tensor([SPEC["classes"]]))
    auc, curves = Deletion(bert, bert_tok, n_perturbations=100).evaluate(occlusion)
    assert len(curves) == len(ref["curves"]) == 1 and len(curves[0]) == len(ref["curves"][0])
    for k, (ours, theirs) in enumerate(zip(curves[0], ref["curves"][0], strict=True)):
        _close(ours.numpy(), theirs, 1e-4, f"Deletion curve of class {k}")
    assert auc == pytest.approx(ref["auc"], rel=1e-4)


def test_lenses_equal_interpretos(reference, models):
    from xaimesh.interpreto import AllLayersSplitter, LogitLens, TunedLens

    ref = reference[0]
    gpt2, gpt2_tok = models[0]
    splitter = AllLayersSplitter(gpt2, tokenizer=gpt2_tok)
    assert splitter.activation_names == ref["gpt2_all_layers"]["names"]
    for k, (ours, theirs) in enumerate(zip(splitter.get_activations(SPEC["text"]), ref["gpt2_all_layers"]["states"],
                                           strict=True)):
        _close(ours[0].numpy(), theirs, 1e-4, f"AllLayersSplitter state {k}")

    def same_results(ours, theirs, rtol, what):
        assert list(ours) == list(theirs)
        for name in theirs:
            _close(ours[name]["top_scores"][0].numpy(), theirs[name]["top_scores"], rtol, f"{what} {name}")
            # the same tokens where the probabilities are not tied
            scores = np.asarray(theirs[name]["top_scores"])
            distinct = np.abs(np.diff(scores, axis=-1)).min(axis=-1) > 1e-4
            assert np.array_equal(ours[name]["top_indices"][0].numpy()[distinct],
                                  np.asarray(theirs[name]["top_indices"])[distinct]), f"{what} {name}"

    same_results(LogitLens(splitter, top_k=3).explain(SPEC["text"]), ref["gpt2_logit_lens"], 1e-4, "LogitLens")
    tuned = TunedLens(splitter, top_k=3)
    losses = tuned.fit(SPEC["texts"], epochs=2, learning_rate=1e-2)
    _close(losses, ref["gpt2_tuned_lens"]["losses"], 1e-4, "TunedLens epoch losses")
    same_results(tuned.explain(SPEC["text"]), ref["gpt2_tuned_lens"]["explain"], 1e-3, "TunedLens")


# interpreto's probe -> the concept-service's settings for the same probe (fitted on every row).
PROBE_SETTINGS = {
    "DotProductCentroidProbe": {"method": "CENTROID_DOT_PRODUCT", "normalization": "STANDARDIZATION"},
    "CosineCentroidProbe": {"method": "CENTROID_COSINE"},
    "SqL2CentroidProbe": {"method": "CENTROID_SQ_L2", "bias_calibration": "MIDPOINT"},
    "DiagonalMahalanobisCentroidProbe": {"method": "CENTROID_DIAGONAL_MAHALANOBIS", "shrinkage": 0.5},
    "SVDDCentroidProbe": {"method": "CENTROID_SVDD", "normalization": "STANDARDIZATION"},
    "LinearRegressionProbe": {"method": "LINEAR_REGRESSION", "l2": 1.0},
    "MeansDiffProbe": {"method": "MEANS_DIFF", "bias_calibration": "MIDPOINT"},
    "LogisticRegressionProbe": {"method": "LOGISTIC_REGRESSION", "normalization": "STANDARDIZATION",
                                "max_iterations": 20},
}


@pytest.mark.parametrize("name", list(PROBE_SETTINGS))
def test_probe_scores_equal_interpretos(reference, name):
    from xaimesh_concept.probes import ProbeSettings, fit_probe

    fit = fit_probe(PROBE_X, PROBE_Y, ProbeSettings(test_fraction=0, **PROBE_SETTINGS[name]))
    ours = fit.concept_model.encode(PROBE_X)[:, 0].astype(np.float64)
    theirs = np.asarray(reference[0]["probes"][name])
    if name == "LinearRegressionProbe":  # xaimesh regresses on -1 / +1, interpreto on 0 / 1: s = 2 s_01 - 1
        theirs = 2 * theirs - 1
    _close(ours, theirs, 1e-4, name)
