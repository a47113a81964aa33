"""The ``fastpaca`` command: ``fastpaca serve`` and ``fastpaca version``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__
from .errors import ValidationError
from .settings import Settings

_TYPES: Mapping[str, Any] = {"int": int, "float": float}


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the HTTP API",
        description="Run the Fastpaca HTTP API. Every flag can also be set by its "
        "environment variable; flags win.",
        argument_default=argparse.SUPPRESS,
    )
    defaults = Settings()
    for f in Settings.fields():
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = "none" if default is None else default
        serve.add_argument(
            flag,
            dest=f.name,
            type=_TYPES.get(str(f.type), str),
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} [env {f.metadata['env']}; default: {shown}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastpaca",
        description="Fastpaca: context infrastructure for LLM apps.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("version", help="print the version and exit")
    _add_serve(commands)
    return parser


def serve(settings: Settings) -> int:
    from aiohttp import web

    from .http import create_app
    from .http.logs import configure_logging

    configure_logging(settings.log_level_number)
    log = logging.getLogger("fastpaca")
    log.info(
        "starting",
        extra={"fields": {"host": settings.host, "port": settings.port, "version": __version__}},
    )
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
        print=lambda text: log.info(str(text).strip()),
    )
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"fastpaca {__version__}")
        return 0
    if args.command == "serve":
        overrides = {k: v for k, v in vars(args).items() if k != "command"}
        try:
            settings = Settings.load(os.environ, overrides)
        except ValidationError as exc:
            parser.error(str(exc))
        return serve(settings)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
