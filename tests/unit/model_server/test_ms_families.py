"""The family matrix: every model family x every engine check, against bare
transformers on the same checkpoint.

Each family is a tiny random model with a tokenizer of its own kind
(tests/fixtures/family_models.py). The reference is the bare Hugging Face
model loaded with eager attention in float32, run one sequence at a time,
unpadded; the engine runs through `load_model` and its own padding,
position ids and batching. A family whose class the installed transformers
lacks is skipped with the reason (never silently).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tests.fixtures.family_models import CAUSAL, FAMILIES, LABELS, family_dir, missing_class

TEXTS = [
    "Alice offers a drink to Bob.",
    "the cat sat",
    "i had to give away my cat because of the new lease and i miss him terribly",
]
RTOL = 1e-4

CHECKS_ALL = ["load", "tokenize", "score", "score_batched", "score_replacement", "gradients", "activations", "tokens"]
CHECKS_CAUSAL = ["generate", "generate_batched"]


def _params():
    out = []
    for fam in FAMILIES:
        for check in CHECKS_ALL + (CHECKS_CAUSAL if fam.task == CAUSAL else []):
            out.append(pytest.param(fam, check, id=f"{fam.name}-{check}"))
    return out


_LOADED: dict[str, tuple] = {}


def _family(fam):
    """(LoadedModel, bare HF model) of the family, loaded once per session."""
    reason = missing_class(fam)
    if reason:  # the matrix has no skips: a family this transformers lacks is a failure to look at
        pytest.fail(f"{reason}; requirements-pins.txt pins the transformers the matrix is checked with")
    if fam.name not in _LOADED:
        import transformers

        from xaimesh_model_server.loading import load_model

        path = family_dir(fam.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load_model(path, device="cpu", model_id=fam.name)
            bare = getattr(transformers, fam.model_class).from_pretrained(
                path, dtype=torch.float32, attn_implementation="eager"
            ).eval()
        _LOADED[fam.name] = (loaded, bare)
    return _LOADED[fam.name]


class OneBatch:
    """An executor that runs every item of a call in one batch (one padded
    forward), whatever their lengths, so padding is always exercised (the
    default executor groups rows by length class)."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded
        self.batches: list[list[int]] = []

    def run(self, kind, payloads, lengths, *, is_active=None):
        from xaimesh_model_server.engine import run_rows

        self.batches.append(list(lengths))
        return run_rows(self.loaded, kind, list(payloads))

    def submit(self, kind, payloads, lengths, *, is_active=None, admitted=False):
        from xaimesh_model_server.batching import Handle

        return Handle(self.run(kind, payloads, lengths))


def _ids(loaded, text: str) -> list[int]:
    from xaimesh_model_server.tokenization import tokenize

    return tokenize(loaded, text, add_special_tokens=True).token_ids


def _rel(actual, expected) -> float:
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-6))


@torch.no_grad()
def _bare_scores(fam, bare, ids: list[int], targets: list[int]) -> np.ndarray:
    """Log-softmax of the targets in one unpadded bare forward."""
    out = bare(input_ids=torch.tensor([ids])).logits[0].float()
    if fam.task == CAUSAL:
        logp = out.log_softmax(-1)
        return np.array([float(logp[p - 1, ids[p]]) for p in targets])
    return out.log_softmax(-1)[targets].numpy()


def _targets(fam, ids: list[int]) -> dict:
    if fam.task == CAUSAL:
        return {"target_positions": list(range(1, len(ids)))}
    return {"target_classes": list(range(len(LABELS)))}


@pytest.mark.parametrize("fam, check", _params())
def test_family(fam, check):
    loaded, bare = _family(fam)
    CHECKS[check](fam, loaded, bare)


# --------------------------------------------------------------------------- checks


def check_load(fam, loaded, bare):
    assert loaded.task == fam.task
    assert loaded.architecture == fam.model_class
    assert loaded.layers_path == fam.layers_path
    assert loaded.split_points == [f"{fam.layers_path}.{i}" for i in range(2)]
    assert loaded.num_layers == 2
    assert loaded.tokenizer.pad_token_id is not None  # a pad token (the family's or the fallback)
    # The maximum length is the positions the model really has.
    assert loaded.max_sequence_length == 256
    info = loaded.info()
    # hidden_size is the width of the block outputs (activation rows), not of
    # the input embeddings (ELECTRA embeds in 32, projected to 64).
    assert loaded.hidden_size == info["hidden_size"] == 64
    assert loaded.embedding_size == bare.get_input_embeddings().weight.shape[1]
    assert info["special_tokens"]["pad_token_id"] >= 0
    if fam.task != CAUSAL:
        assert loaded.labels == LABELS


