"""xaimesh_contracts: what both sides of the wire share, and nothing else.

- ``xaimesh_contracts.v1``: the generated protobuf / gRPC stubs of
  ``protos/xaimesh/v1`` (``make protos``);
- ``tensors``: numpy / torch <-> ``Tensor`` and chunked streams;
- ``enums``: reading and writing proto enums by number, short or full name;
- ``status``: ``google.rpc.Status`` with BadRequest field violations, encoded and decoded;
- ``channels``: channels with TLS / bearer tokens, and waiting for health.

The SDK (``xaimesh``) and every service depend on this package; it depends
on neither. ``tests/unit/test_import_rules.py`` holds that.
"""
