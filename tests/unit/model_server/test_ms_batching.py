import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from xaimesh_model_server import engine
from xaimesh_model_server.batching import DirectExecutor, DynamicBatcher, length_bucket, plan_batches
from xaimesh_model_server.engine.generation import GenItem, run_generate
from xaimesh_runtime.errors import Cancelled, ResourceExhausted


class Recorder:
    """A fake runner: doubles payloads, records each batch."""

    def __init__(self, delay=0.0, gate=None):
        self.batches = []
        self.delay = delay
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, kind, payloads):
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.batches.append((kind, list(payloads)))
        return [(kind, p * 2) for p in payloads]


def _threads(fns):
    out = [None] * len(fns)
    errors = []

    def run(i):
        try:
            out[i] = fns[i]()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, errors
    return out


def test_plan_batches_and_buckets():
    batches = plan_batches([5, 50, 5, 40, 5], max_batch_tokens=100, max_batch_size=10)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    for b in batches:
        assert max([5, 50, 5, 40, 5][i] for i in b) * len(b) <= 100
    assert plan_batches([500], 100, 10) == [[0]]  # a long item goes alone
    # without length classes (generation), lengths mix within the budget
    assert plan_batches([5, 12, 40, 7], 50, 10, length_classes=False) == [[0, 3, 1], [2]]
    # one class per length up to 16, then classes at most 2^(1/8) wide, increasing
    buckets = [length_bucket(n) for n in range(1, 5000)]
    assert buckets[:16] == list(range(1, 17)) and buckets == sorted(buckets)
    for b in set(buckets):
        members = [n for n in range(1, 5000) if length_bucket(n) == b]
        assert max(members) <= 2 ** (1 / 8) * min(members) + 1e-9
    # a batch holds one length class: no item padded by more than that
    lengths = [6, 12, 7, 6, 12, 40, 41, 9]
    for b in plan_batches(lengths, max_batch_tokens=1000, max_batch_size=100):
        assert len({length_bucket(lengths[i]) for i in b}) == 1


def test_concurrent_callers_are_merged_and_ordered():
    rec = Recorder()
    stats = []
    waits = []
    with DynamicBatcher(rec, max_wait_s=0.05, max_batch_tokens=10_000, on_batch=stats.append,
                        on_queue_wait=waits.append) as b:
        barrier = threading.Barrier(4)

        def caller(c):
            def run():
                barrier.wait()
                payloads = [c * 100 + i for i in range(10)]
                return b.run("k", payloads, [8] * 10)

            return run

        results = _threads([caller(c) for c in range(4)])
    for c, res in enumerate(results):
        assert res == [("k", (c * 100 + i) * 2) for i in range(10)]
    assert len(rec.batches) < 4  # rows of several callers shared forwards
    assert max(s.callers for s in stats) > 1
    assert sum(s.items for s in stats) == 40 and len(waits) == 40


def test_token_budget_and_length_buckets():
    rec = Recorder(gate=threading.Event())
    with DynamicBatcher(rec, max_wait_s=0.0, max_batch_tokens=100, max_batch_size=64) as b:
        rec.gate.set()
        out = b.run("k", list(range(30)) + [1000, 1001], [10] * 30 + [200, 200])
    assert out == [("k", 2 * p) for p in list(range(30)) + [1000, 1001]]
    for kind, payloads in rec.batches:
        lengths = [200 if p >= 1000 else 10 for p in payloads]
        assert len(set(lengths)) == 1  # short and long items are not mixed
        assert len(payloads) == 1 or max(lengths) * len(payloads) <= 100
    assert len(rec.batches) >= 3 + 2


def test_kinds_are_not_mixed():
    rec = Recorder()
    with DynamicBatcher(rec, max_wait_s=0.02) as b:
        res = _threads([lambda: b.run("a", [1, 2], [4, 4]), lambda: b.run("b", [3], [4])])
    assert res == [[("a", 2), ("a", 4)], [("b", 6)]]
    for kind, payloads in rec.batches:
        assert all((p < 3) == (kind == "a") for p in payloads)


