"""FastpacaChatMessageHistory on every kind of target: operations, clear, paging, loops."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import Target
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from fastpaca_core import ContextTombstoned, ValidationError
from langchain_fastpaca import (
    ContextOptions,
    EmbeddedConnection,
    FastpacaChatMessageHistory,
    RemoteConnection,
    connect,
)

TURN = [
    HumanMessage("What is 2+2?", id="u1"),
    AIMessage("", id="a1", tool_calls=[{"name": "calc", "args": {"expr": "2+2"}, "id": "c1"}]),
    ToolMessage("4", tool_call_id="c1", name="calc"),
    AIMessage("It is 4.", id="a2"),
]


def test_sync_operations(target: Target) -> None:
    with target.connection() as connection:
        history = FastpacaChatMessageHistory(
            "ops", connection, token_budget=5000, trigger_ratio=0.5, metadata={"user": "ann"}
        )
        assert history.messages == []
        history.add_messages(TURN)
        history.add_messages([])  # nothing to append, no round trip
        assert history.messages == TURN
        history.add_user_message("And 3+3?")
        assert history.messages[-1] == HumanMessage("And 3+3?")

        first = history.history(limit=2)
        assert first.messages == TURN[:2] and first.next_after_seq == 2
        rest = history.history(after_seq=2, limit=10)
        assert rest.messages == [*TURN[2:], HumanMessage("And 3+3?")]
        assert history.history(after_seq=5).next_after_seq is None


async def test_async_operations(target: Target) -> None:
    async with target.connection() as connection:
        history = FastpacaChatMessageHistory("aops", connection)
        assert await history.aget_messages() == []
        await history.aadd_messages(TURN)
        assert await history.aget_messages() == TURN
        page = await history.ahistory(after_seq=1, limit=2)
        assert page.messages == TURN[1:3] and page.next_after_seq == 3
        await history.aclear()
        assert await history.aget_messages() == []
        assert [m async for m in history.aiter_history(page_size=3)] == TURN


def test_clear_empties_the_llm_context_and_keeps_the_log(target: Target) -> None:
    with target.connection() as connection:
        history = FastpacaChatMessageHistory("clear", connection)
        history.clear()  # on an empty context too
        history.add_messages(TURN)
        history.clear()
        assert history.messages == []
        history.add_messages([HumanMessage("Fresh start")])
        assert history.messages == [HumanMessage("Fresh start")]
        assert list(history.iter_history()) == [*TURN, HumanMessage("Fresh start")]
        # a new history object on the same context sees the same thing
        again = FastpacaChatMessageHistory("clear", connection)
        assert again.messages == [HumanMessage("Fresh start")]


def test_options_create_and_update_the_context(target: Target) -> None:
    with target.connection() as connection:
        FastpacaChatMessageHistory("opts", connection, token_budget=1234, metadata={"a": 1})
        FastpacaChatMessageHistory("opts", connection, trigger_ratio=0.5)  # updates only that
        info = connection.call(lambda: _context_info(connection, "opts"))
        assert info == (1234, 0.5, {"a": 1})


async def _context_info(connection: object, context_id: str) -> tuple[int, float, object]:
    if isinstance(connection, EmbeddedConnection):
        ctx = await connection.engine.get_context(context_id)
        return ctx.token_budget, ctx.trigger_ratio, ctx.metadata
    assert isinstance(connection, RemoteConnection)
    got = await connection.client.get_context(context_id)
    return got.token_budget, got.trigger_ratio, got.metadata


def test_the_window_stays_under_budget_and_budget_tokens_cuts_reads(target: Target) -> None:
    with target.connection() as connection:
        history = FastpacaChatMessageHistory("budget", connection, token_budget=120)
        for i in range(30):
            history.add_messages([HumanMessage(f"message number {i} " * 3), AIMessage(f"ok {i}")])
        window = history.messages
        assert 2 <= len(window) < 20
        assert list(history.iter_history(page_size=7))[-len(window) :] == window
        small = FastpacaChatMessageHistory("budget", connection, budget_tokens=30)
        assert 0 < len(small.messages) < len(window)


def test_system_messages_and_delete(target: Target) -> None:
    with target.connection() as connection:
        history = FastpacaChatMessageHistory("gone", connection)
        history.add_messages([SystemMessage("Be brief."), HumanMessage("hi")])
        history.delete()
        with pytest.raises(ContextTombstoned):
            history.add_messages([AIMessage("too late")])
        assert list(history.iter_history()) == [SystemMessage("Be brief."), HumanMessage("hi")]


def test_an_invalid_context_id_is_refused_at_once() -> None:
    with pytest.raises(ValidationError):
        FastpacaChatMessageHistory("not valid!", EmbeddedConnection("memory://"))


# -- the connection's event loop -------------------------------------------------------


async def test_async_calls_are_native_on_the_loop_that_opened_the_connection() -> None:
    async with EmbeddedConnection("memory://") as connection:
        history = FastpacaChatMessageHistory("native", connection)
        before = set(threading.enumerate())
        await history.aadd_messages([HumanMessage("hi")])
        assert await history.aget_messages() == [HumanMessage("hi")]
        started = {t.name for t in set(threading.enumerate()) - before}
        assert "fastpaca-EmbeddedConnection" not in started  # no loop thread of ours
        with pytest.raises(RuntimeError, match="async methods"):
            history.messages  # noqa: B018 - blocking here would deadlock
        with pytest.raises(RuntimeError, match="aclose"):
            connection.close()
        # from another thread the sync API still works, through this loop
        assert await asyncio.to_thread(lambda: history.messages) == [HumanMessage("hi")]


async def test_a_connection_opened_on_its_own_thread_serves_any_loop() -> None:
    with EmbeddedConnection("memory://") as connection:
        history = FastpacaChatMessageHistory("bridged", connection)  # created at once
        await history.aadd_messages([HumanMessage("from a loop")])
        history.add_messages([AIMessage("from sync code")])
        assert await history.aget_messages() == [
            HumanMessage("from a loop"),
            AIMessage("from sync code"),
        ]


def test_a_history_given_a_url_owns_its_connection(sqlite_url: str) -> None:
    with FastpacaChatMessageHistory("owned", sqlite_url) as history:
        history.add_messages(TURN)
    with FastpacaChatMessageHistory("owned", sqlite_url) as history:
        assert history.messages == TURN
    assert history.connection._home is None  # closed
    with pytest.raises(RuntimeError, match="closed"):
        history.messages  # noqa: B018


def test_connect_chooses_by_url(server_url: str) -> None:
    assert isinstance(connect(server_url), RemoteConnection)
    assert isinstance(connect("memory://"), EmbeddedConnection)
    assert connect().url == "sqlite:///fastpaca.db"  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        connect("memory://", api_key="k")


def test_a_failed_opening_is_retried() -> None:
    connection = EmbeddedConnection("nosuch://x")
    with pytest.raises(ValidationError):
        connection.open()
    connection.url = "memory://"
    assert FastpacaChatMessageHistory("retry", connection).messages == []
    connection.close()


class CountingConnection(EmbeddedConnection):
    puts = 0

    async def put_context(self, context_id: str, options: ContextOptions) -> None:
        self.puts += 1
        await super().put_context(context_id, options)


def test_a_history_per_call_puts_the_context_once() -> None:
    with CountingConnection("memory://") as connection:
        for _ in range(5):  # as RunnableWithMessageHistory does, one history per call
            FastpacaChatMessageHistory("per-call", connection, token_budget=900).messages  # noqa: B018
        assert connection.puts == 1
        FastpacaChatMessageHistory("per-call", connection, token_budget=1000)
        assert connection.puts == 2  # other options: put again
        FastpacaChatMessageHistory("per-call", connection).delete()
        history = FastpacaChatMessageHistory("per-call", connection, token_budget=900)
        assert history.messages == []  # a tombstoned context stays readable
        with pytest.raises(ContextTombstoned):
            history.add_user_message("too late")
