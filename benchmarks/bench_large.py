"""Activation sets larger than memory (issue 15): `make bench-large` runs it.

Two parts, on synthetic activations of hidden size 576 (SmolLM2's): each row is a
sparse non-negative mix of 64 fixed directions plus Gaussian noise and an offset
(deterministic per block of 10,000 rows, so the subset is the first rows of the
large set).

* ``subset`` (in process, default 100,000 rows = 230 MB): for every concept method
  with a streaming variant, xaimesh's exact in-memory fit against its streaming
  fit (forced, 64 MiB budget): objective of each (the MSE per element the fit
  reports) and their ratio (goal <= 1.02); fit times of xaimesh (both),
  scikit-learn's in-memory estimator where one exists, and interpreto 0.5.2
  (its concept models, in its own venv: benchmarks/reference_interpreto_concepts.py).
* ``large`` (default 1,000,000 rows = 2.3 GB): a real concept-service process
  (``xaimesh serve concept --memory-budget-bytes 1 GiB``): upload over gRPC,
  fit every method, with all per-model metrics and top examples of the first model fitted; the
  service's peak resident memory (VmHWM of /proc/<pid>/status) and its largest
  resident size during each step (sampled every 0.2 s). Goal: <= 1.5 GB.

Environment: XAIMESH_BENCH_LARGE_PARTS (subset,large), XAIMESH_BENCH_SUBSET_ROWS,
XAIMESH_BENCH_LARGE_ROWS, XAIMESH_BENCH_LARGE_METHODS (comma-separated), XAIMESH_BENCH_LARGE_OUT
(JSON results; default /tmp/xaimesh-bench-large.json). Results print as Markdown tables; the
figures go into docs/benchmarks.md by hand (a run takes about an hour on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HIDDEN = 576
ATOMS = 64
BLOCK = 10_000
K = 20
SEED = 0
SUBSET_BUDGET = 64 << 20
SERVICE_BUDGET = 1 << 30
RSS_GOAL = 1.5e9

#: Per method: options for both parts (iterations kept low enough for a 1M-row pass count on 2 cores).
OPTIONS = {
    "SEMI_NMF": {"max_iterations": 30},
    "NMF": {"max_iterations": 30, "relu_negative_inputs": True},
    "KMEANS": {"max_iterations": 30},
    "ICA": {},
    "SPARSE_PCA": {"max_iterations": 20},
    "PCA": {},
    "SVD": {},
    "CONVEX_NMF": {"max_iterations": 50},
    "DICTIONARY_LEARNING": {"max_iterations": 1, "batch_size": 1024},
    "SAE_TOPK": {"epochs": 1, "batch_size": 1024, "top_k": 4},
    "NEURONS_AS_CONCEPTS": {},
}
STREAMING_VARIANTS = ("SEMI_NMF", "NMF", "KMEANS", "ICA", "SPARSE_PCA")


def synthetic_rows(start: int, end: int) -> np.ndarray:
    """Rows [start, end) of the synthetic set (float32 [end - start, 576])."""
    base = np.random.default_rng([SEED, 1 << 30])
    atoms = base.standard_normal((ATOMS, HIDDEN)) / np.sqrt(HIDDEN) * 4
    offset = base.standard_normal(HIDDEN) * 0.5
    out = []
    for b in range(start // BLOCK, (end - 1) // BLOCK + 1):
        rng = np.random.default_rng([SEED, b])
        codes = rng.exponential(1.0, (BLOCK, ATOMS)) * (rng.random((BLOCK, ATOMS)) < 0.1)
        rows = codes @ atoms + offset + 0.3 * rng.standard_normal((BLOCK, HIDDEN))
        lo, hi = max(start, b * BLOCK) - b * BLOCK, min(end, (b + 1) * BLOCK) - b * BLOCK
        out.append(rows[lo:hi].astype(np.float32))
    return np.concatenate(out, 0)


def _mse(X: np.ndarray, rec: np.ndarray) -> float:
    return float(np.mean((X.astype(np.float64) - rec) ** 2))


def _sklearn_fit(name: str, X: np.ndarray):
    """(seconds, MSE of its own reconstruction) of scikit-learn's in-memory estimator, or None."""
    import warnings

    from sklearn import cluster, decomposition

    est = {
        "NMF": lambda: decomposition.NMF(K, init="random", random_state=SEED, max_iter=OPTIONS["NMF"]["max_iterations"]),
        "KMEANS": lambda: cluster.KMeans(K, n_init=1, random_state=SEED, max_iter=OPTIONS["KMEANS"]["max_iterations"]),
        "ICA": lambda: decomposition.FastICA(K, whiten="unit-variance", random_state=SEED),
        "SPARSE_PCA": lambda: decomposition.MiniBatchSparsePCA(K, random_state=SEED, max_iter=20),
        "PCA": lambda: decomposition.PCA(K),
        "SVD": lambda: decomposition.TruncatedSVD(K, algorithm="arpack"),
    }.get(name)
    if est is None:
        return None
    data = np.maximum(X, 0) if name == "NMF" else X
    model = est()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        model.fit(data)
        seconds = time.perf_counter() - started
    if name == "KMEANS":
        return seconds, float(model.inertia_) / data.size
    if name == "SPARSE_PCA":
        return seconds, _mse(data, model.transform(data) @ model.components_ + model.mean_)
    return seconds, _mse(data, model.inverse_transform(model.transform(data)))


