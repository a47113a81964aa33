"""LangChain content items <-> our message parts.

A LangChain message's ``content`` is a string or a list of items (strings and
content blocks). Each item becomes one part in the shape every other way in
understands (ai-sdk UIMessage parts, as the proxy stores them):

- a string or a ``text`` block: a ``text`` part;
- ``reasoning`` (LangChain v1): a ``reasoning`` part; Anthropic ``thinking`` /
  ``redacted_thinking``: a ``reasoning`` part with the ``signature`` /
  ``redactedData`` in ``providerMetadata.anthropic``, as the proxy has them;
- images, audio, video and files (LangChain v1 blocks with ``url`` or
  ``base64``, v0 blocks with ``source_type`` ``url`` or ``base64``, OpenAI
  ``image_url`` as an object or a string): a ``file`` part with ``mediaType``
  and ``url`` (a ``data:`` URL for inline data);
- anything else: a ``data-langchain`` part holding the item whole.

What a part cannot say (a string item rather than a text block, a block's
extra keys, which field held the payload) sits in the part's
``providerMetadata.langchain``. Every encoding is checked by decoding it
again; an item that would not come back identical is stored whole instead, so
the round trip is exact for any JSON content.

A file block's ``filename`` (top level, or in its ``extras`` / ``metadata``)
is also the part's own ``filename``, which the other ways in read.

Parts written by others decode to LangChain v1 blocks (``file`` parts to
``image`` / ``audio`` / ``video`` / ``file`` blocks, with their ``filename``);
``data-openai-chat-part`` and ``data-anthropic-block`` parts give back the
provider block they hold;
other parts (``step-start``, foreign ``data-*``...) carry nothing for a model
and are left out.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["LANGCHAIN", "RAW_PART", "decode_content", "decode_item", "encode_content"]

LANGCHAIN = "langchain"
RAW_PART = "data-langchain"
_PROVIDER_BLOCKS = frozenset({"data-openai-chat-part", "data-anthropic-block"})
_MEDIA_KINDS = ("image", "audio", "video")
_FILE_KINDS = frozenset({*_MEDIA_KINDS, "file"})

Item = str | dict[str, Any]


def _rest(value: Mapping[str, Any], *known: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in known}


def _provider(part: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    holder = part.get("providerMetadata")
    if not isinstance(holder, Mapping):
        return None
    value = holder.get(name)
    return dict(value) if isinstance(value, Mapping) else None


def _with_hint(part: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    if hint:
        holder = dict(part.get("providerMetadata") or {})
        holder[LANGCHAIN] = hint
        part["providerMetadata"] = holder
    return part


def _anthropic(text: str, extras: dict[str, Any]) -> dict[str, Any]:
    """A reasoning part as the proxy stores Anthropic thinking."""
    return {"type": "reasoning", "text": text, "providerMetadata": {"anthropic": extras}}


def _block_hint(block: Mapping[str, Any], *payload: str) -> dict[str, Any]:
    rest = _rest(block, "type", *payload)
    return {"block": rest} if rest else {}


# -- data URLs -----------------------------------------------------------------


def _data_url(media_type: str, b64: str) -> str:
    return f"data:{media_type};base64,{b64}"


def _parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 payload)`` of a base64 ``data:`` URL, else ``None``."""
    if not url.startswith("data:") or "," not in url:
        return None
    head, payload = url[len("data:") :].split(",", 1)
    if head.endswith(";base64"):
        return head[: -len(";base64")].split(";")[0], payload
    try:
        raw = urllib.parse.unquote_to_bytes(payload)
    except (ValueError, binascii.Error):  # pragma: no cover - unquote is lenient
        return None
    return head.split(";")[0], base64.b64encode(raw).decode()


def _generic_media(kind: str) -> str:
    return f"{kind}/*" if kind in _MEDIA_KINDS else "application/octet-stream"


# -- encoding --------------------------------------------------------------------


def _filename(block: Mapping[str, Any]) -> str | None:
    """A file block's name, where LangChain's provider integrations look for it."""
    for holder in (block, block.get("extras"), block.get("metadata")):
        name = holder.get("filename") if isinstance(holder, Mapping) else None
        if isinstance(name, str):
            return name
    return None


def _file_part(url: str, media_type: str, hint: dict[str, Any]) -> dict[str, Any]:
    part = {"type": "file", "mediaType": media_type, "url": url}
    name = _filename(hint.get("block") or {})
    if name is not None:
        part["filename"] = name  # the ai-sdk file part's own field, which others read
    return _with_hint(part, hint)


