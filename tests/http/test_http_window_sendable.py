"""``GET …/context?format=``: messages a provider accepts as they are."""

from __future__ import annotations

from typing import Any

from http_support import Api, text_message


def _call(call_id: str, state: str = "input-available") -> dict[str, Any]:
    return {
        "role": "assistant",
        "parts": [
            {"type": "text", "text": "Looking it up."},
            {"type": "tool-lookup", "toolCallId": call_id, "state": state, "input": {"q": "x"}},
        ],
    }


async def test_a_call_the_conversation_went_past_is_left_out_of_converted_windows(
    api: Api, cid: str
) -> None:
    """An unanswered tool call followed by more conversation (a reply by
    function calling nobody ran, an agent stopped halfway) stayed in the
    converted window: OpenAI and Anthropic refuse such a request with a 400,
    so the window could not be sent as served. The canonical window and the
    log keep it."""
    await api.create(cid)
    for message in (
        text_message("find x"),
        _call("dangling"),
        text_message("never mind, what is y?"),
        _call("answered"),
        {
            "role": "tool",
            "parts": [
                {
                    "type": "tool-result",
                    "toolCallId": "answered",
                    "toolName": "lookup",
                    "output": "y is 2",
                }
            ],
        },
        text_message("thanks"),
        _call("open"),  # the last message: its call is still waiting, and kept
    ):
        reply = await api.post(f"/v1/contexts/{cid}/messages", json={"message": message})
        assert reply.status == 201, reply.body

    canonical = (await api.get(f"/v1/contexts/{cid}/context")).json()
    ids = [p.get("toolCallId") for m in canonical["messages"] for p in m["parts"]]
    assert "dangling" in ids

    openai = (await api.get(f"/v1/contexts/{cid}/context", params={"format": "openai"})).json()
    calls = [c["id"] for m in openai["messages"] for c in m.get("tool_calls") or []]
    results = [m["tool_call_id"] for m in openai["messages"] if m["role"] == "tool"]
    assert calls == ["answered", "open"] and results == ["answered"]
    # the assistant's text beside the dropped call stays
    texts = [m.get("content") for m in openai["messages"] if m["role"] == "assistant"]
    assert texts.count("Looking it up.") == 3

    anthropic = (
        await api.get(f"/v1/contexts/{cid}/context", params={"format": "anthropic"})
    ).json()
    uses = [
        b["id"]
        for m in anthropic["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b["type"] == "tool_use"
    ]
    assert uses == ["answered", "open"]
