"""`xaimesh serve model` / `python -m xaimesh_model_server`: config and start-up."""

from __future__ import annotations

import dataclasses
import sys

from xaimesh_runtime.config import make_parser
from xaimesh_runtime.server import serve


def build_parser():
    parser = make_parser("model", description="xaimesh model-server: forward passes, target scores, gradients, "
                         "generation and activations of language models", default_port=50051,
                         default_metrics_port=9101)
    parser.add_option("--model", multiple=True, default=[],
                      help="model to load: SPEC[,key=value...] where SPEC is a Hugging Face id, a local path or "
                           "'default'; repeat for several (the first is the default model; none: the embedded "
                           "SmolLM2-135M-Instruct). Per-model keys: id=NAME (API id), dtype=float32|bfloat16|"
                           "float16|auto (overrides --dtype), device=cpu|cuda:N (overrides --device), "
                           "device_map=auto|cpu|cuda:N|{JSON module->device} (accelerate: shard over GPUs / "
                           "offload to CPU), max_memory={JSON device->size} e.g. '{\"0\":\"20GiB\",\"cpu\":"
                           "\"60GiB\"}' (implies device_map=auto), trust_remote_code=true (off by default: a "
                           "checkpoint that needs its own code is refused). Example: --model "
                           "Qwen/Qwen2.5-7B,dtype=bfloat16,device_map=auto --model ./my-clf,id=clf")
    parser.add_option("--device", help="cpu, cuda, cuda:1 for every model without its own device / device_map "
                                       "(default: cuda when present)")
    parser.add_option("--dtype", choices=["float32", "bfloat16", "float16", "auto"],
                      help="weights dtype of every model without its own dtype= (default float32; bfloat16 "
                           "recommended on GPU)")
    parser.add_option("--max-batch-tokens", type=int, default=16384,
                      help="padded tokens in one coalesced forward pass")
    parser.add_option("--max-batch-size", type=int, default=256, help="sequences in one forward pass")
    parser.add_option("--batch-wait-ms", type=float, default=2.0,
                      help="how long a forward pass waits for more work from other callers")
    parser.add_option("--max-queue-items", type=int, default=16384,
                      help="queued sequences before new requests get RESOURCE_EXHAUSTED")
    parser.add_option("--share-prefixes", type=bool, default=True,
                      help="score rows of a causal LM that keep the input's leading tokens share the forward of "
                           "that prefix (same scores; --no-share-prefixes runs every row in full)")
    parser.add_option("--grad-recompute-tokens", type=int, default=1024,
                      help="a gradient forward over more tokens than this keeps only each block's input and "
                           "recomputes the block in the backward pass (peak memory per token about 2x smaller on "
                           "SmolLM2, one more forward per target; same gradients); 0: never")
    parser.add_option("--cpu-forward-tokens", type=int, default=2048,
                      help="on a CPU, a score batch runs as forwards of at most this many padded tokens (a "
                           "forward over many tokens is memory-bound there; docs/benchmarks.md, \"CPU "
                           "forwards\"); 0: one forward per batch. Ignored on an accelerator")
    parser.add_option("--warm-cache-only", type=bool, default=False,
                      help="convert the embedded default model into the cache directory and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_config(argv)
    options = config.options
    if options.warm_cache_only:
        from .loading import embedded_default_path

        print(embedded_default_path(config.cache_dir))
        return 0
    from xaimesh_runtime.errors import ServiceError

    from .loading import parse_model_options
    from . import engine
    from .server import ModelServicer

    try:
        models = parse_model_options(options.model or None)
    except ServiceError as exc:
        build_parser().error(f"--model (XAIMESH_MODEL): {exc.message}")
    servicer = ModelServicer(
        models, device=options.device, dtype=options.dtype, cache_dir=config.cache_dir,
        batcher_options={"max_batch_tokens": options.max_batch_tokens, "max_batch_size": options.max_batch_size,
                         "max_wait_s": options.batch_wait_ms / 1000.0, "max_queue_items": options.max_queue_items},
        limits=dataclasses.replace(engine.DEFAULT_LIMITS, share_prefixes=options.share_prefixes,
                                  grad_recompute_tokens=options.grad_recompute_tokens,
                                  cpu_forward_tokens=options.cpu_forward_tokens))
    try:
        return serve(config, servicer.register, warmup=servicer.warm_up, name="model-server")
    finally:
        servicer.close()


if __name__ == "__main__":
    sys.exit(main())
