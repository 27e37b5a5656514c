"""The family matrix: every model family x every engine check, against bare
transformers on the same checkpoint.

Each family is a tiny random model with a tokenizer of its own kind
(tests/fixtures/family_models.py). The reference is the bare Hugging Face
model loaded with eager attention in float32, run one sequence at a time,
unpadded; the engine runs through `load_model` and its own padding,
position ids and batching. A family whose class the installed transformers
lacks fails with the reason (the matrix has no skips). Encoder-decoders (T5,
BART, Marian) run the same checks on source + target sequences
(SEQ2SEQ_CHECKS below).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tests.fixtures.family_models import CAUSAL, FAMILIES, LABELS, SEQ2SEQ, family_dir, missing_class

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
        for check in CHECKS_ALL + (CHECKS_CAUSAL if fam.task in (CAUSAL, SEQ2SEQ) else []):
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
    checks = {**CHECKS, **SEQ2SEQ_CHECKS} if fam.task == SEQ2SEQ else CHECKS
    checks[check](fam, loaded, bare)


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
        # one padded forward; each row stops before its last token (no score reads its logits)
        assert one.batches == [[int(k.sum()) - 1 for k in keep]]
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
    """PAD_TOKEN replacement and ZERO_EMBEDDING equal the bare model fed the
    whole replaced input. A causal LM's targets end before the row does: its
    forwards stop at the last logits position scored, with the same scores."""
    from xaimesh_model_server import engine

    ids = _ids(loaded, TEXTS[0])
    L = len(ids)
    keep = np.ones((2, L), dtype=bool)
    keep[0, L // 2] = False
    keep[1, 1 : L // 2] = False
    tg = _targets(fam, ids)
    if fam.task == CAUSAL:
        tg = {"target_positions": [L // 2 + 1, L - 3]}
    tlist = tg.get("target_positions") or tg["target_classes"]
    forwarded = [L - 3 if fam.task == CAUSAL else L] * 2  # causal: positions 0..L - 4, whose last logits score L - 3
    one = OneBatch(loaded)
    got = engine.score(loaded, ids, keep, "pad_token", inference_mode="log_softmax", executor=one, **tg)
    assert one.batches == [forwarded]
    pad = loaded.tokenizer.pad_token_id
    for r in range(2):
        row = [i if k else pad for i, k in zip(ids, keep[r])]
        want = _bare_scores(fam, bare, row, tlist)
        if fam.task == CAUSAL:  # the scored token is the base sequence's
            with torch.no_grad():
                logp = bare(input_ids=torch.tensor([row])).logits[0].log_softmax(-1)
            want = np.array([float(logp[p - 1, ids[p]]) for p in tlist])
        assert _rel(got[r], want) <= RTOL
    got = engine.score(loaded, ids, keep, "zero_embedding", inference_mode="log_softmax", executor=one, **tg)
    assert one.batches[-1] == forwarded
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

    job = engine.activations(loaded, texts, list(range(len(loaded.split_points))), granularity=granularity,
                             add_special_tokens=True, executor=OneBatch(loaded))
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


# --------------------------------------------------------------------------- encoder-decoders
#
# A sequence is source + target (docs/models.md, "Encoder-decoders"): the
# reference is the bare model given input_ids = the source and
# decoder_input_ids = the decoder start token + the target minus its last
# token, one pair at a time, unpadded.

SOURCES = TEXTS
TARGETS = ["the cat sat on the mat", "Bob offers a drink", "i miss him"]


def _pair(loaded, k: int = 0, target: int | None = None) -> tuple[list[int], list[int]]:
    """(source ids, target ids), both tokenized with the tokenizer's special tokens."""
    return _ids(loaded, SOURCES[k]), _ids(loaded, TARGETS[k if target is None else target])


@torch.no_grad()
def _bare_seq2seq(loaded, bare, src, tgt, decoder_src=None, decoder_embeds=None, encoder_embeds=None) -> torch.Tensor:
    """Bare logits [len(tgt), V]: row k scores target token k. `decoder_src`:
    the decoder's input tokens (default the target) before the shift."""
    dec = tgt if decoder_src is None else decoder_src
    kwargs = {}
    if encoder_embeds is None:
        kwargs["input_ids"] = torch.tensor([src])
    else:
        kwargs["inputs_embeds"] = encoder_embeds[None]
    if decoder_embeds is None:
        kwargs["decoder_input_ids"] = torch.tensor([[loaded.decoder_start_token_id] + dec[:-1]])
    else:
        kwargs["decoder_inputs_embeds"] = decoder_embeds[None]
    return bare(**kwargs).logits[0].float()


