"""OpenAI Chat Completions ``messages`` <-> our messages.

In (:func:`from_openai_chat`, :func:`reply_from_chat_completion`):

- ``system`` / ``developer`` messages are the preamble, kept verbatim;
- ``user``: content as a string (one ``text`` part) or content parts: ``text``,
  ``image_url`` (a ``file`` part: ``mediaType`` from the data URL, else
  ``image/*``; ``detail`` in ``providerMetadata.openai.detail``),
  ``input_audio`` (a ``file`` part holding a data URL), ``file`` (``file_data``
  is the ``url``; ``file_id`` is the ``url`` with ``openai.fileId``);
- ``assistant``: ``reasoning_content`` (a ``reasoning`` part with
  ``openai.reasoningContent``), ``content`` (``text`` / ``refusal`` items),
  ``refusal`` (a ``text`` part with ``openai.refusal``; a refusal item of a
  content list also has ``openai.contentPart``), ``tool_calls`` (``tool-<name>``
  parts; ``arguments`` parsed into ``input``, see ``_openai``);
- ``tool``: one ``tool`` message per OpenAI message, with one ``tool-result``
  part (``toolName`` from the calls earlier in the list, else ``""``; a
  content list becomes a list of our parts as ``output``);
- the legacy ``function_call`` of an assistant and the ``function`` message
  answering it: a call part and a ``tool`` message as above, under a
  synthetic id and flagged ``openai.legacyFunction`` (see ``_chat_functions``).

Keys we do not map (``name``, ``audio``, ...) are kept verbatim, per message
in ``metadata.providerMetadata.openai.chat``, per content item / tool call in
the part's ``openai.chat`` (those of a call's ``function`` / ``custom`` object
in ``openai.chatInner``). A message, content item or call we cannot read is
kept whole in a ``data-openai-chat-message`` / ``-part`` / ``-call`` part and
sent back as it came; so is a file item that would not come back as it came
(a key inside its object we do not map...), and any content item but text and
refusals of an assistant or tool message. Top-level ``null`` values count as
absent.

Out (:func:`to_openai_chat`): the reverse. Content is a string exactly when it
is one plain text part (a stored ``system`` message, which never comes from a
request, is its texts joined by blank lines); an assistant message without text has no ``content``
key. Parts the API has no place for are left out: reasoning that did not come
from ``reasoning_content``, ``step-start``, other ``data-*`` parts, files in
assistant or system messages, another provider's file ids, non-image files
given by URL (the API takes files only as ids or data). A settled tool part
(``output-available``) yields its call and, right after, the ``tool`` message.

Replies: ``choices[0].message`` becomes one assistant message whose
``token_count`` is ``usage.completion_tokens``. Converting it back gives the
message minus ``null`` fields, minus ``annotations`` (kept in metadata, not a
request field) and with ``audio`` reduced to ``{"id"}`` as requests take it.
That id is good only until the audio's ``expires_at`` (about an hour; the
upstream refuses it after): a spoken reply ``AUDIO_EXPIRY_MARGIN`` or less
from it, or past it, is sent without ``audio``, its ``transcript`` as its
text (unless it has text already). ``to_openai_chat(..., now=)`` sets the
clock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..model import Message
from ._chat_functions import LEGACY, Pairing, call_id_for, is_legacy
from ._openai import (
    OPENAI,
    arguments_of,
    audio_part,
    audio_payload,
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
    "AUDIO_EXPIRY_MARGIN",
    "from_openai_chat",
    "reply_from_chat_completion",
    "to_openai_chat",
]

RAW_MESSAGE = "data-openai-chat-message"
RAW_PART = "data-openai-chat-part"
RAW_CALL = "data-openai-chat-call"
_PREAMBLE = frozenset({"system", "developer"})
_KNOWN = frozenset(
    {"role", "content", "tool_calls", "refusal", "reasoning_content", "tool_call_id"}
)
_REPLY_ONLY = frozenset({"annotations"})
_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError)
# seconds before a spoken reply's ``expires_at`` from which its audio id is no
# longer sent: the request may reach the upstream a little later than now
AUDIO_EXPIRY_MARGIN = 60.0


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _chat(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"chat": dict(values)} if values else {}


# -- in ----------------------------------------------------------------------


def _media_part(item: Mapping[str, Any], kind: Any) -> dict[str, Any] | None:
    if kind == "image_url":
        image = clean(item["image_url"])
        extras = _chat(rest(item, ("type", "image_url")))
        if "detail" in image:
            extras["detail"] = image["detail"]
        return file_part(_str(image["url"]), "image", extras=extras)
    if kind == "input_audio":
        audio = clean(item["input_audio"])
        _str(audio["data"])
        return audio_part(audio, _chat(rest(item, ("type", "input_audio"))))
    if kind == "file":
        file = clean(item["file"])
        extras = _chat(rest(item, ("type", "file")))
        name = file.get("filename")
        file_id = "file_id" in file
        url = _str(file["file_id"] if file_id else file["file_data"])
        return file_part(url, "file", file_id=file_id, filename=name, extras=extras)
    return None


def _content_part(raw: Mapping[str, Any], media: bool = True) -> dict[str, Any]:
    """One content item as a part; ``media``: files are read (a user's
    content), else kept verbatim (Chat takes them nowhere else)."""
    item = clean(raw)
    kind = item.get("type")
    try:
        if kind == "text":
            extras = _chat(rest(item, ("type", "text")))
            return with_meta(text_part(_str(item["text"])), OPENAI, extras)
        if kind == "refusal":
            extras = _chat(rest(item, ("type", "refusal")))
            extras.update(refusal=True, contentPart=True)
            return with_meta(text_part(_str(item["refusal"])), OPENAI, extras)
        part = _media_part(item, kind) if media else None
        # a file whose item would not come back as it came (a key inside its
        # object we do not map, an odd format): kept verbatim instead
        if part is not None and _content_item(part) == item:
            return part
    except _UNREADABLE:
        pass
    return {"type": RAW_PART, "data": dict(raw)}


def _content_parts(content: Any, media: bool = True) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    if isinstance(content, list):
        return [_content_part(item, media) for item in content]
    raise TypeError("content must be a string or a list")


def _message_meta(message: Mapping[str, Any], also: str | None = None) -> dict[str, Any]:
    """The message's keys we do not map (nor ``also``, one mapped here)."""
    extras = rest(message, _KNOWN if also is None else (*_KNOWN, also))
    return {"providerMetadata": {OPENAI: {"chat": extras}}} if extras else {}


