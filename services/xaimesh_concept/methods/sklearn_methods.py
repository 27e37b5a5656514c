"""KMeans, DictionaryLearning, SparsePCA (scikit-learn solvers) and
NeuronsAsConcepts. Fitted state is kept as plain arrays, so encoding and
persistence do not depend on pickled scikit-learn objects.
"""

from __future__ import annotations

import warnings

import numpy as np
from xaimesh_runtime.errors import Cancelled, InvalidArgument

from ..common import LogEntry, numpy_rng
from ..data import gather_rows, iter_shuffled_batches, materialize, sample_row_indices
from .base import ConceptMethod, mse_of, register


def _seed32(seed: int) -> int:
    return int(seed) % (2 ** 32)


@register
class KMeans(ConceptMethod):
    """k-means (scikit-learn, k-means++ init, one run, seeded).

    Codes are *similarity-weighted one-hot*: row i gets
    ``1 / (1 + ||x_i - c_j||)`` in the column j of its nearest centroid and 0
    elsewhere (so L0 = 1 and top examples rank rows by closeness to the
    centroid). Decode normalises each row of codes to sum 1 before
    multiplying by the centroids, so ``decode(encode(x))`` is exactly the
    nearest centroid (a one-hot row of 1.0 decodes to its centroid too; an
    all-zero row decodes to 0). Dictionary = centroids [k, d].

    Materialises the rows (n * d * 4 bytes); cancellation is checked before
    and after the solver. Past the memory budget, the streaming variant
    (``_fit_streaming``) runs instead.
    """

    method_name = "KMEANS"
    nonnegative_codes = True
    OPTIONS = {"max_iterations": 300, "tolerance": 1e-4}

    def _fit(self, source, log, should_stop):
        from sklearn.cluster import KMeans as SkKMeans

        X = materialize(source)
        km = SkKMeans(n_clusters=self.nb_concepts, n_init=1, max_iter=self.max_iterations,
                      tol=self.tolerance, random_state=_seed32(self.seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(X)
        if should_stop is not None and should_stop():
            raise Cancelled("the KMEANS fit was cancelled")
        self.centroids_ = km.cluster_centers_.astype(np.float32)
        self.n_iter_ = int(km.n_iter_)
        self.final_loss_ = float(km.inertia_) / X.size
        log(LogEntry(step=self.n_iter_, epoch=0, loss=self.final_loss_,
                     values={"mse": self.final_loss_, "inertia": float(km.inertia_)},
                     done=self.max_iterations, total=self.max_iterations))

    def _fit_streaming(self, source, log, should_stop):
        """Streaming Lloyd. Start: this class's in-memory fit (k-means++ then
        Lloyd) on a seeded uniform subsample of the rows that fits 1/16 of
        the budget; then exact Lloyd passes over all rows, one block at a time
        (each pass: assign every row to its nearest centroid, move each centroid
        to the mean of its rows; a centroid without rows stays). Stops when the
        centroids move by at most ``tolerance`` x the mean per-feature variance
        (scikit-learn's rule, the variance taken on the subsample) or after
        ``max_iterations`` passes. Objective: the inertia sum_i min_j
        ||x_i - c_j||^2 of the final centroids over all rows."""
        from scipy.sparse import csr_matrix
        from sklearn.cluster import KMeans as SkKMeans

        n, d, k = source.n_rows, source.n_features, self.nb_concepts
        sample = gather_rows(source, sample_row_indices(n, self._sample_rows(source), numpy_rng(self.seed)))
        km = SkKMeans(n_clusters=k, n_init=1, max_iter=self.max_iterations, tol=self.tolerance,
                      random_state=_seed32(self.seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(sample)
        threshold = self.tolerance * float(sample.astype(np.float64).var(0).mean())
        del sample
        centroids = km.cluster_centers_.astype(np.float32)
        block = self._block_rows(d)

        def lloyd_pass(C):
            sums, counts, inertia = np.zeros((k, d)), np.zeros(k), 0.0
            for _, rows in source.iter_chunks(block):
                if should_stop is not None and should_stop():
                    raise Cancelled("the KMEANS fit was cancelled")
                x64 = rows.astype(np.float64)
                del rows
                labels, d2 = _nearest(x64, C)
                inertia += float(d2.sum())
                onehot = csr_matrix((np.ones(x64.shape[0]), (labels, np.arange(x64.shape[0]))),
                                    shape=(k, x64.shape[0]))
                sums += onehot @ x64
                counts += np.bincount(labels, minlength=k)
            return sums, counts, inertia

        it = 0
        for it in range(1, self.max_iterations + 1):
            sums, counts, inertia = lloyd_pass(centroids)
            moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids)
            shift = float(((moved - centroids) ** 2).sum())
            centroids = moved.astype(np.float32)
            log(LogEntry(step=it, epoch=it, loss=inertia / (n * d), values={"inertia": inertia, "shift": shift},
                         done=it, total=self.max_iterations, stage="streaming"))
            if shift <= threshold:
                break
        _, _, inertia = lloyd_pass(centroids)
        self.centroids_ = centroids
        self.n_iter_ = it
        self.final_loss_ = inertia / (n * d)
        log(LogEntry(step=it, epoch=it, loss=self.final_loss_, values={"mse": self.final_loss_, "inertia": inertia},
                     done=self.max_iterations, total=self.max_iterations, stage="streaming"))

    def _encode(self, X):
        idx, d2 = _nearest(X, self.centroids_)
        codes = np.zeros((X.shape[0], self.nb_concepts), np.float32)
        codes[np.arange(X.shape[0]), idx] = 1.0 / (1.0 + np.sqrt(d2))
        return codes

    def _decode(self, codes):
        s = codes.sum(1, keepdims=True)
        w = np.divide(codes, s, out=np.zeros_like(codes), where=s != 0)
        return w @ self.centroids_

    def _dictionary(self):
        return self.centroids_

    def _state_tensors(self):
        return {"centroids": self.centroids_}

    def _load_tensors(self, tensors, extra):
        self.centroids_ = np.asarray(tensors["centroids"], np.float32)


def _nearest(rows: np.ndarray, centroids: np.ndarray):
    """(index of the nearest centroid, squared distance to it) of each row."""
    x, c = np.asarray(rows, np.float64), centroids.astype(np.float64)
    d2 = np.maximum((x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None, :], 0)
    labels = d2.argmin(1)
    return labels, d2[np.arange(rows.shape[0]), labels]


@register
class DictionaryLearning(ConceptMethod):
    """Sparse dictionary learning (scikit-learn MiniBatchDictionaryLearning,
    ``partial_fit`` on seeded minibatches, ``max_iterations`` passes over the
    data): minimises ||X - U D||^2 / 2 + alpha ||U||_1 with unit-norm atoms.

    Streams the rows (one block in memory at a time). Encoding is the lasso
    (LARS, deterministic) with the same ``alpha``. Dictionary init: ``k``
    seeded distinct rows, normalised.
    """

    method_name = "DICTIONARY_LEARNING"
    needs_rows_ge_concepts = False
    streaming = True
    OPTIONS = {"max_iterations": 10, "batch_size": 256, "alpha": 1.0}

    def _fit(self, source, log, should_stop):
        from sklearn.decomposition import MiniBatchDictionaryLearning

        rng = numpy_rng(self.seed)
        n, d = source.n_rows, source.n_features
        k = self.nb_concepts
        init_rows = np.sort(rng.choice(n, min(k, n), replace=False))
        D0 = np.concatenate([source.read(int(r), int(r) + 1) for r in init_rows], 0)
        if D0.shape[0] < k:  # overcomplete with few rows: pad with seeded noise
            D0 = np.concatenate([D0, rng.standard_normal((k - D0.shape[0], d)).astype(np.float32)])
        D0 = D0 + 1e-6 * rng.standard_normal(D0.shape).astype(np.float32)
        D0 /= np.maximum(np.linalg.norm(D0, axis=1, keepdims=True), 1e-12)
        est = MiniBatchDictionaryLearning(
            n_components=k, alpha=self.alpha, batch_size=self.batch_size, dict_init=D0,
            fit_algorithm="cd", transform_algorithm="lasso_lars", transform_alpha=self.alpha,
            random_state=_seed32(self.seed), max_iter=self.max_iterations)
        step = 0
        for epoch in range(1, self.max_iterations + 1):
            for batch in iter_shuffled_batches(source, self.batch_size, rng):
                if should_stop is not None and should_stop():
                    raise Cancelled("the DICTIONARY_LEARNING fit was cancelled")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.partial_fit(batch)
                step += 1
            self.components_ = est.components_.astype(np.float32)
            sample = source.read(0, min(n, 1024))
            loss = float(((sample - self._decode(self._encode(sample))) ** 2).mean())
            log(LogEntry(step=step, epoch=epoch, loss=loss, values={"mse_sample": loss},
                         done=epoch, total=self.max_iterations))
        self.components_ = est.components_.astype(np.float32)
        self.final_loss_ = loss

    def _encode(self, X):
        from sklearn.decomposition import sparse_encode

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            codes = sparse_encode(X.astype(np.float64), self.components_.astype(np.float64),
                                  algorithm="lasso_lars", alpha=self.alpha)
        return codes.astype(np.float32)

    def _dictionary(self):
        return self.components_

    def _state_tensors(self):
        return {"components": self.components_}

    def _load_tensors(self, tensors, extra):
        self.components_ = np.asarray(tensors["components"], np.float32)


@register
class SparsePCA(ConceptMethod):
    """Sparse PCA (scikit-learn MiniBatchSparsePCA, seeded): sparse
    components [k, d] (unit norm); codes = ridge projection of the centred
    rows ``(X - mean) C^T (C C^T + ridge I)^-1`` (ridge = 0.01, as
    scikit-learn); decode = codes @ C + mean.

    Materialises the rows (scikit-learn works on X^T); the solver's callback
    checks cancellation every iteration.
    """

    method_name = "SPARSE_PCA"
    OPTIONS = {"max_iterations": 100, "tolerance": 1e-3, "alpha": 1.0}
    ridge_alpha = 0.01

    in_memory_bytes_per_value = 16  # scikit-learn works on float64 copies of X and X^T

    def _fit(self, source, log, should_stop):
        self._fit_rows(materialize(source), log, should_stop)

    def _fit_streaming(self, source, log, should_stop):
        """The in-memory fit on a seeded uniform subsample of m rows, m what
        fits half the budget at 16 bytes per value (scikit-learn's
        solver alternates over whole columns, so it has no exact streaming
        form), with ``alpha`` scaled by sqrt(m / n): the codes' columns have
        unit norm over the rows, so the components of m rows are sqrt(m / n)
        times those of n, and this keeps the subsample's objective
        ||X_m - U V||^2 / 2 + alpha_m ||V||_1 at m / n times the full one.
        The loss is then measured over all rows."""
        n = source.n_rows
        rows = sample_row_indices(n, self._sample_rows(source, 16, share=2), numpy_rng(self.seed))
        self._fit_rows(gather_rows(source, rows), log, should_stop, self.alpha * np.sqrt(len(rows) / n))
        self.final_loss_ = mse_of(lambda x: self._decode(self._encode(x)), source, self._block_rows(source.n_features))

    def _fit_rows(self, X, log, should_stop, alpha=None):
        from sklearn.decomposition import MiniBatchSparsePCA

        counter = {"it": 0}

        def callback(_locals):
            counter["it"] += 1
            if should_stop is not None and should_stop():
                raise Cancelled("the SPARSE_PCA fit was cancelled")

        est = MiniBatchSparsePCA(n_components=self.nb_concepts, alpha=self.alpha if alpha is None else alpha,
                                 ridge_alpha=self.ridge_alpha, max_iter=self.max_iterations,
                                 tol=self.tolerance, callback=callback,
                                 random_state=_seed32(self.seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X)
        self.components_ = est.components_.astype(np.float32)
        self.center_ = est.mean_.astype(np.float32)
        self.final_loss_ = float(((X - self._decode(self._encode(X))) ** 2).mean())
        log(LogEntry(step=counter["it"], epoch=0, loss=self.final_loss_,
                     values={"mse": self.final_loss_}, done=self.max_iterations,
                     total=self.max_iterations))

    def _encode(self, X):
        C = self.components_.astype(np.float64)
        G = C @ C.T + self.ridge_alpha * np.eye(C.shape[0])
        return np.linalg.solve(G, C @ (X - self.center_).T.astype(np.float64)).T.astype(np.float32)

    def _decode(self, codes):
        return codes @ self.components_ + self.center_

    def _dictionary(self):
        return self.components_

    def _state_tensors(self):
        return {"components": self.components_, "mean": self.center_}

    def _load_tensors(self, tensors, extra):
        self.components_ = np.asarray(tensors["components"], np.float32)
        self.center_ = np.asarray(tensors["mean"], np.float32)


@register
class NeuronsAsConcepts(ConceptMethod):
    """Identity: each neuron is a concept. codes = activations,
    decode = codes, dictionary = identity [d, d]. nb_concepts must equal the
    hidden size (0 = take it from the data)."""

    method_name = "NEURONS_AS_CONCEPTS"
    needs_rows_ge_concepts = False
    streaming = True
    _nb_concepts_auto = True

    def validate_fit_shape(self, n_rows, hidden):
        if self.nb_concepts in (0, None):
            self.nb_concepts = hidden
        if self.nb_concepts != hidden:
            raise InvalidArgument(
                f"NEURONS_AS_CONCEPTS has one concept per neuron: nb_concepts must equal the hidden "
                f"size {hidden} (or 0), got {self.nb_concepts}", field="nb_concepts")
        super().validate_fit_shape(n_rows, hidden)

    def _fit(self, source, log, should_stop):
        self.final_loss_ = 0.0
        log(LogEntry(step=0, epoch=0, loss=0.0, values={}, done=1, total=1))

    def _encode(self, X):
        return X

    def _decode(self, codes):
        return codes

    def _dictionary(self):
        return np.eye(self.hidden_size_, dtype=np.float32)

    def _state_tensors(self):
        return {}

    def _load_tensors(self, tensors, extra):
        pass
