"""Tensor codec: round-trips, validation messages, chunking and assembly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaimesh_contracts.v1 import tensor_pb2
from xaimesh_contracts.tensors import (
    MAX_CHUNK_BYTES,
    ChunkAssembler,
    DataType,
    RowAssembler,
    TensorError,
    bfloat16_bits_to_float32,
    check_tensor,
    data_type,
    float32_to_bfloat16_bits,
    iter_chunks,
    iter_row_slices,
    to_numpy,
    to_tensor,
    to_torch,
)

RNG = np.random.default_rng(0)

NUMPY_CASES = [
    (np.float32, DataType.DATA_TYPE_FLOAT32),
    (np.float16, DataType.DATA_TYPE_FLOAT16),
    (np.float64, DataType.DATA_TYPE_FLOAT64),
    (np.int64, DataType.DATA_TYPE_INT64),
    (np.int32, DataType.DATA_TYPE_INT32),
    (np.int8, DataType.DATA_TYPE_INT8),
    (np.uint8, DataType.DATA_TYPE_UINT8),
    (np.bool_, DataType.DATA_TYPE_BOOL),
]


def sample(dtype, shape=(3, 4)) -> np.ndarray:
    if dtype == np.bool_:
        return RNG.random(shape) > 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return RNG.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return (RNG.standard_normal(shape) * 100).astype(dtype)


# -- numpy -------------------------------------------------------------------

@pytest.mark.parametrize("np_dtype,code", NUMPY_CASES)
@pytest.mark.parametrize("shape", [(3, 4), (), (0,), (2, 0, 3), (5,)])
def test_numpy_round_trip(np_dtype, code, shape):
    x = sample(np_dtype, shape)
    t = to_tensor(x)
    assert t.dtype == code
    assert list(t.shape) == list(shape)
    assert len(t.raw_contents) == x.nbytes
    y = to_numpy(t)
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, x)
    assert y.flags.writeable


def test_bytes_are_little_endian_row_major():
    t = to_tensor(np.array([[1, 2], [3, 4]], dtype=">i4"))  # big-endian input
    assert t.raw_contents == np.array([1, 2, 3, 4], dtype="<i4").tobytes()
    t = to_tensor(np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    assert t.raw_contents == np.arange(6, dtype="<f4").tobytes()


def test_decode_without_copy_is_a_read_only_view():
    t = to_tensor(np.arange(4, dtype=np.float32))
    y = to_numpy(t, copy=False)
    assert not y.flags.writeable
    np.testing.assert_array_equal(y, np.arange(4))


def test_scalars_lists_and_casts():
    assert to_numpy(to_tensor(3)).dtype == np.int64
    np.testing.assert_array_equal(to_numpy(to_tensor([[1.5, 2.5]])), [[1.5, 2.5]])
    t = to_tensor(np.arange(3, dtype=np.float64), dtype="float32")
    assert t.dtype == DataType.DATA_TYPE_FLOAT32
    assert to_numpy(t).dtype == np.float32


def test_unsupported_dtypes_are_rejected():
    for bad in (np.arange(3, dtype=np.uint16), np.array([1j]), np.array(["a"])):
        with pytest.raises(TensorError, match="unsupported dtype"):
            to_tensor(bad)


def test_data_type_names():
    assert data_type("bfloat16") == DataType.DATA_TYPE_BFLOAT16
    assert data_type("DATA_TYPE_INT8") == DataType.DATA_TYPE_INT8
    assert data_type(np.float16) == DataType.DATA_TYPE_FLOAT16
    assert data_type(torch.bfloat16) == DataType.DATA_TYPE_BFLOAT16
    assert data_type(torch.bool) == DataType.DATA_TYPE_BOOL
    with pytest.raises(ValueError, match="unknown dtype name"):
        data_type("complex64")


# -- bfloat16 and torch --------------------------------------------------------

TORCH_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32,
                torch.int8, torch.uint8, torch.bool]


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 4), (0, 4), ()])
def test_torch_round_trip_is_exact(dtype, shape):
    if dtype == torch.bool:
        x = torch.rand(shape) > 0.5
    elif dtype.is_floating_point:
        x = (torch.randn(shape) * 50).to(dtype)
    else:
        x = torch.randint(-100 if dtype != torch.uint8 else 0, 100, shape).to(dtype)
    t = to_tensor(x)
    y = to_torch(t)
    assert y.dtype == dtype and tuple(y.shape) == shape
    assert torch.equal(y, x)


def test_bfloat16_bits_match_torch_and_widen_exactly():
    values = torch.tensor([0.0, -0.0, 1.0, -2.5, 3.14159, 1e-40, 3e38, float("inf"), -float("inf"),
                           65504.0, 1.00390625, 1.01171875] + torch.randn(1000).tolist())
    expected = values.to(torch.bfloat16)
    bits = float32_to_bfloat16_bits(values.numpy())
    assert np.array_equal(bits, expected.view(torch.int16).numpy().view(np.uint16))
    # decode to numpy widens to float32 exactly
    t = to_tensor(expected)
    assert t.dtype == DataType.DATA_TYPE_BFLOAT16 and len(t.raw_contents) == 2 * values.numel()
    widened = to_numpy(t)
    assert widened.dtype == np.float32
    assert np.array_equal(widened, expected.float().numpy())
    # numpy float32 cast to bfloat16 on encode == torch's cast
    t2 = to_tensor(values.numpy(), dtype="bfloat16")
    assert t2.raw_contents == t.raw_contents
    assert torch.equal(to_torch(t2), expected)


def test_bfloat16_nan_stays_nan():
    bits = float32_to_bfloat16_bits(np.array([np.nan, -np.nan], dtype=np.float32))
    assert np.isnan(bfloat16_bits_to_float32(bits)).all()


def test_uint16_with_bfloat16_dtype_is_raw_bits():
    bits = np.array([0x3F80, 0xC020], dtype=np.uint16)  # 1.0, -2.5
    np.testing.assert_array_equal(to_numpy(to_tensor(bits, dtype="bfloat16")), [1.0, -2.5])


def test_torch_non_contiguous_and_grad():
    x = torch.arange(12, dtype=torch.float32, requires_grad=True).reshape(3, 4).t()
    np.testing.assert_array_equal(to_numpy(to_tensor(x)), x.detach().numpy())


def test_to_torch_owns_writable_memory():
    y = to_torch(to_tensor(np.zeros(3, np.float32)))
    y += 1  # no warning, no error
    assert y.tolist() == [1, 1, 1]


# -- validation ------------------------------------------------------------------

def raw(dtype=DataType.DATA_TYPE_FLOAT32, shape=(2, 3), nbytes=24) -> tensor_pb2.Tensor:
    return tensor_pb2.Tensor(dtype=dtype, shape=shape, raw_contents=b"\0" * nbytes)


@pytest.mark.parametrize("tensor,field,message", [
    (raw(nbytes=20), "x.raw_contents",
     "x.raw_contents: has 20 bytes but shape [2, 3] of float32 needs 24 (6 elements x 4 bytes)"),
    (raw(dtype=0), "x.dtype", "x.dtype: dtype is not set"),
    (raw(dtype=42), "x.dtype", "x.dtype: unknown dtype 42"),
    (raw(shape=(2, -3)), "x.shape", "x.shape: shape [2, -3] has a negative dimension (shape[1] = -3)"),
])
def test_malformed_tensors_name_the_field(tensor, field, message):
    with pytest.raises(TensorError) as info:
        to_numpy(tensor, field="x")
    assert info.value.field == field
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)


def test_expectations():
    t = to_tensor(np.zeros((2, 3), np.float32))
    assert check_tensor(t, dtype="float32", ndim=2, shape=(None, 3)) == (2, 3)
    with pytest.raises(TensorError, match=r"^emb.dtype: dtype is float32, expected bfloat16 or float16$"):
        to_numpy(t, field="emb", dtype=["bfloat16", "float16"])
    with pytest.raises(TensorError, match=r"^emb.shape: expected 3 dimensions, got 2 \(shape \[2, 3\]\)$"):
        to_numpy(t, field="emb", ndim=3)
    with pytest.raises(TensorError, match=r"^emb.shape: shape\[1\] is 3, expected 576 \(shape \[2, 3\]\)$"):
        to_numpy(t, field="emb", shape=(None, 576))
    with pytest.raises(TensorError, match="exceeds the limit of 16 bytes"):
        to_numpy(t, field="emb", max_bytes=16)


def test_finite_check():
    x = np.zeros((2, 3), np.float32)
    x[1, 2] = np.nan
    x[0, 1] = np.inf
    with pytest.raises(TensorError, match=r"contains 2 non-finite values .* first at index \(0, 1\)"):
        to_numpy(to_tensor(x), field="e", finite=True)
    with pytest.raises(TensorError, match="non-finite"):
        to_torch(to_tensor(torch.tensor([1.0, float("nan")]).bfloat16()), finite=True)
    to_numpy(to_tensor(np.arange(3)), finite=True)  # ints are always finite


def test_bool_bytes_must_be_0_or_1():
    t = tensor_pb2.Tensor(dtype=DataType.DATA_TYPE_BOOL, shape=[3], raw_contents=b"\x00\x01\x02")
    with pytest.raises(TensorError, match="mask.raw_contents: bool tensor has bytes other than 0 and 1"):
        to_numpy(t, field="mask")
    with pytest.raises(TensorError):
        to_torch(t, field="mask")


# -- chunking -------------------------------------------------------------------

@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1 << 20])
def test_chunks_round_trip(chunk_bytes):
    x = RNG.standard_normal((33, 5)).astype(np.float32)
    chunks = list(iter_chunks(x, chunk_bytes=chunk_bytes))
    assert all(len(c.data) <= max(chunk_bytes, 4) for c in chunks)
    assert all(len(c.data) % 4 == 0 for c in chunks)  # whole elements
    assert chunks[0].dtype == DataType.DATA_TYPE_FLOAT32 and list(chunks[0].shape) == [33, 5]
    assert all(c.dtype == 0 and not c.shape for c in chunks[1:])
    np.testing.assert_array_equal(ChunkAssembler.assemble(chunks), x)


def test_chunks_of_a_proto_tensor_and_bf16_torch():
    x = torch.randn(10, 7).bfloat16()
    asm = ChunkAssembler()
    for chunk in iter_chunks(to_tensor(x), chunk_bytes=10):
        asm.add(chunk)
    assert torch.equal(asm.torch(), x)
    assert asm.tensor() == to_tensor(x)


def test_empty_tensor_is_one_chunk():
    chunks = list(iter_chunks(np.zeros((0, 8), np.float32)))
    assert len(chunks) == 1 and chunks[0].total_bytes == 0
    assert ChunkAssembler.assemble(chunks).shape == (0, 8)


def test_chunk_size_limits():
    with pytest.raises(ValueError, match="chunk_bytes"):
        list(iter_chunks(np.zeros(4), chunk_bytes=MAX_CHUNK_BYTES + 1))
    big = np.zeros(3 * MAX_CHUNK_BYTES // 4 + 10, np.float32)
    assert max(len(c.data) for c in iter_chunks(big, chunk_bytes=MAX_CHUNK_BYTES)) == MAX_CHUNK_BYTES


def _chunks(n=40, size=16):
    return list(iter_chunks(np.arange(n, dtype=np.float32), chunk_bytes=size))


def _feed(chunks, **kwargs):
    asm = ChunkAssembler(field="chunk", **kwargs)
    for c in chunks:
        asm.add(c)
    return asm.numpy()


def test_assembler_rejects_out_of_order():
    c = _chunks()
    with pytest.raises(TensorError, match=r"chunk.byte_offset: chunk 1 starts at byte 32, expected 16"):
        _feed([c[0], c[2], c[1]])


def test_assembler_rejects_overlap_and_duplicates():
    c = _chunks()
    overlap = tensor_pb2.TensorChunk(byte_offset=8, total_bytes=160, data=b"\0" * 16)
    with pytest.raises(TensorError, match="starts at byte 8, expected 16"):
        _feed([c[0], overlap])
    with pytest.raises(TensorError, match="starts at byte 0, expected 16"):
        _feed([c[0], c[0]])


def test_assembler_rejects_short_stream():
    with pytest.raises(TensorError, match=r"^chunk: stream ended after 144 of 160 bytes$"):
        _feed(_chunks()[:-1])
    with pytest.raises(TensorError, match="before the first chunk"):
        _feed([])


def test_assembler_rejects_overflow_and_extra_chunks():
    c = _chunks()
    too_long = tensor_pb2.TensorChunk(byte_offset=144, data=b"\0" * 32)
    with pytest.raises(TensorError, match=r"chunk.data: chunk 9 ends at byte 176, past the end .*160"):
        _feed(c[:-1] + [too_long])
    extra = tensor_pb2.TensorChunk(byte_offset=160, data=b"")
    with pytest.raises(TensorError, match="arrived after the tensor was complete"):
        _feed(c + [extra])


def test_assembler_rejects_inconsistent_headers():
    c = _chunks()
    first = tensor_pb2.TensorChunk()
    first.CopyFrom(c[0])
    first.total_bytes = 100
    with pytest.raises(TensorError, match=r"chunk.total_bytes: is 100 but shape \[40\] of float32 needs 160"):
        _feed([first])
    no_dtype = tensor_pb2.TensorChunk(shape=[40], total_bytes=160)
    with pytest.raises(TensorError, match="chunk.dtype: dtype is not set"):
        _feed([no_dtype])
    second = tensor_pb2.TensorChunk()
    second.CopyFrom(c[1])
    second.dtype = DataType.DATA_TYPE_INT32
    with pytest.raises(TensorError, match="chunk 1 says int32, the first chunk said float32"):
        _feed([c[0], second])
    second.dtype = 0
    second.shape.extend([4, 10])
    with pytest.raises(TensorError, match=r"chunk 1 says shape \[4, 10\], the first chunk said \[40\]"):
        _feed([c[0], second])
    second.ClearField("shape")
    second.total_bytes = 200
    with pytest.raises(TensorError, match="chunk 1 says 200, the first chunk said 160"):
        _feed([c[0], second])


def test_assembler_limits_and_expectations():
    with pytest.raises(TensorError, match="160 bytes exceeds the limit of 100 bytes"):
        _feed(_chunks(), max_bytes=100)
    with pytest.raises(TensorError, match="dtype is float32, expected int64"):
        _feed(_chunks(), dtype="int64")
    with pytest.raises(TensorError, match="expected 2 dimensions"):
        _feed(_chunks(), ndim=2)


# -- row-chunked streams ---------------------------------------------------------

def test_row_slices_and_preallocated_assembly(tmp_path):
    x = RNG.standard_normal((50, 8)).astype(np.float32)
    slices = list(iter_row_slices(x, chunk_bytes=100))  # 3 rows of 32 bytes
    assert [s for s, _ in slices][:3] == [0, 3, 6] and all(len(r) <= 3 for _, r in slices)
    out = np.lib.format.open_memmap(tmp_path / "rows.npy", mode="w+", dtype=np.float32, shape=(50, 8))
    asm = RowAssembler(out=out)
    for start, rows in slices:
        asm.add(to_tensor(rows), row_start=start)
    assert asm.done and asm.result() is out
    np.testing.assert_array_equal(np.load(tmp_path / "rows.npy"), x)


def test_row_assembly_known_and_unknown_count_and_bf16():
    x = torch.randn(10, 4).bfloat16()
    for num_rows in (10, None):
        asm = RowAssembler(num_rows)
        for start, rows in iter_row_slices(x, chunk_bytes=16):
            asm.add(to_tensor(rows))  # row_start optional
        np.testing.assert_array_equal(asm.result(), x.float().numpy())
    assert RowAssembler(0).result().shape == (0,)
    assert RowAssembler(row_shape=(4,)).result().shape == (0, 4)


def test_row_assembly_rejects_bad_streams():
    x = np.zeros((6, 2), np.float32)
    asm = RowAssembler(6)
    asm.add(to_tensor(x[:2]), row_start=0)
    with pytest.raises(TensorError, match=r"^row_start: rows start at 4, expected 2"):
        asm.add(to_tensor(x[4:]), row_start=4)
    with pytest.raises(TensorError, match=r"rows.shape: rows of shape \[3\] where \[2\] was expected"):
        asm.add(to_tensor(np.zeros((1, 3), np.float32)), row_start=2)
    with pytest.raises(TensorError, match="go past the 6 expected rows"):
        asm.add(to_tensor(np.zeros((5, 2), np.float32)), row_start=2)
    with pytest.raises(TensorError, match="^rows: stream ended after 2 of 6 rows$"):
        asm.result()
    with pytest.raises(TensorError, match="dtype is int64, expected float32"):
        RowAssembler(2, dtype="float32").add(to_tensor(np.zeros((2, 2), np.int64)))
    with pytest.raises(TensorError, match="exceed the limit"):
        RowAssembler(1000, max_bytes=1000).add(to_tensor(x))
