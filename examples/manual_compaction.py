"""Manual compaction with your own summariser.

The context uses the ``manual`` policy: Fastpaca never compacts it and only
raises ``needs_compaction``. When it does, this program summarises the older
part of the window itself and replaces it with ``up_to_seq``, so messages
appended while it worked stay live.

    .venv/bin/fastpaca serve
    .venv/bin/python examples/manual_compaction.py    # in a second terminal
"""

from __future__ import annotations

import os
from typing import Any

from fastpaca_core.client import Client

FASTPACA = os.environ.get("FASTPACA_URL", "http://127.0.0.1:4000")
KEEP_LAST = 4


def text(role: str, body: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "text": body}]}


def summarise(messages: list[dict[str, Any]]) -> str:
    """Your summariser: an LLM call in real life; here, the first words of each line."""
    lines = []
    for message in messages:
        words = " ".join(p.get("text", "") for p in message["parts"]).split()
        lines.append(f"{message['role']}: {' '.join(words[:4])}")
    return "Summary of earlier conversation: " + "; ".join(lines)


def main() -> None:
    with Client(FASTPACA) as fastpaca:
        ctx = fastpaca.context(
            "manual-demo", budget=200, trigger=0.5, policy={"strategy": "manual"}
        )
        for i in range(12):
            ctx.append(text("user", f"Note {i}: remember the number {i * 7} for later."))
            window = ctx.context()
            if not window.needs_compaction:
                continue
            older = window.messages[:-KEEP_LAST]
            up_to_seq = older[-1]["seq"]
            summary = text("system", summarise(older))
            result = ctx.compact([summary], if_version=window.version, up_to_seq=up_to_seq)
            after = ctx.context()
            print(
                f"compacted seqs up to {up_to_seq} (version {result.version}): "
                f"{window.used_tokens} -> {after.used_tokens} tokens"
            )
        final = ctx.context()
        print("segments:", [(s["type"], s["from_seq"], s["to_seq"]) for s in final.segments])
        print("log length:", len(ctx.messages(after_seq=0, limit=100)))


if __name__ == "__main__":
    main()
