import numpy as np
import pytest
import torch

from xaimesh_model_server import engine
from xaimesh_model_server.batching import DirectExecutor
from xaimesh_model_server.engine import Limits, Replacement, score
from xaimesh_runtime.errors import InvalidArgument

ATOL = 1e-5


def _lm_direct(lm, ids=None, positions=(), mode="logits", embeds=None, targets=None):
    """Unpadded single forward; scores of token targets[k] (default ids[p]) from logits at p - 1."""
    with torch.no_grad():
        if embeds is not None:
            logits = lm.model(inputs_embeds=embeds[None]).logits[0]
        else:
            logits = lm.model(torch.tensor([ids])).logits[0]
    logits = logits.double()
    out = []
    for k, p in enumerate(positions):
        tok = targets[k] if targets is not None else ids[p]
        row = logits[p - 1]
        value = row[tok]
        if mode == "log_softmax":
            value = value - torch.logsumexp(row, -1)
        elif mode == "softmax":
            value = torch.softmax(row, -1)[tok]
        out.append(float(value))
    return np.array(out)


def _clf_direct(clf, ids=None, embeds=None):
    with torch.no_grad():
        if embeds is not None:
            return clf.model(inputs_embeds=embeds[None]).logits[0].double().numpy()
        return clf.model(torch.tensor([ids])).logits[0].double().numpy()


@pytest.fixture
def keep(sentence_ids):
    rng = np.random.RandomState(0)
    L = len(sentence_ids)
    km = rng.rand(6, L) > 0.4
    km[:, 0] = True
    km[:, 9:] = True  # targets kept
    km[0] = True
    return km


TARGETS = [9, 10, 12]


@pytest.mark.parametrize("mode", ["logits", "log_softmax", "softmax"])
def test_score_matches_direct_forward(lm, sentence_ids, mode):
    got = score(lm, sentence_ids, target_positions=TARGETS, inference_mode=mode.upper())
    assert got.shape == (1, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], _lm_direct(lm, sentence_ids, TARGETS, mode), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("policy", ["PAD_TOKEN", "UNK_TOKEN", "TOKEN_ID"])
def test_token_replacement_policies(lm, sentence_ids, keep, policy):
    repl = {"PAD_TOKEN": lm.tokenizer.pad_token_id, "UNK_TOKEN": lm.tokenizer.unk_token_id, "TOKEN_ID": 1234}[policy]
    got = score(lm, sentence_ids, keep, Replacement(policy, 1234), target_positions=TARGETS)
    assert got.shape == (6, 3)
    for i in range(6):
        ids = [t if k else repl for t, k in zip(sentence_ids, keep[i])]
        # the scored token is the base sequence's
        want = _lm_direct(lm, ids, TARGETS, targets=[sentence_ids[p] for p in TARGETS])
        np.testing.assert_allclose(got[i], want, atol=ATOL)


def test_replaced_target_is_still_scored_as_the_base_token(lm, sentence_ids):
    km = np.ones((1, len(sentence_ids)), bool)
    km[0, 9] = False  # replace the target itself: only later targets see it
    got = score(lm, sentence_ids, km, Replacement("TOKEN_ID", 77), target_positions=[9, 10])
    ids = list(sentence_ids)
    ids[9] = 77
    np.testing.assert_allclose(got[0], _lm_direct(lm, ids, [9, 10], targets=[sentence_ids[9], sentence_ids[10]]), atol=ATOL)


def test_zero_embedding(lm, sentence_ids, keep):
    got = score(lm, sentence_ids, keep, "ZERO_EMBEDDING", target_positions=TARGETS, inference_mode="LOG_SOFTMAX")
    with torch.no_grad():
        x = lm.model.get_input_embeddings()(torch.tensor(sentence_ids))
    for i in range(6):
        e = x * torch.tensor(keep[i], dtype=x.dtype)[:, None]
        np.testing.assert_allclose(got[i], _lm_direct(lm, sentence_ids, TARGETS, "log_softmax", embeds=e), atol=ATOL)


def test_remove_remaps_targets_and_padded_batch_equals_single_forwards(lm, sentence_ids, keep):
    got = score(lm, sentence_ids, keep, "REMOVE", target_positions=TARGETS)
    assert len({int(k.sum()) for k in keep}) > 2  # rows really have different lengths (padding)
    for i in range(6):
        kept = [t for t, k in zip(sentence_ids, keep[i]) if k]
        new_pos = [int(keep[i][: p + 1].sum()) - 1 for p in TARGETS]
        np.testing.assert_allclose(got[i], _lm_direct(lm, kept, new_pos), atol=ATOL)


def test_batch_composition_does_not_change_scores(lm, sentence_ids, keep):
    a = score(lm, sentence_ids, keep, "REMOVE", target_positions=TARGETS)
    one_by_one = DirectExecutor(lambda k, p: engine.run_rows(lm, k, p), max_batch_size=1)
    b = score(lm, sentence_ids, keep, "REMOVE", target_positions=TARGETS, executor=one_by_one)
    np.testing.assert_allclose(a, b, atol=ATOL)
    # a tiny logits budget splits the forward, with the same numbers
    c = score(lm, sentence_ids, keep, "REMOVE", target_positions=TARGETS,
              limits=Limits(max_logits_elements=3 * lm.vocab_size * 2))
    np.testing.assert_allclose(a, c, atol=ATOL)


