"""Token counting throughput: ``TokenCounter`` (tiktoken o200k_base, offline), in process.

For a short message (one ~20-word text part), a long one (~2,000 words) and a
tool call with its JSON input, times ``count_message`` on the event loop's
thread for ``--seconds`` each and prints messages/s and tokens/s. (Messages
over 16 KB are counted off the loop by ``count_messages``; the raw speed is
the same.)

    .venv/bin/python -m bench tokens
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastpaca_core.model import Message
from fastpaca_core.tokens import TokenCounter, load_encoding

from . import _support as s
from .engine_latency import _text

CASES: dict[str, dict[str, Any]] = {
    "short text (~20 words)": {
        "role": "user",
        "parts": [{"type": "text", "text": _text(3, 20)}],
    },
    "long text (~2,000 words)": {
        "role": "assistant",
        "parts": [{"type": "text", "text": _text(5, 2000)}],
    },
    "tool call (JSON input)": {
        "role": "assistant",
        "parts": [
            {
                "type": "tool-search",
                "toolCallId": "call_1",
                "state": "input-available",
                "input": {"query": _text(7, 12), "limit": 10, "filters": {"lang": "en"}},
            }
        ],
    },
}


def measure(counter: TokenCounter, raw: dict[str, Any], seconds: float) -> dict[str, Any]:
    message = Message.parse(raw, "message")
    tokens = counter.count_message(message)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(10):
            counter.count_message(message)
        n += 10
    elapsed = time.perf_counter() - start
    chars = sum(len(str(p.get("text", p))) for p in raw["parts"])
    return {
        "chars": chars,
        "tokens": tokens,
        "messages_per_s": n / elapsed,
        "tokens_per_s": n * tokens / elapsed,
        "us_per_message": elapsed / n * 1e6,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench tokens", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="0.5 s per case")
    parser.add_argument("--seconds", type=float, help="per case (2; quick 0.5)")
    parser.add_argument("--encoding", default="o200k_base")
    parser.add_argument("--out", type=Path, default=s.RESULTS / "token_counting.json")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (0.5 if args.quick else 2.0)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    load_encoding(args.encoding)
    load_s = time.perf_counter() - start
    counter = TokenCounter(args.encoding)
    rows = []
    for name, raw in CASES.items():
        row = {"case": name, **measure(counter, raw, args.seconds)}
        rows.append(row)
        print(
            f"  {name:26} {row['tokens']:>6} tokens  {row['messages_per_s']:>10,.0f} msg/s  "
            f"{row['tokens_per_s'] / 1e6:6.2f} M tokens/s  {row['us_per_message']:9.1f} us/msg",
            flush=True,
        )
    data = s.envelope("token_counting", {"encoding": args.encoding, "seconds": args.seconds})
    data |= {"encoding_load_seconds": load_s, "results": rows, "checks": []}
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"token counting ({args.encoding}):")
    data = run(args)
    print(f"  (encoding loaded in {data['encoding_load_seconds']:.2f} s)")
    print(f"\nwrote {s.write_results('token_counting', data, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
