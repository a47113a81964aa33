"""The API with its proxy on a loopback socket, as the reliability tests drive it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from http_reply import Reply as Answer

from fastpaca_core.jsonutil import dumps
from fastpaca_proxy.fake_upstream import FakeUpstream

__all__ = ["Answer", "Server", "Start", "provider_error"]


@dataclass
class Server:
    base: str
    port: int
    app: web.Application
    session: aiohttp.ClientSession
    fake: FakeUpstream

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if json is not None:
            data = dumps(json)
            sent["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.base + path, data=data, headers=sent, params=params
        ) as resp:
            return Answer(resp.status, dict(resp.headers), await resp.read())

    async def say(self, cid: str, text: str, **headers: str) -> Answer:
        message = {"role": "user", "parts": [{"type": "text", "text": text}]}
        return await self.call(
            "POST", f"/v1/contexts/{cid}/messages", json={"message": message}, headers=headers
        )


Start = Callable[..., Awaitable[Server]]


def provider_error(answer: Answer, status: int, provider: str, kind: str) -> dict[str, Any]:
    """The error object of ``answer``, checked to be in ``provider``'s own shape
    (``openai`` or ``anthropic``) with status ``status`` and error type ``kind``."""
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body = answer.json()
    if provider == "openai":
        assert set(body) == {"error"}, body
        error: dict[str, Any] = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
    else:
        assert set(body) == {"type", "error"} and body["type"] == "error", body
        error = body["error"]
        assert set(error) == {"type", "message"}, body
    assert error["type"] == kind, body
    assert isinstance(error["message"], str) and error["message"], body
    return error
