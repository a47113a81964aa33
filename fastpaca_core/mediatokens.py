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

Estimates, not the providers' counts: on the proxy, the calibration learns
how a context's estimates compare with the provider's own counts.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import urllib.parse
from typing import Any

__all__ = [
    "AUDIO_BYTES_PER_SECOND",
    "AUDIO_TOKENS_PER_SECOND",
    "IMAGE_TOKENS",
    "OTHER_BYTES_PER_TOKEN",
    "PDF_BYTES_PER_PAGE",
    "PDF_PAGE_TOKENS",
    "held_chars",
    "media_out",
]

IMAGE_TOKENS = 1600
AUDIO_TOKENS_PER_SECOND = 10
AUDIO_BYTES_PER_SECOND = 16_000
PDF_PAGE_TOKENS = 2000
PDF_BYTES_PER_PAGE = 50_000
OTHER_BYTES_PER_TOKEN = 4

_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_TEXT_MEDIA = ("application/json", "application/xml", "application/x-ndjson")


def _is_image(part: dict[str, Any]) -> bool:
    media = part.get("mediaType")
    return part.get("type") == "file" and isinstance(media, str) and media.startswith("image/")


def _without_url(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k != "url"}


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
    if media.startswith("image/"):  # a part naming no image type, its URL one
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


def held_chars(part: dict[str, Any]) -> int:
    """The length of the ``data:`` URL whose bytes :func:`media_out` reads
    (decodes, scans) to count ``part``; 0 when it reads none (most parts, an
    image: at one look)."""
    if part.get("type") != "file" or _is_image(part):
        return 0
    url = part.get("url")
    return len(url) if isinstance(url, str) and url.startswith("data:") else 0


def media_out(part: dict[str, Any]) -> tuple[dict[str, Any], int, str | None]:
    """``part`` as counted (its JSON is tokenised), the tokens its media add,
    and the text its file holds (tokenised too), or None. A part with no
    media to set apart comes back as it is: most parts, at one look."""
    if part.get("type") == "file":
        if _is_image(part):
            return _without_url(part), IMAGE_TOKENS, None
        held = _held(part.get("url"))
        if held is None:
            return part, 0, None
        media = part.get("mediaType")
        if not isinstance(media, str) or media.lower() == "application/octet-stream":
            media = held[0]  # the URL's own type, when the part names none
        tokens, text = _file_tokens(media.lower(), held[1])
        return _without_url(part), tokens, text
    output = part.get("output")
    if type(output) is not list:
        return part, 0, None
    images = 0
    kept: list[Any] = []
    for item in output:
        if isinstance(item, dict) and _is_image(item):
            item = _without_url(item)
            images += 1
        kept.append(item)
    return ({**part, "output": kept}, images * IMAGE_TOKENS, None) if images else (part, 0, None)
