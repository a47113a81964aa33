"""The raw REST flow with the Python client: create, append, read, page.

.venv/bin/fastpaca serve
.venv/bin/python examples/rest_client.py    # in a second terminal
"""

from __future__ import annotations

import os

from fastpaca_core.client import Client

FASTPACA = os.environ.get("FASTPACA_URL", "http://127.0.0.1:4000")


def text(role: str, body: str) -> dict[str, object]:
    return {"role": role, "parts": [{"type": "text", "text": body}]}


def main() -> None:
    with Client(FASTPACA) as fastpaca:
        ctx = fastpaca.context(
            "rest-demo",
            budget=120,
            trigger=0.6,
            policy={"strategy": "last_n", "config": {"limit": 6}},
        )
        ctx.append(text("system", "You are a travel agent."))
        for day in range(1, 9):
            ctx.append(text("user", f"Plan day {day} of my trip to Lisbon, briefly."))
            ctx.append(text("assistant", f"Day {day}: walk, eat, rest."))
        print(f"log: {ctx.get().last_seq} messages")

        window = ctx.context()
        print(f"window: {len(window.messages)} messages, {window.used_tokens} tokens")
        for segment in window.segments:
            print(f"  {segment['type']:7} seqs {segment['from_seq']}-{segment['to_seq']}")

        newest = ctx.tail(offset=0, limit=2)
        print("newest:", [m["parts"][0]["text"] for m in newest])
        oldest = ctx.messages(after_seq=0, limit=2)
        print("oldest:", [m["parts"][0]["text"] for m in oldest])
        openai_ready = ctx.context(format="openai")
        print("as OpenAI messages:", len(openai_ready.messages))


if __name__ == "__main__":
    main()
