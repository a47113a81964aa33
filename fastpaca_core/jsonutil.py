"""One JSON library everywhere: orjson, behind two small functions."""

from __future__ import annotations

from typing import Any

import orjson

from .errors import ValidationError

__all__ = ["MAX_DEPTH", "JSONError", "dumps", "dumps_str", "loads"]

JSONError = orjson.JSONDecodeError

# orjson reads arrays and objects nested up to 1,024 deep, but writes only up to
# 254: deeper input parses, then cannot be stored or sent on
MAX_DEPTH = 254


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
    """:func:`dumps` as text."""
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        _check_depth(exc)
        raise


def _check_depth(exc: TypeError) -> None:
    if "Recursion limit" in str(exc):
        raise ValidationError(
            "body", f"is nested too deeply (arrays and objects at most {MAX_DEPTH} levels deep)"
        ) from exc


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)