def test_cpu_forward_tokens_split_a_batch_and_change_nothing(lm, clf, sentence_ids, keep, monkeypatch):
    """On a CPU a batch runs as forwards of at most Limits.cpu_forward_tokens
    padded tokens (language models and classifiers), with the same numbers."""
    import importlib

    score_module = importlib.import_module("xaimesh_model_server.engine.score")  # the package re-exports score()

    sizes: list[int] = []
    real = score_module._score_batch

    def counting(loaded, items):
        sizes.append(len(items))
        return real(loaded, items)

    monkeypatch.setattr(score_module, "_score_batch", counting)
    two_rows = Limits(cpu_forward_tokens=2 * len(sentence_ids))
    for model, kwargs in ((lm, {"target_positions": TARGETS}), (clf, {})):
        whole = score(model, sentence_ids, keep, "PAD_TOKEN", limits=Limits(cpu_forward_tokens=0), **kwargs)
        assert sizes == [len(keep)]
        sizes.clear()
        split = score(model, sentence_ids, keep, "PAD_TOKEN", limits=two_rows, **kwargs)
        assert sizes == [2] * (len(keep) // 2)
        sizes.clear()
        np.testing.assert_allclose(split, whole, atol=ATOL)


def test_remove_errors(lm, sentence_ids):
    L = len(sentence_ids)
    km = np.ones((2, L), bool)
    km[1, 9] = False
    with pytest.raises(InvalidArgument, match="removes target position 9"):
        score(lm, sentence_ids, km, "REMOVE", target_positions=[9])
    km = np.ones((1, L), bool)
    km[0, :3] = False
    with pytest.raises(InvalidArgument, match="keeps no token before target position 3"):
        score(lm, sentence_ids, km, "REMOVE", target_positions=[3])


def test_mask_token_missing(lm, sentence_ids):
    with pytest.raises(InvalidArgument, match="no mask token"):
        score(lm, sentence_ids, np.ones((1, len(sentence_ids))), "MASK_TOKEN", target_positions=[3])


def test_classifier_scores_left_padded(clf, sentence_ids, keep):
    # all classes by default, base sequence
    got = score(clf, sentence_ids)
    np.testing.assert_allclose(got[0], _clf_direct(clf, sentence_ids), atol=ATOL)
    # subset of classes, softmax over all classes
    got = score(clf, sentence_ids, target_classes=[2, 0], inference_mode="SOFTMAX")
    p = torch.softmax(torch.tensor(_clf_direct(clf, sentence_ids)), -1).numpy()
    np.testing.assert_allclose(got[0], p[[2, 0]], atol=ATOL)
    # REMOVE: rows of different lengths, left padded in one batch == single forwards
    got = score(clf, sentence_ids, keep, "REMOVE")
    for i in range(6):
        kept = [t for t, k in zip(sentence_ids, keep[i]) if k]
        np.testing.assert_allclose(got[i], _clf_direct(clf, kept), atol=ATOL)
    # a row ending with the pad token id (here also EOS) is not mistaken for
    # padding: the real last token is read (HF's input_ids heuristic would not)
    ids = list(sentence_ids) + [clf.tokenizer.pad_token_id]
    with torch.no_grad():
        e = clf.model.get_input_embeddings()(torch.tensor(ids))
    np.testing.assert_allclose(score(clf, ids)[0], _clf_direct(clf, embeds=e), atol=ATOL)
    assert not np.allclose(score(clf, ids)[0], _clf_direct(clf, ids), atol=1e-3)


def test_classifier_zero_embedding(clf, sentence_ids, keep):
    got = score(clf, sentence_ids, keep, "ZERO_EMBEDDING", target_classes=[1])
    with torch.no_grad():
        x = clf.model.get_input_embeddings()(torch.tensor(sentence_ids))
    for i in range(6):
        e = x * torch.tensor(keep[i], dtype=x.dtype)[:, None]
        np.testing.assert_allclose(got[i], _clf_direct(clf, embeds=e)[[1]], atol=ATOL)


def test_validation(lm, clf, sentence_ids):
    L = len(sentence_ids)
    with pytest.raises(InvalidArgument, match=r"out of range: the sequence has \d+ tokens \(use 1\.\.") as e:
        score(lm, sentence_ids, target_positions=[L])
    assert e.value.field == "target_positions"
    with pytest.raises(InvalidArgument, match="out of range"):
        score(lm, sentence_ids, target_positions=[0])
    with pytest.raises(InvalidArgument, match="target_positions is empty"):
        score(lm, sentence_ids)
    with pytest.raises(InvalidArgument, match="out of the vocabulary"):
        score(lm, [1, 2, 10**6], target_positions=[1])
    with pytest.raises(InvalidArgument, match="input_ids is empty"):
        score(lm, [], target_positions=[1])
    with pytest.raises(InvalidArgument, match="accepts at most 512"):
        score(lm, [5] * 513, target_positions=[1])
    with pytest.raises(InvalidArgument, match="shape"):
        score(lm, sentence_ids, np.ones((2, L + 1)), target_positions=[1])
    with pytest.raises(InvalidArgument, match="only 0 and 1"):
        score(lm, sentence_ids, np.full((2, L), 2), target_positions=[1])
    with pytest.raises(InvalidArgument, match="limit of 4"):
        score(lm, sentence_ids, np.ones((5, L)), target_positions=[1], limits=Limits(max_sequences=4))
    with pytest.raises(InvalidArgument, match="causal LM"):
        score(lm, sentence_ids, target_classes=[0])
    with pytest.raises(InvalidArgument, match="sequence classifier"):
        score(clf, sentence_ids, target_positions=[1])
    with pytest.raises(InvalidArgument, match=r"use 0\.\.2: negative, neutral, positive"):
        score(clf, sentence_ids, target_classes=[3])
    with pytest.raises(InvalidArgument, match="unknown inference_mode"):
        score(lm, sentence_ids, target_positions=[1], inference_mode="PROBS")
