"""Anthropic Messages ``messages`` <-> our messages.

In (:func:`from_anthropic`, :func:`reply_from_anthropic`); the request's
top-level ``system`` is left to the caller, so the preamble is always empty:

- content as a string is one ``text`` part; blocks map one to one:
  ``text`` -> ``text``; ``image`` / ``document`` -> ``file`` (a ``base64``
  source is a data URL, a ``text`` source a base64 ``text/plain`` data URL,
  a ``url`` source the URL with media type ``image/*`` / ``application/pdf``,
  a ``file`` source the file id with ``providerMetadata.anthropic.fileId``;
  a document's ``title`` is the part's ``filename``); ``tool_use`` ->
  ``tool-<name>``; ``thinking`` -> ``reasoning`` (``signature`` in
  ``providerMetadata.anthropic``; an unsigned one is kept verbatim);
  ``redacted_thinking`` -> ``reasoning`` with empty text and
  ``anthropic.redactedData``; a file block that would not come back as it came
  (a key of its ``source`` we do not map...) is kept verbatim;
- a user turn's ``tool_result`` blocks become one ``tool`` message of
  ``tool-result`` parts placed before the user message holding the turn's
  other blocks (``content`` string or blocks -> ``output`` string or list of
  our parts; ``is_error: true`` -> ``isError``; ``toolName`` from the
  ``tool_use`` earlier in the list, else ``""``);
- every other key of a block (``cache_control``, ``citations``, ``context``,
  ``signature``...) is kept verbatim in the part's ``anthropic`` extras; an
  unknown block (``server_tool_use``, ``web_search_tool_result``,
  ``search_result``...) or one we cannot read is a ``data-anthropic-block``
  part, a turn we cannot read a ``data-anthropic-message`` part; both are
  replayed verbatim. Top-level ``null`` values count as absent;
- a turn's keys besides ``role`` and ``content`` go to its (last) message's
  ``metadata.providerMetadata.anthropic``.

Out (:func:`to_anthropic`): every ``system`` message's text goes to
``system`` (joined by blank lines); a turn's content is a string when it is
one plain text block, else a list of blocks;
``tool`` messages become ``tool_result`` blocks in a user turn; consecutive
turns of one role are merged, as the API wants them alternating. A part
holding a call and its result also yields the result, in a user turn right
after. Left out: empty text blocks with no other key (the API refuses empty
text), reasoning without a ``signature`` or ``redactedData`` (another
provider's, which cannot be replayed here),
OpenAI file ids, files of media types Anthropic takes neither as image nor
as document (audio...), other providers' ``data-*`` parts. A tool input that
is not an object (OpenAI custom tools, unparseable arguments) is sent as
``{"input": value}``.

Replies: the content blocks become one assistant message whose
``token_count`` is ``usage.output_tokens``; converting it back gives the
blocks minus their ``null`` fields (an empty reply gives no turn).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Message
from ..toolcalls import RESULT_TYPE
from ._parts import (
    ChatInput,
    ToolResult,
    call_part,
    clean,
    data_url,
    is_part_list,
    meta,
    parse_data_url,
    reasoning_part,
    rest,
    result_part,
    result_text,
    text_part,
    tool_call,
    tool_result,
    with_meta,
)

__all__ = ["AnthropicPayload", "from_anthropic", "reply_from_anthropic", "to_anthropic"]

ANTHROPIC = "anthropic"
RAW_BLOCK = "data-anthropic-block"
RAW_MESSAGE = "data-anthropic-message"
_SEMANTIC = frozenset({"fileId", "redactedData"})  # our keys among the verbatim ones
_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, binascii.Error)
_DOCUMENT_MEDIA = frozenset({"application/pdf", "text/plain"})
_NONE: Mapping[str, Any] = {}  # no extras (never written to)


@dataclass(frozen=True, slots=True)
class AnthropicPayload:
    system: str | None
    messages: list[dict[str, Any]]


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


# -- in ----------------------------------------------------------------------


def _file(block: Mapping[str, Any]) -> dict[str, Any]:
    image = block["type"] == "image"
    source = clean(block["source"])
    kind = source["type"]
    extras: dict[str, Any] = {}
    if kind == "base64":
        media = _str(source["media_type"])
        url = data_url(media, _str(source["data"]))
    elif kind == "text":
        media = "text/plain"
        url = data_url(media, base64.b64encode(_str(source["data"]).encode()).decode())
    elif kind == "url":
        media, url = ("image/*" if image else "application/pdf"), _str(source["url"])
    elif kind == "file":
        media = "image/*" if image else "application/octet-stream"
        url, extras = _str(source["file_id"]), {"fileId": True}
    else:
        raise ValueError(f"unknown source {kind!r}")
    part: dict[str, Any] = {"type": "file", "mediaType": media, "url": url}
    if not image and "title" in block:
        part["filename"] = _str(block["title"])
    extras.update(rest(block, ("type", "source") if image else ("type", "source", "title")))
    part = with_meta(part, ANTHROPIC, extras)
    if _file_block(part) != {**block, "source": source}:
        # a key of the source we do not map, a media type the block type does
        # not take...: kept verbatim (a data-anthropic-block) instead
        raise ValueError("the block would not come back as it came")
    return part


def _part(raw: Mapping[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """One block as a part (``tool_result`` blocks are handled by the turn)."""
    block = clean(raw)
    kind = block.get("type")
    try:
        if kind == "text":
            part = text_part(_str(block["text"]))
            return with_meta(part, ANTHROPIC, rest(block, ("type", "text")))
        if kind in ("image", "document"):
            return _file(block)
        if kind == "thinking":  # unsigned (not replayable as ours): kept verbatim
            _str(block["signature"])
            part = reasoning_part(_str(block["thinking"]))
            return with_meta(part, ANTHROPIC, rest(block, ("type", "thinking")))
        if kind == "redacted_thinking":
            extras = {"redactedData": _str(block["data"]), **rest(block, ("type", "data"))}
            return with_meta(reasoning_part(""), ANTHROPIC, extras)
        if kind == "tool_use":
            call_id, name = _str(block["id"]), _str(block["name"])
            names[call_id] = name
            extras = rest(block, ("type", "id", "name", "input"))
            return call_part(call_id, name, block["input"], ANTHROPIC, extras)
    except _UNREADABLE:
        pass
    return {"type": RAW_BLOCK, "data": block}


def _result(raw: Mapping[str, Any], names: dict[str, str]) -> dict[str, Any]:
    block = clean(raw)
    call_id = _str(block["tool_use_id"])
    content = block.get("content")
    output = [_part(b, names) for b in content] if isinstance(content, list) else content
    is_error = block.get("is_error") is True
    known = ["type", "tool_use_id", "content"] + (["is_error"] if is_error else [])
    extras = rest(block, known)
    return result_part(call_id, names.get(call_id, ""), output, is_error, ANTHROPIC, extras)


def _turn_meta(turn: Mapping[str, Any]) -> dict[str, Any]:
    """A turn's keys besides ``role`` and ``content``, as message metadata."""
    if len(turn) == 2:
        return {}
    extras = clean(rest(turn, ("role", "content")))
    return {"providerMetadata": {ANTHROPIC: extras}} if extras else {}


