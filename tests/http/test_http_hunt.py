"""Defects found by a hunt over the canonical API, each held by a test here."""

from __future__ import annotations

from typing import Any

import aiohttp
from http_support import Api, text_message

from fastpaca_core.http.pages import PART_BYTES

WAIT = 5.0


async def _frames(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    """Every text frame until the server closes (pings left out)."""
    frames: list[Any] = []
    while True:
        msg = await ws.receive(timeout=WAIT)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return frames
        data = msg.json()
        if data["type"] != "ping":
            frames.append(data)


# -- HEAD ----------------------------------------------------------------------


async def test_head_is_answered_wherever_get_is(api: Api, cid: str) -> None:
    """RFC 9110: HEAD where GET is served (a load balancer's ``HEAD /health/live``
    was 405), with the headers of the GET and no body."""
    await api.create(cid)
    await api.say(cid, "hello")
    for path in (
        "/health/live",
        "/health/ready",
        "/metrics",
        f"/v1/contexts/{cid}",
        f"/v1/contexts/{cid}/context",
        f"/v1/contexts/{cid}/tail",
        "/v1/contexts",
    ):
        head = await api.request("HEAD", path)
        assert head.status == 200, (path, head.status)
        assert head.body == b""
        get = await api.get(path)
        assert head.headers["Content-Type"] == get.headers["Content-Type"], path
    refused = await api.post(f"/v1/contexts/{cid}/tail")
    assert refused.status == 405
    assert set(refused.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def test_head_of_a_page_sent_in_parts_has_no_body(api: Api, cid: str) -> None:
    """A page larger than one part is streamed to a GET; to a HEAD it must send
    no body, or the next request on the connection reads page bytes as its
    status line."""
    await api.create(cid, token_budget=10_000_000)
    big = "x" * (PART_BYTES // 3)
    for _ in range(4):  # more than one part's bytes
        await api.say(cid, big, token_count=1)
    head = await api.request("HEAD", f"/v1/contexts/{cid}/tail")
    assert head.status == 200
    assert head.body == b""
    # the same keep-alive connection still answers the next request properly
    after = await api.get(f"/v1/contexts/{cid}")
    assert after.status == 200
    assert after.json()["last_seq"] == 4
    page = await api.get(f"/v1/contexts/{cid}/tail")
    assert [m["seq"] for m in page.json()["messages"]] == [1, 2, 3, 4]


# -- the stream ----------------------------------------------------------------


async def test_cursor_ahead_of_a_tombstoned_context_gets_one_event_per_version(
    api: Api, cid: str
) -> None:
    """The reset to the tombstone's version was followed by a ``tombstoned``
    event of the same version: versions must strictly increase. The tombstone
    alone says all there is."""
    await api.create(cid)
    await api.say(cid, "x")
    assert (await api.delete(f"/v1/contexts/{cid}")).status == 204
    ws = await api.ws(f"/v1/contexts/{cid}/stream?cursor=50")
    frames = await _frames(ws)
    assert frames == [{"type": "tombstoned", "version": 2}]
    assert ws.close_code == 1000
    # a cursor behind the tombstone still gets it, then the close
    ws = await api.ws(f"/v1/contexts/{cid}/stream?cursor=1")
    assert await _frames(ws) == [{"type": "tombstoned", "version": 2}]
    assert ws.close_code == 1000


# -- JSON null means absent ----------------------------------------------------


async def test_null_message_or_messages_is_absent(api: Api, cid: str) -> None:
    """A client whose model writes every field (``"messages": null`` beside its
    ``message``) was refused with "send either message or messages"."""
    await api.create(cid)
    url = f"/v1/contexts/{cid}/messages"
    single = await api.post(url, json={"message": text_message("a"), "messages": None})
    assert single.status == 201, single.body
    assert single.json()["seq"] == 1
    batch = await api.post(
        url, json={"message": None, "messages": [text_message("b")], "if_version": None}
    )
    assert batch.status == 201, batch.body
    assert [m["seq"] for m in batch.json()["messages"]] == [2]
    neither = await api.post(url, json={"message": None, "messages": None})
    assert neither.status == 400
    assert neither.json() == {"error": "invalid_request", "message": "message: is required"}
    both = await api.post(url, json={"message": text_message("c"), "messages": [text_message("d")]})
    assert both.status == 400
    tail = await api.get(f"/v1/contexts/{cid}/tail")
    assert [m["parts"][0]["text"] for m in tail.json()["messages"]] == ["a", "b"]
