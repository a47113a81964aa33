"""Instructions per operation: ``valgrind --tool=callgrind`` around the whole server.

Wall-clock figures on a shared VM move by 20-30% between runs and more
between hosts (one host ran the same code 2.5x slower than another). The
number of instructions the server executes for the same work does not depend
on load or host, and repeats within ~0.1%: an A/B of a code change reads it
first. The count covers every thread of the server (the SQLite writer's
COMMIT included), not the kernel.

Scenarios, each after warm-up operations and with the counters zeroed:

- ``appends``: 64 SQLite contexts appended to in rounds of 64 concurrent
  HTTP appends (so that they share commits);
- ``proxy``: one client making non-streamed OpenAI Chat calls that resend
  their history, in 16-turn conversations, through the proxy with a context
  (read, align, compact, forward, store) and without one (pass-through: the
  HTTP hop alone); their difference is the proxy's own work.

    .venv/bin/python -m bench instructions                   # both, ~3 min
    .venv/bin/python -m bench instructions --scenarios proxy

Needs valgrind (Debian: ``apt-get install valgrind``). Under valgrind the
server runs ~50x slower; only the counts mean anything here, never the times.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from . import _support as s
from .http_appends import BODY
from .proxy_clients import Conversation, Servers, Side

SCENARIOS = ("appends", "proxy")
CONTEXTS = 64  # appends: contexts, and concurrent appends per round
_SUMMARY = re.compile(rb"^summary:\s*(\d+)", re.MULTILINE)


class Counted:
    """A ``fastpaca serve`` under callgrind, whose counters are zeroed and dumped
    between phases of the load."""

    def __init__(self, server: s.Server, out: Path) -> None:
        self.server = server
        self.out = out
        self._dumps = 0

    @classmethod
    def start(cls, tmp: Path, name: str, store: str, *extra: str) -> Counted:
        out = tmp / f"callgrind-{name}.out"  # dumps: .1, .2, ... (a stale one is never read)
        plain = s.Server.fastpaca(store, tmp / "serve.log", *extra)
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *plain.argv]
        server = s.Server(argv, plain.log, plain.port)
        server.start(timeout=300)
        return cls(server, out)

    @property
    def base(self) -> str:
        return self.server.base

    def _control(self, *args: str) -> None:
        command = ["callgrind_control", *args, str(self.server.pid)]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def zero(self) -> None:
        self._control("-z")

    def dump(self) -> int:
        """Instructions executed since the last ``zero``."""
        self._control("-d")
        self._dumps += 1
        path = Path(f"{self.out}.{self._dumps}")
        found = _SUMMARY.search(path.read_bytes())
        if found is None:
            raise RuntimeError(f"no 'summary:' line in {path}")
        return int(found.group(1))

    def stop(self) -> None:
        self.server.stop(timeout=120)


# -- loads ----------------------------------------------------------------------------------


async def _append_rounds(base: str, ids: Sequence[str], rounds: int) -> None:
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(base) as session:

        async def one(context_id: str) -> None:
            path = f"/v1/contexts/{context_id}/messages"
            async with session.post(path, data=BODY, headers=headers) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"append: {resp.status} {await resp.text()}")

        for _ in range(rounds):
            await asyncio.gather(*(one(cid) for cid in ids))


async def _proxy_calls(servers: Servers, side: str, calls: int, tag: str) -> None:
    shape = argparse.Namespace(turns=16, words=60)
    conversation = Conversation(tag, "openai_chat", "resend", shape)
    target = Side(side, servers, "openai_chat", 2000)
    async with aiohttp.ClientSession() as session:
        for _ in range(calls):
            await target.call(session, conversation)


# -- scenarios ------------------------------------------------------------------------------


def count_appends(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    server = Counted.start(tmp, "appends", f"sqlite:///{tmp / 'appends.db'}")
    try:
        ids = [f"i{n}" for n in range(CONTEXTS)]
        s.put_contexts(server.base, ids)
        asyncio.run(_append_rounds(server.base, ids, args.warmup_rounds))
        server.zero()
        asyncio.run(_append_rounds(server.base, ids, args.rounds))
        total = server.dump()
    finally:
        server.stop()
    count = args.rounds * CONTEXTS
    return [_row("appends", "HTTP append (SQLite, 64 concurrent)", count, total)]


def count_proxy(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    fake = s.Server.fake_upstream(tmp / "fake.log").start()
    server: Counted | None = None
    try:
        server = Counted.start(
            tmp,
            "proxy",
            f"sqlite:///{tmp / 'proxy.db'}",
            "--openai-base-url",
            f"{fake.base}/v1",
            "--anthropic-base-url",
            fake.base,
        )
        servers = Servers(fake.base, server.base, "")
        asyncio.run(_proxy_calls(servers, "proxy", args.warmup_calls, "warm"))
        asyncio.run(_proxy_calls(servers, "passthru", args.warmup_calls // 2, "warm-p"))
        server.zero()
        asyncio.run(_proxy_calls(servers, "proxy", args.calls, "counted"))
        proxied = server.dump()
        server.zero()
        asyncio.run(_proxy_calls(servers, "passthru", args.calls, "counted-p"))
        passed = server.dump()
    finally:
        if server is not None:
            server.stop()
        fake.stop()
    rows = [
        _row("proxy", "proxied call (context: read, align, forward, store)", args.calls, proxied),
        _row("proxy", "pass-through call (no context: the hop)", args.calls, passed),
    ]
    own = rows[0]["per_op"] - rows[1]["per_op"]
    rows.append({"scenario": "proxy", "operation": "the proxy's own work", "per_op": own})
    return rows


def _row(scenario: str, operation: str, count: int, total: int) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "operation": operation,
        "count": count,
        "instructions": total,
        "per_op": round(total / count),
    }


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench instructions",
        description="Instructions per append and per proxied call (valgrind callgrind).",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="appends and/or proxy")
    parser.add_argument("--warmup-rounds", type=int, default=5, help="appends: untimed rounds")
    parser.add_argument("--rounds", type=int, default=10, help="appends: counted rounds of 64")
    parser.add_argument("--warmup-calls", type=int, default=64, help="proxy: uncounted calls")
    parser.add_argument("--calls", type=int, default=160, help="proxy: counted calls each way")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    args.scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"instructions: {', '.join(missing)} not found (Debian: apt-get install valgrind)")
        return 2
    runs = {"appends": count_appends, "proxy": count_proxy}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fastpaca-bench-instructions-") as tmp:
        for name in args.scenarios:
            print(f"  {name} (under valgrind: a minute or two) ...", flush=True)
            rows += runs[name](args, Path(tmp))
    print(f"\n{s.describe_machine(s.machine())}")
    print(f"{'scenario':<9} {'operation':<52} {'counted':>7} {'instructions/op':>16}")
    print("-" * 87)
    for row in rows:
        counted = str(row.get("count", ""))
        print(f"{row['scenario']:<9} {row['operation']:<52} {counted:>7} {row['per_op']:>16,}")
    names = ("scenarios", "warmup_rounds", "rounds", "warmup_calls", "calls")
    config = {k: getattr(args, k) for k in names}
    data = s.envelope("instructions", config) | {"rows": rows}
    print(f"\nwrote {s.write_results('instructions', data, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
