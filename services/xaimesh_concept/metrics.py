"""Concept metrics, computed chunk by chunk.

Definitions (X: activations [n, d], X_hat = decode(encode(X)), C = encode(X)
[n, k]; "non-zero" means exactly != 0):

=================== ==========================================================
MSE                 sum((X - X_hat)^2) / (n * d)  (mean over elements)
LP                  (sum |X - X_hat|^p)^(1/p) over every element (p >= 1,
                    the request's lp_p; FROBENIUS when p = 2). On request.
AVERAGE_LP          mean over the n rows of ||x - x_hat||_p. On request.
FROBENIUS           ||X - X_hat||_F, un-normalised (the reference toolkit's
                    "MSE"). MSE = FROBENIUS^2 / (n * d).
EXPLAINED_VARIANCE  1 - FVU = 1 - ||X - X_hat||^2 / ||X - mean(X)||^2, the
                    mean taken per feature over the rows.
SPARSITY            fraction of non-zero codes: nnz(C) / (n * k).
SPARSITY_RATIO      SPARSITY / (nnz(X) / (n * d)): density of the codes
                    relative to the density of the activations (as in the
                    proto; the reference toolkit divides by k instead).
L0                  mean number of non-zero codes per row: nnz(C) / n.
DEAD_CONCEPTS       fraction of the k concepts that are zero on every row.
FID                 mean over the d features of the 1-D Wasserstein-1
                    distance between the empirical distributions of X[:, j]
                    and X_hat[:, j]; with equal sample sizes it is exactly
                    mean_i |sort(X[:, j])_i - sort(X_hat[:, j])_i|.
AVERAGE_EUCLIDEAN   mean over the n rows of ||x - x_hat||_2.
COSINE_DISTANCE     1 - <X, X_hat>_F / (||X||_F ||X_hat||_F) (the matrices
                    taken as flat vectors; NaN when either is all zeros).
STABILITY           for >= 2 dictionaries: per pair, rows are L2-normalised,
                    |cosine| matrix, Hungarian matching (maximise), mean of
                    the matched |cosines| (over min(k1, k2) pairs); the value
                    is the mean over all pairs. 1 = identical up to
                    permutation and sign. (The reference toolkit uses the
                    signed cosine; PCA/ICA/SVD directions have arbitrary
                    signs, hence |cos|.)
STABILITY_MAX       as STABILITY, but each row of the first dictionary of a
                    pair (in request order) takes its largest |cosine| with
                    the second: mean_i max_j |cos(D1_i, D2_j)|.
=================== ==========================================================

SPARSITY, SPARSITY_RATIO (its numerator), L0 and DEAD_CONCEPTS count a code
as active when |c| > epsilon (default 0: non-zero).

Every definition, with the reference toolkit's: docs/concept-metrics.md.

Memory: every metric but FID keeps O(d + k) accumulators. FID needs whole
columns: when 2 * n * d * 4 bytes fit in ``fid_memory_bytes`` (default
256 MiB) the columns are kept in RAM, otherwise X and X_hat are spilled to
two temporary float32 files (in ``tmp_dir``) stored column by column
(written and read with positioned I/O, not memory-mapped, so the process
holds one block only) and sorted a block of features at a time, the block
sized to ``fid_memory_bytes``; the result is exact either way.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile

import numpy as np

from xaimesh_contracts.v1 import concept_pb2
from xaimesh_runtime.errors import Cancelled, InvalidArgument

from .common import Progress, enum_key
from .data import as_source, rows_per_chunk

PER_MODEL_METRICS = ("MSE", "FROBENIUS", "EXPLAINED_VARIANCE", "SPARSITY", "SPARSITY_RATIO", "L0",
                     "DEAD_CONCEPTS", "FID", "AVERAGE_EUCLIDEAN", "COSINE_DISTANCE")
#: Per-model metrics computed only when asked for (with p = 2 they repeat FROBENIUS / AVERAGE_EUCLIDEAN).
ON_REQUEST_METRICS = ("LP", "AVERAGE_LP")
#: Metrics of several models' dictionaries (no activations), with the matching of each.
DICTIONARY_METRICS = {"STABILITY": "HUNGARIAN", "STABILITY_MAX": "MAXIMUM"}
ALL_METRICS = PER_MODEL_METRICS + ON_REQUEST_METRICS + tuple(DICTIONARY_METRICS)


def check_metric_parameters(lp_p: float, epsilon: float) -> tuple[float, float]:
    """(p, epsilon) of a request, defaults filled (p 0 = 2); INVALID_ARGUMENT when out of range."""
    lp_p = 2.0 if not lp_p else float(lp_p)
    if not np.isfinite(lp_p) or lp_p < 1:
        raise InvalidArgument(f"lp_p must be a finite number >= 1 (0 = 2), got {lp_p}", field="lp_p")
    epsilon = float(epsilon or 0.0)
    if not np.isfinite(epsilon) or epsilon < 0:
        raise InvalidArgument(f"activation_epsilon must be a finite number >= 0, got {epsilon}",
                              field="activation_epsilon")
    return lp_p, epsilon


def normalize_metric_name(name) -> str:
    """A metric's key ("MSE") from a ConceptMetric number or name."""
    key = enum_key(concept_pb2.ConceptMetric, name, "metrics", what="concept metric")
    if key not in ALL_METRICS:  # UNSPECIFIED, or a contract value this service does not compute
        raise InvalidArgument(f"unknown concept metric {name!r}; choose among {list(ALL_METRICS)}",
                              field="metrics")
    return key


