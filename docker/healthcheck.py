#!/usr/bin/env python3
"""gRPC health check of a local xaimesh service, for Docker HEALTHCHECK and
Kubernetes exec probes.

Exit 0 when grpc.health.v1.Health/Check answers SERVING, 1 otherwise. It uses
the same settings as the server it checks, so it keeps working when TLS,
mTLS or a bearer token are turned on (which Kubernetes' native gRPC probes
cannot do):

  XAIMESH_PORT                      port to check (default 50051)
  XAIMESH_HEALTHCHECK_HOST          host to dial (default 127.0.0.1)
  XAIMESH_HEALTHCHECK_SERVICE       health service name (default "": the server)
  XAIMESH_HEALTHCHECK_TIMEOUT       seconds (default 4)
  XAIMESH_TLS_CERT / XAIMESH_TLS_KEY  when set, the server speaks TLS: dial with
                                    TLS, trusting XAIMESH_HEALTHCHECK_CA
                                    (default: the server's own certificate
                                    chain, which holds for self-signed and for
                                    chains that include their CA)
  XAIMESH_TLS_CLIENT_CA             when set (mTLS), present a client
                                    certificate: XAIMESH_HEALTHCHECK_CLIENT_CERT
                                    / _KEY, default the server's own pair
  XAIMESH_HEALTHCHECK_SERVER_NAME   name to verify in the server certificate
                                    (default "localhost")
  XAIMESH_AUTH_TOKEN / XAIMESH_AUTH_TOKEN_FILE  sent as a bearer token

Usage: healthcheck.py [--port N] [--service NAME] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import sys


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def _token() -> str | None:
    token = os.environ.get("XAIMESH_AUTH_TOKEN", "").strip()
    if not token and os.environ.get("XAIMESH_AUTH_TOKEN_FILE"):
        try:
            token = (_read(os.environ["XAIMESH_AUTH_TOKEN_FILE"]) or b"").decode().strip()
        except OSError:
            token = ""
    return token or None


def check(port: int, service: str, timeout: float, verbose: bool) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    host = os.environ.get("XAIMESH_HEALTHCHECK_HOST", "127.0.0.1")
    target = f"{host}:{port}"
    cert = os.environ.get("XAIMESH_TLS_CERT")
    key = os.environ.get("XAIMESH_TLS_KEY")
    if cert and key:
        root = _read(os.environ.get("XAIMESH_HEALTHCHECK_CA")) or _read(cert)
        client_key = client_cert = None
        if os.environ.get("XAIMESH_TLS_CLIENT_CA"):
            client_cert = _read(os.environ.get("XAIMESH_HEALTHCHECK_CLIENT_CERT") or cert)
            client_key = _read(os.environ.get("XAIMESH_HEALTHCHECK_CLIENT_KEY") or key)
        creds = grpc.ssl_channel_credentials(root, client_key, client_cert)
        name = os.environ.get("XAIMESH_HEALTHCHECK_SERVER_NAME", "localhost")
        channel = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", name)])
    else:
        channel = grpc.insecure_channel(target)
    metadata = []
    token = _token()
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    try:
        with channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=metadata
            )
    except grpc.RpcError as err:
        if verbose:
            print(f"{target}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if verbose:
        print(f"{target} {service or '(server)'}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gRPC health check of a local xaimesh service")
    parser.add_argument("--port", type=int, default=int(os.environ.get("XAIMESH_PORT", "50051")))
    parser.add_argument("--service", default=os.environ.get("XAIMESH_HEALTHCHECK_SERVICE", ""))
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("XAIMESH_HEALTHCHECK_TIMEOUT", "4")))
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    try:
        return check(args.port, args.service, args.timeout, args.verbose)
    except Exception as exc:  # a broken probe must read as unhealthy, not crash loudly
        if args.verbose:
            print(f"health check failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
