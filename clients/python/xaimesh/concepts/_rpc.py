"""Low-level helpers of the concept SDK (documented for other SDK modules).

* :func:`mesh_of` — the :class:`~xaimesh.mesh.Mesh` behind a mesh, a remote
  model, a ``ModelWithSplitPoints``, a concept explainer or an activation set.
* :func:`concept_client` — the concept-service's ``ServiceClient``
  (``.call(method, request)`` / ``.stream(method, request, show_progress=...)``).
* :func:`upload_activations` — a client-side array -> a stored ActivationSet.
* :func:`resolve_activations` — an ActivationSet handle, a ``{split_point:
  handle}`` dict, a name or an array -> a handle or a float32 numpy array.
* :func:`activation_source` — a context manager giving the ``ActivationSource``
  message for a handle or an array (small arrays travel in the request,
  large ones are uploaded as a temporary set, deleted on exit).
* :func:`iter_top_examples` — GetTopExamples of a fitted explainer on a set:
  yields ``concept_pb2.ConceptExamples`` messages, one per concept, e.g.::

      for ce in iter_top_examples(concepts, activations, k=20, k_context=5):
          ce.concept_index, ce.max_activation
          for ex in ce.examples:
              ex.provenance.text, ex.provenance.sample_index, ex.activation,
              [(t.text, t.highlighted) for t in ex.context]

  ``concept_explainer.concept_model_`` is the fitted model's resource name
  ("conceptModels/{id}") and ``concept_explainer.mesh`` the mesh, for any
  other call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from xaimesh.errors import from_rpc_error
from xaimesh_contracts.enums import to_number
from xaimesh_contracts.v1 import concept_pb2, model_pb2

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from xaimesh._client import ServiceClient
    from xaimesh.mesh import Mesh
    from xaimesh.split_model import ActivationSet

__all__ = ["INLINE_BYTES", "activation_source", "as_array", "concept_client", "iter_top_examples",
           "mesh_of", "resolve_activations", "upload_activations"]

#: Arrays up to this size travel inside a request; larger ones are uploaded.
INLINE_BYTES = 3 << 20
UPLOAD_CHUNK_BYTES = 1 << 20


def mesh_of(obj: Any) -> Mesh:
    """The Mesh behind ``obj`` (a Mesh, RemoteModel, ModelWithSplitPoints,
    concept explainer or ActivationSet)."""
    from xaimesh.mesh import Mesh

    if isinstance(obj, Mesh):
        return obj
    mesh = getattr(obj, "mesh", None)
    if mesh is not None:
        return mesh_of(mesh)
    if obj is None:
        from xaimesh.mesh import connect

        return connect()
    raise TypeError(f"expected a mesh (xaimesh.connect()), a remote model, a ModelWithSplitPoints or a concept "
                    f"explainer, not {type(obj).__name__}")


def concept_client(mesh_or_obj: Any) -> ServiceClient:
    return mesh_of(mesh_or_obj).client("concept")


def client_stream(client: ServiceClient, method: str, requests: Iterable, *, timeout: float | None = None):
    """A client-streaming call with the SDK's error mapping."""
    try:
        return getattr(client.stub, method)(iter(requests), timeout=timeout or client.timeout)
    except grpc.RpcError as error:
        raise from_rpc_error(error, client.service, client.address) from None


def _is_set(obj: Any) -> bool:
    from xaimesh.split_model import ActivationSet

    return isinstance(obj, ActivationSet)


def as_array(x: Any) -> np.ndarray:
    """A numpy / torch / nested-list array as numpy (float dtypes kept;
    bfloat16 widened to float32; others cast to float32)."""
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (2, 4, 8):
        arr = arr.astype(np.float32)
    return arr


