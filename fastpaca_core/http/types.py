"""Type aliases shared by the HTTP modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["Handler"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
