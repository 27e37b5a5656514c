"""Tuned lens on SmolLM2-135M (the embedded model), in-process: KL(final || layer) of the
logit lens and the tuned lens on training and held-out texts, with interpreto's
defaults (1 epoch, learning rate 1e-3). About 7 minutes on one CPU thread:

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_tuned_lens.py

Figures: docs/lenses.md."""
import time
import numpy as np
from xaimesh.datasets import sample_texts
from xaimesh_model_server import engine
from xaimesh_model_server.loading import load_model

loaded = load_model("default", device="cpu")
texts = [t for t in sample_texts() if 8 <= len(t.split()) <= 16]
train, held = texts[:24], texts[100:112]
t0 = time.perf_counter()
fit = None
for event in engine.fit_lens_translators(loaded, train, held, epochs=1, learning_rate=1e-3):
    if isinstance(event, engine.FittedTranslators):
        fit = event
    elif event.stage == "training" and event.done % 6 == 0:
        print(event.message, f"{time.perf_counter() - t0:.0f}s", flush=True)
print("seconds", round(time.perf_counter() - t0, 1), "train tokens", fit.train_tokens, "held-out tokens", fit.held_out_tokens)
for name, a, b in (("train", fit.train_kl_logit_lens, fit.train_kl_tuned_lens),
                   ("held-out", fit.held_out_kl_logit_lens, fit.held_out_kl_tuned_lens)):
    print(name, "mean over layers: logit", round(float(np.mean(a)), 3), "tuned", round(float(np.mean(b)), 3))
    for i in (0, 5, 10, 15, 20, 25, 29):
        print(f"  row {i:2d} {fit.layers[i]:<18} logit {a[i]:7.3f} tuned {b[i]:7.3f}")
