"""Reading requests: path ids, query integers and flags, JSON bodies.

Every bad value becomes a 400 with the JSON error shape; nothing here lets a
malformed request reach the engine as an exception it did not expect.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import ValidationError
from ..jsonutil import JSONError, loads_exact
from .errors import HttpError
from .state import SETTINGS
from .tenants import scoped_id

__all__ = ["bool_param", "context_id", "int_param", "limit_param", "read_json"]

_MAX_INT = 2**63 - 1
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def context_id(request: web.Request) -> str:
    """The path's public id, checked, as the request's tenant's internal id."""
    return scoped_id(request, request.match_info["id"])


def int_param(
    request: web.Request, name: str, *, minimum: int = 0, maximum: int = _MAX_INT
) -> int | None:
    """The query parameter ``name`` as an integer in range, or ``None`` when absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    text = raw.strip()
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
        raise ValidationError(name, f"must be an integer, got {raw[:40]!r}")
    value = int(text)
    if value < minimum or value > maximum:
        raise ValidationError(name, f"must be an integer between {minimum} and {maximum}")
    return value


def limit_param(request: web.Request, default: int) -> int:
    """``limit``: 1 up to the configured page-size cap."""
    cap = request.app[SETTINGS].max_page_size
    value = int_param(request, "limit", minimum=1, maximum=cap)
    return min(default, cap) if value is None else value


def bool_param(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValidationError(name, "must be true or false")


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body reads as ``{}``).

    A body declared as anything but JSON (``Content-Type: text/plain``, a form)
    is 415; a body without a ``Content-Type`` is read as JSON.

    The body limits were applied before the handler ran (:func:`.limits.admit`):
    the body is read already.
    """
    body = await request.read()
    if not body.strip():
        return {}
    declared = request.headers.get("Content-Type", "").strip()
    if declared and not _is_json(request.content_type):
        raise HttpError(
            415,
            "unsupported_media_type",
            f"Request body must be application/json, not {request.content_type[:80]!r}",
        )
    try:
        value = loads_exact(body)
    except JSONError as exc:
        raise HttpError(400, "invalid_json", f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValidationError("body", "must be a JSON object")
    return value
