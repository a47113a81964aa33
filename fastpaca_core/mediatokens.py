"""What a file part costs in tokens: by what providers bill for it, not by its bytes.

A file's bytes travel as base64 in a ``data:`` URL; counted as text, 100 KB
of audio came to ~91,000 tokens, where OpenAI bills three seconds of speech
as ~30, and the message pushed the rest of the conversation out of the
window. So a ``file`` part is counted without its ``url``, plus an estimate
of what its content costs a provider:

- an image (``image/*``, by URL, data or file id, also one inside a tool
  result's ``output``, a screenshot a tool returned): ``IMAGE_TOKENS``
  (providers bill an image by its pixels: Anthropic about width x height /
  750, at most about 1,600; OpenAI 85, plus 170 per 512-pixel tile);
- audio held in the URL: ``AUDIO_TOKENS_PER_SECOND`` per second (OpenAI's
  audio input: a token per 100 ms). The length of a WAV file is read from
  its header; other formats are taken at ``AUDIO_BYTES_PER_SECOND`` (128
  kbit/s: audio compressed harder, Opus at 32 kbit/s say, counts less than
  it costs);
- a PDF held in the URL: ``PDF_PAGE_TOKENS`` per page (providers send each
  page as its text and an image of it: Anthropic bills 1,500-3,000 tokens a
  page). Pages are counted in the file (its ``/Type /Page`` objects); a file
  whose page objects are compressed is taken at ``PDF_BYTES_PER_PAGE``;
- text held in the URL (``text/*``, JSON, XML): its text, tokenised;
- any other file held in the URL: a token per ``OTHER_BYTES_PER_TOKEN`` bytes;
- a file by URL or file id other than an image: the JSON of the part (its
  size cannot be known here).

A ``url`` of bare base64 (OpenAI's ``file_data`` as a client sent it, not a
``data:`` URL: Chat keeps it unflagged, Responses flags ``openai.fileData``)
holds its bytes too: it is counted as a ``data:`` URL of the part's
``mediaType``, or when that is octet-stream, of the type its ``filename``
suggests. A file in a tool result's ``output`` (a PDF a tool returned, as
an Anthropic ``document`` block or an AI SDK file part gives it) is counted
as a file part is.

The same goes for media a converter kept verbatim in a raw provider part
(``data-openai-chat-part``, ``data-anthropic-block``...: an item it could
not map losslessly; a whole raw message or item; one in a tool result's
``output``), however deep: the part's JSON is counted without each payload,
plus what the payload costs as above (a 1 MB image so kept had counted as
~270,000 tokens). Payloads are looked for where each provider's shape holds
them, not in every string: an ``image_url`` (Chat's ``{"url"}``, Responses'
string in ``input_image`` / ``computer_screenshot``), ``input_audio.data``
(audio of its ``format``), ``file_data`` (Chat's ``file``, Responses'
``input_file``; bare base64 takes its type from ``filename``), an Anthropic
``base64`` source. An image given by URL or file id there (and in an
Anthropic ``image`` block) costs ``IMAGE_TOKENS`` too, as a file part's does.
A raw part is rare: it is walked whole; other parts pay one set lookup.

Estimates, not the providers' counts: on the proxy, the calibration learns
how a context's estimates compare with the provider's own counts.
"""

from __future__ import annotations

import base64
import binascii
import math
import mimetypes
import re
import urllib.parse
from typing import Any, NamedTuple

from .formats._parts import meta
from .formats.anthropic import RAW_BLOCK, RAW_MESSAGE
from .formats.openai_chat import RAW_MESSAGE as RAW_CHAT_MESSAGE
from .formats.openai_chat import RAW_PART
from .formats.openai_responses import RAW_CONTENT, RAW_ITEM

__all__ = [
    "AUDIO_BYTES_PER_SECOND",
    "AUDIO_TOKENS_PER_SECOND",
    "HOLDING_KINDS",
    "IMAGE_TOKENS",
    "LONG_WALK",
    "OTHER_BYTES_PER_TOKEN",
    "PDF_BYTES_PER_PAGE",
    "PDF_PAGE_TOKENS",
    "RAW_KINDS",
    "WALK_LIMIT",
    "held_chars",
    "media_out",
]

