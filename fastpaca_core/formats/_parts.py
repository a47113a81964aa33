"""Reading our parts: text, images, tool calls and tool results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..jsonutil import dumps_str
from ..toolcalls import RESULT_TYPE, is_call_part, part_call_id

__all__ = ["ToolCall", "ToolResult", "image_url", "result_text", "tool_call", "tool_result"]

_SETTLED_OK = "output-available"
_SETTLED_ERROR = ("output-error", "output-denied")


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    input: Any


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str
    output: Any
    is_error: bool = False


def tool_call(part: dict[str, Any]) -> ToolCall | None:
    """The call a ``tool-<name>`` / ``dynamic-tool`` part makes, if it is one."""
    call_id = part_call_id(part)
    if call_id is None or not is_call_part(part):
        return None
    kind = str(part["type"])
    name = part.get("toolName") if kind == "dynamic-tool" else kind[len("tool-") :]
    if not isinstance(name, str) or not name:
        return None
    raw_input = part.get("input")
    return ToolCall(call_id, name, {} if raw_input is None else raw_input)


def tool_result(part: dict[str, Any]) -> ToolResult | None:
    """The result a part holds: a ``tool-result`` part, or a settled call part."""
    call_id = part_call_id(part)
    if call_id is None:
        return None
    if part.get("type") == RESULT_TYPE:
        name = part.get("toolName")
        return ToolResult(
            call_id,
            name if isinstance(name, str) else "",
            part.get("output"),
            bool(part.get("isError", False)),
        )
    call = tool_call(part)
    if call is None:
        return None
    state = part.get("state")
    if state == _SETTLED_OK:
        return ToolResult(call_id, call.name, part.get("output"))
    if state in _SETTLED_ERROR:
        return ToolResult(call_id, call.name, part.get("errorText") or state, True)
    return None


def result_text(output: Any) -> str:
    """A tool output as the string model APIs take.

    Strings pass through; ai-sdk's ``{"type": "text"|"json"|..., "value"}``
    output objects are unwrapped; anything else is compact JSON.
    """
    if isinstance(output, str):
        return output
    if isinstance(output, dict) and "value" in output and isinstance(output.get("type"), str):
        value = output["value"]
        return value if isinstance(value, str) else dumps_str(value)
    return "" if output is None else dumps_str(output)


def image_url(part: dict[str, Any]) -> str | None:
    """The URL (or data URL) of an image ``file`` part."""
    if part.get("type") != "file":
        return None
    media = part.get("mediaType") or part.get("mimeType") or ""
    url = part.get("url")
    if isinstance(media, str) and media.startswith("image/") and isinstance(url, str) and url:
        return url
    return None