def _interpreto(X: np.ndarray) -> dict | str:
    from benchmarks.reference_env import ensure_interpreto_venv

    python = ensure_interpreto_venv()
    if isinstance(python, str):
        return python
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        data, out = Path(tmp) / "subset.npy", Path(tmp) / "out.json"
        np.save(data, X)
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        env.pop("PYTHONPATH", None)
        done = subprocess.run([str(python), str(ROOT / "benchmarks" / "reference_interpreto_concepts.py"),
                               "--data", str(data), "--out", str(out), "--nb-concepts", str(K),
                               "--max-iterations", str(OPTIONS["SEMI_NMF"]["max_iterations"])],
                              capture_output=True, text=True, env=env, timeout=3600)
        if not out.exists():
            return f"interpreto run exited {done.returncode}: {(done.stderr or done.stdout)[-300:]}"
        return json.loads(out.read_text())


def run_subset(n_rows: int, methods: list[str]) -> list[dict]:
    from xaimesh_concept.methods import build_method

    X = synthetic_rows(0, n_rows)
    ref = _interpreto(X) if os.environ.get("XAIMESH_BENCH_REFERENCE", "1") != "0" else "XAIMESH_BENCH_REFERENCE=0"
    results = []
    for name in methods:
        if name not in STREAMING_VARIANTS:
            continue
        row = {"method": name, "rows": n_rows}
        for label, kwargs in (("in_memory", {}), ("streaming", {"streaming": True, "memory_budget_bytes": SUBSET_BUDGET})):
            m = build_method(name, K, {"seed": SEED, **OPTIONS[name]})
            started = time.perf_counter()
            m.fit(X, **kwargs)
            row[f"{label}_s"] = time.perf_counter() - started
            row[f"{label}_objective"] = float(m.final_loss_)
        row["ratio"] = row["streaming_objective"] / row["in_memory_objective"]
        sk = _sklearn_fit(name, X)
        if sk is not None:
            row["sklearn_s"], row["sklearn_objective"] = sk
        if isinstance(ref, dict) and "seconds" in ref["rows"].get(name, {}):
            row["interpreto_s"], row["interpreto_mse"] = ref["rows"][name]["seconds"], ref["rows"][name]["mse"]
        elif isinstance(ref, dict):
            row["interpreto_error"] = ref["rows"].get(name, {}).get("error", "not run")
        else:
            row["interpreto_error"] = ref
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


