"""The gRPC adapter of the model-server, in-process over a real channel."""

from __future__ import annotations

import grpc
import pytest

from xaimesh_contracts.v1 import model_pb2


def _field(error: grpc.RpcError) -> list[str]:
    from xaimesh.errors import from_rpc_error

    return [v.field for v in from_rpc_error(error, "model-server").field_violations]


def test_tokenize_texts_and_sequences(stub):
    text = "Hello world. How are you?"
    (by_text,) = stub.Tokenize(model_pb2.TokenizeRequest(texts=[text]), timeout=30).results
    assert by_text.text == text
    ids = list(by_text.token_ids) + [2]  # + <|im_end|>
    (by_ids,) = stub.Tokenize(model_pb2.TokenizeRequest(sequences=[model_pb2.TokenIds(ids=ids)]),
                              timeout=30).results
    assert by_ids.text == text + "<|im_end|>"
    assert list(by_ids.token_ids) == ids
    assert list(by_ids.special_mask) == [False] * (len(ids) - 1) + [True]
    assert list(by_ids.words) == list(by_text.words) and list(by_ids.sentences) == list(by_text.sentences)
    n = len(by_text.token_ids)
    assert list(by_ids.token_start_chars)[:n] == list(by_text.token_start_chars)
    assert list(by_ids.tokens)[-1] == "<|im_end|>" and by_ids.token_start_chars[-1] == len(text)


@pytest.mark.parametrize("request_, field", [
    (model_pb2.TokenizeRequest(), "texts"),
    (model_pb2.TokenizeRequest(texts=["a"], sequences=[model_pb2.TokenIds(ids=[1])]), "sequences"),
    (model_pb2.TokenizeRequest(sequences=[model_pb2.TokenIds(ids=[1]), model_pb2.TokenIds(ids=[10**9])]),
     "sequences[1].ids"),
    (model_pb2.TokenizeRequest(sequences=[model_pb2.TokenIds(ids=[-3])]), "sequences[0].ids"),
    (model_pb2.TokenizeRequest(sequences=[model_pb2.TokenIds()]), "sequences[0].ids"),
    (model_pb2.TokenizeRequest(texts=["ok", ""]), "texts[1]"),
])
def test_bad_tokenize_requests_name_the_field(stub, request_, field):
    with pytest.raises(grpc.RpcError) as info:
        stub.Tokenize(request_, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert _field(info.value) == [field]
