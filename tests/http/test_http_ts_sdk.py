"""The exact requests the Fastpaca TypeScript SDK sends, and every field it reads.

The SDK (``createClient({baseUrl, apiKey})``) sends, with
``Authorization: Bearer <apiKey>`` on each call when a key is set:

- ``context(id, {budget?, trigger?, policy?, metadata?})``: ``PUT /contexts/{id}``
  with ``JSON.stringify({token_budget, trigger_ratio, policy, metadata})``, so
  options it was not given are absent; it only checks ``response.ok``;
- ``ctx.append(message, {ifVersion?, tokenCount?})``: ``POST …/messages`` with
  ``{"message": {"role", "parts", "token_count"?}, "if_version"?}``, reads
  ``{seq, version, token_estimate}``;
- ``ctx.context({ifVersion?, budgetTokens?})``: ``GET …/context?if_version=&budget_tokens=``
  (each only when truthy), reads ``{version, messages, used_tokens, needs_compaction, segments}``;
- ``ctx.compact(replacement, {ifVersion?})``: ``POST …/compact`` ``{replacement, if_version?}``,
  reads ``{version}``;
- ``ctx.getTail({offset?, limit?})``: ``GET …/tail?offset=&limit=``, reads ``{messages}``;
- ``deleteContext(id)``: ``DELETE /contexts/{id}``, checks ``response.ok``.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from http_support import Serve

KEY = "sdk-key"


def stringify(value: Any) -> bytes:
    """``JSON.stringify``: compact, keys in insertion order, undefined keys left out."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Sdk:
    """The TypeScript SDK's requests, byte for byte, via plain aiohttp."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self.session = session
        self.base = base_url
        self.auth = {"Authorization": f"Bearer {api_key}"}

    async def _call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        headers = dict(self.auth)
        data = None
        if body is not None:
            headers = {"Content-Type": "application/json", **self.auth}
            data = stringify(body)
        async with self.session.request(method, url, data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None

    async def context(self, cid: str, **opts: Any) -> int:
        body = {
            k: v
            for k, v in {
                "token_budget": opts.get("budget"),
                "trigger_ratio": opts.get("trigger"),
                "policy": opts.get("policy"),
                "metadata": opts.get("metadata"),
            }.items()
            if v is not None
        }
        status, _ = await self._call("PUT", f"{self.base}/contexts/{cid}", body)
        return status

    async def append(
        self,
        cid: str,
        message: dict[str, Any],
        if_version: int | None = None,
        token_count: int | None = None,
    ) -> tuple[int, Any]:
        wire: dict[str, Any] = {"role": message["role"], "parts": message["parts"]}
        if token_count is not None:
            wire["token_count"] = token_count
        body: dict[str, Any] = {"message": wire}
        if if_version is not None:
            body["if_version"] = if_version
        return await self._call("POST", f"{self.base}/contexts/{cid}/messages", body)

    async def window(
        self, cid: str, if_version: int | None = None, budget_tokens: int | None = None
    ) -> tuple[int, Any]:
        params = []
        if if_version:
            params.append(f"if_version={if_version}")
        if budget_tokens:
            params.append(f"budget_tokens={budget_tokens}")
        query = f"?{'&'.join(params)}" if params else ""
        return await self._call("GET", f"{self.base}/contexts/{cid}/context{query}")

    async def compact(
        self, cid: str, replacement: list[Any], if_version: int | None = None
    ) -> tuple[int, Any]:
        body: dict[str, Any] = {"replacement": replacement}
        if if_version is not None:
            body["if_version"] = if_version
        return await self._call("POST", f"{self.base}/contexts/{cid}/compact", body)

    async def tail(
        self, cid: str, offset: int | None = None, limit: int | None = None
    ) -> tuple[int, Any]:
        params = []
        if offset is not None:
            params.append(f"offset={offset}")
        if limit is not None:
            params.append(f"limit={limit}")
        query = f"?{'&'.join(params)}" if params else ""
        return await self._call("GET", f"{self.base}/contexts/{cid}/tail{query}")

    async def delete_context(self, cid: str) -> int:
        status, _ = await self._call("DELETE", f"{self.base}/contexts/{cid}")
        return status


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def test_typescript_sdk_session(serve: Serve) -> None:
    api = await serve(api_key=KEY)
    sdk = Sdk(api.session, api.base + "/v1", KEY)
    cid = "chat-123"

    # context(id, opts): only the options given are sent
    assert await sdk.context(cid, budget=400_000) == 200
    policy = {"strategy": "last_n", "config": {"limit": 400}}
    assert await sdk.context(cid, trigger=0.7, policy=policy) == 200
    assert await sdk.context("with-meta", metadata={"project": "support"}) == 200
    ctx = (await api.get(f"/v1/contexts/{cid}", headers=sdk.auth)).json()
    assert (ctx["token_budget"], ctx["trigger_ratio"], ctx["policy"]) == (400_000, 0.7, policy)

    # append: a ai-sdk UIMessage; the SDK sends only role and parts
    ui_message = {
        "id": "msg_1",
        "role": "user",
        "parts": [{"type": "text", "text": "Hello!"}],
        "metadata": {"ignored": "by the SDK"},
    }
    status, first = await sdk.append(cid, ui_message)
    assert status == 201
    assert is_number(first["seq"]) and is_number(first["version"])
    assert is_number(first["token_estimate"]) and first["token_estimate"] > 0
    reply = {"role": "assistant", "parts": [{"type": "text", "text": "Hi there!"}]}
    status, second = await sdk.append(cid, reply, token_count=12)
    assert status == 201
    assert second == {"seq": 2, "version": 2, "token_estimate": 12}
    status, conflict = await sdk.append(cid, reply, if_version=1)
    assert status == 409 and conflict["error"] == "conflict"
    status, third = await sdk.append(cid, reply, if_version=2)
    assert status == 201 and third["version"] == 3

    # context(): version, messages, used_tokens, needs_compaction, segments
    for kwargs in ({}, {"if_version": 3}, {"budget_tokens": 100_000}):
        status, window = await sdk.window(cid, **kwargs)
        assert status == 200
        assert is_number(window["version"]) and window["version"] == 3
        assert [m["role"] for m in window["messages"]] == ["user", "assistant", "assistant"]
        assert all(isinstance(m["parts"], list) for m in window["messages"])
        assert is_number(window["used_tokens"])
        assert isinstance(window["needs_compaction"], bool)
        assert window["segments"] == [{"type": "live", "from_seq": 1, "to_seq": 3}]
    status, _ = await sdk.window(cid, if_version=2)
    assert status == 409

    # compact(replacement, {ifVersion})
    summary = [{"role": "system", "parts": [{"type": "text", "text": "Greetings exchanged."}]}]
    status, compacted = await sdk.compact(cid, summary, if_version=3)
    assert (status, compacted) == (200, {"version": 4})
    status, window = await sdk.window(cid)
    assert window["segments"] == [{"type": "summary", "from_seq": 1, "to_seq": 3}]

    # getTail({offset, limit})
    for kwargs, seqs in (({}, [1, 2, 3]), ({"offset": 0, "limit": 2}, [2, 3]), ({"offset": 3}, [])):
        status, tail = await sdk.tail(cid, **kwargs)
        assert status == 200
        assert [m["seq"] for m in tail["messages"]] == seqs
    status, tail = await sdk.tail(cid, limit=1)
    only = tail["messages"][0]
    assert only["role"] == "assistant" and only["parts"] == reply["parts"]

    # deleteContext(id)
    assert await sdk.delete_context(cid) == 204

    # the key is required
    anonymous = Sdk(api.session, api.base + "/v1", "wrong")
    assert await anonymous.context("x", budget=1) == 401
