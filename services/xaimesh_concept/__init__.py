"""xaimesh concept service core: activation sets, concept methods, metrics,
top examples. Plain Python (numpy / torch); the gRPC adapter lives in
server.py and maps :mod:`xaimesh_concept.errors` to status codes."""
