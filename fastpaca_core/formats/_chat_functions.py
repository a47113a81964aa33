"""OpenAI Chat's legacy function calling: ``function_call`` and ``function`` messages.

Before ``tool_calls``, an assistant message made at most one call,
``function_call: {name, arguments}``, and a ``{"role": "function", "name",
"content"}`` message answered it; neither carries an id, and the API (and
older clients, LangChain's among them) still use them. They are stored as
any call and result are (a ``tool-<name>`` part; a ``tool`` message with a
``tool-result`` part), flagged ``openai.legacyFunction`` so that they go back
to Chat in their own shape, under a synthetic id:

- a call's is derived from its name and arguments text, so the same message
  gets the same id whether it comes in a request, a reply or a resent
  history, and a resent history still matches the log;
- a result takes the id of the nearest preceding call of its name still
  unanswered (else the nearest call of that name), in the request
  (:class:`Pairing`) or, for a client that sends only its newest message,
  in the log (:func:`resolve_function_results`).

So the window pairs them as it pairs any call and its result: a compaction
never separates them, nor leaves the window starting with the result alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..model import Message, StoredMessage
from ..toolcalls import RESULT_TYPE, call_name, is_call_part
from ._openai import OPENAI
from ._parts import meta

__all__ = [
    "LEGACY",
    "Pairing",
    "call_id_for",
    "has_unpaired",
    "is_legacy",
    "resolve_function_results",
]

LEGACY = "legacyFunction"
_CALL_PREFIX = "call_fn_"
_UNPAIRED_PREFIX = "call_fnr_"  # a result whose call the request does not hold


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def call_id_for(name: str, arguments: str) -> str:
    """The id of a legacy call: the same for the same name and arguments text
    (letters, digits and ``_`` only, as every provider takes ids)."""
    return _CALL_PREFIX + _digest(f"{name}\x00{arguments}")


def _unpaired_id(name: str) -> str:
    return _UNPAIRED_PREFIX + _digest(name)


def is_legacy(part: dict[str, Any]) -> bool:
    """A call or result part stored from a legacy ``function_call`` / ``function`` message."""
    return bool(meta(part, OPENAI).get(LEGACY))


def _is_unpaired(part: dict[str, Any]) -> bool:
    call_id = part.get("toolCallId")
    return (
        part.get("type") == RESULT_TYPE
        and isinstance(call_id, str)
        and call_id.startswith(_UNPAIRED_PREFIX)
        and is_legacy(part)
    )


def has_unpaired(messages: Sequence[Message]) -> bool:
    """Whether a legacy result among ``messages`` waits for the log to name its call."""
    for message in messages:  # (a loop: twice per proxied call, over every message)
        if message.role == "tool":
            for part in message.parts:
                if _is_unpaired(part):
                    return True
    return False


class Pairing:
    """The legacy calls of one request so far, for the results that follow them."""

    __slots__ = ("_latest", "_open")

    def __init__(self) -> None:
        self._open: dict[str, list[str]] = {}  # name -> ids of unanswered calls, oldest first
        self._latest: dict[str, str] = {}  # name -> id of the latest call

    def call(self, name: str, call_id: str) -> None:
        self._open.setdefault(name, []).append(call_id)
        self._latest[name] = call_id

    def answer(self, name: str) -> str:
        """The id a ``function`` message of ``name`` answers (one the log must
        name when no call of ``name`` came before it in the request)."""
        waiting = self._open.get(name)
        if waiting:
            return waiting.pop()
        return self._latest.get(name) or _unpaired_id(name)


def resolve_function_results(
    messages: Sequence[Message], log: Sequence[Message | StoredMessage]
) -> list[Message]:
    """``messages`` with their legacy results that the request could not pair
    paired with the calls in ``log`` (rows in seq order): the nearest call of
    the result's name that no later row answers, else the nearest of that
    name. A result whose call ``log`` does not hold stays as it is."""
    answered: set[str] = set()
    calls: list[tuple[str, str, bool]] = []  # (name, id, answered later), newest first
    for row in reversed(log):
        for part in reversed(row.parts):
            call_id = part.get("toolCallId")
            if not isinstance(call_id, str):
                continue
            if part.get("type") == RESULT_TYPE:
                answered.add(call_id)
            elif is_call_part(part) and is_legacy(part):
                name = call_name(part)
                if name:
                    calls.append((name, call_id, call_id in answered))
    taken: set[str] = set()
    out: list[Message] = []
    for message in messages:
        if message.role != "tool" or not any(_is_unpaired(p) for p in message.parts):
            out.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for part in message.parts:
            found = _log_call(calls, part.get("toolName"), taken) if _is_unpaired(part) else None
            parts.append(part if found is None else {**part, "toolCallId": found})
        out.append(replace(message, parts=parts))
    return out


def _log_call(calls: list[tuple[str, str, bool]], name: Any, taken: set[str]) -> str | None:
    same = [(call_id, done) for called, call_id, done in calls if called == name]
    for call_id, done in same:
        if not done and call_id not in taken:
            taken.add(call_id)
            return call_id
    return same[0][0] if same else None
