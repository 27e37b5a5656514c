"""Matryoshka sparse autoencoder (Bussmann, Nabeshima, Karvonen, Nanda 2025,
"Learning Multi-Level Features with Matryoshka Sparse Autoencoders"; named
by issue 14, not in the reference toolkit 0.5.2).

The TopK autoencoder of sae.py (same encoder, codes and decoder), trained so
that nested prefixes of the dictionary reconstruct on their own: with the
prefix sizes m_1 < ... < m_P = nb_concepts (``matryoshka_prefixes``), the
reconstruction term is the mean over the prefixes of the MSE of the
reconstruction from the first m_p concepts only::

    reconstruction = (1 / P) * sum_p mean((z[:, :m_p] @ W_dec[:m_p] + b_dec - x)^2)

so the first concepts learn the coarse, general directions and later ones
refine them. The training log gives each prefix's MSE (``mse_prefix_{m}``).
Bussmann et al. use BatchTopK codes and sum the prefix losses; here TopK codes
(per-row deterministic at inference) and the mean (on the scale of a MSE).
Default prefixes: nb_concepts / 8, / 4, / 2 (those >= 1) and nb_concepts.
"""

from __future__ import annotations

from xaimesh_runtime.errors import InvalidArgument

from .base import register
from .sae import TopKSAE


@register
class MatryoshkaSAE(TopKSAE):
    method_name = "SAE_MATRYOSHKA"
    OPTIONS = {**TopKSAE.OPTIONS, "matryoshka_prefixes": []}

    def _check_params(self, p):
        super()._check_params(p)
        k = self.nb_concepts
        given = p.get("matryoshka_prefixes") or []
        try:
            prefixes = [int(m) for m in given]
        except (TypeError, ValueError):
            raise InvalidArgument(f"matryoshka_prefixes must be integers, got {given!r}",
                                  field="options.matryoshka_prefixes") from None
        if not prefixes:
            prefixes = sorted({m for m in (k // 8, k // 4, k // 2) if m >= 1})
        if prefixes and prefixes[-1] != k:
            prefixes.append(k)
        if any(b <= a for a, b in zip(prefixes, prefixes[1:])) or prefixes[0] < 1 or prefixes[-1] > k:
            raise InvalidArgument(
                f"matryoshka_prefixes must increase strictly from >= 1 to nb_concepts ({k}), got {given!r}; "
                f"e.g. {[m for m in (k // 4, k // 2, k) if m >= 1]}", field="options.matryoshka_prefixes")
        p["matryoshka_prefixes"] = prefixes

    def _reconstruction(self, x, z):
        partial = self.b_dec.expand_as(x)
        start = 0
        terms = {}
        for m in self.matryoshka_prefixes:
            partial = partial + z[:, start:m] @ self.W_dec[start:m]
            terms[f"mse_prefix_{m}"] = ((partial - x) ** 2).mean()
            start = m
        return sum(terms.values()) / len(terms), terms
