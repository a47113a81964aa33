"""One context, two providers: a conversation with parallel tool calls started
on one provider's route and continued, its whole history resent, on another's.

OpenAI (Chat and Responses) sends one message per tool result; Anthropic sends
all the results of a turn in one ``user`` message. The log holds each message
once whichever grouping a request brings (docs/proxy.md, "What happens to a
request"), and the window is the conversation, not a rewound copy of it.
"""

from __future__ import annotations

from typing import Any

from fastpaca_proxy.fake_upstream import Reply, ToolCall

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack, anthropic_client, openai_client

QUESTION = "Weather in Oslo and Paris?"
CALLS = [
    ToolCall("weather", {"city": "Oslo"}, id="call_oslo"),
    ToolCall("weather", {"city": "Paris"}, id="call_paris"),
]
RESULTS = {"call_oslo": "3 degrees", "call_paris": "18 degrees"}
ANSWER = "Oslo 3C, Paris 18C."


def anthropic_history(follow_up: str) -> list[Any]:
    """The conversation so far as Anthropic messages, then ``follow_up``."""
    return [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in CALLS
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call_id, "content": output}
                for call_id, output in RESULTS.items()
            ],
        },
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": follow_up},
    ]


def chat_history(follow_up: str) -> list[Any]:
    """The conversation so far as OpenAI Chat messages, then ``follow_up``."""
    return [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json()},
                }
                for c in CALLS
            ],
        },
        *(
            {"role": "tool", "tool_call_id": call_id, "content": output}
            for call_id, output in RESULTS.items()
        ),
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": follow_up},
    ]


def responses_history(follow_up: str) -> list[Any]:
    """The conversation so far as Responses input items, then ``follow_up``."""
    return [
        {"role": "user", "content": QUESTION},
        *(
            {
                "type": "function_call",
                "call_id": c.id,
                "name": c.name,
                "arguments": c.arguments_json(),
            }
            for c in CALLS
        ),
        *(
            {"type": "function_call_output", "call_id": call_id, "output": output}
            for call_id, output in RESULTS.items()
        ),
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": follow_up},
    ]


def start_on_chat(stack: Stack, context_id: str) -> None:
    sdk = openai_client(stack, context_id)
    stack.fake.script(Reply(tool_calls=CALLS), Reply(text=ANSWER))
    sdk.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": QUESTION}]
    )
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=chat_history("")[:-2])


def start_on_anthropic(stack: Stack, context_id: str) -> None:
    sdk = anthropic_client(stack, context_id)
    stack.fake.script(Reply(tool_calls=CALLS), Reply(text=ANSWER))
    sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=[{"role": "user", "content": QUESTION}]
    )
    sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=anthropic_history("")[:-2])


def result_ids(message: dict[str, Any]) -> list[str]:
    return [p["toolCallId"] for p in message["parts"] if p["type"] == "tool-result"]


def shape(messages: list[dict[str, Any]]) -> list[tuple[str, str | list[str]]]:
    """(role, text or the ids of its tool calls / results) of each message."""
    out: list[tuple[str, str | list[str]]] = []
    for message in messages:
        ids = [p["toolCallId"] for p in message["parts"] if "toolCallId" in p]
        text = "".join(p.get("text", "") for p in message["parts"] if p["type"] == "text")
        out.append((message["role"], ids or text))
    return out


def assert_held_once(
    stack: Stack, context_id: str, first: list[tuple[str, str | list[str]]]
) -> None:
    """The log is the first provider's turn (``first``) and the follow-up
    turn once; the window is all of it."""
    log = stack.log(context_id)
    expected = [*first, ("assistant", ANSWER), ("user", "Thanks!"), ("assistant", "Welcome.")]
    assert shape(log) == expected
    window = stack.window(context_id)
    assert shape(window["messages"]) == expected
    assert window["segments"] == [{"type": "live", "from_seq": 1, "to_seq": len(expected)}]


CHAT_TURN: list[tuple[str, str | list[str]]] = [
    ("user", QUESTION),
    ("assistant", ["call_oslo", "call_paris"]),
    ("tool", ["call_oslo"]),
    ("tool", ["call_paris"]),
]
ANTHROPIC_TURN: list[tuple[str, str | list[str]]] = [
    ("user", QUESTION),
    ("assistant", ["call_oslo", "call_paris"]),
    ("tool", ["call_oslo", "call_paris"]),
]


def test_chat_then_anthropic_holds_the_parallel_results_once(stack: Stack) -> None:
    start_on_chat(stack, "cross-chat-anthropic")
    stack.fake.script(Reply(text="Welcome."))
    anthropic_client(stack, "cross-chat-anthropic").messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=anthropic_history("Thanks!")
    )
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert_held_once(stack, "cross-chat-anthropic", CHAT_TURN)


def test_anthropic_then_chat_holds_the_parallel_results_once(stack: Stack) -> None:
    start_on_anthropic(stack, "cross-anthropic-chat")
    stack.fake.script(Reply(text="Welcome."))
    openai_client(stack, "cross-anthropic-chat").chat.completions.create(
        model=OPENAI_MODEL, messages=chat_history("Thanks!")
    )
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "assistant", "user"]
    assert_held_once(stack, "cross-anthropic-chat", ANTHROPIC_TURN)


