"""TLS and mutual TLS with certificates made by the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from rt_echo_service import SERVICE
from xaimesh_runtime.client import make_channel, wait_for_health

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _leaf(d: Path, name: str, ext: str) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=xaimesh test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    _leaf(d, "server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "extendedKeyUsage=clientAuth\n")
    return d


def _echo(channel, payload=b"hello"):
    return channel.unary_unary(f"/{SERVICE}/Echo")(payload, timeout=5)


def test_tls(start_echo, certs):
    handle = start_echo(tls_cert=certs / "server.pem", tls_key=certs / "server.key", auth_token="tls-token")
    assert handle.wait_ready(5)
    with make_channel(handle.address, tls_ca=certs / "ca.pem", token="tls-token") as channel:
        assert _echo(channel) == b"hello"  # token as call credentials over TLS
    with make_channel(handle.address, tls_ca=(certs / "ca.pem").read_bytes()) as channel:
        wait_for_health(channel, timeout=5)  # health needs no token
        with pytest.raises(grpc.RpcError) as info:
            _echo(channel)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with make_channel(handle.address) as plaintext:
        with pytest.raises(grpc.RpcError) as info:
            _echo(plaintext)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(start_echo, certs):
    handle = start_echo(tls_cert=certs / "server.pem", tls_key=certs / "server.key",
                        tls_client_ca=certs / "ca.pem")
    with make_channel(handle.address, tls_ca=certs / "ca.pem", tls_cert=certs / "client.pem",
                      tls_key=certs / "client.key") as channel:
        assert _echo(channel) == b"hello"
    with make_channel(handle.address, tls_ca=certs / "ca.pem") as no_client_cert:
        with pytest.raises(grpc.RpcError) as info:
            _echo(no_client_cert)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError, match="given together"):
        make_channel(handle.address, tls_ca=certs / "ca.pem", tls_cert=certs / "client.pem")
