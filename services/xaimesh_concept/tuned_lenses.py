"""Tuned lenses ("tunedLenses/{id}"): fitted by the model-server, stored here.

Why the work is split this way (docs/lenses.md, "Where a tuned lens lives"):
the loss of a tuned lens is back-propagated through the model's final norm
and unembedding, which only the model-server holds (shipping them here
would mean re-implementing every family's norm and soft-capping), so the
model-server fits the translators (FitLensTranslators, stateless) and
applies them (LogitLens with translators). This service is the one with
durable storage (model-server replicas hold no state), so it stores the
translators under an id, lists and deletes them, and on ApplyTunedLens sends
them with a LogitLens request to the lens's own model: a restart of either
service changes nothing.

On disk: `<data_dir>/tuned_lenses/<id>/lens.safetensors` (float32
`weight` [blocks, hidden, hidden] and `bias` [blocks, hidden]) and
`meta.json` (the TunedLensInfo), published atomically through the store's
temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from xaimesh_contracts.tensors import to_numpy, to_tensor
from xaimesh_contracts.v1 import model_pb2
from xaimesh_runtime.errors import Cancelled, NotFound

from .common import Progress
from .store import ID_PATTERN, Store, _paginate, _write_file, new_id, parse_name

COLLECTION = "tunedLenses"


@dataclass
class TunedLensInfo:
    """What the proto's TunedLens carries."""

    id: str
    display_name: str = ""
    model: str = ""
    layers: list = field(default_factory=list)
    hidden_size: int = 0
    epochs: int = 0
    learning_rate: float = 0.0
    weight_decay: float = 0.0
    epoch_losses: list = field(default_factory=list)
    train_kl_logit_lens: list = field(default_factory=list)
    train_kl_tuned_lens: list = field(default_factory=list)
    held_out_kl_logit_lens: list = field(default_factory=list)
    held_out_kl_tuned_lens: list = field(default_factory=list)
    train_texts: int = 0
    held_out_texts: int = 0
    train_tokens: int = 0
    held_out_tokens: int = 0
    create_time: int = 0
    create_time_ns: int = 0
    fit_seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{COLLECTION}/{self.id}"

    @classmethod
    def from_dict(cls, d: dict) -> "TunedLensInfo":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class TunedLensStore:
    """Tuned lenses under `<data_dir>/tuned_lenses` (module doc)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.root = os.path.join(store.root, "tuned_lenses")
        os.makedirs(self.root, exist_ok=True)

    def _dir(self, name: str, field_name: str = "name") -> str:
        return os.path.join(self.root, parse_name(name, COLLECTION, field_name))

    def save(self, info: TunedLensInfo, weight: np.ndarray, bias: np.ndarray) -> TunedLensInfo:
        """Stores the lens under a fresh id (and create time); returns its info."""
        from safetensors.numpy import save

        now = time.time_ns()
        info = TunedLensInfo.from_dict({**asdict(info), "id": new_id(), "create_time": now // 1_000_000_000,
                                        "create_time_ns": now})
        tmp = self._store._new_tmp_dir("lens")
        try:
            _write_file(os.path.join(tmp, "lens.safetensors"),
                        save({"weight": np.ascontiguousarray(weight, np.float32),
                              "bias": np.ascontiguousarray(bias, np.float32)}))
            _write_file(os.path.join(tmp, "meta.json"), json.dumps(asdict(info)).encode())
            self._store._publish(tmp, os.path.join(self.root, info.id))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return info

    def get(self, name: str, field_name: str = "name") -> TunedLensInfo:
        path = os.path.join(self._dir(name, field_name), "meta.json")
        try:
            with open(path, "rb") as f:
                return TunedLensInfo.from_dict(json.loads(f.read()))
        except FileNotFoundError:
            raise NotFound(f"tuned lens {name!r} does not exist (list the stored lenses with ListTunedLenses)",
                           field=field_name) from None

    def load(self, name: str, field_name: str = "name") -> tuple[TunedLensInfo, np.ndarray, np.ndarray]:
        from safetensors.numpy import load_file

        info = self.get(name, field_name)
        tensors = load_file(os.path.join(self._dir(name, field_name), "lens.safetensors"))
        return info, tensors["weight"], tensors["bias"]

    def list(self, page_size: int = 0, page_token: str = "") -> tuple[list[TunedLensInfo], str]:
        items = []
        for entry in os.scandir(self.root):
            if entry.is_dir() and ID_PATTERN.fullmatch(entry.name):
                try:
                    items.append(self.get(entry.name))
                except NotFound:  # deleted meanwhile
                    pass
        return _paginate(items, int(page_size or 0), page_token or "")

    def delete(self, name: str) -> None:
        path = self._dir(name)
        if not os.path.isdir(path):
            raise NotFound(f"tuned lens {name!r} does not exist", field="name")
        self._store._remove(path)


class LensServer(Protocol):
    """The model-server's lens rpcs, as this service calls them (the
    FitLensTranslators stream also has `cancel()`)."""

    def fit_translators(self, request: model_pb2.FitLensTranslatorsRequest, *, timeout: float | None
                        ) -> Iterator[model_pb2.FitLensTranslatorsResponse]: ...

    def logit_lens(self, request: model_pb2.LogitLensRequest, *, timeout: float | None
                   ) -> model_pb2.LogitLensResponse: ...


def fit_tuned_lens(lenses: TunedLensStore, server: LensServer, request: model_pb2.FitLensTranslatorsRequest,
                   display_name: str, *, progress: Callable[[Progress], None],
                   should_stop: Callable[[], bool], timeout: float | None) -> TunedLensInfo:
    """Has the model-server fit the translators (its progress passed on), then stores them."""
    started = time.monotonic()
    result = None
    events = server.fit_translators(request, timeout=timeout)
    for event in events:
        if should_stop():
            events.cancel()  # the model-server stops training too
            raise Cancelled("the tuned lens fit was cancelled")
        if event.HasField("progress"):
            p = event.progress
            progress(Progress(p.stage, p.done, p.total, p.message))
        elif event.HasField("result"):
            result = event.result
    if result is None:
        raise RuntimeError("the model-server's FitLensTranslators stream ended without translators")
    weight = to_numpy(result.weights, field="weights", ndim=3)
    bias = to_numpy(result.biases, field="biases", ndim=2)
    info = TunedLensInfo(
        id="", display_name=display_name, model=result.model, layers=list(result.layers),
        hidden_size=int(weight.shape[-1]), epochs=result.epochs, learning_rate=result.learning_rate,
        weight_decay=result.weight_decay,
        epoch_losses=list(result.epoch_losses), train_kl_logit_lens=list(result.train_kl_logit_lens),
        train_kl_tuned_lens=list(result.train_kl_tuned_lens),
        held_out_kl_logit_lens=list(result.held_out_kl_logit_lens),
        held_out_kl_tuned_lens=list(result.held_out_kl_tuned_lens), train_texts=len(request.texts),
        held_out_texts=len(request.held_out_texts), train_tokens=result.train_tokens,
        held_out_tokens=result.held_out_tokens, fit_seconds=time.monotonic() - started)
    return lenses.save(info, weight, bias)


def apply_tuned_lens(lenses: TunedLensStore, server: LensServer, name: str, input_ids, top_k: int, *,
                     timeout: float | None) -> model_pb2.LogitLensResponse:
    """The lens's own model runs LogitLens with the stored translators."""
    info, weight, bias = lenses.load(name, "tuned_lens")
    request = model_pb2.LogitLensRequest(model=info.model, input_ids=list(input_ids), top_k=top_k,
                                         translator_weights=to_tensor(weight), translator_biases=to_tensor(bias))
    return server.logit_lens(request, timeout=timeout)
