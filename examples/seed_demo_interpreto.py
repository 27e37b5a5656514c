"""The seed notebook as an interpreto user wrote it, run by the mesh.

    .venv/bin/python examples/seed_demo_interpreto.py [--model PATH] [--texts N]

The notebook's code is unchanged but for its import lines (``interpreto`` ->
``xaimesh.interpreto``) and the model and dataset names (the embedded
SmolLM2-135M-Instruct checkpoint and the shipped emotion texts, because this
machine has no hub access). The Hugging Face model object is loaded in this
process as in the notebook; xaimesh matches it to a local mesh started on
the same checkpoint (xaimesh.models). examples/seed_demo.py is the native
version of the same flow.
"""

from __future__ import annotations

import argparse
import os
import sys

# ---- the notebook's imports, with interpreto -> xaimesh.interpreto --------
from transformers import AutoModelForCausalLM, AutoTokenizer

from xaimesh.interpreto import KernelShap, ModelWithSplitPoints, plot_attributions
from xaimesh.interpreto.attributions.metrics import Deletion
from xaimesh.interpreto.concepts import LLMLabels, SemiNMFConcepts
from xaimesh.interpreto.concepts.metrics import MSE, Sparsity
from xaimesh.interpreto.model_wrapping.llm_interface import OpenAILLM

# the dataset name replaced: the shipped emotion texts instead of the hub's dataset
from xaimesh.datasets import sample_texts


def embedded_model_path() -> str:
    """The embedded default model as a checkpoint folder (converted once into the cache)."""
    from xaimesh_model_server.loading import embedded_default_path

    return str(embedded_default_path())


def run(model_path: str | None = None, *, n_texts: int | None = None, split_point: int = 8) -> dict:
    model_name = model_path or embedded_model_path()

    # ---- the notebook's cells, unchanged but for the names ------------------
    llm_interface = OpenAILLM(api_key=os.getenv("OPENAI_API_KEY"), model="gpt-4.1-nano")
    model = AutoModelForCausalLM.from_pretrained(model_name)
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    dataset = sample_texts()[:n_texts] if n_texts else sample_texts()

    attributions = KernelShap(model, tokenizer)(model_inputs="Alice and Bob enter the bar, ",
                                                targets="then Alice offers a drink to Bob.")
    plot_attributions(attributions[0])
    auc, detailed_scores = Deletion(model, tokenizer).evaluate(attributions)

    split_model = ModelWithSplitPoints(model, tokenizer=tokenizer, split_points=[split_point])
    granularity = split_model.activation_granularities.TOKEN
    activations = split_model.get_activations(inputs=dataset, activation_granularity=granularity)
    concept_explainer = SemiNMFConcepts(split_model, nb_concepts=20)
    concept_explainer.fit(activations)
    llm_labels = LLMLabels(concept_explainer=concept_explainer, activation_granularity=granularity,
                           llm_interface=llm_interface, k_examples=20).interpret(
                           inputs=dataset, latent_activations=activations, concepts_indices="all")
    mse = MSE(concept_explainer).compute(activations)
    sparsity = Sparsity(concept_explainer).compute(activations)
    # -------------------------------------------------------------------------

    print(f"Deletion AUC: {auc:.4f}")
    print("Concept labels:")
    print("\n".join(f"  {i:2d}: {label}" for i, label in llm_labels.items()))
    print(f"MSE (interpreto's: ||X - X_hat||_2): {mse:.4f}  Sparsity: {sparsity:.4f}")
    return {"attributions": attributions, "auc": auc, "detailed_scores": detailed_scores,
            "activations": activations, "split_model": split_model, "concept_explainer": concept_explainer,
            "labels": llm_labels, "mse": mse, "sparsity": sparsity}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded SmolLM2)")
    parser.add_argument("--texts", type=int, default=None, help="use only the first N texts of the dataset")
    args = parser.parse_args(argv)
    run(args.model, n_texts=args.texts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
