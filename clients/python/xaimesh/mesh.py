"""Connecting to the mesh: `xaimesh.connect()` and remote model handles."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xaimesh._client import ServiceClient
from xaimesh.errors import UnavailableError
from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc

if TYPE_CHECKING:
    import numpy as np

# Service key -> (environment variable with its address, default port).
SERVICES = {
    "model": ("XAIMESH_MODEL_SERVER", 50051),
    "attribution": ("XAIMESH_ATTRIBUTION_SERVICE", 50052),
    "concept": ("XAIMESH_CONCEPT_SERVICE", 50053),
    "labeling": ("XAIMESH_LABELING_SERVICE", 50054),
}
SERVICE_NAMES = {
    "model": "model-server",
    "attribution": "attribution-service",
    "concept": "concept-service",
    "labeling": "labeling-service",
}


def connect(model_server: str | None = None, *, attribution: str | None = None,
            concept: str | None = None, labeling: str | None = None,
            token: str | None = None, tls_ca: str | None = None,
            tls_cert: str | None = None, tls_key: str | None = None,
            timeout: float | None = None, local: bool | None = None,
            models: list[str] | None = None, wait_seconds: float = 600.0) -> Mesh:
    """Connects to the xaimesh services.

    Addresses come from the arguments, else from XAIMESH_MODEL_SERVER,
    XAIMESH_ATTRIBUTION_SERVICE, XAIMESH_CONCEPT_SERVICE and
    XAIMESH_LABELING_SERVICE. With none given (or `local=True`), a local stack
    is started: the installed services as child processes on free loopback
    ports, stopped when the program exits. `models` (local stack only) are
    the model-server's models (default: the embedded SmolLM2-135M-Instruct).
    `token` / XAIMESH_AUTH_TOKEN is sent as a bearer token; `tls_ca` /
    XAIMESH_TLS_CA turns TLS on; `tls_cert` and `tls_key` /
    XAIMESH_TLS_CERT and XAIMESH_TLS_KEY (PEM paths) are the client
    certificate for services that require mutual TLS.
    """
    given = {"model": model_server, "attribution": attribution, "concept": concept, "labeling": labeling}
    addresses = {key: value or os.environ.get(env) for key, (env, _) in SERVICES.items()
                 for value in [given[key]] if value or os.environ.get(env)}
    token = token or os.environ.get("XAIMESH_AUTH_TOKEN")
    tls_ca = tls_ca or os.environ.get("XAIMESH_TLS_CA")
    tls_cert = tls_cert or os.environ.get("XAIMESH_TLS_CERT")
    tls_key = tls_key or os.environ.get("XAIMESH_TLS_KEY")
    stack = None
    if local or (local is None and not addresses):
        from xaimesh.local_stack import LocalStack

        stack = LocalStack(models=models, token=token)
        addresses = stack.start(wait_seconds=wait_seconds)
    mesh = Mesh(addresses, token=token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, timeout=timeout,
                stack=stack)
    mesh.check(wait_seconds=wait_seconds if stack is None else 5.0)
    _OPEN.append(mesh)
    return mesh


# Meshes of connect() not yet closed, oldest first: the last one is where a
# model given by name or as an object is looked for (xaimesh.models).
_OPEN: list[Mesh] = []


def current_mesh() -> Mesh | None:
    """The last mesh of `connect()` that is still open, or None."""
    return _OPEN[-1] if _OPEN else None


class Mesh:
    """Clients of the running services. Use `connect()` to make one."""

    def __init__(self, addresses: dict[str, str], *, token=None, tls_ca=None, tls_cert=None, tls_key=None,
                 timeout=None, stack=None):
        self.addresses = dict(addresses)
        self._options = {"token": token, "tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key,
                         "timeout": timeout}
        self._clients: dict[str, ServiceClient] = {}
        self.stack = stack

    def client(self, service: str) -> ServiceClient:
        """The client of one service ("model", "attribution", "concept", "labeling")."""
        if service not in self._clients:
            address = self.addresses.get(service)
            if not address:
                env = SERVICES[service][0]
                raise UnavailableError(None, "", f"no address for the {SERVICE_NAMES[service]}: "
                                       f"pass it to xaimesh.connect() or set {env}")
            stub = _stub_class(service)
            self._clients[service] = ServiceClient(SERVICE_NAMES[service], address, stub, **self._options)
        return self._clients[service]

    def check(self, wait_seconds: float = 5.0) -> dict[str, str]:
        """Checks every configured service answers health; raises naming those that don't."""
        from xaimesh_contracts.channels import wait_for_health

        down = []
        for key, address in self.addresses.items():
            try:
                wait_for_health(address, timeout=wait_seconds, token=self._options["token"],
                                tls_ca=self._options["tls_ca"], tls_cert=self._options["tls_cert"],
                                tls_key=self._options["tls_key"])
            except Exception as error:  # report every unreachable service at once
                down.append(f"{SERVICE_NAMES[key]} at {address} ({error})")
        if down:
            raise UnavailableError(None, "", "unreachable: " + "; ".join(down))
        return self.addresses

    def models(self) -> list[RemoteModel]:
        response = self.client("model").call("ListModels", model_pb2.ListModelsRequest())
        return [RemoteModel(self, info) for info in response.models]

    def model(self, name: str | None = None) -> RemoteModel:
        """A handle on a model of the model-server (default: its default model)."""
        response = self.client("model").call("GetModel", model_pb2.GetModelRequest(model=name or ""))
        return RemoteModel(self, response.model)

    def serve_model(self, spec: str, model_id: str | None = None) -> RemoteModel:
        """Adds a model to a local stack (one `connect()` started) and returns
        its handle: the stack's services restart with it (activation sets and
        concept models are kept on disk). Running services cannot be changed
        from here: start their model-server with --model instead."""
        if self.stack is None:
            import grpc

            from xaimesh.errors import InvalidArgumentError

            raise InvalidArgumentError(grpc.StatusCode.FAILED_PRECONDITION, "model-server", f"cannot serve {spec!r}: this mesh's services were "
                                          "started elsewhere; start their model-server with --model for it")
        served = {m.model_id for m in self.models()}
        if model_id is None:
            # the id the model-server gives a folder (its name) or a hub id (itself), made unique
            local = os.path.expanduser(spec)
            base = os.path.basename(os.path.realpath(local)) if os.path.exists(local) else spec
            model_id, n = base, 2
            while model_id in served:
                model_id, n = f"{base}-{n}", n + 1
        if model_id in served:
            return self.model(model_id)
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        try:
            self.stack.restart_with_model(f"{spec},id={model_id}")
        finally:  # on failure the stack is back on its previous models, on new ports too
            self.addresses = dict(self.stack.addresses)
        return self.model(model_id)

    def close(self) -> None:
        if self in _OPEN:
            _OPEN.remove(self)
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self.stack is not None:
            self.stack.stop()
            self.stack = None

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = ", ".join(f"{SERVICE_NAMES[k]}={v}" for k, v in self.addresses.items())
        return f"Mesh({where}{', local' if self.stack else ''})"


