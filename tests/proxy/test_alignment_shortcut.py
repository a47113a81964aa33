"""``tail_match``, the shortcut every proxied call tries first (on the whole
log when it is short, on its newest rows when it is long), agrees with the
full ``align`` whenever it answers: over random logs with text, tool calls
and their results (one message each or all in one), and random requests
built from them (resent histories, trimmed windows, edits, gaps, repeats,
results given again)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpaca_core.model import Message, StoredMessage
from fastpaca_proxy.turns import align, tail_match, tail_size

_NOW = datetime(2026, 1, 1, tzinfo=UTC)
_TEXTS = ["hi", "again", "ok", "why", ""]


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _call(call_id: str) -> dict[str, Any]:
    return {"type": "tool-get", "toolCallId": call_id, "state": "input-available", "input": {}}


def _result(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "tool-result", "toolCallId": call_id, "toolName": "get", "output": output}


@st.composite
def _turns(draw: st.DrawFn) -> list[Message]:
    """A conversation of user turns, each answered by text or by tool calls
    whose results come one message each or together."""
    messages: list[Message] = []
    for turn in range(draw(st.integers(1, 6))):
        messages.append(Message("user", [_text(draw(st.sampled_from(_TEXTS)))]))
        calls = draw(st.integers(0, 2))
        if calls:
            ids = [f"c{turn}-{k}-{draw(st.integers(0, 1))}" for k in range(calls)]
            messages.append(Message("assistant", [_call(i) for i in ids]))
            outputs = [_result(i, draw(st.sampled_from(["1", "2"]))) for i in ids]
            if draw(st.booleans()):
                messages.extend(Message("tool", [r]) for r in outputs)
            else:
                messages.append(Message("tool", outputs))
        messages.append(Message("assistant", [_text(draw(st.sampled_from(_TEXTS)))]))
    return messages


def _rows(messages: list[Message]) -> list[StoredMessage]:
    return [
        StoredMessage(i, m.role, m.parts, {}, 1, i, i, _NOW)
        for i, m in enumerate(messages, start=1)
    ]


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[Message], list[StoredMessage]]:
    log = draw(_turns())
    rows = _rows(log)
    start = draw(st.integers(0, len(log)))
    end = draw(st.integers(start, len(log)))
    request = [Message(m.role, m.parts) for m in log[start:end]]
    if request and draw(st.booleans()):  # an edited or repeated message
        at = draw(st.integers(0, len(request) - 1))
        request[at] = draw(
            st.sampled_from([Message("user", [_text("edited")]), request[-1], request[0]])
        )
    tail = draw(st.sampled_from(["user", "results", "same"]))
    if tail == "user":
        request.append(Message("user", [_text(draw(st.sampled_from(_TEXTS)))]))
    elif tail == "results" and any(p["type"] == "tool-result" for m in log for p in m.parts):
        given_again = [p for m in log if m.role == "tool" for p in m.parts][-2:]
        request.append(Message("tool", given_again))
    elif request:
        request.append(request[-1])
    if not request:
        request.append(Message("user", [_text("new")]))
    return request, rows


@settings(max_examples=400, deadline=None)
@given(_cases())
def test_tail_match_agrees_with_align_on_the_whole_log(
    case: tuple[list[Message], list[StoredMessage]],
) -> None:
    request, rows = case
    last_seq = len(rows)
    quick = tail_match(request, rows, last_seq)
    if quick is not None:
        assert quick == align(request, rows, last_seq)


@settings(max_examples=400, deadline=None)
@given(_cases())
def test_tail_match_agrees_with_align_on_the_newest_rows(
    case: tuple[list[Message], list[StoredMessage]],
) -> None:
    request, rows = case
    last_seq = len(rows)
    quick = tail_match(request, rows[-tail_size(len(request)) :] if rows else [], last_seq)
    if quick is not None:
        assert quick == align(request, rows, last_seq)


def test_a_resent_history_is_settled_by_the_shortcut() -> None:
    """The case the shortcut exists for answers (it is not vacuous above)."""
    log = [
        Message("user", [_text("hi")]),
        Message("assistant", [_call("a")]),
        Message("tool", [_result("a", "1")]),
        Message("assistant", [_text("ok")]),
    ]
    rows = _rows(log)
    request = [*log, Message("user", [_text("again")])]
    quick = tail_match(request, rows, 4)
    assert quick is not None
    assert quick.matched == 4 and quick.rewind_to_seq is None
    assert quick == align(request, rows, 4)


# ``==`` on parts must not call equal what ``fingerprint`` (and so ``align``)
# tells apart: a tool input with its keys in another order, 1 against 1.0 / true
def _call_with(value: Any) -> dict[str, Any]:
    return {"type": "tool-get", "toolCallId": "c1", "state": "input-available", "input": value}


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # keys in another order
        ({"x": 1.0}, {"x": 1}),  # a float a client wrote back as an int
        ({"x": True}, {"x": 1}),
    ],
)
def test_tail_match_agrees_with_align_on_inputs_equal_only_to_python(
    stored: dict[str, Any], sent: dict[str, Any]
) -> None:
    log = [
        Message("user", [{"type": "text", "text": "hi"}]),
        Message("assistant", [_call_with(stored)]),
    ]
    rows = _rows(log)
    request = [
        log[0],
        Message("assistant", [_call_with(sent)]),
        Message("user", [{"type": "text", "text": "go"}]),
    ]
    full = align(request, rows, 2)
    quick = tail_match(request, rows, 2)
    assert quick is None or quick == full
