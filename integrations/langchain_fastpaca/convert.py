"""LangChain messages <-> Fastpaca messages (``{"role", "parts", "metadata", "token_count"?}``).

Writing (:func:`to_fastpaca`), one LangChain message is one stored message:

========================  ===========  ====================================================
LangChain                 role         parts
========================  ===========  ====================================================
``HumanMessage``          user         content (see ``_content``)
``AIMessage``             assistant    content, then one ``tool-<name>`` part per tool call
                                       (``{"toolCallId", "state": "input-available",
                                       "input": args}``; ``dynamic-tool`` when the name
                                       cannot be a suffix) and per invalid tool call
``SystemMessage``         system       content
``ToolMessage``           tool         one ``{"type": "tool-result", "toolCallId",
                                       "toolName", "output"}`` (``isError`` when
                                       ``status="error"``; list content: a list of parts)
``ChatMessage``           its role     content (a role the store lacks is ``user``)
``FunctionMessage``       user         content
========================  ===========  ====================================================

Chunks are stored as the message they complete. Everything parts do not hold
(``id``, ``name``, ``additional_kwargs``, ``response_metadata``,
``usage_metadata``, ``artifact``, a ``ChatMessage``'s role, whether content was
a list) is in ``metadata.langchain``: ``{"type", "fields"?, "list"?}``; a call
part's LangChain-only details (an invalid call, a missing id or name) are in
its ``callProviderMetadata.langchain``. So reading back gives the message
exactly, for JSON values (others come back as pydantic's JSON form of them).
An ``AIMessage`` whose ``usage_metadata.output_tokens`` is positive stores it
as ``token_count``.

Reading (:func:`from_fastpaca`) a message another way in wrote (the proxy, the
HTTP API, ai-sdk) may give several LangChain messages: a ``tool`` message
gives one ``ToolMessage`` per ``tool-result`` part, an assistant message whose
tool parts already hold their results (``output-available``) gives the
``AIMessage`` with the calls, then their ``ToolMessage`` s, then an
``AIMessage`` for what follows. An OpenAI refusal (``providerMetadata.openai.
refusal``) goes to ``additional_kwargs["refusal"]`` and OpenAI
``reasoning_content`` to ``additional_kwargs["reasoning_content"]``, where
LangChain's OpenAI integration keeps them. A tool input that is not an object
(OpenAI custom tools, arguments that did not parse) is an invalid tool call
with the input as text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
    message_chunk_to_message,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call
from pydantic_core import PydanticSerializationError

from fastpaca_core.toolcalls import RESULT_TYPE, is_call_part

from ._content import LANGCHAIN, decode_content, encode_content

__all__ = ["from_fastpaca", "from_fastpaca_messages", "to_fastpaca", "to_fastpaca_messages"]

_TYPES: dict[str, type[BaseMessage]] = {
    "human": HumanMessage,
    "ai": AIMessage,
    "system": SystemMessage,
    "tool": ToolMessage,
    "chat": ChatMessage,
    "function": FunctionMessage,
}
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_CHAT_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
}
# fields the parts hold, per message type
_IN_PARTS = {"ai": ("tool_calls", "invalid_tool_calls"), "tool": ("tool_call_id", "status")}
_SETTLED = {"output-available": "success", "output-error": "error", "output-denied": "error"}


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- writing ---------------------------------------------------------------------


def _call_part(name: str | None, call_id: str | None, value: Any, hint: dict[str, Any]) -> Any:
    if call_id is None:  # a part needs an id to pair with results; remember there was none
        call_id, hint = f"lc-{uuid.uuid4().hex}", {**hint, "id": None}
    if name is None:
        name, hint = "", {**hint, "name": None}
    part: dict[str, Any]
    if name and f"tool-{name}" != RESULT_TYPE:
        part = {"type": f"tool-{name}", "toolCallId": call_id}
    else:
        part = {"type": "dynamic-tool", "toolName": name, "toolCallId": call_id}
    part.update(state="input-available", input=value)
    if hint:
        part["callProviderMetadata"] = {LANGCHAIN: hint}
    return part


def _call_parts(message: AIMessage) -> list[dict[str, Any]]:
    parts = [_call_part(c["name"], c.get("id"), c["args"], {}) for c in message.tool_calls]
    for bad in message.invalid_tool_calls:
        hint = {"invalid": True, "error": bad.get("error")}
        parts.append(_call_part(bad.get("name"), bad.get("id"), bad.get("args"), hint))
    return parts


def _result_part(message: ToolMessage, tool_names: Mapping[str, str]) -> dict[str, Any]:
    content = message.content
    part: dict[str, Any] = {
        "type": RESULT_TYPE,
        "toolCallId": message.tool_call_id,
        "toolName": message.name or tool_names.get(message.tool_call_id, ""),
        "output": content if isinstance(content, str) else encode_content(content),
    }
    if message.status == "error":
        part["isError"] = True
    return part


def _role(message: BaseMessage) -> str:
    if isinstance(message, ChatMessage):
        return _CHAT_ROLES.get(message.role.lower(), "user")
    return _ROLES.get(message.type, "user")


def to_fastpaca(
    message: BaseMessage, *, tool_names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One LangChain message as a Fastpaca message (a dict ready to append).

    ``tool_names`` (call id -> tool name) names the tool of a ``ToolMessage``
    that has no ``name``; :func:`to_fastpaca_messages` fills it from the batch.
    """
    message = message_chunk_to_message(message)
    kind = message.type
    if not isinstance(message, _TYPES.get(kind, ())):
        raise TypeError(f"cannot store a {type(message).__name__} (message type {kind!r})")
    exclude = {"content", "type", *_IN_PARTS.get(kind, ())}
    try:
        fields = message.model_dump(mode="json", exclude=exclude, exclude_defaults=True)
    except (PydanticSerializationError, ValueError) as exc:  # ValueError: bytes not UTF-8
        raise TypeError(f"a {type(message).__name__} field is not JSON-serialisable") from exc
    sidecar: dict[str, Any] = {"type": kind}
    if fields:
        sidecar["fields"] = fields
    if isinstance(message.content, list):
        sidecar["list"] = True
    out: dict[str, Any] = {"role": _role(message), "metadata": {LANGCHAIN: sidecar}}
    if isinstance(message, ToolMessage):
        out["parts"] = [_result_part(message, tool_names or {})]
        return out
    out["parts"] = encode_content(message.content)
    if isinstance(message, AIMessage):
        out["parts"].extend(_call_parts(message))
        usage = message.usage_metadata
        tokens = usage.get("output_tokens") if usage is not None else None
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
            out["token_count"] = tokens
    return out


