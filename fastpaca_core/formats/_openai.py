"""What OpenAI Chat Completions and Responses share: arguments, files, audio.

Semantic extras (under ``providerMetadata.openai``, read by both APIs):
``arguments`` (a call's original JSON text when it is not the compact JSON of
``input``), ``invalidArguments`` (``input`` is the raw unparseable text),
``custom`` (a custom tool call / output), ``detail`` (image detail),
``fileId`` (``url`` is an OpenAI file id), ``fileData`` (``url`` is bare base64),
``kind`` (``image``/``audio``/``file`` when the wire kind is not the default for
the media type), ``refusal`` (and ``contentPart`` for a Chat refusal item),
``reasoningContent``, ``itemId``, ``item``, ``summary``, ``encryptedContent``.
Verbatim leftovers of one API sit under ``openai.chat`` / ``openai.responses``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jsonutil import JSONError, dumps_str, loads
from ._parts import ToolCall, data_url, meta, parse_data_url, with_meta

__all__ = [
    "OPENAI",
    "arguments_of",
    "audio_payload",
    "audio_part",
    "custom_input",
    "default_kind",
    "file_part",
    "foreign_file",
    "parse_arguments",
    "part_kind",
]

OPENAI = "openai"
_AUDIO_MEDIA = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_AUDIO_FORMAT = {media: fmt for fmt, media in _AUDIO_MEDIA.items()}
_OCTET = "application/octet-stream"


def parse_arguments(raw: Any) -> tuple[Any, dict[str, Any]]:
    """A call's ``arguments`` text as ``input``, plus the extras that restore it."""
    if not isinstance(raw, str):
        return raw, {}
    try:
        value = loads(raw)
    except JSONError:
        return raw, {"invalidArguments": True}
    return value, ({} if dumps_str(value) == raw else {"arguments": raw})


def arguments_of(call: ToolCall, extras: Mapping[str, Any]) -> str:
    """The ``arguments`` text for a call: the original when kept, else compact JSON."""
    original = extras.get("arguments")
    if isinstance(original, str):
        return original
    if extras.get("invalidArguments") and isinstance(call.input, str):
        return call.input
    return dumps_str(call.input)


def custom_input(call: ToolCall) -> str:
    return call.input if isinstance(call.input, str) else dumps_str(call.input)


def default_kind(media_type: str) -> str:
    if media_type.startswith("image/"):
        return "image"
    if media_type.startswith("audio/"):
        return "audio"
    return "file"


def media_of(url: str, fallback: str) -> str:
    parsed = parse_data_url(url)
    return parsed[0] if parsed and parsed[0] else fallback


def file_part(
    url: str,
    kind: str,
    *,
    file_id: bool = False,
    filename: Any = None,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``file`` part for an OpenAI image / audio / file content item."""
    fallback = "image/*" if kind == "image" else _OCTET
    media = fallback if file_id else media_of(url, fallback)
    part: dict[str, Any] = {"type": "file", "mediaType": media, "url": url}
    if isinstance(filename, str):
        part["filename"] = filename
    values: dict[str, Any] = dict(extras or {})
    if file_id:
        values["fileId"] = True
    if kind != default_kind(media):
        values["kind"] = kind
    return with_meta(part, OPENAI, values)


def part_kind(part: Mapping[str, Any]) -> str:
    kind = meta(part, OPENAI).get("kind")
    if isinstance(kind, str):
        return kind
    media = part.get("mediaType")
    return default_kind(media if isinstance(media, str) else "")


def audio_part(audio: Mapping[str, Any], extras: Mapping[str, Any]) -> dict[str, Any]:
    fmt = str(audio["format"])
    media = _AUDIO_MEDIA.get(fmt, f"audio/{fmt}")
    return file_part(data_url(media, str(audio["data"])), "audio", extras=extras)


def audio_payload(part: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"data", "format"}`` of an audio file part holding its bytes."""
    parsed = parse_data_url(str(part.get("url", "")))
    if parsed is None:
        return None
    media, payload = parsed
    return {"data": payload, "format": _AUDIO_FORMAT.get(media, media.split("/")[-1])}


def foreign_file(part: Mapping[str, Any]) -> bool:
    """A file part that names another provider's stored file: not replayable here."""
    return bool(meta(part, "anthropic").get("fileId"))
