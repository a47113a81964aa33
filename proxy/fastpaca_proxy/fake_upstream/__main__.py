"""``python -m fastpaca_proxy.fake_upstream [--host H] [--port N] ...``: serve until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .script import Reply
from .server import DEFAULT_MODELS, FakeUpstream


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastpaca_proxy.fake_upstream",
        description="Serve a fake OpenAI/Anthropic upstream that echoes the last user message.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require this API key")
    parser.add_argument("--chunks", type=int, default=None, help="deltas per streamed text")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each delta")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--text", default=None, help="fixed reply text instead of the echo")
    parser.add_argument("--echo-prefix", default="echo: ")
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help="comma-separated model ids"
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    default = Reply(text=args.text, chunks=args.chunks, delay=args.delay, latency=args.latency)
    fake = FakeUpstream(
        default_reply=default,
        api_key=args.api_key,
        models=[m for m in args.models.split(",") if m],
        echo_prefix=args.echo_prefix,
    )
    await fake.start(args.host, args.port)
    print(f"fake upstream on {fake.base_url} (OpenAI base_url {fake.openai_base_url})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
