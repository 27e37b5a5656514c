"""ConSim (concept-based simulatability) through the labeling-service.

    from xaimesh.concepts import ConSim

    consim = ConSim(mesh, user_llm=OpenAILLM(...), classes=["negative", "positive"])
    explained = consim.evaluate(samples, predictions, concept_labels=labels,
                                class_importances=importances, sample_contributions=contributions)
    baseline = consim.evaluate(samples, predictions, prompt_type="l2_baseline_with_lp")
    gain = explained.score - baseline.score

A simulator LLM sees the first half of ``samples`` with the model's classes
(and, by prompt type, concept labels and importances) and predicts the
model's class of the second half; the score is the fraction it gets right.
The prompt, its parsing and the score are the service's
(``ScoreSimulatability``); docs/concept-metrics.md defines them. A
:class:`~xaimesh.llm.CallerLLM` simulator runs here: the service gives the
prompt, this process asks the LLM, the service scores the answer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import grpc

from xaimesh.concepts import _rpc
from xaimesh.errors import from_rpc_error
from xaimesh.llm import CallerLLM, as_llm_interface
from xaimesh_contracts.enums import short_names, to_number
from xaimesh_contracts.v1 import labeling_pb2

__all__ = ["PROMPT_TYPES", "ConSim", "ConSimResult"]

PROMPT_TYPES = tuple(short_names(labeling_pb2.SimulatabilityPrompt))


@dataclass(frozen=True)
class ConSimResult:
    score: float  # fraction of the evaluated samples simulated right
    model_predictions: list[str]  # the model's class of each evaluated sample
    simulator_predictions: list[str]  # the simulator's ("" = no answer)
    n_answered: int
    prompt: list[dict[str, str]]  # the conversation sent to the simulator
    reply: str
    llm: str  # the simulator, as the service names it

    @property
    def n_evaluated(self) -> int:
        return len(self.model_predictions)


def _vectors(values: Any, field: str) -> list[labeling_pb2.ConceptValues]:
    if values is None:
        return []
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    rows = values.tolist() if hasattr(values, "tolist") else values
    try:
        return [labeling_pb2.ConceptValues(values=[float(v) for v in row]) for row in rows]
    except TypeError:
        raise TypeError(f"{field} must be a 2-D array or a list of rows of floats") from None


def concept_label_list(labels: Sequence[str | None] | Mapping[int, str | None] | None) -> list[str]:
    """``concept_labels`` as one string per concept ("" = unlabelled): a list,
    or interpreto's ``{concept_index: label}`` (missing indices unlabelled)."""
    if labels is None:
        return []
    if isinstance(labels, Mapping):
        size = max((int(c) + 1 for c in labels), default=0)
        return [labels.get(c) or "" for c in range(size)]
    return [label or "" for label in labels]


def _result(response: labeling_pb2.ScoreSimulatabilityResponse) -> ConSimResult:
    return ConSimResult(
        score=float(response.score), model_predictions=list(response.model_predictions),
        simulator_predictions=list(response.simulator_predictions), n_answered=int(response.n_answered),
        prompt=[{"role": m.role, "content": m.content} for m in response.prompt], reply=response.reply,
        llm=response.llm)


class ConSim:
    """``ConSim(mesh, user_llm=None, classes=None).evaluate(samples, predictions, ...)``.

    ``user_llm``: the simulator (``OpenAILLM``, ``ModelServerLLM``,
    ``CallerLLM``; None = the labeling-service's default). ``classes``: the
    class names, indexed by ``predictions``."""

    def __init__(self, mesh: Any = None, user_llm: Any = None, classes: Sequence[str] | None = None, *,
                 timeout: float | None = None) -> None:
        self.mesh = _rpc.mesh_of(mesh)
        self.user_llm = as_llm_interface(user_llm)
        self.classes = list(classes) if classes is not None else None
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ConSim(user_llm={self.user_llm!r}, classes={self.classes!r})"

    def request(self, samples: Sequence[str], predictions: Sequence[int], *, concept_labels: Any = None,
                class_importances: Any = None, sample_contributions: Any = None,
                prompt_type: str = "e3_global_and_local_concepts_with_lp", anonymize_classes: bool = False,
                importance_threshold: float = 0.05, seed: int = 0) -> labeling_pb2.ScoreSimulatabilityRequest:
        """The ScoreSimulatabilityRequest of :meth:`evaluate`'s arguments
        (``class_importances``: [class][concept]; ``sample_contributions``:
        [sample][concept], for the first half or every sample)."""
        if hasattr(predictions, "tolist"):
            predictions = predictions.tolist()
        return labeling_pb2.ScoreSimulatabilityRequest(
            samples=list(samples), predictions=[int(p) for p in predictions], classes=self.classes or [],
            concept_labels=concept_label_list(concept_labels),
            class_importances=_vectors(class_importances, "class_importances"),
            sample_contributions=_vectors(sample_contributions, "sample_contributions"),
            prompt_type=to_number(labeling_pb2.SimulatabilityPrompt, prompt_type, field="prompt_type"),
            anonymize_classes=bool(anonymize_classes), importance_threshold=float(importance_threshold),
            seed=int(seed))

    def evaluate(self, samples: Sequence[str], predictions: Sequence[int], **kwargs: Any) -> ConSimResult:
        """Scores the simulator on ``samples`` (an even number: first half
        learning phase, second half evaluated); keywords as :meth:`request`.
        Compare with ``prompt_type="l2_baseline_with_lp"``: the same samples
        without explanations."""
        request = self.request(samples, predictions, **kwargs)
        llm = self.user_llm
        if isinstance(llm, CallerLLM):  # run here on the service's prompt; its errors are the caller's
            request.prompt_only = True
            asked = self._call(request, [])
            request.prompt_only = False
            request.reply = llm.fn([{"role": m.role, "content": m.content} for m in asked.prompt]) or ""
            return dataclasses.replace(_result(self._call(request, [])), llm=llm.describe())
        if llm is not None:
            request.llm.CopyFrom(llm.to_proto())
        return _result(self._call(request, llm.metadata() if llm is not None else []))

    def prompt(self, samples: Sequence[str], predictions: Sequence[int], **kwargs: Any) -> ConSimResult:
        """The prompt and the model's classes of the evaluated samples, no LLM
        asked (``score`` NaN)."""
        request = self.request(samples, predictions, **kwargs)
        request.prompt_only = True
        return _result(self._call(request, []))

    def _call(self, request: labeling_pb2.ScoreSimulatabilityRequest,
              metadata: list[tuple[str, str]]) -> labeling_pb2.ScoreSimulatabilityResponse:
        client = self.mesh.client("labeling")
        try:
            return client.stub.ScoreSimulatability(request, timeout=self.timeout or client.timeout,
                                                   metadata=metadata or None)
        except grpc.RpcError as error:
            raise from_rpc_error(error, client.service, client.address) from None

