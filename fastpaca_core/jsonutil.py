"""One JSON library everywhere: orjson, behind two small functions."""

from __future__ import annotations

import json
from typing import Any

import orjson

from .errors import ValidationError

__all__ = [
    "INPUT_DEPTH",
    "MAX_DEPTH",
    "JSONError",
    "check_json",
    "dumps",
    "dumps_sorted",
    "dumps_str",
    "loads",
    "loads_exact",
]

JSONError = orjson.JSONDecodeError

# orjson reads arrays and objects nested up to 1,024 deep, but writes only up to
# 254: deeper input parses, then cannot be stored or sent on
MAX_DEPTH = 254
# what a stored value may take: answers wrap it in a few more levels (a message
# in a page, an event, a converted window), and each must still be writable
INPUT_DEPTH = MAX_DEPTH - 16  # (``check_json`` wraps a value in 16 lists)


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; dict key order is kept as given.

    Raises :class:`ValidationError` for a value nested deeper than
    ``MAX_DEPTH`` (only input can be: whatever this server builds is shallow).
    """
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        _check_depth(exc)
        raise


def dumps_str(value: Any) -> str:
    """:func:`dumps` as text (orjson called here too: a call less per use, on
    the append path five times)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        _check_depth(exc)
        raise


def dumps_sorted(value: Any) -> bytes:
    """:func:`dumps` with every object's keys sorted: one text for one value,
    whatever order its keys came in (a digest's input)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        _check_depth(exc)
        raise


def check_json(value: Any, field_name: str) -> None:
    """Refuse, naming ``field_name``, a value that could not be stored and
    answered as JSON: not serialisable (non-string keys, huge ints, NaN...) or
    nested deeper than ``INPUT_DEPTH``."""
    # within MAX_DEPTH - INPUT_DEPTH (16) lists, as one expression (a loop cost ~1 us)
    wrapped = [[[[[[[[[[[[[[[[value]]]]]]]]]]]]]]]]
    try:
        orjson.dumps(wrapped)
    except TypeError as exc:
        if "Recursion limit" in str(exc):
            raise ValidationError(
                field_name, f"is nested too deeply (at most {INPUT_DEPTH} levels)"
            ) from exc
        raise ValidationError(field_name, f"is not JSON-serialisable ({exc})") from exc


def _check_depth(exc: TypeError) -> None:
    if "Recursion limit" in str(exc):
        raise ValidationError(
            "body", f"is nested too deeply (arrays and objects at most {MAX_DEPTH} levels deep)"
        ) from exc


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)


# bytes -> b"0" for an ASCII digit, b" " for anything else
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
# 19 digits: the shortest integer orjson cannot hold, -9223372036854775809
_LONG_RUN = b"0" * 19


def loads_exact(data: bytes) -> Any:
    """:func:`loads` for a client's JSON: an integer beyond 64 bits is read
    exactly, not as the float orjson makes of it, so that it is refused
    (:func:`check_json`: such an integer cannot be stored) rather than stored
    altered. orjson reads the document first (and refuses what it refuses: no
    ``NaN``, no lone surrogates); only a body holding a run of 19 digits
    anywhere (such an integer, or a long number in a string) is read again
    with the standard library, whose integers have no limit. The check costs
    ~1 µs per KB of body."""
    value = orjson.loads(data)
    if data.translate(_DIGITS).find(_LONG_RUN) < 0:
        return value
    try:
        return json.loads(data)
    except RecursionError as exc:
        # the standard library recurses per level and runs out of stack near
        # 1,000, below orjson's 1,024: refused as any body that deep is
        raise ValidationError(
            "body", f"is nested too deeply (arrays and objects at most {MAX_DEPTH} levels deep)"
        ) from exc