IMAGE_TOKENS = 1600
AUDIO_TOKENS_PER_SECOND = 10
AUDIO_BYTES_PER_SECOND = 16_000
PDF_PAGE_TOKENS = 2000
PDF_BYTES_PER_PAGE = 50_000
OTHER_BYTES_PER_TOKEN = 4
# The parts a converter keeps a provider's item in verbatim: media may sit
# anywhere inside their ``data``.
RAW_KINDS = frozenset({RAW_PART, RAW_CHAT_MESSAGE, RAW_CONTENT, RAW_ITEM, RAW_BLOCK, RAW_MESSAGE})
# The part types whose bytes counting may read (:func:`held_chars`), besides
# a tool result's (its ``output``'s files and raw items).
HOLDING_KINDS = RAW_KINDS | {"file"}
# A raw part whose objects and lists hold more keys and items than this is
# counted off the event loop (:func:`held_chars` gives it ``LONG_WALK``):
# walking it for media takes as long as a big file's read (50,000 rows of
# nested JSON: ~100 ms).
WALK_LIMIT = 2_000
LONG_WALK = 1 << 30

_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_TEXT_MEDIA = ("application/json", "application/xml", "application/x-ndjson")
_OCTET = "application/octet-stream"
# A URL's scheme (``https:``, ``data:``...): never in base64, whose alphabet
# has no colon.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# The providers whose ``fileId`` flag makes a file part's ``url`` a file id.
_ID_FLAGS = ("openai", "anthropic")


def _without_url(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k != "url"}


def _holds(item: Any) -> bool:
    """``item`` (of a tool result's ``output``, any JSON) is a file or a raw
    provider part: one whose media :func:`media_out` sets apart."""
    return (
        isinstance(item, dict)
        and isinstance(kind := item.get("type"), str)
        and kind in HOLDING_KINDS
    )


def _is_data(url: Any) -> bool:
    return isinstance(url, str) and url.startswith("data:")


def _held(url: Any) -> tuple[str, bytes] | None:
    """``(media type, bytes)`` of a ``data:`` URL; None for any other URL (or
    one that cannot be read)."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    head, comma, payload = url[5:].partition(",")
    if not comma:
        return None
    try:
        if head.endswith(";base64"):
            data = base64.b64decode(payload)
        else:
            data = urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        return None
    return head.split(";", 1)[0].strip().lower(), data


def _media(media: Any, url: Any) -> str:
    """The type a file is counted as: ``media``, or when that names none (or
    ``application/octet-stream``) the type its ``data:`` URL names, read
    without its payload."""
    if isinstance(media, str) and media.lower() != _OCTET:
        return media.lower()
    comma = url.find(",") if _is_data(url) else -1
    return url[5:comma].split(";", 1)[0].strip().lower() if comma >= 0 else ""


def _is_text(media: str) -> bool:
    return media.startswith("text/") or media in _TEXT_MEDIA or media.endswith(("+json", "+xml"))


def _wav_seconds(data: bytes) -> float | None:
    """The length of a RIFF/WAVE file: its size over the byte rate its
    ``fmt`` header gives; None when there is no such header."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE" or data[12:16] != b"fmt ":
        return None
    rate = int.from_bytes(data[28:32], "little")
    return (len(data) - 44) / rate if rate > 0 else None


