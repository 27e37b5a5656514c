"""Tensor codec: numpy / torch <-> ``xaimesh.v1.Tensor`` and chunked streams.

A ``Tensor`` is ``dtype + shape + raw little-endian bytes`` (row-major). This
module converts both ways, validates what it decodes, and splits / rebuilds
tensors that travel as streams.

Encoding::

    to_tensor(np.zeros((2, 3), np.float32))        # numpy
    to_tensor(torch_tensor)                         # torch, bf16 kept exactly
    to_tensor(array, dtype="bfloat16")              # cast on the way

Decoding (``field`` names the request field in error messages)::

    x = to_numpy(req.embeddings, field="embeddings", dtype="float32", ndim=3, finite=True)
    t = to_torch(req.embeddings, field="embeddings", shape=(None, None, 576))

bfloat16 has no numpy type: ``to_numpy`` widens it to float32 (exact), while
``to_torch`` returns ``torch.bfloat16``. Every problem raises
:class:`TensorError` (a ``ValueError``) whose message starts with the field.

Streams::

    for chunk in iter_chunks(array, chunk_bytes=1 << 20): yield Resp(chunk=chunk)
    asm = ChunkAssembler(field="chunk", max_bytes=limit)
    for msg in stream: asm.add(msg.chunk)
    array = asm.numpy()

    for row_start, rows in iter_row_slices(array, chunk_bytes=1 << 20): ...
    rows = RowAssembler(num_rows=n)         # or RowAssembler(out=np.memmap(...))
    for msg in stream: rows.add(msg.rows, row_start=msg.row_start)
    array = rows.result()
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xaimesh_contracts.v1 import tensor_pb2

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "MAX_CHUNK_BYTES",
    "ChunkAssembler",
    "DataType",
    "RowAssembler",
    "TensorError",
    "bfloat16_bits_to_float32",
    "check_tensor",
    "data_type",
    "dtype_name",
    "float32_to_bfloat16_bits",
    "itemsize",
    "iter_chunks",
    "iter_row_slices",
    "to_numpy",
    "to_tensor",
    "to_torch",
]

DataType = tensor_pb2.DataType
DEFAULT_CHUNK_BYTES = 1 << 20
MAX_CHUNK_BYTES = 4 << 20


class TensorError(ValueError):
    """A tensor is malformed or not what the call expects.

    ``field`` is the request field at fault (for ``google.rpc.BadRequest``),
    ``description`` the problem; ``str(err)`` is ``"field: description"``.
    """

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


# DataType -> (name, numpy storage dtype, torch dtype name)
_DTYPES: dict[int, tuple[str, np.dtype, str]] = {
    DataType.DATA_TYPE_FLOAT32: ("float32", np.dtype("<f4"), "float32"),
    DataType.DATA_TYPE_FLOAT16: ("float16", np.dtype("<f2"), "float16"),
    DataType.DATA_TYPE_BFLOAT16: ("bfloat16", np.dtype("<u2"), "bfloat16"),
    DataType.DATA_TYPE_FLOAT64: ("float64", np.dtype("<f8"), "float64"),
    DataType.DATA_TYPE_INT64: ("int64", np.dtype("<i8"), "int64"),
    DataType.DATA_TYPE_INT32: ("int32", np.dtype("<i4"), "int32"),
    DataType.DATA_TYPE_INT8: ("int8", np.dtype("i1"), "int8"),
    DataType.DATA_TYPE_UINT8: ("uint8", np.dtype("u1"), "uint8"),
    DataType.DATA_TYPE_BOOL: ("bool", np.dtype("?"), "bool"),
}
_BY_NAME = {name: code for code, (name, _, _) in _DTYPES.items()}
_BY_NUMPY = {(np.dtype(name).kind, np.dtype(name).itemsize): code
             for code, (name, _, _) in _DTYPES.items() if name != "bfloat16"}
_FLOATS = {DataType.DATA_TYPE_FLOAT32, DataType.DATA_TYPE_FLOAT16, DataType.DATA_TYPE_BFLOAT16,
           DataType.DATA_TYPE_FLOAT64}
BF16 = DataType.DATA_TYPE_BFLOAT16


def dtype_name(code: int) -> str:
    """``DATA_TYPE_FLOAT32`` -> ``"float32"`` (``"unknown(42)"`` if unknown)."""
    entry = _DTYPES.get(code)
    return entry[0] if entry else ("unspecified" if code == 0 else f"unknown({code})")


def itemsize(code: int) -> int:
    return _DTYPES[code][1].itemsize


def data_type(value: Any) -> int:
    """A ``DataType`` from a DataType value, a name ("float32", "bfloat16",
    "DATA_TYPE_INT64"), a numpy dtype or a torch dtype."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value in _DTYPES:
            return value
        raise ValueError(f"unknown DataType {value}")
    if isinstance(value, str):
        key = value.lower().removeprefix("data_type_").removeprefix("torch.")
        if key in _BY_NAME:
            return _BY_NAME[key]
        raise ValueError(f"unknown dtype name {value!r}; known: {', '.join(_BY_NAME)}")
    if type(value).__module__ == "torch" or str(value).startswith("torch."):
        return data_type(str(value))
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        raise ValueError(f"cannot interpret {value!r} as a tensor dtype") from None
    code = _BY_NUMPY.get((np_dtype.kind, np_dtype.itemsize))
    if code is None:
        raise ValueError(f"unsupported dtype {np_dtype}; supported: {', '.join(_BY_NAME)}")
    return code