def _picked(logits: torch.Tensor, tgt: list[int], ks) -> np.ndarray:
    return np.array([float(logits[k, tgt[k]]) for k in ks])


def s2s_check_load(fam, loaded, bare):
    enc, dec = fam.layers_path, fam.decoder_layers_path
    assert loaded.task == SEQ2SEQ and loaded.is_seq2seq
    assert loaded.architecture == fam.model_class
    assert loaded.split_points == [f"{enc}.0", f"{enc}.1", f"{dec}.0", f"{dec}.1"]
    assert loaded.num_layers == 4 and loaded.num_encoder_layers == 2
    assert loaded.decoder_start_token_id == bare.config.decoder_start_token_id
    info = loaded.info()
    assert info["num_encoder_layers"] == 2 and info["decoder_start_token_id"] == loaded.decoder_start_token_id
    assert loaded.hidden_size == info["hidden_size"] == 64
    assert loaded.max_sequence_length == 256
    assert loaded.tokenizer.pad_token_id is not None


def s2s_check_score(fam, loaded, bare):
    """Every target token of one source + target pair, logits and log-softmax."""
    from xaimesh_model_server import engine

    for k in range(len(SOURCES)):
        src, tgt = _pair(loaded, k)
        S, ids = len(src), src + tgt
        positions = list(range(S, len(ids)))
        ref = _bare_seq2seq(loaded, bare, src, tgt)
        for mode, table in (("log_softmax", ref.log_softmax(-1)), ("logits", ref)):
            got = engine.score(loaded, ids, source_length=S, target_positions=positions, inference_mode=mode)[0]
            assert _rel(got, _picked(table, tgt, range(len(tgt)))) <= RTOL, (k, mode)


def s2s_check_score_batched(fam, loaded, bare):
    """Rows of different source and target lengths (REMOVE drops source and
    target-prefix tokens) in one padded forward of each stack: each row
    equals an unpadded bare forward of its shortened source and target."""
    from xaimesh_model_server import engine

    src, tgt = _pair(loaded, 2, target=0)
    S, ids = len(src), src + tgt
    L = len(ids)
    targets = [L - 2, L - 1]
    rng = np.random.default_rng(0)
    keep = np.ones((5, L), dtype=bool)
    for r in range(1, 5):  # drop 2r source tokens and r target-prefix tokens
        keep[r, rng.choice(np.arange(0, S), size=2 * r, replace=False)] = False
        keep[r, rng.choice(np.arange(S, L - 2), size=r, replace=False)] = False
    one = OneBatch(loaded)
    got = engine.score(loaded, ids, keep, "remove", source_length=S, target_positions=targets,
                       inference_mode="log_softmax", executor=one)
    assert one.batches == [[int(k.sum()) for k in keep]]
    for r in range(5):
        row_src = [i for i, k in zip(src, keep[r, :S]) if k]
        row_tgt = [i for i, k in zip(tgt, keep[r, S:]) if k]
        ks = [int(keep[r, S : p + 1].sum()) - 1 for p in targets]
        want = _picked(_bare_seq2seq(loaded, bare, row_src, row_tgt).log_softmax(-1), row_tgt, ks)
        assert _rel(got[r], want) <= RTOL, (r, got[r], want)
    # batched == one at a time, rows with different source lengths through the default executor
    for r in range(5):
        alone = engine.score(loaded, ids, keep[r : r + 1], "remove", source_length=S, target_positions=targets,
                             inference_mode="log_softmax")
        assert _rel(alone[0], got[r]) <= RTOL


def _bare_embeds(fam, bare, ids: list[int], decoder: bool) -> torch.Tensor:
    """A stack's inputs_embeds for `ids`, from the config and the family's
    known behaviour (independent of the engine's probe): the embedding rows
    times sqrt(d_model) where scale_embedding is set, except for a stack
    that scales the inputs_embeds it is given itself (Marian's decoder)."""
    rows = bare.get_input_embeddings().weight[torch.tensor(ids)].detach()
    scaled = getattr(bare.config, "scale_embedding", False) and not (
        decoder and fam.extra.get("decoder_scales_inputs_embeds"))
    return rows * float(bare.config.d_model) ** 0.5 if scaled else rows