def _file_tokens(media: str, data: bytes) -> tuple[int, str | None]:
    """What a file's bytes cost: tokens counted here, or its text to tokenise."""
    if media.startswith("image/"):
        return IMAGE_TOKENS, None
    if media.startswith("audio/"):
        seconds = _wav_seconds(data) if "wav" in media else None
        if seconds is None:
            seconds = len(data) / AUDIO_BYTES_PER_SECOND
        return max(1, math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)), None
    if media == "application/pdf":
        pages = len(_PAGE.findall(data)) or -(-len(data) // PDF_BYTES_PER_PAGE)
        return max(1, pages) * PDF_PAGE_TOKENS, None
    if _is_text(media):
        return 0, data.decode("utf-8", "replace")
    return -(-len(data) // OTHER_BYTES_PER_TOKEN), None


def _url_tokens(media: Any, url: Any) -> tuple[int, str | None] | None:
    """What the file at ``url`` of type ``media`` costs (:func:`_file_tokens`):
    an image at one look, else the bytes its ``data:`` URL holds, read; None
    when its cost is not known here (a non-image by URL, an unreadable URL)."""
    kind = _media(media, url)
    if kind.startswith("image/"):
        return IMAGE_TOKENS, None
    held = _held(url)
    return None if held is None else _file_tokens(kind or held[0], held[1])


def _reads(media: Any, url: Any) -> int:
    """The length of ``url`` when :func:`_url_tokens` reads its bytes, else 0."""
    return len(url) if _is_data(url) and not _media(media, url).startswith("image/") else 0


class _Media(NamedTuple):
    """Media inside a raw part's data: ``holder[key]`` is its payload (a
    ``data:`` URL or bare base64 of type ``media``); no holder: an image by
    URL or file id, whose reference stays in the JSON."""

    holder: dict[str, Any] | None
    key: str
    media: str | None

    @property
    def payload(self) -> str:
        return "" if self.holder is None else str(self.holder[self.key])

    def is_image(self) -> bool:
        return self.holder is None or _media(self.media, self.payload).startswith("image/")

    def reads(self) -> int:
        return 0 if self.is_image() else len(self.payload)

    def tokens(self) -> tuple[int, str | None] | None:
        if self.is_image():
            return IMAGE_TOKENS, None
        payload = self.payload
        url = payload if _is_data(payload) else f"data:{self.media};base64,{payload}"
        return _url_tokens(self.media, url)


def _image(holder: dict[str, Any], key: str) -> list[_Media]:
    """An image given as ``holder[key]``: a ``data:`` URL (of its own type,
    else an image), a URL or a file id."""
    url = holder.get(key)
    if not isinstance(url, str):
        return []
    if _is_data(url):
        return [_Media(holder, key, _media(None, url) or "image/*")]
    return [_Media(None, key, "image/*")]


def _named(media: Any, name: Any) -> str:
    """The type of bare base64 (no ``data:`` URL names one): ``media``, or
    when that names none (or octet-stream) the type file ``name`` suggests."""
    if isinstance(media, str) and media and media.lower() != _OCTET:
        return media
    guessed = mimetypes.guess_type(name)[0] if isinstance(name, str) else None
    return guessed or _OCTET


def _file_data(holder: dict[str, Any]) -> list[_Media]:
    data = holder.get("file_data")
    if not isinstance(data, str):
        return []
    if _is_data(data):
        return [_Media(holder, "file_data", None)]
    return [_Media(holder, "file_data", _named(None, holder.get("filename")))]


def _bare(part: dict[str, Any]) -> _Media | None:
    """The bytes a file part's ``url`` holds as bare base64 (OpenAI's
    ``file_data`` as sent): a ``url`` with no scheme that is no file id.
    None for any other ``url``: at one look."""
    url = part.get("url")
    if not isinstance(url, str) or not url or _SCHEME.match(url):
        return None
    if any(meta(part, provider).get("fileId") for provider in _ID_FLAGS):
        return None
    return _Media(part, "url", _named(part.get("mediaType"), part.get("filename")))


def _held_by(item: dict[str, Any]) -> list[_Media]:
    """The media ``item`` itself holds, by the shape of each provider's items."""
    kind = item.get("type")
    inner = item.get(kind) if isinstance(kind, str) else None
    if kind == "image_url" and isinstance(inner, dict):  # Chat
        return _image(inner, "url")
    if kind == "input_image" or kind == "computer_screenshot":  # Responses
        return _image(item, "image_url" if "image_url" in item else "file_id")
    if kind == "input_audio" and isinstance(inner, dict) and isinstance(inner.get("data"), str):
        return [_Media(inner, "data", f"audio/{inner.get('format')}")]
    if kind == "file" and isinstance(inner, dict):  # Chat
        return _file_data(inner)
    if kind == "input_file":  # Responses
        return _file_data(item)
    if kind == "base64" and isinstance(item.get("data"), str):  # an Anthropic source
        media = item.get("media_type")
        return [_Media(item, "data", media if isinstance(media, str) else _OCTET)]
    source = item.get("source")
    if kind == "image" and isinstance(source, dict) and source.get("type") != "base64":
        return [_Media(None, "source", "image/*")]  # Anthropic, by URL or file id
    return []


def _found(data: Any, limit: int | None = None) -> list[_Media] | None:
    """Every media in a raw part's ``data``, in order (a walk without
    recursion: provider JSON may nest deep); None, having looked at no more
    than ``limit`` of them, when its objects and lists hold more keys and
    items than that."""
    found: list[_Media] = []
    stack = [data]
    walked = 0
    while stack:
        value = stack.pop()
        if limit is not None and isinstance(value, dict | list):
            walked += len(value) + 1
            if walked > limit:
                return None
        if isinstance(value, dict):
            found.extend(_held_by(value))
            stack.extend(v for v in reversed(value.values()) if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend(v for v in reversed(value) if isinstance(v, dict | list))
    return found


def _left_out(value: Any, drop: dict[int, str]) -> Any:
    """``value`` with ``holder[key]`` left out for each ``id(holder): key``."""
    if isinstance(value, list):
        return [_left_out(v, drop) for v in value]
    if not isinstance(value, dict):
        return value
    key = drop.get(id(value))
    return {k: _left_out(v, drop) for k, v in value.items() if k != key}


def _raw_out(part: dict[str, Any]) -> tuple[dict[str, Any], int, str | None]:
    """:func:`media_out` of a raw provider part: its JSON without each payload
    it holds (and can read), plus what they cost."""
    tokens = 0
    texts: list[str] = []
    drop: dict[int, str] = {}
    for media in _found(part.get("data")) or ():
        cost = media.tokens()
        if cost is None:
            continue
        tokens += cost[0]
        if cost[1] is not None:
            texts.append(cost[1])
        if media.holder is not None:
            drop[id(media.holder)] = media.key
    if not tokens and not texts:
        return part, 0, None
    counted = {**part, "data": _left_out(part["data"], drop)} if drop else part
    return counted, tokens, "\n".join(texts) if texts else None


def held_chars(part: dict[str, Any]) -> int:
    """The length of the ``data:`` URLs (or bare base64) whose bytes
    :func:`media_out` reads (decodes, scans) to count ``part``; 0 when it
    reads none (most parts, an image: at one look). A raw part whose objects
    and lists hold more than ``WALK_LIMIT`` keys and items is not walked
    through here: its count walks all of it, so it counts as ``LONG_WALK``
    characters read."""
    kind = part.get("type")
    if kind == "file":
        bare = _bare(part)
        return _reads(part.get("mediaType"), part.get("url")) if bare is None else bare.reads()
    if kind in RAW_KINDS:
        found = _found(part.get("data"), WALK_LIMIT)
        return LONG_WALK if found is None else sum(media.reads() for media in found)
    output = part.get("output")
    if type(output) is not list:
        return 0
    return sum(held_chars(item) for item in output if _holds(item))


def media_out(part: dict[str, Any]) -> tuple[dict[str, Any], int, str | None]:
    """``part`` as counted (its JSON is tokenised), the tokens its media add,
    and the text its file holds (tokenised too), or None. A part with no
    media to set apart comes back as it is: most parts, at one look."""
    kind = part.get("type")
    if kind == "file":
        cost = _url_tokens(part.get("mediaType"), part.get("url"))
        if cost is None and (bare := _bare(part)) is not None:
            cost = bare.tokens()  # None: not base64 after all, counted as JSON
        return (part, 0, None) if cost is None else (_without_url(part), *cost)
    if kind in RAW_KINDS:
        return _raw_out(part)
    output = part.get("output")
    if type(output) is not list:
        return part, 0, None
    tokens = 0
    texts: list[str] = []
    kept: list[Any] = []
    for item in output:  # a tool's screenshot or PDF; a raw item of a provider's result
        if _holds(item):
            item, added, text = media_out(item)
            tokens += added
            if text is not None:
                texts.append(text)
        kept.append(item)
    if not tokens and not texts:
        return part, 0, None
    return {**part, "output": kept}, tokens, "\n".join(texts) if texts else None
