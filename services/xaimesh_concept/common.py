"""Small value types shared by the modules of the concept service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from xaimesh_contracts.enums import EnumValueError, short_names, to_name, to_number
from xaimesh_runtime.errors import InvalidArgument


@dataclass(frozen=True)
class Provenance:
    """Where one activation row comes from (model.proto's RowProvenance).

    ``token_end`` is exclusive.
    """

    sample_index: int
    token_start: int = 0
    token_end: int = 0
    text: str = ""


@dataclass
class Progress:
    """Progress of long work (tensor.proto's Progress)."""

    stage: str
    done: int
    total: int
    message: str = ""


@dataclass
class LogEntry:
    """A training log entry (concept.proto's TrainingLogEntry).

    ``done`` / ``total`` say how far the fit is, in the method's own units
    (epochs for autoencoders, iterations for factorisations), so an adapter
    can turn one entry into both a Progress and a TrainingLogEntry event.
    """

    step: int
    epoch: int
    loss: float
    values: dict = field(default_factory=dict)
    done: int = 0
    total: int = 0
    stage: str = "fitting"
    #: True for entries that only report progress (e.g. PCA's covariance
    #: pass, loss = NaN): send a Progress event, no TrainingLogEntry.
    progress_only: bool = False
    #: TrainingLogKind short name ("EPOCH", "STEP", "FINAL"; "" = not said).
    kind: str = ""
    #: Learning rate of the entry's last step (0 = not a gradient method).
    learning_rate: float = 0.0
    #: The progress message ("" = the loss).
    message: str = ""

    def to_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "loss": self.loss,
                "values": dict(self.values), "done": self.done, "total": self.total,
                "stage": self.stage, "kind": self.kind, "learning_rate": self.learning_rate}


ProgressFn = Optional[Callable[[Progress], None]]
LogFn = Optional[Callable[[LogEntry], None]]
StopFn = Optional[Callable[[], bool]]


def numpy_rng(seed: int) -> np.random.Generator:
    """numpy's generator for any int64 seed of a request: numpy refuses
    negative seeds, so a seed is taken modulo 2^64 (the same generator as
    ``default_rng(seed)`` for every seed >= 0)."""
    return np.random.default_rng(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)


# ---------------------------------------------------------------------------
# proto enums: the service's logic keeps a value as its upper-case short name
# ("TOKEN", "SEMI_NMF"; "UNSPECIFIED" for 0), the form stored in meta.json.
# Parsing and naming are xaimesh_contracts.enums'; these only fix that form.
# ---------------------------------------------------------------------------
def enum_key(proto_enum: Any, value: Any, field: str, *, what: str | None = None) -> str:
    """``value`` (a number, a short or full name in any case, ``None`` / ""
    for UNSPECIFIED) as its upper-case short name. Raises ``InvalidArgument``
    naming ``field`` for a value that is not one of the enum's."""
    try:
        number = to_number(proto_enum, None if value is None or value == "" else value, field=field)
    except EnumValueError:
        choices = [name.upper() for name in short_names(proto_enum)]
        raise InvalidArgument(f"unknown {what or field} {value!r}; choose among {choices}",
                              field=field) from None
    return to_name(proto_enum, number).upper() or "UNSPECIFIED"


def enum_number(proto_enum: Any, key: str | None) -> int:
    """The proto number of a stored key ("TOKEN" -> 2, "UNSPECIFIED" / "" -> 0)."""
    return to_number(proto_enum, key or None)


# ---------------------------------------------------------------------------
# what the model-server's StreamActivations sends, as plain values
# (downstream.py converts the messages; workspace.create_activation_sets
# stores them)
# ---------------------------------------------------------------------------
@dataclass
class ActivationsHeader:
    split_points: list[str]
    model: str = ""
    granularity: int = 0  # proto numbers, 0 = not said
    aggregation: int = 0
    hidden_size: int = 0
    num_samples: int = 0


@dataclass
class ActivationRows:
    """Rows of one split point, in row order."""

    split_point: str
    rows: Any  # float32 [n, hidden]
    provenance: list[Provenance] | None = None


@dataclass
class ItemFailure:
    """One input text failed: ``status`` is the model-server's google.rpc.Status, passed on as is."""

    index: int
    status: Any


@dataclass
class ActivationsSummary:
    num_rows: int = 0
    num_samples: int = 0


ActivationEvent = ActivationsHeader | ActivationRows | Progress | ItemFailure | ActivationsSummary
