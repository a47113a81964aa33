"""The Responses API's own call items through the proxy, with the real OpenAI SDK.

A ``computer_call`` or an ``mcp_approval_request`` is stored verbatim, and
its answer (``computer_call_output``, ``mcp_approval_response``) comes in the
client's next request. The Responses API rejects an answer whose call is not
before it, so when the window is trimmed to make room for the answer, the
call stays with it.
"""

from __future__ import annotations

from typing import Any

import openai

from fastpaca_core.formats import reply_from_response

from .support import OPENAI_MODEL, Stack


def client(stack: Stack, context_id: str) -> openai.OpenAI:
    return stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk", max_retries=0)
    )


def store_turn(stack: Stack, context_id: str, question: str, output: list[Any]) -> None:
    """Log a question and the upstream's reply ``output`` as the proxy stores them."""
    reply = reply_from_response({"output": output})  # counted by the server
    stack.api.post(
        f"/v1/contexts/{context_id}/messages",
        json={
            "messages": [
                {"role": "user", "parts": [{"type": "text", "text": question}]},
                reply.to_json(),
            ]
        },
    ).raise_for_status()


def sent_items(stack: Stack) -> list[tuple[str, str | None]]:
    return [
        (item.get("type", "message"), item.get("call_id") or item.get("approval_request_id"))
        for item in stack.fake.last.json["input"]
    ]


def opaque_kinds(stack: Stack, context_id: str) -> list[str]:
    """The types of the items kept verbatim in the stored window, in order."""
    window = stack.window(context_id)
    return [p["data"]["type"] for m in window["messages"] for p in m["parts"] if "data" in p]


def test_a_computer_call_output_goes_with_its_call(stack: Stack) -> None:
    stack.api.put("/v1/contexts/cua", json={"token_budget": 400}).raise_for_status()
    call = {
        "type": "computer_call",
        "id": "cu_1",
        "call_id": "call_cu1",
        "action": {"type": "screenshot"},
        "pending_safety_checks": [],
        "status": "completed",
    }
    store_turn(stack, "cua", "Open the settings page and take a screenshot.", [call])
    stack.fake.script("The settings page is open.")
    shot = "data:image/png;base64," + "iVBORw0KGgo" * 120
    reply = client(stack, "cua").responses.create(
        model=OPENAI_MODEL,
        input=[
            {
                "type": "computer_call_output",
                "call_id": "call_cu1",
                "output": {"type": "computer_screenshot", "image_url": shot},
            }
        ],
    )
    assert reply.output_text == "The settings page is open."
    # the question gave way to the screenshot; the call did not
    assert sent_items(stack) == [
        ("computer_call", "call_cu1"),
        ("computer_call_output", "call_cu1"),
    ]
    assert stack.fake.last.json["input"][0] == call
    assert opaque_kinds(stack, "cua") in ([], ["computer_call", "computer_call_output"])


def test_an_mcp_approval_response_goes_with_its_request(stack: Stack) -> None:
    stack.api.put("/v1/contexts/mcp", json={"token_budget": 250}).raise_for_status()
    request = {
        "type": "mcp_approval_request",
        "id": "mcpr_1",
        "arguments": '{"query": "' + "open issues about compaction " * 40 + '"}',
        "name": "search_issues",
        "server_label": "github",
    }
    store_turn(stack, "mcp", "Find the open issues about compaction. " * 10, [request])
    stack.fake.script("Approved; searching.")
    client(stack, "mcp").responses.create(
        model=OPENAI_MODEL,
        input=[{"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True}],
    )
    assert sent_items(stack) == [
        ("mcp_approval_request", None),
        ("mcp_approval_response", "mcpr_1"),
    ]
    # the stored window, the reply appended: the pair went together, or stayed
    assert opaque_kinds(stack, "mcp") in ([], ["mcp_approval_request", "mcp_approval_response"])
