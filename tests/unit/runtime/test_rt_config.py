"""Config: flag > env > default, validation messages, secrets, downstreams."""

from __future__ import annotations

from pathlib import Path

import pytest

from xaimesh_runtime.config import ConfigError, ServerConfig, env_name, make_parser


def parse(argv=(), env=None, service="model", extra=None):
    parser = make_parser(service)
    if extra:
        extra(parser)
    return parser.load_config(list(argv), env or {})


def test_defaults_per_service():
    for service, port, metrics in [("model", 50051, 9101), ("attribution", 50052, 9102),
                                   ("concept", 50053, 9103), ("labeling", 50054, 9104)]:
        c = parse(service=service)
        assert (c.service, c.port, c.metrics_port) == (service, port, metrics)
    c = parse()
    assert c.host == "0.0.0.0" and c.max_message_mb == 64 and c.grace_seconds == 20
    assert c.log_format == "text" and c.log_level == "INFO" and c.auth_token is None
    assert c.max_message_bytes == 64 * 1024 * 1024


def test_flag_beats_env_beats_default():
    env = {"XAIMESH_PORT": "6000", "XAIMESH_HOST": "127.0.0.1", "XAIMESH_METRICS_PORT": "-1",
           "XAIMESH_GRACE_SECONDS": "2.5", "XAIMESH_LOG_FORMAT": "json", "XAIMESH_LOG_LEVEL": "debug"}
    c = parse(["--port", "7000"], env)
    assert c.port == 7000  # flag
    assert c.host == "127.0.0.1" and c.metrics_port == -1 and c.grace_seconds == 2.5  # env
    assert c.log_format == "json" and c.log_level == "DEBUG"
    assert c.workers == 32  # default


def test_service_options_with_env_fallback():
    def extra(p):
        p.add_option("--batch-wait-ms", type=float, default=5.0, help="wait")
        p.add_option("--device", choices=["auto", "cpu", "cuda"], default="auto")
        p.add_option("--compile", type=bool, default=False)
        p.add_option("--model", multiple=True, default=[])

    c = parse([], {}, extra=extra)
    assert vars(c.options) == {"batch_wait_ms": 5.0, "device": "auto", "compile": False, "model": []}
    env = {"XAIMESH_BATCH_WAIT_MS": "2", "XAIMESH_DEVICE": "cpu", "XAIMESH_COMPILE": "yes",
           "XAIMESH_MODEL": "gpt2, smollm"}
    c = parse([], env, extra=extra)
    assert vars(c.options) == {"batch_wait_ms": 2.0, "device": "cpu", "compile": True, "model": ["gpt2", "smollm"]}
    c = parse(["--batch-wait-ms", "9", "--no-compile", "--model", "a", "--model", "b"], env, extra=extra)
    assert (c.options.batch_wait_ms, c.options.compile, c.options.model) == (9.0, False, ["a", "b"])
    assert env_name("--batch-wait-ms") == "XAIMESH_BATCH_WAIT_MS"


@pytest.mark.parametrize("env,message", [
    ({"XAIMESH_PORT": "abc"}, "XAIMESH_PORT='abc': invalid literal"),
    ({"XAIMESH_PORT": "70000"}, "--port (XAIMESH_PORT): 70000 is not a port number"),
    ({"XAIMESH_METRICS_PORT": "-2"}, "--metrics-port (XAIMESH_METRICS_PORT): -2 is not a port number"),
    ({"XAIMESH_MAX_MESSAGE_MB": "0"}, "--max-message-mb (XAIMESH_MAX_MESSAGE_MB): 0 must be between 1 and 2047"),
    ({"XAIMESH_WORKERS": "0"}, "--workers (XAIMESH_WORKERS): 0 must be at least 1"),
    ({"XAIMESH_LOG_FORMAT": "xml"}, "XAIMESH_LOG_FORMAT='xml': not one of json, text"),
    ({"XAIMESH_GRACE_SECONDS": "-1"}, "--grace-seconds (XAIMESH_GRACE_SECONDS): -1.0 must not be negative"),
    ({"XAIMESH_TLS_CERT": "/nonexistent.pem"}, "--tls-cert and --tls-key must be given together"),
    ({"XAIMESH_TLS_CERT": "/nonexistent.pem", "XAIMESH_TLS_KEY": "/nonexistent.key"},
     "--tls-cert (XAIMESH_TLS_CERT): /nonexistent.pem is not a readable file"),
])
def test_invalid_values_are_named(env, message):
    with pytest.raises(ConfigError) as info:
        parse([], env)
    assert message in str(info.value)


