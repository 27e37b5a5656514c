"""Matching-pursuit sparse autoencoder (MpSAE; Costa, Fel, Lubana, Tolooshams,
Ba 2025, "From Flat to Hierarchical: Extracting Sparse Representations with
Matching Pursuit"; the reference toolkit's ``MpSAEConcepts``).

No encoder weights: the code of a row is found by ``top_k`` greedy steps over
the unit-norm dictionary W_dec [k, d]::

    r = x - b_dec ; z = 0
    repeat top_k times:
        c = r @ W_dec^T                 # correlation with every atom
        j = argmax_j c_j                # the signed maximum, as overcomplete's MpSAE
        z_j += c_j ; r -= c_j * W_dec[j]
    x_hat = z @ W_dec + b_dec

Each step removes the residual's component along the chosen atom, so
||r||^2 falls by c_j^2 at every step; an atom may be chosen more than once,
and a code is negative when the best correlation is (hence codes are not
non-negative). The dictionary is trained through the codes (the argmax is
not differentiated) and renormalised to unit rows after every step, which
the residual update needs. ``pre`` (what DEAD_NEURONS_REANIMATION pushes up)
is the first step's correlations. Not done: overcomplete's atom dropout.
"""

from __future__ import annotations

import numpy as np
import torch
from xaimesh_runtime.errors import InvalidArgument

from .base import register
from .sae import _SparseAutoencoder


@register
class MatchingPursuitSAE(_SparseAutoencoder):
    method_name = "SAE_MP"
    nonnegative_codes = False
    #: The residual update assumes unit-norm atoms: always renormalised.
    normalize_decoder = True
    OPTIONS = {**{k: v for k, v in _SparseAutoencoder.OPTIONS.items() if k != "normalize_decoder"}, "top_k": 8}

    def _check_params(self, p):
        super()._check_params(p)
        if p["top_k"] > self.nb_concepts:
            raise InvalidArgument(f"top_k ({p['top_k']}) pursuit steps must be <= nb_concepts ({self.nb_concepts})",
                                  field="options.top_k")

    def _init_params(self, d: int, mean: np.ndarray):
        super()._init_params(d, mean)
        del self.W_enc, self.b_enc

    def _params(self):
        return [self.W_dec, self.b_dec]

    def _codes(self, x, training: bool):
        W = self.W_dec
        residual = x - self.b_dec
        z = torch.zeros(x.shape[0], self.nb_concepts, dtype=x.dtype, device=x.device)
        pre = None
        for _ in range(self.top_k):
            corr = residual @ W.T
            if pre is None:
                pre = corr
            value, index = corr.max(dim=1)
            z = z.scatter_add(1, index[:, None], value[:, None])
            residual = residual - value[:, None] * W[index]
        return pre, z

    def _state_tensors(self):
        return {"W_dec": self.W_dec.detach().cpu().numpy(), "b_dec": self.b_dec.detach().cpu().numpy()}

    def _load_tensors(self, tensors, extra):
        self.W_dec, self.b_dec = self._frozen(tensors, "W_dec"), self._frozen(tensors, "b_dec")
