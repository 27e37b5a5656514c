"""interpreto's concept fits on a stored activation matrix, in process (the large-set subset benchmark).

Runs INSIDE the interpreto venv (benchmarks/reference_env.py), never in the main one:

    ~/.cache/xaimesh/bench-interpreto/venv/bin/python benchmarks/reference_interpreto_concepts.py \
        --data subset.npy --nb-concepts 20 --max-iterations 50 --out result.json

interpreto's concept explainers (SemiNMFConcepts, NMFConcepts, ICAConcepts, ...) hold a model splitter and
call their concept model's ``fit(activations)``; no model is needed to fit on given activations, so this
calls those concept models directly (the vendored overcomplete optimisers and interpreto's scikit-learn
wrappers), with ``max_iter`` where the fit takes one. Each method: one timed fit, then the mean squared
error per element of encode -> decode over all rows (float64). A method that fails records its error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
import traceback
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


def _mse(model, A: torch.Tensor, block: int = 20_000) -> float:
    sse = 0.0
    for i in range(0, A.shape[0], block):
        x = A[i:i + block]
        with torch.no_grad():
            rec = model.decode(model.encode(x))
        sse += float(((x.double() - rec.double()) ** 2).sum())
    return sse / A.numel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--nb-concepts", type=int, default=20)
    parser.add_argument("--max-iterations", type=int, default=50)
    parser.add_argument("--methods", default="SEMI_NMF,NMF,KMEANS,PCA,SVD,ICA")
    args = parser.parse_args()

    from interpreto._vendor.overcomplete import optimization as oc_opt
    from interpreto.concepts.methods import sklearn_wrappers as skw

    A = torch.from_numpy(np.load(args.data))
    n, d = A.shape
    k = args.nb_concepts
    builders = {
        "SEMI_NMF": lambda: (oc_opt.SemiNMF(nb_concepts=k, device="cpu"), {"max_iter": args.max_iterations}, A),
        "NMF": lambda: (oc_opt.NMF(nb_concepts=k, device="cpu"), {"max_iter": args.max_iterations}, A.clamp_min(0)),
        "KMEANS": lambda: (skw.KMeansWrapper(k, d), {}, A),
        "PCA": lambda: (skw.PCAWrapper(k, d), {}, A),
        "SVD": lambda: (skw.SVDWrapper(k, d), {}, A),
        "ICA": lambda: (skw.ICAWrapper(k, d), {}, A),
    }
    rows = {}
    for name in args.methods.split(","):
        try:
            torch.manual_seed(0)
            model, kwargs, data = builders[name]()
            started = time.perf_counter()
            model.fit(data, **kwargs)
            seconds = time.perf_counter() - started
            torch.manual_seed(0)
            rows[name] = {"seconds": seconds, "mse": _mse(model, data), "params": kwargs}
        except Exception as exc:  # noqa: BLE001 - recorded, the other methods still run
            rows[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-800:]}
        print(name, rows[name].get("seconds", rows[name].get("error")), flush=True)
    with open(args.out, "w") as f:
        json.dump({"version": importlib.metadata.version("interpreto"), "rows": rows, "shape": [n, d]}, f)


if __name__ == "__main__":
    main()