def check_score(fam, loaded, bare):
    from xaimesh_model_server import engine

    for text in TEXTS:
        ids = _ids(loaded, text)
        tg = _targets(fam, ids)
        got = engine.score(loaded, ids, inference_mode="log_softmax", **tg)[0]
        want = _bare_scores(fam, bare, ids, tg.get("target_positions") or tg["target_classes"])
        assert _rel(got, want) <= RTOL, (text, got, want)
        logits = engine.score(loaded, ids, inference_mode="logits", **tg)[0]
        with torch.no_grad():
            ref = bare(input_ids=torch.tensor([ids])).logits[0]
        if fam.task == CAUSAL:
            ref = np.array([float(ref[p - 1, ids[p]]) for p in tg["target_positions"]])
        assert _rel(logits, ref) <= RTOL


def check_score_batched(fam, loaded, bare):
    """Rows of different lengths (REMOVE drops tokens) in one padded forward:
    each row equals an unpadded bare forward of the shortened sequence."""
    from xaimesh_model_server import engine

    ids = _ids(loaded, TEXTS[2])
    L = len(ids)
    rng = np.random.default_rng(0)
    keep = np.ones((5, L), dtype=bool)
    for r in range(1, 5):  # drop 3r inner tokens: lengths L, L-3, ..., L-12
        drop = rng.choice(np.arange(1, L - 2), size=3 * r, replace=False)
        keep[r, drop] = False
    one = OneBatch(loaded)
    if fam.task == CAUSAL:
        targets = [L - 2, L - 1]
        got = engine.score(loaded, ids, keep, "remove", target_positions=targets, inference_mode="log_softmax",
                           executor=one)
        assert one.batches == [[int(k.sum()) for k in keep]]  # one padded forward
        for r in range(5):
            row = [i for i, k in zip(ids, keep[r]) if k]
            new_pos = [int(keep[r, : p + 1].sum()) - 1 for p in targets]
            want = _bare_scores(fam, bare, row, new_pos)
            assert _rel(got[r], want) <= RTOL, (r, got[r], want)
    else:
        got = engine.score(loaded, ids, keep, "remove", inference_mode="log_softmax", executor=one)
        assert one.batches == [[int(k.sum()) for k in keep]]
        for r in range(5):
            row = [i for i, k in zip(ids, keep[r]) if k]
            want = _bare_scores(fam, bare, row, list(range(len(LABELS))))
            assert _rel(got[r], want) <= RTOL, (r, got[r], want)