def to_fastpaca_messages(messages: Iterable[BaseMessage]) -> list[dict[str, Any]]:
    """Several messages; a ``ToolMessage`` without ``name`` gets its call's tool name."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, AIMessage):
            names.update((c["id"], c["name"]) for c in message.tool_calls if c["id"] is not None)
        out.append(to_fastpaca(message, tool_names=names))
    return out


# -- reading ---------------------------------------------------------------------


def _hint(part: Mapping[str, Any], key: str) -> dict[str, Any]:
    holder = part.get(key)
    value = holder.get(LANGCHAIN) if isinstance(holder, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def _openai_flag(part: Mapping[str, Any], flag: str) -> bool:
    holder = part.get("providerMetadata")
    openai = holder.get("openai") if isinstance(holder, Mapping) else None
    return isinstance(openai, Mapping) and openai.get(flag) is True


def _is_call(part: Mapping[str, Any]) -> bool:
    return isinstance(part.get("toolCallId"), str) and is_call_part(dict(part))


def _decode_call(part: Mapping[str, Any]) -> ToolCall | InvalidToolCall:
    hint = _hint(part, "callProviderMetadata")
    kind = str(part["type"])
    raw_name = part.get("toolName") if kind == "dynamic-tool" else kind[len("tool-") :]
    name = None if "name" in hint else str(raw_name or "")
    call_id = None if "id" in hint else str(part["toolCallId"])
    value = part.get("input")
    if hint.get("invalid") is True:
        error = hint.get("error")
        return invalid_tool_call(name=name, args=value, id=call_id, error=error)
    if isinstance(value, dict) and name is not None:
        return tool_call(name=name, args=value, id=call_id)
    args = value if value is None or isinstance(value, str) else _json_text(value)
    return invalid_tool_call(name=name, args=args, id=call_id, error=None)


def _output_content(output: Any, as_list: bool | None) -> str | list[Any]:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(isinstance(p, Mapping) for p in output):
        return decode_content(output, True if as_list else None)
    return "" if output is None else _json_text(output)


def _tool_message(part: Mapping[str, Any]) -> ToolMessage:
    """A foreign ``tool-result`` part, or a call part holding its result."""
    state = part.get("state")
    if part.get("type") == RESULT_TYPE:
        status = "error" if part.get("isError") is True else "success"
        output = part.get("output")
        name = part.get("toolName")
    else:
        status = _SETTLED.get(str(state), "success")
        output = part.get("output") if status == "success" else part.get("errorText") or state
        call = _decode_call(part)
        name = call.get("name")
    return ToolMessage(
        content=_output_content(output, None),
        tool_call_id=str(part["toolCallId"]),
        name=name if isinstance(name, str) and name else None,
        status=status,
    )


class _Turns:
    """A foreign assistant message as AIMessages, each followed by settled results."""

    def __init__(self) -> None:
        self.out: list[BaseMessage] = []
        self._reset()

    def _reset(self) -> None:
        self.content: list[Mapping[str, Any]] = []
        self.calls: list[ToolCall] = []
        self.invalid: list[InvalidToolCall] = []
        self.results: list[ToolMessage] = []
        self.extras: dict[str, Any] = {}

    def flush(self, final: bool = False) -> None:
        empty = not (self.content or self.calls or self.invalid or self.extras)
        if not (empty and (self.out or not final)):
            self.out.append(
                AIMessage(
                    content=decode_content(self.content, None),
                    tool_calls=self.calls,
                    invalid_tool_calls=self.invalid,
                    additional_kwargs=self.extras,
                )
            )
        self.out.extend(self.results)
        self._reset()

    def add(self, part: Mapping[str, Any]) -> None:
        if _is_call(part):
            call = _decode_call(part)
            if call.get("type") == "invalid_tool_call":
                self.invalid.append(call)  # type: ignore[arg-type]
            else:
                self.calls.append(call)  # type: ignore[arg-type]
            if part.get("state") in _SETTLED:
                self.results.append(_tool_message(part))
            return
        if self.results:  # what follows a settled tool step is the next turn
            self.flush()
        if part.get("type") == "text" and _openai_flag(part, "refusal"):
            self.extras["refusal"] = self.extras.get("refusal", "") + str(part.get("text", ""))
        elif part.get("type") == "reasoning" and _openai_flag(part, "reasoningContent"):
            self.extras["reasoning_content"] = str(part.get("text", ""))
        else:
            self.content.append(part)


def _foreign(role: Any, parts: list[Mapping[str, Any]]) -> list[BaseMessage]:
    if role == "tool":
        return [
            _tool_message(p)
            for p in parts
            if p.get("type") == RESULT_TYPE and isinstance(p.get("toolCallId"), str)
        ]
    if role == "assistant":
        turns = _Turns()
        for part in parts:
            turns.add(part)
        turns.flush(final=True)
        return turns.out
    content = decode_content([p for p in parts if not _is_call(p)], None)
    if role == "system":
        return [SystemMessage(content=content)]
    return [HumanMessage(content=content)]


def _ours(sidecar: Mapping[str, Any], parts: list[Mapping[str, Any]]) -> BaseMessage | None:
    kind = str(sidecar["type"])
    fields = sidecar.get("fields")
    kwargs: dict[str, Any] = dict(fields) if isinstance(fields, Mapping) else {}
    as_list = sidecar.get("list") is True
    if kind == "tool":
        result = next((p for p in parts if p.get("type") == RESULT_TYPE), None)
        if result is None or not isinstance(result.get("toolCallId"), str):
            return None
        kwargs["content"] = _output_content(result.get("output"), as_list)
        kwargs["tool_call_id"] = result["toolCallId"]
        kwargs["status"] = "error" if result.get("isError") is True else "success"
        return ToolMessage(**kwargs)
    calls = [_decode_call(p) for p in parts if _is_call(p)]
    kwargs["content"] = decode_content([p for p in parts if not _is_call(p)], as_list)
    if kind == "ai":
        kwargs["tool_calls"] = [c for c in calls if c.get("type") != "invalid_tool_call"]
        kwargs["invalid_tool_calls"] = [c for c in calls if c.get("type") == "invalid_tool_call"]
    return _TYPES[kind](**kwargs)


def from_fastpaca(message: Mapping[str, Any]) -> list[BaseMessage]:
    """A stored message (a dict as the engine or the HTTP API gives it) as LangChain messages.

    One message this module wrote gives back exactly the message written;
    one from elsewhere may give several (see the module docstring).
    """
    parts = [p for p in message.get("parts") or [] if isinstance(p, Mapping)]
    metadata = message.get("metadata")
    sidecar = metadata.get(LANGCHAIN) if isinstance(metadata, Mapping) else None
    if isinstance(sidecar, Mapping) and sidecar.get("type") in _TYPES:
        ours = _ours(sidecar, parts)
        if ours is not None:
            return [ours]
    return _foreign(message.get("role"), parts)


def from_fastpaca_messages(messages: Iterable[Mapping[str, Any]]) -> list[BaseMessage]:
    """Several stored messages, in order, as LangChain messages."""
    return [out for message in messages for out in from_fastpaca(message)]