def test_bad_flag_exits_with_usage(capsys):
    parser = make_parser("model")
    with pytest.raises(SystemExit) as info:
        parser.parse_config(["--port", "70000"], {})
    assert info.value.code == 2
    assert "70000 is not a port number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_config(["--port", "x"], {})


def test_auth_token_from_env_file_and_flag(tmp_path: Path):
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cret-from-file\n")
    assert parse([], {"XAIMESH_AUTH_TOKEN": "envtoken"}).auth_token == "envtoken"
    assert parse([], {"XAIMESH_AUTH_TOKEN_FILE": str(secret_file)}).auth_token == "s3cret-from-file"
    c = parse(["--auth-token-file", str(secret_file)], {"XAIMESH_AUTH_TOKEN": "envtoken"})
    assert c.auth_token == "s3cret-from-file"  # a flag wins over env
    with pytest.raises(ConfigError, match="set only one of XAIMESH_AUTH_TOKEN and XAIMESH_AUTH_TOKEN_FILE"):
        parse([], {"XAIMESH_AUTH_TOKEN": "a", "XAIMESH_AUTH_TOKEN_FILE": str(secret_file)})
    with pytest.raises(ConfigError, match="cannot read"):
        parse([], {"XAIMESH_AUTH_TOKEN_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        parse(["--auth-token-file", str(tmp_path / "empty")])


def test_secrets_never_shown():
    def extra(p):
        p.add_option("--openai-api-key", secret=True, help="key")

    c = parse(["--auth-token", "tok-123456"], {"XAIMESH_OPENAI_API_KEY": "sk-abcdefgh12345"}, extra=extra)
    assert "tok-123456" not in repr(c) and "sk-abcdefgh12345" not in str(c.describe())
    assert c.describe()["auth_token"] == "***" and c.describe()["openai_api_key"] == "***"
    assert set(c.secrets()) == {"tok-123456", "sk-abcdefgh12345"}
    help_text = make_parser("model").format_help()
    assert "XAIMESH_AUTH_TOKEN_FILE" in help_text and "XAIMESH_PORT" in help_text


def test_downstreams_default_to_own_token():
    def extra(p):
        p.add_downstream("model-server", default="127.0.0.1:50051")

    c = parse([], {"XAIMESH_AUTH_TOKEN": "shared"}, service="attribution", extra=extra)
    d = c.downstream("model-server")
    assert (d.address, d.token, d.tls_ca) == ("127.0.0.1:50051", "shared", None)
    assert "shared" not in repr(d)
    c = parse(["--model-server-address", "model:50051"], {"XAIMESH_MODEL_SERVER_TOKEN": "other"},
              service="attribution", extra=extra)
    assert (c.downstream("model-server").address, c.downstream("model-server").token) == ("model:50051", "other")
    with pytest.raises(KeyError, match="no downstream"):
        c.downstream("concept")


def test_downstream_client_certificate_for_mutual_tls(tmp_path):
    def extra(p):
        p.add_downstream("model-server", default="127.0.0.1:50051")

    c = parse(["--model-server-tls-ca", "ca.pem", "--model-server-tls-cert", "client.pem"],
              {"XAIMESH_MODEL_SERVER_TLS_KEY": "client.key"}, service="concept", extra=extra)
    d = c.downstream("model-server")
    assert (str(d.tls_ca), str(d.tls_cert), str(d.tls_key)) == ("ca.pem", "client.pem", "client.key")
    assert c.describe()["downstream.model-server"]["tls_cert"] == "client.pem"
    with pytest.raises(ConfigError, match="must be given together"):
        parse(["--model-server-tls-cert", "client.pem"], {}, service="concept", extra=extra)


def test_dataclass_defaults_and_paths(tmp_path):
    c = ServerConfig(service="x", data_dir=str(tmp_path)).validate()
    assert (c.host, c.port, c.metrics_port) == ("127.0.0.1", 0, -1)
    assert c.data_path() == tmp_path and c.cache_path().name == "x"
    with pytest.raises(ConfigError, match="mutual TLS needs"):
        ServerConfig(tls_client_ca=tmp_path).validate()
