"""xaimesh model-server: the logic behind ModelService (see protos/xaimesh/v1/model.proto).

Plain modules that know nothing of gRPC; `server.py` adapts them:

- `loading`: load models (embedded default, hub ids, paths), `ModelRegistry`.
- `tokenization`: tokens with offsets, words and sentences.
- `engine`: scores, gradients, generation, activations.
- `batching`: cross-request dynamic batching (`DynamicBatcher`).
- `errors`: exceptions the adapter maps to gRPC status codes.
"""
