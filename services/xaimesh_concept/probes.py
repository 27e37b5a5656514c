"""Supervised linear probes on activation sets (FitProbe; docs/probes.md).

A probe maps activations x to one score per concept, s_j = x . w_j + b_j,
"present" when s_j > 0, fitted from 0 / 1 labels:

1. the rows are split (seeded) into training rows and ``test_fraction``
   held-out rows; every concept needs a positive and a negative training row;
2. a normalisation x' = (x - m) M is fitted on the training rows (NONE,
   STANDARDIZATION M = diag(1 / std), WHITENING M = V diag(sqrt(n) / s)
   from the SVD of the centred rows);
3. the direction and intercept are fitted on x' by the probe method
   (LINEAR_REGRESSION, MEANS_DIFF, LOGISTIC_REGRESSION, LINEAR_SVM), then the
   intercept is replaced by the bias calibration when one is asked for;
4. the probe is folded back to the raw activations, W = M w and
   b' = b - m M w, stored as a LINEAR_PROBE concept model, and measured on
   the training and held-out rows (accuracy, balanced accuracy, ROC AUC).

Centroid probes (PROBE_METHOD_CENTROID_*) share steps 1, 2 and 4: on the
normalised training rows, c_j is the mean of concept j's positive rows and
the score compares a row with c_j (methods/probe.centroid_similarity); the
bias is the calibration's (0 without one; SVDD: the fitted squared radius).
They are stored as CENTROID_PROBE concept models.

The methods, normalisations and calibrations are interpreto 0.5.2's linear
and centroid probes; the differences are listed in docs/probes.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from xaimesh_runtime.errors import Cancelled, InvalidArgument, ResourceExhausted

from .common import LogEntry, numpy_rng
from .methods.base import ConceptMethod
from .methods.probe import CENTROID_METRICS, CentroidProbe, LinearProbe, centroid_similarity

LINEAR_METHODS = ("LINEAR_REGRESSION", "MEANS_DIFF", "LOGISTIC_REGRESSION", "LINEAR_SVM")
CENTROID_PREFIX = "CENTROID_"
METHODS = LINEAR_METHODS + tuple(CENTROID_PREFIX + m for m in CENTROID_METRICS)
NORMALIZATIONS = ("NONE", "STANDARDIZATION", "WHITENING")
CALIBRATIONS = ("", "PREVALENCE", "MIDPOINT", "FPR", "BCE", "LDA")
DEFAULT_TEST_FRACTION = 0.2
MAX_TEST_FRACTION = 0.9
DEFAULT_LEARNING_RATE = 1e-2
DEFAULT_MAX_ITERATIONS = 100
#: CENTROID_SVDD's defaults (interpreto's SVDDCentroidProbe).
SVDD_LEARNING_RATE = 5e-2
SVDD_MAX_ITERATIONS = 20
MAX_ITERATIONS = 100_000
#: False-positive rate of the FPR calibration (interpreto's default).
TARGET_FPR = 0.01
#: A fit holds the rows in memory in float64: larger sets are refused up front.
MAX_FIT_BYTES = 4 << 30
_EPS = 1e-8


@dataclass
class ProbeSettings:
    """Zero / empty values mean the method's default; `check()` fills them in."""

    method: str = "LOGISTIC_REGRESSION"
    normalization: str = ""  # NONE (CENTROID_DIAGONAL_MAHALANOBIS: STANDARDIZATION)
    bias_calibration: str = ""  # "" = the method's own intercept
    l2: float = 0.0
    learning_rate: float = 0.0
    max_iterations: int = 0
    test_fraction: float = DEFAULT_TEST_FRACTION
    seed: int = 0
    shrinkage: float = 1.0  # CENTROID_DIAGONAL_MAHALANOBIS
    svdd_c: float = 1.0  # CENTROID_SVDD

    @property
    def centroid_metric(self) -> str | None:
        """The CENTROID_PROBE metric of a centroid method, else None."""
        return self.method[len(CENTROID_PREFIX):] if self.method.startswith(CENTROID_PREFIX) else None

    def check(self) -> "ProbeSettings":
        if self.method not in METHODS:
            raise InvalidArgument(f"unknown probe method {self.method!r}; use one of {list(METHODS)}", field="method")
        svdd = self.method == "CENTROID_SVDD"
        if not self.normalization:
            self.normalization = "STANDARDIZATION" if self.method == "CENTROID_DIAGONAL_MAHALANOBIS" else "NONE"
        self.learning_rate = self.learning_rate or (SVDD_LEARNING_RATE if svdd else DEFAULT_LEARNING_RATE)
        self.max_iterations = self.max_iterations or (SVDD_MAX_ITERATIONS if svdd else DEFAULT_MAX_ITERATIONS)
        if svdd and self.bias_calibration:
            raise InvalidArgument("CENTROID_SVDD's bias is its fitted squared radius: leave bias_calibration unset",
                                  field="bias_calibration")
        if not (math.isfinite(self.shrinkage) and 0 <= self.shrinkage <= 1):
            raise InvalidArgument(f"shrinkage must be in [0, 1], got {self.shrinkage}", field="shrinkage")
        if not (math.isfinite(self.svdd_c) and self.svdd_c > 0):
            raise InvalidArgument(f"svdd_c must be a finite number > 0, got {self.svdd_c}", field="svdd_c")
        if self.normalization not in NORMALIZATIONS:
            raise InvalidArgument(f"unknown normalization {self.normalization!r}; use one of {list(NORMALIZATIONS)}",
                                  field="normalization")
        if self.bias_calibration not in CALIBRATIONS:
            raise InvalidArgument(f"unknown bias calibration {self.bias_calibration!r}; use one of "
                                  f"{list(CALIBRATIONS[1:])} or none", field="bias_calibration")
        if not math.isfinite(self.l2) or self.l2 < 0:
            raise InvalidArgument(f"l2 must be a finite number >= 0, got {self.l2}", field="l2")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise InvalidArgument(f"learning_rate must be a finite number > 0 (0 = {DEFAULT_LEARNING_RATE}; "
                                  f"CENTROID_SVDD: {SVDD_LEARNING_RATE}), got {self.learning_rate}",
                                  field="learning_rate")
        if not 1 <= self.max_iterations <= MAX_ITERATIONS:
            raise InvalidArgument(f"max_iterations must be 1..{MAX_ITERATIONS} (0 = {DEFAULT_MAX_ITERATIONS}; "
                                  f"CENTROID_SVDD: {SVDD_MAX_ITERATIONS}), got {self.max_iterations}",
                                  field="max_iterations")
        if not (math.isfinite(self.test_fraction) and 0 <= self.test_fraction <= MAX_TEST_FRACTION):
            raise InvalidArgument(f"test_fraction must be in [0, {MAX_TEST_FRACTION}], got {self.test_fraction}",
                                  field="test_fraction")
        return self


