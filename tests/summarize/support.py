"""Builders and checks shared by the summarisation tests."""

from __future__ import annotations

import asyncio
from typing import Any

from fastpaca_core import Engine
from fastpaca_core.errors import SummaryUpstreamError
from fastpaca_core.summarizer import SummarizerOptions
from fastpaca_core.summary_llm import Completion, SDKSummaryModel
from fastpaca_core.summary_prompt import Prompt
from fastpaca_core.toolcalls import tool_refs
from fastpaca_proxy.fake_upstream import FakeUpstream

SUMMARY_TEXT = "The user and the assistant went through a numbered list of topics."
KEY = "sk-test"

# fast and bounded: tests never wait on real backoff or lease times
FAST = SummarizerOptions(
    lease_ttl=5.0, retry_initial=0.01, retry_max=0.05, max_attempts=5, workers=2
)


def policy(**config: Any) -> dict[str, Any]:
    return {"strategy": "summarize", "config": {"model": "gpt-test", **config}}


def model_for(fake: FakeUpstream, key: str | None = KEY) -> SDKSummaryModel:
    return SDKSummaryModel(
        openai_base_url=fake.openai_base_url,
        anthropic_base_url=fake.base_url,
        openai_api_key=key,
        anthropic_api_key=key,
    )


def text(role: str, body: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "text": body}]}


def turn(i: int, words: int = 12) -> dict[str, Any]:
    """Message ``i`` of a conversation: user and assistant alternate."""
    role = "user" if i % 2 == 0 else "assistant"
    return text(role, f"message {i}: " + " ".join(f"w{i}x{j}" for j in range(words)))


def call(call_id: str, tool: str = "weather") -> dict[str, Any]:
    part = {"type": f"tool-{tool}", "toolCallId": call_id, "state": "input-available"}
    return {"role": "assistant", "parts": [{**part, "input": {"city": "Oslo"}}]}


def result(call_id: str, tool: str = "weather") -> dict[str, Any]:
    part = {"type": "tool-result", "toolCallId": call_id, "toolName": tool, "output": {"t": 3}}
    return {"role": "tool", "parts": [part]}


def covered(segments: list[dict[str, Any]]) -> list[int]:
    return [s for seg in segments for s in range(seg["from_seq"], seg["to_seq"] + 1)]


def assert_coverage(segments: list[dict[str, Any]], last_seq: int, pinned: int = 0) -> None:
    """What "no message lost" means (docs/summarization.md, "Coverage").

    Segments are in seq order without overlap; the first ``pinned`` seqs are the
    pinned system messages; from the first summary on, the segments are
    contiguous up to ``last_seq``. Seqs between the pinned messages and the
    first summary can only be missing if trimming dropped them before any
    summary existed; callers that kept the summariser up to date check that
    the first summary starts right after the pinned messages.
    """
    seqs = covered(segments)
    assert seqs == sorted(set(seqs)), f"overlapping or unordered segments: {segments}"
    assert seqs[:pinned] == list(range(1, pinned + 1))
    first = next(i for i, seg in enumerate(segments) if seg["type"] == "summary")
    tail = covered(segments[first:])
    assert tail == list(range(segments[first]["from_seq"], last_seq + 1)), segments


async def assert_guarantees(engine: Engine, context_id: str) -> None:
    """Budget and tool pairs, on the stored window."""
    ctx = await engine.get_context(context_id)
    window = await engine.window(context_id)
    assert window.used_tokens <= ctx.token_budget
    assert sum(item.tokens for item in window.items) == window.used_tokens_estimate
    calls: set[str] = set()
    results: set[str] = set()
    for message in window.messages:
        made, answered = tool_refs(message)
        assert answered <= calls, "a result whose call is not before it"
        calls |= made
        results |= answered
    assert calls == results, "a call without its result in the window"


class StubModel:
    """An in-process stand-in for the LLM: counts calls, can fail or be held."""

    def __init__(
        self, text: str = SUMMARY_TEXT, failures: int = 0, gate: asyncio.Event | None = None
    ) -> None:
        self.text = text
        self.failures = failures
        self.gate = gate
        self.prompts: list[Prompt] = []
        self.active = 0
        self.most_active = 0

    def has_key(self, provider: str) -> bool:
        return True

    async def prepare(self, provider: str) -> None:
        return None

    async def summarize(
        self, provider: str, model: str, prompt: Prompt, max_tokens: int
    ) -> Completion:
        self.prompts.append(prompt)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.failures:
                self.failures -= 1
                raise SummaryUpstreamError("scripted failure", retryable=True, status=500)
            return Completion(self.text, 9)
        finally:
            self.active -= 1

    async def close(self) -> None:
        return None
