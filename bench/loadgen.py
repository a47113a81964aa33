"""The Python load generator: its own process, an asyncio aiohttp client.

Reads a JSON spec on stdin, drives the server, prints a JSON result on stdout::

    {"base": "http://127.0.0.1:4000", "clients": 64,
     "requests": [{"method": "POST", "path": "/v1/contexts/a/messages",
                   "body": "{...}", "expect": 201}, ...],
     "duration": 10, "total": null, "warmup": 2, "cycle": 0}

Client ``i`` sends template ``i % len(requests)``; with ``cycle`` = k it moves
to the next template every k requests (one client reading several contexts in
interleaved rounds). ``{n}`` in a body becomes the client's request counter.
The run stops after ``duration`` seconds or ``total`` requests, whichever
comes first; ``warmup`` seconds of the same load come first and are not
counted. Latencies are per request, in ms, overall and per template.

``wrk`` (C) costs the server less CPU on a small machine; this generator is
the fallback, and the one used for count-based and interleaved loads.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from typing import Any

import aiohttp

from ._support import summary


class _Run:
    def __init__(self, spec: dict[str, Any], counting: bool) -> None:
        self.spec = spec
        self.counting = counting
        self.templates: list[dict[str, Any]] = spec["requests"]
        self.latencies: list[list[float]] = [[] for _ in self.templates]
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.first_error: str | None = None
        self.issued = 0
        self.stop_at = time.perf_counter() + float(spec.get("duration") or 1e9)
        self.total: int | None = spec.get("total") if counting else None

    def more(self) -> bool:
        if time.perf_counter() >= self.stop_at:
            return False
        if self.total is not None and self.issued >= self.total:
            return False
        self.issued += 1
        return True

    async def client(self, session: aiohttp.ClientSession, index: int) -> None:
        cycle = int(self.spec.get("cycle") or 0)
        base = self.spec["base"]
        n = 0
        while self.more():
            which = (index + (n // cycle if cycle else 0)) % len(self.templates)
            tpl = self.templates[which]
            body = tpl.get("body")
            data = body.replace("{n}", str(n)).encode() if body else None
            headers = {"Content-Type": "application/json"} if data is not None else None
            n += 1
            start = time.perf_counter()
            try:
                async with session.request(
                    tpl.get("method", "GET"), base + tpl["path"], data=data, headers=headers
                ) as resp:
                    payload = await resp.read()
                    status = resp.status
            except aiohttp.ClientError as exc:
                self.errors += 1
                self.first_error = self.first_error or repr(exc)
                continue
            elapsed = (time.perf_counter() - start) * 1000
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if status != tpl.get("expect", 200):
                self.errors += 1
                self.first_error = self.first_error or f"{status}: {payload[:300]!r}"
                continue
            self.latencies[which].append(elapsed)


async def _phase(
    session: aiohttp.ClientSession, spec: dict[str, Any], counting: bool
) -> tuple[_Run, float]:
    run = _Run(spec, counting)
    start = time.perf_counter()
    await asyncio.gather(*(run.client(session, i) for i in range(int(spec["clients"]))))
    return run, time.perf_counter() - start


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    clients = int(spec["clients"])
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=float(spec.get("timeout", 60)))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if spec.get("warmup"):
            await _phase(session, {**spec, "duration": spec["warmup"], "total": None}, False)
        run, wall = await _phase(session, spec, True)
    ok = sum(len(lat) for lat in run.latencies)
    return {
        "ok": ok,
        "errors": run.errors,
        "first_error": run.first_error,
        "statuses": run.statuses,
        "seconds": wall,
        "rps": ok / wall if wall else 0.0,
        "latency_ms": summary([x for lat in run.latencies for x in lat]),
        "per_request": [summary(lat) for lat in run.latencies],
    }


def main() -> int:
    spec = json.loads(sys.stdin.read())
    try:  # a faster event loop makes a cheaper client; optional
        importlib.import_module("uvloop").install()
    except ImportError:
        pass
    result = asyncio.run(drive(spec))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
