"""JSON responses with orjson."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..jsonutil import dumps

__all__ = ["json_response"]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(data), content_type="application/json")