def _turn(turn: Mapping[str, Any], names: dict[str, str]) -> list[Message]:
    role, content = turn["role"], turn["content"]
    if role not in ("user", "assistant"):
        raise ValueError(f"unknown role {role!r}")
    metadata = _turn_meta(turn)
    if isinstance(content, str):  # one text block, as the blocks' path reads it
        return [Message(role, [text_part(content)], metadata)]
    if not isinstance(content, list):
        raise TypeError("content must be a string or a list")
    blocks: list[Any] = content
    if role == "assistant":
        return [Message("assistant", [_part(b, names) for b in blocks], metadata)]
    results = [_result(b, names) for b in blocks if b.get("type") == "tool_result"]
    others = [_part(b, names) for b in blocks if b.get("type") != "tool_result"]
    if not others and results:
        return [Message("tool", results, metadata)]
    user = Message("user", others, metadata)  # the turn's own keys go with its last message
    return [Message("tool", results), user] if results else [user]


def from_anthropic(messages: Sequence[Mapping[str, Any]]) -> ChatInput:
    out: list[Message] = []
    names: dict[str, str] = {}
    for raw in messages:
        if len(raw) == 2 and type(content := raw.get("content")) is str:
            role = raw.get("role")
            if role == "user" or role == "assistant":  # the common case, as _turn does it
                out.append(Message(role, [text_part(content)]))
                continue
        try:
            out.extend(_turn(raw, names))
        except _UNREADABLE:
            role = "assistant" if raw.get("role") == "assistant" else "user"
            out.append(Message(role, [{"type": RAW_MESSAGE, "data": dict(raw)}]))
    return ChatInput([], out)


