"""Tokenize with chats: the chat rendered with the model's template and its
generation prompt (the prompt Generate builds), tokenized as the model sees
it, with `message_index` saying which tokens are which message's content."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest

from xaimesh_contracts.v1 import model_pb2
from xaimesh_runtime.errors import InvalidArgument

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world, how are you?"},
        {"role": "assistant", "content": "Fine."}, {"role": "user", "content": "Tell me more."}]


def _content(tok, k):
    return "".join(t for t, m in zip(tok.tokens, tok.message_index) if m == k)


def test_rendered_as_generate_renders(lm):
    from xaimesh_model_server import engine
    from xaimesh_model_server.tokenization import tokenize_chat

    tok = tokenize_chat(lm, CHAT)
    gen = engine.generate(lm, messages=CHAT, max_new_tokens=1)
    assert list(tok.token_ids) == list(gen.prompt_token_ids)
    assert tok.text.endswith("<|im_start|>assistant\n")
    assert len(tok.message_index) == len(tok)
    assert [_content(tok, k) for k in range(len(CHAT))] == [m["content"] for m in CHAT]
    for i, k in enumerate(tok.message_index):  # template tokens: specials, role names, newlines
        if k < 0:
            assert tok.special_mask[i] or tok.tokens[i].strip() in ("", "system", "user", "ass", "istant",
                                                                    "assistant")


def test_default_system_prompt_is_template(lm):
    from xaimesh_model_server.tokenization import tokenize_chat

    tok = tokenize_chat(lm, [{"role": "user", "content": "  You are here  "}])
    assert "You are a helpful AI assistant" in tok.text  # SmolLM2's default system prompt
    assert _content(tok, 0).strip() == "You are here"  # a token straddling template and content is template
    first = tok.message_index.index(0)
    assert tok.token_start_chars[first] >= tok.text.index("<|im_start|>user")


def test_a_template_that_trims_content(tiny_lm_path):
    from transformers import AutoTokenizer

    from xaimesh_model_server.tokenization import tokenize_chat

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm_path))
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}"
                               "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                               "{% endif %}")
    loaded = SimpleNamespace(tokenizer=tokenizer, has_chat_template=True, model_id="trim", model=None)
    tok = tokenize_chat(loaded, [{"role": "user", "content": "  Hi there  "}])
    assert _content(tok, 0) == "Hi there"


def test_no_chat_template(tiny_lm_path):
    from transformers import AutoTokenizer

    from xaimesh_model_server.tokenization import tokenize_chat

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm_path))
    loaded = SimpleNamespace(tokenizer=tokenizer, has_chat_template=False, model_id="plain")
    with pytest.raises(InvalidArgument) as err:
        tokenize_chat(loaded, CHAT)
    assert "no chat template" in err.value.message


def _conv(chat):
    return model_pb2.ChatConversation(messages=[model_pb2.ChatMessage(**m) for m in chat])


def test_tokenize_rpc_with_chats(stub, lm):
    from xaimesh_model_server.tokenization import tokenize_chat

    response = stub.Tokenize(model_pb2.TokenizeRequest(chats=[_conv(CHAT), _conv(CHAT[1:2])]), timeout=30)
    assert len(response.results) == 2
    want = tokenize_chat(lm, CHAT)
    got = response.results[0]
    assert list(got.token_ids) == want.token_ids and list(got.message_index) == want.message_index
    assert got.text == want.text and [w.text for w in got.words] == [w.text for w in want.words]
    # texts: no message_index
    plain = stub.Tokenize(model_pb2.TokenizeRequest(texts=["Hello"]), timeout=30).results[0]
    assert list(plain.message_index) == []


@pytest.mark.parametrize("request_, field", [
    (model_pb2.TokenizeRequest(texts=["x"], chats=[_conv(CHAT)]), "chats"),
    (model_pb2.TokenizeRequest(chats=[model_pb2.ChatConversation()]), "chats[0].messages"),
    (model_pb2.TokenizeRequest(chats=[_conv([{"role": "robot", "content": "x"}])]), "chats[0].messages"),
])
def test_tokenize_rpc_bad_chats(stub, request_, field):
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    with pytest.raises(grpc.RpcError) as err:
        stub.Tokenize(request_, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)
    fields = []
    for detail in status.details:
        br = error_details_pb2.BadRequest()
        if detail.Unpack(br):
            fields += [v.field for v in br.field_violations]
    assert field in fields