def _encode_file(block: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "image_url":
        image = block.get("image_url")
        if isinstance(image, str):  # the shorthand LangChain accepts for {"url": ...}
            parsed = _parse_data_url(image)
            hint = {"block": _rest(block, "image_url"), "payload": "image_url_str"}
            return _file_part(image, parsed[0] if parsed else "image/*", hint)
        if not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
            return None
        url = image["url"]
        parsed = _parse_data_url(url)
        hint = {"block": {**block, "image_url": _rest(image, "url")}, "payload": "image_url"}
        part = _file_part(url, parsed[0] if parsed else "image/*", hint)
        if isinstance(image.get("detail"), str):
            part["providerMetadata"]["openai"] = {"detail": image["detail"]}
        return part
    if kind not in _FILE_KINDS:
        return None
    mime = block.get("mime_type")
    if isinstance(block.get("url"), str):
        url = block["url"]
        parsed = _parse_data_url(url)
        media = mime if isinstance(mime, str) else parsed[0] if parsed else None
        hint = {"block": _rest(block, "url"), "payload": "url"}
        return _file_part(url, media or _generic_media(str(kind)), hint)
    if isinstance(block.get("base64"), str) and isinstance(mime, str):
        hint = {"block": _rest(block, "base64"), "payload": "base64"}
        return _file_part(_data_url(mime, block["base64"]), mime, hint)
    if block.get("source_type") == "base64" and isinstance(block.get("data"), str):
        # LangChain's v0 data block: {"source_type": "base64", "data", "mime_type"?}
        media = mime if isinstance(mime, str) else _generic_media(str(kind))
        hint = {"block": _rest(block, "data"), "payload": "data"}
        return _file_part(_data_url(media, block["data"]), media, hint)
    return None


def _encode_guess(item: Any) -> dict[str, Any] | None:
    """The natural part for ``item``; :func:`encode_item` checks it decodes back."""
    if isinstance(item, str):
        return _with_hint({"type": "text", "text": item}, {"str": True})
    if not isinstance(item, Mapping):
        return None
    kind = item.get("type")
    if kind == "text" and isinstance(item.get("text"), str):
        return _with_hint({"type": "text", "text": item["text"]}, _block_hint(item, "text"))
    if kind == "reasoning" and isinstance(item.get("reasoning"), str):
        part = {"type": "reasoning", "text": item["reasoning"]}
        return _with_hint(part, _block_hint(item, "reasoning"))
    if kind == "thinking" and isinstance(item.get("thinking"), str):
        return _anthropic(item["thinking"], _rest(item, "type", "thinking"))
    if kind == "redacted_thinking" and isinstance(item.get("data"), str):
        return _anthropic("", {"redactedData": item["data"], **_rest(item, "type", "data")})
    return _encode_file(item)


def encode_item(item: Any) -> dict[str, Any]:
    """One content item as one part; exact: ``decode_item(encode_item(x)) == x``."""
    part = _encode_guess(item)
    if part is not None and decode_item(part) == item:
        return part
    return {"type": RAW_PART, "data": item}


def encode_content(content: str | Sequence[Any]) -> list[dict[str, Any]]:
    """A message's content as parts: a string is one text part (none when empty)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [encode_item(item) for item in content]


# -- decoding --------------------------------------------------------------------


def _decode_file(part: Mapping[str, Any], hint: Mapping[str, Any]) -> Item | None:
    url, media = part.get("url"), part.get("mediaType")
    if not isinstance(url, str):
        return None
    block = hint.get("block")
    payload = hint.get("payload")
    if isinstance(block, Mapping):
        if payload == "url":
            return {**block, "url": url}
        parsed = _parse_data_url(url)
        if payload == "base64" and parsed is not None:
            return {**block, "base64": parsed[1]}
        if payload == "data" and parsed is not None:
            return {**block, "data": parsed[1]}
        if payload == "image_url_str":
            return {**block, "image_url": url}
        image = block.get("image_url")
        if payload == "image_url" and isinstance(image, Mapping):
            return {**block, "image_url": {**image, "url": url}}
    media = media if isinstance(media, str) else ""
    kind = media.split("/")[0] if media.split("/")[0] in _MEDIA_KINDS else "file"
    file_ids = (_provider(part, "openai") or {}, _provider(part, "anthropic") or {})
    parsed = _parse_data_url(url)
    out: dict[str, Any] = {"type": kind}
    if any(meta.get("fileId") for meta in file_ids):
        out["file_id"] = url
    elif parsed is not None:
        out.update(base64=parsed[1], mime_type=parsed[0])
    else:
        out["url"] = url
        if media and not media.endswith("/*") and media != "application/octet-stream":
            out["mime_type"] = media
    if isinstance(part.get("filename"), str):  # where LangChain's providers look for it
        out["filename"] = part["filename"]
    return out


def _decode_reasoning(part: Mapping[str, Any], hint: Mapping[str, Any]) -> Item | None:
    text = part.get("text")
    if not isinstance(text, str):
        return None
    anthropic = _provider(part, "anthropic")
    if anthropic is not None:
        if "redactedData" in anthropic:
            data = anthropic["redactedData"]
            return {"type": "redacted_thinking", "data": data, **_rest(anthropic, "redactedData")}
        return {"type": "thinking", "thinking": text, **anthropic}
    block = hint.get("block")
    return {"type": "reasoning", "reasoning": text, **(block if isinstance(block, Mapping) else {})}


def decode_item(part: Mapping[str, Any]) -> Item | None:
    """The content item a part stands for; ``None`` for a part with none."""
    kind = part.get("type")
    hint = _provider(part, LANGCHAIN) or {}
    if kind == RAW_PART:
        data = part.get("data")
        return data if isinstance(data, str | dict) else None
    if kind in _PROVIDER_BLOCKS:
        data = part.get("data")
        return dict(data) if isinstance(data, Mapping) else None
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            return None
        if hint.get("str") is True:
            return text
        block = hint.get("block")
        return {"type": "text", "text": text, **(block if isinstance(block, Mapping) else {})}
    if kind == "reasoning":
        return _decode_reasoning(part, hint)
    if kind == "file":
        return _decode_file(part, hint)
    return None


def decode_content(parts: Sequence[Mapping[str, Any]], as_list: bool | None) -> str | list[Item]:
    """Content from parts. ``as_list``: what the writer had; ``None``: choose.

    Chosen (parts written by others): no items is ``""``; one plain text block
    is its string; anything else is the list.
    """
    items = [item for item in map(decode_item, parts) if item is not None]
    if as_list is None:
        if not items:
            return ""
        only = items[0]
        if len(items) == 1 and isinstance(only, dict) and only.keys() == {"type", "text"}:
            return str(only["text"])
        return items
    if as_list:
        return items
    return "".join(item if isinstance(item, str) else str(item.get("text", "")) for item in items)