class MetricAccumulator:
    """Streaming accumulator of the per-model metrics for one model.

    Feed ``update(X_chunk, codes_chunk, X_hat_chunk)`` in row order, then
    ``result()``.
    """

    def __init__(self, n_features: int, nb_concepts: int, metrics=PER_MODEL_METRICS, *,
                 n_rows_hint: int | None = None, fid_memory_bytes: int = 256 << 20,
                 tmp_dir: str | None = None, lp_p: float = 2.0, epsilon: float = 0.0):
        self.metrics = tuple(metrics)
        self.lp_p, self.epsilon = lp_p, epsilon
        self.lp_sum = 0.0  # sum |x - x_hat|^p over every element
        self.row_lp = 0.0  # sum over rows of ||x - x_hat||_p
        self.d, self.k = int(n_features), int(nb_concepts)
        self.n = 0
        self.sse = 0.0
        self.row_norms = 0.0  # sum over rows of ||x - x_hat||_2
        self.dot = self.sq_x = self.sq_r = 0.0  # <X, X_hat>, ||X||^2, ||X_hat||^2
        self.nnz_x = 0
        self.nnz_c = 0
        self.mean = np.zeros(self.d, np.float64)
        self.m2 = np.zeros(self.d, np.float64)
        self.fired = np.zeros(self.k, bool)
        self._fid = "FID" in self.metrics
        self._fid_mem = fid_memory_bytes
        self._tmp_dir = tmp_dir
        self._fid_x: list[np.ndarray] = []
        self._fid_r: list[np.ndarray] = []
        self._spill = None
        if self._fid and n_rows_hint is not None and 2 * n_rows_hint * self.d * 4 > fid_memory_bytes:
            self._open_spill(n_rows_hint)

    # -- FID storage -----------------------------------------------------------
    def _open_spill(self, n_rows: int):
        self._spill_dir = tempfile.mkdtemp(prefix="fid-", dir=self._tmp_dir)
        self._spill = (_ColumnFile(os.path.join(self._spill_dir, "x.f32"), max(n_rows, 1), self.d),
                       _ColumnFile(os.path.join(self._spill_dir, "r.f32"), max(n_rows, 1), self.d))
        self._spill_rows = n_rows

    def close(self):
        if self._spill is not None:
            for f in self._spill:
                f.close()
            self._spill = None
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- accumulation ----------------------------------------------------------
    def update(self, X: np.ndarray, codes: np.ndarray, X_hat: np.ndarray) -> None:
        X = np.asarray(X)
        nb = X.shape[0]
        if nb == 0:
            return
        x64 = X.astype(np.float64)
        diff = x64 - X_hat.astype(np.float64)
        self.sse += float(np.einsum("ij,ij->", diff, diff))
        self.row_norms += float(np.sqrt(np.einsum("ij,ij->i", diff, diff)).sum())
        if "LP" in self.metrics or "AVERAGE_LP" in self.metrics:
            powered = np.abs(diff) ** self.lp_p
            self.lp_sum += float(powered.sum())
            self.row_lp += float((powered.sum(1) ** (1.0 / self.lp_p)).sum())
        r64 = X_hat.astype(np.float64)
        self.dot += float(np.einsum("ij,ij->", x64, r64))
        self.sq_x += float(np.einsum("ij,ij->", x64, x64))
        self.sq_r += float(np.einsum("ij,ij->", r64, r64))
        self.nnz_x += int(np.count_nonzero(X))
        nzc = np.abs(codes) > self.epsilon
        self.nnz_c += int(nzc.sum())
        self.fired |= nzc.any(0)
        mb = x64.mean(0)
        m2b = ((x64 - mb) ** 2).sum(0)
        delta = mb - self.mean
        tot = self.n + nb
        self.mean += delta * nb / tot
        self.m2 += m2b + delta ** 2 * self.n * nb / tot
        if self._fid:
            if self._spill is not None:
                if tot > self._spill_rows:
                    raise InvalidArgument("more rows than announced to the metric accumulator")
                self._spill[0].write_rows(self.n, X)
                self._spill[1].write_rows(self.n, X_hat)
            else:
                self._fid_x.append(np.asarray(X, np.float32))
                self._fid_r.append(np.asarray(X_hat, np.float32))
                if 2 * tot * self.d * 4 > self._fid_mem:
                    # switch to disk: unknown final size, grow by doubling
                    self._grow_spill(tot)
        self.n = tot

    def _grow_spill(self, needed: int):
        old = self._spill
        old_dir = getattr(self, "_spill_dir", None)
        cap = max(needed * 2, 1024)
        self._open_spill(cap)
        if old is not None:
            for new_file, old_file in zip(self._spill, old):
                for f0 in range(0, self.d, 64):
                    new_file.write_rows(0, old_file.read_columns(f0, min(f0 + 64, self.d), self.n).T, f0)
                old_file.close()
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            xs = np.concatenate(self._fid_x, 0)
            rs = np.concatenate(self._fid_r, 0)
            self._spill[0].write_rows(0, xs)
            self._spill[1].write_rows(0, rs)
            self._fid_x, self._fid_r = [], []

    def _fid_value(self) -> float:
        n, d = self.n, self.d
        if n == 0:
            return float("nan")
        if self._spill is not None:
            xf, rf = self._spill
            block = max(1, self._fid_mem // max(1, n * (4 + 8) * 2))

            def columns(f0, f1):
                return xf.read_columns(f0, f1, n).T, rf.read_columns(f0, f1, n).T
        else:
            xs = np.concatenate(self._fid_x, 0)
            rs = np.concatenate(self._fid_r, 0)
            block = max(1, (64 << 20) // max(1, n * 8 * 2))

            def columns(f0, f1):
                return xs[:n, f0:f1], rs[:n, f0:f1]
        total = 0.0
        for f0 in range(0, d, block):
            xcols, rcols = columns(f0, min(f0 + block, d))
            a = np.sort(np.asarray(xcols, np.float64), axis=0)
            b = np.sort(np.asarray(rcols, np.float64), axis=0)
            total += float(np.abs(a - b).mean(0).sum())
        return total / d

    def result(self) -> dict[str, float]:
        n, d, k = self.n, self.d, self.k
        out: dict[str, float] = {}
        nan = float("nan")
        for m in self.metrics:
            if m == "MSE":
                out[m] = self.sse / (n * d) if n else nan
            elif m == "FROBENIUS":
                out[m] = float(np.sqrt(self.sse))
            elif m == "EXPLAINED_VARIANCE":
                tv = float(self.m2.sum())
                out[m] = 1.0 - self.sse / tv if tv > 0 else (1.0 if self.sse == 0 else nan)
            elif m == "SPARSITY":
                out[m] = self.nnz_c / (n * k) if n else nan
            elif m == "SPARSITY_RATIO":
                dens_x = self.nnz_x / (n * d) if n else 0.0
                out[m] = (self.nnz_c / (n * k)) / dens_x if dens_x > 0 else nan
            elif m == "L0":
                out[m] = self.nnz_c / n if n else nan
            elif m == "DEAD_CONCEPTS":
                out[m] = float((~self.fired).mean()) if k else nan
            elif m == "FID":
                out[m] = self._fid_value()
            elif m == "AVERAGE_EUCLIDEAN":
                out[m] = self.row_norms / n if n else nan
            elif m == "LP":
                out[m] = self.lp_sum ** (1.0 / self.lp_p)
            elif m == "AVERAGE_LP":
                out[m] = self.row_lp / n if n else nan
            elif m == "COSINE_DISTANCE":
                norms = np.sqrt(self.sq_x * self.sq_r)
                out[m] = 1.0 - self.dot / norms if norms > 0 else nan
        return out


class _ColumnFile:
    """A float32 [n_rows, width] matrix on disk stored column by column (the
    rows of column j at byte (j * n_rows + i) * 4), written by row blocks and
    read by column blocks with positioned I/O."""

    def __init__(self, path: str, n_rows: int, width: int):
        self.path, self.n_rows, self.width = path, int(n_rows), int(width)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, self.n_rows * self.width * 4)

    def write_rows(self, start: int, rows: np.ndarray, col0: int = 0) -> None:
        """Rows [start, start + len(rows)) of columns [col0, col0 + rows.shape[1])."""
        cols = np.ascontiguousarray(np.asarray(rows, np.float32).T)  # [columns, nb]
        for j in range(cols.shape[0]):
            os.pwrite(self._fd, cols[j].tobytes(), ((col0 + j) * self.n_rows + int(start)) * 4)

    def read_columns(self, f0: int, f1: int, n: int) -> np.ndarray:
        """Columns [f0, f1) of the first n rows, as [f1 - f0, n]."""
        out = np.empty((f1 - f0, n), np.float32)
        for j in range(f0, f1):
            view = memoryview(out[j - f0].view(np.uint8))
            got, pos = 0, j * self.n_rows * 4
            while got < len(view):
                got += os.preadv(self._fd, [view[got:]], pos + got)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def compute_metrics(model, X, metrics=None, *, chunk_rows: int | None = None, progress=None,
                    should_stop=None, fid_memory_bytes: int = 256 << 20,
                    tmp_dir: str | None = None, lp_p: float = 2.0, epsilon: float = 0.0) -> dict[str, float]:
    """Per-model metrics of a fitted concept method over a row source.

    ``metrics``: names (default: every per-model metric but the on-request
    ones). ``lp_p``: p of LP / AVERAGE_LP; ``epsilon``: the activity
    threshold of the codes. ``progress`` receives Progress(stage="metrics",
    done=rows, total=rows).
    """
    lp_p, epsilon = check_metric_parameters(lp_p, epsilon)
    names = [normalize_metric_name(m) for m in (metrics or PER_MODEL_METRICS)]
    several = [m for m in names if m in DICTIONARY_METRICS]
    if several:
        raise InvalidArgument(f"{several[0]} compares several models; use stability([...])", field="metrics")
    source = as_source(X)
    if source.n_features != model.hidden_size_:
        raise InvalidArgument(
            f"activations have hidden size {source.n_features} but the concept model was fitted on "
            f"hidden size {model.hidden_size_}", field="source")
    acc = MetricAccumulator(source.n_features, model.nb_concepts, names, n_rows_hint=source.n_rows,
                            fid_memory_bytes=fid_memory_bytes, tmp_dir=tmp_dir, lp_p=lp_p, epsilon=epsilon)
    try:
        rows_n = chunk_rows or rows_per_chunk(max(source.n_features, model.nb_concepts))
        for start, rows in source.iter_chunks(rows_n):
            if should_stop is not None and should_stop():
                raise Cancelled("the metric computation was cancelled")
            codes = model.encode(rows)
            rec = model.decode(codes)
            acc.update(rows, codes, rec)
            if progress is not None:
                progress(Progress("metrics", start + rows.shape[0], source.n_rows))
        return acc.result()
    finally:
        acc.close()


def metrics_from_arrays(X, codes, X_hat, metrics=None, *, lp_p: float = 2.0, epsilon: float = 0.0
                        ) -> dict[str, float]:
    """The same metrics on in-memory arrays (for tests / small inputs)."""
    names = [normalize_metric_name(m) for m in (metrics or PER_MODEL_METRICS)]
    lp_p, epsilon = check_metric_parameters(lp_p, epsilon)
    X = np.asarray(X, np.float32)
    acc = MetricAccumulator(X.shape[1], np.asarray(codes).shape[1], names, lp_p=lp_p, epsilon=epsilon)
    acc.update(X, np.asarray(codes), np.asarray(X_hat, np.float32))
    return acc.result()


def stability(dictionaries, progress=None, matching: str = "HUNGARIAN") -> float:
    """Mean matched |cosine| between >= 2 dictionaries [k_i, d], averaged over
    the pairs: HUNGARIAN (one-to-one, STABILITY) or MAXIMUM (each row of the
    first dictionary to its best row of the second, STABILITY_MAX)."""
    from scipy.optimize import linear_sum_assignment

    dicts = [np.asarray(D, np.float64) for D in dictionaries]
    if len(dicts) < 2:
        raise InvalidArgument("STABILITY / STABILITY_MAX need at least 2 concept models", field="concept_models")
    d0 = dicts[0].shape[1]
    for i, D in enumerate(dicts):
        if D.ndim != 2 or D.shape[1] != d0:
            raise InvalidArgument(
                f"STABILITY / STABILITY_MAX compare dictionaries of the same hidden size: model 0 has {d0}, "
                f"model {i} has {D.shape[1] if D.ndim == 2 else D.shape}", field="concept_models")
    normed = [D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-12) for D in dicts]
    pairs = list(itertools.combinations(range(len(normed)), 2))
    scores = []
    for j, (a, b) in enumerate(pairs):
        sim = np.abs(normed[a] @ normed[b].T)
        if matching == "MAXIMUM":
            scores.append(float(sim.max(1).mean()))
        else:
            r, c = linear_sum_assignment(sim, maximize=True)
            scores.append(float(sim[r, c].mean()))
        if progress is not None:
            progress(Progress("stability", j + 1, len(pairs)))
    return float(np.mean(scores))
