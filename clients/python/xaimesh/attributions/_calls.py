"""What explainers and metrics share: the remote model, parameter checks,
and the streaming call that collects one result (or item error) per item."""

from __future__ import annotations

import math
from typing import Any

import grpc
import numpy as np

from xaimesh import errors as sdk_errors
from xaimesh.errors import FieldViolation, XaimeshError

from .options import BaselineKind, ReplacementPolicy, invalid, parse_enum

ERROR_MODES = ("raise", "none")


def remote_model(model: Any, who: str, tokenizer: Any = None) -> Any:
    """The RemoteModel handle of `model`: a handle of `mesh.model()`, a model
    name or path, or a Hugging Face model object (xaimesh.models)."""
    from xaimesh.models import resolve_model

    return resolve_model(model, tokenizer, who=who)


def is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int | None) -> int:
    if not is_int(value):
        raise invalid(f"{name} must be an integer, got {value!r}", name)
    if minimum is not None and value < minimum:
        raise invalid(f"{name} must be >= {minimum}, got {value}", name)
    return int(value)


def check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                open_low: bool = False, open_high: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise invalid(f"{name} must be a number, got {value!r}", name)
    v = float(value)
    if not math.isfinite(v):
        raise invalid(f"{name} must be finite, got {value!r}", name)
    if low is not None and (v < low or (open_low and v == low)):
        raise invalid(f"{name} must be {'>' if open_low else '>='} {low}, got {v}", name)
    if high is not None and (v > high or (open_high and v == high)):
        raise invalid(f"{name} must be {'<' if open_high else '<='} {high}, got {v}", name)
    return v


def token_choice(name: str, value: Any, enum: type, key: str) -> dict[str, Any]:
    """A replacement / baseline: a policy name or enum, a token id (int), a
    (policy, token_id) pair or a dict -> {key: proto-ready name, "token_id": n}."""
    token_id = 0
    if is_int(value):
        kind, token_id = enum.TOKEN_ID, int(value)
    elif isinstance(value, dict):
        kind, token_id = value.get(key, value.get("kind", value.get("policy"))), value.get("token_id", 0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        kind, token_id = value
    else:
        kind = value
    member = parse_enum(enum, kind, name)
    if member is None:
        raise invalid(f"{name}: give a policy such as {list(enum)[0].value!r} or a token id", name)
    token_id = check_int(f"{name}.token_id", token_id if token_id is not None else 0, 0)
    if member == enum.TOKEN_ID and isinstance(value, (str, enum)):
        raise invalid(f"{name}: the token_id policy needs a token id: pass the id itself ({name}=42)", name)
    return {key: member, "token_id": token_id}


def replacement(value: Any, name: str = "replacement") -> dict[str, Any]:
    return token_choice(name, value, ReplacementPolicy, "policy")


def baseline(value: Any, name: str = "baseline") -> dict[str, Any]:
    return token_choice(name, value, BaselineKind, "kind")


def _status_error(status: Any, prefix: str) -> XaimeshError:
    """The XaimeshError of an item's google.rpc.Status."""
    return sdk_errors.from_status(status, "attribution-service", prefix)


def collect(client: Any, method: str, request: Any, n_items: int, *, what: str, description: str,
            show_progress: bool, timeout: float | None, errors: str, convert: Any = None) -> list[Any]:
    """Streams a call; returns the `result` events' payloads (through
    `convert(index, result)` when given) in item order.
    Item errors raise (errors="raise": the first one's class and code, all of
    them in `.errors`) or leave None in their place (errors="none")."""
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
    results: list[Any] = [None] * n_items
    failed: dict[int, XaimeshError] = {}
    for event in client.stream(method, request, show_progress=show_progress, description=description,
                               timeout=timeout):
        kind = event.WhichOneof("event")
        if kind == "result":
            results[int(event.result.input_index)] = event.result
        elif kind == "item_error":
            index = int(event.item_error.index)
            failed[index] = _status_error(event.item_error.status, f"{what} {index}")
    missing = [i for i in range(n_items) if results[i] is None and i not in failed]
    if missing:
        raise XaimeshError(grpc.StatusCode.INTERNAL, "attribution-service",
                           f"the stream ended without a result for {what}(s) {missing}")
    if convert is not None:
        results = [None if r is None else convert(i, r) for i, r in enumerate(results)]
    if failed and errors == "raise":
        first = failed[min(failed)]
        message = "; ".join(str(e.message) for _, e in sorted(failed.items()))
        error = type(first)(first.code, first.service, message, [v for e in failed.values()
                                                                 for v in e.field_violations])
        error.errors = failed  # type: ignore[attr-defined]
        error.results = results  # type: ignore[attr-defined]
        raise error
    return results
