"""Row sources: one interface over in-memory arrays, memmaps, chunk
iterators and stored activation sets.

A *row source* is anything with ``n_rows``, ``n_features``,
``read(start, end) -> float32 [end-start, n_features]`` and
``iter_chunks(chunk_rows, start=0, end=None) -> iterator of (row_start, rows)``.
Methods that train in minibatches (sparse autoencoders, dictionary learning)
or accumulate statistics (PCA, SVD, standardisation, metrics, examples) only
ever hold one chunk; methods that need the whole matrix call
``materialize(source)`` (memory: n_rows * n_features * 4 bytes).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

from xaimesh_runtime.errors import InvalidArgument

#: Default size of one chunk read from a source, in bytes.
DEFAULT_CHUNK_BYTES = 32 << 20


@runtime_checkable
class RowSource(Protocol):
    n_rows: int
    n_features: int

    def read(self, start: int, end: int) -> np.ndarray: ...

    def iter_chunks(self, chunk_rows: int, start: int = 0, end: int | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]: ...


def rows_per_chunk(n_features: int, chunk_bytes: int | None = None, itemsize: int = 4) -> int:
    """How many rows of ``n_features`` float32 values fit in ``chunk_bytes``."""
    chunk_bytes = chunk_bytes or DEFAULT_CHUNK_BYTES
    return max(1, int(chunk_bytes) // max(1, n_features * itemsize))


class ArraySource:
    """A 2-D numpy array (a memmap works too: only the rows asked for are read)."""

    def __init__(self, array):
        if hasattr(array, "detach"):  # torch tensor
            array = array.detach().cpu().numpy()
        if not isinstance(array, np.ndarray):
            array = np.asarray(array)
        if array.ndim != 2:
            raise InvalidArgument(
                f"activations must be a 2-D array [rows, hidden]; got shape {tuple(array.shape)}",
                field="activations")
        self.array = array
        self.n_rows, self.n_features = int(array.shape[0]), int(array.shape[1])

    def read(self, start: int, end: int) -> np.ndarray:
        return np.array(self.array[start:end], dtype=np.float32, order="C", copy=True)

    def iter_chunks(self, chunk_rows: int, start: int = 0, end: int | None = None):
        end = self.n_rows if end is None else min(end, self.n_rows)
        for s in range(start, end, max(1, chunk_rows)):
            yield s, self.read(s, min(s + chunk_rows, end))


class ChunkFactorySource:
    """Chunks produced by a zero-argument callable that returns a fresh
    iterator of 2-D arrays each time it is called (so it can be read several
    times, e.g. once per epoch). ``n_rows`` is found by a first pass when not
    given. ``read(start, end)`` scans the chunks up to ``end``.
    """

    def __init__(self, factory: Callable[[], Iterable], n_rows: int | None = None,
                 n_features: int | None = None):
        self.factory = factory
        if n_rows is None or n_features is None:
            n, d = 0, None
            for chunk in factory():
                chunk = np.asarray(chunk)
                if chunk.ndim != 2:
                    raise InvalidArgument(f"every chunk must be 2-D; got shape {chunk.shape}")
                if d is not None and chunk.shape[1] != d:
                    raise InvalidArgument(
                        f"chunks disagree on the hidden size: {d} then {chunk.shape[1]}")
                d = chunk.shape[1]
                n += chunk.shape[0]
            if d is None:
                raise InvalidArgument("the chunk iterator produced no rows")
            n_rows, n_features = n, d
        self.n_rows, self.n_features = int(n_rows), int(n_features)

    def _raw(self):
        pos = 0
        for chunk in self.factory():
            chunk = np.asarray(chunk, dtype=np.float32)
            yield pos, chunk
            pos += chunk.shape[0]

    def read(self, start: int, end: int) -> np.ndarray:
        parts = []
        for pos, chunk in self._raw():
            if pos >= end:
                break
            lo, hi = max(start, pos), min(end, pos + chunk.shape[0])
            if lo < hi:
                parts.append(chunk[lo - pos:hi - pos])
        if not parts:
            return np.zeros((0, self.n_features), np.float32)
        return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)

    def iter_chunks(self, chunk_rows: int, start: int = 0, end: int | None = None):
        end = self.n_rows if end is None else min(end, self.n_rows)
        buf: list[np.ndarray] = []
        buf_start = start
        buf_n = 0
        for pos, chunk in self._raw():
            if pos >= end:
                break
            lo, hi = max(start, pos), min(end, pos + chunk.shape[0])
            if lo >= hi:
                continue
            buf.append(chunk[lo - pos:hi - pos])
            buf_n += hi - lo
            while buf_n >= chunk_rows:
                whole = np.concatenate(buf, axis=0)
                yield buf_start, np.ascontiguousarray(whole[:chunk_rows])
                buf = [whole[chunk_rows:]]
                buf_start += chunk_rows
                buf_n -= chunk_rows
        if buf_n:
            yield buf_start, np.ascontiguousarray(np.concatenate(buf, axis=0))


class RangeSource:
    """Rows [start, end) of another source."""

    def __init__(self, source, start: int = 0, end: int | None = None):
        end = source.n_rows if end in (None, 0) else end
        if start < 0 or end > source.n_rows or start > end:
            raise InvalidArgument(
                f"row range [{start}, {end}) is out of bounds for {source.n_rows} rows",
                field="row_start")
        self.source, self.start, self.end = source, int(start), int(end)
        self.n_rows = self.end - self.start
        self.n_features = source.n_features

    def read(self, start: int, end: int) -> np.ndarray:
        return self.source.read(self.start + start, self.start + min(end, self.n_rows))

    def iter_chunks(self, chunk_rows: int, start: int = 0, end: int | None = None):
        end = self.n_rows if end is None else min(end, self.n_rows)
        for s, rows in self.source.iter_chunks(chunk_rows, self.start + start, self.start + end):
            yield s - self.start, rows


def as_source(data) -> RowSource:
    """Wrap ``data`` as a row source.

    Accepts a row source, a 2-D numpy array / memmap / torch tensor, a
    zero-argument callable returning a fresh chunk iterator, or a one-shot
    iterable of 2-D chunks (materialised in memory, since it can be read once
    only).
    """
    if isinstance(data, (ArraySource, ChunkFactorySource, RangeSource)):
        return data
    if isinstance(data, np.ndarray) or hasattr(data, "detach"):
        return ArraySource(data)
    if hasattr(data, "n_rows") and hasattr(data, "read") and hasattr(data, "iter_chunks"):
        return data
    if callable(data):
        return ChunkFactorySource(data)
    if isinstance(data, (list, tuple)) and data and not isinstance(data[0], (list, tuple, float, int)):
        chunks = [np.asarray(c, dtype=np.float32) for c in data]
        return ArraySource(np.concatenate(chunks, axis=0))
    if isinstance(data, Iterable) and not isinstance(data, (list, tuple)):
        chunks = [np.asarray(c, dtype=np.float32) for c in data]
        if not chunks:
            raise InvalidArgument("the chunk iterator produced no rows")
        return ArraySource(np.concatenate(chunks, axis=0))
    return ArraySource(np.asarray(data, dtype=np.float32))


def materialize(source: RowSource) -> np.ndarray:
    """The whole source as one float32 array (memory: n_rows * n_features * 4 bytes)."""
    if isinstance(source, ArraySource) and source.array.dtype == np.float32 and \
            source.array.flags.c_contiguous and not isinstance(source.array, np.memmap):
        return source.array
    return source.read(0, source.n_rows)


def sample_row_indices(n_rows: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``min(m, n_rows)`` distinct row indices drawn uniformly (seeded), sorted."""
    if m >= n_rows:
        return np.arange(n_rows)
    return np.sort(rng.choice(n_rows, m, replace=False))