def resolve_activations(activations: Any, split_point: Any = None, mesh: Mesh | None = None):
    """An ActivationSet handle or a numpy array from what a user passes:
    a handle, ``{split_point: handle or array}``, a name
    ("activationSets/{id}", needs ``mesh``), a numpy array or torch tensor."""
    if _is_set(activations):
        return activations
    if isinstance(activations, dict):
        if not activations:
            raise ValueError("the activations dict is empty")
        if split_point is None:
            if len(activations) == 1:
                return resolve_activations(next(iter(activations.values())), None, mesh)
            raise ValueError(f"the activations are at several split points {list(activations)}; "
                             "say which one (split_point=...)")
        for key in (split_point, str(split_point)):
            if key in activations:
                return resolve_activations(activations[key], None, mesh)
        if isinstance(split_point, str) and split_point.isdigit() and int(split_point) in activations:
            return resolve_activations(activations[int(split_point)], None, mesh)
        raise KeyError(f"no activations for split point {split_point!r}; the dict has {list(activations)}")
    if isinstance(activations, str):
        if mesh is None:
            raise ValueError("a set name needs a mesh to be resolved")
        from xaimesh.split_model import ActivationSet

        return ActivationSet.get(mesh, activations)
    arr = as_array(activations)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"activations must be 2-D [rows, hidden]; got shape {tuple(arr.shape)} "
                         "(flatten the token axis first, e.g. x.reshape(-1, x.shape[-1]))")
    return arr


