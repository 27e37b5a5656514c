"""Model-server overhead over bare torch, same forward passes, one machine.

1. Score 100 perturbations (random word masks) of the seed prompt + target:
   the model-server's Score RPC vs the same 100 forwards (batch 25) in bare
   torch in one process.
2. Layer-8 activations (TOKEN rows) of 200 short texts: the model-server's
   StreamActivations through the SDK vs bare torch stopped at layer 8 by a
   hook, in the batches the model-server forms (one token length each).
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import SEED_PROMPT, SEED_TARGET, Row, best_of, sample_texts

N_PERTURBATIONS = 100
BATCH = 25
N_TEXTS = 200
LAYER = 8


def _load_bare(model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, attn_implementation="sdpa").eval()
    return model, AutoTokenizer.from_pretrained(model_path)


def _masks(tokenizer, ids, prompt_len):
    """Random word-level keep masks over the prompt + target (seeded)."""
    text = SEED_PROMPT + SEED_TARGET
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    word_of = []
    word = -1
    for i, (start, _end) in enumerate(enc["offset_mapping"]):
        if i == 0 or text[start - 1:start].isspace() or text[start:start + 1].isspace():
            word += 1
        word_of.append(word)
    rng = np.random.default_rng(0)
    word_masks = rng.random((N_PERTURBATIONS, word + 1)) < 0.5
    return word_masks[:, word_of]


def bench_score(mesh, model_path) -> Row:
    from xaimesh_contracts.v1 import model_pb2, tensor_pb2
    from xaimesh_contracts.tensors import to_tensor

    model, tokenizer = _load_bare(model_path)
    prompt_ids = tokenizer(SEED_PROMPT, add_special_tokens=False)["input_ids"]
    ids = tokenizer(SEED_PROMPT + SEED_TARGET, add_special_tokens=False)["input_ids"]
    targets = list(range(len(prompt_ids), len(ids)))
    masks = _masks(tokenizer, ids, len(prompt_ids))
    pad = tokenizer.pad_token_id
    base = torch.tensor(ids)

    def bare():
        out = []
        with torch.inference_mode():
            for start in range(0, N_PERTURBATIONS, BATCH):
                keep = torch.from_numpy(masks[start:start + BATCH])
                batch = torch.where(keep, base, torch.full_like(base, pad))
                logp = model(batch).logits.log_softmax(-1)
                out.append(logp[:, [p - 1 for p in targets], :].gather(-1, base[targets].expand(len(batch), -1)
                                                                       .unsqueeze(-1))[..., 0])
        return torch.cat(out)

    stub = mesh.client("model").stub
    request = model_pb2.ScoreRequest(input_ids=ids, keep_mask=to_tensor(masks), target_positions=targets,
                                     inference_mode=tensor_pb2.INFERENCE_MODE_LOG_SOFTMAX,
                                     replacement=model_pb2.Replacement(policy=model_pb2.REPLACEMENT_POLICY_PAD_TOKEN))

    def served():
        return stub.Score(request)

    floor, _ = best_of(bare)
    xaimesh_s, _ = best_of(served)
    from xaimesh_contracts.tensors import to_numpy

    gap = float(np.abs(to_numpy(served().scores) - bare().numpy()).max())
    return Row(f"Score {N_PERTURBATIONS} perturbations of the seed prompt+target ({len(ids)} tokens)", floor,
               xaimesh_s, notes=[f"max |Δ log p| vs bare torch = {gap:.1e}"])


def bench_activations(mesh, model_path) -> Row:
    model, tokenizer = _load_bare(model_path)
    texts = sample_texts(N_TEXTS)
    layer = model.model.layers[LAYER]

    class Stop(Exception):
        pass

    captured = {}

    def hook(_module, _args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output
        raise Stop

    # The same forward passes as the model-server: texts of one token length
    # per batch (no padding), at most 64 per batch; rows back in input order.
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    batches = [[i for i in order if lengths[i] == n] for n in sorted(set(lengths))]
    batches = [b[start:start + 64] for b in batches for start in range(0, len(b), 64)]

    def bare():
        rows: dict[int, torch.Tensor] = {}
        handle = layer.register_forward_hook(hook)
        try:
            with torch.inference_mode():
                for batch in batches:
                    enc = tokenizer([texts[i] for i in batch], add_special_tokens=False, return_tensors="pt")
                    try:
                        model.model(**enc)
                    except Stop:
                        pass
                    rows.update(zip(batch, captured["h"]))
        finally:
            handle.remove()
        return torch.cat([rows[i] for i in range(len(texts))])

    remote = mesh.model()

    def served():
        return remote.activations(texts, split_points=[LAYER], granularity="TOKEN", show_progress=False)

    floor, _ = best_of(bare)
    xaimesh_s, _ = best_of(served)
    got = served()[f"model.layers.{LAYER}"]
    gap = float(np.abs(got.rows - bare().numpy()).max()) if got.rows.shape == bare().shape else float("nan")
    return Row(f"Layer-{LAYER} activations of {N_TEXTS} texts ({got.shape[0]} token rows), streamed to the client",
               floor, xaimesh_s, notes=[f"max |Δ| vs bare torch = {gap:.1e}"])


def run(mesh, model_path) -> list[Row]:
    return [bench_score(mesh, model_path), bench_activations(mesh, model_path)]
