"""A chat loop through the Fastpaca proxy with the Anthropic SDK.

This one sends only its newest message each turn: Fastpaca holds the
conversation, and the model receives the compacted context.

From the checkout, set up as in the README (the ``anthropic`` SDK comes with
Fastpaca, in ``.venv``):

    .venv/bin/fastpaca serve            # with FASTPACA_ANTHROPIC_API_KEY set, or
    ANTHROPIC_API_KEY=sk-ant-... .venv/bin/python examples/anthropic_chat_loop.py

    # no key or no network: the fake LLM instead (docs/proxy.md, "Offline"):
    .venv/bin/python -m fastpaca_proxy.fake_upstream --port 8787 &
    .venv/bin/fastpaca serve --anthropic-base-url http://127.0.0.1:8787

Type a message per line; an empty line or end of input quits. ``FASTPACA_URL``,
``FASTPACA_CONTEXT`` and ``ANTHROPIC_MODEL`` override the server, the context
(``chat-anthropic``) and the model.
"""

from __future__ import annotations

import os
import sys

from anthropic import Anthropic

FASTPACA = os.environ.get("FASTPACA_URL", "http://127.0.0.1:4000")
CONTEXT = os.environ.get("FASTPACA_CONTEXT", "chat-anthropic")
MODEL = os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-6")


def main() -> None:
    client = Anthropic(
        base_url=f"{FASTPACA}/v1/contexts/{CONTEXT}/anthropic",
        api_key=os.environ.get("ANTHROPIC_API_KEY", "unused-when-the-server-holds-the-key"),
    )
    for line in sys.stdin:
        text = line.strip()
        if not text:
            break
        reply = client.messages.create(
            model=MODEL,
            max_tokens=512,
            system="You are a terse assistant.",
            messages=[{"role": "user", "content": text}],
        )
        print("assistant:", "".join(b.text for b in reply.content if b.type == "text"))


if __name__ == "__main__":
    main()
