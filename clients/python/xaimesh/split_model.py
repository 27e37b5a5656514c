"""Activations at split points, kept next to the compute.

    split_model = xaimesh.ModelWithSplitPoints(model, split_points=[8])
    activations = split_model.get_activations(
        inputs=texts, activation_granularity=split_model.activation_granularities.TOKEN)
    activations.shape            # (rows, hidden): the rows stay in the concept-service
    activations[:10]             # fetches rows 0..9 (numpy)
    activations.numpy()          # fetches everything; .torch() likewise
    activations.provenance()     # where each row comes from (sample, token span, text)

`get_activations` asks the concept-service to pull the activations from the
model-server (a server-to-server stream) and store them as an activation set;
what comes back is an :class:`ActivationSet` handle (one per split point).
"""

from __future__ import annotations

import csv
import enum
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xaimesh_contracts.enums import to_name, to_number
from xaimesh_contracts.v1 import concept_pb2, tensor_pb2

from .datasets import load_texts
from .mesh import special_tokens_policy

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from xaimesh.mesh import Mesh, RemoteModel

__all__ = ["ActivationGranularity", "ActivationSet", "AggregationStrategy", "ModelWithSplitPoints",
           "Provenance", "load_texts"]

#: Bytes of texts sent in one CreateActivationSets request (the services'
#: default message limit is 64 MiB).
MAX_REQUEST_TEXT_BYTES = 48 << 20
#: Rows of one ReadActivationSet message (bytes).
READ_CHUNK_BYTES = 4 << 20


class ActivationGranularity(enum.Enum):
    """Which rows an activation set has (tensor.proto's Granularity)."""

    ALL_TOKENS = tensor_pb2.GRANULARITY_ALL_TOKENS  # every token, special tokens included
    TOKEN = tensor_pb2.GRANULARITY_TOKEN  # every token but the special ones
    WORD = tensor_pb2.GRANULARITY_WORD  # one row per word (aggregated)
    SENTENCE = tensor_pb2.GRANULARITY_SENTENCE  # one row per sentence (aggregated)
    PART_SENTENCE = tensor_pb2.GRANULARITY_PART_SENTENCE  # one row per part of a sentence (aggregated)
    SAMPLE = tensor_pb2.GRANULARITY_SAMPLE  # one row per text (aggregated)
    CLS_TOKEN = tensor_pb2.GRANULARITY_CLS_TOKEN  # the first token of each text

    @classmethod
    def coerce(cls, value: Any) -> ActivationGranularity:
        return _coerce_enum(cls, tensor_pb2.Granularity, value, "activation granularity")


class AggregationStrategy(enum.Enum):
    """How token rows are combined into word / sentence / sample rows."""

    MEAN = tensor_pb2.AGGREGATION_MEAN
    MAX = tensor_pb2.AGGREGATION_MAX
    MIN = tensor_pb2.AGGREGATION_MIN
    SUM = tensor_pb2.AGGREGATION_SUM
    SIGNED_MAX = tensor_pb2.AGGREGATION_SIGNED_MAX
    FIRST = tensor_pb2.AGGREGATION_FIRST
    LAST = tensor_pb2.AGGREGATION_LAST

    @classmethod
    def coerce(cls, value: Any) -> AggregationStrategy:
        return _coerce_enum(cls, tensor_pb2.Aggregation, value, "aggregation strategy")


def _coerce_enum(cls, proto_enum, value, what):
    """A member of ``cls`` (whose values are ``proto_enum`` numbers) from a
    member, a number, a name in any case, or another toolkit's enum member
    with the same member names."""
    if isinstance(value, cls):
        return value
    return cls(to_number(proto_enum, value, field=what, allow_unspecified=False))