def _stub_class(service: str):
    if service == "model":
        return model_pb2_grpc.ModelServiceStub
    if service == "attribution":
        from xaimesh_contracts.v1 import attribution_pb2_grpc

        return attribution_pb2_grpc.AttributionServiceStub
    if service == "concept":
        from xaimesh_contracts.v1 import concept_pb2_grpc

        return concept_pb2_grpc.ConceptServiceStub
    from xaimesh_contracts.v1 import labeling_pb2_grpc

    return labeling_pb2_grpc.LabelingServiceStub


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str

    def __str__(self) -> str:
        return self.text


class RemoteModel:
    """A model held by the model-server. Pass it wherever a model is expected."""

    def __init__(self, mesh: Mesh, info: model_pb2.ModelInfo):
        self.mesh = mesh
        self.info = info
        self.tokenizer = RemoteTokenizer(self)

    @property
    def model_id(self) -> str:
        return self.info.model_id

    @property
    def is_classifier(self) -> bool:
        return self.info.task == model_pb2.MODEL_TASK_SEQUENCE_CLASSIFICATION

    @property
    def num_layers(self) -> int:
        return self.info.num_layers

    @property
    def hidden_size(self) -> int:
        return self.info.hidden_size

    def describe(self) -> dict:
        """The model's description as a plain dict."""
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(self.info, preserving_proto_field_name=True)

    def generate(self, prompt: str | list[dict] | list[int], *, max_new_tokens: int = 64,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 top_k: int = 0, seed: int = 0, timeout: float | None = None) -> Generation:
        """Generates a continuation. `prompt` is a text, token ids, or chat
        messages ([{"role": "user", "content": ...}]) rendered with the model's
        chat template."""
        request = model_pb2.GenerateRequest(model=self.model_id, max_new_tokens=max_new_tokens,
                                            do_sample=do_sample, temperature=temperature,
                                            top_p=top_p, top_k=top_k, seed=seed)
        if isinstance(prompt, str):
            request.text = prompt
        elif prompt and isinstance(prompt[0], dict):
            request.chat.messages.extend(model_pb2.ChatMessage(role=m["role"], content=m["content"])
                                         for m in prompt)
        else:
            request.token_ids.ids.extend(int(i) for i in prompt)
        response = self.mesh.client("model").call("Generate", request, timeout=timeout)
        return Generation(response.text, list(response.token_ids), list(response.prompt_token_ids),
                          response.finish_reason)

    def activations(self, texts: list[str], split_points=(8,), granularity="TOKEN", aggregation="MEAN",
                    add_special_tokens: bool | None = None, show_progress: bool = True,
                    ) -> dict[str, "FetchedActivations"]:
        """Activations at `split_points` copied to the client, one entry per split point.

        Texts run with the tokenizer's own special tokens and TOKEN / WORD /
        SENTENCE / SAMPLE leave their rows out (docs/models.md, "Token semantics");
        ``add_special_tokens=False`` runs them without, True adds them
        explicitly."""
        return fetch_activations(self, texts, split_points, granularity, aggregation, add_special_tokens,
                                 show_progress)

    def __repr__(self) -> str:
        i = self.info
        return (f"RemoteModel({i.model_id!r}, {i.architecture}, layers={i.num_layers}, "
                f"hidden={i.hidden_size}, device={i.device}, dtype={i.dtype})")


