"""Sparse autoencoders in torch: Vanilla (ReLU + L1), TopK, BatchTopK,
JumpReLU here; MpSAE (sae_mp.py) and Matryoshka (sae_matryoshka.py) build on
the same trainer.

Architecture (the four variants of this module)::

    pre   = (x - b_dec) @ W_enc + b_enc          # [n, k]
    z     = activation(pre)                      # codes, >= 0
    x_hat = z @ W_dec + b_dec                    # W_dec [k, d], unit-norm rows

Init: W_dec rows are seeded Gaussian directions of unit norm, W_enc = W_dec^T
(tied init), b_enc = 0, b_dec = the data mean (one streaming pass).

Training (``_SparseAutoencoder._train``; every option: docs/concept-methods.md)
reads the rows through a *block feed*: ``blocks(epoch)`` returns an iterable
of 2-D float32 row blocks of any size. ``blocks(0)`` is every row once, in
any order (the initial mean and, after training, the FINAL evaluation);
``blocks(1..epochs)`` are the rows of each epoch in training order. The
trainer cuts the blocks into minibatches of ``batch_size`` rows and holds one
minibatch (plus one block) at a time, so a disk-backed store can feed it
epoch by epoch: ``fit_blocks(blocks, n_features)``. ``fit(X)`` builds the
feed from a row source (seeded shuffled blocks, ``data.iter_shuffled_batches``).

Per step: loss = criterion + the method's sparsity penalty, where the
criterion (``loss``) is MSE (mean squared error per element) or
DEAD_NEURONS_REANIMATION (MSE - 1e-3 * mean(pre * dead), dead = the concepts
with no code > 0 in the minibatch: the reference toolkit's
DeadNeuronsReanimationLoss); the optimiser (``optimizer``: ADAM, ADAMW, SGD
with momentum 0.9; ``weight_decay``) steps after optional gradient-norm
clipping (``clip_grad``), with the learning rate of the schedule
(``scheduler``: CONSTANT, COSINE, LINEAR, WARMUP; per step); then the decoder
rows are renormalised to unit norm (``normalize_decoder``).

Penalties: Vanilla l1_coefficient * mean_rows(sum_k |z_k| * ||W_dec[k]||);
TopK / BatchTopK none (sparsity is structural); JumpReLU l1_coefficient *
mean_rows(L0) through a straight-through estimator.

* TopK: the top_k largest pre-activations are kept, then ReLU - so a row has
  exactly top_k non-zero codes whenever at least top_k pre-activations are
  positive, never more.
* BatchTopK: in training the top (top_k * batch) ReLU'd pre-activations of
  the whole batch are kept. At inference a single learned threshold is used
  instead (z = pre if pre > threshold else 0), so encode is per-row
  deterministic; the threshold is the mean, over the batches of the last
  epoch, of the smallest activation kept by the batch top-k.
* JumpReLU: z = pre * H(pre - theta) with a per-concept theta =
  exp(log_theta) (init ``jump_threshold``); gradients of H w.r.t. theta use
  the straight-through estimator with a rectangle kernel of width
  ``jump_bandwidth`` (Rajamanoharan et al. 2024).

Training log (LogEntry, streamed as TrainingLogEntry): one EPOCH entry per
epoch (means over its minibatches as trained: loss and its components
``reconstruction``, ``sparsity_penalty``, ``reanimation``; ``l0``;
``dead_fraction`` = concepts with no non-zero code in the epoch; the learning
rate), STEP entries every ``log_every_steps`` steps, and one FINAL entry: the
fitted model, as stored (inference encoding), evaluated on every row; its
loss is ``final_loss_``. Deterministic for a given seed on a given device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from xaimesh_contracts.v1 import concept_pb2
from xaimesh_runtime.errors import Cancelled, InvalidArgument

from ..common import LogEntry, enum_key, numpy_rng
from ..data import iter_shuffled_batches, rows_per_chunk
from .base import ConceptMethod, block_moments, register

#: The reference toolkit's DeadNeuronsReanimationLoss weight.
REANIMATION_WEIGHT = 1e-3
#: Enum-valued training options: option -> (proto enum, default short name).
TRAINING_ENUMS = {"loss": (concept_pb2.SaeLoss, "MSE"), "optimizer": (concept_pb2.SaeOptimizer, "ADAM"),
                  "scheduler": (concept_pb2.SaeScheduler, "CONSTANT")}


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


def _checked_block(block, d: int) -> np.ndarray:
    """A block of a feed as float32 [rows, d]; INVALID_ARGUMENT for another shape."""
    block = np.asarray(block, dtype=np.float32)
    if block.ndim != 2 or block.shape[1] != d:
        raise InvalidArgument(f"a block of rows has shape {block.shape}; expected [rows, {d}]", field="activations")
    return block


class _SparseAutoencoder(ConceptMethod):
    uses_device = True
    streaming = True
    nonnegative_codes = True
    needs_rows_ge_concepts = False
    OPTIONS = {"epochs": 10, "batch_size": 256, "learning_rate": 1e-3, "normalize_decoder": True,
               "loss": "MSE", "optimizer": "ADAM", "scheduler": "CONSTANT", "weight_decay": 0.0,
               "clip_grad": 0.0, "warmup_steps": 0, "log_every_steps": 0}

    def _check_params(self, p):
        super()._check_params(p)
        for key, (enum, default) in TRAINING_ENUMS.items():
            if key in p:
                name = enum_key(enum, p[key], f"options.{key}", what=f"SAE {key}")
                p[key] = default if name == "UNSPECIFIED" else name
        for key in ("weight_decay", "clip_grad"):
            if key in p and (not math.isfinite(p[key]) or p[key] < 0):
                raise InvalidArgument(f"{key} must be a finite number >= 0 (0 = none), got {p[key]}",
                                      field=f"options.{key}")
        for key in ("warmup_steps", "log_every_steps"):
            if key in p and not 0 <= p[key] <= self.MAX_COUNTS["epochs"]:
                raise InvalidArgument(f"{key} must be between 0 and {self.MAX_COUNTS['epochs']}, got {p[key]}",
                                      field=f"options.{key}")
        if "learning_rate" in p and p["learning_rate"] <= 0:
            raise InvalidArgument(f"learning_rate must be > 0, got {p['learning_rate']}",
                                  field="options.learning_rate")
        if p.get("scheduler") == "WARMUP" and p.get("warmup_steps", 0) < 1:
            raise InvalidArgument("the WARMUP scheduler needs warmup_steps >= 1 (the steps of linear warm-up)",
                                  field="options.warmup_steps")

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

    def _codes(self, x, training: bool):
        """(pre-activations [n, k], codes [n, k]) of rows ``x``; ``pre`` is what
        the reanimation loss pushes up for dead concepts."""
        pre = self._pre(x)
        return pre, self._activate(pre, training)

    def _reconstruction(self, x, z):
        """(the criterion's reconstruction term, named extra components)."""
        return ((z @ self.W_dec + self.b_dec - x) ** 2).mean(), {}

    def _penalty(self, pre, z):
        return torch.zeros((), device=pre.device)

    # ---- fit ---------------------------------------------------------------
    def _fit(self, source, log, should_stop):
        rng = numpy_rng(self.seed)
        chunk = rows_per_chunk(source.n_features)

        def blocks(epoch):
            if epoch == 0:
                return (rows for _, rows in source.iter_chunks(chunk))
            return iter_shuffled_batches(source, self.batch_size, rng)

        self._train(blocks, source.n_features, log, should_stop)

    def fit_blocks(self, blocks, n_features: int, progress=None, should_stop=None):
        """Fit from a block feed instead of a row source: ``blocks(0)`` is every
        row once in any order, ``blocks(e)`` for e = 1..epochs the rows of
        epoch e in training order (the caller shuffles); each an iterable of
        2-D float32 arrays [rows, n_features] of any size. With
        ``standardize``, ``blocks(0)`` is read once more first (the moments)."""
        self.hidden_size_ = int(n_features)
        self.training_log_ = []
        if self.params.get("standardize"):
            mean, std = block_moments((_checked_block(b, n_features) for b in blocks(0)), n_features, should_stop)
            self.mean_ = mean.astype(np.float32)
            self.scale_ = np.where(std > 1e-12, std, 1.0).astype(np.float32)
            raw = blocks

            def blocks(epoch):
                return ((_checked_block(b, n_features) - self.mean_) / self.scale_ for b in raw(epoch))

        def log(entry):
            self.training_log_.append(entry)
            if progress is not None:
                progress(entry)

        self._train(blocks, int(n_features), log, should_stop)
        self.fitted_ = True
        return self

    def _tensor(self, rows):
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(self.device_)

    def _minibatches(self, blocks, d, should_stop):
        """Minibatches of exactly batch_size rows (the last one of an epoch
        may be smaller) cut from blocks of any size, in feed order."""
        pending: list[np.ndarray] = []
        held = 0
        for block in blocks:
            if should_stop is not None and should_stop():
                raise Cancelled(f"the {self.method_name} fit was cancelled")
            block = _checked_block(block, d)
            pending.append(block)
            held += block.shape[0]
            while held >= self.batch_size:
                whole = pending[0] if len(pending) == 1 else np.concatenate(pending)
                yield whole[:self.batch_size]
                pending, held = [whole[self.batch_size:]], held - self.batch_size
        if held:
            yield np.concatenate(pending)

    def _lr_factor(self, step: int, total: int) -> float:
        """Learning-rate multiplier of step ``step`` (0-based) of ``total``."""
        if self.scheduler == "COSINE":
            return 0.5 * (1.0 + math.cos(math.pi * step / total))
        if self.scheduler == "LINEAR":
            return 1.0 - step / total
        if self.scheduler == "WARMUP":
            return min(1.0, (step + 1) / self.warmup_steps)
        return 1.0

    def _optimizer(self):
        params, lr, wd = self._params(), self.learning_rate, self.weight_decay
        if self.optimizer == "ADAMW":
            return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
        if self.optimizer == "SGD":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)

    def _loss(self, x, training: bool):
        """(loss, pre, z, components) of one minibatch; components are 0-d tensors."""
        pre, z = self._codes(x, training)
        rec, extra = self._reconstruction(x, z)
        pen = self._penalty(pre, z)
        comps = {"reconstruction": rec, "sparsity_penalty": pen, **extra}
        loss = rec + pen
        if self.loss == "DEAD_NEURONS_REANIMATION":
            dead = ((z > 0).sum(0) == 0).to(pre.dtype).detach()
            reanimation = -REANIMATION_WEIGHT * (pre * dead[None, :]).mean()
            comps["reanimation"] = reanimation
            loss = loss + reanimation
        return loss, pre, z, comps

    def _train(self, blocks, d, log, should_stop):
        n_rows, total = 0, np.zeros(d, np.float64)
        for rows in self._minibatches(blocks(0), d, should_stop):
            n_rows += rows.shape[0]
            total += rows.sum(0, dtype=np.float64)
        if n_rows == 0:
            raise InvalidArgument("cannot fit on an empty set of activations (0 rows)", field="activation_set")
        self._init_params(d, total / n_rows)
        opt = self._optimizer()
        total_steps = self.epochs * math.ceil(n_rows / self.batch_size)
        step = 0
        lr = self.learning_rate
        for epoch in range(1, self.epochs + 1):
            self._epoch_start(epoch)
            sums: dict[str, float] = {}
            rows_seen, nnz = 0, 0.0
            fired = torch.zeros(self.nb_concepts, dtype=torch.bool, device=self.device_)
            for batch in self._minibatches(blocks(epoch), d, should_stop):
                x = self._tensor(batch)
                lr = self.learning_rate * self._lr_factor(min(step, total_steps - 1), total_steps)
                for group in opt.param_groups:
                    group["lr"] = lr
                loss, pre, z, comps = self._loss(x, training=True)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(self._params(), self.clip_grad)
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
                    nnz += float(nz.sum())
                values = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in comps.items()}}
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value * b
                if self.log_every_steps and step % self.log_every_steps == 0:
                    batch_values = {k: v for k, v in values.items() if k != "loss"}
                    batch_values.update(l0=float(nz.sum()) / b, learning_rate=lr)
                    log(LogEntry(step=step, epoch=epoch, loss=values["loss"], values=batch_values,
                                 done=step, total=total_steps, stage="training", kind="STEP",
                                 learning_rate=lr, message=f"epoch {epoch}/{self.epochs} step loss={values['loss']:.4g}"))
            self._epoch_end(epoch)
            n = max(rows_seen, 1)
            means = {k: v / n for k, v in sums.items()}
            epoch_loss = means.pop("loss")
            means.update(l0=nnz / n, dead_fraction=float((~fired).float().mean()), learning_rate=lr)
            means.update(self._extra_log())
            log(LogEntry(step=step, epoch=epoch, loss=epoch_loss, values=means, done=step, total=total_steps,
                         stage="training", kind="EPOCH", learning_rate=lr,
                         message=f"epoch {epoch}/{self.epochs} loss={epoch_loss:.4g}"))
        for p in self._params():
            p.requires_grad_(False)
        final, values = self._evaluate(blocks(0), d, should_stop)
        self.final_loss_ = final
        log(LogEntry(step=step, epoch=self.epochs, loss=final, values={**values, "learning_rate": lr}, done=step,
                     total=total_steps, stage="evaluating", kind="FINAL", learning_rate=lr,
                     message=f"final loss={final:.4g}"))

    @torch.no_grad()
    def _evaluate(self, blocks, d, should_stop):
        """(loss, components) of the fitted model, as stored, over every row:
        the training loss with inference encoding, each term a mean over all
        the rows (reanimation: dead = no code > 0 on any row)."""
        sums: dict[str, float] = {}
        n, nnz = 0, 0.0
        pre_sums = torch.zeros(self.nb_concepts, dtype=torch.float64, device=self.device_)
        positive = torch.zeros(self.nb_concepts, dtype=torch.bool, device=self.device_)
        fired = torch.zeros(self.nb_concepts, dtype=torch.bool, device=self.device_)
        for batch in self._minibatches(blocks, d, should_stop):
            x = self._tensor(batch)
            pre, z = self._codes(x, training=False)
            rec, extra = self._reconstruction(x, z)
            comps = {"reconstruction": rec, "sparsity_penalty": self._penalty(pre, z), **extra}
            b = x.shape[0]
            for key, value in comps.items():
                sums[key] = sums.get(key, 0.0) + float(value) * b
            pre_sums += pre.sum(0, dtype=torch.float64)
            positive |= (z > 0).any(0)
            fired |= (z != 0).any(0)
            nnz += float((z != 0).sum())
            n += b
        values = {k: v / n for k, v in sums.items()}
        loss = values["reconstruction"] + values["sparsity_penalty"]
        if self.loss == "DEAD_NEURONS_REANIMATION":
            values["reanimation"] = -REANIMATION_WEIGHT * float((pre_sums * (~positive)).sum()) / (n * self.nb_concepts)
            loss += values["reanimation"]
        values.update(l0=nnz / n, dead_fraction=float((~fired).float().mean()))
        values.update(self._extra_log())
        return loss, values

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
        return self._codes(self._tensor(X), training=False)[1].cpu().numpy()

    @torch.no_grad()
    def _decode(self, codes):
        return (self._tensor(codes) @ self.W_dec + self.b_dec).cpu().numpy()

    def _dictionary(self):
        return self.W_dec.detach().cpu().numpy()

    def _state_tensors(self):
        return {"W_enc": self.W_enc.detach().cpu().numpy(), "b_enc": self.b_enc.detach().cpu().numpy(),
                "W_dec": self.W_dec.detach().cpu().numpy(), "b_dec": self.b_dec.detach().cpu().numpy()}

    def _frozen(self, tensors, name):
        return torch.nn.Parameter(torch.from_numpy(np.array(tensors[name], np.float32)).to(self.device_),
                                  requires_grad=False)

    def _load_tensors(self, tensors, extra):
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = (
            self._frozen(tensors, name) for name in ("W_enc", "b_enc", "W_dec", "b_dec"))


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
        self.log_theta = self._frozen(tensors, "log_threshold")