def gather_rows(source: RowSource, rows) -> np.ndarray:
    """Rows at the sorted indices ``rows`` as one float32 array, read a run of
    nearby rows at a time (rows at most 64 apart and within 8 MiB share a read)."""
    rows = np.asarray(rows, np.int64)
    out = np.empty((rows.shape[0], source.n_features), np.float32)
    max_span = rows_per_chunk(source.n_features, 8 << 20)
    i = 0
    while i < rows.shape[0]:
        j = i
        while j + 1 < rows.shape[0] and rows[j + 1] - rows[i] < max_span and rows[j + 1] - rows[j] <= 64:
            j += 1
        block = source.read(int(rows[i]), int(rows[j]) + 1)
        out[i:j + 1] = block[rows[i:j + 1] - rows[i]]
        i = j + 1
    return out


class RowFile:
    """A float32 [n_rows, width] scratch matrix in a temporary file, read and
    written by row range with positioned I/O (not memory-mapped, so only the
    rows in use are in the process). Removed by ``close()``."""

    def __init__(self, n_rows: int, width: int, tmp_dir: str | None = None):
        import tempfile

        self.n_rows, self.n_features = int(n_rows), int(width)
        fd, self.path = tempfile.mkstemp(prefix="rows-", suffix=".f32", dir=tmp_dir)
        self._f = os.fdopen(fd, "r+b", buffering=0)
        self._f.truncate(self.n_rows * self.n_features * 4)

    def write(self, start: int, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, np.float32)
        os.pwrite(self._f.fileno(), data.tobytes(), int(start) * self.n_features * 4)

    def read(self, start: int, end: int) -> np.ndarray:
        out = np.empty((int(end) - int(start), self.n_features), np.float32)
        view = memoryview(out.reshape(-1).view(np.uint8))
        pos, got = int(start) * self.n_features * 4, 0
        while got < len(view):
            n = os.preadv(self._f.fileno(), [view[got:]], pos + got)
            if not n:
                raise EOFError(f"{self.path} is shorter than {self.n_rows} rows")
            got += n
        return out

    def iter_chunks(self, chunk_rows: int, start: int = 0, end: int | None = None):
        end = self.n_rows if end is None else min(end, self.n_rows)
        for s in range(start, end, max(1, chunk_rows)):
            yield s, self.read(s, min(s + chunk_rows, end))

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def iter_shuffled_batches(source: RowSource, batch_size: int, rng: np.random.Generator,
                          block_rows: int | None = None):
    """Minibatches of a source in a seeded shuffled order.

    The source is cut into blocks of ``block_rows`` rows (default: the whole
    source when it is an in-memory array, else about 64 MB of rows); block
    order and row order within a block are permuted. Only one block is in
    memory at a time, so this works on sets larger than RAM.
    """
    n = source.n_rows
    if block_rows is None:
        if isinstance(source, ArraySource) and not isinstance(source.array, np.memmap):
            block_rows = n
        else:
            block_rows = rows_per_chunk(source.n_features, 64 << 20)
    block_rows = max(batch_size, int(block_rows))
    starts = np.arange(0, n, block_rows)
    for bs in rng.permutation(starts):
        block = source.read(int(bs), int(min(bs + block_rows, n)))
        perm = rng.permutation(block.shape[0])
        for i in range(0, block.shape[0], batch_size):
            yield block[perm[i:i + batch_size]]


def check_finite(rows: np.ndarray, first_row: int = 0, what: str = "activations") -> None:
    """InvalidArgument naming the first row holding NaN or Inf."""
    if rows.size and not np.isfinite(rows).all():
        bad = np.argwhere(~np.isfinite(rows))[0]
        raise InvalidArgument(
            f"{what} contain NaN or Inf (first at row {first_row + int(bad[0])}, "
            f"column {int(bad[1])}); clean the values (e.g. torch.nan_to_num) before sending them",
            field=what)
