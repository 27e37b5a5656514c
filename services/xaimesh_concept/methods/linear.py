"""Linear projections: PCA, truncated SVD (streaming) and ICA (scikit-learn).

PCA and SVD accumulate a d x d (float64) second-moment matrix chunk by
chunk (memory: d^2 * 8 bytes, never the rows), then take its top
eigenvectors. Component signs are fixed so that each component's entry of
largest magnitude is positive (deterministic).
"""

from __future__ import annotations

import numpy as np
import torch
from xaimesh_runtime.errors import Cancelled

from ..common import LogEntry, numpy_rng
from ..data import gather_rows, materialize, rows_per_chunk, sample_row_indices
from .base import ConceptMethod, mse_of, register


def _fix_signs(V: np.ndarray) -> np.ndarray:
    idx = np.abs(V).argmax(1)
    signs = np.sign(V[np.arange(V.shape[0]), idx])
    signs[signs == 0] = 1
    return V * signs[:, None]


def second_moments(source, center: bool, device, log, should_stop, what: str):
    """One streaming pass: (the d x d float64 matrix, the mean or None, n).
    ``center``: the covariance (ddof=1) and the mean; else X^T X."""
    d = source.n_features
    S = torch.zeros(d, d, dtype=torch.float64, device=device)
    s1 = torch.zeros(d, dtype=torch.float64, device=device)
    shift = None
    n = 0
    total = source.n_rows
    for start, rows in source.iter_chunks(rows_per_chunk(d)):
        if should_stop is not None and should_stop():
            raise Cancelled(f"the {what} fit was cancelled")
        x = torch.from_numpy(np.ascontiguousarray(rows)).to(device).double()
        if shift is None:
            # shifted-data algorithm: subtract a provisional mean to avoid cancellation
            shift = x.mean(0) if center else torch.zeros(d, dtype=torch.float64, device=device)
        x = x - shift
        S += x.T @ x
        s1 += x.sum(0)
        n += x.shape[0]
        log(LogEntry(step=n, epoch=0, loss=float("nan"), values={"rows": float(n)},
                     done=n, total=total, stage="accumulating", progress_only=True))
    if not center:
        return S, None, n
    mu = s1 / n
    return (S - n * torch.outer(mu, mu)) / max(n - 1, 1), shift + mu, n


class _Moments(ConceptMethod):
    uses_device = True
    streaming = True
    needs_hidden_ge_concepts = True
    OPTIONS = {}
    center = True

    def _fit(self, source, log, should_stop):
        d = source.n_features
        total = source.n_rows
        C, mean, n = second_moments(source, self.center, self.device_, log, should_stop, self.method_name)
        evals, evecs = torch.linalg.eigh(C)
        order = torch.argsort(evals, descending=True)
        evals, evecs = evals[order], evecs[:, order]
        k = self.nb_concepts
        V = _fix_signs(evecs[:, :k].T.cpu().numpy())
        self.components_ = V.astype(np.float32)
        self._set_spectrum(evals.clamp_min(0).cpu().numpy(), n)
        self.center_ = mean.cpu().numpy().astype(np.float32) if mean is not None else \
            np.zeros(d, np.float32)
        # residual energy = discarded eigenvalues (PCA: variances, SVD: squared norms)
        total_energy = float(evals.clamp_min(0).sum())
        kept = float(evals[:k].clamp_min(0).sum())
        denom = (n - 1) if self.center else 1
        self.final_loss_ = max(total_energy - kept, 0.0) * denom / (n * d)
        log(LogEntry(step=n, epoch=0, loss=self.final_loss_, values={"mse": self.final_loss_},
                     done=total, total=total, stage="fitting"))

    def _encode(self, X):
        return (X - self.center_) @ self.components_.T

    def _decode(self, codes):
        return codes @ self.components_ + self.center_

    def _dictionary(self):
        return self.components_


@register
class PCA(_Moments):
    """PCA: mean-centred, components = top eigenvectors of the covariance
    (equal, up to sign, to the top right singular vectors of the centred
    data). Codes = (X - mean) @ components^T; decode = codes @ components + mean.
    ``explained_variance_`` has the component variances (ddof=1)."""

    method_name = "PCA"

    def _set_spectrum(self, evals, n):
        self.explained_variance_ = evals[: self.nb_concepts].astype(np.float64)
        tot = float(evals.sum())
        self.explained_variance_ratio_ = self.explained_variance_ / tot if tot > 0 else \
            np.zeros_like(self.explained_variance_)

    def _state_tensors(self):
        return {"components": self.components_, "mean": self.center_,
                "explained_variance": self.explained_variance_.astype(np.float32)}

    def _load_tensors(self, tensors, extra):
        self.components_ = np.asarray(tensors["components"], np.float32)
        self.center_ = np.asarray(tensors["mean"], np.float32)
        self.explained_variance_ = np.asarray(tensors.get("explained_variance",
                                                          np.zeros(self.nb_concepts)), np.float64)

    @property
    def mean_vector_(self):
        return self.center_


@register
class SVD(_Moments):
    """Truncated SVD (no centring): components = top right singular vectors
    of X; codes = X @ components^T; ``singular_values_``."""

    method_name = "SVD"
    center = False

    def _set_spectrum(self, evals, n):
        self.singular_values_ = np.sqrt(evals[: self.nb_concepts]).astype(np.float64)

    def _state_tensors(self):
        return {"components": self.components_,
                "singular_values": self.singular_values_.astype(np.float32)}

    def _load_tensors(self, tensors, extra):
        self.components_ = np.asarray(tensors["components"], np.float32)
        self.center_ = np.zeros(self.components_.shape[1], np.float32)
        self.singular_values_ = np.asarray(tensors.get("singular_values",
                                                       np.zeros(self.nb_concepts)), np.float64)


