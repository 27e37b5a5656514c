"""Sparse autoencoders in torch: Vanilla (ReLU + L1), TopK, BatchTopK, JumpReLU.

Architecture (all variants)::

    pre   = (x - b_dec) @ W_enc + b_enc          # [n, k]
    z     = activation(pre)                      # codes, >= 0
    x_hat = z @ W_dec + b_dec                    # W_dec [k, d], unit-norm rows

Init: W_dec rows are seeded Gaussian directions of unit norm, W_enc = W_dec^T
(tied init), b_enc = 0, b_dec = the data mean (one streaming pass).
Training: Adam on seeded shuffled minibatches (only one block of rows in
memory: works on memmaps / stored sets larger than RAM); after each step the
decoder rows are renormalised to unit norm (``normalize_decoder``). The
reconstruction term is the mean squared error per element.

Losses:

* Vanilla: mse + l1_coefficient * mean_rows(sum_k |z_k| * ||W_dec[k]||)
* TopK: mse (sparsity is structural: the top_k largest pre-activations are
  kept, then ReLU - so a row has exactly top_k non-zero codes whenever at
  least top_k pre-activations are positive, never more).
* BatchTopK: mse; in training the top (top_k * batch) ReLU'd
  pre-activations of the whole batch are kept. At inference a single learned
  threshold is used instead (z = pre if pre > threshold else 0), so encode
  is per-row deterministic; the threshold is the mean, over the batches of
  the last epoch, of the smallest activation kept by the batch top-k.
* JumpReLU: mse + l1_coefficient * mean_rows(L0), z = pre * H(pre - theta)
  with a per-concept theta = exp(log_theta) (init ``jump_threshold``);
  gradients of H w.r.t. theta use the straight-through estimator with a
  rectangle kernel of width ``jump_bandwidth`` (Rajamanoharan et al. 2024).

Deterministic for a given seed on a given device. One training log entry
per epoch (loss, reconstruction, l0, dead fraction ...).
"""

from __future__ import annotations

import numpy as np
import torch
from xaimesh_runtime.errors import Cancelled, InvalidArgument

from ..common import LogEntry, numpy_rng
from ..data import iter_shuffled_batches, rows_per_chunk
from .base import ConceptMethod, column_moments, register


class _RectangleKernel:
    @staticmethod
    def k(x):
        return ((x > -0.5) & (x < 0.5)).to(x.dtype)


class _JumpReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, log_theta, bandwidth):
        theta = log_theta.exp()
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        pre, theta = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_pre = grad_out * (pre > theta).to(pre.dtype)
        # d/dtheta [pre * H(pre - theta)] ~ -(theta / bw) K((pre - theta) / bw)
        g_theta = -(theta / bw) * _RectangleKernel.k((pre - theta) / bw) * grad_out
        grad_log_theta = (g_theta * theta).sum(0)     # chain rule through exp
        return grad_pre, grad_log_theta, None


class _StepFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, log_theta, bandwidth):
        theta = log_theta.exp()
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        pre, theta = ctx.saved_tensors
        bw = ctx.bandwidth
        # d/dtheta H(pre - theta) ~ -(1 / bw) K((pre - theta) / bw)
        g_theta = -(1.0 / bw) * _RectangleKernel.k((pre - theta) / bw) * grad_out
        return torch.zeros_like(pre), (g_theta * theta).sum(0), None


