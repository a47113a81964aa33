"""Our messages as an Anthropic Messages request's ``system`` and ``messages``.

- every ``system`` message's text goes to ``system`` (joined by blank lines);
- ``user``: ``text`` and ``image`` blocks;
- ``assistant``: ``text`` and ``tool_use`` blocks; a part holding a call and
  its result also yields the ``tool_result``, in a user turn right after;
- ``tool``: a user turn of ``tool_result`` blocks.

Consecutive turns of one role are merged, as the API wants them alternating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Message
from ._parts import ToolResult, image_url, result_text, tool_call, tool_result

__all__ = ["AnthropicPayload", "to_anthropic"]


@dataclass(frozen=True, slots=True)
class AnthropicPayload:
    system: str | None
    messages: list[dict[str, Any]]


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media, data = url[len("data:") :].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _result_block(result: ToolResult) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": result.call_id,
        "content": result_text(result.output),
    }
    if result.is_error:
        block["is_error"] = True
    return block


def _blocks(message: Message) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The message's own blocks, and tool results that must follow as a user turn."""
    own: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for part in message.parts:
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            own.append({"type": "text", "text": str(part["text"])})
            continue
        if (url := image_url(part)) is not None:
            own.append(_image(url))
            continue
        call = tool_call(part)
        if call is not None and message.role == "assistant":
            own.append(
                {"type": "tool_use", "id": call.call_id, "name": call.name, "input": call.input}
            )
        result = tool_result(part)
        if result is not None:
            results.append(_result_block(result))
    return own, results


def to_anthropic(messages: Sequence[Message]) -> AnthropicPayload:
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for message in messages:
        own, results = _blocks(message)
        if message.role == "system":
            system.extend(block["text"] for block in own if block["type"] == "text")
        elif message.role == "assistant":
            add("assistant", own)
            add("user", results)
        elif message.role == "tool":
            add("user", results)
        else:
            add("user", results + own)
    return AnthropicPayload("\n\n".join(system) if system else None, turns)