@register
class ICA(ConceptMethod):
    """FastICA (scikit-learn, whiten="unit-variance", logcosh). Codes = the
    independent sources ``(X - mean) @ unmixing^T``; decode =
    ``codes @ mixing^T + mean``; dictionary = mixing^T [k, d].

    Materialises the rows (n * d * 4 bytes, scikit-learn copies them in
    float64); cancellation is checked before and after the solver. Past the
    memory budget, ``_fit_streaming`` whitens in a streaming pass instead."""

    method_name = "ICA"
    needs_hidden_ge_concepts = True
    OPTIONS = {"max_iterations": 200, "tolerance": 1e-4}
    in_memory_bytes_per_value = 24  # the float32 rows, scikit-learn's float64 copy and its centred copy

    def _fit_streaming(self, source, log, should_stop):
        """Streaming whitening, then FastICA on the whitened rows.

        One pass gives the mean and the covariance (ddof=0, as scikit-learn's
        whitening); ``K`` [k, d] maps a centred row to the top-k principal
        directions scaled to unit variance, so ``z = (x - mean) K^T`` has an
        identity covariance. FastICA (logcosh, parallel, scikit-learn with
        ``whiten=False``, seeded) then finds the rotation ``W`` [k, k] on the
        whitened rows: all of them when n * k * 8 bytes fit a quarter of the
        budget (one more pass), else a seeded uniform subsample of that size.
        unmixing = W K with each source scaled to unit variance, mixing =
        pinv(unmixing), as the in-memory fit. Reconstruction error is that of
        the top-k principal subspace (the rotation does not change it)."""
        import warnings

        from sklearn.decomposition import FastICA

        n, d, k = source.n_rows, source.n_features, self.nb_concepts
        C, mean, _ = second_moments(source, True, "cpu", log, should_stop, self.method_name)
        evals, evecs = torch.linalg.eigh(C * ((n - 1) / n))
        order = torch.argsort(evals, descending=True)[:k]
        scale = evals[order].clamp_min(1e-12 * float(evals.max().clamp_min(1e-300))).sqrt()
        K = (evecs[:, order] / scale).T.numpy()                  # [k, d]
        center = mean.numpy()
        fit_rows = min(n, max(k, self.memory_budget_bytes_ // 4 // (k * 8)))
        if fit_rows >= n:
            Z = np.concatenate([(rows - center) @ K.T for _, rows in
                                source.iter_chunks(self._block_rows(d))], 0)
        else:
            picked = sample_row_indices(n, fit_rows, numpy_rng(self.seed))
            Z = (gather_rows(source, picked) - center) @ K.T
        if should_stop is not None and should_stop():
            raise Cancelled("the ICA fit was cancelled")
        ica = FastICA(n_components=k, whiten=False, max_iter=self.max_iterations, tol=self.tolerance,
                      random_state=self.seed % (2 ** 32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ica.fit(Z)
        W = ica.components_ / (Z @ ica.components_.T).std(0)[:, None]
        unmixing = W @ K
        self.unmixing_ = unmixing.astype(np.float32)
        self.mixing_ = np.linalg.pinv(unmixing).T.astype(np.float32)
        self.center_ = center.astype(np.float32)
        self.n_iter_ = int(ica.n_iter_)
        self.final_loss_ = mse_of(lambda x: self._decode(self._encode(x)), source, self._block_rows(d))
        log(LogEntry(step=self.n_iter_, epoch=0, loss=self.final_loss_,
                     values={"mse": self.final_loss_, "iterations": float(self.n_iter_),
                             "fit_rows": float(Z.shape[0])},
                     done=self.max_iterations, total=self.max_iterations, stage="streaming"))

    def _fit(self, source, log, should_stop):
        import warnings

        from sklearn.decomposition import FastICA

        X = materialize(source)
        ica = FastICA(n_components=self.nb_concepts, whiten="unit-variance",
                      max_iter=self.max_iterations, tol=self.tolerance,
                      random_state=self.seed % (2 ** 32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ica.fit(X)
        if should_stop is not None and should_stop():
            raise Cancelled("the ICA fit was cancelled")
        self.unmixing_ = ica.components_.astype(np.float32)
        self.mixing_ = ica.mixing_.T.astype(np.float32)      # [k, d]
        self.center_ = ica.mean_.astype(np.float32)
        self.n_iter_ = int(ica.n_iter_)
        rec = self._decode(self._encode(X))
        self.final_loss_ = float(((X - rec) ** 2).mean())
        log(LogEntry(step=self.n_iter_, epoch=0, loss=self.final_loss_,
                     values={"mse": self.final_loss_, "iterations": float(self.n_iter_)},
                     done=self.max_iterations, total=self.max_iterations))

    def _encode(self, X):
        return (X - self.center_) @ self.unmixing_.T

    def _decode(self, codes):
        return codes @ self.mixing_ + self.center_

    def _dictionary(self):
        return self.mixing_

    def _state_tensors(self):
        return {"unmixing": self.unmixing_, "mixing": self.mixing_, "mean": self.center_}

    def _load_tensors(self, tensors, extra):
        self.unmixing_ = np.asarray(tensors["unmixing"], np.float32)
        self.mixing_ = np.asarray(tensors["mixing"], np.float32)
        self.center_ = np.asarray(tensors["mean"], np.float32)
