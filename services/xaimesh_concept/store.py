"""Persistent storage of activation sets and concept models.

Layout under the data directory::

    <data_dir>/
      activation_sets/<id>/
        meta.json              ActivationSetInfo + chunk tables
        rows-00000000.npy      [rows_i, hidden] in the storage dtype, one file per chunk (.npy):
                               <f4 (float32), <f2 (float16) or <u2 (bfloat16: the upper
                               16 bits of the float32, rounded to nearest even)
        prov-00000000.npy      structured [rows_j]: sample_index i8, token_start i4,
                               token_end i4, text_offset i8, text_length i4
        prov-00000000.txt      the rows' texts, UTF-8, concatenated (byte offsets above)
      concept_models/<id>/
        meta.json              ConceptModelInfo (for fast listing)
        model.safetensors      tensors + metadata {"xaimesh.concept_model": info JSON,
                                                   "xaimesh.state": method config JSON}
      tmp/                     writes in progress; emptied at start-up

Writes are atomic: an object is built in ``tmp/<random>/`` (inside the data
dir, so on the same filesystem), every file is fsynced, then the directory
is fsynced and ``os.rename``d into place, and the parent directory fsynced.
Readers only ever see complete objects. Deleting renames the object into
``tmp/`` first (atomic), then removes it. Leftovers of interrupted writes
are removed when a Store opens the directory, so a data directory must be
served by one process at a time.

Rows are appended chunk by chunk (buffered up to ``chunk_bytes``, 64 MiB by
default) so a set larger than RAM can be written while pulling or uploading,
and read back by row range with positioned reads (``readinto`` at the row's
byte offset) into a buffer of the rows asked for. Reads do not memory-map
the files: the pages of a mapped file that was read count in the process's
resident memory until the kernel evicts them, so scanning a 2.3 GB set
through memmaps would show a 2.3 GB RSS; read into buffers, the file's pages
stay in the kernel's page cache, outside the process.

Rows are stored in the set's *storage dtype* (``storage_dtype``: float32 by
default; float16 or bfloat16 halve the disk and the I/O). Whatever dtype
arrives (float16 / bfloat16 / float32 / float64) is converted to float32
first, then rounded to the storage dtype (round to nearest even); readers
always get float32. float32 storage is bitwise what was sent as float32;
float16 keeps 11 significant bits (relative error <= 2^-11, values beyond
65504 refused), bfloat16 8 bits (relative error <= 2^-8, float32's range).

Ids are 12 lowercase hex characters when generated; any id given by a
caller must match ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}`` (so "../x", "a/b",
absolute paths, "." are rejected with InvalidArgument).
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import re
import shutil
import struct
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import numpy as np

from xaimesh_contracts.enums import EnumValueError, to_name, to_number
from xaimesh_contracts.v1 import tensor_pb2
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument, NotFound

from .common import Provenance, enum_key

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SETS_COLLECTION = "activationSets"
MODELS_COLLECTION = "conceptModels"
FORMAT_VERSION = 1
DEFAULT_CHUNK_BYTES = 64 << 20
PROV_CHUNK_ROWS = 1 << 16
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
SAFETENSORS_INFO_KEY = "xaimesh.concept_model"
SAFETENSORS_STATE_KEY = "xaimesh.state"
_PROV_DTYPE = np.dtype([("sample_index", "<i8"), ("token_start", "<i4"), ("token_end", "<i4"),
                        ("text_offset", "<i8"), ("text_length", "<i4")])


# ---------------------------------------------------------------------------
# ids, names
# ---------------------------------------------------------------------------
def new_id() -> str:
    return uuid.uuid4().hex[:12]


def validate_id(id_: str, what: str = "id") -> str:
    if not isinstance(id_, str) or not ID_PATTERN.fullmatch(id_):  # match() lets "id\n" through
        raise InvalidArgument(
            f"invalid {what} {id_!r}: ids are 1-64 characters among letters, digits, '-' and '_', "
            "starting with a letter or digit", field=what)
    return id_


def parse_name(name: str, collection: str, field_name: str = "name") -> str:
    """"activationSets/{id}" or the bare id -> id (validated)."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{field_name} is empty; give '{collection}/<id>' or the bare id",
                              field=field_name)
    if "/" in name:
        prefix, _, rest = name.partition("/")
        if prefix != collection:
            raise InvalidArgument(
                f"{field_name} {name!r} is not a {collection} name; expected '{collection}/<id>'",
                field=field_name)
        name = rest
    return validate_id(name, field_name)


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------
# DataType numbers -> the stored dtype names (the activation dtypes we take).
_DTYPES = {tensor_pb2.DATA_TYPE_FLOAT32: "float32", tensor_pb2.DATA_TYPE_FLOAT16: "float16",
           tensor_pb2.DATA_TYPE_BFLOAT16: "bfloat16", tensor_pb2.DATA_TYPE_FLOAT64: "float64"}


