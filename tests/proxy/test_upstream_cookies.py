"""The upstream session is shared by every client: it keeps no cookies."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web
from loopback import serve_app

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy


async def test_a_cookie_an_upstream_sets_is_not_sent_with_the_next_request(
    tmp_path: Path,
) -> None:
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"id": "x", "object": "chat.completion", "choices": []})
        response.set_cookie("edge", "client-one", path="/")
        return response

    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", answer)
    up_runner, up_port = await serve_app(upstream)
    config = Settings(  # a host name: cookies from an IP address are never kept anyway
        store=f"sqlite:///{tmp_path / 'c.db'}", openai_base_url=f"http://localhost:{up_port}/v1"
    )
    runner, port = await serve_app(install_proxy(create_app(config)))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    try:
        for client in ("one", "two"):
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer sk-{client}"},
                ) as resp:
                    assert resp.status == 200
                    assert "Set-Cookie" not in resp.headers  # not passed back either
    finally:
        await runner.cleanup()
        await up_runner.cleanup()
    assert seen == [None, None]
