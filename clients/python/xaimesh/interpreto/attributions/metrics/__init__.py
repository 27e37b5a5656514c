"""interpreto.attributions.metrics over the mesh: Deletion and Insertion.

``evaluate(explanations)`` returns interpreto's ``(auc, scores)``: the mean
AUC over samples (each sample the mean over its targets) and, per sample,
per target, the score curve as a torch tensor. Scores are softmax
probabilities (interpreto's metric inference mode); the curve has
``min(n_perturbations, elements) + 1`` points from nothing to every element
perturbed, its AUC the trapezoid rule over [0, 1] (each output is one call
with its own number of steps). Checked against interpreto 0.5.2 itself
(tests/integration/test_interpreto_reference.py).
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
        self.native = self.native_class(model, tokenizer, inference_mode="softmax", n_random_orders=0)

    def evaluate(self, attributions_outputs: Any) -> tuple[float, list[list[Any]]]:
        import torch

        natives = [o.to_native() if hasattr(o, "to_native") else o for o in attributions_outputs]
        aucs, scores = [], []
        for native in natives:
            # interpreto's curve: min(n_perturbations, elements) steps, one call per output for its own count
            self.native.n_steps = min(self.n_perturbations, len(native.elements))
            details = self.native.evaluate([native])[1][0]
            aucs.append(details.auc)
            scores.append([torch.from_numpy(row.copy()) for row in details.per_target_scores])
        return float(sum(aucs) / len(aucs)), scores

    def __call__(self, attributions_outputs: Any) -> tuple[float, list[list[Any]]]:
        return self.evaluate(attributions_outputs)


class Deletion(_InsertionDeletion):
    native_class = native.Deletion


class Insertion(_InsertionDeletion):
    native_class = native.Insertion
