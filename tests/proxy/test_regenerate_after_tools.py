"""Regenerating, retrying or editing a turn that ends in tool results.

The request is authoritative (docs/proxy.md, "Edited and regenerated turns"):
its tool results are sent again with the call they answer, the new answer is
stored, and the window forgets the old one; the log keeps both. A client
sending only its newest message does the same by sending the results again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anthropic
import openai
import pytest

from fastpaca_core.engine import Engine
from fastpaca_core.errors import ValidationError
from fastpaca_core.model import Message, StoredMessage
from fastpaca_proxy.fake_upstream import Reply, ToolCall
from fastpaca_proxy.turns import align, tail_match, tail_size

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack, anthropic_client, openai_client

QUESTION = {"role": "user", "content": "Weather in Oslo?"}


def window_texts(stack: Stack, context_id: str) -> list[tuple[str, Any]]:
    messages = stack.window(context_id, format="openai")["messages"]
    return [(m["role"], m.get("content")) for m in messages]


def openai_tool_turn(
    stack: Stack, sdk: openai.OpenAI, calls: list[ToolCall]
) -> list[dict[str, Any]]:
    """The first call (the model calls ``calls``): the history to send next, without results."""
    stack.fake.script(Reply(tool_calls=calls))
    first = sdk.chat.completions.create(model=OPENAI_MODEL, messages=[QUESTION])
    return [QUESTION, first.choices[0].message.model_dump(exclude_none=True)]


def test_openai_regenerating_the_answer_after_a_tool_result(stack: Stack) -> None:
    sdk = openai_client(stack, "regen-openai")
    history = openai_tool_turn(stack, sdk, [ToolCall("weather", {"city": "Oslo"}, id="call_1")])
    history.append({"role": "tool", "tool_call_id": "call_1", "content": "3 degrees"})
    stack.fake.script(Reply(text="It is 3 degrees."))
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)

    # "regenerate": the same history again, without the answer
    stack.fake.script(Reply(text="Oslo: 3C, chilly."))
    raw = sdk.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=history)
    assert raw.parse().choices[0].message.content == "Oslo: 3C, chilly."
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]  # not the old answer
    assert sent[2]["tool_call_id"] == "call_1"

    context = stack.api.get("/v1/contexts/regen-openai").json()
    assert int(raw.headers["X-Fastpaca-Version"]) == context["version"] == 7  # 6 rows, 1 rewind
    assert stack.texts("regen-openai") == [
        ("user", "Weather in Oslo?"),
        ("assistant", ""),
        ("tool", ""),
        ("assistant", "It is 3 degrees."),  # the log keeps both answers
        ("tool", ""),
        ("assistant", "Oslo: 3C, chilly."),
    ]
    assert window_texts(stack, "regen-openai") == [
        ("user", "Weather in Oslo?"),
        ("assistant", None),
        ("tool", "3 degrees"),
        ("assistant", "Oslo: 3C, chilly."),
    ]
    # and the conversation goes on from the regenerated answer
    stack.fake.script(Reply(text="Bring a coat."))
    history += [
        {"role": "assistant", "content": "Oslo: 3C, chilly."},
        {"role": "user", "content": "Coat?"},
    ]
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)
    assert stack.fake.last.json["messages"] == history
    assert len(stack.log("regen-openai")) == 8  # only the new turn stored

    # regenerating that answer too: the window keeps the branch it follows
    stack.fake.script(Reply(text="Yes, a coat."))
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)
    assert stack.fake.last.json["messages"] == history
    assert [role for role, _ in window_texts(stack, "regen-openai")] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    assert window_texts(stack, "regen-openai")[-1] == ("assistant", "Yes, a coat.")


def test_openai_edited_tool_result_among_parallel_calls(stack: Stack) -> None:
    """The tool run again with another result: that result and a new answer
    replace the old ones; the other call keeps its result."""
    sdk = openai_client(stack, "edit-openai")
    history = openai_tool_turn(
        stack,
        sdk,
        [
            ToolCall("weather", {"city": "Oslo"}, id="call_a"),
            ToolCall("time", {"zone": "CET"}, id="call_b"),
        ],
    )
    history += [
        {"role": "tool", "tool_call_id": "call_a", "content": "3 degrees"},
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
    ]
    stack.fake.script(Reply(text="3 degrees at noon."))
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)

    history[-1] = {"role": "tool", "tool_call_id": "call_b", "content": "13:00"}
    stack.fake.script(Reply(text="3 degrees at one."))
    reply = sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)
    assert reply.choices[0].message.content == "3 degrees at one."
    assert stack.fake.last.json["messages"] == history
    assert len(stack.log("edit-openai")) == 7
    assert window_texts(stack, "edit-openai") == [
        ("user", "Weather in Oslo?"),
        ("assistant", None),
        ("tool", "3 degrees"),
        ("tool", "13:00"),
        ("assistant", "3 degrees at one."),
    ]


def test_openai_newest_message_only_sending_a_tool_result_again(stack: Stack) -> None:
    """A client that sends only its newest message retries (or regenerates)
    its tool-result turn: the calls get no second result after their answer."""
    sdk = openai_client(stack, "regen-newest")
    openai_tool_turn(stack, sdk, [ToolCall("weather", {"city": "Oslo"}, id="call_1")])
    tool = {"role": "tool", "tool_call_id": "call_1", "content": "3 degrees"}
    stack.fake.script(Reply(text="It is 3 degrees."))
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[tool])

    stack.fake.script(Reply(text="Oslo: 3C, chilly."))
    reply = sdk.chat.completions.create(model=OPENAI_MODEL, messages=[tool])
    assert reply.choices[0].message.content == "Oslo: 3C, chilly."
    expected = [
        ("user", "Weather in Oslo?"),
        ("assistant", None),
        ("tool", "3 degrees"),
    ]
    sent = stack.fake.last.json["messages"]
    assert [(m["role"], m.get("content")) for m in sent] == expected
    assert window_texts(stack, "regen-newest") == [*expected, ("assistant", "Oslo: 3C, chilly.")]
    assert len(stack.log("regen-newest")) == 6

    # the next turn's tool result answers the next call, which is open: new
    stack.fake.script(Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}, id="call_1")]))
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "Now?"}])
    stack.fake.script(Reply(text="Still 3."))
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[tool])
    assert [role for role, _ in window_texts(stack, "regen-newest")] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert len(stack.log("regen-newest")) == 10


def anthropic_tool_turn(stack: Stack, sdk: anthropic.Anthropic) -> list[dict[str, Any]]:
    stack.fake.script(Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}, id="toolu_1")]))
    first = sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=[QUESTION])
    return [
        QUESTION,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
    ]


TOOL_RESULT = {
    "role": "user",
    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 degrees"}],
}


def test_anthropic_regenerating_a_streamed_answer_after_tool_use(stack: Stack) -> None:
    sdk = anthropic_client(stack, "regen-ant")
    history = [*anthropic_tool_turn(stack, sdk), TOOL_RESULT]
    stack.fake.script(Reply(text="It is 3 degrees."))
    sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=history)

    stack.fake.script(Reply(text="Oslo: 3C, chilly.", chunks=3))
    with sdk.messages.stream(model=ANTHROPIC_MODEL, max_tokens=100, messages=history) as stream:
        assert "".join(stream.text_stream) == "Oslo: 3C, chilly."
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[2]["content"][0]["tool_use_id"] == "toolu_1"
    log = stack.log("regen-ant")
    assert [m["role"] for m in log] == ["user", "assistant", "tool", "assistant"] * 1 + [
        "tool",
        "assistant",
    ]
    assert log[-1]["parts"][0]["text"] == "Oslo: 3C, chilly."
    window = stack.window("regen-ant", format="anthropic")["messages"]
    assert [m["role"] for m in window] == ["user", "assistant", "user", "assistant"]
    assert window[-1]["content"] == "Oslo: 3C, chilly."


def test_anthropic_newest_message_only_sending_a_tool_result_again(stack: Stack) -> None:
    sdk = anthropic_client(stack, "regen-ant-newest")
    anthropic_tool_turn(stack, sdk)
    stack.fake.script(Reply(text="It is 3 degrees."))
    sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=[TOOL_RESULT])

    stack.fake.script(Reply(text="Oslo: 3C, chilly."))
    reply = sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=[TOOL_RESULT])
    assert reply.content[0].type == "text"
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    window = stack.window("regen-ant-newest", format="anthropic")["messages"]
    assert [m["role"] for m in window] == ["user", "assistant", "user", "assistant"]
    assert window[-1]["content"] == "Oslo: 3C, chilly."
    assert len(stack.log("regen-ant-newest")) == 6


def test_openai_conversation_goes_on_after_a_regenerated_answer(stack: Stack) -> None:
    """The request after a regenerate holds the branch the context follows
    (the log also holds the abandoned one): nothing is lost or stored again."""
    sdk = openai_client(stack, "regen-text")
    history: list[dict[str, Any]] = [{"role": "user", "content": "q1"}]
    for answer in ("a1", None, "a2", "a2'", "a3"):
        if answer == "a2'":  # regenerate: the same history again
            history.pop()
        elif answer is None:
            history.append({"role": "user", "content": "q2"})
            continue
        stack.fake.script(Reply(text=answer))
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)
        assert stack.fake.last.json["messages"] == history
        history.append({"role": "assistant", "content": answer})
        if answer == "a2'":
            history.append({"role": "user", "content": "q3"})
    assert [content for _, content in window_texts(stack, "regen-text")] == [
        "q1",
        "a1",
        "q2",
        "a2'",
        "q3",
        "a3",
    ]
    assert [body for _, body in stack.texts("regen-text")] == [
        "q1",
        "a1",
        "q2",
        "a2",
        "q2",
        "a2'",
        "q3",
        "a3",
    ]


# -- alignment and rewinds, without the SDKs ----------------------------------------


def text(role: str, body: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "text": body}]}


def call(call_id: str) -> dict[str, Any]:
    part = {"type": "tool-weather", "toolCallId": call_id, "state": "input-available", "input": {}}
    return {"role": "assistant", "parts": [part]}


def result(call_id: str) -> dict[str, Any]:
    part = {"type": "tool-result", "toolCallId": call_id, "toolName": "weather", "output": "3"}
    return {"role": "tool", "parts": [part]}


def as_message(raw: dict[str, Any]) -> Message:
    return Message.parse(raw, "message")


def log_of(*raws: dict[str, Any]) -> list[StoredMessage]:
    now = datetime.now(UTC)
    return [
        StoredMessage(i, m.role, m.parts, m.metadata, 1, i, i, now)
        for i, m in enumerate(map(as_message, raws), start=1)
    ]


def test_alignment_of_tool_results_sent_again() -> None:
    q, c1, r1, a1 = (
        as_message(m)
        for m in (text("user", "q"), call("c1"), result("c1"), text("assistant", "a1"))
    )
    log = log_of(text("user", "q"), call("c1"), result("c1"), text("assistant", "a1"))
    # the whole history again, without the answer: rewinds to the results
    regen = align([q, c1, r1], log, 4)
    assert (regen.new, regen.rewind_to_seq) == ([r1], 3)
    # only the results again
    for rows in (log, log[-tail_size(1) :]):
        for found in (align([r1], rows, 4), tail_match([r1], rows, 4)):
            assert found is not None and (found.new, found.rewind_to_seq) == ([r1], 3)
    # results answering the newest call, which is open: new, and settled on one row
    open_log = log_of(text("user", "q"), call("c1"))
    assert tail_match([r1], open_log[-1:], 2) == align([r1], open_log, 2)
    assert align([r1], open_log, 2).rewind_to_seq is None
    # the conversation went on after the answer: not a retry (appended as before)
    later = log_of(
        text("user", "q"), call("c1"), result("c1"), text("assistant", "a1"), text("user", "q2")
    )
    assert align([r1], later, 5).rewind_to_seq is None
    # the rows read do not tell: the wider read settles it
    assert tail_match([r1], [], 4) is None
    assert tail_match([a1], [], 4) == align([a1], log, 4)  # text: always new


def test_alignment_follows_the_branch_a_rewind_made() -> None:
    q1, a1, q2, a2, q3, a3 = (
        as_message(text(role, body))
        for role, body in (
            ("user", "q1"),
            ("assistant", "a1"),
            ("user", "q2"),
            ("assistant", "a2"),
            ("user", "q3"),
            ("assistant", "a3"),
        )
    )
    a2b, q2b = as_message(text("assistant", "a2'")), as_message(text("user", "q2'"))

    def rows(*messages: Message) -> list[StoredMessage]:
        return log_of(*({"role": m.role, "parts": m.parts} for m in messages))

    # the next turn after a regenerate, after an edit (of q2' into q2), after a
    # regenerate that came out the same: all held, nothing rewound
    for log in (rows(q1, a1, q2, a2, q2, a2b), rows(q1, a1, q2b, a2, q2, a2b)):
        found = align([q1, a1, q2, a2b, q3], log, 6)
        assert (found.new, found.matched, found.rewind_to_seq) == ([q3], 4, None)
    same = align([q1, a1, q2, a2, q3], rows(q1, a1, q2, a2, q2, a2), 6)
    assert (same.new, same.rewind_to_seq) == ([q3], None)
    # regenerating a later answer: rewinds after the branch's messages
    later = align([q1, a1, q2, a2b, q3], rows(q1, a1, q2, a2, q2, a2b, q3, a3), 8)
    assert (later.new, later.rewind_to_seq) == ([q3], 7)
    # as before: a regenerate whose last history message (a short reply) comes again later
    ok = as_message(text("assistant", "ok"))
    again = align([q1, ok, q2], rows(q1, ok, q2, ok), 4)
    assert (again.new, again.rewind_to_seq) == ([q2], 3)
    # and a history the log does not hold from some message on
    edited = align([q1, ok, q3, ok, q2], rows(q1, ok, q2b, ok), 4)
    assert (edited.new, edited.rewind_to_seq) == ([q3, ok, q2], 3)


async def test_a_rewind_may_cut_results_the_new_rows_give_again(engine: Engine) -> None:
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append_batch(
        "c", [text("user", "q"), call("c1"), result("c1"), text("assistant", "a1")]
    )
    with pytest.raises(ValidationError):  # the call would lose its result
        await engine.append_batch("c", [text("assistant", "a1'")], rewind_to_seq=3)
    stored = await engine.append_batch(
        "c", [result("c1"), text("assistant", "a1'")], rewind_to_seq=3
    )
    assert stored.seqs == [5, 6]
    window = await engine.window("c")
    assert [(i.from_seq, i.message.role) for i in window.items] == [
        (1, "user"),
        (2, "assistant"),
        (5, "tool"),
        (6, "assistant"),
    ]
