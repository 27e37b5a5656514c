import pytest
import torch

from xaimesh_model_server.engine import generate
from xaimesh_runtime.errors import InvalidArgument


def test_greedy_matches_hf_generate(lm):
    res = generate(lm, "The capital of France is", max_new_tokens=8)
    prompt = lm.tokenizer("The capital of France is")["input_ids"]
    assert res.prompt_token_ids == prompt
    with torch.no_grad():
        ref = lm.model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[0, len(prompt):].tolist()
    assert res.token_ids == ref
    assert res.finish_reason == "length" and len(res.token_ids) == 8
    assert res.text == lm.tokenizer.decode(ref, skip_special_tokens=True)
    text, ids, prompt_ids, reason = res  # unpacks as a tuple
    assert reason == "length"


def test_sampling_is_deterministic_per_seed(lm):
    kw = dict(max_new_tokens=6, do_sample=True, temperature=1.0)
    a = generate(lm, token_ids=[5, 6, 7], seed=1, **kw)
    b = generate(lm, token_ids=[5, 6, 7], seed=1, **kw)
    c = generate(lm, token_ids=[5, 6, 7], seed=2, **kw)
    assert a == b and a.token_ids != c.token_ids
    greedy = generate(lm, token_ids=[5, 6, 7], max_new_tokens=6)
    assert generate(lm, token_ids=[5, 6, 7], seed=3, top_k=1, **kw).token_ids == greedy.token_ids
    assert generate(lm, token_ids=[5, 6, 7], seed=3, top_p=1e-6, **kw).token_ids == greedy.token_ids


def test_chat_template(lm):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    res = generate(lm, messages=msgs, max_new_tokens=2)
    rendered = lm.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|im_start|>assistant\n")
    assert res.prompt_token_ids == lm.tokenizer(rendered, add_special_tokens=False)["input_ids"]


def test_eos_stops(lm):
    first = generate(lm, token_ids=[5, 6, 7], max_new_tokens=3).token_ids
    gc = lm.model.generation_config
    saved = gc.eos_token_id
    gc.eos_token_id = [2, first[1]]
    try:
        res = generate(lm, token_ids=[5, 6, 7], max_new_tokens=5)
    finally:
        gc.eos_token_id = saved
    assert res.finish_reason == "eos"
    assert res.token_ids == first[: first.index(first[1])]  # stops before the EOS, which is not returned


def test_generate_validation(lm, clf):
    with pytest.raises(InvalidArgument, match="sequence classifier"):
        generate(clf, "hi")
    with pytest.raises(InvalidArgument, match="exactly one prompt"):
        generate(lm, "hi", token_ids=[1])
    with pytest.raises(InvalidArgument, match="exactly one prompt"):
        generate(lm)
    with pytest.raises(InvalidArgument, match="empty"):
        generate(lm, "")
    with pytest.raises(InvalidArgument, match="role 'robot'"):
        generate(lm, messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(InvalidArgument, match="max_new_tokens"):
        generate(lm, "hi", max_new_tokens=10**6)
    with pytest.raises(InvalidArgument, match="out of the vocabulary"):
        generate(lm, token_ids=[10**7])
