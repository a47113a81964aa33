"""Our messages as OpenAI Chat Completions ``messages``.

- ``system`` / ``user``: text (a string, or content parts when images come
  along; images are ``file`` parts with an ``image/*`` media type and a URL);
- ``assistant``: text as ``content`` and tool calls as ``tool_calls``; a part
  holding a call and its result (state ``output-available``) also yields the
  ``tool`` message answering it, right after;
- ``tool``: one ``tool`` message per ``tool-result`` part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..jsonutil import dumps_str
from ..model import Message
from ._parts import image_url, result_text, tool_call, tool_result

__all__ = ["to_openai_chat"]


def _text(message: Message) -> str:
    return "\n\n".join(
        str(p.get("text", "")) for p in message.parts if p.get("type") == "text" and p.get("text")
    )


def _user_content(message: Message) -> str | list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for part in message.parts:
        if part.get("type") == "text" and part.get("text"):
            items.append({"type": "text", "text": str(part["text"])})
        elif (url := image_url(part)) is not None:
            items.append({"type": "image_url", "image_url": {"url": url}})
    if all(item["type"] == "text" for item in items):
        return "\n\n".join(item["text"] for item in items)
    return items


def _tool_message(call_id: str, output: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": result_text(output)}


def _assistant(message: Message) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    for part in message.parts:
        call = tool_call(part)
        if call is not None:
            calls.append(
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": dumps_str(call.input)},
                }
            )
        result = tool_result(part)
        if result is not None:
            answers.append(_tool_message(result.call_id, result.output))
    text = _text(message)
    out: list[dict[str, Any]] = []
    if text or calls:
        reply: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            reply["tool_calls"] = calls
        out.append(reply)
    return out + answers


def to_openai_chat(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            out.extend(_assistant(message))
        elif message.role == "tool":
            for part in message.parts:
                result = tool_result(part)
                if result is not None:
                    out.append(_tool_message(result.call_id, result.output))
        elif message.role == "system":
            text = _text(message)
            if text:
                out.append({"role": "system", "content": text})
        else:
            content = _user_content(message)
            if content:
                out.append({"role": "user", "content": content})
    return out
