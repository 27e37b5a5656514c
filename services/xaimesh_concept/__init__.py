"""xaimesh concept service core: activation sets, concept methods, metrics,
top examples. Plain Python (numpy / torch); the gRPC adapter lives in
server.py (errors: the runtime's ``xaimesh_runtime.errors`` family, mapped by
``map_errors``) and the model-server client in downstream.py."""
