"""A chat loop through the Fastpaca proxy with the OpenAI SDK.

The only change from a plain OpenAI app is the ``base_url``: every turn is
stored in the context ``chat-openai``, and the model receives the compacted
context. This loop resends its whole history each turn, as most apps do;
Fastpaca stores each message once.

From the checkout, set up as in the README (the ``openai`` SDK comes with
Fastpaca, in ``.venv``):

    .venv/bin/fastpaca serve            # with FASTPACA_OPENAI_API_KEY set, or
    OPENAI_API_KEY=sk-... .venv/bin/python examples/openai_chat_loop.py

    # no key or no network: the fake LLM instead (docs/proxy.md, "Offline"):
    .venv/bin/python -m fastpaca_proxy.fake_upstream --port 8787 &
    .venv/bin/fastpaca serve --openai-base-url http://127.0.0.1:8787/v1

Type a message per line; an empty line or end of input quits. ``FASTPACA_URL``,
``FASTPACA_CONTEXT`` and ``OPENAI_MODEL`` override the server, the context and
the model.
"""

from __future__ import annotations

import os
import sys

from openai import OpenAI

FASTPACA = os.environ.get("FASTPACA_URL", "http://127.0.0.1:4000")
CONTEXT = os.environ.get("FASTPACA_CONTEXT", "chat-openai")
MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


def main() -> None:
    client = OpenAI(
        base_url=f"{FASTPACA}/v1/contexts/{CONTEXT}/openai",
        api_key=os.environ.get("OPENAI_API_KEY", "unused-when-the-server-holds-the-key"),
    )
    history: list[dict[str, str]] = [{"role": "system", "content": "You are a terse assistant."}]
    for line in sys.stdin:
        text = line.strip()
        if not text:
            break
        history.append({"role": "user", "content": text})
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=history)
        reply = raw.parse().choices[0].message.content or ""
        history.append({"role": "assistant", "content": reply})
        used = raw.headers.get("X-Fastpaca-Used-Tokens")
        print(f"assistant: {reply}  [context {CONTEXT}: {used} tokens]")


if __name__ == "__main__":
    main()