@dataclass
class ConceptScores:
    accuracy: float
    balanced_accuracy: float
    auc: float
    positives: int
    negatives: int


@dataclass
class ProbeFit:
    concept_model: ConceptMethod  # LinearProbe or CentroidProbe, fitted
    weight: np.ndarray | None  # linear probes: float32 [hidden, concepts], raw activation space
    bias: np.ndarray | None  # linear probes: float32 [concepts]
    train: list[ConceptScores]
    test: list[ConceptScores]
    train_rows: int
    test_rows: int


def check_fits(n_rows: int, n_features: int) -> None:
    if n_rows * n_features * 8 > MAX_FIT_BYTES:
        raise ResourceExhausted(f"a probe fit holds the rows in memory: {n_rows} x {n_features} activations need "
                                f"{n_rows * n_features * 8 / 2**30:.1f} GiB, more than the "
                                f"{MAX_FIT_BYTES / 2**30:.0f} GiB allowed; fit on a smaller activation set",
                                field="activation_set")


def check_labels(labels: np.ndarray, n_rows: int) -> np.ndarray:
    """0 / 1 labels [rows] or [rows, concepts] -> float64 [rows, concepts]."""
    y = np.asarray(labels)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] == 0:
        raise InvalidArgument(f"labels must be [rows] or [rows, concepts], got shape {list(np.shape(labels))}",
                              field="labels")
    if y.shape[0] != n_rows:
        raise InvalidArgument(f"labels have {y.shape[0]} rows but the activation set has {n_rows}: give one "
                              "label per activation row", field="labels")
    if not np.all((y == 0) | (y == 1)):
        raise InvalidArgument("labels must hold only 0 and 1 (one binary label per row and concept)",
                              field="labels")
    return y.astype(np.float64)


