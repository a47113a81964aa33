"""Responses API call items kept verbatim (``data-openai-item`` parts) pair
with their outputs as tool calls pair with their results.

A ``computer_call`` and its ``computer_call_output``, an
``mcp_approval_request`` and its ``mcp_approval_response``... are stored
opaque, but the Responses API rejects an output whose call is not before it:
trimming, compaction and summarisation keep such pairs together, and items
that answer nothing and are never answered (reasoning, ``web_search_call``,
``mcp_call``...) pair with nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import ResponseInputItem
from pydantic import TypeAdapter

from fastpaca_core import Engine
from fastpaca_core.errors import ValidationError
from fastpaca_core.formats import from_responses_input, to_responses_input
from fastpaca_core.formats._parts import tool_call, tool_result
from fastpaca_core.model import Message
from fastpaca_core.stores._codec import RawMessage
from fastpaca_core.toolcalls import (
    is_call_part,
    is_result_part,
    part_call_id,
    parts_refs,
)
from fastpaca_core.window import WindowItem, fit, valid_cuts

from .helpers import text

# (call item, its answer, the id that links them), as the openai SDK types have them
PAIRS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (
        {
            "type": "computer_call",
            "id": "cu_1",
            "call_id": "call_cu1",
            "action": {"type": "screenshot"},
            "pending_safety_checks": [],
            "status": "completed",
        },
        {
            "type": "computer_call_output",
            "call_id": "call_cu1",
            "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AAAA"},
        },
        "call_cu1",
    ),
    (
        {
            "type": "local_shell_call",
            "id": "lsh_1",
            "call_id": "call_ls1",
            "action": {"type": "exec", "command": ["ls"], "env": {}},
            "status": "completed",
        },
        # the SDK types: ``id`` is "the unique ID of the local shell tool call"
        {"type": "local_shell_call_output", "id": "call_ls1", "output": "a\nb\n"},
        "call_ls1",
    ),
    (
        {
            "type": "shell_call",
            "call_id": "call_sh1",
            "action": {"commands": ["ls"]},
            "status": "completed",
        },
        {
            "type": "shell_call_output",
            "call_id": "call_sh1",
            "output": [{"stdout": "a", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}],
        },
        "call_sh1",
    ),
    (
        {
            "type": "apply_patch_call",
            "call_id": "call_ap1",
            "operation": {"type": "delete_file", "path": "old.txt"},
            "status": "completed",
        },
        {"type": "apply_patch_call_output", "call_id": "call_ap1", "status": "completed"},
        "call_ap1",
    ),
    (
        {
            "type": "mcp_approval_request",
            "id": "mcpr_1",
            "arguments": '{"repo": "fastpaca"}',
            "name": "list_issues",
            "server_label": "github",
        },
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
        "mcpr_1",
    ),
    (
        {"type": "tool_search_call", "call_id": "call_ts1", "arguments": {"q": "x"}},
        {"type": "tool_search_output", "call_id": "call_ts1", "tools": []},
        "call_ts1",
    ),
]

# items that answer nothing and that nothing answers
LONE_ITEMS: list[dict[str, Any]] = [
    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    {"type": "file_search_call", "id": "fs_1", "queries": ["q"], "status": "completed"},
    {"type": "image_generation_call", "id": "ig_1", "status": "completed"},
    {
        "type": "code_interpreter_call",
        "id": "ci_1",
        "code": "1",
        "container_id": "c",
        "status": "completed",
    },
    {
        "type": "mcp_call",
        "id": "mcp_1",
        "arguments": "{}",
        "name": "list_issues",
        "server_label": "github",
        "approval_request_id": "mcpr_1",
        "output": "[]",
    },
    {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "github", "tools": []},
    {"type": "item_reference", "id": "msg_1"},
    {"type": "tool_search_call", "arguments": {"q": "x"}},  # no call_id: nothing to answer
    {"type": "reasoning", "summary": "not a list"},  # unreadable reasoning, kept verbatim
    {"type": "message", "role": "assistant", "content": 7},  # unreadable message
    {"type": "computer_call", "call_id": 7},  # no usable link id
    {"type": ["computer_call"], "call_id": "x"},
]


def opaque(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "data-openai-item", "data": item}


def entry(role: str, item: dict[str, Any], tokens: int) -> dict[str, Any]:
    return {"role": role, "parts": [opaque(item)], "token_count": tokens}


def window_item(message: Message, seq: int) -> WindowItem:
    return WindowItem(message, "live", seq, seq, False)


@pytest.mark.parametrize("call, output, link", PAIRS, ids=[p[0]["type"] for p in PAIRS])
def test_call_items_and_their_outputs_pair(
    call: dict[str, Any], output: dict[str, Any], link: str
) -> None:
    # the items as a client sends them back (the SDK's input item types)
    adapter: TypeAdapter[ResponseInputItem] = TypeAdapter(ResponseInputItem)
    assert adapter.validate_python(call).type == call["type"]
    assert adapter.validate_python(output).type == output["type"]
    # stored as the converters store them
    stored_call = from_responses_input([call]).messages[0].parts
    stored_output = from_responses_input([output]).messages[0].parts
    assert stored_call == [opaque(call)] and stored_output == [opaque(output)]
    assert parts_refs(stored_call) == (frozenset({link}), frozenset())
    assert parts_refs(stored_output) == (frozenset(), frozenset({link}))
    assert part_call_id(stored_call[0]) == part_call_id(stored_output[0]) == link
    assert is_result_part(stored_output[0]) and not is_result_part(stored_call[0])
    # the converters still see no function call in them: they go back verbatim
    for part in (*stored_call, *stored_output):
        assert not is_call_part(part)
        assert tool_call(part) is None and tool_result(part) is None
    messages = [Message("assistant", stored_call), Message("assistant", stored_output)]
    assert to_responses_input(messages) == [call, output]


@pytest.mark.parametrize("item", LONE_ITEMS, ids=lambda item: str(item["type"]))
def test_other_items_pair_with_nothing(item: dict[str, Any]) -> None:
    """Beside a call or an output, an item that is neither changes nothing: no
    call that nothing would ever answer, no result with no call."""
    call, output, link = PAIRS[0]
    part = opaque(item)
    assert parts_refs([part, opaque(call)]) == (frozenset({link}), frozenset())
    assert parts_refs([opaque(output), part]) == (frozenset(), frozenset({link}))
    assert part_call_id(part) is None
    assert not is_result_part(part)


def test_a_call_answered_in_the_same_message_is_settled() -> None:
    """A hosted tool's call and output in one reply: neither an open call
    (which nothing later would answer) nor an orphan result."""
    call, output, link = PAIRS[2]
    both = [opaque(call), {"type": "text", "text": "done"}, opaque(output)]
    assert parts_refs(both) == (frozenset(), frozenset())
    # an output before its call does not answer it
    assert parts_refs(both[::-1]) == (frozenset({link}), frozenset({link}))
    # nor does a second output, later
    assert parts_refs([*both, opaque(output)]) == (frozenset(), frozenset({link}))


def test_stored_rows_with_opaque_items_are_read_for_their_refs() -> None:
    """A compaction reads rows undecoded and parses only those that may refer."""

    def row(parts: str) -> RawMessage:
        return RawMessage((2, "assistant", parts, "{}", 5, 5, 1, None))

    assert row('[{"type":"data-openai-item","data":{"type":"computer_call"}}]').may_refer()
    assert not row('[{"type":"text","text":"hi"}]').may_refer()


def test_no_cut_separates_a_call_item_from_its_output() -> None:
    call, output, _ = PAIRS[0]
    items = [
        window_item(Message("user", text("user", "shot")["parts"], {}, 10), 1),
        window_item(Message("assistant", [opaque(call)], {}, 40), 2),
        window_item(Message("user", text("user", "wait")["parts"], {}, 5), 3),
        window_item(Message("assistant", [opaque(output)], {}, 10), 4),
        window_item(Message("user", text("user", "next")["parts"], {}, 25), 5),
    ]
    assert valid_cuts(items) == [True, True, False, False, True, True]
    kept = fit(items, 100, target=70)
    assert [item.from_seq for item in kept] == [5]


def test_an_output_whose_call_is_gone_is_dropped() -> None:
    """As an orphan tool result is (``window`` removes every ``is_result_part``)."""
    _, output, _ = PAIRS[0]
    items = [
        window_item(Message("user", text("user", "shot")["parts"], {}, 10), 1),
        window_item(
            Message("assistant", [opaque(output), {"type": "text", "text": "ok"}], {}, 10), 3
        ),
    ]
    kept = fit(items, 100)
    assert [p["type"] for item in kept for p in item.message.parts] == ["text", "text"]


async def test_trimming_keeps_a_computer_call_with_its_output(engine: Engine) -> None:
    """Budget 100, trigger 70: the fourth message takes the window to 105; the
    cut that would leave 35 tokens falls between the call and its output, so
    the pair goes together (before: the output stayed, alone)."""
    call, output, _ = PAIRS[0]
    await engine.put_context("cua", token_budget=100)
    await engine.append("cua", {**text("user", "Take a screenshot."), "token_count": 30})
    await engine.append("cua", entry("assistant", call, 40))
    await engine.append("cua", entry("assistant", output, 10))
    await engine.append("cua", {**text("user", "Thanks."), "token_count": 25})
    window = await engine.window("cua")
    assert [item.from_seq for item in window.items] == [4]
    assert window.used_tokens == 25


async def test_a_pending_output_brings_its_call(engine: Engine) -> None:
    """A turn about to be sent (the proxy's pending messages) that holds the
    output keeps its call in the window, even when only the output would fit."""
    call, output, _ = PAIRS[4]
    await engine.put_context("mcp", token_budget=100)
    await engine.append("mcp", {**text("user", "List the issues."), "token_count": 10})
    await engine.append("mcp", entry("assistant", call, 80))
    window = await engine.window("mcp", pending=[entry("assistant", output, 30)])
    kinds = [p["data"]["type"] for item in window.items for p in item.message.parts if "data" in p]
    assert kinds == ["mcp_approval_request", "mcp_approval_response"]


async def test_manual_compaction_never_splits_the_pair(engine: Engine) -> None:
    call, output, _ = PAIRS[0]
    await engine.put_context("man", token_budget=1000, policy={"strategy": "manual"})
    await engine.append("man", text("user", "Take a screenshot."))
    await engine.append("man", entry("assistant", call, 40))
    await engine.append("man", entry("assistant", output, 40))
    summary = [text("system", "Summary: the user asked for a screenshot.")]
    with pytest.raises(ValidationError, match="would separate a tool call"):
        await engine.compact("man", summary, up_to_seq=2)
    await engine.compact("man", summary, up_to_seq=3)


async def test_an_output_whose_call_was_cut_away_leaves_the_window(engine: Engine) -> None:
    """A computer_call larger than the whole budget never stays in the window;
    its output, appended next, is an orphan and is removed from the window
    (the log keeps both)."""
    call, output, _ = PAIRS[0]
    await engine.put_context("big", token_budget=100)
    await engine.append("big", {**text("user", "Take a screenshot."), "token_count": 10})
    await engine.append("big", entry("assistant", call, 150))
    await engine.append("big", entry("assistant", output, 10))
    await engine.append("big", {**text("user", "Thanks."), "token_count": 10})
    window = await engine.window("big")
    # the user's request stays pinned (it fits); the call and its output do not
    assert [p["type"] for item in window.items for p in item.message.parts] == ["text", "text"]
