"""Examples per concept over a stored activation set.

One streaming pass encodes the set chunk by chunk (only one chunk of rows
and codes in memory) and keeps, per requested concept:

* the number of rows where the concept is non-zero and its maximum;
* TOP: the k rows with the highest activation. With deduplication (the
  default) it is the exact top k of *distinct texts*, each text keeping its
  highest row (a streaming top-k over texts: a text evicted earlier can come
  back with a higher activation).
* RANDOM: k active rows drawn uniformly without replacement (each active
  row gets a seeded random priority; the k highest priorities win; with
  deduplication, one row per text). Deterministic for a seed.
* QUANTILE: a uniform reservoir of at most ``reservoir_size`` active rows
  (default 20000, lowered so that all reservoirs take <= 256 MiB; exact
  when the concept has fewer active rows). Its sorted activations
  are cut into ``k_quantile`` bins of equal count (default k); the k
  examples are shared out among the bins (the extra ones go to the top
  bins) and taken at evenly spaced positions inside each bin; with
  deduplication a repeated text is replaced by the nearest unused row of the
  same bin.

``normalized_activation`` = activation / the concept's maximum over the set
(0 when that maximum is <= 0). Context (``k_context`` > 0): for sets of
TOKEN / ALL_TOKENS granularity with provenance, up to k_context neighbouring
rows of the same sample on each side, each with its own activation of the
concept, the row itself ``highlighted``; otherwise the context is the row's
own text alone. Examples are returned sorted by activation, highest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xaimesh_contracts.v1 import concept_pb2
from xaimesh_runtime.errors import Cancelled, InvalidArgument

from .common import Progress, Provenance, enum_key, numpy_rng
from .data import rows_per_chunk

CONTEXT_GRANULARITIES = ("TOKEN", "ALL_TOKENS")
DEFAULT_K = 10
#: Largest k / k_quantile and k_context a request may ask for: the examples
#: of one concept travel in one message, which k = 2^31 rows with their
#: context would blow far past any message size.
MAX_K = 10_000
MAX_K_CONTEXT = 1_000


@dataclass
class ContextToken:
    text: str
    highlighted: bool
    activation: float


@dataclass
class ConceptExample:
    row: int
    provenance: Provenance | None
    activation: float
    normalized_activation: float
    context: list[ContextToken] = field(default_factory=list)


@dataclass
class ConceptExamples:
    concept_index: int
    num_active_rows: int
    max_activation: float
    examples: list[ConceptExample] = field(default_factory=list)


def normalize_sampling(s) -> str:
    """"TOP" | "QUANTILE" | "RANDOM" from an ExampleSampling number or name (UNSPECIFIED = TOP)."""
    key = enum_key(concept_pb2.ExampleSampling, s, "sampling", what="example sampling")
    return "TOP" if key == "UNSPECIFIED" else key


class _TopKeeper:
    """Vectorised running top-k (by score) over all concepts, no dedup."""

    def __init__(self, k: int, c: int):
        self.k = k
        self.scores = np.full((0, c), -np.inf)
        self.rows = np.full((0, c), -1, np.int64)
        self.vals = np.zeros((0, c), np.float32)

    def update(self, scores, vals, row0):
        b = scores.shape[0]
        rows = np.broadcast_to(np.arange(row0, row0 + b, dtype=np.int64)[:, None], scores.shape)
        if b > self.k:
            idx = np.argpartition(-scores, self.k - 1, axis=0)[: self.k]
            scores = np.take_along_axis(scores, idx, 0)
            vals = np.take_along_axis(vals, idx, 0)
            rows = np.take_along_axis(rows, idx, 0)
        S = np.concatenate([self.scores, scores], 0)
        V = np.concatenate([self.vals, vals], 0)
        R = np.concatenate([self.rows, rows], 0)
        if S.shape[0] > self.k:
            idx = np.argpartition(-S, self.k - 1, axis=0)[: self.k]
            S, V, R = (np.take_along_axis(a, idx, 0) for a in (S, V, R))
        self.scores, self.vals, self.rows = S, V, R

    def result(self, j):
        keep = np.isfinite(self.scores[:, j])
        return [(float(v), int(r)) for v, r in zip(self.vals[keep, j], self.rows[keep, j])]


class _DistinctTopKeeper:
    """Exact streaming top-k of distinct texts for one concept."""

    def __init__(self, k: int):
        self.k = k
        self.best: dict[str, tuple[float, float, int]] = {}  # text -> (score, val, row)
        self._min = -np.inf

    @property
    def threshold(self) -> float:
        return self._min if len(self.best) >= self.k else -np.inf

    def _recompute_min(self):
        self._min = min(v[0] for v in self.best.values()) if self.best else -np.inf

    def offer_sorted(self, scores, vals, rows, texts):
        """Candidates sorted by decreasing score."""
        for s, v, r, t in zip(scores, vals, rows, texts):
            cur = self.best.get(t)
            if cur is not None:
                if s > cur[0]:
                    self.best[t] = (s, v, r)
                    self._recompute_min()
                continue
            if len(self.best) < self.k:
                self.best[t] = (s, v, r)
                self._recompute_min()
            elif s > self._min:
                worst = min(self.best, key=lambda key: (self.best[key][0], -self.best[key][2]))
                del self.best[worst]
                self.best[t] = (s, v, r)
                self._recompute_min()
            else:
                break

    def result(self):
        return [(float(v), int(r)) for (_, v, r) in self.best.values()]


def top_examples(model, reader, concept_indices=None, k: int = DEFAULT_K, sampling="TOP",
                 k_quantile: int = 0, k_context: int = 0, seed: int = 0,
                 keep_duplicates: bool = False, *, chunk_rows: int | None = None,
                 reservoir_size: int = 20000, progress=None, should_stop=None
                 ) -> list[ConceptExamples]:
    """Examples for each requested concept (default: all) of ``model`` over
    the stored set ``reader`` (an ActivationSetReader, or any row source with
    optional ``texts`` / ``read_provenance`` / ``provenance_arrays``)."""
    sampling = normalize_sampling(sampling)
    k = int(k or 0)
    if k < 0 or k > MAX_K:
        raise InvalidArgument(f"k must be between 0 and {MAX_K} (0 = {DEFAULT_K}), got {k}", field="k")
    k = k or DEFAULT_K
    if not 0 <= int(k_context or 0) <= MAX_K_CONTEXT:
        raise InvalidArgument(f"k_context must be between 0 and {MAX_K_CONTEXT}, got {k_context}",
                              field="k_context")
    if not 0 <= int(k_quantile or 0) <= MAX_K:
        raise InvalidArgument(f"k_quantile must be between 0 and {MAX_K} (0 = k), got {k_quantile}",
                              field="k_quantile")
    k_quantile = int(k_quantile or 0) or k
    if reader.n_features != model.hidden_size_:
        raise InvalidArgument(
            f"activation set has hidden size {reader.n_features} but the concept model was fitted "
            f"on hidden size {model.hidden_size_}", field="activation_set")
    nbc = model.nb_concepts
    if concept_indices is None or len(concept_indices) == 0:
        concepts = list(range(nbc))
    else:
        concepts = []
        for c in concept_indices:
            c = int(c)
            if c < 0 or c >= nbc:
                raise InvalidArgument(f"concept index {c} is out of range: the model has {nbc} "
                                      f"concepts (0..{nbc - 1})", field="concept_indices")
            if c not in concepts:
                concepts.append(c)
    cidx = np.array(concepts, np.int64)
    C = len(concepts)
    has_prov = bool(getattr(reader, "has_provenance", False))
    dedup = (not keep_duplicates) and has_prov and sampling in ("TOP", "RANDOM")
    rng = numpy_rng(seed)
    n = reader.n_rows
    rows_n = chunk_rows or rows_per_chunk(max(reader.n_features, nbc), 16 << 20)

    num_active = np.zeros(C, np.int64)
    max_act = np.full(C, -np.inf)
    if sampling == "QUANTILE":
        # reservoir per concept, capped so that all reservoirs take <= ~256 MiB
        keep_k = max(k, min(int(reservoir_size), (256 << 20) // (20 * C)))
    else:
        keep_k = k
    vec = None if dedup else _TopKeeper(keep_k, C)
    distinct = [_DistinctTopKeeper(k) for _ in range(C)] if dedup else None

    for start, rows in reader.iter_chunks(rows_n):
        if should_stop is not None and should_stop():
            raise Cancelled("the top examples computation was cancelled")
        codes = model.encode(rows)[:, cidx].astype(np.float64)
        nz = codes != 0
        num_active += nz.sum(0)
        with np.errstate(invalid="ignore"):
            chunk_max = np.where(nz, codes, -np.inf).max(0) if codes.shape[0] else max_act
        max_act = np.maximum(max_act, chunk_max)
        if sampling == "TOP":
            scores = np.where(nz, codes, -np.inf)
        else:
            scores = np.where(nz, rng.random(codes.shape), -np.inf)
        if vec is not None:
            vec.update(scores, codes.astype(np.float32), start)
        else:
            thr = np.array([d.threshold for d in distinct])
            cand = scores > thr[None, :]
            cols = np.flatnonzero(cand.any(0))
            if cols.size:
                texts = reader.texts(start, start + rows.shape[0])
                for j in cols:
                    r = np.flatnonzero(cand[:, j])
                    order = r[np.argsort(-scores[r, j], kind="stable")]
                    distinct[j].offer_sorted(scores[order, j].tolist(), codes[order, j].tolist(),
                                             (order + start).tolist(), [texts[i] for i in order])
        if progress is not None:
            progress(Progress("encoding", start + rows.shape[0], n))

    text_cache: dict[int, str] = {}

    def text_of(r: int) -> str:
        if r not in text_cache:
            text_cache[r] = reader.texts(r, r + 1)[0] if has_prov else ""
        return text_cache[r]

    picked: list[list[tuple[float, int]]] = []
    for j in range(C):
        if distinct is not None:
            sel = distinct[j].result()
        else:
            cand = vec.result(j)
            if sampling == "QUANTILE":
                sel = _quantile_pick(cand, k, k_quantile, text_of if (has_prov and not keep_duplicates)
                                     else None)
            else:
                sel = cand
        sel.sort(key=lambda t: (-t[0], t[1]))
        picked.append(sel[:k])

    # provenance and context, batched over every example
    all_rows = sorted({r for sel in picked for _, r in sel})
    prov = {}
    if has_prov and all_rows:
        for r in all_rows:
            prov[r] = reader.read_provenance(r, r + 1)[0]
    ctx_rows: dict[int, list[int]] = {}
    token_level = has_prov and getattr(reader, "granularity", "") in CONTEXT_GRANULARITIES
    kc = int(k_context or 0)
    if kc > 0 and token_level and all_rows:
        for r in all_rows:
            lo, hi = max(0, r - kc), min(n, r + kc + 1)
            samples = reader.provenance_arrays(lo, hi)["sample_index"]
            s = samples[r - lo]
            a = r - lo
            while a > 0 and samples[a - 1] == s:
                a -= 1
            b = r - lo
            while b + 1 < len(samples) and samples[b + 1] == s:
                b += 1
            ctx_rows[r] = list(range(lo + a, lo + b + 1))
    ctx_codes: dict[int, np.ndarray] = {}
    ctx_texts: dict[int, str] = {}
    if ctx_rows:
        need = sorted({x for v in ctx_rows.values() for x in v})
        for lo, hi in _ranges(need):
            block = model.encode(reader.read(lo, hi))[:, cidx]
            texts = reader.texts(lo, hi)
            for i in range(hi - lo):
                ctx_codes[lo + i] = block[i]
                ctx_texts[lo + i] = texts[i]

    out = []
    for j, c in enumerate(concepts):
        mx = float(max_act[j]) if np.isfinite(max_act[j]) else 0.0
        exs = []
        for val, r in picked[j]:
            p = prov.get(r)
            norm = val / mx if mx > 0 else 0.0
            context: list[ContextToken] = []
            if kc > 0:
                if r in ctx_rows:
                    context = [ContextToken(ctx_texts[x], x == r, float(ctx_codes[x][j]))
                               for x in ctx_rows[r]]
                else:
                    context = [ContextToken(p.text if p else "", True, float(val))]
            exs.append(ConceptExample(row=r, provenance=p, activation=float(val),
                                      normalized_activation=float(norm), context=context))
        out.append(ConceptExamples(concept_index=c, num_active_rows=int(num_active[j]),
                                   max_activation=mx, examples=exs))
    return out


def _ranges(sorted_rows: list[int]):
    """Contiguous [lo, hi) ranges covering sorted distinct rows."""
    if not sorted_rows:
        return
    lo = prev = sorted_rows[0]
    for r in sorted_rows[1:]:
        if r != prev + 1:
            yield lo, prev + 1
            lo = r
        prev = r
    yield lo, prev + 1


def _quantile_pick(cand: list[tuple[float, int]], k: int, kq: int, text_of=None):
    """k entries spread over kq equal-count bins of the sorted candidates."""
    cand = sorted(cand, key=lambda t: (t[0], t[1]))
    m = len(cand)
    if m == 0:
        return []
    kq = max(1, min(kq, m))
    base, extra = divmod(k, kq)
    counts = [base + (1 if b >= kq - extra else 0) for b in range(kq)]
    chosen: list[tuple[float, int]] = []
    used_rows: set[int] = set()
    used_texts: set[str] = set()
    for b in range(kq - 1, -1, -1):
        lo, hi = (b * m) // kq, ((b + 1) * m) // kq
        cnt = min(counts[b], hi - lo)
        if cnt <= 0:
            continue
        width = hi - lo
        for i in range(cnt - 1, -1, -1):
            target = lo + int((i + 0.5) * width / cnt)
            # nearest unused position in the bin (outward search)
            for off in range(width):
                found = None
                for pos in (target + off, target - off) if off else (target,):
                    if lo <= pos < hi and cand[pos][1] not in used_rows:
                        if text_of is not None:
                            t = text_of(cand[pos][1])
                            if t in used_texts:
                                continue
                            used_texts.add(t)
                        found = pos
                        break
                if found is not None:
                    used_rows.add(cand[found][1])
                    chosen.append(cand[found])
                    break
                if off > 200:  # bounded search
                    break
    return chosen