def auc_score(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half); NaN with one class."""
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks of ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def concept_scores(scores: np.ndarray, y: np.ndarray) -> list[ConceptScores]:
    out = []
    for j in range(y.shape[1]):
        s, t = scores[:, j], y[:, j]
        pred = s > 0
        pos, neg = int(t.sum()), int(len(t) - t.sum())
        if len(t) == 0:
            out.append(ConceptScores(float("nan"), float("nan"), float("nan"), 0, 0))
            continue
        tpr = float(pred[t == 1].mean()) if pos else float("nan")
        tnr = float((~pred[t == 0]).mean()) if neg else float("nan")
        out.append(ConceptScores(float((pred == (t == 1)).mean()), float(np.nanmean([tpr, tnr])),
                                 auc_score(s, t), pos, neg))
    return out


# --------------------------------------------------------------------------- the steps


def fit_normalization(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(m, M) with x' = (x - m) M; M None for NONE (identity)."""
    if kind == "NONE":
        return torch.zeros(x.shape[1], dtype=x.dtype), None
    mean = x.mean(0)
    if kind == "STANDARDIZATION":
        return mean, torch.diag(1.0 / x.std(0, unbiased=False).clamp_min(_EPS))
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    inv_s = (math.sqrt(x.shape[0]) / s).clamp_max(1.0 / _EPS)
    return mean, vh.T * inv_s


