"""One row per model family: the model-server's Score against bare torch on
the same forwards, on the tiny random model of each family that the family
matrix tests (`tests/fixtures/family_models.py`, built offline), so that a
slowdown or a change of numbers on one family shows.

Each family scores 100 random keep-masks (pad-token replacement) of the seed
prompt + target, tokenized by the family's own tokenizer with its special
tokens: a causal LM the log-probabilities of the target tokens, a classifier
its class logits, an encoder-decoder the log-probabilities of the target
tokens given the source (the prompt as source, the target as decoder
tokens; masks cover both). The floor is the same 100 forwards in batches of
25 in bare torch; all the families are served by one model-server process.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import SEED_PROMPT, SEED_TARGET, Row, best_of

N_PERTURBATIONS = 100
BATCH = 25
FAMILIES = ("gpt2", "gpt-neox", "llama-bos", "qwen2", "gemma2", "phi3", "bert", "roberta", "deberta-v2",
            "modernbert", "t5", "bart", "marian")


def _family_case(name: str):
    """(path, bare model, ids, target positions or None, keep masks, pad id,
    source length (encoder-decoders, else 0)) of one family."""
    from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                              AutoTokenizer)

    from tests.fixtures.family_models import BY_NAME, CAUSAL, SEQ2SEQ, family_dir

    fam = BY_NAME[name]
    path = family_dir(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    causal, seq2seq = fam.task == CAUSAL, fam.task == SEQ2SEQ
    cls = AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM if seq2seq else AutoModelForSequenceClassification
    model = cls.from_pretrained(path, attn_implementation="eager").eval()
    prompt_ids = tokenizer(SEED_PROMPT)["input_ids"]
    if causal:
        ids = tokenizer(SEED_PROMPT + SEED_TARGET)["input_ids"]
    elif seq2seq:  # the source, then the target with the special tokens a target gets (</s>)
        ids = prompt_ids + tokenizer(SEED_TARGET.strip())["input_ids"]
    else:
        ids = prompt_ids
    special = set(tokenizer.all_special_ids)
    targets = list(range(len(prompt_ids), len(ids))) if causal or seq2seq else None
    rng = np.random.default_rng(0)
    masks = rng.random((N_PERTURBATIONS, len(ids))) < 0.5
    masks[:, [i for i, t in enumerate(ids) if t in special]] = True  # special tokens are never removed
    # the model-server's pad for a tokenizer without one: its EOS, else its unk token
    pad = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) if t is not None)
    return path, model, ids, targets, masks, pad, len(prompt_ids) if seq2seq else 0


def _bare(model, ids, targets, masks, pad, source_length):
    base = torch.tensor(ids)
    S = source_length

    def run():
        out = []
        with torch.inference_mode():
            for start in range(0, N_PERTURBATIONS, BATCH):
                keep = torch.from_numpy(masks[start:start + BATCH])
                batch = torch.where(keep, base, torch.full_like(base, pad))
                if S:  # the encoder reads the source; the decoder its start token + the target but its last
                    first = torch.full((len(batch), 1), model.config.decoder_start_token_id)
                    logits = model(input_ids=batch[:, :S], decoder_input_ids=torch.cat([first, batch[:, S:-1]], 1)).logits
                    logp = logits.log_softmax(-1)
                    out.append(logp.gather(-1, base[S:].expand(len(batch), -1).unsqueeze(-1))[..., 0])
                    continue
                logits = model(batch).logits
                if targets is None:
                    out.append(logits)
                else:
                    logp = logits.log_softmax(-1)[:, [p - 1 for p in targets], :]
                    out.append(logp.gather(-1, base[targets].expand(len(batch), -1).unsqueeze(-1))[..., 0])
        return torch.cat(out).float().numpy()

    return run


def run() -> list[Row]:
    import xaimesh
    from xaimesh.local_stack import LocalStack
    from xaimesh_contracts.tensors import to_numpy, to_tensor
    from xaimesh_contracts.v1 import model_pb2, tensor_pb2

    cases = {name: _family_case(name) for name in FAMILIES}
    stack = LocalStack(models=[str(case[0]) for case in cases.values()], services=["model"])
    rows = []
    with xaimesh.Mesh(stack.start(), stack=stack) as mesh:
        stub = mesh.client("model").stub
        served_ids = {m.name: m.model_id for m in stub.ListModels(model_pb2.ListModelsRequest()).models}
        for name, (path, model, ids, targets, masks, pad, source_length) in cases.items():
            model_id = served_ids.get(path.name, path.name)
            request = model_pb2.ScoreRequest(
                model=model_id, input_ids=ids, keep_mask=to_tensor(masks), source_length=source_length,
                replacement=model_pb2.Replacement(policy=model_pb2.REPLACEMENT_POLICY_PAD_TOKEN),
                inference_mode=tensor_pb2.INFERENCE_MODE_LOG_SOFTMAX if targets else tensor_pb2.INFERENCE_MODE_LOGITS,
                **({"target_positions": targets} if targets else {}))
            bare = _bare(model, ids, targets, masks, pad, source_length)
            floor, _ = best_of(bare)
            served_s, _ = best_of(lambda: stub.Score(request))
            served = to_numpy(stub.Score(request).scores).reshape(bare().shape)
            gap = float(np.abs(served - bare()).max())
            what = "target log p given the source" if source_length else "target log p" if targets else "class logits"
            rows.append(Row(f"Family {name}: Score {N_PERTURBATIONS} perturbations ({len(ids)} tokens, tiny model)",
                            floor, served_s, notes=[f"max |Δ {what}| vs bare torch = {gap:.1e}"]))
    return rows
