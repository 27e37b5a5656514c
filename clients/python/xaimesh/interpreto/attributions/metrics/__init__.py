"""interpreto.attributions.metrics over the mesh: Deletion and Insertion.

``evaluate(explanations)`` returns interpreto's ``(auc, scores)``: the mean
AUC over samples (each sample the mean over its targets) and, per sample,
per target, the score curve as a torch tensor. Scores are softmax
probabilities (interpreto's metric inference mode); the curve has
``min(n_perturbations, elements) + 1`` points from nothing to every element
perturbed, its AUC the trapezoid rule over [0, 1].
"""

from __future__ import annotations

from typing import Any

from xaimesh.attributions import metrics as native

from ..._compat import MeshPlacement, accept_noop, refuse

__all__ = ["Deletion", "Insertion"]


class _InsertionDeletion(MeshPlacement):
    native_class: type

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, device: Any = None,
                 n_perturbations: int = 100, max_percentage_perturbed: float = 1.0) -> None:
        who = type(self).__name__
        accept_noop(who, "batch_size", batch_size)
        accept_noop(who, "device", device)
        if float(max_percentage_perturbed) != 1.0:
            raise refuse(who, "max_percentage_perturbed", "the mesh's curves always go to every element "
                         "perturbed (1.0); a shorter curve is not computed")
        self.n_perturbations = int(n_perturbations)
        # interpreto computes no random-order baseline: none is asked for
        self.native = self.native_class(model, tokenizer, n_steps=self.n_perturbations, inference_mode="softmax",
                                        n_random_orders=0)

    def evaluate(self, attributions_outputs: Any) -> tuple[float, list[list[Any]]]:
        import torch

        outputs = list(attributions_outputs)
        natives = [o.to_native() if hasattr(o, "to_native") else o for o in outputs]
        _, details = self.native.evaluate(natives)
        scores = [[torch.from_numpy(row.copy()) for row in d.per_target_scores] for d in details]
        return details.auc, scores

    def __call__(self, attributions_outputs: Any) -> tuple[float, list[list[Any]]]:
        return self.evaluate(attributions_outputs)


class Deletion(_InsertionDeletion):
    native_class = native.Deletion


class Insertion(_InsertionDeletion):
    native_class = native.Insertion
