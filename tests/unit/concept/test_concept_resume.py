"""An activation pull whose model-server replica goes away mid-stream goes on
on another replica from the first text not done, with the indices of the
whole pull, and delivers nothing of the window that was cut short."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from xaimesh_concept.common import ActivationRows, ActivationsHeader, ActivationsSummary, ItemFailure, Progress
from xaimesh_concept.downstream import MAX_RESUMES, _GrpcActivationStream
from xaimesh_contracts.tensors import to_tensor
from xaimesh_contracts.v1 import model_pb2, tensor_pb2
from xaimesh_runtime.errors import DownstreamError

N_TEXTS, ROWS = 4, 2  # two rows per text, windows of two texts


def rows_of(sample: int) -> np.ndarray:
    return np.full((ROWS, 3), float(sample), np.float32)


def pull(offset: int, *, fail_after_windows: int | None = None, bad_text: int | None = None,
         code=grpc.StatusCode.UNAVAILABLE):
    """The messages of StreamActivations on texts[offset:] (indices relative to it)."""
    n = N_TEXTS - offset
    yield model_pb2.StreamActivationsResponse(header=model_pb2.ActivationsHeader(
        split_points=["a"], hidden_size=3, num_samples=n))
    for window, start in enumerate(range(0, n, 2)):
        samples = list(range(start, min(start + 2, n)))
        if fail_after_windows is not None and window == fail_after_windows:
            yield model_pb2.StreamActivationsResponse(chunk=model_pb2.ActivationsChunk(
                split_point="a", rows=to_tensor(rows_of(-1))))  # part of a window, then the replica dies
            raise DownstreamError(code, "the model-server at 10.0.0.7:50051 is unavailable")
        for s in samples:
            if s + offset == bad_text:
                yield model_pb2.StreamActivationsResponse(item_error=model_pb2.ItemError(index=s))
                continue
            yield model_pb2.StreamActivationsResponse(chunk=model_pb2.ActivationsChunk(
                split_point="a", rows=to_tensor(rows_of(s + offset)),
                provenance=[model_pb2.RowProvenance(sample_index=s, token_start=j) for j in range(ROWS)]))
        yield model_pb2.StreamActivationsResponse(progress=tensor_pb2.Progress(
            stage="activations", done=samples[-1] + 1, total=n))
    kept = n - (bad_text is not None and bad_text >= offset)
    yield model_pb2.StreamActivationsResponse(summary=model_pb2.ActivationsSummary(
        num_rows=ROWS * kept, num_samples=n))


class Call:
    def __init__(self, messages) -> None:
        self.messages, self.cancelled = messages, False

    def __iter__(self):
        return self.messages

    def cancel(self) -> None:
        self.cancelled = True


def test_a_pull_cut_mid_window_goes_on_from_the_first_text_not_done():
    offsets: list[int] = []

    def start(offset: int) -> Call:
        offsets.append(offset)
        return Call(pull(offset, fail_after_windows=1 if offset == 0 else None, bad_text=3))

    events = list(_GrpcActivationStream(start, N_TEXTS).events(lambda: False))
    assert offsets == [0, 2]
    assert [type(e).__name__ for e in events] == ["ActivationsHeader", "ActivationRows", "ActivationRows",
                                                   "Progress", "ActivationRows", "ItemFailure", "Progress",
                                                   "ActivationsSummary"]
    rows = [e for e in events if isinstance(e, ActivationRows)]
    assert [int(r.rows[0, 0]) for r in rows] == [0, 1, 2]  # nothing of the cut window (-1)
    assert [p.sample_index for r in rows for p in r.provenance] == [0, 0, 1, 1, 2, 2]
    assert [e.index for e in events if isinstance(e, ItemFailure)] == [3]
    assert [(e.done, e.total) for e in events if isinstance(e, Progress)] == [(2, 4), (4, 4)]
    (summary,) = [e for e in events if isinstance(e, ActivationsSummary)]
    assert (summary.num_rows, summary.num_samples) == (ROWS * 3, N_TEXTS)
    assert isinstance(events[0], ActivationsHeader) and events[0].num_samples == N_TEXTS


def test_only_unavailable_is_resumed_and_only_so_often():
    def refused(offset: int) -> Call:
        return Call(pull(offset, fail_after_windows=1, code=grpc.StatusCode.INVALID_ARGUMENT))

    with pytest.raises(DownstreamError) as info:
        list(_GrpcActivationStream(refused, N_TEXTS).events(lambda: False))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT

    offsets: list[int] = []

    def always_dying(offset: int) -> Call:
        offsets.append(offset)
        return Call(pull(offset, fail_after_windows=0))

    with pytest.raises(DownstreamError) as info:
        list(_GrpcActivationStream(always_dying, N_TEXTS).events(lambda: False))
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and offsets == [0] * (MAX_RESUMES + 1)