def _call_part(raw: Mapping[str, Any], names: dict[str, str]) -> dict[str, Any]:
    call = clean(raw)
    kind = call.get("type", "function")
    extras: dict[str, Any]
    if kind == "custom":
        body = clean(call["custom"])
        name, value, extras = _str(body["name"]), body["input"], {"custom": True}
    elif kind == "function":
        body = clean(call["function"])
        name = _str(body["name"])
        value, extras = parse_arguments(_str(body["arguments"]))
    else:
        return {"type": RAW_CALL, "data": dict(raw)}
    call_id = _str(call["id"])
    names[call_id] = name
    leftovers = rest(call, ("id", "type", kind))
    inner = rest(body, ("name", "input") if kind == "custom" else ("name", "arguments"))
    if inner:
        extras["chatInner"] = inner
    return call_part(call_id, name, value, OPENAI, {**extras, **_chat(leftovers)})


def _function_call(raw: Any) -> dict[str, Any] | None:
    """A legacy ``function_call`` as a call part; None when it cannot be read
    (it is then kept verbatim with the message's other keys)."""
    call = clean(raw) if isinstance(raw, Mapping) else {}
    name, arguments = call.get("name"), call.get("arguments")
    if not isinstance(name, str) or not name or not isinstance(arguments, str):
        return None
    value, extras = parse_arguments(arguments)
    inner = rest(call, ("name", "arguments"))
    if inner:
        extras["chatInner"] = inner
    extras[LEGACY] = True
    return call_part(call_id_for(name, arguments), name, value, OPENAI, extras)