def check_score_replacement(fam, loaded, bare):
    """PAD_TOKEN replacement and ZERO_EMBEDDING equal the bare model fed the replaced input."""
    from xaimesh_model_server import engine

    ids = _ids(loaded, TEXTS[0])
    L = len(ids)
    keep = np.ones((2, L), dtype=bool)
    keep[0, L // 2] = False
    keep[1, 1 : L // 2] = False
    tg = _targets(fam, ids)
    if fam.task == CAUSAL:
        tg = {"target_positions": [L - 1]}
    tlist = tg.get("target_positions") or tg["target_classes"]
    got = engine.score(loaded, ids, keep, "pad_token", inference_mode="log_softmax", **tg)
    pad = loaded.tokenizer.pad_token_id
    for r in range(2):
        row = [i if k else pad for i, k in zip(ids, keep[r])]
        want = _bare_scores(fam, bare, row, tlist)
        if fam.task == CAUSAL:  # the scored token is the base sequence's
            with torch.no_grad():
                logp = bare(input_ids=torch.tensor([row])).logits[0].log_softmax(-1)
            want = np.array([float(logp[p - 1, ids[p]]) for p in tlist])
        assert _rel(got[r], want) <= RTOL
    got = engine.score(loaded, ids, keep, "zero_embedding", inference_mode="log_softmax", **tg)
    with torch.no_grad():
        for r in range(2):
            emb = bare.get_input_embeddings()(torch.tensor([ids])) * torch.tensor(keep[r], dtype=torch.float32)[None, :, None]
            logits = bare(inputs_embeds=emb).logits[0].log_softmax(-1)
            if fam.task == CAUSAL:
                want = np.array([float(logits[p - 1, ids[p]]) for p in tlist])
            else:
                want = logits[tlist].numpy()
            assert _rel(got[r], want) <= RTOL


def check_gradients(fam, loaded, bare):
    """Full gradients w.r.t. the input embeddings (what the model consumes
    through inputs_embeds) equal autograd on the bare model; two samples."""
    from xaimesh_model_server import engine

    ids = _ids(loaded, TEXTS[0])
    L = len(ids)
    tg = {"target_positions": [L - 1, L - 2]} if fam.task == CAUSAL else {"target_classes": [0, 2]}
    tlist = tg.get("target_positions") or tg["target_classes"]
    samples = engine.EmbeddingSamples(alphas=[0.5, 1.0])
    got = engine.gradients(loaded, ids, inference_mode="log_softmax", samples=samples, outputs=["full", "dot_delta"], **tg)
    x = bare.get_input_embeddings()(torch.tensor(ids)).detach()
    # explicit embeddings are as wide as the input embeddings (ELECTRA: 32, not the hidden 64)
    explicit = engine.gradients(loaded, ids, inference_mode="log_softmax", embeddings=x.numpy()[None],
                                outputs=["full"], **tg)
    assert _rel(explicit["full"][0], got["full"][1]) <= 1e-5
    for s, alpha in enumerate([0.5, 1.0]):
        for t, target in enumerate(tlist):
            point = (alpha * x).clone().requires_grad_(True)
            out = bare(inputs_embeds=point[None]).logits[0].log_softmax(-1)
            value = out[target - 1, ids[target]] if fam.task == CAUSAL else out[target]
            (grad,) = torch.autograd.grad(value, point)
            value = float(value.detach())
            assert abs(got["scores"][s, t] - value) <= RTOL * max(abs(value), 1e-6)
            assert _rel(got["full"][s, t], grad.numpy()) <= 1e-3, (s, t)
            # sum_d grad * x cancels: its error is measured against sum_d |grad * x|.
            err = np.abs(got["dot_delta"][s, t] - (grad * x).sum(-1).numpy()).max()
            assert err <= 1e-3 * float((grad * x).abs().sum(-1).max())


def check_generate(fam, loaded, bare):
    from xaimesh_model_server import engine

    for text in TEXTS[:2]:
        ids = _ids(loaded, text)
        res = engine.generate(loaded, token_ids=ids, max_new_tokens=8)
        want = _bare_generate(loaded, bare, ids, 8)
        assert res.token_ids or res.finish_reason == "eos"
        assert res.token_ids == want[: len(res.token_ids)]
        assert len(res.token_ids) == len(want) or res.finish_reason == "eos"


def _bare_generate(loaded, bare, ids, n):
    from xaimesh_model_server.engine.generation import eos_ids

    with torch.no_grad():
        out = bare.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=n,
            do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id, eos_token_id=sorted(eos_ids(loaded)),
        )[0, len(ids):].tolist()
    eos = eos_ids(loaded)
    for i, t in enumerate(out):
        if t in eos:
            return out[:i]
    return out


def check_generate_batched(fam, loaded, bare):
    """Prompts of different lengths decoded together (left-padded prefill,
    explicit position ids: GPT-2's learned positions must not see the pad)
    give each the tokens it gets alone."""
    from xaimesh_model_server.engine.generation import GenItem, eos_ids, run_generate

    prompts = [_ids(loaded, t) for t in TEXTS]
    items = [GenItem(torch.tensor(p), 6, False, 1.0, 1.0, 0, 0, eos_ids(loaded), None) for p in prompts]
    results = run_generate(loaded, items)
    for p, res in zip(prompts, results):
        want = _bare_generate(loaded, bare, p, 6)
        assert res.token_ids == want, (res.token_ids, want)


def _block_outputs(bare, ids: list[int]) -> list[torch.Tensor]:
    """Bare output of each block: hidden_states[i + 1] for the inner blocks;
    the last block by a hook (hidden_states[-1] is after the final norm in
    most decoders)."""
    from xaimesh_model_server.loading import find_layers

    _, layers = find_layers(bare)
    captured = {}
    def hook(module, args, output):  # returns None: the output is not replaced
        captured["last"] = output[0] if isinstance(output, tuple) else output

    h = layers[-1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = bare(input_ids=torch.tensor([ids]), output_hidden_states=True)
    finally:
        h.remove()
    hs = [out.hidden_states[i + 1][0] for i in range(len(layers) - 1)]
    last = captured["last"]
    return hs + [last[0] if last.dim() == 3 else last]


def _rows(loaded, texts, granularity):
    from xaimesh_model_server import engine

    job = engine.activations(loaded, texts, [0, 1], granularity=granularity, add_special_tokens=True,
                             executor=OneBatch(loaded))
    rows = {p: [] for p in loaded.split_points}
    for batch in job:
        assert not batch.errors
        for p in loaded.split_points:
            rows[p].append(batch.rows[p])
    return {p: torch.cat(v) for p, v in rows.items()}


def check_activations(fam, loaded, bare):
    """ALL_TOKENS rows (every token, specials included) of several texts in
    one padded forward equal each text's unpadded bare block outputs."""
    got = _rows(loaded, TEXTS, "all_tokens")
    want = [[] for _ in loaded.split_points]
    for text in TEXTS:
        for i, t in enumerate(_block_outputs(bare, _ids(loaded, text))):
            want[i].append(t)
    for i, p in enumerate(loaded.split_points):
        assert _rel(got[p].numpy(), torch.cat(want[i]).numpy()) <= RTOL, p


def check_tokens(fam, loaded, bare):
    """TOKEN rows are the ALL_TOKENS rows minus the special tokens' rows
    (equal to ALL_TOKENS for tokenizers that add none)."""
    from xaimesh_model_server.tokenization import tokenize

    all_rows = _rows(loaded, TEXTS, "all_tokens")
    tok_rows = _rows(loaded, TEXTS, "token")
    special = set(loaded.tokenizer.all_special_ids)
    keep = []
    for text in TEXTS:
        ids = tokenize(loaded, text, add_special_tokens=True).token_ids
        keep.extend(i not in special for i in ids)
        if fam.adds_special_tokens:
            assert ids != tokenize(loaded, text, add_special_tokens=False).token_ids
            assert any(i in special for i in ids)
        else:
            assert ids == tokenize(loaded, text, add_special_tokens=False).token_ids
    keep_t = torch.tensor(keep)
    for p in loaded.split_points:
        if not fam.adds_special_tokens:
            assert torch.equal(tok_rows[p], all_rows[p])
        assert torch.equal(tok_rows[p], all_rows[p][keep_t])


def check_tokenize(fam, loaded, bare):
    """Words and sentences of a text are the same from the text and from its
    token ids (Tokenize of `sequences`), with special tokens in no word;
    spans cover the text as the tokenizer's offsets do."""
    from xaimesh_model_server.tokenization import tokenize, tokenize_ids

    for text in TEXTS:
        tk = tokenize(loaded, text, add_special_tokens=True)
        again = tokenize_ids(loaded, tk.token_ids)
        # lower(): a lowercasing WordPiece (BERT uncased) cannot give the case back from ids
        assert [w.text.strip().lower() for w in again.words] == [w.text.strip().lower() for w in tk.words]
        assert len(again.sentences) == len(tk.sentences)
        assert [w.text for w in tk.words] == [text[w.start_char : w.end_char] for w in tk.words]
        assert all(tk.word_index[i] < 0 for i, s in enumerate(tk.special_mask) if s)
        assert tk.special_mask == [i in set(loaded.tokenizer.all_special_ids) for i in tk.token_ids]


CHECKS = {
    "load": check_load,
    "tokenize": check_tokenize,
    "score": check_score,
    "score_batched": check_score_batched,
    "score_replacement": check_score_replacement,
    "gradients": check_gradients,
    "activations": check_activations,
    "tokens": check_tokens,
    "generate": check_generate,
    "generate_batched": check_generate_batched,
}


# --------------------------------------------------------------------------- outside the matrix


def test_the_matrix_covers_every_family_asked_for():
    """No family drops out silently: a missing class is a visible skip above."""
    names = {f.name for f in FAMILIES}
    assert names >= {
        "gpt2", "gpt-neox", "llama-bos", "llama-spm", "mistral", "qwen2", "qwen3", "gemma2", "phi3", "olmo2",
        "gpt2-classifier", "qwen2-classifier", "bert", "roberta", "distilbert", "deberta-v2", "electra", "modernbert",
    }


@pytest.mark.parametrize("arch", ["BertForMaskedLM", "ElectraForPreTraining"])
def test_an_encoder_checkpoint_without_a_served_head_is_refused(tmp_path, arch):
    """bert-base-uncased (a BertForMaskedLM) would otherwise load as a "causal
    LM" (BertLMHeadModel without is_decoder) with wrong numbers."""
    from transformers import BertConfig

    from xaimesh_model_server.loading import load_model
    from xaimesh_runtime.errors import InvalidArgument

    BertConfig(architectures=[arch], hidden_size=HIDDEN_FOR_REFUSAL, num_hidden_layers=1,
               num_attention_heads=2, intermediate_size=32).save_pretrained(tmp_path)
    with pytest.raises(InvalidArgument) as info:
        load_model(tmp_path, device="cpu")
    assert info.value.field == "model" and arch in str(info.value) and "ForSequenceClassification" in str(info.value)


HIDDEN_FOR_REFUSAL = 16