def calibrate(kind: str, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The intercept [concepts] of a calibration, given the scores without intercept."""
    pos = y.sum(0).clamp_min(_EPS)
    neg = (1 - y).sum(0).clamp_min(_EPS)
    mu1 = (scores * y).sum(0) / pos
    mu0 = (scores * (1 - y)).sum(0) / neg
    if kind == "PREVALENCE":
        p = y.mean(0).clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p))
    if kind == "MIDPOINT":
        return -0.5 * (mu1 + mu0)
    if kind == "FPR":
        negatives = scores.masked_fill(y > 0.5, float("inf")).sort(0).values
        index = torch.floor(((1 - y).sum(0).clamp_min(1) - 1) * (1 - TARGET_FPR)).long()
        return -negatives.gather(0, index[None])[0]
    if kind == "BCE":
        b = calibrate("PREVALENCE", scores, y).clone().requires_grad_(True)
        opt = torch.optim.LBFGS([b], max_iter=50, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(scores + b, y)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return b.detach()
    # LDA: Gaussian classes with a shared variance and the empirical priors.
    var = scores.var(0, unbiased=False).clamp_min(1e-6)
    pi1 = (pos / (pos + neg)).clamp(_EPS, 1 - _EPS)
    gap = mu1 - mu0
    gap = gap.sign() * gap.abs().clamp_min(_EPS)
    return -(0.5 * (mu0 + mu1) + var / gap * torch.log((1 - pi1) / pi1))


def _means_diff(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mu1 = (y.T @ x) / y.sum(0).clamp_min(_EPS)[:, None]
    mu0 = ((1 - y).T @ x) / (1 - y).sum(0).clamp_min(_EPS)[:, None]
    return (mu1 - mu0).T


def fit_direction(x: torch.Tensor, y: torch.Tensor, s: ProbeSettings, log, should_stop
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(w [features, concepts], b [concepts]) on the normalised training rows."""
    n, d = x.shape
    if s.method == "LINEAR_REGRESSION":
        # Targets -1 / +1 (interpreto: 0 / 1), so that the decision s > 0 is the midpoint of the classes.
        target = 2 * y - 1
        xa = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], 1)
        if s.l2 == 0:
            wa = torch.linalg.pinv(xa) @ target
        else:
            penalty = torch.ones(d + 1, dtype=x.dtype)
            penalty[-1] = 0  # the intercept is not penalised
            wa = torch.linalg.solve(xa.T @ xa + s.l2 * torch.diag(penalty), xa.T @ target)
        return wa[:d], wa[d]
    w = _means_diff(x, y)
    if s.method == "MEANS_DIFF":
        return w, torch.zeros(y.shape[1], dtype=x.dtype)
    # Gradient descent from the means difference with the prevalence intercept.
    w = w.clone().requires_grad_(True)
    b = calibrate("PREVALENCE", x @ w.detach(), y).clone().requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=s.learning_rate)
    signed = 2 * y - 1
    every = max(1, s.max_iterations // 50)
    with torch.enable_grad():
        for step in range(1, s.max_iterations + 1):
            if should_stop is not None and should_stop():
                raise Cancelled("the probe fit was cancelled")
            opt.zero_grad()
            logits = x @ w + b
            if s.method == "LOGISTIC_REGRESSION":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            else:
                loss = (1 - signed * logits).clamp_min(0).mean()
            if s.l2 > 0:
                loss = loss + 0.5 * s.l2 * (w**2).sum()
            loss.backward()
            opt.step()
            if step % every == 0 or step == s.max_iterations:
                log(LogEntry(step=step, epoch=step, loss=float(loss.detach()), done=step, total=s.max_iterations))
    return w.detach(), b.detach()


def fit_centroids(x: torch.Tensor, y: torch.Tensor, s: ProbeSettings, log, should_stop
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(centroids [concepts, features], inverse variances [concepts, features]
    (ones unless DIAGONAL_MAHALANOBIS), SVDD's squared radii or None) on the
    normalised training rows (interpreto 0.5.2's centroid probes)."""
    metric = s.centroid_metric
    n_pos = y.sum(0)
    centroids = (y.T @ x) / n_pos[:, None].clamp_min(_EPS)
    inv_var = torch.ones_like(centroids)
    if metric == "COSINE":
        centroids = centroids / centroids.norm(dim=1, keepdim=True).clamp_min(_EPS)
    elif metric == "DIAGONAL_MAHALANOBIS":
        var = torch.zeros_like(centroids)
        if s.shrinkage > 0:
            var += s.shrinkage * x.var(0, unbiased=False)[None]
        if s.shrinkage < 1:
            var += (1 - s.shrinkage) * ((y.T @ (x * x)) / n_pos[:, None] - centroids * centroids)
        inv_var = 1.0 / var.clamp_min(_EPS)
    elif metric == "SVDD":
        return _fit_svdd(x, y, centroids, s, log, should_stop)
    return centroids, inv_var, None


def _fit_svdd(x: torch.Tensor, y: torch.Tensor, centroids: torch.Tensor, s: ProbeSettings, log, should_stop
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centres and squared radii minimising r^2 + C mean_pos relu(|x - a|^2 - r^2) + l2 / 2 |a|^2 (Adam),
    from the positive means and their mean squared distance (r^2 = softplus of a free parameter)."""
    n_pos = y.sum(0).clamp_min(1.0)
    x2 = (x * x).sum(1, keepdim=True)

    def distances(a: torch.Tensor) -> torch.Tensor:  # |x - a_j|^2 [rows, concepts], without a [rows, c, d] tensor
        return x2 + (a * a).sum(1)[None] - 2.0 * x @ a.T

    r2 = ((distances(centroids) * y).sum(0) / n_pos).clamp_min(_EPS)
    # softplus^-1(r2) = r2 + log(1 - exp(-r2)): stable where interpreto's log(expm1(r2)) overflows.
    log_r2 = (r2 + torch.log(-torch.expm1(-r2))).clone().requires_grad_(True)
    centres = centroids.clone().requires_grad_(True)
    opt = torch.optim.Adam([centres, log_r2], lr=s.learning_rate)
    with torch.enable_grad():
        for step in range(1, s.max_iterations + 1):
            if should_stop is not None and should_stop():
                raise Cancelled("the probe fit was cancelled")
            opt.zero_grad()
            radius = torch.nn.functional.softplus(log_r2)
            hinge = torch.relu(distances(centres) - radius[None])
            loss = (radius + s.svdd_c * (hinge * y).sum(0) / n_pos).mean()
            if s.l2 > 0:
                loss = loss + 0.5 * s.l2 * (centres * centres).sum()
            loss.backward()
            opt.step()
            log(LogEntry(step=step, epoch=step, loss=float(loss.detach()), done=step, total=s.max_iterations))
    return centres.detach(), torch.ones_like(centroids), torch.nn.functional.softplus(log_r2).detach()


def fit_probe(x: np.ndarray, labels: np.ndarray, settings: ProbeSettings, *, log=None,
              should_stop=None) -> ProbeFit:
    """Fits a probe on rows ``x`` [rows, hidden] with ``labels`` (see the module doc)."""
    s = settings.check()
    y_all = check_labels(labels, x.shape[0])
    n = x.shape[0]
    n_test = int(round(s.test_fraction * n))
    order = numpy_rng(s.seed).permutation(n)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    y_train = y_all[train]
    lacking = [j for j in range(y_all.shape[1]) if y_train[:, j].min() == y_train[:, j].max()]
    if lacking:
        j = lacking[0]
        which = "positive" if y_train[:, j].max() == 0 else "negative"
        raise InvalidArgument(f"concept {j} has no {which} row among the {len(train)} training rows: a probe "
                              "needs both (label more rows, or lower test_fraction)", field="labels")
    x64 = torch.from_numpy(np.asarray(x, np.float64))
    xt, yt = x64[train], torch.from_numpy(y_train)
    mean, transform = fit_normalization(xt, s.normalization)
    xn = xt - mean if transform is None else (xt - mean) @ transform
    log = log or (lambda entry: None)
    if s.centroid_metric is not None:
        model = _centroid_probe(xn, yt, mean, transform, xt, s, log, should_stop)
        weight = bias = None
        scores = model.encode(x).astype(np.float64)
    else:
        w, b = fit_direction(xn, yt, s, log, should_stop)
        if s.bias_calibration:
            b = calibrate(s.bias_calibration, xn @ w, yt)
        w_raw = w if transform is None else transform @ w
        b_raw = b - mean @ w_raw
        scores = (x64 @ w_raw + b_raw).numpy()
        weight, bias = w_raw.numpy().astype(np.float32), b_raw.numpy().astype(np.float32)
        model = LinearProbe.from_weights(weight, bias)
    return ProbeFit(concept_model=model, weight=weight, bias=bias,
                    train=concept_scores(scores[train], y_all[train]),
                    test=concept_scores(scores[test], y_all[test]), train_rows=len(train), test_rows=len(test))


def _centroid_probe(xn: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, transform: torch.Tensor | None,
                    x_raw: torch.Tensor, s: ProbeSettings, log, should_stop) -> CentroidProbe:
    centroids, inv_var, radii = fit_centroids(xn, y, s, log, should_stop)
    metric = s.centroid_metric
    if radii is not None:
        bias = radii
    elif s.bias_calibration:
        raw = centroid_similarity(metric, xn.numpy(), centroids.numpy(), inv_var.numpy())
        bias = calibrate(s.bias_calibration, torch.from_numpy(raw), y)
    else:
        bias = torch.zeros(y.shape[1], dtype=xn.dtype)
    M = torch.eye(xn.shape[1], dtype=xn.dtype) if transform is None else transform
    if radii is not None:  # SVDD moved its centres: back to activation space
        raw_centroids = centroids @ torch.linalg.pinv(M) + mean
    else:  # the normalisation is affine: the raw positive means are the centroids' positions
        raw_centroids = (y.T @ x_raw) / y.sum(0).clamp_min(_EPS)[:, None]
    return CentroidProbe.from_fit(metric, *(t.numpy().astype(np.float32) for t in (
        mean, M, centroids, inv_var, bias, raw_centroids, x_raw.mean(0))))