def _assistant(
    message: Mapping[str, Any], names: dict[str, str], pairing: Pairing | None = None
) -> Message:
    parts: list[dict[str, Any]] = []
    if "reasoning_content" in message:
        text = _str(message["reasoning_content"])
        parts.append(with_meta(reasoning_part(text), OPENAI, {"reasoningContent": True}))
    if "content" in message:
        parts.extend(_content_parts(message["content"], media=False))
    if "refusal" in message:
        parts.append(with_meta(text_part(_str(message["refusal"])), OPENAI, {"refusal": True}))
    legacy = None
    if "function_call" in message:
        legacy = _function_call(message["function_call"])
        if legacy is not None:
            parts.append(legacy)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TypeError("tool_calls must be a list")
    parts.extend(_call_part(call, names) for call in calls)
    if legacy is not None and pairing is not None:  # read whole: results may answer it
        pairing.call(message["function_call"]["name"], legacy["toolCallId"])
    mapped = None if legacy is None else "function_call"  # (else kept with the extras)
    return Message("assistant", parts, _message_meta(message, mapped))


def _tool(message: Mapping[str, Any], names: dict[str, str]) -> Message:
    call_id = _str(message["tool_call_id"])
    content = message.get("content")
    output = _content_parts(content, media=False) if isinstance(content, list) else content
    part = result_part(call_id, names.get(call_id, ""), output, False, OPENAI, {})
    return Message("tool", [part], _message_meta(message))


def _function(message: Mapping[str, Any], pairing: Pairing) -> Message:
    """A legacy ``function`` message: the result of the call ``pairing`` names."""
    name = _str(message["name"])
    if not name:
        raise ValueError("a function message names its function")
    content = message.get("content")
    output = _content_parts(content, media=False) if isinstance(content, list) else content
    part = result_part(pairing.answer(name), name, output, False, OPENAI, {LEGACY: True})
    return Message("tool", [part], _message_meta(message, "name"))


def _message(message: Mapping[str, Any], names: dict[str, str], pairing: Pairing) -> Message:
    role = message["role"]
    if role == "user":
        return Message("user", _content_parts(message["content"]), _message_meta(message))
    if role == "assistant":
        return _assistant(message, names, pairing)
    if role == "tool":
        return _tool(message, names)
    if role == "function":
        return _function(message, pairing)
    raise ValueError(f"unknown role {role!r}")


def from_openai_chat(messages: Sequence[Mapping[str, Any]]) -> ChatInput:
    preamble: list[dict[str, Any]] = []
    out: list[Message] = []
    names: dict[str, str] = {}
    pairing = Pairing()
    for raw in messages:
        role = raw.get("role")
        if isinstance(role, str) and role in _PREAMBLE:
            preamble.append(dict(raw))
            continue
        if (
            len(raw) == 2
            and (role == "user" or role == "assistant")
            and type(text := raw.get("content")) is str
        ):
            out.append(Message(role, [text_part(text)]))  # the common case, as _message does it
            continue
        try:
            message = _message(clean(raw), names, pairing)
            if not message.parts and not message.metadata:
                raise ValueError("nothing to send back")  # e.g. an assistant's empty list
            out.append(message)
        except _UNREADABLE:
            kept = "assistant" if role == "assistant" else "user"  # a tool message holds results
            out.append(Message(kept, [{"type": RAW_MESSAGE, "data": dict(raw)}]))
    return ChatInput(preamble, out)