def test_queue_full_raises_resource_exhausted():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    with DynamicBatcher(rec, max_wait_s=0.0, max_queue_items=5, max_batch_size=1) as b:
        h1 = b.submit("k", [1], [4])  # taken by the worker, blocked on the gate
        time.sleep(0.05)
        h2 = b.submit("k", [2, 3, 4], [4] * 3)
        with pytest.raises(ResourceExhausted, match=r"queue is full \(3 items queued, limit 5\); retry with backoff"):
            b.submit("k", [5, 6, 7], [4] * 3)
        gate.set()
        assert h1.result() == [("k", 2)] and h2.result() == [("k", 4), ("k", 6), ("k", 8)]


def test_large_request_is_windowed_not_rejected():
    rec = Recorder()
    with DynamicBatcher(rec, max_wait_s=0.0, max_queue_items=10, window_items=4, max_batch_size=3) as b:
        out = b.run("k", list(range(25)), [4] * 25)
    assert out == [("k", 2 * i) for i in range(25)]


def test_cancelled_caller_items_are_dropped():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    active = {"a": True}
    with DynamicBatcher(rec, max_wait_s=0.0, max_batch_size=1) as b:
        blocker = b.submit("k", [0], [4])  # occupies the worker
        time.sleep(0.05)
        errors = []

        def cancelled_caller():
            try:
                b.run("k", [100, 101, 102], [4] * 3, is_active=lambda: active["a"])
            except Cancelled as exc:
                errors.append(exc)

        t = threading.Thread(target=cancelled_caller)
        t.start()
        time.sleep(0.05)
        assert b.queue_depth() == 3
        active["a"] = False
        t.join(5)
        assert errors and b.queue_depth() == 0
        gate.set()
        assert blocker.result() == [("k", 0)]
        assert b.run("k", [7], [4]) == [("k", 14)]
    seen = [p for _, ps in rec.batches for p in ps]
    assert not {100, 101, 102} & set(seen)


def test_runner_errors_reach_the_callers_and_batches_run_on_the_worker():
    threads = []

    def runner(kind, payloads):
        threads.append(threading.current_thread().name)
        if 13 in payloads:
            raise RuntimeError("boom")
        return payloads

    with DynamicBatcher(runner, max_wait_s=0.0) as b:
        with pytest.raises(RuntimeError, match="boom"):
            b.run("k", [13], [4])
        assert b.run("k", [1], [4]) == [1]
    assert threads == ["xaimesh-batcher-model"] * 2


@dataclass(frozen=True)
class LongKind:
    """A kind with the batching hints of generation."""

    max_batch_size = 2
    length_classes = False
    yields = True


