"""Request limits and batching budgets of the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Request limits and batching budgets (configurable by the adapter)."""

    # Rows of a Score request / samples of a ComputeGradients request.
    max_sequences: int = 8192
    max_targets: int = 4096
    # The largest max_new_tokens a Generate request may ask for.
    max_new_tokens: int = 4096
    # Bytes of the gradient outputs of one request (FULL is n x T x L x D floats).
    max_output_bytes: int = 1 << 31
    # DirectExecutor packing (the DynamicBatcher has its own settings).
    max_batch_tokens: int = 16384
    max_batch_size: int = 256
    # Tokens in one gradient forward + backward.
    grad_batch_tokens: int = 4096
    # A gradient forward over more tokens than this (rows x longest row)
    # keeps only each block's input for the backward passes and recomputes
    # the block in each of them (engine/gradients.py, "Memory"); 0 never.
    grad_recompute_tokens: int = 1024
    # Logits kept by one score forward (batch x kept positions x vocab).
    max_logits_elements: int = 1 << 27
    # Tokens (rows x longest row) of one score forward on a CPU: a batch past
    # it runs as several forwards. On a CPU a forward over many tokens is
    # memory-bound (its elementwise ops over [tokens x hidden] tensors no
    # longer fit in the cache): 44 rows of 367 tokens of SmolLM2 in one
    # forward cost 1.1-1.35x per row what forwards of 4 rows cost
    # (docs/benchmarks.md, "CPU forwards"). A GPU wants the whole batch, so
    # nothing is split there. 0: never split.
    cpu_forward_tokens: int = 2048
    # Score rows of a causal LM share the forward of the base's leading
    # tokens they keep, where that saves enough (engine/prefix.py).
    share_prefixes: bool = True
    # Key/value caches held at once by one shared-prefix forward (rows x
    # sequence length x layers x 2 x kv width): its rows are split to fit.
    prefix_cache_bytes: int = 1 << 30
    # Tokens of texts tokenized and sent together by activations() (two
    # windows are in flight: one computing, one being assembled).
    activation_window_tokens: int = 16384


DEFAULT_LIMITS = Limits()

# The max_new_tokens of a Generate request that leaves it 0 / None. Not a cap:
# the cap is Limits.max_new_tokens.
MAX_NEW_TOKENS_WHEN_UNSET = 128
