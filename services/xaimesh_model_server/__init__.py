"""xaimesh model-server: the logic behind ModelService (see protos/xaimesh/v1/model.proto).

Plain modules that know nothing of gRPC; `server.py` adapts them:

- `loading`: load models (embedded default, hub ids, paths), `ModelRegistry`.
- `tokenization`: tokens with offsets, words and sentences (of texts, or of
  token ids: `tokenize_ids`).
- `engine/`: scores, gradients, generation, activations, one module per work
  kind with a registry from kind to runner (see `engine/__init__.py`).
- `batching`: cross-request dynamic batching (`DynamicBatcher`).
- `enums`: the contract's enums as IntEnums, built from the generated stubs.

Errors are `xaimesh_runtime.errors` (InvalidArgument, ...).
"""