@dataclass(frozen=True)
class Provenance:
    """Where an activation row comes from: the input text's index, the row's
    token span (end exclusive) and its text (token, word, sentence or sample)."""

    sample_index: int
    token_start: int
    token_end: int
    text: str

    def to_proto(self):
        from xaimesh_contracts.v1 import model_pb2

        return model_pb2.RowProvenance(sample_index=self.sample_index, token_start=self.token_start,
                                       token_end=self.token_end, text=self.text)

    @classmethod
    def from_proto(cls, p) -> Provenance:
        return cls(int(p.sample_index), int(p.token_start), int(p.token_end), p.text)


# ---------------------------------------------------------------------------
# the activation set handle
# ---------------------------------------------------------------------------
class ActivationSet:
    """A handle on an activation set stored by the concept-service.

    ``len(s)`` is the number of rows; ``s[i]`` / ``s[a:b]`` / ``s[a:b, cols]``
    fetch rows (numpy); ``s.numpy()`` / ``s.torch()`` fetch all of it in
    chunks; ``s.provenance()`` lists where the rows come from. Pass the
    handle itself to concept explainers and metrics: the rows then never
    leave the service.
    """

    def __init__(self, mesh: Mesh, info: concept_pb2.ActivationSet):
        self.mesh = mesh
        self.info = info

    # -- lookup ---------------------------------------------------------
    @classmethod
    def get(cls, mesh_or_model: Any, name: str) -> ActivationSet:
        """The stored set ``name`` ("activationSets/{id}" or the bare id)."""
        from xaimesh.concepts._rpc import concept_client, mesh_of

        mesh = mesh_of(mesh_or_model)
        info = concept_client(mesh).call("GetActivationSet", concept_pb2.GetActivationSetRequest(name=name)).set
        return cls(mesh, info)

    @classmethod
    def list(cls, mesh_or_model: Any) -> list[ActivationSet]:
        """Every stored set, oldest first."""
        from xaimesh.concepts._rpc import concept_client, mesh_of

        mesh = mesh_of(mesh_or_model)
        client = concept_client(mesh)
        out, token = [], ""
        while True:
            page = client.call("ListActivationSets",
                               concept_pb2.ListActivationSetsRequest(page_size=1000, page_token=token))
            out += [cls(mesh, s) for s in page.sets]
            token = page.next_page_token
            if not token:
                return out

    def refresh(self) -> ActivationSet:
        from xaimesh.concepts._rpc import concept_client

        self.info = concept_client(self.mesh).call(
            "GetActivationSet", concept_pb2.GetActivationSetRequest(name=self.name)).set
        return self

    # -- description ----------------------------------------------------
    @property
    def name(self) -> str:
        """"activationSets/{id}"."""
        return self.info.name

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def display_name(self) -> str:
        return self.info.display_name

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(d) for d in self.info.shape)  # type: ignore[return-value]

    @property
    def num_rows(self) -> int:
        return self.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.shape[1]

    @property
    def dtype(self) -> str:
        """Element type of the fetched arrays ("float32")."""
        return to_name(tensor_pb2.DataType, self.info.dtype)

    @property
    def model(self) -> str:
        return self.info.model

    @property
    def split_point(self) -> str:
        return self.info.split_point

    @property
    def granularity(self) -> ActivationGranularity | None:
        g = self.info.granularity
        return ActivationGranularity(g) if g else None

    @property
    def aggregation(self) -> AggregationStrategy | None:
        a = self.info.aggregation
        return AggregationStrategy(a) if a else None

    @property
    def num_samples(self) -> int:
        return int(self.info.num_samples)

    @property
    def has_provenance(self) -> bool:
        return bool(self.info.has_provenance)

    @property
    def size_bytes(self) -> int:
        return int(self.info.size_bytes)

    @property
    def create_time(self) -> int:
        """Unix seconds."""
        return int(self.info.create_time)

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        parts = [repr(self.name), f"shape={self.shape}"]
        if self.display_name:
            parts.append(f"display_name={self.display_name!r}")
        if self.model:
            parts.append(f"model={self.model!r}")
        if self.split_point:
            parts.append(f"split_point={self.split_point!r}")
        if self.granularity is not None:
            parts.append(f"granularity={self.granularity.name}")
        return f"ActivationSet({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActivationSet) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    # -- rows -----------------------------------------------------------
    def _read(self, start: int, end: int, *, include_provenance: bool = False, show_progress: bool = False):
        """Rows [start, end) as float32 numpy (and their provenance)."""
        import numpy as np

        from xaimesh.concepts._rpc import concept_client
        from xaimesh_contracts.tensors import to_numpy

        n = end - start
        out = np.empty((max(n, 0), self.hidden_size), np.float32)
        prov: list[Provenance] = []
        if n <= 0:
            return out, prov
        client = concept_client(self.mesh)
        request = concept_pb2.ReadActivationSetRequest(name=self.name, row_start=start, row_end=end,
                                                       include_provenance=include_provenance,
                                                       chunk_bytes=READ_CHUNK_BYTES)
        bar = _bar(n, f"fetching {self.id}") if show_progress and out.nbytes > (32 << 20) else None
        try:
            for msg in client.stream("ReadActivationSet", request, show_progress=False):
                rows = to_numpy(msg.rows, field="rows")
                s = int(msg.row_start) - start
                out[s:s + rows.shape[0]] = rows
                prov.extend(Provenance.from_proto(p) for p in msg.provenance)
                if bar is not None:
                    bar.update(rows.shape[0])
        finally:
            if bar is not None:
                bar.close()
        return out, prov

    def numpy(self, *, show_progress: bool = True) -> np.ndarray:
        """Every row, float32 [rows, hidden], fetched in chunks."""
        return self._read(0, self.num_rows, show_progress=show_progress)[0]

    def torch(self, *, show_progress: bool = True):
        """Every row as a float32 torch tensor."""
        import torch

        return torch.from_numpy(self.numpy(show_progress=show_progress))

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def rows(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """Rows [start, end) (end None = to the end)."""
        start, end, _ = slice(start, end).indices(self.num_rows)
        return self._read(start, max(start, end))[0]

    def provenance(self, start: int = 0, end: int | None = None) -> list[Provenance]:
        """Where rows [start, end) come from (empty when the set has none)."""
        if not self.has_provenance:
            return []
        start, end, _ = slice(start, end).indices(self.num_rows)
        return self._read(start, max(start, end), include_provenance=True)[1]

    def texts(self, start: int = 0, end: int | None = None) -> list[str]:
        """The text of each row in [start, end)."""
        return [p.text for p in self.provenance(start, end)]

    def __getitem__(self, key):
        import numpy as np

        rest = ()
        if isinstance(key, tuple):
            if not key:
                return self.numpy()
            key, rest = key[0], key[1:]
        n = self.num_rows
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step > 0:
                lo, hi = start, max(start, stop)
                rows = self._read(lo, hi)[0][::step]
            else:
                lo, hi = stop + 1, start + 1
                rows = self._read(max(lo, 0), max(hi, 0))[0][::-1][::-step] if hi > lo else \
                    np.empty((0, self.hidden_size), np.float32)
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key)
            if i < -n or i >= n:
                raise IndexError(f"row {i} is out of range for {self.name} with {n} rows")
            i %= n
            rows = self._read(i, i + 1)[0][0]
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"a boolean mask must have shape ({n},), got {idx.shape}")
                idx = np.flatnonzero(idx)
            if idx.dtype.kind not in "iu":
                raise TypeError(f"rows are indexed by int, slice, int array or boolean mask, not {type(key).__name__}")
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"row index out of range for {self.name} with {n} rows")
            idx = idx % max(n, 1)
            uniq = np.unique(idx)
            fetched = np.empty((uniq.size, self.hidden_size), np.float32)
            # fetch consecutive runs
            runs = np.split(uniq, np.flatnonzero(np.diff(uniq) != 1) + 1) if uniq.size else []
            pos = 0
            for run in runs:
                fetched[pos:pos + run.size] = self._read(int(run[0]), int(run[-1]) + 1)[0]
                pos += run.size
            rows = fetched[np.searchsorted(uniq, idx)]
        return rows[(slice(None),) + rest] if rest and rows.ndim == 2 else (rows[rest] if rest else rows)

    def __iter__(self) -> Iterator[np.ndarray]:
        step = max(1, READ_CHUNK_BYTES // max(1, self.hidden_size * 4))
        for s in range(0, self.num_rows, step):
            yield from self._read(s, min(s + step, self.num_rows))[0]

    # -- lifecycle ------------------------------------------------------
    def delete(self) -> None:
        """Delete the set from the concept-service."""
        from xaimesh.concepts._rpc import concept_client

        concept_client(self.mesh).call("DeleteActivationSet", concept_pb2.DeleteActivationSetRequest(name=self.name))


def _bar(total: int, description: str):
    from xaimesh._client import progress_enabled

    if not progress_enabled():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, leave=False, unit="rows")


