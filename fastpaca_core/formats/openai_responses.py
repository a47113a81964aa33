"""OpenAI Responses ``input`` items <-> our messages.

In (:func:`from_responses_input`, :func:`reply_from_response`):

- ``input`` given as a string is one user message;
- ``system`` / ``developer`` message items are the preamble, kept verbatim
  (the request's ``instructions`` field is left to the caller);
- a ``user`` message item is one user message: ``input_text`` (``text``),
  ``input_image`` / ``input_file`` (``file`` parts, as in Chat Completions;
  ``file_url`` or ``file_data`` is the ``url``);
- assistant message items (``output_text``, ``refusal``), ``function_call`` /
  ``custom_tool_call`` items (``tool-<name>`` parts) and ``reasoning`` items
  in a row merge into ONE assistant message, parts in item order;
- ``reasoning``: one ``reasoning`` part per item; its text is the summary
  texts (else the ``reasoning_text`` contents) joined by blank lines;
  ``providerMetadata.openai`` holds ``itemId``, ``summary`` (verbatim),
  ``encryptedContent`` and the item's other keys under ``responses``;
- ``function_call_output`` / ``custom_tool_call_output``: a ``tool`` message
  with one ``tool-result`` part (``toolName``: the item's ``name``, else the
  call's earlier in the list, else ``""``);
- any other item (``web_search_call``, ``item_reference``, ``mcp_call``, ...)
  and any item we cannot read: a ``data-openai-item`` part holding the item,
  in the assistant message, replayed verbatim.

Item ids become ``openai.itemId`` on calls, outputs and reasoning. The first
part of each message item carries the item's envelope (every key but
``role`` and ``content``: ``type``, ``id``, ``status``, ``phase``...) in
``openai.item``; it marks where one message item ends and the next begins. A
content item's keys we do not map (``annotations``, ``logprobs``,
``prompt_cache_breakpoint``...) go to the part's ``openai.responses``, as do
those of calls, outputs and reasoning; an unknown content item is a
``data-openai-content`` part. Top-level ``null`` values count as absent.

Out (:func:`to_responses_input`): the reverse, item by item. Content is a
string exactly when an item has one plain text part (a stored ``system``
message, which never comes from a request, is its texts joined by blank
lines). Text from other sources
in assistant messages is ``output_text``; reasoning without an ``itemId``
(another provider's, or Chat Completions' ``reasoning_content``) is left
out, as are another provider's file ids and audio (Responses takes none).

Replies: ``response.output`` becomes one assistant message whose
``token_count`` is ``usage.output_tokens``; converting it back gives the
output items minus their ``null`` fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model import Message, StoredMessage
from ..toolcalls import RESULT_TYPE
from ._openai import (
    OPENAI,
    arguments_of,
    custom_input,
    file_part,
    foreign_file,
    parse_arguments,
    part_kind,
)
from ._parts import (
    ChatInput,
    ToolCall,
    ToolResult,
    call_part,
    clean,
    is_part_list,
    meta,
    reasoning_part,
    rest,
    result_part,
    result_text,
    text_part,
    tool_call,
    tool_result,
    with_meta,
)

__all__ = [
    "from_responses_input",
    "reply_from_response",
    "resolve_item_references",
    "to_responses_input",
]

RAW_ITEM = "data-openai-item"
RAW_CONTENT = "data-openai-content"
_PREAMBLE = frozenset({"system", "developer"})
_CALLS = {"function_call": False, "custom_tool_call": True}  # type -> custom?
_OUTPUTS = {"function_call_output": False, "custom_tool_call_output": True}
_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError)
_CONTENT_KINDS = frozenset({"text", "file", RAW_CONTENT})


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _responses(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"responses": dict(values)} if values else {}


def _text_type(role: str) -> str:
    return "output_text" if role == "assistant" else "input_text"


# -- in ----------------------------------------------------------------------


def _content_part(raw: Mapping[str, Any], role: str) -> dict[str, Any]:
    item = clean(raw)
    kind = item.get("type")
    try:
        if kind in ("input_text", "output_text"):
            known = ("type", "text") if kind == _text_type(role) else ("text",)
            return with_meta(text_part(_str(item["text"])), OPENAI, _responses(rest(item, known)))
        if kind == "refusal":
            extras = {"refusal": True, **_responses(rest(item, ("type", "refusal")))}
            return with_meta(text_part(_str(item["refusal"])), OPENAI, extras)
        if kind in ("input_image", "input_file"):
            keys = ("type", "image_url", "file_id", "file_data", "file_url", "filename", "detail")
            extras = _responses(rest(item, keys))
            if "detail" in item:
                extras["detail"] = item["detail"]
            wire = "image" if kind == "input_image" else "file"
            name = item.get("filename")
            if "file_id" in item:
                url, file_id = item["file_id"], True
            else:
                url, file_id = (
                    item.get("image_url") or item.get("file_data") or item["file_url"],
                    False,
                )
                if "file_data" in item and not str(url).startswith("data:"):
                    extras["fileData"] = True  # bare base64, not a data URL
            part = file_part(_str(url), wire, file_id=file_id, filename=name, extras=extras)
            # else (``image_url`` and ``file_id`` both given...) kept verbatim
            if _content_item(part, role) == item:
                return part
    except _UNREADABLE:
        pass
    return {"type": RAW_CONTENT, "data": dict(raw)}


def _message_parts(item: Mapping[str, Any], role: str) -> list[dict[str, Any]]:
    content = item["content"]
    if isinstance(content, str):
        parts = [text_part(content)]
    elif isinstance(content, list):
        parts = [_content_part(c, role) for c in content]
    else:
        raise TypeError("content must be a string or a list")
    envelope = rest(item, ("role", "content"))
    if parts and (envelope or role == "assistant"):
        parts[0] = with_meta(parts[0], OPENAI, {"item": envelope})
    return parts


def _call_part(item: Mapping[str, Any], names: dict[str, str], custom: bool) -> dict[str, Any]:
    call_id, name = _str(item["call_id"]), _str(item["name"])
    extras: dict[str, Any]
    if custom:
        value, extras, known = _str(item["input"]), {"custom": True}, "input"
    else:
        value, extras = parse_arguments(_str(item["arguments"]))
        known = "arguments"
    if "id" in item:
        extras["itemId"] = item["id"]
    extras.update(_responses(rest(item, ("type", "call_id", "name", "id", known))))
    names[call_id] = name
    return call_part(call_id, name, value, OPENAI, extras)


def _texts(entries: Any) -> list[str]:
    if not isinstance(entries, list):
        return []
    return [str(e["text"]) for e in entries if isinstance(e, Mapping) and "text" in e]


def _reasoning(item: Mapping[str, Any]) -> dict[str, Any]:
    summary = item.get("summary", [])
    text = "\n\n".join(_texts(summary)) or "\n\n".join(_texts(item.get("content")))
    extras: dict[str, Any] = {"itemId": _str(item["id"]), "summary": summary}
    if "encrypted_content" in item:
        extras["encryptedContent"] = item["encrypted_content"]
    extras.update(_responses(rest(item, ("type", "id", "summary", "encrypted_content"))))
    return with_meta(reasoning_part(text), OPENAI, extras)


def _result(item: Mapping[str, Any], names: dict[str, str], custom: bool) -> Message:
    call_id = _str(item["call_id"])
    output = item.get("output")
    if isinstance(output, list):
        output = [_content_part(c, "user") for c in output]
    name = item.get("name")
    extras: dict[str, Any] = {"custom": True} if custom else {}
    if "id" in item:
        extras["itemId"] = item["id"]
    extras.update(_responses(rest(item, ("type", "call_id", "output", "id"))))
    tool_name = name if isinstance(name, str) else names.get(call_id, "")
    return Message("tool", [result_part(call_id, tool_name, output, False, OPENAI, extras)])


def _convert(items: Sequence[Mapping[str, Any]]) -> ChatInput:
    preamble: list[dict[str, Any]] = []
    out: list[Message] = []
    pending: list[dict[str, Any]] = []  # the assistant message being gathered
    names: dict[str, str] = {}

    def close(message: Message | None = None) -> None:
        if pending:
            out.append(Message("assistant", list(pending)))
            pending.clear()
        if message is not None:
            out.append(message)

    for raw in items:
        role = raw.get("role")
        kind = raw.get("type", "message" if "role" in raw else None)
        if kind == "message" and isinstance(role, str) and role in _PREAMBLE:
            preamble.append(dict(raw))
            continue
        item = clean(raw)
        try:
            if kind == "message" and role == "user":
                close(Message("user", _message_parts(item, "user")))
            elif kind == "message" and role == "assistant":
                pending.extend(_message_parts(item, "assistant"))
            elif kind in _CALLS:
                pending.append(_call_part(item, names, _CALLS[str(kind)]))
            elif kind == "reasoning":
                pending.append(_reasoning(item))
            elif kind in _OUTPUTS:
                close(_result(item, names, _OUTPUTS[str(kind)]))
            else:
                pending.append({"type": RAW_ITEM, "data": item})
        except _UNREADABLE:
            pending.append({"type": RAW_ITEM, "data": item})
    close()
    return ChatInput(preamble, out)


def from_responses_input(input: str | Sequence[Mapping[str, Any]]) -> ChatInput:  # noqa: A002
    if isinstance(input, str):
        return ChatInput([], [Message("user", [text_part(input)])])
    return _convert(input)


def reply_from_response(body: Mapping[str, Any]) -> Message:
    """``response.output`` as one assistant message; tokens from ``usage``."""
    output = body.get("output")
    items = [i for i in output if isinstance(i, Mapping)] if isinstance(output, list) else []
    parts = [part for message in _convert(items).messages for part in message.parts]
    usage = body.get("usage")
    tokens = usage.get("output_tokens") if isinstance(usage, Mapping) else None
    count = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
    return Message("assistant", parts, {}, count)


# -- out ---------------------------------------------------------------------


def _content_item(part: Mapping[str, Any], role: str) -> dict[str, Any] | None:
    kind = part.get("type")
    extras = meta(part, OPENAI)
    leftovers = dict(extras.get("responses") or {})
    if kind == "text":
        text = str(part.get("text", ""))
        if extras.get("refusal"):
            return {"type": "refusal", "refusal": text, **leftovers}
        return {"type": _text_type(role), "text": text, **leftovers}
    if kind == "file" and not foreign_file(part):
        url = str(part.get("url", ""))
        file_kind = part_kind(part)
        detail = {"detail": extras["detail"]} if "detail" in extras else {}
        if file_kind == "image":
            key = "file_id" if extras.get("fileId") else "image_url"
            return {"type": "input_image", key: url, **detail, **leftovers}
        if file_kind == "audio":
            return None  # Responses takes no audio input
        key = "file_id" if extras.get("fileId") else "file_data"
        if key == "file_data" and not url.startswith("data:") and not extras.get("fileData"):
            key = "file_url"
        name = part.get("filename")
        filename = {"filename": name} if isinstance(name, str) else {}
        return {"type": "input_file", key: url, **filename, **detail, **leftovers}
    if kind == RAW_CONTENT and isinstance(part.get("data"), Mapping):
        return dict(part["data"])
    return None


def _plain(part: Mapping[str, Any]) -> bool:
    extras = meta(part, OPENAI)
    return part.get("type") == "text" and not extras.get("refusal") and not extras.get("responses")


def _content(pairs: Sequence[tuple[Mapping[str, Any], dict[str, Any]]]) -> Any:
    if len(pairs) == 1 and _plain(pairs[0][0]):
        return pairs[0][1]["text"]
    return [item for _, item in pairs]


def _envelope(part: Mapping[str, Any]) -> dict[str, Any] | None:
    value = meta(part, OPENAI).get("item")
    return dict(value) if isinstance(value, Mapping) else None


def _message_item(message: Message, role: str) -> dict[str, Any] | None:
    pairs = [
        (p, item)
        for p in message.parts
        if p.get("type") in _CONTENT_KINDS and (item := _content_item(p, role)) is not None
    ]
    if not pairs:
        return None
    envelope = _envelope(pairs[0][0]) or {}
    return {"role": role, "content": _content(pairs), **envelope}


def _output(output: Any) -> Any:
    if is_part_list(output):
        return [item for p in output if (item := _content_item(p, "user")) is not None]
    return result_text(output)


def _output_item(result: ToolResult, extras: Mapping[str, Any], custom: set[str]) -> dict[str, Any]:
    """A result's output item; ``custom``: ids of the custom tool calls so far."""
    is_custom = extras.get("custom") or result.call_id in custom
    kind = "custom_tool_call_output" if is_custom else "function_call_output"
    item: dict[str, Any] = {"type": kind, "call_id": result.call_id}
    item["output"] = _output(result.output)
    if "itemId" in extras:
        item["id"] = extras["itemId"]
    return {**item, **(extras.get("responses") or {})}


