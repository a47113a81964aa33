"""Aligning a proxied request with the log: what is new, what diverged."""

from __future__ import annotations

from datetime import UTC, datetime

from fastpaca_core.model import Message, StoredMessage
from fastpaca_proxy.turns import align, fingerprint


def msg(role: str, body: str) -> Message:
    return Message(role, [{"type": "text", "text": body}])


def log_of(*messages: Message) -> list[StoredMessage]:
    now = datetime.now(UTC)
    return [
        StoredMessage(i, m.role, m.parts, m.metadata, 1, i, i, now)
        for i, m in enumerate(messages, start=1)
    ]


Q1, A1, Q2, A2 = (
    msg("user", "q1"),
    msg("assistant", "a1"),
    msg("user", "q2"),
    msg("assistant", "a2"),
)


def test_first_request_is_all_new() -> None:
    result = align([Q1], [], 0)
    assert (result.new, result.rewind_to_seq) == ([Q1], None)


def test_full_history_resend_appends_only_the_new_turn() -> None:
    log = log_of(Q1, A1)
    result = align([Q1, A1, Q2], log, 2)
    assert (result.new, result.matched, result.rewind_to_seq) == ([Q2], 2, None)


def test_newest_message_only() -> None:
    result = align([Q2], log_of(Q1, A1), 2)
    assert result.new == [Q2]
    # the same text as the last logged message is still a new message
    assert align([A1], log_of(Q1, A1), 2).new == [A1]


def test_client_trimmed_window() -> None:
    result = align([A1, Q2], log_of(Q1, A1), 2)
    assert (result.new, result.rewind_to_seq) == ([Q2], None)


def test_tool_loop_result_after_stored_call() -> None:
    call = Message(
        "assistant",
        [{"type": "tool-w", "toolCallId": "c", "state": "input-available", "input": {}}],
    )
    res = Message(
        "tool", [{"type": "tool-result", "toolCallId": "c", "toolName": "w", "output": "ok"}]
    )
    result = align([Q1, call, res], log_of(Q1, call), 2)
    assert (result.new, result.rewind_to_seq) == ([res], None)


def test_regenerate_rewinds_to_the_repeated_question() -> None:
    log = log_of(Q1, A1, Q2, A2)
    result = align([Q1, A1, Q2], log, 4)
    assert (result.new, result.rewind_to_seq) == ([Q2], 3)


def test_edited_turn_rewinds_to_the_edit() -> None:
    edited = msg("user", "q2 (edited)")
    result = align([Q1, A1, edited], log_of(Q1, A1, Q2, A2), 4)
    assert (result.new, result.rewind_to_seq) == ([edited], 3)
    earlier = msg("user", "q1 (edited)")
    assert align([earlier], log_of(Q1, A1), 2).new == [earlier]


def test_fingerprint_ignores_ids_reasoning_and_token_counts() -> None:
    plain = Message("assistant", [{"type": "text", "text": "hi"}])
    rich = Message(
        "assistant",
        [
            {"type": "reasoning", "text": "..."},
            {"type": "text", "text": "hi", "providerMetadata": {}},
        ],
        {"id": "x"},
        99,
    )
    assert fingerprint(plain) == fingerprint(rich)
    assert fingerprint(plain) != fingerprint(Message("user", plain.parts))