class RemoteTokenizer:
    """The model's tokenizer, run by the model-server.

    Offers the parts of the Hugging Face tokenizer interface that
    interpretability code uses: calling it, `tokenize`, `encode`, `decode`,
    `convert_ids_to_tokens` and the special tokens.
    """

    def __init__(self, model: RemoteModel):
        self._model = model
        special = model.info.special_tokens
        self.bos_token, self.bos_token_id = special.bos_token or None, special.bos_token_id
        self.eos_token, self.eos_token_id = special.eos_token or None, special.eos_token_id
        self.pad_token, self.pad_token_id = special.pad_token or None, special.pad_token_id
        self.unk_token, self.unk_token_id = special.unk_token or None, special.unk_token_id
        self.all_special_ids = list(special.all_special_ids)
        self.name_or_path = model.model_id

    def segment(self, texts: str | list[str], add_special_tokens: bool = False):
        """Full tokenization (ids, offsets, words, sentences) as TokenizedText messages."""
        single = isinstance(texts, str)
        request = model_pb2.TokenizeRequest(model=self._model.model_id,
                                            texts=[texts] if single else list(texts),
                                            add_special_tokens=add_special_tokens)
        results = list(self._model.mesh.client("model").call("Tokenize", request).results)
        return results[0] if single else results

    def __call__(self, texts: str | list[str], add_special_tokens: bool = False,
                 return_offsets_mapping: bool = False) -> dict:
        single = isinstance(texts, str)
        results = self.segment([texts] if single else texts, add_special_tokens)
        ids = [list(r.token_ids) for r in results]
        out = {"input_ids": ids[0] if single else ids}
        if return_offsets_mapping:
            offsets = [list(zip(r.token_start_chars, r.token_end_chars, strict=True)) for r in results]
            out["offset_mapping"] = offsets[0] if single else offsets
        return out

    def tokenize(self, text: str) -> list[str]:
        return list(self.segment(text).tokens)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.segment(text, add_special_tokens).token_ids)

    def decode(self, token_ids, skip_special_tokens: bool = False) -> str:
        return self.batch_decode([token_ids], skip_special_tokens)[0]

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        request = model_pb2.DetokenizeRequest(
            model=self._model.model_id, skip_special_tokens=skip_special_tokens,
            sequences=[model_pb2.TokenIds(ids=[int(i) for i in seq]) for seq in sequences])
        return list(self._model.mesh.client("model").call("Detokenize", request).texts)

    def convert_ids_to_tokens(self, token_ids) -> list[str]:
        return [self.decode([i]) for i in token_ids]

    def __repr__(self) -> str:
        return f"RemoteTokenizer({self._model.model_id!r})"


