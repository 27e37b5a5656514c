"""Non-negative factorisations in torch: SemiNMF, NMF, ConvexNMF.

Orientation: activations ``X`` [n, d] ~ ``U`` [n, k] @ ``W`` [k, d]; ``U``
are the codes (>= 0), ``W`` the dictionary.

Memory: SemiNMF and NMF materialise the fitting matrix on the device
(n * d * 4 bytes) plus the codes (n * k * 4 bytes); past the memory budget
their streaming variant runs instead (see ``_StreamingFactorization``).
ConvexNMF holds an m x m Gram matrix of the rows it fits on (m <=
``max_rows``, default 4096: 64 MiB), so it fits on a seeded subsample of at
most ``max_rows`` rows, read without materialising the others.

Encoding (all three) solves the non-negative least-squares problem
``min_{U >= 0} ||X - U W||^2`` with the dictionary fixed, by a FIXED number
(``encode_iterations``) of accelerated projected-gradient (FISTA) steps from
a deterministic start (the clipped unconstrained least-squares solution):
the same input always gives the same codes, row by row.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from xaimesh_runtime.errors import Cancelled, InvalidArgument

from ..common import LogEntry, numpy_rng
from ..data import RowFile, gather_rows, materialize, sample_row_indices
from .base import ConceptMethod, log_every, register

_EPS = 1e-12


def _pos(a):
    return (a.abs() + a) / 2


def _neg(a):
    return (a.abs() - a) / 2


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)
    return g


def nnls_fista(X: torch.Tensor, W: torch.Tensor, iterations: int) -> torch.Tensor:
    """min_{U >= 0} ||X - U W||_F^2 for U [n, k], W [k, d] fixed.

    Fixed iteration count, deterministic start: rows are solved independently.
    """
    G = W @ W.T                                   # [k, k]
    B = X @ W.T                                   # [n, k]
    k = G.shape[0]
    G64 = G.double()
    L = float(torch.linalg.eigvalsh(G64)[-1].clamp_min(_EPS))
    ridge = 1e-8 * max(L, 1.0)
    start = torch.linalg.solve(G64 + ridge * torch.eye(k, dtype=G64.dtype, device=G.device),
                               B.double().T).T
    U = start.clamp_min(0).to(X.dtype)
    Y, t = U.clone(), 1.0
    step = 1.0 / L
    for _ in range(int(iterations)):
        U_next = (Y - (Y @ G - B) * step).clamp_min(0)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        Y = U_next + ((t - 1) / t_next) * (U_next - U)
        U, t = U_next, t_next
    return U


def kmeans_torch(X: torch.Tensor, k: int, seed: int, iterations: int = 20) -> torch.Tensor:
    """Seeded k-means++ init + a few Lloyd steps; returns labels [n]."""
    g = _gen(seed)
    n = X.shape[0]
    first = int(torch.randint(n, (1,), generator=g))
    centers = [X[first]]
    d2 = ((X - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:
            idx = int(torch.randint(n, (1,), generator=g))
        else:
            probs = (d2 / total).double().cpu()
            idx = int(torch.multinomial(probs, 1, generator=g))
        centers.append(X[idx])
        d2 = torch.minimum(d2, ((X - X[idx]) ** 2).sum(1))
    C = torch.stack(centers)
    labels = torch.cdist(X, C).argmin(1)
    for _ in range(iterations):
        onehot = torch.nn.functional.one_hot(labels, k).to(X.dtype)
        counts = onehot.sum(0)
        newC = (onehot.T @ X) / counts.clamp_min(1)[:, None]
        C = torch.where(counts[:, None] > 0, newC, C)
        new_labels = torch.cdist(X, C).argmin(1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return labels


def semi_nmf_codes(U, B, G, solver: str, inner_iterations: int):
    """One non-negative update of the codes U for SemiNMF, given B = X W^T and
    G = W W^T (the multiplicative rule, or accelerated projected gradient
    warm-started from U)."""
    if solver == "mu":
        return U * torch.sqrt((_pos(B) + U @ _neg(G)) / (_neg(B) + U @ _pos(G)).clamp_min(_EPS))
    L = float(torch.linalg.eigvalsh(G.double())[-1].clamp_min(_EPS))
    Y, t = U.clone(), 1.0
    for _ in range(inner_iterations):
        U_next = (Y - (Y @ G - B) / L).clamp_min(0)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        Y = U_next + ((t - 1) / t_next) * (U_next - U)
        U, t = U_next, t_next
    return U


def semi_nmf_dictionary(UtU, UtX):
    """The least-squares dictionary (U^T U)^-1 U^T X (float64, tiny ridge)."""
    UtU = UtU.double()
    eye = torch.eye(UtU.shape[0], dtype=torch.float64, device=UtU.device)
    ridge = 1e-10 * float(UtU.diagonal().mean().clamp_min(_EPS))
    return torch.linalg.solve(UtU + ridge * eye, UtX.double())


def hals_dictionary(W, UtU, UtX):
    """HALS sweep over the rows of W >= 0 (in place) given U^T U and U^T X."""
    for j in range(W.shape[0]):
        W[j] = (W[j] + (UtX[j] - UtU[j] @ W) / UtU[j, j].clamp_min(_EPS)).clamp_min(0)


def hals_codes(U, X, W):
    """HALS sweep over the columns of U >= 0 (in place) given X and W."""
    WWt = W @ W.T
    XWt = X @ W.T
    for j in range(W.shape[0]):
        U[:, j] = (U[:, j] + (XWt[:, j] - U @ WWt[:, j]) / WWt[j, j].clamp_min(_EPS)).clamp_min(0)


class _TorchFactorization(ConceptMethod):
    uses_device = True
    nonnegative_codes = True
    OPTIONS = {"max_iterations": 200, "tolerance": 1e-5, "encode_iterations": 300}

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(self.device_)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        Xt = self._prepare(self._tensor(X))
        W = self._tensor(self.components_)
        return nnls_fista(Xt, W, self.encode_iterations).cpu().numpy()

    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        return X

    def _dictionary(self):
        return self.components_

    def _state_tensors(self):
        return {"components": self.components_}

    def _load_tensors(self, tensors, extra):
        self.components_ = np.asarray(tensors["components"], np.float32)

    def _normalize(self, U: torch.Tensor, W: torch.Tensor):
        """Unit-norm dictionary rows, scale moved into the codes."""
        norms = W.norm(dim=1)
        safe = torch.where(norms > _EPS, norms, torch.ones_like(norms))
        return U * safe[None, :], W / safe[:, None]

    def _loop(self, step_fn, loss_fn, log, should_stop, stage="fitting"):
        """Run ``step_fn`` up to max_iterations times with relative-loss tolerance."""
        total = self.max_iterations
        every = log_every(total)
        prev = None
        it = 0
        for it in range(1, total + 1):
            if should_stop is not None and should_stop():
                raise Cancelled(f"the {self.method_name} fit was cancelled")
            step_fn()
            check = (it % every == 0) or it == total or self.tolerance > 0
            if check:
                loss = loss_fn()
                if it % every == 0 or it == total:
                    log(LogEntry(step=it, epoch=0, loss=loss, values={"mse": loss}, done=it,
                                 total=total, stage=stage))
                if prev is not None and self.tolerance > 0 and \
                        abs(prev - loss) <= self.tolerance * max(abs(prev), _EPS):
                    if it % every != 0 and it != total:
                        log(LogEntry(step=it, epoch=0, loss=loss, values={"mse": loss,
                                     "converged": 1.0}, done=total, total=total, stage=stage))
                    break
                prev = loss
        self.n_iter_ = it


class _StreamingFactorization(_TorchFactorization):
    """The streaming variant of SemiNMF and NMF: incremental alternating
    minimisation of the same objective ||X - U W||_F^2 / (n d) over all rows.

    The codes U [n, k] live in a scratch file (``RowFile``: n * k * 4 bytes of
    disk), the sufficient statistics A = U^T U [k, k] and B = U^T X [k, d]
    (float64) in memory. A pass reads the rows a block at a time; for each
    block it updates that block's codes with the dictionary fixed (the
    in-memory fit's code update), replaces the block's old contribution to
    A and B by its new one, and updates the dictionary from A and B (the
    in-memory fit's dictionary update), so the dictionary moves after every
    block instead of once per pass (the incremental form of Neal & Hinton,
    1998: each block step does not increase the objective). Because A and B
    always describe every row's current code, the objective after a pass is
    exact without reading the rows again:
    ||X||^2 - 2 <B, W> + <A, W W^T>. ``max_iterations`` bounds the passes;
    ``tolerance`` stops on the relative change of that objective.
    """

    def _fit_streaming(self, source, log, should_stop):
        n, d, k = source.n_rows, source.n_features, self.nb_concepts
        block = self._block_rows(d)
        dev = self.device_
        with RowFile(n, k, self.tmp_dir_) as codes:
            A = torch.zeros(k, k, dtype=torch.float64, device=dev)
            B = torch.zeros(k, d, dtype=torch.float64, device=dev)
            W, Xsq = self._streaming_init(source, codes, block, A, B, should_stop)
            state = {"W": W}

            def objective():
                W64 = state["W"].double()
                return max(Xsq - 2 * float((B * W64).sum()) + float((A * (W64 @ W64.T)).sum()), 0.0) / (n * d)

            def one_pass():
                for start, rows in source.iter_chunks(block):
                    if should_stop is not None and should_stop():
                        raise Cancelled(f"the {self.method_name} fit was cancelled")
                    X = self._prepare(self._tensor(rows))
                    U_old = self._tensor(codes.read(start, start + rows.shape[0]))
                    U = self._block_codes(U_old.clone(), X, state["W"])
                    A.add_((U.T @ U).double() - (U_old.T @ U_old).double())
                    B.add_((U.T @ X).double() - (U_old.T @ X).double())
                    state["W"] = self._dictionary_from_stats(A, B, state["W"])
                    codes.write(start, U.cpu().numpy())

            self._loop(one_pass, objective, log, should_stop, stage="streaming")
            self.final_loss_ = objective()
        W = state["W"]
        norms = W.norm(dim=1)
        self.components_ = (W / torch.where(norms > _EPS, norms, torch.ones_like(norms))[:, None]
                            ).cpu().numpy().astype(np.float32)

    def _accumulate(self, source, block, init_codes, codes, A, B, should_stop):
        """One pass writing ``init_codes(start, X)`` as the codes of each block
        and summing A, B and ||X||^2; returns ||X||^2."""
        Xsq = 0.0
        for start, rows in source.iter_chunks(block):
            if should_stop is not None and should_stop():
                raise Cancelled(f"the {self.method_name} fit was cancelled")
            X = self._prepare(self._tensor(rows))
            U = init_codes(start, X)
            A.add_((U.T @ U).double())
            B.add_((U.T @ X).double())
            Xsq += float((X.double() ** 2).sum())
            codes.write(start, U.cpu().numpy())
        return Xsq


@register
class SemiNMF(_StreamingFactorization):
    """Semi-NMF (Ding, Li & Jordan 2010): codes >= 0, dictionary of any sign.

    Fit: k-means (seeded) initialisation of the codes (cluster indicators +
    0.2, as in the paper), then alternate

    * the exact least-squares dictionary update ``W = (U^T U)^-1 U^T X``;
    * a non-negative update of the codes for that dictionary. With
      ``u_solver="mu"`` it is the paper's multiplicative rule
      ``U <- U * sqrt(([XW^T]^+ + U[WW^T]^-) / ([XW^T]^- + U[WW^T]^+))``;
      the default ``u_solver="pg"`` makes ``inner_iterations`` accelerated
      projected-gradient steps on the same non-negative least-squares
      subproblem, warm-started from the current codes (same fixed points,
      much faster convergence: about 1e-3 relative error on exact
      low-rank data in 200 iterations, where the multiplicative rule needs
      thousands).

    Stops after ``max_iterations`` or when the relative change of the loss
    is below ``tolerance``. Dictionary rows are normalised to unit norm at
    the end (scale moved into the codes).
    """

    method_name = "SEMI_NMF"
    OPTIONS = {**_TorchFactorization.OPTIONS, "u_solver": "pg", "inner_iterations": 10}

    def _check_params(self, p):
        super()._check_params(p)
        if p["u_solver"] not in ("pg", "mu"):
            raise InvalidArgument(f"u_solver must be 'pg' or 'mu', got {p['u_solver']!r}",
                                  field="options.u_solver")

    def _fit(self, source, log, should_stop):
        X = self._tensor(materialize(source))
        n, d = X.shape
        k = self.nb_concepts
        labels = kmeans_torch(X, k, self.seed)
        U = torch.nn.functional.one_hot(labels, k).to(X.dtype) + 0.2
        Xsq = float((X.double() ** 2).sum())
        last = {}

        def update_W(U):
            return semi_nmf_dictionary(U.T @ U, U.T @ X).to(X.dtype)

        def step():
            nonlocal U
            W = update_W(U)
            B = X @ W.T
            G = W @ W.T
            U = semi_nmf_codes(U, B, G, self.u_solver, self.inner_iterations)
            last["B"], last["G"] = B, G

        def loss():
            # ||X - U W||^2 = ||X||^2 - 2 <B, U> + <U^T U, G>  (W of this iteration)
            B, G = last["B"], last["G"]
            sse = Xsq - 2 * float((B * U).sum()) + float(((U.T @ U) * G).sum())
            return max(sse, 0.0) / (n * d)

        self._loop(step, loss, log, should_stop)
        W = update_W(U)
        U, W = self._normalize(U, W)
        self.components_ = W.cpu().numpy().astype(np.float32)
        self.final_loss_ = float(((X - U @ W) ** 2).mean())

    def _streaming_init(self, source, codes, block, A, B, should_stop):
        """The in-memory start on all rows: k-means centroids (of a seeded
        subsample that fits 1/16 of the budget), each row's code the
        one-hot of its nearest centroid + 0.2, W the least-squares dictionary."""
        k = self.nb_concepts
        sample = self._tensor(gather_rows(source, sample_row_indices(
            source.n_rows, self._sample_rows(source), numpy_rng(self.seed))))
        onehot = torch.nn.functional.one_hot(kmeans_torch(sample, k, self.seed), k).to(sample.dtype)
        centroids = (onehot.T @ sample) / onehot.sum(0).clamp_min(1)[:, None]
        del sample, onehot

        def init_codes(start, X):
            return torch.nn.functional.one_hot(torch.cdist(X, centroids).argmin(1), k).to(X.dtype) + 0.2

        Xsq = self._accumulate(source, block, init_codes, codes, A, B, should_stop)
        return self._dictionary_from_stats(A, B, None), Xsq

    def _block_codes(self, U, X, W):
        return semi_nmf_codes(U, X @ W.T, W @ W.T, self.u_solver, self.inner_iterations)

    def _dictionary_from_stats(self, A, B, W):
        return semi_nmf_dictionary(A, B).float()


@register
class NMF(_StreamingFactorization):
    """NMF: codes >= 0 and dictionary >= 0; activations must be >= 0.

    Negative activations are refused unless ``relu_negative_inputs=True``
    (then max(x, 0) is used, for fitting and encoding alike). Fit: seeded
    random init scaled to the data, then HALS (hierarchical alternating
    least squares, Cichocki & Phan 2009) block-coordinate updates.
    """

    method_name = "NMF"
    OPTIONS = {**_TorchFactorization.OPTIONS, "relu_negative_inputs": False}

    def _prepare(self, X):
        if self.relu_negative_inputs:
            return X.clamp_min(0)
        if bool((X < 0).any()):
            raise InvalidArgument(
                "NMF needs non-negative activations but these contain negative values; "
                "set the option relu_negative_inputs=true to apply ReLU to them, or use SEMI_NMF "
                "(codes >= 0, dictionary of any sign)", field="options.relu_negative_inputs")
        return X

    def _fit(self, source, log, should_stop):
        X = self._prepare(self._tensor(materialize(source)))
        n, d = X.shape
        k = self.nb_concepts
        g = _gen(self.seed)
        scale = math.sqrt(max(float(X.mean()), _EPS) / k)
        U = (torch.rand(n, k, generator=g) * scale).to(X.device)
        W = (torch.rand(k, d, generator=g) * scale).to(X.device)

        def step():
            hals_dictionary(W, U.T @ U, U.T @ X)
            hals_codes(U, X, W)

        def loss():
            return float(((X - U @ W) ** 2).mean())

        self._loop(step, loss, log, should_stop)
        U, W = self._normalize(U, W)
        self.components_ = W.cpu().numpy().astype(np.float32)
        self.final_loss_ = float(((X - U @ W) ** 2).mean())

    def _streaming_init(self, source, codes, block, A, B, should_stop):
        """The in-memory start: seeded uniform codes and dictionary in
        [0, sqrt(mean(X) / k)), the mean taken on a seeded subsample."""
        k = self.nb_concepts
        sample = self._prepare(self._tensor(gather_rows(source, sample_row_indices(
            source.n_rows, self._sample_rows(source), numpy_rng(self.seed)))))
        scale = math.sqrt(max(float(sample.mean()), _EPS) / k)
        del sample
        g = _gen(self.seed)
        W = (torch.rand(k, source.n_features, generator=g) * scale).to(self.device_)

        def init_codes(start, X):
            return (torch.rand(X.shape[0], k, generator=g) * scale).to(X.device)

        return W, self._accumulate(source, block, init_codes, codes, A, B, should_stop)

    def _block_codes(self, U, X, W):
        hals_codes(U, X, W)
        return U

    def _dictionary_from_stats(self, A, B, W):
        W = W.clone()
        hals_dictionary(W, A.to(W.dtype), B.to(W.dtype))
        return W


@register
class ConvexNMF(_TorchFactorization):
    """Convex-NMF (Ding, Li & Jordan 2010): each concept is a convex
    combination of data rows, ``W = A^T X`` with ``A >= 0`` and the columns of
    ``A`` summing to 1; codes >= 0.

    Multiplicative updates on the Gram matrix ``Y = X X^T`` of the rows; the
    fit uses a seeded subsample of at most ``max_rows`` rows (the Gram matrix
    is max_rows^2 floats). ``convex_weights_`` [m, k] and ``support_rows_``
    [m] (indices into the fitting rows) say which rows make each concept.
    """

    method_name = "CONVEX_NMF"
    OPTIONS = {**_TorchFactorization.OPTIONS, "max_rows": 4096}

    def _fit(self, source, log, should_stop):
        n = source.n_rows
        rng = numpy_rng(self.seed)
        if n > self.max_rows:
            rows = np.sort(rng.choice(n, self.max_rows, replace=False))
            Xnp = gather_rows(source, rows)
        else:
            rows = np.arange(n)
            Xnp = materialize(source)
        X = self._tensor(Xnp)
        m, d = X.shape
        k = self.nb_concepts
        labels = kmeans_torch(X, k, self.seed)
        H = torch.nn.functional.one_hot(labels, k).to(X.dtype)
        G = H + 0.2
        A = (H + 0.2) / (H.sum(0) + 0.2 * m)[None, :]
        Y = X @ X.T
        Yp, Yn = _pos(Y), _neg(Y)
        del Y

        def step():
            nonlocal G, A
            YpA, YnA = Yp @ A, Yn @ A
            AtYpA, AtYnA = A.T @ YpA, A.T @ YnA
            G = G * torch.sqrt((YpA + G @ AtYnA) / (YnA + G @ AtYpA).clamp_min(_EPS))
            GtG = G.T @ G
            A = A * torch.sqrt((Yp @ G + YnA @ GtG) / (Yn @ G + YpA @ GtG).clamp_min(_EPS))

        def loss():
            return float(((X - G @ (A.T @ X)) ** 2).mean())

        self._loop(step, loss, log, should_stop)
        s = A.sum(0).clamp_min(_EPS)
        A = A / s[None, :]
        G = G * s[None, :]
        W = A.T @ X
        self.components_ = W.cpu().numpy().astype(np.float32)
        self.convex_weights_ = A.cpu().numpy().astype(np.float32)
        self.support_rows_ = rows.astype(np.int64)
        self.final_loss_ = float(((X - G @ W) ** 2).mean())

    def _state_tensors(self):
        return {"components": self.components_, "convex_weights": self.convex_weights_,
                "support_rows": self.support_rows_}

    def _load_tensors(self, tensors, extra):
        super()._load_tensors(tensors, extra)
        self.convex_weights_ = np.asarray(tensors.get("convex_weights", np.zeros((0, self.nb_concepts))),
                                          np.float32)
        self.support_rows_ = np.asarray(tensors.get("support_rows", np.zeros(0)), np.int64)