def _wait_for(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


def test_kind_hints_bound_batches_and_a_yielding_kind_lets_others_through():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    long = LongKind()
    with DynamicBatcher(rec, max_wait_s=0.0, max_batch_tokens=40) as b:
        h_long = b.submit(long, [1, 2, 3, 4, 5, 6, 7], [10, 10, 30, 10, 20, 5, 5])
        _wait_for(lambda: b.queue_depth() == 5)  # the worker holds the first batch
        h_other = b.submit("k", [100], [4])
        h_more = b.submit(long, [8], [10])
        gate.set()
        assert h_long.result() == [(long, 2 * p) for p in range(1, 8)]
        assert h_other.result() == [("k", 200)] and h_more.result() == [(long, 16)]
    kinds = [k for k, _ in rec.batches]
    # the other kind is served right after the batch that ran when it came,
    # although long items are older; then the long ones, 2 at most per batch
    assert kinds[0] == long and kinds[1] == "k" and set(kinds[2:]) == {long}
    lengths = dict(zip(range(1, 9), [10, 10, 30, 10, 20, 5, 5, 10]))
    for kind, payloads in rec.batches:
        if kind == long:
            assert len(payloads) <= 2
            assert len(payloads) == 1 or max(lengths[p] for p in payloads) * len(payloads) <= 40
    # every length shared one queue: a batch mixed length classes (which ones
    # depends on the callers' turns)
    assert any(len({length_bucket(lengths[p]) for p in ps}) > 1 for k, ps in rec.batches if k == long)


def test_generations_count_their_tokens_and_score_is_served_between_them(lm, sentence_ids):
    """16 long generations while a Score comes: the token budget bounds each
    generation batch (prompt + max_new_tokens per item), and the Score runs
    right after the generation batch that was running when it came, before
    the other generations (structural: no timing)."""
    prompt, max_new = [5, 6, 7, 8], 40
    budget = 4 * (len(prompt) + max_new)  # 4 generations per batch
    alone = engine.generate(lm, token_ids=prompt, max_new_tokens=max_new)
    want_score = engine.score(lm, sentence_ids, target_positions=[3, 9])
    order = []
    running, release = threading.Event(), threading.Event()

    def runner(kind, payloads):
        order.append((str(kind), len(payloads)))
        if len(order) == 1:
            running.set()
            release.wait(60)
        return engine.run_rows(lm, kind, payloads)

    stats = []
    results = {}

    def call(name, fn):
        def run():
            results[name] = fn()
        return threading.Thread(target=run)

    with DynamicBatcher(runner, max_batch_tokens=budget, max_wait_s=0.0, on_batch=stats.append) as b:
        gens = [call(i, lambda: engine.generate(lm, token_ids=prompt, max_new_tokens=max_new, executor=b))
                for i in range(16)]
        for t in gens:
            t.start()
        assert running.wait(60)
        first = order[0][1]
        _wait_for(lambda: b.queue_depth() == 16 - first)  # every other generation is queued
        scorer = call("score", lambda: engine.score(lm, sentence_ids, target_positions=[3, 9], executor=b))
        scorer.start()
        _wait_for(lambda: b.queue_depth() == 16 - first + 1)
        release.set()
        for t in gens + [scorer]:
            t.join(120)
    assert [results[i] for i in range(16)] == [alone] * 16
    np.testing.assert_allclose(results["score"], want_score, atol=1e-5)
    kinds = [k for k, _ in order]
    assert kinds[0] == "gen" and kinds[1] == "score"
    assert kinds.count("gen") >= 4 and set(kinds[2:]) == {"gen"}  # generations still to do after the score
    gen_batches = [s for s in stats if s.kind == "gen"]
    assert sum(s.items for s in gen_batches) == 16
    assert all(s.items <= 4 and s.padded_tokens <= budget for s in gen_batches)


def test_direct_executor_cancellation():
    ex = DirectExecutor(lambda k, p: p, max_batch_size=1)
    assert ex.run("k", [1, 2], [3, 3]) == [1, 2]
    with pytest.raises(Cancelled):
        ex.run("k", [1, 2], [3, 3], is_active=lambda: False)


def test_model_score_through_batcher_merges_concurrent_callers(lm, sentence_ids):
    L = len(sentence_ids)
    rng = np.random.RandomState(1)
    masks = [rng.rand(8, L) > 0.3 for _ in range(4)]
    direct = [engine.score(lm, sentence_ids, m, target_positions=[9, 12]) for m in masks]
    forwards = []
    hook = lm.model.register_forward_pre_hook(lambda *a: forwards.append(1))
    try:
        batcher = engine.make_dynamic_batcher(lm, max_wait_s=0.05)
        with batcher:
            barrier = threading.Barrier(4)

            def caller(m):
                def run():
                    barrier.wait()
                    return engine.score(lm, sentence_ids, m, target_positions=[9, 12], executor=batcher)

                return run

            got = _threads([caller(m) for m in masks])
            # activations and gradients go through the same worker
            acts = list(engine.activations(lm, ["a b c"], ["1"], executor=batcher))
            grads = engine.gradients(lm, sentence_ids, target_positions=[3], executor=batcher)
    finally:
        hook.remove()
    for g, d in zip(got, direct):
        np.testing.assert_allclose(g, d, atol=1e-5)
    assert len(forwards) - 2 < 4  # the 4 score requests shared forwards
    assert acts[0].rows["model.layers.1"].shape[0] == 3
    np.testing.assert_allclose(
        grads["dot_delta"], engine.gradients(lm, sentence_ids, target_positions=[3])["dot_delta"], atol=1e-6
    )


def test_generate_through_batcher(lm):
    with engine.make_dynamic_batcher(lm) as batcher:
        a = engine.generate(lm, token_ids=[5, 6], max_new_tokens=3, executor=batcher)
    assert a == engine.generate(lm, token_ids=[5, 6], max_new_tokens=3)


def test_concurrent_generations_decode_together_with_their_own_results(lm):
    """Prompts of different lengths, greedy and seeded sampling, decoded in
    one batch: each gets the tokens it gets alone."""
    requests = [dict(token_ids=[5, 6], max_new_tokens=6),
                dict(token_ids=[7, 8, 9, 10, 11, 12, 13], max_new_tokens=3),
                dict(token_ids=[5, 6, 7, 8], max_new_tokens=5, do_sample=True, seed=4, temperature=1.5),
                dict(text="The capital of France is", max_new_tokens=8)]
    alone = [engine.generate(lm, **r) for r in requests]
    stats = []
    gate = threading.Event()
    with engine.make_dynamic_batcher(lm, max_wait_s=0.5, on_batch=stats.append) as batcher:
        def call(r):
            def run():
                gate.wait(5)
                return engine.generate(lm, executor=batcher, **r)
            return run

        threads_out = []
        waiter = threading.Thread(target=lambda: threads_out.extend(_threads([call(r) for r in requests])))
        waiter.start()
        gate.set()
        waiter.join(30)
    assert threads_out == alone
    assert [s.items for s in stats if s.kind == "gen"] == [4]  # one batch: one forward per step for all


def test_batched_decoding_feeds_each_sequence_its_own_positions(lm):
    seen = []
    hook = lm.model.register_forward_pre_hook(
        lambda _m, _args, kwargs: seen.append(kwargs["position_ids"].clone()), with_kwargs=True)
    try:
        items = [GenItem(torch.tensor(ids), 3, False, 1.0, 1.0, 0, 0, set(), None)
                 for ids in ([5, 6], [7, 8, 9, 10, 11])]
        run_generate(lm, items)
    finally:
        hook.remove()
    prefill, *steps = seen
    assert prefill.tolist() == [[0, 0, 0, 0, 1], [0, 1, 2, 3, 4]]  # left padding
    assert [p.tolist() for p in steps] == [[[2], [5]], [[3], [6]]]


def test_a_cancelled_generation_leaves_the_others_in_its_batch(lm):
    active = {"go": True}
    items = [GenItem(torch.tensor(ids), 6, False, 1.0, 1.0, 0, 0, set(), is_active)
             for ids, is_active in (([5, 6], None), ([7, 8, 9], lambda: active["go"]))]
    active["go"] = False
    kept, cancelled = run_generate(lm, items)
    assert kept == engine.generate(lm, token_ids=[5, 6], max_new_tokens=6)
    assert isinstance(cancelled, Cancelled)


def test_attach_and_registry_close(lm):
    from xaimesh_model_server.loading import ModelRegistry

    reg = ModelRegistry()
    reg.add(lm)
    batcher = engine.attach_dynamic_batcher(lm)
    try:
        assert lm.executor is batcher
        assert engine.score(lm, [5, 6, 7], target_positions=[2]).shape == (1, 1)
        assert batcher.items_run == 1
    finally:
        reg.close()
        lm.executor = None
    with pytest.raises(ResourceExhausted, match="shutting down"):
        batcher.submit("k", [1], [1])


def _last_batch_of(rec: Recorder, payloads) -> int:
    wanted = set(payloads)
    return max(i for i, (_, ps) in enumerate(rec.batches) if wanted & set(ps))


def test_a_20x_larger_job_does_not_starve_small_ones():
    """Callers take turns: two small jobs submitted after a 20x larger one
    finish after a few batches, not after the large job (arrival order would
    put all 200 of its items first)."""
    gate = threading.Event()
    rec = Recorder(gate=gate)
    large = list(range(1000, 1200))
    small = [list(range(100, 110)), list(range(200, 210))]
    with DynamicBatcher(rec, max_wait_s=0.0, max_batch_size=4) as b:
        h_large = b.submit("k", large, [8] * len(large))
        _wait_for(lambda: b.queue_depth() == len(large) - 4)  # the worker holds the first batch
        h_small = [b.submit("k", s, [8] * len(s)) for s in small]
        gate.set()
        assert h_large.result() == [("k", 2 * p) for p in large]
        assert [h.result() for h in h_small] == [[("k", 2 * p) for p in s] for s in small]
    finished = [_last_batch_of(rec, s) for s in small]
    # 3 callers share 4 rows a batch: 20 small rows need about 20 / (4 * 2/3) + the held batch
    assert max(finished) <= 9, finished
    assert abs(finished[0] - finished[1]) <= 1  # equal work, equal finish
    assert _last_batch_of(rec, large) == len(rec.batches) - 1
    assert all(len(ps) == 4 for _, ps in rec.batches[:-1])  # sharing did not shrink the batches


def test_requests_with_one_caller_key_share_one_turn():
    """A caller that splits a large job into many requests (an explanation's
    Score calls, all with its xaimesh-caller key) still gets one share."""
    from xaimesh_model_server.batching import Caller

    gate = threading.Event()
    rec = Recorder(gate=gate)
    parts = [list(range(1000 + 10 * i, 1010 + 10 * i)) for i in range(20)]
    small = list(range(100, 110))
    with DynamicBatcher(rec, max_wait_s=0.0, max_batch_size=4) as b:
        first = b.submit("k", [0], [8], is_active=Caller("large", lambda: True))
        _wait_for(lambda: b.queue_depth() == 0)  # the worker holds the first batch
        h_large = [b.submit("k", p, [8] * len(p), is_active=Caller("large", lambda: True)) for p in parts]
        h_small = b.submit("k", small, [8] * len(small), is_active=Caller("small", lambda: True))
        gate.set()
        assert first.result() == [("k", 0)]
        assert h_small.result() == [("k", 2 * p) for p in small]
        assert [h.result() for h in h_large] == [[("k", 2 * p) for p in part] for part in parts]
    # two callers, 2 rows each a batch: the 10 small rows are done by batch 5 (+ the held one);
    # with a turn per request it would take about 10 x 21 / 4 batches
    assert _last_batch_of(rec, small) <= 6


def test_the_server_names_the_caller_from_metadata():
    """The model-server hands the engine an is_active that names the caller:
    calls with one xaimesh-caller value are one caller, other calls each their own."""
    from types import SimpleNamespace

    from xaimesh_model_server.server import _caller

    def context(metadata):
        ctx = SimpleNamespace(invocation_metadata=lambda: metadata)
        ctx.is_active = lambda: True
        return ctx

    one, same = _caller(context((("xaimesh-caller", "e1"),))), _caller(context((("xaimesh-caller", "e1"),)))
    other = _caller(context((("xaimesh-caller", "e2"),)))
    plain = [_caller(context(())) for _ in range(2)]
    assert one == same and hash(one) == hash(same) and one != other and one()
    assert plain[0] != plain[1] and plain[0]()
