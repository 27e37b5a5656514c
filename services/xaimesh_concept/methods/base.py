"""Common machinery of every concept method.

A concept method is a scikit-learn-like estimator::

    m = SemiNMF(nb_concepts=20, seed=0, max_iterations=200)
    m.fit(X, progress=callback, should_stop=lambda: False)
    codes = m.encode(X)            # [n, nb_concepts] float32
    X_hat = m.decode(codes)        # [n, hidden] float32
    m.dictionary_                  # [nb_concepts, hidden] float32
    state = m.state_dict()         # ModelState(config: JSON-able dict, tensors: dict of arrays)
    m2 = ConceptMethod.from_state(state)

``X`` is anything :func:`xaimesh_concept.data.as_source` accepts (array,
memmap, torch tensor, chunk factory, stored activation set).

Memory: ``fit(X, memory_budget_bytes=B)`` bounds the working memory of the
fit. Methods whose exact algorithm holds the whole matrix (``streaming`` is
False) estimate what that takes (``in_memory_bytes``); past the budget, or
with ``streaming=True``, they run their streaming variant (``_fit_streaming``,
definitions in docs/concepts-large.md), which holds blocks of rows only.
Without a budget (the default of this Python API) the exact in-memory
algorithm runs, whatever the size.

Options are the ``ConceptFitOptions`` fields that apply to the method; zero /
empty values mean "the method's default" as in the proto. ``get_params()``
returns the options actually used, defaults filled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from xaimesh_runtime.errors import Cancelled, FailedPrecondition, InvalidArgument

from ..common import LogEntry
from ..data import ArraySource, RowSource, as_source, rows_per_chunk

#: Working memory of a streaming fit when forced (``streaming=True``) without a budget.
DEFAULT_STREAMING_BUDGET = 256 << 20

#: Every registered method, by its ConceptMethod enum suffix ("SEMI_NMF").
REGISTRY: dict[str, type["ConceptMethod"]] = {}


def register(cls):
    REGISTRY[cls.method_name] = cls
    return cls


@dataclass
class ModelState:
    """What persists a fitted method: a JSON-able config and named arrays."""

    config: dict
    tensors: dict = field(default_factory=dict)


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover - torch is a dependency
        return "cpu"


def resolve_device(device: str | None) -> str:
    """"" -> cuda when present else cpu; validates explicit requests."""
    if not device:
        return default_device()
    device = str(device).strip().lower()
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InvalidArgument(
                f"device {device!r} was requested but CUDA is not available on this server; "
                "use 'cpu' or leave the device empty", field="options.device")
        if ":" in device:
            try:
                idx = int(device.split(":", 1)[1])
            except ValueError:
                raise InvalidArgument(f"device {device!r} is not a valid device; use 'cuda:N'",
                                      field="options.device") from None
            if idx >= torch.cuda.device_count():
                raise InvalidArgument(
                    f"device {device!r} does not exist: this server has "
                    f"{torch.cuda.device_count()} CUDA device(s)", field="options.device")
        return device
    raise InvalidArgument(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'",
                          field="options.device")


class _StandardizedSource:
    """(x - mean) / scale applied chunk by chunk over another source."""

    def __init__(self, source, mean, scale):
        self.source, self.mean, self.scale = source, mean, scale
        self.n_rows, self.n_features = source.n_rows, source.n_features

    def read(self, start, end):
        return ((self.source.read(start, end) - self.mean) / self.scale).astype(np.float32)

    def iter_chunks(self, chunk_rows, start=0, end=None):
        for s, rows in self.source.iter_chunks(chunk_rows, start, end):
            yield s, ((rows - self.mean) / self.scale).astype(np.float32)


def column_moments(source: RowSource, should_stop=None, chunk_rows: int | None = None):
    """Per-feature mean and (population) std in one streaming pass (float64,
    chunks merged with Chan's parallel formula)."""
    d = source.n_features
    chunks = (rows for _, rows in source.iter_chunks(chunk_rows or rows_per_chunk(d)))
    return block_moments(chunks, d, should_stop)


def block_moments(blocks, d: int, should_stop=None):
    """``column_moments`` of an iterable of row blocks [rows, d]."""
    n = 0
    mean = np.zeros(d, np.float64)
    m2 = np.zeros(d, np.float64)
    for rows in blocks:
        if should_stop is not None and should_stop():
            raise Cancelled("the fit was cancelled")
        rows = rows.astype(np.float64)
        nb = rows.shape[0]
        if nb == 0:
            continue
        mb = rows.mean(0)
        m2b = ((rows - mb) ** 2).sum(0)
        delta = mb - mean
        tot = n + nb
        mean = mean + delta * nb / tot
        m2 = m2 + m2b + delta ** 2 * n * nb / tot
        n = tot
    std = np.sqrt(m2 / max(n, 1))
    return mean, std


class ConceptMethod:
    """Base class. Subclasses set the class variables and implement
    ``_fit(source, log, should_stop)``, ``_encode(X)``, ``_decode(codes)``,
    ``_dictionary()``, ``_state_tensors()`` and ``_load_tensors(tensors)``."""

    method_name: ClassVar[str] = ""
    #: ConceptFitOptions fields (and method-specific extras) that apply, with defaults.
    OPTIONS: ClassVar[dict[str, Any]] = {}
    #: nb_concepts must be <= number of rows.
    needs_rows_ge_concepts: ClassVar[bool] = True
    #: nb_concepts must be <= hidden size.
    needs_hidden_ge_concepts: ClassVar[bool] = False
    #: Trains without holding the whole matrix in memory (no separate streaming variant).
    streaming: ClassVar[bool] = False
    #: Bytes per matrix element the exact in-memory fit holds (its copies of the
    #: rows, float32 = 4; see ``in_memory_bytes``).
    in_memory_bytes_per_value: ClassVar[int] = 4
    #: Computation runs in torch on ``device``; otherwise numpy / scikit-learn on CPU.
    uses_device: ClassVar[bool] = False
    #: Codes are >= 0.
    nonnegative_codes: ClassVar[bool] = False
    #: Fitted from labels by FitProbe (probes.py), not by FitConceptModel.
    supervised: ClassVar[bool] = False

    COMMON_OPTIONS: ClassVar[dict[str, Any]] = {"seed": 0, "standardize": False}
    #: Upper bounds of the counts a request may ask for: past them a fit would
    #: run for days or allocate more than any machine has, so it is refused
    #: up front instead of running until the caller's deadline.
    MAX_NB_CONCEPTS: ClassVar[int] = 1 << 16
    MAX_COUNTS: ClassVar[dict[str, int]] = {"max_iterations": 1_000_000, "epochs": 1_000_000,
                                            "batch_size": 1 << 16, "top_k": 1 << 16}

    def __init__(self, nb_concepts: int, **options):
        allowed = {**self.COMMON_OPTIONS, **self.OPTIONS}
        if self.uses_device:
            allowed.setdefault("device", "")
        unknown = sorted(set(options) - set(allowed) - {"device"})
        if unknown:
            raise InvalidArgument(
                f"{self.method_name} does not take option(s) {unknown}; it takes {sorted(allowed)}",
                field="options")
        try:
            nb_concepts = int(nb_concepts)
        except (TypeError, ValueError):
            raise InvalidArgument(f"nb_concepts must be an integer, got {nb_concepts!r}",
                                  field="nb_concepts") from None
        if nb_concepts < 1 and not getattr(self, "_nb_concepts_auto", False):
            raise InvalidArgument(f"nb_concepts must be >= 1, got {nb_concepts}", field="nb_concepts")
        if nb_concepts > self.MAX_NB_CONCEPTS:
            raise InvalidArgument(f"nb_concepts must be at most {self.MAX_NB_CONCEPTS}, got {nb_concepts}",
                                  field="nb_concepts")
        self.nb_concepts = nb_concepts
        params = {}
        for key, default in allowed.items():
            value = options.get(key, None)
            if value is None or (value == 0 and not isinstance(default, bool)) or value == "":
                value = default  # proto3 zero value = method default
            elif isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            params[key] = value
        if not self.uses_device:
            params.pop("device", None)
        self._check_params(params)
        self.params = params
        for key, value in params.items():
            setattr(self, key, value)
        self.device_ = resolve_device(params.get("device")) if self.uses_device else "cpu"
        if self.uses_device:
            self.params["device"] = self.device_
        self.fitted_ = False
        self.hidden_size_: int | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.training_log_: list[LogEntry] = []
        self.final_loss_: float = float("nan")
        #: Whether the last fit ran the streaming variant.
        self.streamed_fit_ = False

    # ---- options -----------------------------------------------------------
    def _check_params(self, p: dict) -> None:
        for key in ("max_iterations", "epochs", "batch_size", "top_k"):
            if key in p and p[key] < 1:
                raise InvalidArgument(f"{key} must be >= 1, got {p[key]}", field=f"options.{key}")
            if key in p and p[key] > self.MAX_COUNTS[key]:
                raise InvalidArgument(f"{key} must be at most {self.MAX_COUNTS[key]}, got {p[key]}",
                                      field=f"options.{key}")
        for key in ("tolerance", "learning_rate", "l1_coefficient", "alpha", "jump_threshold",
                    "jump_bandwidth"):
            if key in p and (not math.isfinite(p[key]) or p[key] < 0):
                raise InvalidArgument(f"{key} must be a finite number >= 0, got {p[key]}",
                                      field=f"options.{key}")

    def get_params(self) -> dict:
        """nb_concepts and the options actually used (defaults filled)."""
        return {"nb_concepts": self.nb_concepts, **self.params}

    # ---- validation --------------------------------------------------------
    def validate_fit_shape(self, n_rows: int, hidden: int) -> None:
        if n_rows < 1:
            raise InvalidArgument("cannot fit on an empty set of activations (0 rows)",
                                  field="activation_set")
        if self.needs_rows_ge_concepts and self.nb_concepts > n_rows:
            raise InvalidArgument(
                f"{self.method_name} cannot extract {self.nb_concepts} concepts from {n_rows} rows: "
                f"nb_concepts must be <= the number of rows; ask for at most {n_rows} concepts "
                "or use more activations", field="nb_concepts")
        if self.needs_hidden_ge_concepts and self.nb_concepts > hidden:
            raise InvalidArgument(
                f"{self.method_name} cannot extract {self.nb_concepts} concepts from activations of "
                f"hidden size {hidden}: nb_concepts must be <= the hidden size", field="nb_concepts")

    def _check_fitted(self):
        if not self.fitted_:
            raise FailedPrecondition(f"this {self.method_name} model is not fitted; call fit() first")

    def _as_rows(self, X, what="activations") -> np.ndarray:
        if hasattr(X, "detach"):
            X = X.detach().cpu().numpy()
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2:
            raise InvalidArgument(f"{what} must be 2-D [rows, features]; got shape {X.shape}",
                                  field=what)
        return np.ascontiguousarray(X, dtype=np.float32)

    # ---- memory --------------------------------------------------------------
    def in_memory_bytes(self, n_rows: int, hidden: int) -> int:
        """What the exact in-memory fit holds for an [n_rows, hidden] matrix
        (the matrix and its copies, plus the codes when it keeps them)."""
        return n_rows * hidden * self.in_memory_bytes_per_value + n_rows * self.nb_concepts * 8

    def use_streaming(self, n_rows: int, hidden: int, memory_budget_bytes: int | None,
                      streaming: bool | None = None) -> bool:
        """Whether a fit of [n_rows, hidden] runs the streaming variant."""
        if self.streaming or not hasattr(self, "_fit_streaming"):
            return False
        if streaming is not None:
            return bool(streaming)
        return memory_budget_bytes is not None and self.in_memory_bytes(n_rows, hidden) > memory_budget_bytes

    def _block_rows(self, width: int, share: int = 16) -> int:
        """Rows of ``width`` float32 values in 1/``share`` of the streaming
        fit's budget (one block of rows; the rest is left to its copies)."""
        return rows_per_chunk(width, max(self.memory_budget_bytes_ // share, 64 << 10))

    def _sample_rows(self, source, bytes_per_value: int = 4, share: int = 16) -> int:
        """How many rows a seeded subsample may have in a streaming fit:
        1/``share`` of the budget at ``bytes_per_value`` bytes per value (the
        solvers run on it make a few copies of it: 1/16 keeps them within a
        quarter of the budget)."""
        return max(self.nb_concepts, self.memory_budget_bytes_ // share // (source.n_features * bytes_per_value))

    # ---- public API --------------------------------------------------------
    def fit(self, X, progress=None, should_stop=None, *, memory_budget_bytes: int | None = None,
            streaming: bool | None = None, tmp_dir: str | None = None):
        """Fit on ``X``; ``progress(LogEntry)`` receives training log entries,
        ``should_stop()`` is polled every iteration / batch (Cancelled when True).

        ``memory_budget_bytes``: past it the streaming variant runs (None: no
        limit); ``streaming``: True / False forces the variant; ``tmp_dir``:
        where the streaming variants keep scratch files (codes)."""
        source = as_source(X)
        self.validate_fit_shape(source.n_rows, source.n_features)
        self.hidden_size_ = source.n_features
        self.training_log_ = []
        self.streamed_fit_ = self.use_streaming(source.n_rows, source.n_features, memory_budget_bytes,
                                                streaming)
        self.memory_budget_bytes_ = memory_budget_bytes or DEFAULT_STREAMING_BUDGET
        self.tmp_dir_ = tmp_dir
        if should_stop is not None and should_stop():
            raise Cancelled("the fit was cancelled")

        def log(entry: LogEntry):
            self.training_log_.append(entry)
            if progress is not None:
                progress(entry)

        if self.params.get("standardize"):
            mean, std = column_moments(source, should_stop)
            std = np.where(std > 1e-12, std, 1.0)
            self.mean_, self.scale_ = mean.astype(np.float32), std.astype(np.float32)
            source = _StandardizedSource(source, self.mean_, self.scale_)
        if self.streamed_fit_:
            self._fit_streaming(source, log, should_stop)
        else:
            self._fit(source, log, should_stop)
        self.fitted_ = True
        return self

    def encode(self, X) -> np.ndarray:
        """Concept activations [n, nb_concepts] (float32, deterministic)."""
        self._check_fitted()
        X = self._as_rows(X)
        self._check_hidden(X.shape[1])
        if self.mean_ is not None:
            X = (X - self.mean_) / self.scale_
        out = [self._encode(X[i:i + self._encode_rows()]) for i in range(0, X.shape[0], self._encode_rows())]
        if not out:
            return np.zeros((0, self.nb_concepts), np.float32)
        return np.ascontiguousarray(np.concatenate(out, 0), dtype=np.float32)

    def decode(self, codes) -> np.ndarray:
        """Reconstructions [n, hidden] (float32) of concept activations."""
        self._check_fitted()
        codes = self._as_rows(codes, "codes")
        if codes.shape[1] != self.nb_concepts:
            raise InvalidArgument(
                f"codes have {codes.shape[1]} columns but the model has {self.nb_concepts} concepts",
                field="codes")
        X = self._decode(codes)
        if self.mean_ is not None:
            X = X * self.scale_ + self.mean_
        return np.ascontiguousarray(X, dtype=np.float32)

    def reconstruct(self, X) -> np.ndarray:
        return self.decode(self.encode(X))

    @property
    def dictionary_(self) -> np.ndarray:
        """The concept directions [nb_concepts, hidden] in the (possibly
        standardised) space the model was fitted in."""
        self._check_fitted()
        return np.ascontiguousarray(self._dictionary(), dtype=np.float32)

    def _check_hidden(self, d: int):
        if d != self.hidden_size_:
            raise InvalidArgument(
                f"activations have hidden size {d} but this {self.method_name} model was fitted "
                f"on hidden size {self.hidden_size_}", field="activations")

    def _encode_rows(self) -> int:
        return 8192

    # ---- persistence -------------------------------------------------------
    def state_dict(self) -> ModelState:
        self._check_fitted()
        config = {
            "method": self.method_name,
            "nb_concepts": self.nb_concepts,
            "hidden_size": self.hidden_size_,
            "params": self.params,
            "final_loss": _json_float(self.final_loss_),
            "streamed_fit": bool(self.streamed_fit_),
            "extra": self._state_extra(),
        }
        tensors = {k: np.ascontiguousarray(v) for k, v in self._state_tensors().items()}
        if self.mean_ is not None:
            tensors["standardize.mean"] = self.mean_
            tensors["standardize.scale"] = self.scale_
        json.dumps(config)  # must be JSON-able
        return ModelState(config=config, tensors=tensors)

    @classmethod
    def from_state(cls, state: ModelState | dict, tensors: dict | None = None,
                   device: str | None = None) -> "ConceptMethod":
        """Rebuild a fitted method. ``device`` overrides the stored one (a model
        fitted on cuda loads on cpu when no GPU is present)."""
        if isinstance(state, ModelState):
            config, tensors = state.config, state.tensors
        else:
            config = state
        tensors = dict(tensors or {})
        name = config.get("method")
        klass = REGISTRY.get(name)
        if klass is None:
            raise InvalidArgument(f"unknown concept method {name!r} in the model state; "
                                  f"known: {sorted(REGISTRY)}", field="method")
        if cls is not ConceptMethod and klass is not cls:
            raise InvalidArgument(f"state is a {name} model, not a {cls.method_name}")
        params = dict(config.get("params", {}))
        if klass.uses_device:
            stored = params.get("device", "")
            if device:
                params["device"] = device
            elif stored.startswith("cuda") and not default_device().startswith("cuda"):
                params["device"] = "cpu"
        else:
            params.pop("device", None)
        obj = klass(config["nb_concepts"], **params)
        obj.hidden_size_ = int(config["hidden_size"])
        obj.streamed_fit_ = bool(config.get("streamed_fit", False))
        obj.final_loss_ = float(config.get("final_loss") if config.get("final_loss") is not None
                                else float("nan"))
        if "standardize.mean" in tensors:
            obj.mean_ = np.asarray(tensors.pop("standardize.mean"), np.float32)
            obj.scale_ = np.asarray(tensors.pop("standardize.scale"), np.float32)
        try:
            obj._load_tensors(tensors, config.get("extra", {}))
        except KeyError as e:
            raise InvalidArgument(f"the {name} model state lacks tensor {e}") from None
        d = obj._dictionary()
        if d.shape[1] != obj.hidden_size_ or d.shape[0] != obj.nb_concepts:
            raise InvalidArgument(
                f"the {name} model state is inconsistent: dictionary {tuple(d.shape)} but "
                f"nb_concepts={obj.nb_concepts}, hidden_size={obj.hidden_size_}")
        obj.fitted_ = True
        return obj

    def _state_extra(self) -> dict:
        return {}

    # ---- to implement ------------------------------------------------------
    def _fit(self, source, log, should_stop):  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return codes @ self._dictionary()

    def _dictionary(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_tensors(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_tensors(self, tensors: dict, extra: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _json_float(x):
    x = float(x)
    return x if math.isfinite(x) else None


def mse_of(method_encode_decode, source, chunk_rows=None) -> float:
    """Mean squared error per element of a reconstruction over a source."""
    sse, count = 0.0, 0
    for _, rows in source.iter_chunks(chunk_rows or rows_per_chunk(source.n_features)):
        rec = method_encode_decode(rows)
        sse += float(((rows.astype(np.float64) - rec) ** 2).sum())
        count += rows.size
    return sse / max(count, 1)


def log_every(total: int, target_entries: int = 50) -> int:
    return max(1, total // target_entries)


def ensure_source(X) -> RowSource:
    return as_source(X) if not isinstance(X, ArraySource) else X