def _call_item(call: ToolCall, extras: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any]
    if extras.get("custom"):
        item = {"type": "custom_tool_call", "input": custom_input(call)}
    else:
        item = {"type": "function_call", "arguments": arguments_of(call, extras)}
    item["call_id"] = call.call_id
    item["name"] = call.name
    if "itemId" in extras:
        item["id"] = extras["itemId"]
    return {**item, **(extras.get("responses") or {})}


def _reasoning_item(part: Mapping[str, Any], items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The reasoning item to replay; ``None`` when there is none or it joined the last."""
    extras = meta(part, OPENAI)
    item_id = extras.get("itemId")
    if not isinstance(item_id, str):
        return None
    if "summary" not in extras:  # ai-sdk style: one part per summary entry
        text = str(part.get("text", ""))
        entry = [{"type": "summary_text", "text": text}] if text else []
        last = items[-1] if items else None
        if last is not None and last.get("type") == "reasoning" and last.get("id") == item_id:
            last["summary"] = [*last["summary"], *entry]
            return None
        summary: Any = entry
    else:
        summary = extras["summary"]
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": summary}
    encrypted = extras.get("encryptedContent", extras.get("reasoningEncryptedContent"))
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return {**item, **(extras.get("responses") or {})}


def _assistant_items(message: Message, custom: set[str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    groups: list[tuple[dict[str, Any], list[tuple[Mapping[str, Any], dict[str, Any]]]]] = []
    answers: list[dict[str, Any]] = []
    open_group = False
    for part in message.parts:
        kind = part.get("type")
        if answers and tool_call(part) is None and tool_result(part) is None:
            # what follows settled calls is the next step: it saw their results
            items.extend(answers)
            answers = []
            open_group = False
        if kind in _CONTENT_KINDS:
            content = _content_item(part, "assistant")
            if content is None:
                continue
            envelope = _envelope(part)
            if not open_group or envelope is not None:
                head: dict[str, Any] = {"role": "assistant", **(envelope or {})}
                items.append(head)
                groups.append((head, []))
                open_group = True
            groups[-1][1].append((part, content))
            continue
        open_group = False
        if kind == "reasoning":
            if (reasoning := _reasoning_item(part, items)) is not None:
                items.append(reasoning)
        elif kind == RAW_ITEM and isinstance(part.get("data"), Mapping):
            items.append(dict(part["data"]))
        elif (call := tool_call(part)) is not None:
            extras = meta(part, OPENAI)
            items.append(_call_item(call, extras))
            if extras.get("custom"):
                custom.add(call.call_id)
            if (result := tool_result(part)) is not None:
                answers.append(_output_item(result, {}, custom))
        elif (result := tool_result(part)) is not None:
            answers.append(_output_item(result, meta(part, OPENAI), custom))
    for head, pairs in groups:
        head["content"] = _content(pairs)
    return items + answers


def to_responses_input(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    custom: set[str] = set()  # a custom tool call is answered by a custom output
    for message in messages:
        if message.role == "assistant":
            out.extend(_assistant_items(message, custom))
        elif message.role == "tool":
            for part in message.parts:
                if part.get("type") == RAW_ITEM and isinstance(part.get("data"), Mapping):
                    out.append(dict(part["data"]))
                elif (result := tool_result(part)) is not None:
                    extras = meta(part, OPENAI) if part.get("type") == RESULT_TYPE else {}
                    out.append(_output_item(result, extras, custom))
        elif message.role == "system":
            texts = [p.get("text") for p in message.parts if p.get("type") == "text"]
            if text := "\n\n".join(t for t in texts if isinstance(t, str) and t):
                out.append({"role": "system", "content": text})
        elif (item := _message_item(message, "user")) is not None:
            out.append(item)
    return out


def _items_by_id(
    messages: Sequence[Message | StoredMessage],
) -> dict[str, list[dict[str, Any]]]:
    """The parts of every output item the messages hold, by item id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        current: list[dict[str, Any]] | None = None
        for part in message.parts:
            extras = meta(part, OPENAI)
            envelope = extras.get("item")
            if isinstance(envelope, Mapping) and isinstance(envelope.get("id"), str):
                current = found[envelope["id"]] = [part]
            elif isinstance(extras.get("itemId"), str):
                current = None
                found[extras["itemId"]] = [part]
            elif current is not None and part.get("type") in _CONTENT_KINDS:
                current.append(part)
            else:
                current = None
    return found


def resolve_item_references(
    messages: Sequence[Message], known: Sequence[Message | StoredMessage]
) -> list[Message]:
    """Replace ``item_reference`` items by the stored items they name.

    A client that lets the upstream store responses (ai-sdk's default) sends
    earlier output items back as ``{"type": "item_reference", "id"}``; the
    items themselves are in ``known`` (the log), with their ids. References to
    items not found stay as they are.
    """
    index = _items_by_id(known)
    out: list[Message] = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        changed = False
        for part in message.parts:
            data = part.get("data")
            if (
                part.get("type") == RAW_ITEM
                and isinstance(data, Mapping)
                and data.get("type") == "item_reference"
                and data.get("id") in index
            ):
                parts.extend(index[data["id"]])
                changed = True
            else:
                parts.append(part)
        if changed:
            message = Message(message.role, parts, message.metadata, message.token_count)
        out.append(message)
    return out
