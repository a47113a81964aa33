"""Message builders shared by the core tests."""

from __future__ import annotations

from typing import Any


def text(role: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "text": body}], **extra}


def call(call_id: str, tool: str = "weather", **extra: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "parts": [
            {
                "type": f"tool-{tool}",
                "toolCallId": call_id,
                "state": "input-available",
                "input": {"city": "Oslo"},
            }
        ],
        **extra,
    }


def result(call_id: str, tool: str = "weather", **extra: Any) -> dict[str, Any]:
    return {
        "role": "tool",
        "parts": [
            {"type": "tool-result", "toolCallId": call_id, "toolName": tool, "output": {"t": 3}}
        ],
        **extra,
    }
