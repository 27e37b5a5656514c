"""Generated protobuf and gRPC stubs of the xaimesh.v1 contracts (make protos)."""