def test_anthropic_then_responses_holds_the_parallel_results_once(stack: Stack) -> None:
    start_on_anthropic(stack, "cross-anthropic-responses")
    stack.fake.script(Reply(text="Welcome."))
    openai_client(stack, "cross-anthropic-responses").responses.create(
        model=OPENAI_MODEL,
        input=responses_history("Thanks!"),
    )
    assert_held_once(stack, "cross-anthropic-responses", ANTHROPIC_TURN)


def test_results_in_another_order_are_the_same_results(stack: Stack) -> None:
    """A client converting its history may list a turn's results in another
    order than the calls: they answer the same calls all the same."""
    start_on_chat(stack, "cross-order")
    history = anthropic_history("Thanks!")
    history[2]["content"].reverse()
    stack.fake.script(Reply(text="Welcome."))
    anthropic_client(stack, "cross-order").messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=history
    )
    assert_held_once(stack, "cross-order", CHAT_TURN)


def test_regenerating_on_the_other_provider_rewinds_to_its_turn(stack: Stack) -> None:
    """The held history ends inside the log: the rewind goes right after it,
    at the log's own row, not at the regrouped results."""
    start_on_chat(stack, "cross-regenerate")
    sdk = anthropic_client(stack, "cross-regenerate")
    stack.fake.script(Reply(text="Welcome."), Reply(text="You are welcome."))
    sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=anthropic_history("Thanks!")
    )
    sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=anthropic_history("Thanks!")
    )
    turn = [("user", "Thanks!"), ("assistant", "You are welcome.")]
    log = shape(stack.log("cross-regenerate"))
    assert log == [
        *CHAT_TURN,
        ("assistant", ANSWER),
        ("user", "Thanks!"),
        ("assistant", "Welcome."),
        *turn,
    ]
    assert shape(stack.window("cross-regenerate")["messages"]) == [*log[:5], *turn]


def test_changed_results_are_not_held(stack: Stack) -> None:
    """Regrouped results that differ from the log's (the tool run again) are
    not held: the turn from them on is stored again, as within one provider."""
    start_on_chat(stack, "cross-changed")
    sdk = anthropic_client(stack, "cross-changed")
    stack.fake.script(Reply(text="Welcome."), Reply(text="Welcome again."))
    sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=anthropic_history("Thanks!")
    )
    assert_held_once(stack, "cross-changed", CHAT_TURN)
    history = anthropic_history("Thanks!")
    history[2]["content"][1]["content"] = "19 degrees"
    sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=history)
    turn = [
        ("tool", ["call_oslo", "call_paris"]),
        ("assistant", ANSWER),
        ("user", "Thanks!"),
        ("assistant", "Welcome again."),
    ]
    log = shape(stack.log("cross-changed"))
    assert log[7:] == turn
    assert shape(stack.window("cross-changed")["messages"]) == [*log[:2], *turn]


def test_results_sent_alone_replace_the_results_of_the_other_provider(stack: Stack) -> None:
    """A client that sends only its newest message regenerates a turn by
    sending its results again: all of them at once replace the log's, one
    message per result, from the first (no call is left with two results)."""
    start_on_chat(stack, "cross-alone")
    stack.fake.script(Reply(text="Oslo and Paris: mild."))
    anthropic_client(stack, "cross-alone").messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=anthropic_history("")[2:3]
    )
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    turn = [("tool", ["call_oslo", "call_paris"]), ("assistant", "Oslo and Paris: mild.")]
    log = shape(stack.log("cross-alone"))
    assert log == [*CHAT_TURN, ("assistant", ANSWER), *turn]
    assert shape(stack.window("cross-alone")["messages"]) == [*log[:2], *turn]


def test_results_sent_again_one_per_message_replace_the_logs(stack: Stack) -> None:
    """The same within one provider: an OpenAI client that sends only its
    newest messages regenerates a turn of parallel calls by sending their
    results again, a message each. They were appended after the log's
    results (each call then had two, which every provider refuses); they now
    replace them, from the first."""
    start_on_chat(stack, "chat-alone")
    stack.fake.script(Reply(text="Oslo and Paris: mild."))
    again = [
        {"role": "tool", "tool_call_id": call_id, "content": f"{output}, cloudy"}
        for call_id, output in RESULTS.items()
    ]
    openai_client(stack, "chat-alone").chat.completions.create(model=OPENAI_MODEL, messages=again)
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [m["content"] for m in sent[2:]] == ["3 degrees, cloudy", "18 degrees, cloudy"]
    turn = [
        ("tool", ["call_oslo"]),
        ("tool", ["call_paris"]),
        ("assistant", "Oslo and Paris: mild."),
    ]
    log = shape(stack.log("chat-alone"))
    assert log == [*CHAT_TURN, ("assistant", ANSWER), *turn]
    assert shape(stack.window("chat-alone")["messages"]) == [*log[:2], *turn]