def upload_activations(mesh_or_model: Any, array: Any, *, display_name: str = "", model: str | None = None,
                       split_point: str | int = "", granularity: Any = None, provenance: Iterable | None = None,
                       timeout: float | None = None, chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> ActivationSet:
    """Upload a client-side array [rows, hidden] (numpy, torch, nested lists)
    as an activation set; returns its handle.

    ``provenance``: optional, one entry per row: ``Provenance`` objects,
    dicts (sample_index, token_start, token_end, text) or tuples.
    ``model`` defaults to the model id when ``mesh_or_model`` is a model or
    a ModelWithSplitPoints. float16 / bfloat16 / float64 are accepted (stored
    as float32); NaN or infinity is refused.
    """
    from xaimesh.split_model import ActivationGranularity, ActivationSet
    from xaimesh_contracts.tensors import iter_chunks

    mesh = mesh_of(mesh_or_model)
    if _is_set(array):
        return array
    arr = resolve_activations(array)
    if arr.shape[0] == 0:
        raise ValueError("cannot upload an empty array (0 rows)")
    if model is None:
        inner = getattr(mesh_or_model, "model", mesh_or_model)
        model = getattr(inner, "model_id", "") or ""
    header = concept_pb2.UploadActivationSetHeader(
        display_name=display_name, model=model, split_point=str(split_point),
        granularity=ActivationGranularity.coerce(granularity).value if granularity is not None else 0)
    prov = None if provenance is None else [_prov(p) for p in provenance]
    if prov is not None and len(prov) != arr.shape[0]:
        raise ValueError(f"provenance has {len(prov)} entries for {arr.shape[0]} rows")

    def requests() -> Iterator[concept_pb2.UploadActivationSetRequest]:
        yield concept_pb2.UploadActivationSetRequest(header=header)
        for chunk in iter_chunks(arr, chunk_bytes):
            yield concept_pb2.UploadActivationSetRequest(chunk=chunk)
        if prov:
            for s in range(0, len(prov), 10000):
                yield concept_pb2.UploadActivationSetRequest(
                    provenance=concept_pb2.ProvenanceBatch(rows=prov[s:s + 10000]))

    client = concept_client(mesh)
    return ActivationSet(mesh, client_stream(client, "UploadActivationSet", requests(), timeout=timeout).set)


def _prov(p: Any) -> model_pb2.RowProvenance:
    if isinstance(p, model_pb2.RowProvenance):
        return p
    if hasattr(p, "sample_index"):
        return model_pb2.RowProvenance(sample_index=p.sample_index, token_start=p.token_start,
                                       token_end=p.token_end, text=p.text or "")
    if isinstance(p, dict):
        return model_pb2.RowProvenance(sample_index=int(p.get("sample_index", 0)),
                                       token_start=int(p.get("token_start", 0)),
                                       token_end=int(p.get("token_end", 0)), text=str(p.get("text", "")))
    s, a, b, t = p
    return model_pb2.RowProvenance(sample_index=int(s), token_start=int(a), token_end=int(b), text=str(t))


@contextlib.contextmanager
def activation_source(mesh: Mesh, activations: Any, split_point: Any = None, *,
                      timeout: float | None = None) -> Iterator[tuple[concept_pb2.ActivationSource, int]]:
    """``(ActivationSource, num_rows)`` for a handle / dict / name / array. An
    array larger than :data:`INLINE_BYTES` is uploaded as a temporary set,
    deleted on exit."""
    from xaimesh_contracts.tensors import to_tensor

    resolved = resolve_activations(activations, split_point, mesh)
    if _is_set(resolved):
        yield (concept_pb2.ActivationSource(activation_set=concept_pb2.ActivationSetRange(name=resolved.name)),
               len(resolved))
        return
    if resolved.nbytes <= INLINE_BYTES:
        yield concept_pb2.ActivationSource(tensor=to_tensor(resolved)), resolved.shape[0]
        return
    temp = upload_activations(mesh, resolved, display_name="temporary (xaimesh SDK)", model="", timeout=timeout)
    try:
        yield (concept_pb2.ActivationSource(activation_set=concept_pb2.ActivationSetRange(name=temp.name)),
               len(temp))
    finally:
        with contextlib.suppress(Exception):
            temp.delete()


@contextlib.contextmanager
def stored_set(mesh: Mesh, activations: Any, split_point: Any = None, *, timeout: float | None = None
               ) -> Iterator[ActivationSet]:
    """A stored set for a handle / dict / name / array (arrays are uploaded
    for the duration of the block)."""
    resolved = resolve_activations(activations, split_point, mesh)
    if _is_set(resolved):
        yield resolved
        return
    temp = upload_activations(mesh, resolved, display_name="temporary (xaimesh SDK)", model="", timeout=timeout)
    try:
        yield temp
    finally:
        with contextlib.suppress(Exception):
            temp.delete()


def iter_top_examples(concept_explainer: Any, activations: Any, concept_indices: Iterable[int] | str | None = None,
                      *, k: int = 5, sampling: str = "TOP", k_quantile: int = 0, k_context: int = 0,
                      seed: int = 0, keep_duplicates: bool = False, show_progress: bool = True,
                      timeout: float | None = None) -> Iterator[concept_pb2.ConceptExamples]:
    """Examples of each concept among the rows of ``activations`` (a stored
    set, normally the one returned by ``get_activations``: its provenance
    gives the texts). ``concept_indices``: indices, ``None`` or ``"all"``.
    ``sampling``: "TOP" (highest activations), "QUANTILE" or "RANDOM".
    ``concept_explainer`` may also be a "conceptModels/{id}" name (then
    ``activations`` must be a handle, which brings the mesh)."""
    if isinstance(concept_explainer, str):
        model_name = concept_explainer
        mesh = mesh_of(activations if _is_set(activations) else None)
        split_point = None
    else:
        model_name = concept_explainer.concept_model_
        if not model_name:
            raise ValueError("the concept explainer is not fitted; call fit() first")
        mesh = concept_explainer.mesh
        split_point = getattr(concept_explainer, "split_point", None)
    if concept_indices is None or (isinstance(concept_indices, str) and concept_indices == "all"):
        indices: list[int] = []
    elif isinstance(concept_indices, int):
        indices = [int(concept_indices)]
    else:
        indices = [int(i) for i in concept_indices]
    sampling_number = to_number(concept_pb2.ExampleSampling, sampling, field="sampling", allow_unspecified=False)
    client = concept_client(mesh)
    with stored_set(mesh, activations, split_point, timeout=timeout) as s:
        request = concept_pb2.GetTopExamplesRequest(
            concept_model=model_name, activation_set=s.name, concept_indices=indices, k=int(k),
            sampling=sampling_number, k_quantile=int(k_quantile), k_context=int(k_context), seed=int(seed),
            keep_duplicates=bool(keep_duplicates))
        for event in client.stream("GetTopExamples", request, timeout=timeout, show_progress=show_progress,
                                   description="top examples"):
            if event.WhichOneof("event") == "concept":
                yield event.concept
