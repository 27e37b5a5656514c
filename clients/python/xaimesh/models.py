"""Models as users hold them: a mesh handle, a model name or path, or a
Hugging Face model object with its tokenizer.

Every explainer, metric and splitter of the SDK passes what it was given
through :func:`resolve_model`, which returns the model-server's handle
(:class:`~xaimesh.mesh.RemoteModel`) for it:

- a handle (``mesh.model()``) is used as is;
- a name or path (``"gpt2"``, ``"./my-classifier"``) is matched to a served
  model by its id or its source (the hub id or the resolved folder);
- a model object (``AutoModelForCausalLM.from_pretrained(...)``) is matched
  by its name or path, then by its configuration (class, vocabulary, number
  of parameters); a candidate is accepted only if its weights are the
  object's: the model-server scores a fixed probe sequence and the scores
  must equal the object's own forward pass (:func:`weights_agree`).

Which mesh: the one given (``mesh=``), else the last ``xaimesh.connect()``
still open, else a new ``connect()`` (addresses from ``XAIMESH_*``
variables, or a local stack started on the model itself).

A model no served one matches is refused with the list of served models on a
mesh of running services (this SDK cannot load models into them); on a
local stack (one this process started) it is served: from its folder when
it has one whose weights are the object's, else saved once (``save_pretrained``
of the object and its tokenizer) into the cache under its weights
fingerprint and served from there. The stack restarts its services to add
it (a few seconds; activation sets and concept models are kept on disk).

The object is only read: ``.cuda()`` / ``.to(device)`` on the user's side
changes nothing here — placement is the model-server's (``--device``,
``device_map=``), and the probe runs where the object is.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from xaimesh.mesh import Mesh, RemoteModel

__all__ = ["resolve_model", "is_remote_model", "is_hf_model", "weights_fingerprint", "weights_agree"]

#: Tokens of the weights probe (scored by the server and by the object).
PROBE_LENGTH = 12


def is_remote_model(model: Any) -> bool:
    return hasattr(model, "mesh") and hasattr(model, "model_id") and hasattr(model, "info")


def is_hf_model(model: Any) -> bool:
    """A transformers model object (anything with a config and a forward pass
    that returns logits; torch itself is only imported when one is given)."""
    return hasattr(model, "config") and callable(model) and hasattr(model, "parameters")


def resolve_model(model: Any, tokenizer: Any = None, *, mesh: Mesh | None = None, who: str = "this call",
                  ) -> RemoteModel:
    """The model-server's handle for ``model`` (see the module docstring)."""
    if is_remote_model(model):
        return model
    if isinstance(model, (str, os.PathLike)):
        return _by_name(os.fspath(model), mesh)
    if is_hf_model(model):
        return _by_object(model, tokenizer, mesh)
    raise TypeError(f"{who} takes a model: a handle of mesh.model(), a model name or path, or a Hugging Face "
                    f"model object (with its tokenizer); got {type(model).__name__}")


# ---------------------------------------------------------------------------
# which mesh
# ---------------------------------------------------------------------------
def _env_addresses() -> bool:
    from xaimesh.mesh import SERVICES

    return any(os.environ.get(env) for env, _ in SERVICES.values())


def _mesh_or_start(mesh: Mesh | None, spec: Any) -> tuple[Mesh, bool]:
    """(mesh, started): the mesh to use; a new local stack is started on
    ``spec()`` (a model spec) when there is no mesh and no address to reach one."""
    from xaimesh.mesh import connect, current_mesh

    mesh = mesh or current_mesh()
    if mesh is not None:
        return mesh, False
    if _env_addresses():
        return connect(), False
    return connect(models=[spec()]), True


# ---------------------------------------------------------------------------
# by name or path
# ---------------------------------------------------------------------------
def _same_source(name: str, remote: RemoteModel) -> bool:
    info = remote.info
    if name in (info.model_id, info.source, info.name):
        return True
    local = Path(name).expanduser()
    return local.exists() and str(local.resolve()) == info.source


def _by_name(name: str, mesh: Mesh | None) -> RemoteModel:
    mesh, started = _mesh_or_start(mesh, lambda: name)
    if started:
        return mesh.model()
    for remote in mesh.models():
        if _same_source(name, remote):
            return remote
    if mesh.stack is not None:
        return mesh.serve_model(name)
    raise _not_served(mesh, f"model {name!r}")


def _not_served(mesh: Mesh, what: str, detail: str = ""):
    import grpc

    from xaimesh.errors import NotFoundError

    served = ", ".join(f"{m.model_id} ({m.info.architecture}, {m.info.source})" for m in mesh.models()) or "none"
    return NotFoundError(grpc.StatusCode.NOT_FOUND, "model-server", f"{what} is not served by the model-server at "
                         f"{mesh.addresses.get('model')}{detail}; it serves: {served}. Pass one of these (by id, "
                         "or mesh.model(id)), or start the model-server with --model for it")


