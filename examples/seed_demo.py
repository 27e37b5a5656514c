"""The xaimesh seed flow, end to end, on the embedded default model.

    make demo                      # or: .venv/bin/python examples/seed_demo.py
    OPENAI_API_KEY=sk-... make demo   # labels written by gpt-4.1-nano instead of the local model

Attributions (KernelShap) of a generation, their Deletion metric, layer-8
activations of a sample emotion dataset, 20 SemiNMF concepts, LLM labels and
their scores beside extractive labels (no LLM), concept metrics, and a logit
lens — all computed by the services, written to a standalone report at
out/report.html (one page per concept model at out/concepts.html, the lens at
out/lens.html).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import xaimesh
from xaimesh import KernelShap, LogitLens, plot_attributions, plot_lens
from xaimesh.attributions.metrics import Deletion
from xaimesh.concepts import ExtractiveLabels, LLMLabels, SemiNMFConcepts, concept_page
from xaimesh.concepts.metrics import MSE, Sparsity
from xaimesh.datasets import sample_texts
from xaimesh.llm import ModelServerLLM, OpenAILLM
from xaimesh.report import Report


def run(mesh=None, *, out_dir: str | Path = "out", n_texts: int | None = None, nb_concepts: int = 20,
        split_point: int = 8, models: list[str] | None = None, score_labels: bool = True) -> dict:
    started = time.perf_counter()
    own_mesh = mesh is None
    if own_mesh:
        print("Starting the local mesh (the first run converts the embedded model, ~40 s)...")
        mesh = xaimesh.connect(models=models)
    try:
        return _flow(mesh, Path(out_dir), n_texts, nb_concepts, split_point, score_labels, started)
    finally:
        if own_mesh:
            mesh.close()


def _flow(mesh, out_dir: Path, n_texts: int | None, nb_concepts: int, split_point: int, score_labels: bool,
          started: float) -> dict:
    dataset = sample_texts()[:n_texts] if n_texts else sample_texts()
    key = os.getenv("OPENAI_API_KEY")
    llm_interface = OpenAILLM(api_key=key, model="gpt-4.1-nano") if key else ModelServerLLM()

    model = mesh.model()
    tokenizer = model.tokenizer
    print(f"\n{model}")
    if model.info.has_chat_template:  # an instruct model: a chat
        reply = model.generate([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=24)
    else:  # a base model (GPT-2...): a text to continue
        reply = model.generate("The capital of France is", max_new_tokens=24)
    print(f"Generation: {reply.text.strip()!r}")

    print("\n== Attributions ==")
    attributions = KernelShap(model, tokenizer)(model_inputs="Alice and Bob enter the bar, ",
                                                targets="then Alice offers a drink to Bob.")
    plot_attributions(attributions[0])  # prints in a terminal, renders inline in a notebook
    auc, detailed_scores = Deletion(model, tokenizer).evaluate(attributions)
    random_auc = detailed_scores.random_auc
    print(f"Deletion AUC: {auc:.4f} (lower is better; random order: {random_auc:.4f}) -> "
          f"{'beats' if auc < random_auc else 'does not beat'} chance")

    print(f"\n== Concepts at layer {split_point} of {len(dataset)} texts ==")
    split_model = xaimesh.ModelWithSplitPoints(model, tokenizer=tokenizer, split_points=[split_point])
    granularity = split_model.activation_granularities.TOKEN
    activations = split_model.get_activations(inputs=dataset, activation_granularity=granularity)
    print(f"Activations: {activations!r}")
    concept_explainer = SemiNMFConcepts(split_model, nb_concepts=nb_concepts)
    concept_explainer.fit(activations)
    interpretation = LLMLabels(concept_explainer=concept_explainer, activation_granularity=granularity,
                               llm_interface=llm_interface, k_examples=20)
    llm_labels = interpretation.interpret(inputs=dataset, latent_activations=activations, concepts_indices="all")
    extractive_labels = ExtractiveLabels(concept_explainer, granularity).interpret(latent_activations=activations)
    print("Concept labels (LLM | extractive: the words that set the concept's top tokens apart):")
    print("\n".join(f"  {i:2d}: {str(label):40.40} | {extractive_labels.get(i)}" for i, label in llm_labels.items()))
    label_scores = None
    if score_labels and any(llm_labels.values()):
        label_scores = interpretation.score(llm_labels)
        print(f"Label scores (balanced accuracy, 0.5 = chance): detection {_fmt(label_scores.mean_detection)}, "
              f"fuzzing {_fmt(label_scores.mean_fuzzing)} by {label_scores.scorer}"
              + (" (scorer = labeller: optimistic)" if label_scores.scorer_is_labeller else ""))
    mse = MSE(concept_explainer).compute(activations)
    sparsity = Sparsity(concept_explainer).compute(activations)
    print(f"MSE: {mse:.6f}  Sparsity: {sparsity:.4f}")

    report = Report("xaimesh — seed flow report")
    report.add_html("Setup", f"<p>Model <b>{model.model_id}</b> ({model.info.architecture}, "
                             f"{model.num_layers} layers) on {model.info.device}; dataset: {len(dataset)} texts; "
                             f"labeller: {interpretation.labeller_ or llm_interface!r}.</p>")
    report.add_attributions(attributions, heading="KernelShap attributions")
    report.add_metric_curves(detailed_scores, heading="Deletion curve (lower AUC is better)")
    report.add_concepts(llm_labels, interpretation.results_, label_scores,
                        heading=f"{nb_concepts} SemiNMF concepts at layer {split_point}",
                        extractive_labels=extractive_labels)
    report.add_metrics({"MSE (mean squared error per element)": mse, "Sparsity (fraction of non-zero codes)": sparsity})
    path = report.save(out_dir / "report.html")
    page = concept_page(concept_explainer, activations, labels=llm_labels, label_scores=label_scores,
                        importance_text=None if model.is_classifier else "Alice offers a drink to Bob.")
    page_path = page.save_html(out_dir / "concepts.html")
    print(f"Concept page: {page_path}")
    if not model.is_classifier:
        print("\n== Logit lens ==")
        lens = LogitLens(model, tokenizer, top_k=5)("The capital of France is Paris, and the capital of Italy is")
        lens_path = plot_lens(lens, show=False).save_html(out_dir / "lens.html")
        print(f"Top next token after the last word, by layer: " + ", ".join(
            f"{name.rsplit('.', 1)[-1]}: {rows[-1][0]!r}" for name, rows in list(zip(lens.layers, lens.top_tokens))[-4:]))
        print(f"Lens grid (layer x position): {lens_path}")
    elapsed = time.perf_counter() - started
    print(f"\nReport: {path}  (done in {elapsed:.0f} s)")
    return {"auc": auc, "random_auc": random_auc, "labels": llm_labels, "extractive_labels": extractive_labels,
            "mse": mse, "sparsity": sparsity,
            "report": path, "seconds": elapsed, "label_scores": label_scores}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out", help="folder of report.html")
    parser.add_argument("--texts", type=int, default=None, help="use only the first N texts of the dataset")
    parser.add_argument("--model", action="append", help="model-server model (default: embedded SmolLM2)")
    args = parser.parse_args(argv)
    run(out_dir=args.out, n_texts=args.texts, models=args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
