"""What every attribution method is made of.

A method is one object in `methods.REGISTRY` (see `methods/__init__.py`):

- `name` ("kernel_shap"), its contract value `number` (read from the
  generated `AttributionMethod` enum by name, never typed by hand), `family`
  ("perturbation" | "gradient"), a one-line `doc`;
- `Parameters`: a frozen dataclass of its parameters with their defaults and
  bounds (`count`, `real`, `seed`, `choice`, `replacement`, `baseline`,
  `flag` below). Building one validates and normalises every field once;
  the dataclass is the one form of the parameters inside the service: the
  server decodes the request's parameter message into it
  (`Parameters.from_proto`), in-process callers give a dict
  (`Parameters.from_dict`), and it encodes itself back (`to_proto`,
  `to_dict`). Its fields are the fields of the method's message in
  attribution.proto (`<Method>Parameters`), which must have the same names;
  `check_model(desc)` adds the checks that need the model (token ids in the
  vocabulary, a mask token for MASK_TOKEN);
- `attribute(job, params)`: the algorithm, float64 [T, E] with NaN outside
  each row's coverage.

Errors name the parameter as `parameters.<name>`; the server prefixes the
message name (`parameters.lime.<name>`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

import numpy as np

from xaimesh_contracts.v1 import attribution_pb2, model_pb2
from xaimesh_runtime.errors import InvalidArgument

from ..backend import Baseline, ModelBackend, ModelDescription, Replacement
from ..elements import Problem
from ..options import Aggregation, BaselineKind, InferenceMode, ReplacementPolicy, parse, to_proto
from ..scoring import MaskScorer, ProgressFn, StopFn

DEFAULT_BATCH_SIZE = 32
ATTRIBUTION_GRANULARITIES = ("all_tokens", "token", "word", "sentence", "part_sentence")
# Upper bounds of counts: a request above them is refused up front instead of
# running for hours or allocating more memory than the machine has.
MAX_PERTURBATIONS = 65_536
MAX_STEPS = 10_000
MAX_BATCH_SIZE = 4_096
MAX_WINDOW = 10_000
INT64_MAX = 2**63 - 1

# ------------------------------------------------------------------ field declarations


def count(default: int, doc: str, *, maximum: int) -> Any:
    """An integer >= 1 and <= maximum."""
    return dataclasses.field(default=default, metadata={"kind": "count", "maximum": maximum, "doc": doc})


def seed(doc: str = "seed of every random draw: the same seed gives the same attribution") -> Any:
    """An integer in [0, 2^63)."""
    return dataclasses.field(default=0, metadata={"kind": "seed", "doc": doc})


def real(default: float, doc: str, *, low: float | None = None, high: float | None = None,
         open_low: bool = False, open_high: bool = False) -> Any:
    """A finite float in [low, high] (open ends excluded)."""
    return dataclasses.field(default=default, metadata={"kind": "real", "low": low, "high": high,
                                                        "open_low": open_low, "open_high": open_high, "doc": doc})


def choice(enum: type[Enum], default: Enum, doc: str) -> Any:
    """One value of an option enum (options.py)."""
    return dataclasses.field(default=default, metadata={"kind": "choice", "enum": enum, "doc": doc})


def flag(doc: str) -> Any:
    """True, False or None (unset)."""
    return dataclasses.field(default=None, metadata={"kind": "flag", "doc": doc})


def batch_size(doc: str = "rows per model-server request") -> Any:
    return count(DEFAULT_BATCH_SIZE, doc, maximum=MAX_BATCH_SIZE)


def replacement(doc: str = "what a removed element becomes") -> Any:
    return dataclasses.field(default=Replacement(), metadata={"kind": "replacement", "doc": doc})


def baseline(doc: str = "the baseline the input is compared with") -> Any:
    return dataclasses.field(default=Baseline(), metadata={"kind": "baseline", "doc": doc})


# ------------------------------------------------------------------ coercion


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating, str)):
        raise InvalidArgument(f"{name} must be an integer, got {v!r}", field=f"parameters.{name}")
    try:
        if isinstance(v, (float, np.floating)) and not float(v).is_integer():
            raise ValueError
        return int(v)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(f"{name} must be an integer, got {v!r}", field=f"parameters.{name}") from None


def _token_id(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InvalidArgument(f"token_id must be an integer, got {v!r}", field=field)
    tid = int(v)
    if tid < 0:
        raise InvalidArgument(f"token_id must be >= 0, got {tid}", field=field)
    return tid


def _pair(value: Any, cls: type, key: str, name: str) -> tuple[Any, Any]:
    if isinstance(value, cls):
        return getattr(value, key), value.token_id
    if isinstance(value, Mapping):
        unknown = set(value) - {key, "token_id"}
        if unknown:
            raise InvalidArgument(f"{name} takes {key!r} and 'token_id', not {sorted(unknown)}",
                                  field=f"parameters.{name}")
        return value.get(key), value.get("token_id")
    if isinstance(value, (str, Enum)):
        return value, None
    raise InvalidArgument(f"{name} must be a {cls.__name__} or a {{{key!r}, 'token_id'}} dict, got {value!r}",
                          field=f"parameters.{name}")


def as_replacement(value: Any, where: str) -> Replacement:
    """A Replacement from a Replacement, a {"policy", "token_id"} dict or a
    policy name / number (None: the model's default, see
    `resolve_replacement`); errors name `where`."""
    if value is None:
        return Replacement()
    name = where.rsplit(".", 1)[-1]
    try:
        raw, tid = _pair(value, Replacement, "policy", name)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, field=where) from None
    policy = parse(ReplacementPolicy, raw, field=f"{where}.policy")
    return Replacement(policy, _token_id(tid if tid is not None else 0, f"{where}.token_id"))


#: The model's default replacement, in order of preference: a mask token is
#: what masked-language models saw in training for a hidden word; a pad token
#: what causal LMs see for "nothing here"; unk the last resort.
DEFAULT_REPLACEMENT_ORDER = (ReplacementPolicy.MASK_TOKEN, ReplacementPolicy.PAD_TOKEN, ReplacementPolicy.UNK_TOKEN)


def resolve_replacement(value: Replacement, desc: ModelDescription, where: str) -> Replacement:
    """``value`` with its policy chosen for this model when unset
    (DEFAULT_REPLACEMENT_ORDER) and its token_id the id that replaces a
    token under a token policy, so the output says which token was used."""
    ids = {ReplacementPolicy.MASK_TOKEN: desc.mask_token_id, ReplacementPolicy.PAD_TOKEN: desc.pad_token_id,
           ReplacementPolicy.UNK_TOKEN: desc.unk_token_id}
    policy = value.policy
    if policy is None:
        policy = next((p for p in DEFAULT_REPLACEMENT_ORDER if ids[p] >= 0), None)
        if policy is None:
            raise InvalidArgument(
                "the model's tokenizer has no mask, pad or unk token to replace removed elements with: "
                "choose a replacement policy token_id (with the token id to use), zero_embedding or remove",
                field=f"{where}.policy")
    if policy in ids and ids[policy] >= 0:
        return Replacement(policy, int(ids[policy]))
    return Replacement(policy, value.token_id)


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    meta, name = f.metadata, f.name
    kind = meta["kind"]
    where = f"parameters.{name}"
    if value is None and kind not in ("flag",):
        return f.default
    if kind == "count":
        iv = _int(name, value)
        if iv < 1:
            raise InvalidArgument(f"{name} must be >= 1, got {iv}", field=where)
        if iv > meta["maximum"]:
            raise InvalidArgument(f"{name} must be <= {meta['maximum']}, got {iv}: ask for fewer", field=where)
        return iv
    if kind == "seed":
        iv = _int(name, value)
        if not 0 <= iv <= INT64_MAX:
            raise InvalidArgument(f"{name} must be in [0, 2^63), got {iv}", field=where)
        return iv
    if kind == "real":
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InvalidArgument(f"{name} must be a number, got {value!r}", field=where)
        fv = float(value)
        if not math.isfinite(fv):
            raise InvalidArgument(f"{name} must be finite, got {value!r}", field=where)
        low, high = meta["low"], meta["high"]
        if low is not None and high is not None and meta["open_low"] and meta["open_high"] \
                and not low < fv < high:
            raise InvalidArgument(f"{name} must be in ({low:g}, {high:g}), got {fv}", field=where)
        if low is not None and (fv < low or (meta["open_low"] and fv == low)):
            raise InvalidArgument(f"{name} must be {'>' if meta['open_low'] else '>='} {low:g}, got {fv}",
                                  field=where)
        if high is not None and (fv > high or (meta["open_high"] and fv == high)):
            raise InvalidArgument(f"{name} must be {'<' if meta['open_high'] else '<='} {high:g}, got {fv}",
                                  field=where)
        return fv
    if kind == "choice":
        member = parse(meta["enum"], value, field=where)
        return f.default if member is None else member
    if kind == "flag":
        if value is None or isinstance(value, (bool, np.bool_)):
            return None if value is None else bool(value)
        raise InvalidArgument(f"{name} must be true or false, got {value!r}", field=where)
    if kind == "replacement":
        return as_replacement(value, where)
    if kind == "baseline":
        raw, tid = _pair(value, Baseline, "kind", name)
        kind_ = parse(BaselineKind, raw, field=f"{where}.kind") or BaselineKind.ZERO
        tid = _token_id(tid if tid is not None else 0, f"{where}.token_id") if kind_ == BaselineKind.TOKEN_ID else 0
        return Baseline(kind_, tid)
    raise AssertionError(kind)  # pragma: no cover


def _float32(x: float) -> float:
    """A float32 from the wire, as its shortest decimal form (0.1, not 0.100000001)."""
    return float(str(np.float32(x)))


# ------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class Parameters:
    """Base of every method's parameter dataclass (see the module doc)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f, getattr(self, f.name)))

    # ------------------------------------------------------------ in-process

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, method: str = "") -> "Parameters":
        """From a dict of field names (absent or None: the default)."""
        values = dict(values or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            who = f"{method} " if method else ""
            raise InvalidArgument(
                f"unknown parameter(s) {', '.join(map(repr, unknown))}: {who}takes {', '.join(known) or 'none'}",
                field=f"parameters.{unknown[0]}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: enums as short names, replacement / baseline as dicts."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, (Replacement, Baseline)) else \
                v.value if isinstance(v, Enum) else v
        return out

    @classmethod
    def docs(cls) -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in dataclasses.fields(cls)}

    @classmethod
    def defaults(cls) -> "Parameters":
        return cls()

    # ------------------------------------------------------------ contract

    @classmethod
    def from_proto(cls, message: Any) -> "Parameters":
        """From the method's parameter message: unset fields take their default."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            kind = f.metadata["kind"]
            if kind in ("replacement", "baseline", "count", "seed", "real", "flag"):
                if not message.HasField(f.name):
                    continue
            raw = getattr(message, f.name)
            if kind == "real":
                values[f.name] = _float32(raw)
            elif kind == "choice":
                values[f.name] = int(raw) or None
            elif kind == "replacement":
                values[f.name] = {"policy": int(raw.policy) or None, "token_id": int(raw.token_id)}
            elif kind == "baseline":
                values[f.name] = {"kind": int(raw.kind) or None, "token_id": int(raw.token_id)}
            else:
                values[f.name] = raw
        return cls(**values)

    def to_proto(self) -> Any:
        """The method's parameter message with every field set."""
        message = getattr(attribution_pb2, type(self).__name__)()
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            kind = f.metadata["kind"]
            if kind == "choice":
                setattr(message, f.name, to_proto(f.metadata["enum"], v))
            elif kind == "replacement":
                getattr(message, f.name).CopyFrom(model_pb2.Replacement(
                    policy=to_proto(ReplacementPolicy, v.policy), token_id=v.token_id))
            elif kind == "baseline":
                getattr(message, f.name).CopyFrom(model_pb2.Baseline(kind=to_proto(BaselineKind, v.kind),
                                                                     token_id=v.token_id))
            elif kind == "flag":
                if v is not None:
                    setattr(message, f.name, v)
            else:
                setattr(message, f.name, v)
        return message

    # ------------------------------------------------------------ model checks

    def for_model(self, desc: ModelDescription) -> "Parameters":
        """These parameters with the model's defaults filled in (the
        replacement token), as the output reports them."""
        resolved = {f.name: resolve_replacement(getattr(self, f.name), desc, f"parameters.{f.name}")
                    for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Replacement)}
        return dataclasses.replace(self, **resolved) if resolved else self

    def check_model(self, desc: ModelDescription) -> None:
        """The checks that need the model: token ids in its vocabulary, the
        special tokens a policy / baseline kind needs."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Replacement):
                _check_token(v.policy, v.token_id, desc, f"parameters.{f.name}", "policy")
            elif isinstance(v, Baseline):
                _check_token(v.kind, v.token_id, desc, f"parameters.{f.name}", "kind")


def check_replacement(value: Replacement, desc: ModelDescription, where: str) -> None:
    _check_token(value.policy, value.token_id, desc, where, "policy")


def _check_token(kind: str, token_id: int, desc: ModelDescription, where: str, key: str) -> None:
    vocab = desc.vocab_size
    if vocab and token_id >= vocab:
        raise InvalidArgument(f"token_id {token_id} is out of the vocabulary: valid ids are 0..{vocab - 1}",
                              field=f"{where}.token_id")
    if kind == "mask_token" and desc.mask_token_id < 0:
        raise InvalidArgument(
            "the model's tokenizer has no mask token: use pad_token, unk_token, token_id or zero_embedding",
            field=f"{where}.{key}")
    if kind == "unk_token" and desc.unk_token_id < 0:
        raise InvalidArgument("the model's tokenizer has no unk token: use pad_token, token_id or zero_embedding",
                              field=f"{where}.{key}")


# ------------------------------------------------------------------ the job of one input


@dataclass
class Job:
    """What a method's algorithm works on: one explanation problem and the
    request-level options, with progress and cancellation."""

    backend: ModelBackend
    problem: Problem
    inference_mode: InferenceMode
    aggregation: Aggregation
    replacement: Replacement
    batch_size: int
    progress: ProgressFn | None = None
    should_stop: StopFn | None = None
    _scorer: MaskScorer | None = None

    @property
    def scorer(self) -> MaskScorer:
        """The keep-mask scorer of this problem (also gives the targets'
        unperturbed scores, for every method)."""
        if self._scorer is None:
            self._scorer = MaskScorer(self.backend, self.problem, self.replacement, self.inference_mode,
                                      batch_size=self.batch_size, progress=self.progress,
                                      should_stop=self.should_stop)
        return self._scorer

    def empty(self) -> np.ndarray:
        p = self.problem
        return np.full((p.n_rows, p.n_elements), np.nan)


# ------------------------------------------------------------------ the method


class AttributionMethod:
    """Base of every method (see the module doc). Subclasses set `name`,
    `family`, `doc`, `Parameters` and implement `attribute`."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    Parameters: ClassVar[type[Parameters]] = Parameters
    granularities: ClassVar[tuple[str, ...]] = ATTRIBUTION_GRANULARITIES

    @property
    def enum_name(self) -> str:
        return "ATTRIBUTION_METHOD_" + self.name.upper()

    @property
    def number(self) -> int:
        """The contract's AttributionMethod value, by name."""
        return attribution_pb2.AttributionMethod.Value(self.enum_name)

    @property
    def proto_number(self) -> int:  # the name of the former MethodInfo field
        return self.number

    @property
    def description(self) -> str:
        return self.doc

    @property
    def defaults(self) -> Parameters:
        return self.Parameters()

    def __repr__(self) -> str:
        return f"<attribution method {self.name}>"

    # ------------------------------------------------------------ parameters

    def parameters(self, values: Any = None) -> Parameters:
        """The typed parameters of a dict, a Parameters of this method or None."""
        if isinstance(values, self.Parameters):
            return values
        if isinstance(values, Parameters):
            raise InvalidArgument(f"{type(values).__name__} are not the parameters of {self.name}",
                                  field="parameters")
        if values is not None and not isinstance(values, Mapping):
            raise InvalidArgument(f"parameters must be a dict, got {type(values).__name__}", field="parameters")
        return self.Parameters.from_dict(values, self.name)

    def parameters_from_proto(self, message: Any) -> Parameters:
        """From a MethodParameters: its oneof must be this method (or unset)."""
        which = message.WhichOneof("method")
        if which is None:
            return self.Parameters()
        if which != self.name:
            raise InvalidArgument(f"parameters are for {which} but the method is {self.name}: set "
                                  f"parameters.{self.name} (or leave the parameters unset for the defaults)",
                                  field=f"parameters.{which}")
        return self.Parameters.from_proto(getattr(message, which))

    def parameters_to_proto(self, params: Parameters) -> Any:
        return attribution_pb2.MethodParameters(**{self.name: params.to_proto()})

    # ------------------------------------------------------------ algorithm

    def attribute(self, job: Job, params: Parameters) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


__all__ = [
    "ATTRIBUTION_GRANULARITIES",
    "as_replacement",
    "check_replacement",
    "resolve_replacement",
    "AttributionMethod",
    "DEFAULT_BATCH_SIZE",
    "Job",
    "Parameters",
    "baseline",
    "batch_size",
    "choice",
    "count",
    "flag",
    "real",
    "replacement",
    "seed",
]