def reply_from_chat_completion(body: Mapping[str, Any]) -> Message:
    """``choices[0].message`` as an assistant message; tokens from ``usage``."""
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    raw = first.get("message") if isinstance(first, Mapping) else None
    message = clean(raw) if isinstance(raw, Mapping) else {}
    if message.get("annotations") == []:
        del message["annotations"]
    try:
        reply = _assistant(message, {})
    except _UNREADABLE:
        reply = Message("assistant", [{"type": RAW_MESSAGE, "data": message}])
    usage = body.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
    count = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
    return Message("assistant", reply.parts, reply.metadata, count)


# -- out ---------------------------------------------------------------------


def _content_item(part: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    extras = meta(part, OPENAI)
    chat = dict(extras.get("chat") or {})
    if kind == "text":
        text = str(part.get("text", ""))
        if extras.get("refusal") and extras.get("contentPart"):
            return {"type": "refusal", "refusal": text, **chat}
        return {"type": "text", "text": text, **chat}
    if kind == "file" and not foreign_file(part):
        url = str(part.get("url", ""))
        if extras.get("fileId"):
            return {"type": "file", "file": {"file_id": url, **_filename(part)}, **chat}
        file_kind = part_kind(part)
        if file_kind == "image":
            image: dict[str, Any] = {"url": url}
            if "detail" in extras:
                image["detail"] = extras["detail"]
            return {"type": "image_url", "image_url": image, **chat}
        audio = audio_payload(part) if file_kind == "audio" else None
        if audio is not None:
            return {"type": "input_audio", "input_audio": audio, **chat}
        if url.startswith(("http://", "https://")):
            return None  # a file by URL: Chat Completions takes only ids and data
        return {"type": "file", "file": {"file_data": url, **_filename(part)}, **chat}
    if kind == RAW_PART and isinstance(part.get("data"), Mapping):
        return dict(part["data"])
    return None


def _filename(part: Mapping[str, Any]) -> dict[str, Any]:
    name = part.get("filename")
    return {"filename": name} if isinstance(name, str) else {}


def _plain(part: Mapping[str, Any]) -> bool:
    extras = meta(part, OPENAI)
    return part.get("type") == "text" and not extras.get("refusal") and not extras.get("chat")


def _content(parts: Sequence[Mapping[str, Any]], kinds: frozenset[str]) -> Any:
    """A message's ``content``: a string, a list of items, or ``None`` (nothing)."""
    pairs = [(p, item) for p in parts if p.get("type") in kinds and (item := _content_item(p))]
    if not pairs:
        return None
    if len(pairs) == 1 and _plain(pairs[0][0]):
        return pairs[0][1]["text"]
    return [item for _, item in pairs]


_USER_KINDS = frozenset({"text", "file", RAW_PART})
_TEXT_KINDS = frozenset({"text", RAW_PART})


def _system_text(message: Message) -> str:
    """A stored system message (a preamble never is one) as one string."""
    texts = [p.get("text") for p in message.parts if p.get("type") == "text"]
    return "\n\n".join(t for t in texts if isinstance(t, str) and t)


def _chat_meta(message: Message) -> Mapping[str, Any]:
    """The message's Chat keys we do not map (``{}`` when none)."""
    holder = message.metadata.get("providerMetadata")
    openai = holder.get(OPENAI) if isinstance(holder, Mapping) else None
    chat = openai.get("chat") if isinstance(openai, Mapping) else None
    return chat if isinstance(chat, Mapping) else {}


def _message_extras(message: Message) -> dict[str, Any]:
    chat = _chat_meta(message)
    if not chat:
        return {}
    extras = {k: v for k, v in chat.items() if k not in _REPLY_ONLY and k not in _KNOWN}
    audio = extras.get("audio")
    if isinstance(audio, Mapping) and "id" in audio:
        extras["audio"] = {"id": audio["id"]}
    return extras


def _output(output: Any) -> Any:
    if is_part_list(output):
        parts = [p for p in output if p.get("type") in _TEXT_KINDS]
        items = [item for p in parts if (item := _content_item(p)) is not None]
        return items if items or not output else result_text(output)
    return result_text(output)


def _tool_message(
    result: ToolResult, part: dict[str, Any], extras: Mapping[str, Any]
) -> dict[str, Any]:
    if is_legacy(part):  # a ``function`` message, as it came (it has no call id)
        out: dict[str, Any] = {"role": "function", "name": result.name}
        if result.output is not None:
            out["content"] = _output(result.output)
        return {**out, **extras}
    return {
        "role": "tool",
        "tool_call_id": result.call_id,
        "content": _output(result.output),
        **extras,
    }


def _call(call: ToolCall, part: Mapping[str, Any]) -> dict[str, Any]:
    extras = meta(part, OPENAI)
    chat = dict(extras.get("chat") or {})
    inner = extras.get("chatInner")
    inner = inner if isinstance(inner, Mapping) else {}
    if extras.get("custom"):
        custom = {"name": call.name, "input": custom_input(call), **inner}
        return {"id": call.call_id, "type": "custom", "custom": custom, **chat}
    function = {"name": call.name, "arguments": arguments_of(call, extras), **inner}
    return {"id": call.call_id, "type": "function", "function": function, **chat}


def _function_call_out(call: ToolCall, extras: Mapping[str, Any]) -> dict[str, Any]:
    """A legacy call's ``function_call`` object."""
    inner = extras.get("chatInner")
    inner = inner if isinstance(inner, Mapping) else {}
    return {"name": call.name, "arguments": arguments_of(call, extras), **inner}


class _Turn:
    """One Chat Completions assistant message being filled, fields in wire order."""

    def __init__(self) -> None:
        self.reasoning: list[str] = []
        self.content: list[dict[str, Any]] = []
        self.refusal: str | None = None
        self.function_call: dict[str, Any] | None = None  # the legacy one
        self.calls: list[dict[str, Any]] = []

    def fits(self, stage: str) -> bool:
        """Whether a part of ``stage`` can follow what is here without reordering.

        After a call everything fits: a message with ``tool_calls`` must be
        followed by its ``tool`` messages, so later text joins the content.
        """
        if stage == "function":  # one per message
            return self.function_call is None
        if self.calls or self.function_call is not None or stage == "call":
            return True
        if stage == "reasoning":
            return not self.content and self.refusal is None
        return self.refusal is None

    def message(self, extras: Mapping[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {"role": "assistant"}
        if self.reasoning:
            out["reasoning_content"] = "\n\n".join(self.reasoning)
        text = _content(self.content, _TEXT_KINDS)
        if text is not None:
            out["content"] = text
        if self.refusal is not None:
            out["refusal"] = self.refusal
        if self.function_call is not None:
            out["function_call"] = self.function_call
        if self.calls:
            out["tool_calls"] = self.calls
        out.update(extras)  # e.g. ``audio`` of a spoken reply
        return out if len(out) > 1 else None


def _expired(audio: Mapping[str, Any], now: float | None) -> bool:
    """Whether the upstream no longer takes this spoken reply's audio id: its
    ``expires_at`` (Unix seconds) is at most ``AUDIO_EXPIRY_MARGIN`` ahead.
    Without one we cannot tell, so the id is sent."""
    expires = audio.get("expires_at")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        return False
    return expires <= (time.time() if now is None else now) + AUDIO_EXPIRY_MARGIN


def _spoken(
    message: Message, extras: dict[str, Any], now: float | None
) -> Sequence[dict[str, Any]]:
    """The parts to send. A spoken reply whose audio has expired loses
    ``audio`` from ``extras`` and says its ``transcript`` as text instead (in
    the place of ``content``, after ``reasoning_content``), unless it has
    text already."""
    parts = message.parts
    audio = _chat_meta(message).get("audio")
    if not isinstance(audio, Mapping) or not _expired(audio, now):
        return parts
    del extras["audio"]
    transcript = audio.get("transcript")
    if not isinstance(transcript, str) or not transcript:
        return parts
    if any(p.get("type") == "text" and p.get("text") and not _refusal(p) for p in parts):
        return parts
    at = 0
    while at < len(parts) and parts[at].get("type") == "reasoning":
        at += 1
    return [*parts[:at], text_part(transcript), *parts[at:]]


def _refusal(part: Mapping[str, Any]) -> bool:
    return bool(meta(part, OPENAI).get("refusal"))


def _assistant_out(message: Message, now: float | None = None) -> list[dict[str, Any]]:
    """One assistant message, or several when the parts' order needs them."""
    extras = _message_extras(message)
    parts = _spoken(message, extras, now) if "audio" in extras else message.parts
    out: list[dict[str, Any]] = []
    turns = [_Turn()]
    answers: list[dict[str, Any]] = []

    def flush() -> None:
        out.extend(m for turn in turns if (m := turn.message(extras)) is not None)
        out.extend(answers)

    for part in parts:
        kind = part.get("type")
        call = tool_call(part)
        is_call = call is not None or (kind == RAW_CALL and isinstance(part.get("data"), Mapping))
        if answers and not is_call and tool_result(part) is None:
            # what follows settled calls is the next step: it saw their results
            flush()
            turns, answers = [_Turn()], []
        part_extras = meta(part, OPENAI)
        if kind == "reasoning" and part_extras.get("reasoningContent"):
            stage = "reasoning"
        elif kind == "text" and part_extras.get("refusal") and not part_extras.get("contentPart"):
            stage = "refusal"
        elif kind in _TEXT_KINDS:
            stage = "content"
        elif is_call:
            stage = "function" if call is not None and part_extras.get(LEGACY) else "call"
        else:
            if (result := tool_result(part)) is not None:
                answers.append(_tool_message(result, part, {}))
            continue
        if not turns[-1].fits(stage):
            turns.append(_Turn())
        turn = turns[-1]
        if stage == "reasoning":
            turn.reasoning.append(str(part.get("text", "")))
        elif stage == "refusal":
            turn.refusal = str(part.get("text", ""))
        elif stage == "content":
            turn.content.append(part)
        elif call is None:
            turn.calls.append(dict(part["data"]))
        else:
            if stage == "function":
                turn.function_call = _function_call_out(call, part_extras)
            else:
                turn.calls.append(_call(call, part))
            if (result := tool_result(part)) is not None:
                answers.append(_tool_message(result, part, {}))
    flush()
    return out


def _plain_text(message: Message) -> str | None:
    """The text of a user or assistant message that is one bare text part and
    has no provider extras: what the general path would send as a plain
    ``content`` string."""
    part = message.parts[0]
    text = part.get("text")
    if (
        len(part) == 2
        and part.get("type") == "text"
        and type(text) is str
        and (message.role == "user" or message.role == "assistant")
        and "providerMetadata" not in message.metadata
    ):
        return text
    return None


def to_openai_chat(messages: Sequence[Message], now: float | None = None) -> list[dict[str, Any]]:
    """Our messages as Chat Completions ``messages``; ``now`` (Unix seconds,
    default the current time) decides which spoken replies' audio has expired."""
    out: list[dict[str, Any]] = []
    for message in messages:
        parts = message.parts
        if len(parts) == 1 and (text := _plain_text(message)) is not None:
            out.append({"role": message.role, "content": text})  # the common case
            continue
        if len(parts) == 1 and parts[0].get("type") == RAW_MESSAGE:
            data = parts[0].get("data")
            if isinstance(data, Mapping):
                out.append(dict(data))
            continue
        if message.role == "assistant":
            out.extend(_assistant_out(message, now))
        elif message.role == "tool":
            extras = _message_extras(message)
            for part in parts:
                result = tool_result(part)
                if result is not None:
                    out.append(_tool_message(result, part, extras))
        elif message.role == "system":
            if text := _system_text(message):
                out.append({"role": "system", "content": text})
        else:
            content = _content(parts, _USER_KINDS)
            if content is not None:
                out.append({"role": "user", "content": content, **_message_extras(message)})
    return out