# ---------------------------------------------------------------------------
# the split model
# ---------------------------------------------------------------------------
class ModelWithSplitPoints:
    """A remote model plus the layers ("split points") whose activations are
    studied.

    ``model``: a :class:`~xaimesh.mesh.RemoteModel` (``mesh.model()``), a
    model name or path, or a Hugging Face model object with its tokenizer
    (matched to a served model through ``mesh``, the last ``connect()`` or a
    new one: ``xaimesh.models``). ``split_points``: layer indices (``8``)
    or module paths (``"model.layers.8"``). ``batch_size`` is kept for
    compatibility: the model-server batches work across callers on its own.
    """

    activation_granularities = ActivationGranularity
    aggregation_strategies = AggregationStrategy

    def __init__(self, model: RemoteModel | str, tokenizer: Any = None,
                 split_points: int | str | Sequence[int | str] = (8,), batch_size: int | None = None,
                 *, mesh: Mesh | None = None):
        from xaimesh.attributions._calls import is_int
        from xaimesh.models import resolve_model

        if is_int(tokenizer) or (isinstance(tokenizer, (list, tuple)) and tokenizer
                                 and all(is_int(t) for t in tokenizer)):
            raise TypeError(f"ModelWithSplitPoints(model, {tokenizer!r}): the second argument is the tokenizer; "
                            f"give the split points by name: split_points={tokenizer!r}")
        model = resolve_model(model, tokenizer, mesh=mesh, who="ModelWithSplitPoints")
        self.model = model
        self.mesh = model.mesh
        # the model-server tokenizes: the served model's tokenizer, whatever object was given
        self.tokenizer = model.tokenizer
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.split_points = split_points  # type: ignore[assignment]

    # -- split points ---------------------------------------------------
    @property
    def split_points(self) -> list[int | str]:
        return list(self._split_points)

    @split_points.setter
    def split_points(self, value) -> None:
        values = [value] if isinstance(value, (int, str)) else list(value)
        if not values:
            raise ValueError("split_points is empty: give at least one layer index or module path")
        n = self.model.num_layers
        out: list[int | str] = []
        for sp in values:
            if isinstance(sp, bool) or not isinstance(sp, (int, str)):
                raise TypeError(f"a split point is a layer index or a module path, not {sp!r}")
            key = sp.strip() if isinstance(sp, str) else sp
            as_int = int(key) if isinstance(key, int) or key.lstrip("-").isdigit() else None
            if as_int is not None and n and not 0 <= as_int < n:
                raise ValueError(f"split point {sp} is out of range: model {self.model.model_id!r} has {n} "
                                 f"layers (0..{n - 1})")
            if key not in out:
                out.append(key)
        self._split_points = out

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @property
    def hidden_size(self) -> int:
        return self.model.hidden_size

    def __repr__(self) -> str:
        return f"ModelWithSplitPoints({self.model.model_id!r}, split_points={self.split_points})"

    # -- activations ----------------------------------------------------
    def get_activations(self, inputs: Any,
                        activation_granularity: ActivationGranularity | str = ActivationGranularity.TOKEN,
                        aggregation_strategy: AggregationStrategy | str = AggregationStrategy.MEAN, *,
                        display_name: str | None = None, add_special_tokens: bool | None = None,
                        max_length: int = 0, show_progress: bool = True, timeout: float | None = None,
                        ) -> ActivationSet | dict[int | str, ActivationSet]:
        """Activations of ``inputs`` at the split points, stored by the
        concept-service.

        Returns an :class:`ActivationSet` when there is one split point, else
        ``{split_point: ActivationSet}``. ``inputs``: see :func:`load_texts`.
        Token semantics (docs/models.md, "Token semantics"): the texts run with the
        tokenizer's own special tokens ([CLS] / [SEP], a BOS; none for
        SmolLM2); TOKEN / WORD / SENTENCE / SAMPLE leave the special tokens'
        rows out, ALL_TOKENS keeps them, CLS_TOKEN is the first token.
        ``add_special_tokens`` overrides it: False runs the texts without
        special tokens, True adds them explicitly; None (default) = the
        definition.
        Texts that fail (e.g. empty ones) are skipped with a warning naming
        them; the call fails if none produced activations.
        """
        import warnings

        from xaimesh.concepts._rpc import concept_client

        texts = load_texts(inputs)
        if not texts:
            raise ValueError("inputs holds no texts")
        size = sum(len(t.encode("utf-8")) for t in texts)
        if size > MAX_REQUEST_TEXT_BYTES:
            raise ValueError(f"the texts hold {size} bytes, more than the {MAX_REQUEST_TEXT_BYTES} one request "
                             "can carry; call get_activations on smaller parts")
        granularity = ActivationGranularity.coerce(activation_granularity)
        aggregation = AggregationStrategy.coerce(aggregation_strategy)
        if display_name is None:
            display_name = f"{self.model.model_id} {granularity.name.lower()} ({len(texts)} texts)"
        request = concept_pb2.CreateActivationSetsRequest(
            model=self.model.model_id, texts=texts, split_points=[str(s) for s in self._split_points],
            granularity=granularity.value, aggregation=aggregation.value,
            add_special_tokens=bool(add_special_tokens), max_length=int(max_length or 0),
            display_name=display_name, special_tokens=special_tokens_policy(add_special_tokens))
        sets = None
        errors = []
        for event in concept_client(self.mesh).stream("CreateActivationSets", request, timeout=timeout,
                                                       show_progress=show_progress, description="activations"):
            kind = event.WhichOneof("event")
            if kind == "item_error":
                errors.append(event.item_error)
            elif kind == "sets":
                sets = list(event.sets.sets)
        if errors:
            shown = "; ".join(f"text {e.index}: {e.status.message}" for e in errors[:5])
            more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            warnings.warn(f"{len(errors)} of {len(texts)} texts produced no activations: {shown}{more}",
                          stacklevel=2)
        if sets is None:
            raise RuntimeError("the concept-service ended the call without returning the activation sets")
        handles = [ActivationSet(self.mesh, s) for s in sets]
        if len(self._split_points) == 1 and len(handles) == 1:
            return handles[0]
        if len(handles) == len(self._split_points):
            return dict(zip(self._split_points, handles))
        # several names of one layer ("8" and "model.layers.8"): the service made one set for them
        return {sp: self._match(sp, handles) for sp in self._split_points}

    def _match(self, split_point: int | str, handles: list[ActivationSet]) -> ActivationSet:
        paths = list(self.model.info.split_points)
        key = str(split_point)
        path = paths[int(key)] if key.isdigit() and int(key) < len(paths) else key
        for h in handles:
            if h.split_point in (key, path):
                return h
        raise RuntimeError(f"the concept-service returned no set for split point {split_point!r} "
                           f"(got {[h.split_point for h in handles]})")