def _fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


# ---------------------------------------------------------------------------
# bfloat16 helpers
# ---------------------------------------------------------------------------

def float32_to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of ``array``, rounded to nearest-even
    like ``torch.Tensor.to(torch.bfloat16)``; NaN stays NaN."""
    f32 = np.asarray(array, dtype=np.float32, order="C")
    bits = f32.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(f32)
    if nan.any():
        rounded = np.where(nan, (bits >> 16) | 0x0040, rounded)
    return rounded.astype(np.uint16)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------

def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _torch_storage(x: torch.Tensor) -> tuple[int, np.ndarray]:
    """(DataType, numpy storage array) of a torch tensor, bf16 as uint16 bits."""
    import torch

    x = x.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    x = x.contiguous()
    if x.dtype == torch.bfloat16:
        return BF16, x.view(torch.int16).numpy().view(np.uint16)
    try:
        code = data_type(str(x.dtype))
    except ValueError:
        raise TensorError("tensor", f"unsupported torch dtype {x.dtype}; supported: {', '.join(_BY_NAME)}") from None
    return code, x.numpy()


def _storage(x: Any, dtype: Any = None) -> tuple[int, np.ndarray]:
    """(DataType, C-contiguous little-endian storage array) of ``x``."""
    if _is_torch(x):
        code, arr = _torch_storage(x)
    else:
        arr = np.asarray(x)
        try:
            code = BF16 if (dtype is not None and data_type(dtype) == BF16 and arr.dtype == np.uint16) \
                else data_type(arr.dtype)
        except ValueError as exc:
            raise TensorError("tensor", str(exc)) from None
    if dtype is not None:
        try:
            target = data_type(dtype)
        except ValueError as exc:
            raise TensorError("tensor", str(exc)) from None
        if target != code:
            values = bfloat16_bits_to_float32(arr) if code == BF16 else arr
            arr = float32_to_bfloat16_bits(values) if target == BF16 else values.astype(_DTYPES[target][1])
            code = target
    storage = _DTYPES[code][1]
    return code, np.asarray(arr, dtype=storage, order="C")


def to_tensor(x: Any, *, dtype: Any = None) -> tensor_pb2.Tensor:
    """Encode a numpy array, a torch tensor (any device, bf16 kept exactly),
    a scalar or a nested list as a ``Tensor``.

    ``dtype`` (name, DataType, numpy or torch dtype) casts first; a float
    array cast to "bfloat16" is rounded to nearest-even, while a uint16 array
    with ``dtype="bfloat16"`` is taken as bfloat16 bit patterns.
    """
    if isinstance(x, tensor_pb2.Tensor):
        return x
    code, arr = _storage(x, dtype)
    return tensor_pb2.Tensor(dtype=code, shape=arr.shape, raw_contents=arr.tobytes())


# ---------------------------------------------------------------------------
# Validation and decoding
# ---------------------------------------------------------------------------

def _check_header(field: str, code: int, shape: Sequence[int]) -> int:
    """Validate dtype and shape; return the element count."""
    if code == DataType.DATA_TYPE_UNSPECIFIED:
        raise TensorError(f"{field}.dtype", "dtype is not set")
    if code not in _DTYPES:
        raise TensorError(f"{field}.dtype", f"unknown dtype {code}; known: {', '.join(_BY_NAME)}")
    for i, dim in enumerate(shape):
        if dim < 0:
            raise TensorError(f"{field}.shape", f"shape {_fmt_shape(shape)} has a negative dimension "
                                                f"(shape[{i}] = {dim})")
    return math.prod(int(d) for d in shape)


def _check_expectations(field: str, code: int, shape: Sequence[int], dtype: Any, ndim: Any,
                        expected_shape: Sequence[int | None] | None) -> None:
    if dtype is not None:
        allowed = [data_type(d) for d in (dtype if isinstance(dtype, (list, tuple, set, frozenset)) else [dtype])]
        if code not in allowed:
            want = " or ".join(dtype_name(d) for d in allowed)
            raise TensorError(f"{field}.dtype", f"dtype is {dtype_name(code)}, expected {want}")
    if ndim is not None:
        allowed_ndim = list(ndim) if isinstance(ndim, (list, tuple, set, frozenset)) else [ndim]
        if len(shape) not in allowed_ndim:
            want = " or ".join(str(n) for n in sorted(allowed_ndim))
            raise TensorError(f"{field}.shape", f"expected {want} dimensions, got {len(shape)} "
                                                f"(shape {_fmt_shape(shape)})")
    if expected_shape is not None:
        if len(shape) != len(expected_shape):
            raise TensorError(f"{field}.shape", f"expected {len(expected_shape)} dimensions, got {len(shape)} "
                                                f"(shape {_fmt_shape(shape)})")
        for i, (got, want) in enumerate(zip(shape, expected_shape)):
            if want is not None and got != want:
                raise TensorError(f"{field}.shape", f"shape[{i}] is {got}, expected {want} "
                                                    f"(shape {_fmt_shape(shape)})")


def check_tensor(t: tensor_pb2.Tensor, *, field: str = "tensor", dtype: Any = None, ndim: Any = None,
                 shape: Sequence[int | None] | None = None, max_bytes: int | None = None) -> tuple[int, ...]:
    """Validate a ``Tensor`` without decoding it; return its shape.

    Checks dtype known, shape non-negative, byte length = prod(shape) *
    itemsize, and the optional expectations: ``dtype`` (one or several),
    ``ndim`` (one or several), ``shape`` (``None`` = any size on that axis),
    ``max_bytes``.
    """
    dims = tuple(int(d) for d in t.shape)
    count = _check_header(field, t.dtype, dims)
    size = itemsize(t.dtype)
    need, have = count * size, len(t.raw_contents)
    if have != need:
        raise TensorError(f"{field}.raw_contents",
                          f"has {have} bytes but shape {_fmt_shape(dims)} of {dtype_name(t.dtype)} needs "
                          f"{need} ({count} elements x {size} bytes)")
    if max_bytes is not None and need > max_bytes:
        raise TensorError(field, f"tensor of {need} bytes exceeds the limit of {max_bytes} bytes")
    _check_expectations(field, t.dtype, dims, dtype, ndim, shape)
    return dims


def _check_values(field: str, code: int, arr: np.ndarray, finite: bool) -> None:
    if code == DataType.DATA_TYPE_BOOL and arr.size and arr.view(np.uint8).max() > 1:
        raise TensorError(f"{field}.raw_contents", "bool tensor has bytes other than 0 and 1")
    if finite and code in _FLOATS and arr.size:
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise TensorError(field, f"contains {int(bad.sum())} non-finite values (NaN or infinity), "
                                     f"first at index {first}")


def _decode(field: str, code: int, shape: tuple[int, ...], buffer: Any, *, copy: bool,
            finite: bool) -> np.ndarray:
    storage = _DTYPES[code][1]
    arr = np.frombuffer(buffer, dtype=storage).reshape(shape)
    if code == BF16:
        arr = bfloat16_bits_to_float32(arr)  # always a new array
    else:
        if not storage.isnative:
            arr = arr.astype(storage.newbyteorder("="))
        elif copy:
            arr = arr.copy()
    _check_values(field, code, arr, finite)
    return arr


def to_numpy(t: tensor_pb2.Tensor, *, field: str = "tensor", dtype: Any = None, ndim: Any = None,
             shape: Sequence[int | None] | None = None, finite: bool = False,
             max_bytes: int | None = None, copy: bool = True) -> np.ndarray:
    """Decode a ``Tensor`` into a numpy array (bfloat16 widened to float32).

    Validates as :func:`check_tensor`; ``finite=True`` also rejects NaN and
    infinities in float tensors. ``copy=False`` returns a read-only view of
    the message bytes instead of a writable copy.
    """
    dims = check_tensor(t, field=field, dtype=dtype, ndim=ndim, shape=shape, max_bytes=max_bytes)
    return _decode(field, t.dtype, dims, t.raw_contents, copy=copy, finite=finite)


def _torch_from_storage(code: int, shape: tuple[int, ...], buffer: bytearray | memoryview,
                        device: Any) -> torch.Tensor:
    import torch

    torch_dtype = getattr(torch, _DTYPES[code][2])
    if len(buffer) == 0:
        out = torch.empty(shape, dtype=torch_dtype)
    else:
        out = torch.frombuffer(buffer, dtype=torch_dtype).reshape(shape)
    return out.to(device) if device is not None else out


def to_torch(t: tensor_pb2.Tensor, *, field: str = "tensor", dtype: Any = None, ndim: Any = None,
             shape: Sequence[int | None] | None = None, finite: bool = False,
             max_bytes: int | None = None, device: Any = None) -> torch.Tensor:
    """Decode a ``Tensor`` into a torch tensor (bfloat16 stays bfloat16).

    Same checks as :func:`to_numpy`; the result owns its memory.
    """
    dims = check_tensor(t, field=field, dtype=dtype, ndim=ndim, shape=shape, max_bytes=max_bytes)
    buffer = bytearray(t.raw_contents)
    if finite or t.dtype == DataType.DATA_TYPE_BOOL:
        _decode(field, t.dtype, dims, buffer, copy=False, finite=finite)
    return _torch_from_storage(t.dtype, dims, buffer, device)


# ---------------------------------------------------------------------------
# Chunked streams of one tensor
# ---------------------------------------------------------------------------

def iter_chunks(x: Any, chunk_bytes: int = DEFAULT_CHUNK_BYTES, *, dtype: Any = None) -> Iterator[tensor_pb2.TensorChunk]:
    """Split a tensor (numpy, torch or ``Tensor``) into ``TensorChunk``s.

    Every chunk carries ``total_bytes`` and ``byte_offset``; the first one
    also carries dtype and shape. Pieces hold at most ``chunk_bytes`` (<= 4
    MiB), rounded down to whole elements; an empty tensor gives one chunk.
    """
    if not 1 <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be between 1 and {MAX_CHUNK_BYTES}, got {chunk_bytes}")
    if isinstance(x, tensor_pb2.Tensor):
        dims = check_tensor(x)
        code, data = x.dtype, memoryview(x.raw_contents)
    else:
        code, arr = _storage(x, dtype)
        dims, data = arr.shape, memoryview(arr.reshape(-1).view(np.uint8))
    step = max(chunk_bytes - chunk_bytes % itemsize(code), itemsize(code))
    total = len(data)
    offset = 0
    while True:
        piece = bytes(data[offset:offset + step])
        chunk = tensor_pb2.TensorChunk(byte_offset=offset, total_bytes=total, data=piece)
        if offset == 0:
            chunk.dtype = code
            chunk.shape.extend(dims)
        yield chunk
        offset += len(piece)
        if offset >= total:
            return


class ChunkAssembler:
    """Rebuilds one tensor from its ``TensorChunk`` stream, strictly.

    The first chunk must carry dtype and shape and start at byte 0;
    ``total_bytes`` must match prod(shape) * itemsize; each next chunk must
    start where the previous one ended (no gap, overlap or reordering) and
    repeat dtype / shape / total only if equal. Nothing may come after the
    last byte, and :meth:`numpy` / :meth:`torch` / :meth:`tensor` refuse a
    stream that ended short. ``max_bytes`` bounds the memory a client can
    make the server allocate; ``dtype`` / ``ndim`` / ``shape`` are checked
    on the first chunk, as in :func:`check_tensor`.
    """

    def __init__(self, *, field: str = "chunk", max_bytes: int | None = None, dtype: Any = None,
                 ndim: Any = None, shape: Sequence[int | None] | None = None) -> None:
        self.field = field
        self._limits = (max_bytes, dtype, ndim, shape)
        self.dtype: int | None = None
        self.shape: tuple[int, ...] | None = None
        self.total_bytes = 0
        self.received_bytes = 0
        self.chunks = 0
        self._buffer = bytearray()

    @property
    def started(self) -> bool:
        return self.dtype is not None

    @property
    def done(self) -> bool:
        return self.started and self.received_bytes == self.total_bytes

    def add(self, chunk: tensor_pb2.TensorChunk) -> bool:
        """Take the next chunk; return True when the tensor is complete."""
        field, n = self.field, self.chunks
        if not self.started:
            max_bytes, dtype, ndim, shape = self._limits
            dims = tuple(int(d) for d in chunk.shape)
            count = _check_header(field, chunk.dtype, dims)
            need = count * itemsize(chunk.dtype)
            if chunk.total_bytes != need:
                raise TensorError(f"{field}.total_bytes",
                                  f"is {chunk.total_bytes} but shape {_fmt_shape(dims)} of "
                                  f"{dtype_name(chunk.dtype)} needs {need}")
            if max_bytes is not None and need > max_bytes:
                raise TensorError(field, f"tensor of {need} bytes exceeds the limit of {max_bytes} bytes")
            _check_expectations(field, chunk.dtype, dims, dtype, ndim, shape)
            self.dtype, self.shape, self.total_bytes = chunk.dtype, dims, need
            self._buffer = bytearray(need)
        else:
            if self.done:
                raise TensorError(field, f"chunk {n} arrived after the tensor was complete "
                                         f"({self.total_bytes} bytes)")
            if chunk.dtype and chunk.dtype != self.dtype:
                raise TensorError(f"{field}.dtype", f"chunk {n} says {dtype_name(chunk.dtype)}, "
                                                    f"the first chunk said {dtype_name(self.dtype)}")
            if len(chunk.shape) and tuple(chunk.shape) != self.shape:
                raise TensorError(f"{field}.shape", f"chunk {n} says shape {_fmt_shape(chunk.shape)}, "
                                                    f"the first chunk said {_fmt_shape(self.shape)}")
            if chunk.total_bytes and chunk.total_bytes != self.total_bytes:
                raise TensorError(f"{field}.total_bytes", f"chunk {n} says {chunk.total_bytes}, "
                                                          f"the first chunk said {self.total_bytes}")
        if chunk.byte_offset != self.received_bytes:
            raise TensorError(f"{field}.byte_offset",
                              f"chunk {n} starts at byte {chunk.byte_offset}, expected {self.received_bytes} "
                              "(chunks must arrive in order, without gaps or overlaps)")
        end = self.received_bytes + len(chunk.data)
        if end > self.total_bytes:
            raise TensorError(f"{field}.data", f"chunk {n} ends at byte {end}, past the end of the tensor "
                                               f"({self.total_bytes} bytes)")
        self._buffer[self.received_bytes:end] = chunk.data
        self.received_bytes = end
        self.chunks += 1
        return self.done

    def _check_done(self) -> None:
        if not self.started:
            raise TensorError(self.field, "stream ended before the first chunk")
        if not self.done:
            raise TensorError(self.field, f"stream ended after {self.received_bytes} of "
                                          f"{self.total_bytes} bytes")

    def numpy(self, *, finite: bool = False) -> np.ndarray:
        """The assembled array (bfloat16 widened to float32); no extra copy."""
        self._check_done()
        return _decode(self.field, self.dtype, self.shape, self._buffer, copy=False, finite=finite)

    def torch(self, *, finite: bool = False, device: Any = None) -> torch.Tensor:
        """The assembled tensor (bfloat16 kept); no extra copy on CPU."""
        self._check_done()
        if finite or self.dtype == DataType.DATA_TYPE_BOOL:
            _decode(self.field, self.dtype, self.shape, self._buffer, copy=False, finite=finite)
        return _torch_from_storage(self.dtype, self.shape, self._buffer, device)

    def tensor(self) -> tensor_pb2.Tensor:
        """The assembled ``Tensor`` message."""
        self._check_done()
        return tensor_pb2.Tensor(dtype=self.dtype, shape=self.shape, raw_contents=bytes(self._buffer))

    @classmethod
    def assemble(cls, chunks: Iterable[tensor_pb2.TensorChunk], **kwargs: Any) -> np.ndarray:
        """Assemble a whole chunk iterable into a numpy array."""
        asm = cls(**kwargs)
        for chunk in chunks:
            asm.add(chunk)
        return asm.numpy()


# ---------------------------------------------------------------------------
# Row-chunked streams: (row_start, Tensor of rows) messages
# ---------------------------------------------------------------------------

def iter_row_slices(x: Any, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[tuple[int, Any]]:
    """Yield ``(row_start, x[row_start:row_start + n])`` with slices of at
    most ``chunk_bytes`` (at least one row each). Works on numpy arrays and
    torch tensors; encode each slice with :func:`to_tensor`."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    num_rows = int(x.shape[0])
    if num_rows == 0:
        return
    row_bytes = (x[0].numel() * x.element_size()) if _is_torch(x) else x[0].nbytes
    step = max(1, chunk_bytes // max(row_bytes, 1))
    for start in range(0, num_rows, step):
        yield start, x[start:start + step]


class RowAssembler:
    """Rebuilds a ``[num_rows, *row_shape]`` array from row-chunk messages.

    Each :meth:`add` takes a ``Tensor`` (or array) of rows and optionally its
    ``row_start``; rows must arrive in order with no gap or overlap, with the
    same row shape and dtype. With ``num_rows`` (or ``out``, e.g. an
    ``np.memmap``) rows are written into one preallocated array and a short
    or overlong stream is an error; without it rows are concatenated at the
    end. bfloat16 rows are widened to float32.
    """

    def __init__(self, num_rows: int | None = None, *, row_shape: Sequence[int] | None = None,
                 dtype: Any = None, out: np.ndarray | None = None, field: str = "rows",
                 max_bytes: int | None = None) -> None:
        self.field = field
        self.max_bytes = max_bytes
        self.dtype = dtype
        self.out = out
        if out is not None:
            if num_rows is not None and num_rows != out.shape[0]:
                raise ValueError(f"num_rows={num_rows} but out has {out.shape[0]} rows")
            num_rows, row_shape = out.shape[0], out.shape[1:]
        self.num_rows = num_rows
        self.row_shape = tuple(row_shape) if row_shape is not None else None
        self.next_row = 0
        self._parts: list[np.ndarray] = []

    def add(self, rows: tensor_pb2.Tensor | np.ndarray, row_start: int | None = None) -> None:
        field = self.field
        if isinstance(rows, tensor_pb2.Tensor):
            arr = to_numpy(rows, field=field, dtype=self.dtype, copy=self.out is None and self.num_rows is None)
        else:
            arr = np.asarray(rows)
        if arr.ndim < 1:
            raise TensorError(f"{field}.shape", "rows must have at least one dimension")
        if row_start is not None and row_start != self.next_row:
            raise TensorError("row_start", f"rows start at {row_start}, expected {self.next_row} "
                                           "(rows must arrive in order, without gaps or overlaps)")
        if self.row_shape is None:
            self.row_shape = arr.shape[1:]
        elif arr.shape[1:] != self.row_shape:
            raise TensorError(f"{field}.shape", f"rows of shape {_fmt_shape(arr.shape[1:])} where "
                                                f"{_fmt_shape(self.row_shape)} was expected")
        n = arr.shape[0]
        end = self.next_row + n
        if self.num_rows is not None:
            if end > self.num_rows:
                raise TensorError(field, f"rows {self.next_row}..{end} go past the {self.num_rows} expected rows")
            if self.out is None:
                row_bytes = math.prod(self.row_shape) * arr.dtype.itemsize
                if self.max_bytes is not None and self.num_rows * row_bytes > self.max_bytes:
                    raise TensorError(field, f"{self.num_rows} rows of {row_bytes} bytes exceed the limit "
                                             f"of {self.max_bytes} bytes")
                self.out = np.empty((self.num_rows, *self.row_shape), dtype=arr.dtype)
            self.out[self.next_row:end] = arr
        else:
            if self.max_bytes is not None:
                held = sum(p.nbytes for p in self._parts) + arr.nbytes
                if held > self.max_bytes:
                    raise TensorError(field, f"rows exceed the limit of {self.max_bytes} bytes")
            self._parts.append(arr)
        self.next_row = end

    @property
    def done(self) -> bool:
        return self.num_rows is not None and self.next_row == self.num_rows

    def result(self) -> np.ndarray:
        """The assembled array; raises if a known row count was not reached."""
        if self.num_rows is not None:
            if self.next_row != self.num_rows:
                raise TensorError(self.field, f"stream ended after {self.next_row} of {self.num_rows} rows")
            if self.out is None:  # zero rows expected
                return np.empty((0, *(self.row_shape or ())), dtype=np.float32)
            return self.out
        if not self._parts:
            return np.empty((0, *(self.row_shape or ())), dtype=np.float32)
        return self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)
