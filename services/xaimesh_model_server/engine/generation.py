"""Generate: greedy or sampled continuations, decoded together.

A Generate call is one GenItem of kind GenWork(); the batcher hands the
items of concurrent calls to one runner call, which decodes them together
(left-padded prefill, then one forward per step for all, each with its own
positions, sampling seed, EOS ids and length), so each gets the tokens it
would get alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch

from xaimesh_runtime.errors import Cancelled, InvalidArgument

from ..loading import TASK_CAUSAL_LM, TASK_SEQ2SEQ_LM, LoadedModel
from ..tokenization import tokenizer_lock
from .forward import forward_params, pad_id, pad_stack, position_ids
from .inputs import check_input_ids
from .limits import DEFAULT_LIMITS, MAX_NEW_TOKENS_WHEN_UNSET, Limits
from .work import WorkKind, get_executor, runs


class GenerationResult(NamedTuple):
    text: str  # the continuation only (special tokens skipped)
    token_ids: list[int]  # the continuation's ids (the final EOS excluded)
    prompt_token_ids: list[int]  # the prompt as the model saw it
    finish_reason: str  # "eos" or "length"


def _chat_prompt(loaded: LoadedModel, messages: Sequence[Any]) -> str:
    if not loaded.has_chat_template:
        raise InvalidArgument(
            f"model {loaded.model_id!r} has no chat template: send a text or token ids prompt", field="chat"
        )
    conv = []
    for i, m in enumerate(messages):
        if isinstance(m, dict):
            role, content = m.get("role"), m.get("content")
        elif isinstance(m, (tuple, list)) and len(m) == 2:
            role, content = m
        else:
            role, content = getattr(m, "role", None), getattr(m, "content", None)
        if role not in ("system", "user", "assistant"):
            raise InvalidArgument(
                f"chat message {i} has role {role!r}: use 'system', 'user' or 'assistant'", field="chat.messages"
            )
        conv.append({"role": role, "content": str(content or "")})
    if not conv:
        raise InvalidArgument("the chat has no messages: give at least one", field="chat.messages")
    try:
        with tokenizer_lock:
            return loaded.tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # template errors (e.g. roles must alternate)
        raise InvalidArgument(f"the chat template rejected the messages: {exc}", field="chat.messages") from exc


def eos_ids(loaded: LoadedModel) -> set[int]:
    ids: set[int] = set()
    gc = getattr(loaded.model, "generation_config", None)
    value = getattr(gc, "eos_token_id", None) if gc is not None else None
    if isinstance(value, int):
        ids.add(value)
    elif isinstance(value, (list, tuple)):
        ids.update(int(v) for v in value)
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    return ids


def _sample_next(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float, top_k: int, gen: torch.Generator) -> int:
    if not do_sample:
        return int(torch.argmax(logits))
    logits = logits.float().cpu() / temperature
    if 0 < top_k < logits.shape[0]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        cum = probs.cumsum(-1)
        drop = cum - probs > top_p  # keep the smallest prefix with mass >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)
    probs = torch.softmax(logits, -1)
    return int(torch.multinomial(probs, 1, generator=gen))


def generate(
    loaded: LoadedModel,
    text: str | None = None,
    *,
    token_ids: Sequence[int] | None = None,
    messages: Sequence[Any] | None = None,
    max_new_tokens: int | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    add_special_tokens: bool = True,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> GenerationResult:
    """Generates a continuation of exactly one of: `text` (tokenized with the
    tokenizer's special tokens), `token_ids`, or chat `messages` (dicts /
    objects with role and content, rendered with the chat template and its
    generation prompt). For an encoder-decoder the prompt is the source the
    encoder reads; the decoder generates from its start token.

    max_new_tokens 0 / None = 128. Greedy unless do_sample; temperature <= 0
    means 1, top_p <= 0 or >= 1 and top_k <= 0 disable those filters. Sampling
    uses a CPU torch.Generator seeded with `seed` (deterministic, independent
    of the global RNG). Stops at an EOS id of the generation config /
    tokenizer ("eos", EOS not returned) or after max_new_tokens / at the
    model's maximum length ("length").
    """
    limits = limits or DEFAULT_LIMITS
    if loaded.task not in (TASK_CAUSAL_LM, TASK_SEQ2SEQ_LM):
        raise InvalidArgument(f"model {loaded.model_id!r} is a sequence classifier: generation needs a causal LM "
                              "or an encoder-decoder", field="model")
    given = sum(v is not None for v in (text, token_ids, messages))
    if given != 1:
        raise InvalidArgument("give exactly one prompt: text, token_ids or chat messages", field="prompt")
    if messages is not None:
        rendered = _chat_prompt(loaded, messages)
        with tokenizer_lock:
            prompt = loaded.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    elif text is not None:
        if text == "":
            raise InvalidArgument("the prompt text is empty: give at least one character", field="text")
        with tokenizer_lock:
            prompt = loaded.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    else:
        prompt = token_ids
    ids = check_input_ids(loaded, prompt, field="prompt")
    max_new = int(max_new_tokens or MAX_NEW_TOKENS_WHEN_UNSET)
    if max_new < 0 or max_new > limits.max_new_tokens:
        raise InvalidArgument(
            f"max_new_tokens {max_new} is out of range: use 1..{limits.max_new_tokens} (0 = {MAX_NEW_TOKENS_WHEN_UNSET})",
            field="max_new_tokens",
        )
    # An encoder-decoder's prompt is its source: the decoder has the model's
    # whole length, minus its start token.
    room = loaded.max_sequence_length - (1 if loaded.is_seq2seq else int(ids.shape[0]))
    if room <= 0:
        raise InvalidArgument(
            f"the prompt has {int(ids.shape[0])} tokens, the model's maximum length: shorten it", field="prompt"
        )
    temperature = float(temperature) if temperature and temperature > 0 else 1.0
    top_p = float(top_p) if top_p and 0 < top_p < 1 else 1.0
    top_k = int(top_k) if top_k and top_k > 0 else 0
    eos = eos_ids(loaded)

    item = GenItem(ids, min(max_new, room), do_sample, temperature, top_p, top_k, int(seed), eos, is_active)
    (result,) = get_executor(loaded, executor, limits).run(GenWork(), [item], [item.cost], is_active=is_active)
    if isinstance(result, BaseException):
        raise result
    return result


# Concurrent Generate calls decode together: one forward per step reads the
# weights once for every sequence (on a 2-core CPU, decoding is bound by
# reading them).
GENERATE_MAX_BATCH = 16


@dataclass(frozen=True)
class GenWork(WorkKind):
    """Generations. Every prompt length shares one queue (prompts are
    left-padded); an item's length is its cost, prompt + max new tokens (the
    cache it fills), so the batcher's token budget bounds a batch, as does
    GENERATE_MAX_BATCH; and after a generation batch the batcher serves
    other waiting work first, so generations cannot starve scoring."""

    label = "gen"
    max_batch_size = GENERATE_MAX_BATCH
    length_classes = False
    yields = True


@dataclass
class GenItem:
    ids: torch.Tensor
    max_new: int
    do_sample: bool
    temperature: float
    top_p: float
    top_k: int
    seed: int
    eos: set[int]
    is_active: Any

    @property
    def cost(self) -> int:
        """Tokens this generation occupies at most: prompt + new tokens."""
        return int(self.ids.shape[0]) + int(self.max_new)


@runs(GenWork)
def run_generation(loaded: LoadedModel, kind: GenWork, items: list[GenItem], limits: Limits) -> list[Any]:
    return run_generate(loaded, items)


def run_generate(loaded: LoadedModel, items: list[GenItem]) -> list[Any]:
    """Decodes items together, GENERATE_MAX_BATCH at a time (takes loaded.lock)."""
    out: list[Any] = []
    for start in range(0, len(items), GENERATE_MAX_BATCH):
        out.extend(_generate_batch(loaded, items[start:start + GENERATE_MAX_BATCH]))
    return out


def _generate_batch(loaded: LoadedModel, items: list[GenItem]) -> list[Any]:
    """Greedy or sampled decoding of several prompts at once: a prefill,
    then one forward per step for the sequences still going. Each has its
    own sampling generator, EOS ids and length limit, so its tokens are
    those it would get alone (up to float rounding of batched kernels). A
    sequence whose caller went away gets `Cancelled` as its result."""
    steps = _Seq2SeqSteps(loaded, items) if loaded.is_seq2seq else _CausalSteps(loaded, items)
    batch = len(items)
    gens = [torch.Generator().manual_seed(it.seed) for it in items]
    new: list[list[int]] = [[] for _ in items]
    finish = ["length"] * batch
    done = [False] * batch
    cancelled = [False] * batch
    with loaded.lock, torch.inference_mode():
        out = steps.prefill()
        while True:
            step_ids = []
            for i, it in enumerate(items):
                if not done[i]:
                    nxt = _sample_next(out.logits[i, -1], it.do_sample, it.temperature, it.top_p, it.top_k,
                                       gens[i])
                    if nxt in it.eos:
                        finish[i], done[i] = "eos", True
                    else:
                        new[i].append(nxt)
                        done[i] = len(new[i]) >= it.max_new
                    if not done[i] and it.is_active is not None and not it.is_active():
                        cancelled[i] = done[i] = True
                step_ids.append(new[i][-1] if new[i] else pad_id(loaded))
            if all(done):
                break
            cache = getattr(out, "cache", None)
            if cache is None:
                cache = getattr(out, "past_key_values", None)
            out = steps.step(step_ids, cache)
    results: list[Any] = []
    for i, it in enumerate(items):
        if cancelled[i]:
            results.append(Cancelled("the call was cancelled by the client"))
            continue
        with tokenizer_lock:
            text = loaded.tokenizer.decode(new[i], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        results.append(GenerationResult(text, new[i], [int(t) for t in it.ids], finish[i]))
    return results


def _cache_keyword(loaded: LoadedModel) -> str:
    return "cache" if "cache" in forward_params(loaded) else "past_key_values"


class _CausalSteps:
    """A causal LM's forwards: left-padded prefill of the prompts, then one
    token per sequence per step, each with its own positions."""

    def __init__(self, loaded: LoadedModel, items: list[GenItem]) -> None:
        self.loaded = loaded
        self.kwargs: dict[str, Any] = {"use_cache": True}
        if "logits_to_keep" in forward_params(loaded):
            self.kwargs["logits_to_keep"] = 1
        self.batch = batch = len(items)
        lengths = [int(it.ids.shape[0]) for it in items]
        longest = max(lengths)
        self.input_ids = torch.full((batch, longest), pad_id(loaded), dtype=torch.long)
        mask = torch.zeros(batch, longest, dtype=torch.long)
        for i, it in enumerate(items):
            self.input_ids[i, longest - lengths[i]:] = it.ids
            mask[i, longest - lengths[i]:] = 1
        if batch > 1:  # a lone prompt runs exactly as before batching existed
            self.kwargs["attention_mask"] = mask.to(loaded.device)
            self.kwargs["position_ids"] = position_ids(mask, loaded.position_offset).to(loaded.device)
        self.position = torch.tensor(lengths, dtype=torch.long)

    def prefill(self) -> Any:
        return self.loaded.model(input_ids=self.input_ids.to(self.loaded.device), **self.kwargs)

    def step(self, step_ids: list[int], cache: Any) -> Any:
        loaded, kwargs, device = self.loaded, self.kwargs, self.loaded.device
        if self.batch > 1:
            kwargs["attention_mask"] = torch.cat([kwargs["attention_mask"],
                                                  torch.ones(self.batch, 1, dtype=torch.long, device=device)], dim=1)
            # + position_offset: RoBERTa-like positions start at padding_idx + 1 (loading.position_offset)
            kwargs["position_ids"] = (self.position + loaded.position_offset).unsqueeze(1).to(device)
        self.position = self.position + 1  # not in place: position_ids above is a view of it (.to on its own device)
        return loaded.model(input_ids=torch.tensor(step_ids, device=device).unsqueeze(1),
                            **{_cache_keyword(loaded): cache}, **kwargs)


class _Seq2SeqSteps:
    """An encoder-decoder's forwards: the encoder once on the right-padded
    sources (each cross-attends only to its own source's tokens), then the
    decoder from its start token, one token per sequence per step; every
    decoder is at the same position, so no position ids are needed."""

    def __init__(self, loaded: LoadedModel, items: list[GenItem]) -> None:
        self.loaded = loaded
        sources, mask, _ = pad_stack([it.ids for it in items], "right", pad_id(loaded))
        self.sources, self.mask = sources.to(loaded.device), mask.to(loaded.device)
        self.encoded: Any = None
        self.batch = len(items)

    def prefill(self) -> Any:
        loaded = self.loaded
        self.encoded = loaded.model.get_encoder()(input_ids=self.sources, attention_mask=self.mask)
        start = torch.full((self.batch, 1), loaded.decoder_start_token_id, dtype=torch.long, device=loaded.device)
        return loaded.model(encoder_outputs=self.encoded, attention_mask=self.mask, decoder_input_ids=start,
                            use_cache=True)

    def step(self, step_ids: list[int], cache: Any) -> Any:
        loaded = self.loaded
        return loaded.model(encoder_outputs=self.encoded, attention_mask=self.mask,
                            decoder_input_ids=torch.tensor(step_ids, device=loaded.device).unsqueeze(1),
                            use_cache=True, **{_cache_keyword(loaded): cache})
