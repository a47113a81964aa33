"""Pages of the log (``/tail``, ``/messages``): small pages as one body, large
ones read and sent in parts, at the pace the client reads them."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from http_support import Api, Serve

from fastpaca_core.engine import Engine
from fastpaca_core.jsonutil import dumps
from fastpaca_core.model import StoredMessage


async def _fill(api: Api, cid: str, count: int, size: int) -> None:
    await api.create(cid, policy={"strategy": "manual"})
    for start in range(0, count, 20):
        batch = [
            {
                "role": "user",
                "parts": [{"type": "text", "text": f"{i:05d} " + "x" * size}],
                "token_count": 1,
            }
            for i in range(start, min(count, start + 20))
        ]
        reply = await api.post(f"/v1/contexts/{cid}/messages", json={"messages": batch})
        assert reply.status == 201, reply.body


def _seqs(body: dict[str, Any]) -> list[int]:
    return [m["seq"] for m in body["messages"]]


async def test_a_small_page_is_one_body_and_one_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(api, "small", 150, 50)
    reads: list[tuple[int, int]] = []
    real = Engine.read_log

    async def counting(
        self: Engine, context_id: str, first: int, last: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        reads.append((first, last))
        return await real(self, context_id, first, last, max_bytes)

    monkeypatch.setattr(Engine, "read_log", counting)
    reply = await api.get("/v1/contexts/small/tail", params={"limit": "120", "offset": "5"})
    assert reply.status == 200 and "Content-Length" in reply.headers
    rows = await api.engine.tail("small", 5, 120)
    assert reply.body == dumps({"messages": [row.to_json() for row in rows]})
    assert _seqs(reply.json()) == list(range(26, 146))
    assert reads[0] == (26, 145) and len(reads) == 2  # the reply's read, then the test's
    empty = await api.get("/v1/contexts/small/messages", params={"after_seq": "150"})
    assert empty.body == b'{"messages":[]}' and "Content-Length" in empty.headers


@pytest.mark.parametrize("route", ["tail", "messages"])
async def test_a_large_page_is_streamed_whole_and_in_order(api: Api, route: str) -> None:
    await _fill(api, "large", 300, 20_000)  # ~6 MB: past PART_BYTES
    params = {"limit": "250"} if route == "messages" else {"limit": "250", "offset": "10"}
    if route == "messages":
        params["after_seq"] = "20"
    reply = await api.get(f"/v1/contexts/large/{route}", params=params)
    assert reply.status == 200
    assert "Content-Length" not in reply.headers  # sent in parts
    assert reply.headers["Content-Type"].startswith("application/json")
    expected = list(range(21, 271)) if route == "messages" else list(range(41, 291))
    assert _seqs(reply.json()) == expected
    if route == "messages":
        rows = await api.engine.messages("large", 20, 250)
    else:
        rows = await api.engine.tail("large", 10, 250)
    assert reply.body == dumps({"messages": [row.to_json() for row in rows]})  # the same bytes


async def test_a_client_that_does_not_read_holds_back_the_reads(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(api, "slow", 400, 50_000)  # a 20 MB page
    read: list[int] = []
    real = Engine.read_log

    async def counting(
        self: Engine, context_id: str, first: int, last: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        rows = await real(self, context_id, first, last, max_bytes)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(Engine, "read_log", counting)
    port = int(api.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /v1/contexts/slow/messages?limit=400 HTTP/1.1\r\nHost: t\r\n\r\n")
        await writer.drain()
        await reader.read(1024)  # the status line: then stop reading
        settled = -1
        while settled != sum(read):  # until the server stops reading rows
            settled = sum(read)
            await asyncio.sleep(0.3)
        assert sum(read) < 400  # it waits for the client instead of building the page
        assert (await api.get("/health/live")).status == 200  # and serves others meanwhile
    finally:
        writer.close()


async def test_a_client_that_stops_reading_is_let_go(serve: Serve) -> None:
    api = await serve(request_timeout=1)
    await _fill(api, "gone", 300, 50_000)  # a 15 MB page
    port = int(api.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /v1/contexts/gone/messages?limit=300 HTTP/1.1\r\nHost: t\r\n\r\n")
        await writer.drain()
        received = len(await reader.read(1024))
        await asyncio.sleep(2.5)  # reads nothing for longer than the request timeout
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 20):
            received += len(chunk)  # what was on its way, then the server's close
        assert received < 300 * 50_000  # cut: never the whole page
    finally:
        writer.close()


async def test_a_row_missing_mid_page_cuts_the_response(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(api, "cut", 200, 20_000)
    real = Engine.read_log

    async def losing(
        self: Engine, context_id: str, first: int, last: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        rows = await real(self, context_id, first, last, max_bytes)
        return rows[1:] if first > 60 else rows  # the part's first row missing

    monkeypatch.setattr(Engine, "read_log", losing)
    with pytest.raises(aiohttp.ClientPayloadError):  # never a page with a row left out
        await api.get("/v1/contexts/cut/messages", params={"limit": "200"})
    first = await api.get("/v1/contexts/cut/messages", params={"limit": "200", "after_seq": "100"})
    assert first.status == 500 and first.json()["error"] == "store_error"
