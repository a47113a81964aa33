"""Unit tests of fastpaca_core.formats: our parts to OpenAI Chat and Anthropic."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fastpaca_core.formats import to_anthropic, to_openai_chat
from fastpaca_core.model import Message


def msg(role: str, *parts: dict[str, Any]) -> Message:
    return Message(role, list(parts))


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


SETTLED = {
    "type": "tool-search",
    "toolCallId": "s1",
    "state": "output-available",
    "input": {"q": "x"},
    "output": {"hits": 2},
}
DYNAMIC = {
    "type": "dynamic-tool",
    "toolName": "lookup",
    "toolCallId": "d1",
    "state": "input-available",
    "input": {"id": 7},
}
IMAGE = {"type": "file", "mediaType": "image/png", "url": "https://example.test/a.png"}
DATA_IMAGE = {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"}


def test_openai_text_and_skipped_parts() -> None:
    out = to_openai_chat(
        [
            msg("system", text("one"), text("two")),
            msg("user", text("hi"), {"type": "data-x", "data": 1}),
            msg("assistant", {"type": "reasoning", "text": "hmm"}, {"type": "step-start"}),
            msg("assistant", text("hello")),
        ]
    )
    assert out == [
        {"role": "system", "content": "one\n\ntwo"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]


def test_openai_images_and_settled_and_dynamic_tools() -> None:
    out = to_openai_chat(
        [
            msg("user", text("look"), IMAGE),
            msg("assistant", text("searching"), SETTLED, DYNAMIC),
            msg(
                "tool",
                {
                    "type": "tool-result",
                    "toolCallId": "d1",
                    "toolName": "lookup",
                    "output": {"type": "json", "value": {"ok": True}},
                },
            ),
        ]
    )
    assert out[0] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": IMAGE["url"]}},
        ],
    }
    assistant = out[1]
    assert assistant["content"] == "searching"
    names = [c["function"]["name"] for c in assistant["tool_calls"]]
    assert names == ["search", "lookup"]
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {"id": 7}
    assert out[2] == {"role": "tool", "tool_call_id": "s1", "content": '{"hits":2}'}
    assert out[3] == {"role": "tool", "tool_call_id": "d1", "content": '{"ok":true}'}


def test_anthropic_system_merging_and_errors() -> None:
    failed = {
        "type": "tool-search",
        "toolCallId": "e1",
        "state": "output-error",
        "input": {},
        "errorText": "boom",
    }
    payload = to_anthropic(
        [
            msg("system", text("rules")),
            msg("user", text("a")),
            msg("user", DATA_IMAGE),
            msg("assistant", failed),
            msg("user", text("again?")),
            msg("system", text("late rule")),
        ]
    )
    assert payload.system == "rules\n\nlate rule"
    assert payload.messages[0] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "a"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
            },
        ],
    }
    assert payload.messages[1]["content"][0]["type"] == "tool_use"
    # the result and the next user text share one user turn, result first
    assert payload.messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "e1", "content": "boom", "is_error": True},
            {"type": "text", "text": "again?"},
        ],
    }
    assert [m["role"] for m in payload.messages] == ["user", "assistant", "user"]


def test_anthropic_url_image_and_empty() -> None:
    payload = to_anthropic([msg("user", IMAGE), msg("assistant", {"type": "step-start"})])
    assert payload.system is None
    assert payload.messages == [
        {
            "role": "user",
            "content": [{"type": "image", "source": {"type": "url", "url": IMAGE["url"]}}],
        }
    ]


def test_calls_without_id_or_name_are_skipped() -> None:
    parts = [
        {"type": "tool-x", "state": "input-available"},
        {"type": "dynamic-tool", "toolCallId": "z"},
    ]
    assert to_openai_chat([msg("assistant", *parts)]) == []
    assert to_anthropic([msg("assistant", *parts)]).messages == []


_roles = st.sampled_from(["system", "user", "assistant", "tool"])
_part = st.one_of(
    st.builds(text, st.text(min_size=1, max_size=5)),
    st.builds(
        lambda i: {
            "type": "tool-t",
            "toolCallId": f"c{i}",
            "state": "input-available",
            "input": {},
        },
        st.integers(0, 3),
    ),
    st.builds(
        lambda i: {"type": "tool-result", "toolCallId": f"c{i}", "toolName": "t", "output": "r"},
        st.integers(0, 3),
    ),
    st.just({"type": "reasoning", "text": "r"}),
)


@given(
    st.lists(st.builds(lambda r, p: Message(r, p), _roles, st.lists(_part, max_size=4)), max_size=8)
)
def test_anthropic_turns_alternate_and_openai_never_empty(messages: list[Message]) -> None:
    payload = to_anthropic(messages)
    roles = [m["role"] for m in payload.messages]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
    assert all(m["content"] for m in payload.messages)
    for m in to_openai_chat(messages):
        assert m["role"] in ("system", "user", "assistant", "tool")
        assert m.get("content") or m.get("tool_calls") or m["role"] == "tool"