# ---------------------------------------------------------------------------
# by model object
# ---------------------------------------------------------------------------
def _name_of(obj: Any) -> str:
    return str(getattr(obj, "name_or_path", "") or getattr(obj.config, "_name_or_path", "") or "")


def _num_parameters(obj: Any) -> int:
    return int(sum(p.numel() for p in obj.parameters()))


def _config_agrees(obj: Any, remote: RemoteModel) -> bool:
    info = remote.info
    return (type(obj).__name__ == info.architecture and _num_parameters(obj) == info.num_parameters)


def _by_object(obj: Any, tokenizer: Any, mesh: Mesh | None) -> RemoteModel:
    name = _name_of(obj)
    folder = Path(name).expanduser() if name else None
    has_folder = folder is not None and (folder / "config.json").is_file()
    mesh, started = _mesh_or_start(mesh, lambda: str(folder) if has_folder else str(save_object(obj, tokenizer)))
    if started:
        remote = mesh.model()
        if weights_agree(obj, remote):
            return remote
    served = mesh.models()
    by_name = [m for m in served if name and _same_source(name, m)]
    by_config = [m for m in served if m not in by_name and _config_agrees(obj, m)]
    for remote in by_name + by_config:
        if _config_agrees(obj, remote) and weights_agree(obj, remote):
            return remote
    if mesh.stack is None:
        detail = (f" (served models of the same name or configuration differ in weights: "
                  f"{', '.join(m.model_id for m in by_name + by_config)})" if by_name + by_config else "")
        raise _not_served(mesh, f"the {type(obj).__name__} object {name or '(no name)'!r}", detail)
    if has_folder and not started and not by_name:
        remote = mesh.serve_model(str(folder))
        if weights_agree(obj, remote):
            return remote
    path = save_object(obj, tokenizer)
    remote = mesh.serve_model(str(path), model_id=path.name)
    if not weights_agree(obj, remote):
        raise RuntimeError(f"the model served from {path} does not reproduce the {type(obj).__name__} object's "
                           "scores on the probe sequence")
    return remote


def weights_fingerprint(obj: Any) -> str:
    """sha256 of the object's configuration and every tensor of its state
    dict (names, dtypes, shapes and bytes): the key of its saved copy."""
    import torch

    digest = hashlib.sha256(obj.config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for key, tensor in sorted(obj.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def saved_models_dir() -> Path:
    import platformdirs

    return Path(os.environ.get("XAIMESH_HOME") or platformdirs.user_cache_dir("xaimesh")) / "user-models"


def save_object(obj: Any, tokenizer: Any) -> Path:
    """The checkpoint folder of a model object, written once under its weights
    fingerprint (``<cache>/user-models/<name>-<fingerprint[:12]>``)."""
    if tokenizer is None or not hasattr(tokenizer, "save_pretrained"):
        raise TypeError(f"the {type(obj).__name__} object is not served and has no folder of its own: pass its "
                        "Hugging Face tokenizer too (it is saved with the model so the model-server can serve both)")
    base = Path(_name_of(obj) or type(obj).__name__).name.lower() or "model"
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in base).strip("-.") or "model"
    target = saved_models_dir() / f"{safe}-{weights_fingerprint(obj)[:12]}"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    obj.save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / ".complete").touch()
    return target


def _probe_ids(vocab_size: int) -> list[int]:
    # Spread over the vocabulary, no repeats for any vocabulary over 12 tokens.
    step = max(1, vocab_size // (PROBE_LENGTH + 1))
    return [(7 + i * step) % vocab_size for i in range(PROBE_LENGTH)]


def weights_agree(obj: Any, remote: RemoteModel) -> bool:
    """Whether the served model computes what the object computes: the
    logits the model-server scores on a fixed probe sequence (every next
    token of a causal LM; every class of a classifier) equal the object's
    own forward pass, to 1e-3 of their scale in float32 (5e-2 when either
    side runs in a half-precision dtype)."""
    import numpy as np
    import torch

    from xaimesh_contracts.tensors import to_numpy
    from xaimesh_contracts.v1 import model_pb2

    vocab = min(int(getattr(obj.config, "vocab_size", 0) or remote.info.vocab_size), remote.info.vocab_size)
    if vocab < 2:
        return False
    ids = _probe_ids(vocab)
    request = model_pb2.ScoreRequest(model=remote.model_id, input_ids=ids)
    if not remote.is_classifier:
        request.target_positions.extend(range(1, len(ids)))
    served = to_numpy(remote.mesh.client("model").call("Score", request).scores, field="scores")[0]
    device = next(obj.parameters()).device
    was_training = obj.training
    obj.eval()
    try:
        with torch.no_grad():
            logits = obj(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu().numpy()
    finally:
        obj.train(was_training)
    local = logits if remote.is_classifier else logits[np.arange(len(ids) - 1), ids[1:]]
    if local.shape != served.shape:
        return False
    half = remote.info.dtype != "float32" or next(obj.parameters()).dtype != torch.float32
    scale = max(1.0, float(np.abs(local).max()))
    return bool(np.allclose(served, local, rtol=0.0, atol=(5e-2 if half else 1e-3) * scale))