def s2s_check_score_replacement(fam, loaded, bare):
    """PAD_TOKEN in the source and in the target prefix equals the bare model
    fed the replaced source and decoder input (the scored tokens stay the
    base target's); ZERO_EMBEDDING equals zeroed input embeddings."""
    from xaimesh_model_server import engine

    src, tgt = _pair(loaded, 0)
    S, ids = len(src), src + tgt
    L = len(ids)
    keep = np.ones((2, L), dtype=bool)
    keep[0, S // 2] = False
    keep[1, 1 : S // 2] = False
    keep[1, S + 1] = False  # a target-prefix token: the decoder reads it at position 2
    positions = list(range(S, L))
    pad = loaded.tokenizer.pad_token_id
    got = engine.score(loaded, ids, keep, "pad_token", source_length=S, target_positions=positions,
                       inference_mode="log_softmax")
    for r in range(2):
        row = [i if k else pad for i, k in zip(ids, keep[r])]
        ref = _bare_seq2seq(loaded, bare, row[:S], tgt, decoder_src=row[S:]).log_softmax(-1)
        assert _rel(got[r], _picked(ref, tgt, range(len(tgt)))) <= RTOL, r
    got = engine.score(loaded, ids, keep, "zero_embedding", source_length=S, target_positions=positions,
                       inference_mode="log_softmax")
    start = _bare_embeds(fam, bare, [loaded.decoder_start_token_id], True)
    for r in range(2):
        k = torch.tensor(keep[r], dtype=torch.float32)[:, None]
        enc = _bare_embeds(fam, bare, src, False) * k[:S]
        dec = torch.cat([start, (_bare_embeds(fam, bare, tgt, True) * k[S:])[:-1]])
        ref = _bare_seq2seq(loaded, bare, src, tgt, decoder_embeds=dec, encoder_embeds=enc).log_softmax(-1)
        assert _rel(got[r], _picked(ref, tgt, range(len(tgt)))) <= RTOL, r


def s2s_check_gradients(fam, loaded, bare):
    """Gradients w.r.t. the encoder's input embeddings (source positions) and
    the decoder's (target positions; target token k feeds decoder position
    k + 1, the last one nothing) equal autograd on the bare model."""
    from xaimesh_model_server import engine

    src, tgt = _pair(loaded, 0)
    S, ids = len(src), src + tgt
    L = len(ids)
    targets = [L - 1, S + 1]
    samples = engine.EmbeddingSamples(alphas=[0.5, 1.0])
    got = engine.gradients(loaded, ids, source_length=S, target_positions=targets, inference_mode="log_softmax",
                           samples=samples, outputs=["full", "dot_delta"])
    x = torch.cat([_bare_embeds(fam, bare, src, False), _bare_embeds(fam, bare, tgt, True)])
    start = _bare_embeds(fam, bare, [loaded.decoder_start_token_id], True)
    for s, alpha in enumerate([0.5, 1.0]):
        for t, p in enumerate(targets):
            point = (alpha * x).clone().requires_grad_(True)
            dec = torch.cat([start, point[S : L - 1]])
            logp = bare(inputs_embeds=point[None, :S], decoder_inputs_embeds=dec[None]).logits[0].log_softmax(-1)
            value = logp[p - S, ids[p]]
            (grad,) = torch.autograd.grad(value, point)
            value = float(value.detach())
            assert abs(got["scores"][s, t] - value) <= RTOL * max(abs(value), 1e-6)
            assert _rel(got["full"][s, t], grad.numpy()) <= 1e-3, (s, t)
            assert not got["full"][s, t, L - 1].any()  # the last target token feeds nothing
            err = np.abs(got["dot_delta"][s, t] - (grad * x).sum(-1).numpy()).max()
            assert err <= 1e-3 * float((grad * x).abs().sum(-1).max())
    # at alpha 1 the scores are the bare model's from token ids: the embeddings are what the stacks consume
    want = _picked(_bare_seq2seq(loaded, bare, src, tgt).log_softmax(-1), tgt, [p - S for p in targets])
    assert _rel(got["scores"][1], want) <= RTOL


def _bare_s2s_generate(loaded, bare, src, n):
    from xaimesh_model_server.engine.generation import eos_ids

    with torch.no_grad():
        out = bare.generate(torch.tensor([src]), attention_mask=torch.ones(1, len(src), dtype=torch.long),
                            max_new_tokens=n, do_sample=False, eos_token_id=sorted(eos_ids(loaded)))[0].tolist()
    assert out[0] == loaded.decoder_start_token_id
    out = out[1:]
    eos = eos_ids(loaded)
    return next((out[:i] for i, t in enumerate(out) if t in eos), out)


def s2s_check_generate(fam, loaded, bare):
    from xaimesh_model_server import engine

    for text in SOURCES[:2]:
        res = engine.generate(loaded, text, max_new_tokens=8)
        assert res.prompt_token_ids == _ids(loaded, text)
        assert res.token_ids == _bare_s2s_generate(loaded, bare, res.prompt_token_ids, 8)


def s2s_check_generate_batched(fam, loaded, bare):
    """Sources of different lengths encoded together (right-padded, each
    cross-attending to its own tokens), decoded together: each gets the
    tokens it gets alone."""
    from xaimesh_model_server.engine.generation import GenItem, eos_ids, run_generate

    sources = [_ids(loaded, t) for t in SOURCES]
    items = [GenItem(torch.tensor(p), 6, False, 1.0, 1.0, 0, 0, eos_ids(loaded), None) for p in sources]
    for p, res in zip(sources, run_generate(loaded, items)):
        assert res.token_ids == _bare_s2s_generate(loaded, bare, p, 6)


def s2s_check_activations(fam, loaded, bare):
    """ALL_TOKENS rows of several texts in one padded forward: encoder layers
    equal the bare encoder's block outputs; decoder layers the bare
    decoder's outputs at positions 1.. when fed the start token + the text."""
    got = _rows(loaded, TEXTS, "all_tokens")
    k = loaded.num_encoder_layers
    want = {p: [] for p in loaded.split_points}
    for text in TEXTS:
        ids = _ids(loaded, text)
        captured = {}
        hooks = [bare.get_submodule(p).register_forward_hook(
            lambda m, a, o, p=p: captured.__setitem__(p, o[0] if isinstance(o, tuple) else o))
            for p in loaded.split_points]
        try:
            with torch.no_grad():
                out = bare(input_ids=torch.tensor([ids]),
                           decoder_input_ids=torch.tensor([[loaded.decoder_start_token_id] + ids]),
                           output_hidden_states=True)
        finally:
            for h in hooks:
                h.remove()
        for i, p in enumerate(loaded.split_points):
            encoder = i < k
            states = out.encoder_hidden_states if encoder else out.decoder_hidden_states
            j = i if encoder else i - k
            # inner blocks: hidden_states[j + 1]; the last block by the hook (hidden_states[-1] is after the final norm)
            block = states[j + 1][0] if j + 1 < len(states) - 1 else captured[p][0]
            want[p].append(block if encoder else block[1:])
    for p in loaded.split_points:
        assert _rel(got[p].numpy(), torch.cat(want[p]).numpy()) <= RTOL, p


SEQ2SEQ_CHECKS = {
    "load": s2s_check_load,
    "score": s2s_check_score,
    "score_batched": s2s_check_score_batched,
    "score_replacement": s2s_check_score_replacement,
    "gradients": s2s_check_gradients,
    "activations": s2s_check_activations,
    "generate": s2s_check_generate,
    "generate_batched": s2s_check_generate_batched,
}


# --------------------------------------------------------------------------- outside the matrix


def test_the_matrix_covers_every_family_asked_for():
    """No family drops out silently: a missing class is a visible skip above."""
    names = {f.name for f in FAMILIES}
    assert names >= {
        "gpt2", "gpt-neox", "llama-bos", "llama-spm", "mistral", "qwen2", "qwen3", "gemma2", "phi3", "olmo2",
        "gpt2-classifier", "qwen2-classifier", "bert", "roberta", "distilbert", "deberta-v2", "electra", "modernbert",
        "t5", "bart", "marian",
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
