"""Cross-checks against captum on the tiny models (in-process engine backend).

captum runs on inputs_embeds with the same target, baseline, steps and a
sum over the hidden dimension; our numbers come through the model-server
engine (token ids, keep-masks, embedding samples). Relative error: max
|ours - captum| <= 1e-4 * max |captum| on the elements a row covers.
"""

from __future__ import annotations

import numpy as np
import pytest

captum = pytest.importorskip("captum.attr")
torch = pytest.importorskip("torch")

from xaimesh_attribution import explain  # noqa: E402

PROMPT = "Alice and Bob enter the bar, "
TARGET = "then Alice offers"


def close(ours, ref, rel=1e-4):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = np.max(np.abs(ref))
    assert scale > 0
    np.testing.assert_allclose(ours, ref, rtol=rel, atol=rel * scale)


def lm_setup(lm_backend, granularity="token"):
    model = lm_backend.loaded.model
    r0 = explain(lm_backend, "saliency", {}, PROMPT, TARGET, granularity=granularity)
    ids = torch.tensor([r0.input_ids])
    emb = model.get_input_embeddings()(ids).detach()
    P = len(r0.input_ids) - len(r0.target_token_ids)
    return model, r0, ids, emb, P


def token_forward(model, p, token, mode="logits"):
    def f(x):
        logits = model(inputs_embeds=x).logits[:, p - 1].float()
        if mode == "softmax":
            return logits.softmax(-1)[:, token]
        if mode == "log_softmax":
            return logits.log_softmax(-1)[:, token]
        return logits[:, token]

    return f


def test_saliency_input_x_gradient_ig_match_captum_generation(lm_backend):
    model, r0, ids, emb, P = lm_setup(lm_backend)
    ours_s = r0.scores
    ours_x = explain(lm_backend, "input_x_gradient", {}, PROMPT, TARGET).scores
    ours_ig = explain(lm_backend, "integrated_gradients", {"n_steps": 16}, PROMPT, TARGET).scores
    for t, tok in enumerate(r0.target_token_ids):
        p = P + t
        f = token_forward(model, p, tok)
        x = emb.clone().requires_grad_(True)
        sal = captum.Saliency(f).attribute(x, abs=True).sum(-1)[0].detach().numpy()
        ixg = captum.InputXGradient(f).attribute(x).sum(-1)[0].detach().numpy()
        ig = (
            captum.IntegratedGradients(f)
            .attribute(x, baselines=torch.zeros_like(x), n_steps=16, method="gausslegendre")
            .sum(-1)[0]
            .detach()
            .numpy()
        )
        # TOKEN granularity, no special token: element e = token e; row t covers tokens < p
        close(ours_s[t, :p], sal[:p])
        close(ours_x[t, :p], ixg[:p])
        close(ours_ig[t, :p], ig[:p])
        assert np.isnan(ours_s[t, p:]).all()


def test_occlusion_matches_captum_generation(lm_backend):
    model, r0, ids, emb, P = lm_setup(lm_backend)
    r = explain(lm_backend, "occlusion", {}, PROMPT, TARGET, granularity="token", inference_mode="logits")
    pad = lm_backend.describe().pad_token_id
    pad_emb = model.get_input_embeddings()(torch.tensor([[pad]])).detach()
    H = emb.shape[-1]
    for t, tok in enumerate(r0.target_token_ids):
        p = P + t
        f = token_forward(model, p, tok)
        with torch.no_grad():
            occ = captum.Occlusion(f).attribute(
                emb, sliding_window_shapes=(1, H), strides=(1, H), baselines=pad_emb.expand_as(emb)
            )
        close(r.scores[t, :p], occ[0, :p, 0].numpy())


def test_ig_on_word_elements_and_softmax_product_matches_captum(lm_backend):
    # a 2-token target word: its score is the product of its tokens' probabilities
    model = lm_backend.loaded.model
    target = " Alicia"
    tok = lm_backend.tokenize(target)
    assert len(tok) >= 2 and len(tok.words) == 1
    r = explain(
        lm_backend, "integrated_gradients", {"n_steps": 8}, PROMPT, target, granularity="word", inference_mode="softmax"
    )
    assert r.target_elements == ["Alicia"]
    ids = torch.tensor([r.input_ids])
    emb = model.get_input_embeddings()(ids).detach()
    P = len(r.input_ids) - len(r.target_token_ids)

    def f(x):
        probs = model(inputs_embeds=x).logits.float().softmax(-1)
        out = 1.0
        for k, tid in enumerate(r.target_token_ids):
            out = out * probs[:, P + k - 1, tid]
        return out

    ig = (
        captum.IntegratedGradients(f)
        .attribute(emb, baselines=torch.zeros_like(emb), n_steps=8, method="gausslegendre")
        .sum(-1)[0]
        .detach()
        .numpy()
    )
    words = [ig[s.start_token : s.end_token].sum() for s in r.input_elements[: r.num_prompt_elements]]
    close(r.scores[0, : r.num_prompt_elements], words)
    # the row's target score is the element's probability
    with torch.no_grad():
        assert r.target_scores[0] == pytest.approx(float(f(emb)), rel=1e-4)


def test_saliency_multi_token_element_uses_full_gradients(lm_backend):
    model = lm_backend.loaded.model
    r = explain(lm_backend, "saliency", {}, PROMPT, " Alicia", granularity="word", inference_mode="logits")
    ids = torch.tensor([r.input_ids])
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    P = len(r.input_ids) - len(r.target_token_ids)
    logits = model(inputs_embeds=emb).logits.float()
    total = sum(logits[0, P + k - 1, tid] for k, tid in enumerate(r.target_token_ids))
    (g,) = torch.autograd.grad(total, emb)
    sal = g.abs().sum(-1)[0].numpy()
    words = [sal[s.start_token : s.end_token].sum() for s in r.input_elements[: r.num_prompt_elements]]
    close(r.scores[0, : r.num_prompt_elements], words)


def test_classifier_ig_and_occlusion_match_captum(clf_backend):
    model = clf_backend.loaded.model
    text = "I love this movie."
    r = explain(clf_backend, "integrated_gradients", {"n_steps": 16}, text, ["positive", "negative"])
    assert r.target_elements == ["positive", "negative"] and r.target_classes == [2, 0]
    ids = torch.tensor([r.input_ids])
    emb = model.get_input_embeddings()(ids).detach()
    for row, c in enumerate(r.target_classes):

        def f(x, c=c):
            return model(inputs_embeds=x).logits[:, c]

        ig = (
            captum.IntegratedGradients(f)
            .attribute(emb, baselines=torch.zeros_like(emb), n_steps=16, method="gausslegendre")
            .sum(-1)[0]
            .detach()
            .numpy()
        )
        close(r.scores[row], ig[[s.start_token for s in r.input_elements]])
    occ = explain(clf_backend, "occlusion", {}, text, 2, granularity="token", inference_mode="softmax")
    pad = clf_backend.describe().pad_token_id
    pad_emb = model.get_input_embeddings()(torch.tensor([[pad]])).detach()

    def g(x):
        return model(inputs_embeds=x).logits.float().softmax(-1)[:, 2]

    with torch.no_grad():
        ref = captum.Occlusion(g).attribute(
            emb, sliding_window_shapes=(1, emb.shape[-1]), strides=(1, emb.shape[-1]), baselines=pad_emb.expand_as(emb)
        )
    close(occ.scores[0], ref[0, :, 0].numpy()[[s.start_token for s in occ.input_elements]])
