"""One JSON library everywhere: orjson, behind two small functions."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONError", "dumps", "dumps_str", "loads"]

JSONError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; dict key order is kept as given."""
    return orjson.dumps(value)


def dumps_str(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)
