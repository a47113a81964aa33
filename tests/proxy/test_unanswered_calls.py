"""A tool call no later message answers is left out of what is sent (see
``adapters.base.sendable``); the calibration learns from what was sent, so
the call's tokens, counted in the window but not sent, do not skew it."""

from __future__ import annotations

import openai

from fastpaca_proxy.fake_upstream import Reply, ToolCall

from .support import OPENAI_MODEL, Stack


def _factor(stack: Stack, context_id: str) -> float:
    """The context's calibration factor: used tokens per token of our count."""
    window = stack.window(context_id)
    ours = sum(m["token_count"] for m in window["messages"])
    return float(window["used_tokens"]) / ours


def _talk(stack: Stack, context_id: str, first: Reply) -> None:
    sdk = stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk-x", max_retries=0)
    )
    stack.fake.script(first)
    sdk.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "How do I feel today?"}]
    )
    for turn in range(4):  # a client sending only its newest message
        stack.fake.script(Reply(text=f"reply {turn}: " + "fine and well " * 10))
        sdk.chat.completions.create(
            model=OPENAI_MODEL,
            messages=[{"role": "user", "content": f"turn {turn}: " + "tell me more " * 10}],
        )


def test_a_call_left_out_does_not_skew_the_calibration(stack: Stack) -> None:
    mood = ToolCall("Mood", {"text": "calm and rested " * 150}, id="call_mood")
    _talk(stack, "unanswered", Reply(tool_calls=[mood]))
    _talk(stack, "answered", Reply(text="You feel calm."))
    # the call is in the log and the window, but was never sent again
    sent = stack.fake.requests_for("openai_chat")[4].json["messages"]
    assert all("tool_calls" not in m for m in sent)
    assert any(m["parts"][0].get("toolCallId") == "call_mood" for m in stack.log("unanswered"))
    unanswered, answered = _factor(stack, "unanswered"), _factor(stack, "answered")
    assert abs(unanswered - answered) / answered < 0.1, (unanswered, answered)
