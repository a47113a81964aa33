"""Reading and building our parts; helpers every format module shares.

Provider extras live on a part under ``providerMetadata`` (``callProviderMetadata``
on tool call parts, as ai-sdk's UI tool parts have it), keyed by provider
(``openai``, ``anthropic``).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..jsonutil import dumps_str
from ..model import Message
from ..toolcalls import RESULT_TYPE, call_name, is_call_part, part_call_id

__all__ = [
    "ChatInput",
    "ToolCall",
    "ToolResult",
    "call_part",
    "clean",
    "data_url",
    "is_part_list",
    "meta",
    "parse_data_url",
    "reasoning_part",
    "rest",
    "result_part",
    "result_text",
    "text_part",
    "tool_call",
    "tool_result",
    "with_meta",
]

_SETTLED_OK = "output-available"
_SETTLED_ERROR = ("output-error", "output-denied")


@dataclass(frozen=True, slots=True)
class ChatInput:
    """A provider request's conversation, split for the proxy.

    ``preamble``: the request's system/developer messages or items, verbatim
    (provider format); ``messages``: everything else, in our shape.
    """

    preamble: list[dict[str, Any]]
    messages: list[Message]


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


# -- generic dict helpers ----------------------------------------------------


def clean(value: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without the keys whose value is ``None`` (the wire's null noise)."""
    return {k: v for k, v in value.items() if v is not None}


def rest(value: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """The keys of ``value`` not in ``known``: what a part keeps verbatim."""
    skip = set(known)
    return {k: v for k, v in value.items() if k not in skip}


def _dict(part: Mapping[str, Any]) -> dict[str, Any]:
    return part if isinstance(part, dict) else dict(part)


def _meta_key(part: Mapping[str, Any]) -> str:
    return "callProviderMetadata" if is_call_part(_dict(part)) else "providerMetadata"


def meta(part: Mapping[str, Any], provider: str) -> dict[str, Any]:
    """The part's extras for ``provider`` (``{}`` when none)."""
    holder = part.get(_meta_key(part))
    if not isinstance(holder, Mapping):
        return {}
    value = holder.get(provider)
    return dict(value) if isinstance(value, Mapping) else {}


def with_meta(part: dict[str, Any], provider: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``part`` with ``values`` merged into its ``provider`` extras (none: unchanged)."""
    if not values:
        return part
    key = _meta_key(part)
    holder = dict(part.get(key) or {})
    holder[provider] = {**meta(part, provider), **values}
    return {**part, key: holder}


# -- building parts ----------------------------------------------------------


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def reasoning_part(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "text": text}


def call_part(
    call_id: str, name: str, value: Any, provider: str, extras: Mapping[str, Any]
) -> dict[str, Any]:
    """A static ``tool-<name>`` part (``dynamic-tool`` when the name cannot be a suffix)."""
    part: dict[str, Any]
    if name and f"tool-{name}" != RESULT_TYPE:
        part = {"type": f"tool-{name}", "toolCallId": call_id}
    else:
        part = {"type": "dynamic-tool", "toolName": name, "toolCallId": call_id}
    part["state"] = "input-available"
    part["input"] = value
    return with_meta(part, provider, extras)


def result_part(
    call_id: str,
    name: str,
    output: Any,
    is_error: bool,
    provider: str,
    extras: Mapping[str, Any],
) -> dict[str, Any]:
    part: dict[str, Any] = {
        "type": RESULT_TYPE,
        "toolCallId": call_id,
        "toolName": name,
        "output": output,
    }
    if is_error:
        part["isError"] = True
    return with_meta(part, provider, extras)


# -- reading parts -----------------------------------------------------------


def tool_call(part: Mapping[str, Any]) -> ToolCall | None:
    """The call a ``tool-<name>`` / ``dynamic-tool`` part makes, if it is one."""
    call_id = part_call_id(_dict(part))
    if call_id is None or not is_call_part(_dict(part)):
        return None
    name = call_name(_dict(part))
    if not name:
        return None
    return ToolCall(call_id, name, part.get("input", {}))


def tool_result(part: Mapping[str, Any]) -> ToolResult | None:
    """The result a part holds: a ``tool-result`` part, or a settled call part."""
    call_id = part_call_id(_dict(part))
    if call_id is None:
        return None
    if part.get("type") == RESULT_TYPE:
        name = part.get("toolName")
        return ToolResult(
            call_id,
            name if isinstance(name, str) else "",
            part.get("output"),
            part.get("isError") is True,
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


def is_part_list(value: Any) -> bool:
    """A tool output that is a list of our parts (content blocks of a result)."""
    return isinstance(value, list) and all(
        isinstance(item, Mapping) and isinstance(item.get("type"), str) for item in value
    )


def result_text(output: Any) -> str:
    """A tool output as one string.

    Strings pass through; a list of parts gives its texts; ai-sdk's
    ``{"type": "text"|"json"|..., "value"}`` output objects are unwrapped;
    anything else is compact JSON.
    """
    if isinstance(output, str):
        return output
    if is_part_list(output) and output:
        return "\n\n".join(str(p.get("text", "")) for p in output if p.get("type") == "text")
    if isinstance(output, dict) and "value" in output and isinstance(output.get("type"), str):
        value = output["value"]
        return value if isinstance(value, str) else dumps_str(value)
    return "" if output is None else dumps_str(output)


# -- data URLs ---------------------------------------------------------------


def data_url(media_type: str, b64: str) -> str:
    return f"data:{media_type};base64,{b64}"


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 payload)`` of a ``data:`` URL, else ``None``."""
    if not url.startswith("data:") or "," not in url:
        return None
    head, payload = url[len("data:") :].split(",", 1)
    if head.endswith(";base64"):
        return head[: -len(";base64")].split(";")[0], payload
    try:
        raw = urllib.parse.unquote_to_bytes(payload)
        return head.split(";")[0], base64.b64encode(raw).decode()
    except (ValueError, binascii.Error):  # pragma: no cover - unquote is lenient
        return None