def reply_from_anthropic(body: Mapping[str, Any]) -> Message:
    """The reply's content blocks as an assistant message; tokens from ``usage``."""
    content = body.get("content")
    blocks = [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []
    names: dict[str, str] = {}
    usage = body.get("usage")
    tokens = usage.get("output_tokens") if isinstance(usage, Mapping) else None
    count = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
    return Message("assistant", [_part(b, names) for b in blocks], {}, count)


# -- out ---------------------------------------------------------------------


def _extras(part: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta(part, ANTHROPIC).items() if k not in _SEMANTIC}


def _source(part: Mapping[str, Any], image: bool) -> dict[str, Any] | None:
    url = str(part.get("url", ""))
    if meta(part, ANTHROPIC).get("fileId"):
        return {"type": "file", "file_id": url}
    parsed = parse_data_url(url)
    if parsed is None:
        return {"type": "url", "url": url}
    media = parsed[0] or str(part.get("mediaType", ""))
    if not image and media == "text/plain":
        try:
            text = base64.b64decode(parsed[1], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return {"type": "text", "media_type": media, "data": text}
    if not image and media not in _DOCUMENT_MEDIA:
        return None
    return {"type": "base64", "media_type": media, "data": parsed[1]}


def _file_block(part: Mapping[str, Any]) -> dict[str, Any] | None:
    if meta(part, "openai").get("fileId"):
        return None
    media = str(part.get("mediaType") or "")
    image = media.startswith("image/")
    source = _source(part, image)
    if source is None:
        return None
    block: dict[str, Any] = {"type": "image" if image else "document", "source": source}
    name = part.get("filename")
    if not image and isinstance(name, str):
        block["title"] = name
    return {**block, **_extras(part)}


def _reasoning_block(part: Mapping[str, Any]) -> dict[str, Any] | None:
    extras = meta(part, ANTHROPIC)
    if isinstance(extras.get("redactedData"), str):
        return {"type": "redacted_thinking", "data": extras["redactedData"], **_extras(part)}
    if isinstance(extras.get("signature"), str):
        return {"type": "thinking", "thinking": str(part.get("text", "")), **_extras(part)}
    return None


def _block(part: Mapping[str, Any]) -> dict[str, Any] | None:
    """A non-tool part as a block; ``None`` when Anthropic has no place for it."""
    kind = part.get("type")
    if kind == "text":
        text = str(part.get("text", ""))
        extras = _extras(part)
        # an empty text block (the API refuses it) is left out, unless it carries
        # more (a cache_control...): then the upstream judges it
        return {"type": "text", "text": text, **extras} if text or extras else None
    if kind == "file":
        return _file_block(part)
    if kind == "reasoning":
        return _reasoning_block(part)
    if kind == RAW_BLOCK and isinstance(part.get("data"), Mapping):
        return dict(part["data"])
    return None


def _result_block(result: ToolResult, extras: Mapping[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": result.call_id}
    output = result.output
    if is_part_list(output):
        block["content"] = [b for p in output if (b := _block(p)) is not None]
    elif output is not None:
        block["content"] = result_text(output)
    if result.is_error:
        block["is_error"] = True
    return {**block, **extras}


_Step = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def _blocks(message: Message) -> list[_Step]:
    """The message's steps: each its own blocks, and the tool results that go
    in a user turn after them. An assistant message whose calls settled in it
    (ai-sdk's UI tool parts) and that goes on after them is several steps:
    what follows the results saw them."""
    parts = message.parts
    if len(parts) == 1:  # the common case, one bare text part: as the loop makes it
        text = parts[0].get("text")
        if len(parts[0]) == 2 and parts[0].get("type") == "text" and type(text) is str:
            return [(([{"type": "text", "text": text}] if text else []), [])]
    own: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    steps: list[_Step] = [(own, results)]
    for part in parts:
        call = tool_call(part)
        if results and call is None and tool_result(part) is None and message.role == "assistant":
            own, results = [], []
            steps.append((own, results))
        if call is not None and message.role == "assistant":
            value = call.input if isinstance(call.input, dict) else {"input": call.input}
            use = {"type": "tool_use", "id": call.call_id, "name": call.name, "input": value}
            own.append({**use, **_extras(part)})
        result = tool_result(part)
        if result is not None:
            extras = _extras(part) if part.get("type") == RESULT_TYPE else {}
            results.append(_result_block(result, extras))
        elif call is None and (block := _block(part)) is not None:
            own.append(block)
    return steps


def _turn_extras(message: Message) -> dict[str, Any]:
    """The keys of the turn a message came from besides ``role`` and ``content``."""
    holder = message.metadata.get("providerMetadata")
    extras = holder.get(ANTHROPIC) if isinstance(holder, Mapping) else None
    if not isinstance(extras, Mapping):
        return {}
    return {k: v for k, v in extras.items() if k != "role" and k != "content"}


def to_anthropic(messages: Sequence[Message]) -> AnthropicPayload:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    verbatim: set[int] = set()  # turns kept as they came: never merged into

    def add(role: str, blocks: list[dict[str, Any]], extras: Mapping[str, Any]) -> None:
        if not blocks:
            return
        last = len(turns) - 1
        if turns and last not in verbatim and turns[last]["role"] == role:
            turns[last]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})
        if extras:
            turns[-1].update(extras)

    for message in messages:
        parts = message.parts
        if len(parts) == 1 and not message.metadata:
            # the common case, one bare non-empty text part of a user or an
            # assistant: as ``_blocks`` and ``add`` make it
            part, role = parts[0], message.role
            text = part.get("text")
            if (
                (role == "user" or role == "assistant")
                and len(part) == 2
                and part.get("type") == "text"
                and type(text) is str
                and text
            ):
                last = len(turns) - 1
                if turns and last not in verbatim and turns[last]["role"] == role:
                    turns[last]["content"].append({"type": "text", "text": text})
                else:
                    turns.append({"role": role, "content": [{"type": "text", "text": text}]})
                continue
        if len(parts) == 1 and parts[0].get("type") == RAW_MESSAGE:
            if isinstance(parts[0].get("data"), Mapping):
                verbatim.add(len(turns))
                turns.append(dict(parts[0]["data"]))
            continue
        steps = _blocks(message)
        extras = _turn_extras(message) if message.metadata else _NONE
        if message.role == "assistant":
            for own, results in steps:
                add("assistant", own, extras)
                add("user", results, _NONE)
            continue
        own, results = steps[0]  # one step: only assistant messages are split
        if message.role == "system":
            system.extend(block["text"] for block in own if block["type"] == "text")
        else:
            add("user", results + own, extras)
    for index, turn in enumerate(turns):
        if index in verbatim:
            continue  # as it came, even without a "content"
        content = turn["content"]
        if len(content) == 1 and content[0].keys() == {"type", "text"}:
            turn["content"] = content[0]["text"]  # one plain text block: a string
    return AnthropicPayload("\n\n".join(system) if system else None, turns)