# ---------------------------------------------------------------------------
# the large set through a concept-service process
# ---------------------------------------------------------------------------
class RssWatch:
    """Largest resident size of a process per step, sampled every 0.2 s, and its VmHWM."""

    def __init__(self, pid: int):
        self.pid, self.step_max, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _status(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self):
        while not self._stop.wait(0.2):
            try:
                self.step_max = max(self.step_max, self._status("VmRSS"))
            except OSError:
                return

    def step(self) -> tuple[int, int]:
        """(largest RSS since the last call, VmHWM so far)."""
        got = max(self.step_max, self._status("VmRSS"))
        self.step_max = 0
        return got, self._status("VmHWM")

    def close(self):
        self._stop.set()


def _upload_requests(n_rows: int):
    from xaimesh_contracts.v1 import concept_pb2, tensor_pb2

    yield concept_pb2.UploadActivationSetRequest(
        header=concept_pb2.UploadActivationSetHeader(display_name=f"synthetic {n_rows} x {HIDDEN}"))
    total, offset = n_rows * HIDDEN * 4, 0
    for start in range(0, n_rows, BLOCK):
        data = synthetic_rows(start, min(start + BLOCK, n_rows)).tobytes()
        for i in range(0, len(data), 1 << 20):
            piece = data[i:i + (1 << 20)]
            chunk = tensor_pb2.TensorChunk(data=piece, byte_offset=offset, total_bytes=total,
                                           dtype=tensor_pb2.DATA_TYPE_FLOAT32)
            if offset == 0:
                chunk.shape.extend([n_rows, HIDDEN])
            offset += len(piece)
            yield concept_pb2.UploadActivationSetRequest(chunk=chunk)


def _last(stream, field: str):
    result = None
    for msg in stream:
        if msg.WhichOneof("event") == field:
            result = getattr(msg, field)
    return result


def run_large(n_rows: int, methods: list[str]) -> list[dict]:
    import grpc

    from xaimesh_concept.methods import build_method
    from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-large-service-", dir=os.environ.get("XAIMESH_BENCH_LARGE_DIR")) as tmp:
        ready = Path(tmp) / "ready.json"
        log_path = Path(tmp) / "concept.log"
        command = [sys.executable, "-m", "xaimesh_runtime.cli", "serve", "concept", "--host", "127.0.0.1",
                   "--port", "0", "--metrics-port", "0", "--ready-file", str(ready), "--data-dir", str(Path(tmp) / "data"),
                   "--device", "cpu", "--memory-budget-bytes", str(SERVICE_BUDGET)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 180
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"concept-service did not start:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            port = json.loads(ready.read_text())["port"]
            channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)])
            stub = concept_pb2_grpc.ConceptServiceStub(channel)
            watch = RssWatch(proc.pid)

            def record(step: str, seconds: float, **extra):
                peak, hwm = watch.step()
                row = {"step": step, "rows": n_rows, "seconds": seconds, "rss_peak_bytes": peak, "vmhwm_bytes": hwm, **extra}
                print(json.dumps(row), flush=True)
                results.append(row)

            def measure(target: str):
                started = time.perf_counter()
                result = _last(stub.ComputeConceptMetrics(concept_pb2.ComputeConceptMetricsRequest(
                    concept_models=[target], source=concept_pb2.ActivationSource(
                        activation_set=concept_pb2.ActivationSetRange(name=info.name)))), "result")
                values = {concept_pb2.ConceptMetric.Name(v.metric)[len("CONCEPT_METRIC_"):]: v.value
                          for v in result.values}
                record(f"all per-model metrics of {target}", time.perf_counter() - started, metrics=values)
                started = time.perf_counter()
                count = sum(1 for _ in stub.GetTopExamples(concept_pb2.GetTopExamplesRequest(
                    concept_model=target, activation_set=info.name, k=10)))
                record(f"top examples (k=10, TOP) of {target}", time.perf_counter() - started, messages=count)

            record("idle after start", 0.0)
            started = time.perf_counter()
            info = stub.UploadActivationSet(_upload_requests(n_rows)).set
            record("upload (gRPC, 1 MiB chunks)", time.perf_counter() - started, size_bytes=info.size_bytes)
            measured = False
            for name in methods:
                opts = dict(OPTIONS[name])
                request = concept_pb2.FitConceptModelRequest(
                    activation_set=info.name, method=concept_pb2.ConceptMethod.Value(f"CONCEPT_METHOD_{name}"),
                    nb_concepts=0 if name == "NEURONS_AS_CONCEPTS" else K,
                    options=concept_pb2.ConceptFitOptions(seed=SEED, **opts))
                started = time.perf_counter()
                try:
                    model = _last(stub.FitConceptModel(request), "model")
                except grpc.RpcError as exc:
                    record(f"fit {name}", time.perf_counter() - started, error=f"{exc.code().name}: {exc.details()}")
                    continue
                path = "streaming" if build_method(name, max(model.nb_concepts, 1), opts).use_streaming(
                    n_rows, HIDDEN, SERVICE_BUDGET) else "in-memory / one algorithm"
                record(f"fit {name}", time.perf_counter() - started, objective=model.final_loss, path=path)
                if not measured:  # metrics and examples of the first model, before the other fits
                    measure(model.name)
                    measured = True
            watch.close()
            channel.close()
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return results


