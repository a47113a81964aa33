"""Every client method against the real server, for ``Client`` and ``AsyncClient`` alike.

Each scenario is written once and run with both clients (``done`` awaits what
the async client returns); the server runs on its own thread and loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from fastpaca_core.client import (
    AsyncClient,
    BatchAppendResult,
    Client,
    ConnectionFailed,
    ContextInfo,
    ContextNotFound,
    ContextTombstoned,
    ContextWindow,
    IdempotencyKeyReused,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthorized,
    ValidationError,
    VersionConflict,
)

from .conftest import Server
from .helpers import done, text

AnyClient = Client | AsyncClient
MakeClient = Callable[..., AnyClient]


@pytest.fixture(params=["sync", "async"])
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[MakeClient]:
    made: list[AnyClient] = []

    def make(url: str, **options: Any) -> AnyClient:
        options.setdefault("backoff", 0.01)
        client: AnyClient = (Client if request.param == "sync" else AsyncClient)(url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        if isinstance(client, Client):
            client.close()
        else:
            await client.aclose()


async def collect(client: AnyClient, page_size: int) -> list[ContextInfo]:
    if isinstance(client, Client):
        return list(client.iter_contexts(page_size=page_size))
    return [info async for info in client.iter_contexts(page_size=page_size)]


async def test_context_lifecycle(server: Server, make_client: MakeClient, cid: str) -> None:
    client = make_client(server.url)
    ctx = await done(client.context(cid))  # no option: no request
    assert ctx.info is None
    with pytest.raises(ContextNotFound) as missing:
        await done(ctx.get())
    assert missing.value.context_id == cid and missing.value.status == 404

    policy = {"strategy": "manual", "config": {}}
    ctx = await done(client.context(cid, budget=1000, policy=policy, metadata={"a": 1}))
    assert ctx.info.token_budget == 1000 and ctx.info.policy == policy
    assert ctx.info.trigger_ratio == 0.7 and ctx.info.metadata == {"a": 1}
    assert ctx.info.status == "active" and ctx.info.version == 0 and ctx.info.last_seq == 0

    # only the option given changes; absent ones are not sent as null
    again = await done(client.context(cid, trigger=0.5))
    assert again.info.trigger_ratio == 0.5 and again.info.token_budget == 1000
    assert again.info.metadata == {"a": 1} and again.info.policy == policy

    merged = await done(ctx.update_metadata({"b": 2}))
    assert merged.metadata == {"a": 1, "b": 2} and ctx.info == merged
    assert (await done(client.update_metadata(cid, {"a": 3}))).metadata == {"a": 3, "b": 2}
    assert (await done(client.get_context(cid))).metadata == {"a": 3, "b": 2}

    created = await done(client.context(f"{cid}-d", create=True))
    assert created.info.token_budget == 8000 and created.info.policy["strategy"] == "last_n"

    await done(ctx.append(text("user", "kept")))
    await done(client.delete_context(cid))
    info = await done(ctx.get())
    assert info.tombstoned and info.status == "tombstoned"
    with pytest.raises(ContextTombstoned) as gone:
        await done(ctx.append(text("user", "too late")))
    assert gone.value.context_id == cid and gone.value.code == "context_tombstoned"
    with pytest.raises(ContextTombstoned):
        await done(ctx.compact([text("system", "summary")]))
    assert [m["parts"][0]["text"] for m in await done(ctx.tail())] == ["kept"]
    await done(created.delete())
    assert (await done(created.get())).tombstoned


async def test_append_and_read_the_log(server: Server, make_client: MakeClient, cid: str) -> None:
    client = make_client(server.url)
    ctx = await done(client.context(cid, budget=10_000))
    first = await done(ctx.append(text("user", "hello"), token_count=7))
    assert (first.seq, first.version, first.token_estimate) == (1, 1, 7)
    counted = await done(ctx.append(text("assistant", "hi there", metadata={"m": 1})))
    assert counted.seq == 2 and counted.token_estimate > 0

    batch = await done(ctx.append_batch([text("user", f"b{i}") for i in range(3)], if_version=2))
    assert isinstance(batch, BatchAppendResult)
    assert batch.version == 5 and batch.seqs == [3, 4, 5]
    assert all(m.token_estimate > 0 for m in batch.messages)

    tail = await done(ctx.tail(limit=2))
    assert [m["seq"] for m in tail] == [4, 5]
    assert [m["seq"] for m in await done(ctx.tail(offset=2, limit=2))] == [2, 3]
    assert await done(ctx.tail(offset=5)) == []
    log = await done(ctx.messages())
    assert [m["seq"] for m in log] == [1, 2, 3, 4, 5]
    assert log[0]["token_count"] == 7 and log[1]["metadata"] == {"m": 1}
    assert log[0]["inserted_at"].endswith("Z")
    assert [m["seq"] for m in await done(ctx.messages(after_seq=1, limit=2))] == [2, 3]
    assert await done(ctx.messages(after_seq=5)) == []

    window = await done(ctx.context())
    assert isinstance(window, ContextWindow)
    assert window.version == 5 and len(window.messages) == 5
    assert window.segments == [{"type": "live", "from_seq": 1, "to_seq": 5}]
    assert window.used_tokens == sum(m["token_count"] for m in log)
    assert window.needs_compaction is False
    small = await done(ctx.context(budget_tokens=window.used_tokens - 7))
    assert small.used_tokens < window.used_tokens and small.messages[-1]["seq"] == 5

    openai = await done(ctx.context(format="openai"))
    assert openai.format == "openai" and openai.version == 5
    assert openai.messages[0] == {"role": "user", "content": "hello"}
    await done(ctx.compact([text("system", "be brief"), *log[1:]]))
    anthropic = await done(ctx.context(format="anthropic"))
    assert anthropic.format == "anthropic" and anthropic.system
    assert all(m["role"] != "system" for m in anthropic.messages)


async def test_version_conflicts_carry_expected_and_found(
    server: Server, make_client: MakeClient, cid: str
) -> None:
    client = make_client(server.url)
    ctx = await done(client.context(cid, create=True))
    await done(ctx.append(text("user", "one"), if_version=0))
    with pytest.raises(VersionConflict) as append_conflict:
        await done(ctx.append(text("user", "two"), if_version=0))
    assert (append_conflict.value.expected, append_conflict.value.found) == (0, 1)
    assert append_conflict.value.status == 409
    with pytest.raises(VersionConflict) as read_conflict:
        await done(ctx.context(if_version=7))
    assert (read_conflict.value.expected, read_conflict.value.found) == (7, 1)
    with pytest.raises(VersionConflict):
        await done(ctx.compact([text("system", "s")], if_version=3))
    assert len(await done(ctx.messages())) == 1


async def test_validation_errors_name_the_field(
    server: Server, make_client: MakeClient, cid: str
) -> None:
    client = make_client(server.url)
    ctx = await done(client.context(cid, create=True))
    with pytest.raises(ValidationError) as bad:
        await done(ctx.append({"role": "robot", "parts": []}))
    assert bad.value.field == "message.role" and bad.value.status == 400
    with pytest.raises(ValidationError):
        await done(client.context("not/valid id", create=True))
    with pytest.raises(ValidationError):
        await done(client.context(cid, budget=-1))
    with pytest.raises(PayloadTooLarge) as too_large:  # the server takes 1 MiB by default
        await done(ctx.append(text("user", "x" * (1024 * 1024 + 1))))
    assert too_large.value.status == 413 and too_large.value.code == "payload_too_large"


async def test_compaction(server: Server, make_client: MakeClient, cid: str) -> None:
    client = make_client(server.url)
    ctx = await done(client.context(cid, policy={"strategy": "manual", "config": {}}))
    result = await done(ctx.append_batch([text("user", f"m{i}") for i in range(4)]))
    partial = await done(ctx.compact([text("system", "early summary")], up_to_seq=2))
    assert partial.version == result.version + 1
    window = await done(ctx.context())
    assert window.segments == [
        {"type": "summary", "from_seq": 1, "to_seq": 2},
        {"type": "live", "from_seq": 3, "to_seq": 4},
    ]
    assert window.messages[0]["parts"][0]["text"] == "early summary"
    full = await done(ctx.compact([text("system", "all of it")], if_version=partial.version))
    window = await done(ctx.context())
    assert window.version == full.version and len(window.messages) == 1
    assert window.segments == [{"type": "summary", "from_seq": 1, "to_seq": 4}]
    assert len(await done(ctx.messages())) == 4  # the log is untouched


async def test_idempotency_keys(server: Server, make_client: MakeClient, cid: str) -> None:
    client = make_client(server.url)
    ctx = await done(client.context(cid, create=True))
    message = text("user", "once")
    first = await done(ctx.append(message, idempotency_key="key-1"))
    again = await done(ctx.append(message, idempotency_key="key-1"))
    assert again == first
    with pytest.raises(IdempotencyKeyReused) as reused:
        await done(ctx.append(text("user", "other"), idempotency_key="key-1"))
    assert reused.value.key == "key-1" and reused.value.status == 422
    # automatic keys are fresh per call: two calls are two messages
    await done(ctx.append(message))
    await done(ctx.append(message))
    assert [m["seq"] for m in await done(ctx.messages())] == [1, 2, 3]


async def test_listing_iterates_every_page(
    server: Server, make_client: MakeClient, cid: str
) -> None:
    client = make_client(server.url)
    ids = [f"{cid}-{i}" for i in range(5)]
    for context_id in ids:
        await done(client.context(context_id, create=True))
    page = await done(client.list_contexts(limit=2))
    assert [c.id for c in page.contexts] == ids[::-1][:2] and page.next_cursor
    rest = await done(client.list_contexts(limit=10, cursor=page.next_cursor))
    assert [c.id for c in rest.contexts] == ids[::-1][2:] and rest.next_cursor is None
    assert [c.id for c in await collect(client, 2)] == ids[::-1]


async def test_dropped_response_is_retried_and_stored_once(
    server: Server, make_client: MakeClient, cid: str
) -> None:
    client = make_client(server.proxy_url)
    ctx = await done(client.context(cid, create=True))
    server.inject("drop_response")
    result = await done(ctx.append(text("user", "exactly once")))
    assert (result.seq, result.version) == (1, 1)
    server.inject("drop_response")
    batch = await done(ctx.append_batch([text("user", "b1"), text("user", "b2")]))
    assert batch.seqs == [2, 3]
    server.inject("drop_response")
    compacted = await done(ctx.compact([text("system", "summary")]))
    assert compacted.version == 4
    assert not server.proxy.faults
    log = await done(ctx.messages())
    assert [m["parts"][0]["text"] for m in log] == ["exactly once", "b1", "b2"]
    assert (await done(ctx.get())).version == 4  # the compaction applied once too

    # the fault is real: without retries the answer is lost, though the server stored it
    no_retries = make_client(server.proxy_url, max_retries=0)
    server.inject("drop_response")
    with pytest.raises(ConnectionFailed):
        await done((await done(no_retries.context(cid))).append(text("user", "unanswered")))
    assert len(await done(ctx.messages())) == 4


async def test_503_is_retried_then_surfaces(
    server: Server, make_client: MakeClient, cid: str
) -> None:
    client = make_client(server.proxy_url, max_retries=2)
    ctx = await done(client.context(cid, create=True))
    server.inject("503", "503")
    assert (await done(ctx.append(text("user", "after two 503s")))).seq == 1
    assert not server.proxy.faults
    server.inject("503", "503", "503")
    with pytest.raises(StoreUnavailable) as unavailable:
        await done(ctx.append(text("user", "never stored")))
    assert unavailable.value.status == 503
    assert len(await done(ctx.messages())) == 1


async def test_api_key(secured_server: Server, make_client: MakeClient, cid: str) -> None:
    anonymous = make_client(secured_server.url)
    with pytest.raises(Unauthorized) as refused:
        await done(anonymous.context(cid, create=True))
    assert refused.value.status == 401
    wrong = make_client(secured_server.url, api_key="nope")
    with pytest.raises(Unauthorized):
        await done(wrong.get_context(cid))
    client = make_client(f"{secured_server.url}/v1", api_key="test-key")
    ctx = await done(client.context(cid, create=True))
    assert (await done(ctx.append(text("user", "authorised")))).seq == 1
    if isinstance(wrong, AsyncClient):  # the event stream's handshake: the same refusal
        with pytest.raises(Unauthorized) as streamed:
            async with (await wrong.context(cid)).stream(cursor=0) as events:
                await events.__anext__()
        assert str(streamed.value) == str(refused.value) == "Missing or invalid API key"


@pytest.mark.parametrize("dots", [".", ".."])
async def test_ids_made_of_dots_reach_their_own_context(
    server: Server, make_client: MakeClient, dots: str
) -> None:
    """``.`` and ``..`` are valid ids; left unencoded in the URL they would be
    resolved as path segments and reach another route."""
    client = make_client(server.url)
    ctx = await done(client.context(dots, budget=10_000))
    assert ctx.id == dots
    assert (await done(ctx.append(text("user", "dotted")))).seq == 1
    assert [m["parts"][0]["text"] for m in await done(ctx.tail())] == ["dotted"]
    assert [m["seq"] for m in await done(ctx.messages())] == [1]
    assert len((await done(ctx.context())).messages) == 1
    assert (await done(client.get_context(dots))).id == dots
    other = await done(client.context("context", budget=10_000))  # what "." + "/context" would hit
    assert await done(other.tail()) == []


async def test_numbers_json_cannot_carry_are_refused(
    server: Server, make_client: MakeClient, cid: str
) -> None:
    client = make_client(server.url)
    with pytest.raises(ValidationError, match="nan"):
        await done(client.context(cid, trigger=float("nan")))
    ctx = await done(client.context(cid, budget=10_000))
    with pytest.raises(ValidationError, match="inf"):
        await done(ctx.append(text("user", "x", metadata={"score": float("inf")})))
    assert await done(ctx.tail()) == []  # nothing was sent


async def test_arguments_of_the_wrong_shape_are_refused_before_sending(
    server: Server, make_client: MakeClient, cid: str
) -> None:
    client = make_client(server.url)
    ctx = await done(client.context(cid, budget=10_000))
    bad: list[tuple[str, Callable[[], Any]]] = [
        ("message", lambda: ctx.append([text("user", "a")])),  # type: ignore[arg-type]
        ("message", lambda: ctx.append("hello")),  # type: ignore[arg-type]
        ("messages", lambda: ctx.append_batch(text("user", "a"))),  # a mapping, not a list
        ("messages", lambda: ctx.append_batch(["hello"])),  # type: ignore[list-item]
        ("replacement", lambda: ctx.compact("summary")),  # type: ignore[arg-type]
        ("metadata", lambda: ctx.update_metadata(["k", "v"])),  # type: ignore[arg-type]
        ("context_id", lambda: client.get_context("")),
        ("context_id", lambda: client.get_context(7)),  # type: ignore[arg-type]
    ]
    for field, call in bad:
        with pytest.raises(ValidationError) as raised:
            await done(call())
        assert raised.value.field == field
    assert await done(ctx.tail()) == []  # nothing was stored
