"""Every attribution method, and Deletion / Insertion, on representative model
families (tiny random models with tokenizers of their own kind,
tests/fixtures/family_models.py) through the in-process model-server engine.

Checks: each method runs and gives finite scores of the right shape, special
tokens ([CLS] / [SEP], <s> / </s>, BOS) are never attribution elements, and
both metrics return finite curves. Few perturbations / steps: it is a matrix
of "does it run and is it well-formed", the numbers are checked elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.family_models import BY_NAME, CAUSAL, SEQ2SEQ, missing_class

FAMILIES = ["gpt2", "llama-bos", "qwen2", "gemma2", "gpt2-classifier", "bert", "roberta", "deberta-v2", "modernbert",
            "t5", "bart", "marian"]
GENERATION = (CAUSAL, SEQ2SEQ)
TEXT = "Alice offers a drink to Bob. The cat sat."
CONTINUATION = " Bob says thanks."

SMALL = {
    "occlusion": {},
    "lime": {"n_perturbations": 8},
    "kernel_shap": {"n_perturbations": 8},
    "sobol": {"n_perturbations": 2},
    "saliency": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 3},
    "gradient_shap": {"n_steps": 2},
    "smooth_grad": {"n_steps": 2},
    "square_grad": {"n_steps": 2},
    "var_grad": {"n_steps": 2},
}
# Sobol's indices are ratios of variances of the target scores: a random-weight
# tiny T5 gives probabilities of 1e-40 to 1e-120, whose variance ratios pass
# float32's range (inf); logits keep the scores in range on every family.
INFERENCE_MODE = {"sobol": "logits"}

_BACKENDS: dict[str, object] = {}


def _backend(name: str, torch_single_thread):
    fam = BY_NAME[name]
    reason = missing_class(fam)
    if reason:  # the matrix has no skips: a family this transformers lacks is a failure to look at
        pytest.fail(f"{reason}; requirements-pins.txt pins the transformers the matrix is checked with")
    if name not in _BACKENDS:
        from attr_backends import engine_backend

        from tests.fixtures.family_models import family_dir

        _BACKENDS[name] = engine_backend(family_dir(name), name)
    return _BACKENDS[name]


def _targets(fam):
    return CONTINUATION if fam.task in GENERATION else None


def _no_special_elements(backend, result):
    special = set(backend.describe().all_special_ids)
    ids = result.input_ids
    for el in result.input_elements:
        covered = ids[el.start_token : el.end_token]
        assert covered, el
        assert not any(i in special for i in covered), (el, covered)
    # and every non-special prompt token is covered by a prompt element
    prompt_els = result.input_elements[: result.num_prompt_elements]
    n_prompt = max(el.end_token for el in prompt_els)
    covered = {k for el in prompt_els for k in range(el.start_token, el.end_token)}
    assert covered == {k for k in range(n_prompt) if ids[k] not in special}


def test_family_tokenizer_adds_specials_as_the_real_one(torch_single_thread):
    """The fixture's premise: BERT-like add [CLS] / [SEP], RoBERTa <s> / </s>,
    Llama-3 / Gemma BOS, GPT-2 / Qwen2 nothing."""
    expect = {"gpt2": ([], []), "qwen2": ([], []), "llama-bos": (["<|begin_of_text|>"], []),
              "gemma2": (["<bos>"], []), "gpt2-classifier": ([], []), "bert": (["[CLS]"], ["[SEP]"]), "roberta": (["<s>"], ["</s>"]),
              "deberta-v2": (["[CLS]"], ["[SEP]"]), "modernbert": (["[CLS]"], ["[SEP]"]),
              "t5": ([], ["</s>"]), "bart": (["<s>"], ["</s>"]), "marian": ([], ["</s>"])}
    for name in FAMILIES:
        backend = _backend(name, torch_single_thread)
        tok = backend.tokenize(TEXT, add_special_tokens=True)
        first, last = expect[name]
        specials = [t for t, s in zip(tok.tokens, tok.special_mask) if s]
        assert specials == first + last, name
        if first:
            assert tok.tokens[: len(first)] == first
        if last:
            assert tok.tokens[-len(last) :] == last


@pytest.mark.parametrize("method", sorted(SMALL))
@pytest.mark.parametrize("name", FAMILIES)
def test_every_method_runs_on_every_family(name, method, torch_single_thread):
    from xaimesh_attribution import explain

    fam = BY_NAME[name]
    backend = _backend(name, torch_single_thread)
    result = explain(backend, method, SMALL[method], TEXT, _targets(fam), inference_mode=INFERENCE_MODE.get(method))
    scores = np.asarray(result.scores)
    assert scores.ndim == 2 and scores.shape[1] == len(result.input_elements) and scores.shape[0] >= 1
    if fam.task in GENERATION:  # target row t is explained by the prompt and the targets before it; NaN after
        P = result.num_prompt_elements
        for row in range(scores.shape[0]):
            assert np.isfinite(scores[row, : P + row]).all(), row
            assert np.isnan(scores[row, P + row :]).all(), row
    else:
        assert np.isfinite(scores).all()
    assert np.isfinite(np.asarray(result.target_scores)).all()
    _no_special_elements(backend, result)
    if fam.task not in GENERATION:
        assert result.num_prompt_elements == len(result.input_elements)
    if fam.task == SEQ2SEQ:  # the source's elements, then the target's
        n_source = len(backend.tokenize(TEXT, add_special_tokens=True))
        assert result.input_elements[result.num_prompt_elements].start_token == n_source


@pytest.mark.parametrize("name", FAMILIES)
def test_deletion_insertion_on_every_family(name, torch_single_thread):
    from xaimesh_attribution import evaluate, explain

    fam = BY_NAME[name]
    backend = _backend(name, torch_single_thread)
    result = explain(backend, "occlusion", {}, TEXT, _targets(fam))
    for metric in ("deletion", "insertion"):
        m = evaluate(backend, metric, result, n_steps=3, n_random_orders=1)
        assert m.metric == metric
        assert np.isfinite(m.curve.scores).all() and np.isfinite(m.curve.auc)
        assert m.random_curve is not None and np.isfinite(m.random_curve.auc)
        assert np.isfinite(np.asarray(m.per_target_scores)).all()


@pytest.mark.parametrize("name", ["t5", "bart", "marian"])
def test_encoder_decoder_occlusion_and_input_x_gradient_equal_the_bare_model(name, torch_single_thread):
    """The numbers of an encoder-decoder attribution, from the bare model:
    Occlusion's entry (t, i) is log p(target token t | source, target < t)
    minus the same with element i replaced (in the encoder's input for a
    source element, in the decoder's input for a target one), and
    InputXGradient's is sum_d g_d x_d with g the gradient w.r.t. the
    embeddings each stack consumes (NaN from the row's own token on)."""
    import torch
    import transformers

    from xaimesh_attribution import explain

    from tests.fixtures.family_models import family_dir

    backend = _backend(name, torch_single_thread)
    loaded = backend.loaded
    bare = getattr(transformers, BY_NAME[name].model_class).from_pretrained(family_dir(name)).eval()
    result = explain(backend, "occlusion", {"replacement": {"policy": "pad_token"}}, TEXT, CONTINUATION,
                     granularity="token", inference_mode="log_softmax")
    ids = list(result.input_ids)
    S = result.input_elements[result.num_prompt_elements].start_token
    start, pad = loaded.decoder_start_token_id, loaded.tokenizer.pad_token_id

    @torch.no_grad()
    def logp(seq):  # [T] log p of each base target token given seq (source + decoder input tokens)
        out = bare(input_ids=torch.tensor([seq[:S]]), decoder_input_ids=torch.tensor([[start] + seq[S:-1]]))
        lp = out.logits[0].log_softmax(-1)
        return np.array([float(lp[k, ids[S + k]]) for k in range(len(ids) - S)])

    base = logp(ids)
    np.testing.assert_allclose(result.target_scores, base, rtol=1e-4, atol=1e-5)
    scores = np.asarray(result.scores)
    for e, el in enumerate(result.input_elements):
        seq = list(ids)
        seq[el.start_token] = pad
        drop = base - logp(seq)
        for t in range(len(base)):
            if el.start_token < S + t:  # covered: the source and the targets before t
                assert abs(scores[t, e] - drop[t]) <= 1e-4 * max(1.0, abs(drop[t])), (e, t)
            else:
                assert np.isnan(scores[t, e])
    ixg = explain(backend, "input_x_gradient", {}, TEXT, CONTINUATION, granularity="token",
                  inference_mode="log_softmax")
    x = backend.engine.input_embeddings(loaded, ids, S).requires_grad_(True)
    dec_start = backend.engine.input_embeddings(loaded, ids[:1] + [start], 1)[1:]  # the decoder's embedding of it
    out = bare(inputs_embeds=x[None, :S], decoder_inputs_embeds=torch.cat([dec_start, x[S:-1]])[None])
    lp = out.logits[0].log_softmax(-1)
    for t in range(len(ids) - S):
        (g,) = torch.autograd.grad(lp[t, ids[S + t]], x, retain_graph=True)
        want = (g * x).sum(-1).detach().numpy()
        got = np.asarray(ixg.scores)[t]
        for e, el in enumerate(ixg.input_elements):
            if el.start_token < S + t:
                assert abs(got[e] - want[el.start_token]) <= 1e-3 * max(1.0, np.abs(want).max()), (t, e)


def test_an_encoder_decoder_over_grpc_gives_the_in_process_numbers(torch_single_thread):
    """The attribution-service's model-server client sends the source length
    (Score / ComputeGradients) and reads the task: KernelShap and
    IntegratedGradients on BART over a real ModelServicer equal the
    in-process engine's."""
    import grpc

    from xaimesh_attribution import explain
    from xaimesh_attribution.model_client import GrpcModelBackend
    from xaimesh_model_server.server import ModelServicer
    from xaimesh_runtime.config import ServerConfig
    from xaimesh_runtime.server import start_server

    from tests.fixtures.family_models import family_dir

    local = _backend("bart", torch_single_thread)
    servicer = ModelServicer([str(family_dir("bart"))], device="cpu")
    handle = start_server(ServerConfig(service="model-server", workers=4), servicer.register, warmup=servicer.warm_up)
    try:
        assert handle.wait_ready(120)
        with grpc.insecure_channel(handle.address) as channel:
            remote = GrpcModelBackend(channel, "", lambda: 30.0, address=handle.address)
            assert remote.describe().task == "seq2seq_lm"
            for method, params in (("kernel_shap", {"n_perturbations": 8}), ("integrated_gradients", {"n_steps": 3})):
                got = explain(remote, method, params, TEXT, CONTINUATION)
                want = explain(local, method, params, TEXT, CONTINUATION)
                assert got.input_ids == want.input_ids
                np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4, atol=1e-5)
    finally:
        handle.stop(grace=0)
        servicer.close()
