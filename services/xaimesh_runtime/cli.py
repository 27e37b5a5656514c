"""The ``xaimesh`` command.

    xaimesh serve model [--port 0 --host 127.0.0.1 ...]
    xaimesh serve attribution|concept|labeling [service flags...]
    xaimesh version

``serve`` imports the service lazily and hands it the remaining arguments
(``xaimesh serve model --help`` shows the service's own flags). A service
whose package or dependencies are missing gets a message naming the extra
to install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["SERVICES", "main"]

# command -> (module with main(argv) -> int | None, pip extra)
SERVICES: dict[str, tuple[str, str]] = {
    "model": ("xaimesh_model_server.__main__", "model"),
    "attribution": ("xaimesh_attribution.__main__", "attribution"),
    "concept": ("xaimesh_concept.__main__", "concept"),
    "labeling": ("xaimesh_labeling.__main__", "labeling"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xaimesh")
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xaimesh", description="xaimesh: interpretability for language "
                                     "models as a mesh of gRPC services.")
    parser.add_argument("--version", action="version", version=f"xaimesh {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser("serve", help="run one service (model, attribution, concept, labeling)",
                                description="Run one xaimesh service; arguments after the service name are "
                                            "its own flags (see `xaimesh serve SERVICE --help`).",
                                add_help=True)
    serve.add_argument("service", choices=sorted(SERVICES), help="which service")
    serve.add_argument("args", nargs=argparse.REMAINDER, help="flags of the service")
    commands.add_parser("version", help="print the version")
    return parser


def _serve(service: str, argv: list[str]) -> int:
    module_name, extra = SERVICES[service]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        what = ("is not installed" if module_name.startswith(missing + ".") or missing == module_name
                else f"needs the module {missing!r}, which is not installed")
        print(f"xaimesh serve {service}: the {service} service {what}.\n"
              f"Install it with: pip install 'xaimesh[{extra}]'", file=sys.stderr)
        return 2
    result = module.main(argv)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `serve SERVICE ...`: everything after the service name belongs to it,
    # --help included, so dispatch before argparse sees those flags.
    if len(argv) >= 2 and argv[0] == "serve" and argv[1] in SERVICES:
        return _serve(argv[1], argv[2:])
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"xaimesh {_version()}")
        return 0
    return _serve(args.service, args.args)  # pragma: no cover - handled above


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
