"""interpreto.concepts.probes.normalizations over the mesh: which
normalisation the concept-service fits (docs/probes.md)."""

from __future__ import annotations

from ..._compat import refuse

__all__ = ["NormalizationBase", "Standardization", "Whitening"]

_DEFAULT_EPS = 1e-8


class NormalizationBase:
    """The name of a normalisation the concept-service fits on the training
    rows (interpreto fits it in the probe, a torch module)."""

    #: FitProbe's ProbeNormalization short name.
    native_name: str = ""

    def __init__(self, eps: float = _DEFAULT_EPS) -> None:
        if float(eps) != _DEFAULT_EPS:
            raise refuse(type(self).__name__, "eps", f"the concept-service's floor is {_DEFAULT_EPS:g}")
        self.eps = float(eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Standardization(NormalizationBase):
    """(x - mean) / std per feature."""

    native_name = "standardization"


class Whitening(NormalizationBase):
    """(x - mean) V diag(sqrt(n) / s), full rank."""

    native_name = "whitening"

    def __init__(self, rank: int | None = None, eps: float = _DEFAULT_EPS) -> None:
        if rank is not None:
            raise refuse("Whitening", "rank", "the concept-service whitens at full rank only")
        super().__init__(eps)
        self.rank = None
