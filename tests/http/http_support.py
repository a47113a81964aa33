"""Helpers of the HTTP tests: a recording client for the API under test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from http_reply import Reply

from fastpaca_core.engine import Engine
from fastpaca_core.http import ENGINE
from fastpaca_core.jsonutil import dumps


@dataclass
class RecordedError:
    method: str
    path: str
    status: int
    content_type: str
    body: bytes


ERRORS: list[RecordedError] = []


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession
    app: web.Application
    runner: web.AppRunner | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        return self.app[ENGINE]

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        if json is not None:
            data = dumps(json)
        merged = {**self.headers, **(headers or {})}
        if data is not None:
            merged.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.base + path, data=data, headers=merged, params=params
        ) as resp:
            body = await resp.read()
            reply = Reply(resp.status, dict(resp.headers), body)
        if reply.status >= 400:
            content_type = resp.headers.get("Content-Type", "")
            ERRORS.append(RecordedError(method, path, reply.status, content_type, body))
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def put(self, path: str, **kw: Any) -> Reply:
        return await self.request("PUT", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.request("POST", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Reply:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)

    async def ws(self, path: str, **kw: Any) -> aiohttp.ClientWebSocketResponse:
        headers = {**self.headers, **kw.pop("headers", {})}
        return await self.session.ws_connect(self.base + path, headers=headers, **kw)

    # -- shortcuts ---------------------------------------------------------

    async def create(self, cid: str, **config: Any) -> dict[str, Any]:
        reply = await self.put(f"/v1/contexts/{cid}", json=config)
        assert reply.status == 200, reply.body
        result: dict[str, Any] = reply.json()
        return result

    async def say(
        self, cid: str, text: str, role: str = "user", token_count: int | None = None, **body: Any
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": role, "parts": [{"type": "text", "text": text}]}
        if token_count is not None:
            message["token_count"] = token_count
        reply = await self.post(f"/v1/contexts/{cid}/messages", json={"message": message, **body})
        assert reply.status == 201, reply.body
        result: dict[str, Any] = reply.json()
        return result


def text_message(text: str, role: str = "user", **extra: Any) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "text": text}], **extra}


Serve = Callable[..., Awaitable[Api]]


async def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)  # the server closes after an error
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body