@dataclass
class FetchedActivations:
    """Activations copied to the client: rows [n, hidden] and where each row comes from."""

    split_point: str
    rows: "np.ndarray"
    sample_index: list[int]
    token_start: list[int]
    token_end: list[int]
    text: list[str]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.rows.shape)


def _granularity(value) -> int:
    from xaimesh_contracts.enums import to_number
    from xaimesh_contracts.v1 import tensor_pb2

    return to_number(tensor_pb2.Granularity, value, field="granularity")


def _aggregation(value) -> int:
    from xaimesh_contracts.enums import to_number
    from xaimesh_contracts.v1 import tensor_pb2

    return to_number(tensor_pb2.Aggregation, value, field="aggregation")


def special_tokens_policy(add_special_tokens: bool | None) -> int:
    """The contract's SpecialTokensPolicy for the SDK's ``add_special_tokens``
    override: None -> UNSPECIFIED (the tokenizer's own special tokens, their
    rows left out except for ALL_TOKENS / CLS_TOKEN), True -> ADD, False ->
    OMIT (the text without special tokens)."""
    if add_special_tokens is None:
        return model_pb2.SPECIAL_TOKENS_POLICY_UNSPECIFIED
    return model_pb2.SPECIAL_TOKENS_POLICY_ADD if add_special_tokens else model_pb2.SPECIAL_TOKENS_POLICY_OMIT


def fetch_activations(model: RemoteModel, texts: list[str], split_points=(8,), granularity="TOKEN",
                      aggregation="MEAN", add_special_tokens: bool | None = None,
                      show_progress: bool = True) -> dict[str, FetchedActivations]:
    """Streams activations straight from the model-server into client memory.

    ``add_special_tokens``: None (default) = the token semantics of
    docs/models.md, "Token semantics"; False runs the texts without special tokens; True
    adds them explicitly.

    For small inputs and quick looks; `ModelWithSplitPoints.get_activations`
    keeps large sets next to the compute in the concept-service instead.
    """
    import numpy as np

    from xaimesh_contracts.tensors import to_numpy

    request = model_pb2.StreamActivationsRequest(
        model=model.model_id, texts=list(texts), split_points=[str(s) for s in split_points],
        granularity=_granularity(granularity), aggregation=_aggregation(aggregation),
        add_special_tokens=bool(add_special_tokens), special_tokens=special_tokens_policy(add_special_tokens))
    parts: dict[str, list] = {}
    out: dict[str, FetchedActivations] = {}
    for event in model.mesh.client("model").stream("StreamActivations", request, show_progress=show_progress,
                                                   description="activations"):
        kind = event.WhichOneof("event")
        if kind == "header":
            for split in event.header.split_points:
                parts[split] = []
                out[split] = FetchedActivations(split, np.zeros((0, event.header.hidden_size), np.float32),
                                                [], [], [], [])
        elif kind == "chunk":
            chunk = event.chunk
            parts[chunk.split_point].append(to_numpy(chunk.rows, field="rows"))
            fetched = out[chunk.split_point]
            for row in chunk.provenance:
                fetched.sample_index.append(row.sample_index)
                fetched.token_start.append(row.token_start)
                fetched.token_end.append(row.token_end)
                fetched.text.append(row.text)
        elif kind == "item_error":
            from xaimesh.errors import from_status

            raise from_status(event.item_error.status, "model-server", f"text {event.item_error.index}")
    for split, arrays in parts.items():
        if arrays:
            out[split].rows = np.concatenate(arrays, axis=0)
    return out