class _SparseAutoencoder(ConceptMethod):
    uses_device = True
    streaming = True
    nonnegative_codes = True
    needs_rows_ge_concepts = False
    OPTIONS = {"epochs": 10, "batch_size": 256, "learning_rate": 1e-3, "normalize_decoder": True}

    # ---- model -------------------------------------------------------------
    def _init_params(self, d: int, mean: np.ndarray):
        g = torch.Generator(device="cpu")
        g.manual_seed(int(self.seed) & 0x7FFFFFFFFFFFFFFF)
        k = self.nb_concepts
        W_dec = torch.randn(k, d, generator=g)
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        dev = self.device_
        self.W_dec = torch.nn.Parameter(W_dec.to(dev))
        self.W_enc = torch.nn.Parameter(W_dec.T.contiguous().to(dev))  # row-major, like a loaded one
        self.b_enc = torch.nn.Parameter(torch.zeros(k, device=dev))
        self.b_dec = torch.nn.Parameter(torch.from_numpy(mean.astype(np.float32)).to(dev))

    def _params(self):
        return [self.W_enc, self.b_enc, self.W_dec, self.b_dec]

    def _pre(self, x):
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def _activate(self, pre, training: bool):
        raise NotImplementedError

    def _penalty(self, pre, z):
        return torch.zeros((), device=pre.device)

    # ---- fit ---------------------------------------------------------------
    def _fit(self, source, log, should_stop):
        d = source.n_features
        mean, _ = column_moments(source, should_stop)
        self._init_params(d, mean)
        opt = torch.optim.Adam(self._params(), lr=self.learning_rate)
        rng = numpy_rng(self.seed)
        step = 0
        for epoch in range(1, self.epochs + 1):
            self._epoch_start(epoch)
            sums = {"loss": 0.0, "reconstruction": 0.0, "penalty": 0.0, "l0": 0.0}
            rows_seen = 0
            fired = torch.zeros(self.nb_concepts, dtype=torch.bool, device=self.device_)
            for batch in iter_shuffled_batches(source, self.batch_size, rng):
                if should_stop is not None and should_stop():
                    raise Cancelled(f"the {self.method_name} fit was cancelled")
                x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device_)
                pre = self._pre(x)
                z = self._activate(pre, training=True)
                x_hat = z @ self.W_dec + self.b_dec
                rec = ((x_hat - x) ** 2).mean()
                pen = self._penalty(pre, z)
                loss = rec + pen
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if self.normalize_decoder:
                    with torch.no_grad():
                        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))
                self._after_step(pre.detach(), z.detach())
                step += 1
                b = x.shape[0]
                rows_seen += b
                with torch.no_grad():
                    nz = z.detach() != 0
                    fired |= nz.any(0)
                    sums["l0"] += float(nz.sum())
                sums["loss"] += float(loss.detach()) * b
                sums["reconstruction"] += float(rec.detach()) * b
                sums["penalty"] += float(pen.detach()) * b
            self._epoch_end(epoch)
            n = max(rows_seen, 1)
            values = {"reconstruction": sums["reconstruction"] / n, "l0": sums["l0"] / n,
                      "sparsity_penalty": sums["penalty"] / n,
                      "dead_fraction": float((~fired).float().mean())}
            values.update(self._extra_log())
            self.final_loss_ = sums["loss"] / n
            log(LogEntry(step=step, epoch=epoch, loss=self.final_loss_, values=values,
                         done=epoch, total=self.epochs))
        for p in self._params():
            p.requires_grad_(False)

    def _epoch_start(self, epoch):
        pass

    def _epoch_end(self, epoch):
        pass

    def _after_step(self, pre, z):
        pass

    def _extra_log(self) -> dict:
        return {}

    # ---- inference ---------------------------------------------------------
    def _encode_rows(self):
        return max(256, rows_per_chunk(max(self.nb_concepts, self.hidden_size_ or 1), 64 << 20))

    @torch.no_grad()
    def _encode(self, X):
        x = torch.from_numpy(np.ascontiguousarray(X)).to(self.device_)
        return self._activate(self._pre(x), training=False).cpu().numpy()

    @torch.no_grad()
    def _decode(self, codes):
        z = torch.from_numpy(np.ascontiguousarray(codes)).to(self.device_)
        return (z @ self.W_dec + self.b_dec).cpu().numpy()

    def _dictionary(self):
        return self.W_dec.detach().cpu().numpy()

    def _state_tensors(self):
        return {"W_enc": self.W_enc.detach().cpu().numpy(), "b_enc": self.b_enc.detach().cpu().numpy(),
                "W_dec": self.W_dec.detach().cpu().numpy(), "b_dec": self.b_dec.detach().cpu().numpy()}

    def _load_tensors(self, tensors, extra):
        dev = self.device_

        def t(name):
            return torch.nn.Parameter(torch.from_numpy(np.array(tensors[name], np.float32)).to(dev),
                                      requires_grad=False)

        self.W_enc, self.b_enc, self.W_dec, self.b_dec = t("W_enc"), t("b_enc"), t("W_dec"), t("b_dec")


