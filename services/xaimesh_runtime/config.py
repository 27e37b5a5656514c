"""Server configuration: common options, per-service options, env fallback.

Every option can be given as a command-line flag or as an environment
variable; a flag wins over the environment, the environment over the
default. The variable of ``--some-option`` is ``XAIMESH_SOME_OPTION``.

    parser = make_parser("model", description="xaimesh model-server")
    parser.add_option("--default-model", default="smollm2-135m-instruct",
                      help="model loaded at start")
    parser.add_option("--batch-wait-ms", type=float, default=5.0,
                      help="how long a batch waits for more work")
    parser.add_option("--openai-api-key", secret=True, help="...")
    parser.add_downstream("model-server", default="127.0.0.1:50051")
    config = parser.parse_config(argv)     # exits with status 2 on bad input
    config.port, config.options.batch_wait_ms, config.downstream("model-server")

Secret options (``secret=True``) also accept ``--NAME-file`` /
``XAIMESH_NAME_FILE`` (a file holding the value, e.g. a mounted Kubernetes
Secret), never appear in ``repr`` or :meth:`ServerConfig.describe`, and are
handed to the log redactor by :func:`xaimesh_runtime.server.serve`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_METRICS_PORTS",
    "DEFAULT_PORTS",
    "ConfigError",
    "Downstream",
    "ServerConfig",
    "ServiceArgumentParser",
    "env_name",
    "make_parser",
]

DEFAULT_PORTS = {"model": 50051, "attribution": 50052, "concept": 50053, "labeling": 50054}
DEFAULT_METRICS_PORTS = {"model": 9101, "attribution": 9102, "concept": 9103, "labeling": 9104}
ENV_PREFIX = "XAIMESH_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")
# gRPC message sizes are int32 byte counts.
MAX_MESSAGE_MB_LIMIT = 2047


class ConfigError(ValueError):
    """An option has a value the server cannot use. The message names it."""


def env_name(option: str) -> str:
    """``--batch-wait-ms`` / ``batch_wait_ms`` -> ``XAIMESH_BATCH_WAIT_MS``."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


@dataclasses.dataclass(frozen=True)
class Downstream:
    """How to reach another service: see :func:`xaimesh_runtime.client.connect`.
    ``address`` may name several replicas (``a:50051,b:50051`` or
    ``dns:///name:50051``): see :mod:`xaimesh_runtime.replicas`."""

    address: str
    token: str | None = dataclasses.field(default=None, repr=False)
    tls_ca: Path | None = None
    # A client certificate for a downstream that requires mutual TLS.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Calls in flight to one replica from this process at once (0 = no limit).
    max_in_flight: int = 0
    # How often dns:/// names in the address are resolved again.
    resolve_interval_s: float = 30.0


