"""A chat loop through the Fastpaca proxy with the Anthropic SDK.

This one sends only its newest message each turn: Fastpaca holds the
conversation, and the model receives the compacted context.

    fastpaca serve                      # with FASTPACA_ANTHROPIC_API_KEY set, or
    ANTHROPIC_API_KEY=sk-ant-... python examples/anthropic_chat_loop.py
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