@register
class VanillaSAE(_SparseAutoencoder):
    method_name = "SAE_VANILLA"
    OPTIONS = {**_SparseAutoencoder.OPTIONS, "l1_coefficient": 1e-3}

    def _activate(self, pre, training):
        return torch.relu(pre)

    def _penalty(self, pre, z):
        return self.l1_coefficient * (z.abs() * self.W_dec.norm(dim=1)[None, :]).sum(1).mean()


class _TopKBase(_SparseAutoencoder):
    OPTIONS = {**_SparseAutoencoder.OPTIONS, "top_k": 32}

    def _check_params(self, p):
        super()._check_params(p)
        if p["top_k"] > self.nb_concepts:
            raise InvalidArgument(
                f"top_k ({p['top_k']}) must be <= nb_concepts ({self.nb_concepts})",
                field="options.top_k")


@register
class TopKSAE(_TopKBase):
    method_name = "SAE_TOPK"

    def _activate(self, pre, training):
        vals, idx = pre.topk(self.top_k, dim=1)
        return torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))


@register
class BatchTopKSAE(_TopKBase):
    method_name = "SAE_BATCH_TOPK"

    threshold_: float = 0.0

    def _activate(self, pre, training):
        r = torch.relu(pre)
        if training:
            flat = r.flatten()
            kk = min(self.top_k * pre.shape[0], flat.numel())
            vals, idx = flat.topk(kk)
            z = torch.zeros_like(flat).scatter(0, idx, vals).view_as(r)
            kept = vals.detach()
            self._last_min_kept = kept[kept > 0].min() if bool((kept > 0).any()) else None
            return z
        return r * (r > self.threshold_).to(r.dtype)

    def _epoch_start(self, epoch):
        self._mins = []

    def _after_step(self, pre, z):
        m = getattr(self, "_last_min_kept", None)
        if m is not None:
            self._mins.append(float(m))

    def _epoch_end(self, epoch):
        if self._mins:
            self.threshold_ = float(np.mean(self._mins))

    def _extra_log(self):
        return {"threshold": float(self.threshold_)}

    def _state_extra(self):
        return {"threshold": float(self.threshold_)}

    def _state_tensors(self):
        t = super()._state_tensors()
        t["threshold"] = np.array([self.threshold_], np.float32)
        return t

    def _load_tensors(self, tensors, extra):
        super()._load_tensors(tensors, extra)
        self.threshold_ = float(np.asarray(tensors["threshold"]).reshape(-1)[0])


@register
class JumpReLUSAE(_SparseAutoencoder):
    method_name = "SAE_JUMP_RELU"
    OPTIONS = {**_SparseAutoencoder.OPTIONS, "l1_coefficient": 1e-3, "jump_threshold": 1e-3,
               "jump_bandwidth": 1e-3}

    def _check_params(self, p):
        super()._check_params(p)
        if p["jump_threshold"] <= 0 or p["jump_bandwidth"] <= 0:
            raise InvalidArgument("jump_threshold and jump_bandwidth must be > 0",
                                  field="options.jump_threshold")

    def _init_params(self, d, mean):
        super()._init_params(d, mean)
        self.log_theta = torch.nn.Parameter(
            torch.full((self.nb_concepts,), float(np.log(self.jump_threshold)), device=self.device_))

    def _params(self):
        return super()._params() + [self.log_theta]

    def _activate(self, pre, training):
        if training:
            return _JumpReLUFn.apply(pre, self.log_theta, self.jump_bandwidth)
        theta = self.log_theta.exp()
        return pre * (pre > theta).to(pre.dtype)

    def _penalty(self, pre, z):
        l0 = _StepFn.apply(pre, self.log_theta, self.jump_bandwidth).sum(1).mean()
        return self.l1_coefficient * l0

    def _extra_log(self):
        return {"mean_threshold": float(self.log_theta.detach().exp().mean())}

    def _state_tensors(self):
        t = super()._state_tensors()
        t["log_threshold"] = self.log_theta.detach().cpu().numpy()
        return t

    def _load_tensors(self, tensors, extra):
        super()._load_tensors(tensors, extra)
        self.log_theta = torch.nn.Parameter(
            torch.from_numpy(np.array(tensors["log_threshold"], np.float32)).to(self.device_),
            requires_grad=False)
