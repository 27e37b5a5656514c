"""Small value types shared by the modules of the concept service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional


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

    def to_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "loss": self.loss,
                "values": dict(self.values), "done": self.done, "total": self.total,
                "stage": self.stage}


ProgressFn = Optional[Callable[[Progress], None]]
LogFn = Optional[Callable[[LogEntry], None]]
StopFn = Optional[Callable[[], bool]]
