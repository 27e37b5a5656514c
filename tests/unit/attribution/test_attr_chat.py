"""Explaining chats with an instruct model (the tiny LM has SmolLM2's
tokenizer and chat template): the elements are the user messages' words
only; the template, system and assistant tokens are context, always kept;
the scores are those of the rendered prompt with those positions fixed; the
same over gRPC (real ModelServicer + GrpcModelBackend + AttributionServicer)
and through the SDK."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from attr_backends import EngineBackend
from xaimesh_attribution import explain
from xaimesh_attribution.backend import Tokenized
from xaimesh_attribution.elements import generation_problem
from xaimesh_attribution.explainer import prepare
from xaimesh_attribution.methods import Job
from xaimesh_attribution.options import Granularity
from xaimesh_contracts.v1 import attribution_pb2 as apb
from xaimesh_contracts.v1 import attribution_pb2_grpc, model_pb2
from xaimesh_runtime.config import Downstream, ServerConfig
from xaimesh_runtime.errors import InvalidArgument
from xaimesh_runtime.server import start_server

SYSTEM = "Be brief."
USER = "Alice and Bob enter the bar."
CHAT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
MULTI = [{"role": "user", "content": "Hello there, friend."}, {"role": "assistant", "content": "Hi Alice."},
         {"role": "user", "content": "Bob smiles."}]
TARGET = "Alice smiles at Bob."
USER_WORDS = ["Alice", "and", "Bob", "enter", "the", "bar."]


class ChatBackend(EngineBackend):
    """The engine backend with the chat calls (tokenize_chat / generate_chat)
    and a record of every keep-mask scored."""

    def __init__(self, loaded) -> None:
        super().__init__(loaded)
        self.masks: list[np.ndarray] = []
        self.generated_chats: list = []
        self.position_masks: list = []

    def tokenize_chat(self, messages) -> Tokenized:
        t = self.tokenization.tokenize_chat(self.loaded, list(messages))
        out = self._tokenized(t)
        out.message_index = list(t.message_index)
        return out

    def generate_chat(self, messages, max_new_tokens):
        self.generated_chats.append(list(messages))
        return list(self.engine.generate(self.loaded, messages=list(messages),
                                         max_new_tokens=max_new_tokens).token_ids)

    def gradients(self, input_ids, *, samples, **kw):
        self.position_masks.append(samples.position_mask)
        return super().gradients(input_ids, samples=samples, **kw)

    def score(self, input_ids, keep_mask, replacement, **kw):
        if keep_mask is not None:
            self.masks.append(np.asarray(keep_mask, dtype=bool).copy())
        return super().score(input_ids, keep_mask, replacement, **kw)


@pytest.fixture(scope="module")
def chat_backend(lm_backend):
    return ChatBackend(lm_backend.loaded)


def _user_positions(backend, chat) -> tuple[Tokenized, set[int]]:
    tok = backend.tokenize_chat(chat)
    users = {i for i, k in enumerate(tok.message_index) if k >= 0 and chat[k]["role"] == "user"}
    return tok, users


def test_chat_tokenization_marks_user_content(chat_backend):
    tok, users = _user_positions(chat_backend, CHAT)
    assert tok.text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert tok.text.endswith("<|im_start|>assistant\n")
    assert "".join(tok.tokens[i] for i in sorted(users)) == USER
    assert all(not tok.special_mask[i] for i in users)


@pytest.mark.parametrize("granularity, want", [
    ("word", USER_WORDS),
    ("sentence", [USER]),
    ("token", None),
    ("all_tokens", None),
])
def test_elements_are_the_user_words(chat_backend, granularity, want):
    r = explain(chat_backend, "occlusion", {}, CHAT, TARGET, granularity=granularity)
    prompt = [s.text for s in r.input_elements[: r.num_prompt_elements]]
    tok, users = _user_positions(chat_backend, CHAT)
    if want is None:  # tokens: exactly the user content tokens
        want = [tok.tokens[i] for i in sorted(users)]
    assert prompt == want
    assert r.prompt_text == tok.text and r.text == tok.text + TARGET
    for s in r.input_elements[: r.num_prompt_elements]:
        assert set(range(s.start_token, s.end_token)) <= users
        assert r.text[s.start_char:s.end_char] == s.text


def test_template_and_context_tokens_are_never_perturbed(chat_backend):
    chat_backend.masks.clear()
    r = explain(chat_backend, "lime", {"n_perturbations": 24}, MULTI, TARGET)
    assert [s.text for s in r.input_elements[: r.num_prompt_elements]] == ["Hello", "there,", "friend.", "Bob",
                                                                           "smiles."]
    tok, users = _user_positions(chat_backend, MULTI)
    fixed = [i for i in range(len(tok)) if i not in users]
    assert chat_backend.masks
    masks = np.concatenate(chat_backend.masks)
    assert masks[:, fixed].all()  # template, assistant message: always kept
    assert not masks[:, sorted(users)].all()  # user words were perturbed


def test_gradient_samples_move_only_the_user_tokens(chat_backend):
    chat_backend.position_masks.clear()
    r = explain(chat_backend, "integrated_gradients", {"n_steps": 4}, CHAT, TARGET)
    tok, users = _user_positions(chat_backend, CHAT)
    n_target = len(r.target_token_ids)
    want = [i in users for i in range(len(tok))] + [True] * n_target
    assert chat_backend.position_masks and all(list(m) == want for m in chat_backend.position_masks)
    explain(chat_backend, "integrated_gradients", {"n_steps": 4}, USER, TARGET)
    assert chat_backend.position_masks[-1] is None  # plain texts: as before, every position


def test_evaluate_a_chat_attribution(chat_backend):
    from xaimesh_attribution import evaluate
    from xaimesh_attribution.server import attribution_from_proto, attribution_to_proto

    r = explain(chat_backend, "occlusion", {}, CHAT, TARGET)
    chat_backend.masks.clear()
    direct = evaluate(chat_backend, "deletion", r, n_random_orders=-1)
    tok, users = _user_positions(chat_backend, CHAT)
    fixed = [i for i in range(len(tok)) if i not in users]
    assert np.concatenate(chat_backend.masks)[:, fixed].all()
    rebuilt = evaluate(chat_backend, "deletion", attribution_from_proto(attribution_to_proto(r), 0),
                       n_random_orders=-1)  # over the wire: rebuilt from the rendered text
    np.testing.assert_allclose(rebuilt.curve.scores, direct.curve.scores, rtol=1e-6)


# Llama-3's template shape: the rendered chat starts with the BOS as text.
BOS_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
                "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def test_evaluate_a_chat_attribution_of_a_bos_adding_model_over_the_wire(torch_single_thread):
    """The attribution carries the ids the model saw (Attribution.input_ids),
    so a metric evaluates them as they were: re-tokenizing the rendered chat
    of a BOS-adding tokenizer would add a second BOS (refused, never wrong
    numbers, when an attribution comes without its ids)."""
    from xaimesh_attribution import evaluate
    from xaimesh_attribution.server import attribution_from_proto, attribution_to_proto
    from xaimesh_model_server.loading import load_model

    from tests.fixtures.family_models import family_dir

    loaded = load_model(family_dir("llama-bos"), device="cpu", model_id="llama-bos-chat")
    loaded.tokenizer.chat_template = BOS_TEMPLATE
    backend = ChatBackend(loaded)
    r = explain(backend, "occlusion", {}, CHAT, TARGET)
    assert r.input_ids[0] == loaded.tokenizer.bos_token_id and r.input_ids[1] != r.input_ids[0]
    wire = attribution_from_proto(attribution_to_proto(r), 0)
    assert wire.input_ids == r.input_ids
    direct = evaluate(backend, "deletion", r, n_random_orders=-1)
    np.testing.assert_allclose(evaluate(backend, "deletion", wire, n_random_orders=-1).curve.scores,
                               direct.curve.scores, rtol=1e-6)
    wire.input_ids = []
    with pytest.raises(InvalidArgument, match="cannot rebuild"):
        evaluate(backend, "deletion", wire, n_random_orders=-1)
    wire.input_ids = list(r.input_ids[:-1])  # not ending with the targets
    with pytest.raises(InvalidArgument) as err:
        evaluate(backend, "deletion", wire, n_random_orders=-1)
    assert err.value.field == "attribution.input_ids"


@pytest.mark.parametrize("method, params", [("occlusion", {}), ("kernel_shap", {"n_perturbations": 16}),
                                            ("integrated_gradients", {"n_steps": 4})])
def test_scores_equal_the_rendered_prompt_with_fixed_positions(chat_backend, method, params):
    r = explain(chat_backend, method, params, CHAT, TARGET, granularity="word")
    tok, users = _user_positions(chat_backend, CHAT)
    target_tok = chat_backend.tokenize(TARGET, add_special_tokens=False)
    fixed = [i not in users for i in range(len(tok))]
    plan = prepare(chat_backend, method, params, "word")
    problem = generation_problem(tok.text, tok, TARGET, target_tok, Granularity.WORD, fixed)
    prm = plan.parameters
    job = Job(chat_backend, problem, plan.inference_mode, plan.aggregation, getattr(prm, "replacement", None),
              prm.batch_size, None, None)
    want = plan.method.attribute(job, prm)
    np.testing.assert_allclose(r.scores, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert r.input_ids == list(tok.token_ids) + list(target_tok.token_ids)


def test_no_targets_generates_with_the_template(chat_backend):
    chat_backend.generated_chats.clear()
    r = explain(chat_backend, "occlusion", {}, CHAT, None, max_new_tokens=3)
    assert chat_backend.generated_chats == [CHAT]
    ids = chat_backend.engine.generate(chat_backend.loaded, messages=CHAT, max_new_tokens=3).token_ids
    assert r.target_token_ids == [int(i) for i in ids][: len(r.target_token_ids)]
    assert [s.text for s in r.input_elements[: r.num_prompt_elements]] == USER_WORDS


def test_chat_template_option_wraps_a_text(chat_backend, lm_backend):
    wrapped = explain(chat_backend, "occlusion", {}, USER, TARGET, chat_template=True)
    chat = explain(chat_backend, "occlusion", {}, [{"role": "user", "content": USER}], TARGET)
    np.testing.assert_array_equal(wrapped.scores, chat.scores)
    assert "<|im_start|>user\n" in wrapped.text
    plain = explain(lm_backend, "occlusion", {}, USER, TARGET)  # the default: the text as given
    assert plain.text == USER + TARGET
    assert [s.text for s in wrapped.input_elements] == [s.text for s in plain.input_elements]


@pytest.mark.parametrize("chat, field", [
    ([], "chat.messages"),
    ([{"role": "robot", "content": "hi"}], "chat.messages[0].role"),
    ([{"role": "user", "content": 3}], "chat.messages[0].content"),
    ([{"role": "system", "content": "only a system prompt"}], "chat.messages"),
])
def test_bad_chats(chat_backend, chat, field):
    with pytest.raises(InvalidArgument) as err:
        explain(chat_backend, "occlusion", {}, chat, TARGET)
    assert err.value.field == field


def test_a_classifier_refuses_a_chat(clf_backend):
    with pytest.raises(InvalidArgument) as err:
        explain(clf_backend, "occlusion", {}, CHAT, None)
    assert err.value.field == "chat"


# --------------------------------------------------------------------------- over gRPC


@pytest.fixture(scope="module")
def grpc_mesh(tiny_lm_path, torch_single_thread):
    server_module = pytest.importorskip("xaimesh_model_server.server")
    from xaimesh_attribution.server import AttributionServicer

    model_servicer = server_module.ModelServicer([str(tiny_lm_path)])
    model_handle = start_server(ServerConfig(service="model-server", workers=4), model_servicer.register,
                                warmup=model_servicer.warm_up)
    assert model_handle.wait_ready(120)
    servicer = AttributionServicer(Downstream(model_handle.address), progress_interval=0.0, poll_interval=0.02)
    handle = start_server(ServerConfig(service="attribution", workers=4), servicer.register)
    assert handle.wait_ready(10)
    channel = grpc.insecure_channel(handle.address)
    from types import SimpleNamespace

    yield SimpleNamespace(stub=attribution_pb2_grpc.AttributionServiceStub(channel), address=handle.address)
    channel.close()
    handle.stop(grace=0)
    model_handle.stop(grace=0)
    model_servicer.close()


def _conversation(chat) -> model_pb2.ChatConversation:
    return model_pb2.ChatConversation(messages=[model_pb2.ChatMessage(**m) for m in chat])


def _explain(stub, *inputs, method=apb.ATTRIBUTION_METHOD_OCCLUSION):
    request = apb.ExplainRequest(method=method, inputs=list(inputs))
    events = list(stub.Explain(request, timeout=120))
    return [e for e in events if e.WhichOneof("event") in ("result", "item_error")]


def test_grpc_chat_equals_in_process(grpc_mesh, chat_backend):
    item = apb.ExplainInput(chat=_conversation(MULTI), targets=apb.Targets(text=TARGET))
    (event,) = _explain(grpc_mesh.stub, item)
    assert event.WhichOneof("event") == "result", event
    a = event.result.attribution
    want = explain(chat_backend, "occlusion", {}, MULTI, TARGET)
    assert [s.text for s in a.input_elements] == [s.text for s in want.input_elements]
    assert a.text == want.text
    from xaimesh_contracts.tensors import to_numpy

    np.testing.assert_allclose(to_numpy(a.scores), want.scores, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_grpc_chat_template_option_and_generation(grpc_mesh, chat_backend):
    items = [apb.ExplainInput(text=USER, chat_template=True, targets=apb.Targets(text=TARGET)),
             apb.ExplainInput(chat=_conversation(CHAT), targets=apb.Targets(max_new_tokens=2))]
    wrapped, generated = _explain(grpc_mesh.stub, *items)
    assert wrapped.WhichOneof("event") == generated.WhichOneof("event") == "result"
    assert "<|im_start|>user\n" + USER in wrapped.result.attribution.text
    g = generated.result.attribution
    assert [s.text for s in g.input_elements[: g.num_prompt_elements]] == USER_WORDS
    want = explain(chat_backend, "occlusion", {}, CHAT, None, max_new_tokens=2)
    assert list(g.target_token_ids) == want.target_token_ids


@pytest.mark.parametrize("item, field", [
    (apb.ExplainInput(text=USER, chat=_conversation(CHAT)), "inputs[0].chat"),
    (apb.ExplainInput(chat=_conversation(CHAT), chat_template=False), "inputs[0].chat_template"),
    (apb.ExplainInput(chat=model_pb2.ChatConversation()), "inputs[0].chat.messages"),
    (apb.ExplainInput(chat=_conversation([{"role": "tool", "content": "x"}])), "inputs[0].chat.messages[0].role"),
])
def test_grpc_bad_chat_is_an_item_error(grpc_mesh, item, field):
    (event,) = _explain(grpc_mesh.stub, item)
    assert event.WhichOneof("event") == "item_error"
    assert event.item_error.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    from google.rpc import error_details_pb2

    fields = []
    for detail in event.item_error.status.details:
        br = error_details_pb2.BadRequest()
        if detail.Unpack(br):
            fields += [v.field for v in br.field_violations]
    assert field in fields


def test_sdk_with_a_chat(grpc_mesh, chat_backend, tmp_path):
    from xaimesh.attributions import KernelShap, Occlusion, plot_attributions
    from xaimesh.attributions.plots import render_text
    from xaimesh.errors import InvalidArgumentError
    from xaimesh.mesh import Mesh, RemoteModel

    mesh = Mesh({"attribution": grpc_mesh.address})
    try:
        model = RemoteModel(mesh, model_pb2.ModelInfo(model_id="", task=model_pb2.MODEL_TASK_CAUSAL_LM))
        (out,) = Occlusion(model)(CHAT, TARGET)
        assert out.prompt_elements == USER_WORDS
        want = explain(chat_backend, "occlusion", {}, CHAT, TARGET)
        np.testing.assert_allclose(out.attributions, want.scores, rtol=1e-5, atol=1e-6, equal_nan=True)
        outs = KernelShap(model, n_perturbations=8)([CHAT, MULTI, USER], TARGET)
        assert [o.prompt_elements for o in outs] == [USER_WORDS, ["Hello", "there,", "friend.", "Bob", "smiles."],
                                                     USER_WORDS]
        assert "<|im_start|>" in outs[0].text and "<|im_start|>" not in outs[2].text
        (wrapped,) = Occlusion(model)(USER, TARGET, chat_template=True)
        assert wrapped.prompt_elements == USER_WORDS and "<|im_start|>user" in wrapped.text
        assert "'Alice'" in render_text(out)
        page = plot_attributions(out, show=False).save_html(tmp_path / "chat.html").read_text(encoding="utf-8")
        assert "Alice" in page
        with pytest.raises(InvalidArgumentError):
            Occlusion(model)([{"role": "user"}], TARGET)
    finally:
        mesh.close()