@dataclasses.dataclass
class ServerConfig:
    """Settings common to every xaimesh server.

    The dataclass defaults suit in-process use (tests): a free port on
    127.0.0.1 and no metrics endpoint. :func:`make_parser` applies the
    per-service production defaults (ports 5005x / 910x, host 0.0.0.0).
    Service-specific options live in ``options`` (an argparse Namespace).
    """

    service: str = "xaimesh"
    host: str = "127.0.0.1"
    port: int = 0
    # 0 = pick a free port, -1 = no metrics endpoint.
    metrics_port: int = -1
    max_message_mb: int = 64
    workers: int = 32
    auth_token: str | None = dataclasses.field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # When set, clients must present a certificate signed by this CA (mTLS).
    tls_client_ca: Path | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    grace_seconds: float = 20.0
    data_dir: Path | None = None
    cache_dir: Path | None = None
    # Written (JSON: port, metrics_port, pid) once the server is SERVING.
    ready_file: Path | None = None
    # > 0: close connections after this long so clients re-resolve and
    # spread over replicas (plus a grace of the same length for open calls).
    max_connection_age_s: float = 0.0
    # repr=False: service options may hold secrets (describe() masks them).
    options: argparse.Namespace = dataclasses.field(default_factory=argparse.Namespace, repr=False)
    # Names of secret entries in `options` and downstream specs.
    secret_options: tuple[str, ...] = ()
    downstreams: dict[str, Downstream] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tls_cert", "tls_key", "tls_client_ca", "data_dir", "cache_dir", "ready_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))

    # -- derived values -------------------------------------------------
    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    def data_path(self) -> Path:
        """``data_dir``, or the per-user data folder of this service."""
        if self.data_dir is not None:
            return self.data_dir
        import platformdirs

        return platformdirs.user_data_path("xaimesh") / self.service

    def cache_path(self) -> Path:
        """``cache_dir``, or the per-user cache folder of this service."""
        if self.cache_dir is not None:
            return self.cache_dir
        import platformdirs

        return platformdirs.user_cache_path("xaimesh") / self.service

    def downstream(self, name: str) -> Downstream:
        """The address / token / CA of a service declared with ``add_downstream``."""
        try:
            return self.downstreams[name]
        except KeyError:
            raise KeyError(f"no downstream {name!r} declared; known: {sorted(self.downstreams)}") from None

    def secrets(self) -> list[str]:
        """Every secret value in this config (for the log redactor)."""
        values = [self.auth_token] + [getattr(self.options, n, None) for n in self.secret_options]
        values += [d.token for d in self.downstreams.values()]
        return [v for v in values if isinstance(v, str) and v]

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary for the start-up log; secrets are masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("options", "secret_options", "downstreams"):
                continue
            value = getattr(self, f.name)
            if f.name == "auth_token":
                value = "***" if value else None
            out[f.name] = str(value) if isinstance(value, Path) else value
        for key, value in sorted(vars(self.options).items()):
            if key in self.secret_options:
                value = "***" if value else None
            elif isinstance(value, Path):
                value = str(value)
            out[key] = value
        for key, d in sorted(self.downstreams.items()):
            out[f"downstream.{key}"] = {
                "address": d.address,
                "token": "***" if d.token else None,
                "tls_ca": str(d.tls_ca) if d.tls_ca else None,
                "tls_cert": str(d.tls_cert) if d.tls_cert else None,
            }
        return out

    # -- validation -----------------------------------------------------
    def validate(self) -> ServerConfig:
        """Check values; raise :class:`ConfigError` naming the option at fault."""

        def bad(option: str, message: str) -> ConfigError:
            return ConfigError(f"--{option} ({env_name(option)}): {message}")

        if not self.host:
            raise bad("host", "must not be empty")
        if not 0 <= self.port <= 65535:
            raise bad("port", f"{self.port} is not a port number (0 = pick a free port)")
        if not -1 <= self.metrics_port <= 65535:
            raise bad("metrics-port", f"{self.metrics_port} is not a port number (0 = free port, -1 = disabled)")
        if not 1 <= self.max_message_mb <= MAX_MESSAGE_MB_LIMIT:
            raise bad("max-message-mb", f"{self.max_message_mb} must be between 1 and {MAX_MESSAGE_MB_LIMIT}")
        if self.workers < 1:
            raise bad("workers", f"{self.workers} must be at least 1")
        if self.grace_seconds < 0:
            raise bad("grace-seconds", f"{self.grace_seconds} must not be negative")
        if self.max_connection_age_s < 0:
            raise bad("max-connection-age-s", f"{self.max_connection_age_s} must not be negative (0 = off)")
        if self.log_level.upper() not in LOG_LEVELS:
            raise bad("log-level", f"{self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        self.log_level = self.log_level.upper()
        if self.log_format not in LOG_FORMATS:
            raise bad("log-format", f"{self.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
        if self.auth_token is not None and not self.auth_token.strip():
            raise bad("auth-token", "is empty")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise bad("tls-cert", "--tls-cert and --tls-key must be given together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise bad("tls-client-ca", "mutual TLS needs --tls-cert and --tls-key too")
        for option in ("tls-cert", "tls-key", "tls-client-ca"):
            path = getattr(self, option.replace("-", "_"))
            if path is not None and not path.is_file():
                raise bad(option, f"{path} is not a readable file")
        return self


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


@dataclasses.dataclass
class _Option:
    dest: str
    flag: str
    env: str
    type: Callable[[str], Any]
    default: Any
    choices: Sequence[Any] | None
    multiple: bool
    secret: bool
    common: bool


class ServiceArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose options fall back to ``XAIMESH_*`` variables.

    Use :meth:`add_option` (not ``add_argument``) for anything that should
    have an environment fallback, then :meth:`parse_config`.
    """

    def __init__(self, service: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self._options: dict[str, _Option] = {}
        self._downstreams: dict[str, tuple[str, str]] = {}
        self._service_group: Any = None  # created on first use, after the common options

    def add_option(
        self,
        flag: str,
        *,
        type: Callable[[str], Any] = str,  # noqa: A002 - mirrors argparse
        default: Any = None,
        help: str = "",  # noqa: A002 - mirrors argparse
        choices: Sequence[Any] | None = None,
        multiple: bool = False,
        secret: bool = False,
        env: str | None = None,
        _common: bool = False,
        _group: Any = None,
    ) -> None:
        """Declare ``--flag`` with env fallback ``XAIMESH_FLAG`` (or ``env``).

        ``type=bool`` gives ``--flag/--no-flag``. ``multiple=True`` makes a
        list: the flag may repeat and the variable is comma-separated.
        ``secret=True`` hides the value and adds ``--flag-file``.
        """
        if not flag.startswith("--"):
            raise ValueError(f"options are long flags like '--name', got {flag!r}")
        dest = flag[2:].replace("-", "_")
        env = env or env_name(flag)
        if _group is None and self._service_group is None:
            self._service_group = self.add_argument_group(f"{self.service} options")
        group = _group or self._service_group
        shown = "***" if secret and default else default
        extra = f"env {env}" + (f"; default: {shown}" if shown not in (None, [], "") else "")
        full_help = f"{help} [{extra}]".replace("%", "%%").strip()
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": full_help}
        if type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = type
            if choices is not None:
                kwargs["choices"] = choices
            if multiple:
                kwargs["action"] = "append"
            if choices is None:
                kwargs["metavar"] = {int: "N", float: "NUM", Path: "PATH"}.get(type, "VALUE" if secret else dest.upper())
        group.add_argument(flag, **kwargs)
        if secret:
            group.add_argument(
                flag + "-file", dest=dest + "_file", type=Path, default=None, metavar="PATH",
                help=f"read {flag} from this file [env {env}_FILE]",
            )
        self._options[dest] = _Option(dest, flag, env, type, default, choices, multiple, secret, _common)

    def add_downstream(self, name: str, *, default: str, help: str = "") -> None:  # noqa: A002
        """Declare another service this one calls: ``--NAME-address``,
        ``--NAME-token`` (secret; defaults to this server's own token) and
        ``--NAME-tls-ca``. Read back with ``config.downstream(NAME)``."""
        what = help or f"the {name}"
        # Env: XAIMESH_MODEL_SERVER, XAIMESH_CONCEPT_SERVICE — the same names the SDK reads.
        self.add_option(f"--{name}-address", default=default,
                        help=f"address of {what}: host:port, or several replicas as a comma-separated list "
                             f"and / or dns:///name:port (every address the name resolves to, e.g. a "
                             f"Kubernetes headless Service), balanced round-robin", env=env_name(name))
        self.add_option(f"--{name}-max-in-flight", type=int, default=0,
                        help=f"calls in flight to one replica of {what} from this process at once; more wait "
                             f"for a free replica (0 = no limit)")
        self.add_option(f"--{name}-resolve-interval-s", type=float, default=30.0,
                        help=f"how often dns:/// names of --{name}-address are resolved again")
        self.add_option(f"--{name}-token", secret=True,
                        help=f"bearer token for {what} (default: this server's --auth-token)")
        self.add_option(f"--{name}-tls-ca", type=Path,
                        help=f"CA certificate to reach {what} over TLS (default: plaintext)")
        self.add_option(f"--{name}-tls-cert", type=Path,
                        help=f"client certificate (PEM) for {what} when it requires mutual TLS")
        self.add_option(f"--{name}-tls-key", type=Path, help=f"private key (PEM) of --{name}-tls-cert")
        self._downstreams[name] = (name.replace("-", "_"), f"--{name}")

    # -- resolution -----------------------------------------------------
    def _resolve(self, opt: _Option, flags: argparse.Namespace, environ: Mapping[str, str]) -> Any:
        value = getattr(flags, opt.dest)
        if opt.secret:
            file_flag = getattr(flags, opt.dest + "_file")
            if value is not None and file_flag is not None:
                raise ConfigError(f"give only one of {opt.flag} and {opt.flag}-file")
            if value is None and file_flag is not None:
                return self._read_secret(file_flag, f"{opt.flag}-file")
            if value is None:
                env_value, env_file = environ.get(opt.env), environ.get(opt.env + "_FILE")
                if env_value and env_file:
                    raise ConfigError(f"set only one of {opt.env} and {opt.env}_FILE")
                if env_file:
                    return self._read_secret(Path(env_file), f"{opt.env}_FILE")
        if value is not None:
            return value
        raw = environ.get(opt.env)
        if raw is None or (raw == "" and opt.type is not str):
            return list(opt.default) if isinstance(opt.default, list) else opt.default
        try:
            if opt.type is bool:
                return _parse_bool(raw)
            if opt.multiple:
                items = [opt.type(p.strip()) for p in raw.split(",") if p.strip()]
                for item in items:
                    self._check_choice(opt, item, raw)
                return items
            converted = opt.type(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{opt.env}={raw!r}: {exc}") from None
        self._check_choice(opt, converted, raw)
        return converted

    @staticmethod
    def _check_choice(opt: _Option, value: Any, raw: str) -> None:
        if opt.choices is not None and value not in opt.choices:
            choices = ", ".join(map(str, opt.choices))
            raise ConfigError(f"{opt.env}={raw!r}: not one of {choices}")

    @staticmethod
    def _read_secret(path: Path, source: str) -> str:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
        if not text:
            raise ConfigError(f"{source}: {path} is empty")
        return text

    def load_config(self, argv: Sequence[str] | None = None,
                    environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Parse and validate; raise :class:`ConfigError` (argparse itself
        still exits on unknown flags or bad flag values)."""
        environ = os.environ if environ is None else environ
        flags = self.parse_args(argv)
        common: dict[str, Any] = {}
        extra = argparse.Namespace()
        secrets: list[str] = []
        for opt in self._options.values():
            value = self._resolve(opt, flags, environ)
            if opt.common:
                common[opt.dest] = value
            else:
                setattr(extra, opt.dest, value)
                if opt.secret:
                    secrets.append(opt.dest)
        downstreams = {}
        for name, (dest, _flag) in self._downstreams.items():
            token = getattr(extra, dest + "_token") or common.get("auth_token")
            cert, key = getattr(extra, dest + "_tls_cert"), getattr(extra, dest + "_tls_key")
            if (cert is None) != (key is None):
                raise ConfigError(f"--{name}-tls-cert and --{name}-tls-key must be given together")
            max_in_flight = getattr(extra, dest + "_max_in_flight")
            if max_in_flight < 0:
                raise ConfigError(f"--{name}-max-in-flight must be 0 (no limit) or more; got {max_in_flight}")
            resolve_interval = getattr(extra, dest + "_resolve_interval_s")
            if resolve_interval <= 0:
                raise ConfigError(f"--{name}-resolve-interval-s must be positive; got {resolve_interval}")
            downstreams[name] = Downstream(getattr(extra, dest + "_address"), token,
                                           getattr(extra, dest + "_tls_ca"), cert, key, max_in_flight,
                                           resolve_interval)
        config = ServerConfig(service=self.service, options=extra,
                              secret_options=tuple(secrets), downstreams=downstreams, **common)
        return config.validate()

    def parse_config(self, argv: Sequence[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Like :meth:`load_config`, but reports errors the argparse way
        (usage + message on stderr, exit status 2)."""
        try:
            return self.load_config(argv, environ)
        except ConfigError as exc:
            self.error(str(exc))


def make_parser(service: str, *, description: str | None = None,
                default_port: int | None = None, default_metrics_port: int | None = None,
                prog: str | None = None) -> ServiceArgumentParser:
    """A parser with the common server options of ``service``.

    ``service`` is one of model / attribution / concept / labeling (whose
    default ports are fixed) or any other name with explicit default ports.
    """
    port = default_port if default_port is not None else DEFAULT_PORTS.get(service)
    metrics = default_metrics_port if default_metrics_port is not None else DEFAULT_METRICS_PORTS.get(service, -1)
    if port is None:
        raise ValueError(f"no default port for service {service!r}: pass default_port")
    parser = ServiceArgumentParser(service, prog=prog or f"xaimesh serve {service}",
                                   description=description)
    group = parser.add_argument_group("server options (common to every xaimesh service)")

    def common(flag: str, **kwargs: Any) -> None:
        parser.add_option(flag, _common=True, _group=group, **kwargs)

    common("--host", default="0.0.0.0", help="interface to bind (127.0.0.1 for local use only)")
    common("--port", type=int, default=port, help="gRPC port (0 = pick a free port)")
    common("--metrics-port", type=int, default=metrics,
           help="Prometheus /metrics port (0 = free port, -1 = disabled)")
    common("--max-message-mb", type=int, default=64, help="largest gRPC message sent or received, in MiB")
    common("--workers", type=int, default=32, help="gRPC worker threads (concurrent calls)")
    common("--auth-token", secret=True,
           help="require 'authorization: Bearer <token>' on every call (health and reflection stay open)")
    common("--tls-cert", type=Path, help="PEM certificate chain: serve TLS")
    common("--tls-key", type=Path, help="PEM private key of --tls-cert")
    common("--tls-client-ca", type=Path, help="PEM CA: require client certificates it signed (mTLS)")
    common("--log-level", type=str.upper, default="INFO", choices=LOG_LEVELS, help="log level")
    common("--log-format", default="text", choices=LOG_FORMATS, help="json lines or text")
    common("--grace-seconds", type=float, default=20.0,
           help="on SIGTERM, how long open calls may finish before they are cancelled")
    common("--data-dir", type=Path, help="where persistent state is kept (default: per-user data dir)")
    common("--cache-dir", type=Path, help="where caches are kept (default: per-user cache dir)")
    common("--ready-file", type=Path,
           help="once serving, write {port, metrics_port, pid} as JSON to this file")
    common("--max-connection-age-s", type=float, default=0.0,
           help="close client connections after this long so they spread over replicas (0 = never)")
    return parser
