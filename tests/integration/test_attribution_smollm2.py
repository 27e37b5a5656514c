"""End to end on the real SmolLM2-135M-Instruct (the model-server's embedded
default): KernelShap word attributions are faithful, i.e. deleting the
words they rank first lowers the target's probability faster than deleting
words in random order (Deletion AUC below the random-order baseline), with
the service defaults otherwise (SOFTMAX, pad-token replacement).

Run with `pytest -m slow -s tests/integration/test_attribution_smollm2.py`
to see the figures.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

# Short prompts, one-token targets the model predicts with some confidence.
CASES = [
    ("The capital of France is", " Paris"),
    ("Monday, Tuesday, Wednesday,", " Thursday"),
    ("One, two, three, four,", " five"),
    ("In the morning I like to drink a hot cup of", " coffee"),
    ("Alice and Bob enter the bar, then Alice offers a drink to", " Bob"),
]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


def test_kernel_shap_beats_random_order_on_smollm2(launcher):
    import xaimesh
    from xaimesh import KernelShap
    from xaimesh.attributions import Granularity
    from xaimesh.attributions.metrics import Deletion

    model_server = launcher.start("model", timeout=600)  # no --model: the embedded default
    attribution = launcher.start("attribution", "--model-server-address", model_server.address)
    with xaimesh.connect(model_server=model_server.address, attribution=attribution.address) as mesh:
        model = mesh.model()
        assert "smollm2" in model.model_id.lower()
        prompts, targets = [p for p, _ in CASES], [t for _, t in CASES]
        outputs = KernelShap(model, granularity=Granularity.WORD, n_perturbations=100, seed=0)(prompts, targets)
        auc, detailed = Deletion(model, n_random_orders=20, seed=0).evaluate(outputs)

    print(f"\nKernelShap (WORD, n_perturbations=100) on {model.model_id}: Deletion AUC (lower is better)")
    print(f"{'prompt':62s} {'target':12s} {'p(target)':>9s} {'AUC':>7s} {'random':>7s}")
    for (prompt, target), out, m in zip(CASES, outputs, detailed, strict=True):
        print(f"{prompt!r:62s} {target!r:12s} {float(out.target_scores[-1]):9.4f} {m.auc:7.4f} {m.random_auc:7.4f}")
    print(f"{'mean':62s} {'':12s} {'':9s} {auc:7.4f} {detailed.random_auc:7.4f}")
    print(f"beats random on {sum(bool(m.beats_random) for m in detailed)}/{len(detailed)} prompts")

    assert np.isfinite(auc) and detailed.random_auc is not None
    assert auc < detailed.random_auc, (auc, detailed.random_auc)
