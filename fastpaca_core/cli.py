"""The ``fastpaca`` command: ``fastpaca serve`` and ``fastpaca version``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import FastpacaError, ValidationError
from .settings import Settings

if TYPE_CHECKING:
    import asyncio

_TYPES: Mapping[str, Any] = {"int": int, "float": float}


def _add_serve(commands: Any) -> argparse.ArgumentParser:
    serve: argparse.ArgumentParser = commands.add_parser(
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
    return serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastpaca",
        description="Fastpaca: context infrastructure for LLM apps.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("version", help="print the version and exit")
    parser.set_defaults(serve_parser=_add_serve(commands))
    return parser


def _setting_error(exc: ValidationError) -> str:
    """A bad setting, named as the user gave it: its flag and its variable
    (the value may have come from either), not the field's internal name."""
    names = {f.name: f for f in Settings.fields()}
    field = names.get(exc.field)
    if field is None:
        return str(exc)
    flag = "--" + field.name.replace("_", "-")
    return f"{flag} ({field.metadata['env']}): {exc.reason}"


def serve(settings: Settings) -> int:
    """Run the server: in this process, or in ``--workers`` processes sharing the port."""
    workers = settings.workers or os.cpu_count() or 1
    if workers == 1:
        return _serve_app(settings)
    return _supervise(settings, workers)


def _serve_app(
    settings: Settings, worker: int | None = None, parent: int = 0, opened: Any = None
) -> int:
    """Run the app here until SIGTERM / SIGINT.

    A worker (``worker`` set) is a child of pid ``parent``; it sets the event
    ``opened``, if given, once its store is open (migrated).
    """

    from fastpaca_proxy import install_proxy

    from .http import create_app
    from .http.logs import configure_logging
    from .http.runner import run

    configure_logging(settings.log_level_number)
    if worker is not None:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WorkerTag(worker))
    log = logging.getLogger("fastpaca")
    log.info(
        "starting",
        extra={"fields": {"host": settings.host, "port": settings.port, "version": __version__}},
    )
    try:
        app = install_proxy(create_app(settings))
        if worker is not None:
            app.on_startup.append(functools.partial(_exit_with_parent, parent))
        app.on_startup.append(_tune_gc)
        if opened is not None:  # after the store's startup: on_startup runs in order
            app.on_startup.append(functools.partial(_set_event, opened))
        loop, loop_name = new_event_loop(settings.event_loop, settings.on_postgres)
        log.info("event loop", extra={"fields": {"event_loop": loop_name}})
        run(
            app,
            loop=loop,
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout,
            print=lambda text: log.info(str(text).strip()),
            reuse_port=True if worker is not None else None,
        )
    except FastpacaError as exc:  # the store cannot be opened, a bad keys file...
        # one log line an operator can read, not a traceback; the exit code says it failed
        log.error("cannot start", extra={"fields": {"error": exc.code, "reason": str(exc)}})
        return 1
    log.info("stopped")
    return 0


def new_event_loop(choice: str, on_postgres: bool) -> tuple[asyncio.AbstractEventLoop, str]:
    """The loop ``serve`` runs on: ``choice``, where ``auto`` is uvloop on the
    embedded stores (SQLite, memory) when it is installed, and asyncio's own on
    PostgreSQL.

    uvloop runs the sockets and the loop's own bookkeeping in C: in callgrind
    counts of the whole server over the same 640 HTTP appends (64 clients, on
    SQLite), 927,460 instructions per append on asyncio's loop, 822,514 on
    uvloop (-11%). On PostgreSQL (asyncpg) it had the same throughput but a
    longer tail: 64 clients, ``--workers 2``, p99 120-168 ms against 67-97 ms
    (three A/B pairs; asyncio's loop on the same code: 83 ms), so ``auto``
    leaves it out there.
    """
    import asyncio

    if choice == "auto" and on_postgres:
        choice = "asyncio"
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ValidationError("event_loop", "uvloop is not installed") from None
        else:
            return uvloop.new_event_loop(), "uvloop"
    return asyncio.new_event_loop(), "asyncio"


# -- several worker processes ---------------------------------------------------
#
# The parent reserves the port with a bound (not listening) SO_REUSEPORT socket,
# so port 0 resolves once and a restarted worker gets the same port; each worker
# listens on its own SO_REUSEPORT socket and the kernel spreads connections over
# them. Workers run in their own process group, so a terminal's Ctrl-C reaches
# the parent only, which sends each worker exactly one SIGTERM (a second signal
# would cut aiohttp's graceful shutdown short).

_MIN_UPTIME = 10.0  # a worker that dies sooner is not restarted: the parent gives up
_POLL = 0.25


