"""The plain-text shortcuts of the format conversions agree with the general path.

A user or assistant message that is one bare text part (the bulk of every
conversation) takes a shortcut in ``to_openai_chat``, ``from_openai_chat``,
``to_anthropic`` and ``from_anthropic``. Each case here sends the same content
once in the shortcut's shape and once in a shape that only the general path
takes (an empty provider-metadata holder, a null field, a one-block list),
and the results must be equal.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fastpaca_core.formats import from_anthropic, from_openai_chat, to_anthropic, to_openai_chat
from fastpaca_core.model import Message

from .support import ROUND_TRIPS

ROLES = st.sampled_from(["user", "assistant"])
TEXTS = st.text(max_size=40)
CONVERSATIONS = st.lists(st.tuples(ROLES, TEXTS), min_size=1, max_size=6)


def _plain(convo: list[tuple[str, str]]) -> list[Message]:
    return [Message(role, [{"type": "text", "text": text}]) for role, text in convo]


def _general(convo: list[tuple[str, str]]) -> list[Message]:
    """The same messages, each with something that keeps it off the shortcut."""
    out = []
    for index, (role, text) in enumerate(convo):
        if index % 2:
            out.append(Message(role, [{"type": "text", "text": text, "providerMetadata": {}}]))
        else:
            out.append(Message(role, [{"type": "text", "text": text}], {"providerMetadata": {}}))
    return out


@ROUND_TRIPS
@given(CONVERSATIONS)
def test_to_openai_chat(convo: list[tuple[str, str]]) -> None:
    assert to_openai_chat(_plain(convo)) == to_openai_chat(_general(convo))


@ROUND_TRIPS
@given(CONVERSATIONS)
def test_to_anthropic(convo: list[tuple[str, str]]) -> None:
    # only a part's own extras keep it off the Anthropic shortcut
    general = [
        Message(role, [{"type": "text", "text": text, "providerMetadata": {}}])
        for role, text in convo
    ]
    assert to_anthropic(_plain(convo)) == to_anthropic(general)


@ROUND_TRIPS
@given(CONVERSATIONS)
def test_from_openai_chat(convo: list[tuple[str, str]]) -> None:
    plain: list[dict[str, Any]] = [{"role": r, "content": t} for r, t in convo]
    general: list[dict[str, Any]] = [{"role": r, "content": t, "name": None} for r, t in convo]
    assert from_openai_chat(plain) == from_openai_chat(general)
    assert from_openai_chat(plain).messages == _plain(convo)


@ROUND_TRIPS
@given(CONVERSATIONS)
def test_from_anthropic(convo: list[tuple[str, str]]) -> None:
    plain: list[dict[str, Any]] = [{"role": r, "content": t} for r, t in convo]
    blocks = [{"role": r, "content": [{"type": "text", "text": t}]} for r, t in convo]
    assert from_anthropic(plain) == from_anthropic(blocks)
    assert from_anthropic(plain).messages == _plain(convo)


def test_a_role_that_is_not_a_string_is_kept_verbatim() -> None:
    odd: dict[str, Any] = {"role": {"x": 1}, "content": "hi"}
    split = from_openai_chat([odd])
    assert [m.parts for m in split.messages] == [
        [{"type": "data-openai-chat-message", "data": odd}]
    ]
    assert from_anthropic([odd]).messages[0].parts[0]["data"] == odd