def normalize_dtype(dtype) -> str:
    """A numpy dtype, a DataType number or name ("float16", "DATA_TYPE_FLOAT16";
    empty / UNSPECIFIED = float32) -> "float32" | "float16" | "bfloat16" | "float64"."""
    if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
        dtype = np.dtype(dtype).name
    try:
        number = to_number(tensor_pb2.DataType, dtype or None)
    except EnumValueError:
        number = -1
    if number == 0:
        number = tensor_pb2.DATA_TYPE_FLOAT32
    if number not in _DTYPES:
        shown = to_name(tensor_pb2.DataType, number) if number > 0 else dtype  # 5 -> "int64"
        raise InvalidArgument(
            f"activations of dtype {shown!r} are not supported; send float32, float16, bfloat16 or "
            "float64", field="dtype")
    return _DTYPES[number]


def itemsize_of(dtype: str) -> int:
    return {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[dtype]


#: Storage dtypes of activation rows and their on-disk numpy dtypes.
STORAGE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2")}
FLOAT16_MAX = 65504.0


def normalize_storage_dtype(dtype) -> str:
    """"float32" | "float16" | "bfloat16" (empty = float32), as normalize_dtype."""
    name = normalize_dtype(dtype)
    if name not in STORAGE_DTYPES:
        raise InvalidArgument(f"activation sets are stored as float32, float16 or bfloat16, not {name}",
                              field="storage_dtype")
    return name


def float32_to_storage(rows: np.ndarray, dtype: str) -> np.ndarray:
    """float32 rows -> their on-disk representation (round to nearest even)."""
    if dtype == "float32":
        return rows
    if dtype == "float16":
        with np.errstate(over="ignore"):  # out-of-range values become inf, which the writer refuses
            return rows.astype("<f2")
    u32 = rows.view(np.uint32)
    # round to nearest even on the 16 dropped bits (finite values only: the writer refuses NaN / Inf)
    rounded = u32 + (np.uint32(0x7FFF) + ((u32 >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype("<u2")


def storage_to_float32(raw: np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    """On-disk rows -> float32 (into ``out`` when given)."""
    if out is None:
        out = np.empty(raw.shape, np.float32)
    if dtype == "bfloat16":
        out.view(np.uint32)[...] = raw.astype(np.uint32) << np.uint32(16)
    else:
        out[...] = raw
    return out


def bytes_to_float32(data: bytes, dtype: str) -> np.ndarray:
    """Little-endian raw bytes of ``dtype`` -> flat float32 array."""
    if dtype == "bfloat16":
        u16 = np.frombuffer(data, dtype="<u2")
        return (u16.astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.float32)


# ---------------------------------------------------------------------------
# fs helpers
# ---------------------------------------------------------------------------
def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _dir_size(path: str) -> int:
    total = 0
    for entry in os.scandir(path):
        if entry.is_file():
            total += entry.stat().st_size
    return total


# ---------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------
@dataclass
class ActivationSetInfo:
    """What the proto's ActivationSet carries (enums as their suffix strings)."""

    id: str
    display_name: str = ""
    num_rows: int = 0
    hidden_size: int = 0
    dtype: str = "float32"
    model: str = ""
    split_point: str = ""
    granularity: str = "UNSPECIFIED"
    aggregation: str = "UNSPECIFIED"
    num_samples: int = 0
    create_time: int = 0
    create_time_ns: int = 0
    has_provenance: bool = False
    size_bytes: int = 0
    metadata: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{SETS_COLLECTION}/{self.id}"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.hidden_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ActivationSetInfo":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class ConceptModelInfo:
    """What the proto's ConceptModel carries (method and granularity as enum
    suffix strings, options as a dict; ``options_json`` gives the string)."""

    id: str
    display_name: str = ""
    method: str = ""
    nb_concepts: int = 0
    hidden_size: int = 0
    activation_set: str = ""
    model: str = ""
    split_point: str = ""
    options: dict = field(default_factory=dict)
    final_loss: float | None = None
    device: str = "cpu"
    create_time: int = 0
    create_time_ns: int = 0
    fit_seconds: float = 0.0
    granularity: str = "UNSPECIFIED"
    training_log: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{MODELS_COLLECTION}/{self.id}"

    @property
    def options_json(self) -> str:
        return json.dumps(self.options, sort_keys=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConceptModelInfo":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _now() -> tuple[int, int]:
    ns = time.time_ns()
    return ns // 1_000_000_000, ns


# ---------------------------------------------------------------------------
# activation set writer / reader
# ---------------------------------------------------------------------------
class ActivationSetWriter:
    """Builds one activation set in a temp directory; ``commit()`` makes it
    visible atomically, ``abort()`` (or an exception inside ``with``) drops it.

    Rows: ``append_rows(array)`` or, for uploads, ``append_tensor_chunk(...)``
    with the raw bytes of a TensorChunk (rows may straddle chunks).
    Provenance (optional, in row order): ``append_provenance(rows)``; when any
    is given, commit checks there is exactly one per row.
    """

    def __init__(self, store: "Store", *, hidden_size: int | None = None, display_name: str = "",
                 model: str = "", split_point: str = "", granularity="UNSPECIFIED",
                 aggregation="UNSPECIFIED", num_samples: int | None = None,
                 chunk_bytes: int | None = None, expected_rows: int | None = None,
                 metadata: dict | None = None, storage_dtype="float32"):
        self.store = store
        self.id = new_id()
        self.info = ActivationSetInfo(
            id=self.id, display_name=str(display_name or ""), model=str(model or ""),
            split_point=str(split_point or ""),
            granularity=enum_key(tensor_pb2.Granularity, granularity, "granularity"),
            aggregation=enum_key(tensor_pb2.Aggregation, aggregation, "aggregation"),
            metadata=dict(metadata or {}), dtype=normalize_storage_dtype(storage_dtype))
        self.hidden_size = int(hidden_size) if hidden_size else None
        self.expected_rows = expected_rows
        self.num_samples = num_samples
        self.chunk_bytes = int(chunk_bytes or DEFAULT_CHUNK_BYTES)
        self.n_rows = 0
        self._buf: list[np.ndarray] = []
        self._buf_rows = 0
        self._chunks: list[list[int]] = []
        self.n_prov = 0
        self._prov_buf: list[tuple[int, int, int, str]] = []
        self._prov_chunks: list[list[int]] = []
        self._samples: set[int] = set()
        # upload state
        self._bytes_seen = 0
        self._byte_rest = b""
        self._upload_dtype: str | None = None
        self._upload_total: int | None = None
        self._done = False
        self.tmp = store._new_tmp_dir("set")  # last: nothing to clean if validation failed

    @property
    def done(self) -> bool:
        """Committed or aborted."""
        return self._done

    # -- context manager ------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.abort()
        return False

    # -- rows -----------------------------------------------------------------
    def append_rows(self, rows) -> None:
        self._check_open()
        if hasattr(rows, "detach"):
            rows = rows.detach().cpu().float().numpy()
        rows = np.asarray(rows)
        if rows.ndim == 1 and self.hidden_size and rows.size % self.hidden_size == 0:
            rows = rows.reshape(-1, self.hidden_size)
        if rows.ndim != 2:
            raise InvalidArgument(f"activation rows must be 2-D [rows, hidden]; got shape {rows.shape}",
                                  field="rows")
        if rows.dtype.kind not in "f":
            raise InvalidArgument(f"activation rows must be floating point; got {rows.dtype}",
                                  field="rows")
        if self.hidden_size is None:
            if rows.shape[1] < 1:
                raise InvalidArgument("activation rows have hidden size 0", field="rows")
            self.hidden_size = int(rows.shape[1])
        elif rows.shape[1] != self.hidden_size:
            raise InvalidArgument(
                f"rows have hidden size {rows.shape[1]} but this set has hidden size {self.hidden_size}",
                field="rows")
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.size and not np.isfinite(rows).all():
            bad = np.argwhere(~np.isfinite(rows))[0]
            raise InvalidArgument(
                f"activations contain NaN or Inf (first at row {self.n_rows + int(bad[0])}, column "
                f"{int(bad[1])}); clean the values (e.g. torch.nan_to_num) before storing them",
                field="rows")
        if rows.shape[0] == 0:
            return
        stored = self._to_storage(rows)
        self._buf.append(stored)
        self._buf_rows += rows.shape[0]
        self.n_rows += rows.shape[0]
        if self._buf_rows * self.hidden_size * stored.itemsize >= self.chunk_bytes:
            self._flush_rows()

    def _to_storage(self, rows: np.ndarray) -> np.ndarray:
        dtype = self.info.dtype
        stored = float32_to_storage(rows, dtype)
        if dtype == "float16":
            overflow = ~np.isfinite(stored)
        elif dtype == "bfloat16":
            overflow = (stored & np.uint16(0x7F80)) == np.uint16(0x7F80)
        else:
            return stored
        if overflow.any():
            bad = np.argwhere(overflow)[0]
            raise InvalidArgument(
                f"activation {float(rows[bad[0], bad[1]])!r} (row {self.n_rows + int(bad[0])}, column "
                f"{int(bad[1])}) is out of the range of {dtype} storage; store this set as float32",
                field="rows")
        return stored

    def append_tensor_chunk(self, data: bytes, *, byte_offset: int | None = None,
                            total_bytes: int | None = None, dtype=None, shape=None) -> None:
        """Raw little-endian bytes of a TensorChunk (in order). The first chunk
        gives dtype and shape [rows, hidden]."""
        self._check_open()
        if self._upload_dtype is None:
            self._upload_dtype = normalize_dtype(dtype)
            if shape is not None and len(shape) > 0:
                if len(shape) != 2:
                    raise InvalidArgument(f"the uploaded tensor must be 2-D [rows, hidden]; got shape "
                                          f"{list(shape)}", field="chunk.shape")
                if int(shape[1]) < 1:
                    raise InvalidArgument("the uploaded tensor has hidden size 0", field="chunk.shape")
                if self.hidden_size and int(shape[1]) != self.hidden_size:
                    raise InvalidArgument(
                        f"the uploaded tensor has hidden size {shape[1]} but the header said "
                        f"{self.hidden_size}", field="chunk.shape")
                self.hidden_size = int(shape[1])
                self.expected_rows = int(shape[0])
                expect = int(shape[0]) * int(shape[1]) * itemsize_of(self._upload_dtype)
                if total_bytes and int(total_bytes) != expect:
                    raise InvalidArgument(
                        f"total_bytes {total_bytes} does not match shape {list(shape)} of "
                        f"{self._upload_dtype} ({expect} bytes)", field="chunk.total_bytes")
                self._upload_total = expect
            elif total_bytes:
                self._upload_total = int(total_bytes)
        elif dtype not in (None, "", 0) and normalize_dtype(dtype) != self._upload_dtype:
            raise InvalidArgument(f"chunk dtype {normalize_dtype(dtype)} differs from the first chunk's "
                                  f"{self._upload_dtype}", field="chunk.dtype")
        if self.hidden_size is None:
            raise InvalidArgument("the first tensor chunk must carry the shape [rows, hidden]",
                                  field="chunk.shape")
        if byte_offset is not None and int(byte_offset) != self._bytes_seen:
            raise InvalidArgument(
                f"tensor chunk at byte_offset {byte_offset} but {self._bytes_seen} bytes were received "
                "so far; send the chunks in order, without gaps", field="chunk.byte_offset")
        data = bytes(data)
        self._bytes_seen += len(data)
        if self._upload_total is not None and self._bytes_seen > self._upload_total:
            raise InvalidArgument(f"received {self._bytes_seen} bytes, more than the announced "
                                  f"{self._upload_total}", field="chunk.data")
        buf = self._byte_rest + data
        row_bytes = self.hidden_size * itemsize_of(self._upload_dtype)
        whole = (len(buf) // row_bytes) * row_bytes
        self._byte_rest = buf[whole:]
        if whole:
            flat = bytes_to_float32(buf[:whole], self._upload_dtype)
            self.append_rows(flat.reshape(-1, self.hidden_size))

    def _flush_rows(self) -> None:
        if not self._buf:
            return
        rows = np.concatenate(self._buf, 0) if len(self._buf) > 1 else self._buf[0]
        idx = len(self._chunks)
        path = os.path.join(self.tmp, f"rows-{idx:08d}.npy")
        with open(path, "wb") as f:
            np.lib.format.write_array(f, rows, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        start = self._chunks[-1][0] + self._chunks[-1][1] if self._chunks else 0
        self._chunks.append([start, int(rows.shape[0])])
        self._buf, self._buf_rows = [], 0

    # -- provenance -----------------------------------------------------------
    def append_provenance(self, rows: Iterable) -> None:
        """Provenance of the next rows, in row order: Provenance objects,
        dicts with sample_index/token_start/token_end/text, or tuples."""
        self._check_open()
        for p in rows:
            if isinstance(p, Provenance):
                t = (p.sample_index, p.token_start, p.token_end, p.text)
            elif isinstance(p, dict):
                t = (p.get("sample_index", 0), p.get("token_start", 0), p.get("token_end", 0),
                     p.get("text", ""))
            elif hasattr(p, "sample_index"):  # proto message
                t = (p.sample_index, p.token_start, p.token_end, p.text)
            else:
                t = tuple(p)
            self._prov_buf.append((int(t[0]), int(t[1]), int(t[2]), str(t[3] or "")))
            self._samples.add(int(t[0]))
            self.n_prov += 1
            if len(self._prov_buf) >= PROV_CHUNK_ROWS:
                self._flush_prov()

    def _flush_prov(self) -> None:
        if not self._prov_buf:
            return
        idx = len(self._prov_chunks)
        arr = np.zeros(len(self._prov_buf), _PROV_DTYPE)
        texts = [p[3].encode("utf-8") for p in self._prov_buf]
        lengths = np.array([len(t) for t in texts], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(texts) else np.zeros(0)
        arr["sample_index"] = [p[0] for p in self._prov_buf]
        arr["token_start"] = [p[1] for p in self._prov_buf]
        arr["token_end"] = [p[2] for p in self._prov_buf]
        arr["text_offset"] = offsets
        arr["text_length"] = lengths
        with open(os.path.join(self.tmp, f"prov-{idx:08d}.npy"), "wb") as f:
            np.lib.format.write_array(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        _write_file(os.path.join(self.tmp, f"prov-{idx:08d}.txt"), b"".join(texts))
        start = self._prov_chunks[-1][0] + self._prov_chunks[-1][1] if self._prov_chunks else 0
        self._prov_chunks.append([start, len(self._prov_buf)])
        self._prov_buf = []

    def append(self, rows, provenance: Iterable | None = None) -> None:
        self.append_rows(rows)
        if provenance is not None:
            self.append_provenance(provenance)

    # -- commit / abort -------------------------------------------------------
    def _check_open(self):
        if self._done:
            raise FailedPrecondition("this activation set writer is already committed or aborted")

    def commit(self) -> ActivationSetInfo:
        self._check_open()
        try:
            if self._byte_rest:
                raise InvalidArgument(
                    f"the uploaded tensor ends with {len(self._byte_rest)} bytes that do not make a "
                    "whole row", field="chunk.data")
            if self._upload_total is not None and self._bytes_seen != self._upload_total:
                raise InvalidArgument(f"received {self._bytes_seen} bytes of the announced "
                                      f"{self._upload_total}; the upload is incomplete",
                                      field="chunk.total_bytes")
            if self.expected_rows is not None and self.expected_rows != self.n_rows:
                raise InvalidArgument(f"received {self.n_rows} rows but {self.expected_rows} were "
                                      "announced", field="rows")
            if self.n_rows == 0:
                raise InvalidArgument("no activation rows were received; a set needs at least one row",
                                      field="rows")
            if self.n_prov and self.n_prov != self.n_rows:
                raise InvalidArgument(
                    f"received provenance for {self.n_prov} rows but the set has {self.n_rows} rows; "
                    "send one provenance entry per row (or none)", field="provenance")
            self._flush_rows()
            self._flush_prov()
            info = self.info
            info.num_rows, info.hidden_size = self.n_rows, int(self.hidden_size)
            info.has_provenance = self.n_prov > 0
            if self.num_samples is not None and self.num_samples > 0:
                info.num_samples = int(self.num_samples)
            else:
                info.num_samples = len(self._samples) if self.n_prov else 0
            info.create_time, info.create_time_ns = _now()
            info.size_bytes = _dir_size(self.tmp)
            meta = {"format_version": FORMAT_VERSION, "info": info.to_dict(),
                    "chunks": self._chunks, "prov_chunks": self._prov_chunks}
            data = json.dumps(meta).encode()
            info.size_bytes += len(data)
            meta["info"] = info.to_dict()
            _write_file(os.path.join(self.tmp, "meta.json"), json.dumps(meta).encode())
            self.store._publish(self.tmp, self.store._set_dir(self.id))
        except BaseException:
            self.abort()
            raise
        self._done = True
        return info

    def abort(self) -> None:
        self._done = True
        self._buf, self._prov_buf = [], []
        shutil.rmtree(self.tmp, ignore_errors=True)


class ActivationSetReader:
    """Read access to a stored set; a row source (``n_rows``, ``n_features``,
    ``read``, ``iter_chunks``) reading the chunk files by positioned reads
    (see the module doc: no memmaps, so the process holds only the rows asked
    for)."""

    def __init__(self, path: str, meta: dict):
        self.path = path
        self.info = ActivationSetInfo.from_dict(meta["info"])
        self.n_rows, self.n_features = self.info.num_rows, self.info.hidden_size
        self._chunks = meta["chunks"]
        self._starts = [c[0] for c in self._chunks]
        self._prov_chunks = meta.get("prov_chunks", [])
        self._prov_starts = [c[0] for c in self._prov_chunks]
        self.storage_dtype = self.info.dtype or "float32"
        self._disk_dtype = STORAGE_DTYPES[self.storage_dtype]
        self._data_offsets: dict[int, int] = {}
        self._prov: dict[int, tuple[np.ndarray, bytes]] = {}
        self._lock = threading.Lock()

    @property
    def has_provenance(self) -> bool:
        return self.info.has_provenance

    @property
    def granularity(self) -> str:
        return self.info.granularity

    def _rows_file(self, i: int) -> str:
        return os.path.join(self.path, f"rows-{i:08d}.npy")

    def _data_offset(self, i: int) -> int:
        """Byte offset of the first row in chunk file ``i`` (after its .npy header)."""
        off = self._data_offsets.get(i)
        if off is None:
            with open(self._rows_file(i), "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                if fortran or dtype != self._disk_dtype or shape != (self._chunks[i][1], self.n_features):
                    raise FailedPrecondition(
                        f"activation set {self.info.id}: chunk file {i} is {dtype}{list(shape)}, not the "
                        f"{self._disk_dtype}[{self._chunks[i][1]}, {self.n_features}] its metadata says")
                off = f.tell()
            self._data_offsets[i] = off
        return off

    def _read_chunk_rows(self, i: int, lo: int, hi: int, out: np.ndarray) -> None:
        """Rows [lo, hi) of chunk file ``i`` (as float32) into ``out``."""
        row_bytes = self.n_features * self._disk_dtype.itemsize
        raw = out if self.storage_dtype == "float32" else np.empty((hi - lo, self.n_features),
                                                                   self._disk_dtype)
        view = memoryview(raw.reshape(-1).view(np.uint8))
        with open(self._rows_file(i), "rb", buffering=0) as f:
            f.seek(self._data_offset(i) + lo * row_bytes)
            got = 0
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    raise FailedPrecondition(f"activation set {self.info.id}: chunk file {i} is "
                                             "shorter than its metadata says")
                got += n
        if raw is not out:
            storage_to_float32(raw, self.storage_dtype, out)

    def _check_range(self, start: int, end: int):
        if start < 0 or end > self.n_rows or start > end:
            raise InvalidArgument(
                f"row range [{start}, {end}) is out of bounds for activation set {self.info.id} "
                f"with {self.n_rows} rows", field="row_start")

    def read(self, start: int, end: int) -> np.ndarray:
        """Rows [start, end) as a float32 array (only those rows are read)."""
        start, end = int(start), int(end)
        self._check_range(start, end)
        out = np.empty((end - start, self.n_features), np.float32)
        if end == start:
            return out
        i = bisect.bisect_right(self._starts, start) - 1
        pos = start
        while pos < end:
            c0, cn = self._chunks[i]
            lo, hi = pos - c0, min(end, c0 + cn) - c0
            self._read_chunk_rows(i, lo, hi, out[pos - start:pos - start + hi - lo])
            pos = c0 + hi
            i += 1
        return out

    def iter_chunks(self, chunk_rows: int, start: int = 0, end: int | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]:
        end = self.n_rows if end is None else int(end)
        self._check_range(start, end)
        step = max(1, int(chunk_rows))
        for s in range(start, end, step):
            yield s, self.read(s, min(s + step, end))

    # -- provenance -----------------------------------------------------------
    def _prov_chunk(self, i: int):
        got = self._prov.get(i)
        if got is None:
            with self._lock:
                got = self._prov.get(i)
                if got is None:
                    arr = np.load(os.path.join(self.path, f"prov-{i:08d}.npy"), mmap_mode="r")
                    with open(os.path.join(self.path, f"prov-{i:08d}.txt"), "rb") as f:
                        txt = f.read()
                    if len(self._prov) > 8:
                        self._prov.clear()
                    got = (arr, txt)
                    self._prov[i] = got
        return got

    def _prov_rows(self, start: int, end: int):
        """Yield (chunk array slice, text bytes) covering rows [start, end)."""
        i = bisect.bisect_right(self._prov_starts, start) - 1
        pos = start
        while pos < end:
            c0, cn = self._prov_chunks[i]
            lo, hi = pos - c0, min(end, c0 + cn) - c0
            arr, txt = self._prov_chunk(i)
            yield arr[lo:hi], txt
            pos = c0 + hi
            i += 1

    def provenance_arrays(self, start: int, end: int) -> dict[str, np.ndarray]:
        """sample_index / token_start / token_end of rows [start, end)."""
        self._check_range(start, end)
        if not self.has_provenance:
            raise FailedPrecondition(f"activation set {self.info.id} has no provenance")
        parts = [a for a, _ in self._prov_rows(start, end)]
        arr = np.concatenate(parts) if parts else np.zeros(0, _PROV_DTYPE)
        return {k: np.asarray(arr[k]) for k in ("sample_index", "token_start", "token_end")}

    def texts(self, start: int, end: int) -> list[str]:
        self._check_range(start, end)
        if not self.has_provenance:
            return [""] * (end - start)
        out = []
        for arr, txt in self._prov_rows(start, end):
            offs, lens = arr["text_offset"], arr["text_length"]
            out.extend(txt[o:o + n].decode("utf-8") for o, n in zip(offs.tolist(), lens.tolist()))
        return out

    def read_provenance(self, start: int, end: int) -> list[Provenance]:
        self._check_range(start, end)
        if not self.has_provenance:
            return []
        out = []
        for arr, txt in self._prov_rows(start, end):
            for s, ts, te, o, n in zip(arr["sample_index"].tolist(), arr["token_start"].tolist(),
                                       arr["token_end"].tolist(), arr["text_offset"].tolist(),
                                       arr["text_length"].tolist()):
                out.append(Provenance(s, ts, te, txt[o:o + n].decode("utf-8")))
        return out

    def provenance_at(self, rows) -> list[Provenance]:
        return [self.read_provenance(int(r), int(r) + 1)[0] for r in rows]


# ---------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------
def _encode_token(ns: int, id_: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ns, id_]).encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, str]:
    try:
        pad = "=" * (-len(token) % 4)
        ns, id_ = json.loads(base64.urlsafe_b64decode(token + pad).decode())
        return int(ns), str(id_)
    except Exception:
        raise InvalidArgument(f"invalid page_token {token!r}; pass the next_page_token of the "
                              "previous page, or '' for the first page", field="page_token") from None


def _paginate(items: list, page_size: int, page_token: str):
    if page_size < 0:
        raise InvalidArgument(f"page_size must be >= 0, got {page_size}", field="page_size")
    page_size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    items.sort(key=lambda x: (x.create_time_ns, x.id))
    if page_token:
        key = _decode_token(page_token)
        items = [x for x in items if (x.create_time_ns, x.id) > key]
    page = items[:page_size]
    nxt = _encode_token(page[-1].create_time_ns, page[-1].id) if len(items) > page_size else ""
    return page, nxt


class Store:
    """Activation sets and concept models under ``data_dir`` (see module doc)."""

    def __init__(self, data_dir: str):
        self.root = os.path.abspath(str(data_dir))
        self.sets_dir = os.path.join(self.root, "activation_sets")
        self.models_dir = os.path.join(self.root, "concept_models")
        self.tmp_dir = os.path.join(self.root, "tmp")
        for p in (self.root, self.sets_dir, self.models_dir, self.tmp_dir):
            os.makedirs(p, exist_ok=True)
        self._lock = threading.RLock()
        self.cleanup_tmp()

    # -- infrastructure -------------------------------------------------------
    def cleanup_tmp(self) -> int:
        """Remove leftovers of interrupted writes / deletes. Returns how many."""
        n = 0
        for entry in os.scandir(self.tmp_dir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except OSError:  # pragma: no cover
                    pass
            n += 1
        _fsync_dir(self.tmp_dir)
        return n

    def _new_tmp_dir(self, kind: str) -> str:
        path = os.path.join(self.tmp_dir, f"{kind}-{uuid.uuid4().hex}")
        os.makedirs(path)
        return path

    def _publish(self, tmp: str, final: str) -> None:
        """fsync the temp dir, rename it into place, fsync the parent."""
        _fsync_dir(tmp)
        with self._lock:
            if os.path.exists(final):  # pragma: no cover - 48-bit random ids
                raise FailedPrecondition(f"{final} already exists")
            os.rename(tmp, final)
        _fsync_dir(os.path.dirname(final))
        _fsync_dir(self.tmp_dir)

    def _remove(self, path: str) -> None:
        trash = os.path.join(self.tmp_dir, f"deleted-{uuid.uuid4().hex}")
        with self._lock:
            os.rename(path, trash)
        _fsync_dir(os.path.dirname(path))
        shutil.rmtree(trash, ignore_errors=True)

    def _set_dir(self, id_: str) -> str:
        return os.path.join(self.sets_dir, validate_id(id_, "activation_set"))

    def _model_dir(self, id_: str) -> str:
        return os.path.join(self.models_dir, validate_id(id_, "concept_model"))

    # -- activation sets ------------------------------------------------------
    def new_activation_set(self, **kwargs) -> ActivationSetWriter:
        """A writer for a new set (keyword args: see ActivationSetWriter)."""
        return ActivationSetWriter(self, **kwargs)

    def put_activation_set(self, rows, provenance=None, **kwargs) -> ActivationSetInfo:
        """Store an in-memory array (convenience for small sets / tests)."""
        with self.new_activation_set(**kwargs) as w:
            w.append(rows, provenance)
            return w.commit()

    def _set_meta(self, id_: str) -> dict:
        path = os.path.join(self._set_dir(id_), "meta.json")
        try:
            with open(path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"activation set {id_!r} does not exist (list the stored sets with "
                           "ListActivationSets)", field="activation_set") from None

    def get_activation_set(self, id_: str) -> ActivationSetInfo:
        return ActivationSetInfo.from_dict(self._set_meta(id_)["info"])

    def open_activation_set(self, id_: str) -> ActivationSetReader:
        meta = self._set_meta(id_)
        return ActivationSetReader(self._set_dir(id_), meta)

    def list_activation_sets(self, page_size: int = 0, page_token: str = ""):
        """(infos sorted by create_time, next_page_token or "")."""
        items = []
        for entry in os.scandir(self.sets_dir):
            if entry.is_dir() and ID_PATTERN.match(entry.name):
                try:
                    items.append(self.get_activation_set(entry.name))
                except (NotFound, ValueError):  # pragma: no cover - deleted meanwhile
                    pass
        return _paginate(items, int(page_size or 0), page_token or "")

    def delete_activation_set(self, id_: str) -> None:
        path = self._set_dir(id_)
        if not os.path.isdir(path):
            raise NotFound(f"activation set {id_!r} does not exist", field="name")
        try:
            self._remove(path)
        except FileNotFoundError:
            raise NotFound(f"activation set {id_!r} does not exist", field="name") from None

    # -- concept models -------------------------------------------------------
    @staticmethod
    def _model_file_bytes(info: ConceptModelInfo, state) -> bytes:
        from safetensors.numpy import save

        tensors = {k: np.ascontiguousarray(v) for k, v in state.tensors.items()}
        meta = {SAFETENSORS_INFO_KEY: json.dumps(info.to_dict()),
                SAFETENSORS_STATE_KEY: json.dumps(state.config),
                "format": "xaimesh-concept-model", "format_version": str(FORMAT_VERSION)}
        return save(tensors, metadata=meta)

    def save_concept_model(self, info: ConceptModelInfo, state) -> ConceptModelInfo:
        """Persist a fitted model (``state``: a methods.ModelState). Assigns a
        fresh id and create_time; returns the stored info."""
        info = ConceptModelInfo.from_dict(info.to_dict())
        info.id = new_id()
        info.create_time, info.create_time_ns = _now()
        tmp = self._new_tmp_dir("model")
        try:
            _write_file(os.path.join(tmp, "model.safetensors"), self._model_file_bytes(info, state))
            _write_file(os.path.join(tmp, "meta.json"),
                        json.dumps({"format_version": FORMAT_VERSION, "info": info.to_dict()}).encode())
            self._publish(tmp, self._model_dir(info.id))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return info

    def get_concept_model(self, id_: str) -> ConceptModelInfo:
        path = os.path.join(self._model_dir(id_), "meta.json")
        try:
            with open(path, "rb") as f:
                return ConceptModelInfo.from_dict(json.loads(f.read())["info"])
        except FileNotFoundError:
            raise NotFound(f"concept model {id_!r} does not exist (list the stored models with "
                           "ListConceptModels)", field="concept_model") from None

    def load_concept_model(self, id_: str):
        """(info, ModelState) of a stored model."""
        info = self.get_concept_model(id_)
        data = self.export_concept_model(id_)
        _, state = parse_model_file(data)
        return info, state

    def list_concept_models(self, page_size: int = 0, page_token: str = ""):
        items = []
        for entry in os.scandir(self.models_dir):
            if entry.is_dir() and ID_PATTERN.match(entry.name):
                try:
                    items.append(self.get_concept_model(entry.name))
                except (NotFound, ValueError):  # pragma: no cover
                    pass
        return _paginate(items, int(page_size or 0), page_token or "")

    def delete_concept_model(self, id_: str) -> None:
        path = self._model_dir(id_)
        if not os.path.isdir(path):
            raise NotFound(f"concept model {id_!r} does not exist", field="name")
        try:
            self._remove(path)
        except FileNotFoundError:
            raise NotFound(f"concept model {id_!r} does not exist", field="name") from None

    def export_concept_model(self, id_: str) -> bytes:
        """The model as one safetensors file (metadata holds the model JSON)."""
        path = os.path.join(self._model_dir(id_), "model.safetensors")
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"concept model {id_!r} does not exist", field="name") from None

    def import_concept_model(self, data: bytes, display_name: str = "", validate=None):
        """Validate an exported file and store it under a fresh id.

        ``validate(info, state)`` may raise to refuse it (the workspace
        rebuilds the method to check the tensors). Returns (info, state).
        """
        info, state = parse_model_file(data)
        if validate is not None:
            validate(info, state)
        if display_name:
            info.display_name = display_name
        return self.save_concept_model(info, state), state


def parse_model_file(data: bytes):
    """(ConceptModelInfo, ModelState) from the bytes of an exported model."""
    from safetensors.numpy import load

    from .methods.base import ModelState

    data = bytes(data)
    if len(data) < 8:
        raise InvalidArgument("the concept model file is empty or truncated", field="data")
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen > len(data) - 8 or hlen > 100 << 20:
        raise InvalidArgument("this is not a safetensors file (bad header length); export the "
                              "model with ExportConceptModel", field="data")
    try:
        header = json.loads(data[8:8 + hlen].decode("utf-8"))
        meta = header.get("__metadata__") or {}
    except Exception:
        raise InvalidArgument("this is not a safetensors file (unreadable header)", field="data") from None
    if SAFETENSORS_INFO_KEY not in meta or SAFETENSORS_STATE_KEY not in meta:
        raise InvalidArgument("this safetensors file is not a xaimesh concept model (its metadata "
                              f"lacks {SAFETENSORS_INFO_KEY!r}); export it with ExportConceptModel",
                              field="data")
    try:
        info = ConceptModelInfo.from_dict(json.loads(meta[SAFETENSORS_INFO_KEY]))
        config = json.loads(meta[SAFETENSORS_STATE_KEY])
    except Exception:
        raise InvalidArgument("the concept model metadata is not valid JSON", field="data") from None
    try:
        tensors = load(data)
    except Exception as e:
        raise InvalidArgument(f"the concept model tensors cannot be read: {e}", field="data") from None
    if not isinstance(config, dict) or "method" not in config:
        raise InvalidArgument("the concept model metadata has no method", field="data")
    return info, ModelState(config=config, tensors=tensors)