class _WorkerTag(logging.Filter):
    """Adds ``worker`` (index) and ``pid`` to every log line of a worker."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self._fields = {"worker": worker, "pid": os.getpid()}

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        record.fields = {**fields, **self._fields} if isinstance(fields, dict) else self._fields
        return True


async def _exit_with_parent(parent: int, app: Any) -> None:
    """A worker whose parent died (SIGKILL, say) shuts itself down gracefully."""
    import asyncio

    async def watch() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    task = asyncio.get_running_loop().create_task(watch())

    async def stop(app: Any) -> None:
        task.cancel()

    app.on_cleanup.append(stop)


async def _tune_gc(app: Any) -> None:
    """Once started: move what start-up allocated (code, the token encoding's
    tables) out of the collector's sight, and collect the young generation less
    often. Full collections then scan far fewer objects: in A/B runs of 64
    clients appending, p99 fell (median of 4: ~89 ms against ~130 ms) with the
    same throughput."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def _set_event(event: Any, app: Any) -> None:
    event.set()


def _worker_main(settings: Settings, worker: int, parent: int, opened: Any) -> None:
    os.setpgid(0, 0)
    sys.exit(_serve_app(settings, worker, parent, opened))


def _reserve_port(host: str, port: int) -> socket.socket:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValidationError("workers", "more than one worker needs SO_REUSEPORT (Linux, BSD)")
    from .http.runner import listen_error

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        raise listen_error(host, port, exc) from exc
    return sock


def _supervise(settings: Settings, count: int) -> int:
    """Start ``count`` workers, restart one that dies, forward SIGTERM / SIGINT."""
    import multiprocessing
    import multiprocessing.connection
    import time
    from multiprocessing.process import BaseProcess

    from .http.logs import configure_logging
    from .tokens import load_encoding

    configure_logging(settings.log_level_number)
    log = logging.getLogger("fastpaca")
    # import the server and load the token encoding once: forked workers share the pages
    import fastpaca_proxy  # noqa: F401

    from . import http  # noqa: F401

    load_encoding()
    try:
        reserved = _reserve_port(settings.host, settings.port)
    except FastpacaError as exc:  # the port is taken, the host does not resolve...
        log.error("cannot start", extra={"fields": {"error": exc.code, "reason": str(exc)}})
        return 1
    settings = dataclasses.replace(settings, port=reserved.getsockname()[1], workers=1)
    context = (  # fork shares the imported code and the encoding with the workers
        multiprocessing.get_context("fork")
        if sys.platform == "linux"
        else multiprocessing.get_context("spawn")
    )
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    workers: dict[int, tuple[BaseProcess, float]] = {}

    def start(index: int, opened: Any = None) -> None:
        process = context.Process(
            target=_worker_main,
            args=(settings, index, os.getpid(), opened),
            name=f"fastpaca-worker-{index}",
        )
        process.start()
        workers[index] = (process, time.monotonic())

    log.info(
        "starting workers",
        extra={"fields": {"host": settings.host, "port": settings.port, "workers": count}},
    )
    failed = False
    try:
        # the first worker opens (creates, migrates) the store alone, then the rest start
        first_opened = context.Event()
        start(0, first_opened)
        while not first_opened.wait(_POLL):
            if stopping or not workers[0][0].is_alive():
                break
        for index in range(1, count):
            if first_opened.is_set() and not stopping:
                start(index)
        while not stopping and not failed:
            sentinels = [process.sentinel for process, _ in workers.values()]
            multiprocessing.connection.wait(sentinels, timeout=_POLL)
            for index, (process, started) in list(workers.items()):
                if process.is_alive() or stopping:
                    continue
                process.join()
                uptime = time.monotonic() - started
                fields = {"worker": index, "exitcode": process.exitcode, "uptime_s": uptime}
                if uptime < _MIN_UPTIME:
                    log.error("worker failed at start; stopping", extra={"fields": fields})
                    failed = True
                    break
                log.error("worker died; restarting it", extra={"fields": fields})
                start(index)
    finally:
        clean = _stop_workers([p for p, _ in workers.values()], settings.shutdown_timeout + 10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserved.close()
    log.info("stopped")
    return 0 if clean and not failed else 1


def _stop_workers(processes: Sequence[Any], grace: float) -> bool:
    """SIGTERM each live worker, wait ``grace`` seconds, then SIGKILL; True if all exit 0."""
    import time

    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    clean = True
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
        clean = clean and process.exitcode == 0
    return clean


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"fastpaca {__version__}")
        return 0
    if args.command == "serve":
        skip = ("command", "serve_parser")
        overrides = {k: v for k, v in vars(args).items() if k not in skip}
        try:
            settings = Settings.load(os.environ, overrides)
        except ValidationError as exc:  # usage and exit code 2, as for a bad flag
            args.serve_parser.error(_setting_error(exc))
        return serve(settings)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