def _gb(b) -> str:
    return f"{b / 1e9:.2f} GB"


def print_tables(subset: list[dict], large: list[dict]) -> None:
    if subset:
        print("\n| method | rows | in-memory fit | objective | streaming fit | objective | ratio (goal ≤ 1.02) "
              "| scikit-learn fit | objective | interpreto fit | interpreto MSE |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in subset:
            sk = (f"{r['sklearn_s']:.2f} s | {r['sklearn_objective']:.5f}" if "sklearn_s" in r else "— | —")
            it = (f"{r['interpreto_s']:.2f} s | {r['interpreto_mse']:.5f}" if "interpreto_s" in r
                  else f"— | {r.get('interpreto_error', '—')[:60]}")
            print(f"| {r['method']} | {r['rows']:,} | {r['in_memory_s']:.2f} s | {r['in_memory_objective']:.5f} | "
                  f"{r['streaming_s']:.2f} s | {r['streaming_objective']:.5f} | {r['ratio']:.4f} | {sk} | {it} |")
    if large:
        print("\n| step | rows | time | largest RSS in step | service peak RSS so far (VmHWM) | notes |")
        print("|---|---|---|---|---|---|")
        for r in large:
            notes = r.get("error") or (f"{r['path']}; objective {r['objective']:.5f}" if "objective" in r else "")
            if "metrics" in r:
                notes = ", ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items())
            print(f"| {r['step']} | {r['rows']:,} | {r['seconds']:.1f} s | {_gb(r['rss_peak_bytes'])} | "
                  f"{_gb(r['vmhwm_bytes'])} | {notes} |")
        hwm = max(r["vmhwm_bytes"] for r in large)
        print(f"\nservice peak RSS {_gb(hwm)}: goal ≤ 1.5 GB {'met' if hwm <= RSS_GOAL else 'MISSED'}")


def main() -> None:
    parts = os.environ.get("XAIMESH_BENCH_LARGE_PARTS", "subset,large").split(",")
    methods = os.environ.get("XAIMESH_BENCH_LARGE_METHODS", ",".join(OPTIONS)).split(",")
    subset = run_subset(int(os.environ.get("XAIMESH_BENCH_SUBSET_ROWS", 100_000)), methods) if "subset" in parts else []
    large = run_large(int(os.environ.get("XAIMESH_BENCH_LARGE_ROWS", 1_000_000)), methods) if "large" in parts else []
    out = os.environ.get("XAIMESH_BENCH_LARGE_OUT", "/tmp/xaimesh-bench-large.json")
    Path(out).write_text(json.dumps({"subset": subset, "large": large}, indent=1))
    print_tables(subset, large)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
