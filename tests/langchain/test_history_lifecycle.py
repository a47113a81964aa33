"""Regressions found by exercising the history as LangChain applications use it."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import weakref
from typing import Any

import httpx
import orjson
import pytest
from conftest import Target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory
from lc_strategies import b64, extras, mimes, urls

from fastpaca_core import Message, ValidationError
from fastpaca_core.formats import from_openai_chat
from langchain_fastpaca import (
    Connection,
    EmbeddedConnection,
    FastpacaChatMessageHistory,
    RemoteConnection,
    from_fastpaca,
    from_fastpaca_messages,
    to_fastpaca,
)

ASKED = [
    HumanMessage("Weather and time in Oslo?"),
    AIMessage(
        "",
        tool_calls=[
            {"name": "weather", "args": {"city": "Oslo"}, "id": "w1"},
            {"name": "clock", "args": {"tz": "CET"}, "id": "t1"},
        ],
    ),
]


def test_clear_while_a_tool_call_waits_for_its_result(target: Target) -> None:
    """An agent stopped between a tool call and its result: ``clear()`` still starts over."""
    with target.connection() as connection:
        history = FastpacaChatMessageHistory("pending-call", connection)
        history.add_messages(ASKED)
        history.clear()
        assert history.messages == []
        history.add_messages([HumanMessage("Never mind. Start over.")])
        assert history.messages == [HumanMessage("Never mind. Start over.")]
        # the tool's result arriving late does not reach the model either
        history.add_messages([ToolMessage("Sunny", tool_call_id="w1", name="weather")])
        assert history.messages == [HumanMessage("Never mind. Start over.")]

        log = list(history.iter_history())
        assert log[:2] == ASKED
        cancelled = [m for m in log[2:4] if isinstance(m, ToolMessage) and m.status == "error"]
        assert {(m.tool_call_id, m.name) for m in cancelled} == {
            ("w1", "weather"),
            ("t1", "clock"),
        }
        assert log[4:] == [
            HumanMessage("Never mind. Start over."),
            ToolMessage("Sunny", tool_call_id="w1", name="weather"),
        ]


async def test_aclear_while_a_tool_call_waits_for_its_result() -> None:
    async with EmbeddedConnection("memory://") as connection:
        history = FastpacaChatMessageHistory("pending-call", connection)
        await history.aadd_messages(ASKED)
        # and a call without an id, which the store pairs by an id of its own
        await history.aadd_messages(
            [AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": None}])]
        )
        await history.aclear()
        assert await history.aget_messages() == []
        log = [m async for m in history.aiter_history()]
        assert [m.type for m in log] == ["human", "ai", "ai", "tool", "tool", "tool"]


# -- closing a connection whose opening failed -------------------------------------------


def test_closing_after_a_failed_opening_raises_nothing() -> None:
    for _ in range(5):  # the failed opening's loop thread may still be stopping: try often
        connection = EmbeddedConnection("nosuch://x")
        with pytest.raises(ValidationError):
            FastpacaChatMessageHistory("never", connection)
        connection.close()  # the opening's error was reported already: nothing to release
        with pytest.raises(RuntimeError, match="closed"):
            connection.open()


async def test_aclosing_after_a_failed_opening_raises_nothing() -> None:
    for _ in range(5):
        connection = EmbeddedConnection("nosuch://x")
        history = FastpacaChatMessageHistory("never", connection)  # in a loop: opened lazily
        with pytest.raises(ValidationError):
            await history.aget_messages()
        await connection.aclose()


class Tracked(FastpacaChatMessageHistory):
    """A history that can be found while it lives, even one whose constructor failed."""

    alive: weakref.WeakSet[Tracked] = weakref.WeakSet()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Tracked.alive.add(self)
        super().__init__(*args, **kwargs)


def _alive() -> list[Tracked]:
    gc.collect()
    return list(Tracked.alive)


def test_a_history_that_could_not_open_its_own_store_leaves_nothing_behind() -> None:
    """Its connection is closed at once: no loop thread, no history kept alive by its error."""
    for _ in range(3):
        try:
            Tracked("never", "nosuch://x")
        except ValidationError as exc:
            assert "nosuch" in str(exc)
        else:
            raise AssertionError("the store URL was accepted")
    assert _alive() == []


# -- images in LangChain's older block shapes reach the other ways in ----------------------

V0_IMAGE = {
    "type": "image",
    "source_type": "base64",
    "data": "iVBORw0KGgo=",
    "mime_type": "image/png",
}
SHORT_IMAGE_URL = {"type": "image_url", "image_url": "https://example.com/cat.png"}


def test_v0_and_shorthand_image_blocks_are_files_the_openai_view_sends(server_url: str) -> None:
    asked = HumanMessage(
        content=[{"type": "text", "text": "What are these?"}, V0_IMAGE, SHORT_IMAGE_URL]
    )
    with RemoteConnection(server_url) as connection:
        history = FastpacaChatMessageHistory("images", connection)
        history.add_messages([asked])
        assert history.messages == [asked]  # LangChain gets back exactly what it wrote
    got = httpx.get(f"{server_url}/v1/contexts/images/context", params={"format": "openai"})
    assert got.status_code == 200
    assert got.json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What are these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
        }
    ]


old_blocks = st.one_of(
    st.builds(
        lambda kind, data, mime, extra: {
            **extra,
            "type": kind,
            "source_type": "base64",
            "data": data,
            **mime,
        },
        st.sampled_from(["image", "audio", "file"]),
        b64,
        st.dictionaries(st.just("mime_type"), mimes, max_size=1),
        extras,
    ),
    st.builds(lambda url, extra: {**extra, "type": "image_url", "image_url": url}, urls, extras),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(old_blocks | st.sampled_from(["x", V0_IMAGE]), max_size=3))
def test_old_block_shapes_round_trip_exactly(content: list[Any]) -> None:
    for message in (HumanMessage(content=content), AIMessage(content=content, id="a")):
        stored = Message.parse(to_fastpaca(message)).to_json()
        assert from_fastpaca(orjson.loads(orjson.dumps(stored))) == [message]


# -- RunnableWithMessageHistory while the window is compacted under it ----------------------

SUMMARY = {"role": "system", "parts": [{"type": "text", "text": "Summary: an earlier chat."}]}


def folding_chain(connection: Connection) -> RunnableWithMessageHistory:
    """Bare messages in and out (no history key); the window is folded during the model call
    from the second call on, as the summariser does when its fold lands at that moment."""

    def model(messages: list[BaseMessage]) -> AIMessage:
        if len(messages) > 1:
            connection.call(lambda: connection.compact("fold", [SUMMARY]))
        return AIMessage(f"Re: {messages[-1].content}")

    async def amodel(messages: list[BaseMessage]) -> AIMessage:
        if len(messages) > 1:
            await connection.acall(lambda: connection.compact("fold", [SUMMARY]))
        return AIMessage(f"Re: {messages[-1].content}")

    return RunnableWithMessageHistory(  # deprecated in langchain-core 1.x, still in use
        RunnableLambda(model, afunc=amodel),
        lambda session_id: FastpacaChatMessageHistory(session_id, connection),
    )


CONFIG: Any = {"configurable": {"session_id": "fold"}}
QUESTIONS = ["one", "two", "three"]
LOGGED = [m for q in QUESTIONS for m in (HumanMessage(q), AIMessage(f"Re: {q}"))]


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
def test_a_window_folded_during_the_model_call_logs_nothing_twice(target: Target) -> None:
    with target.connection() as connection:
        chain = folding_chain(connection)
        for question in QUESTIONS:
            chain.invoke([HumanMessage(question)], CONFIG)
        history = FastpacaChatMessageHistory("fold", connection)
        assert list(history.iter_history()) == LOGGED
        assert history.messages == [SystemMessage("Summary: an earlier chat."), *LOGGED[-2:]]


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
async def test_a_window_folded_during_an_async_model_call_logs_nothing_twice() -> None:
    async with EmbeddedConnection("memory://") as connection:
        chain = folding_chain(connection)
        for question in QUESTIONS:
            await chain.ainvoke([HumanMessage(question)], CONFIG)
        history = FastpacaChatMessageHistory("fold", connection)
        assert [m async for m in history.aiter_history()] == LOGGED


# -- paging the log of a server ---------------------------------------------------------------


def test_pages_larger_than_a_server_serves_are_read_in_its_pages(server_url: str) -> None:
    said = [HumanMessage(f"m{i}") for i in range(1003)]
    with RemoteConnection(server_url) as connection:
        history = FastpacaChatMessageHistory("long", connection)
        history.add_messages(said)
        assert list(history.iter_history(page_size=5000)) == said
        page = history.history(limit=2000)  # "up to limit": the server's page
        assert page.messages == said[:1000] and page.next_after_seq == 1000


# -- file names travel with files -------------------------------------------------------------

PDF = {"type": "file", "base64": "JVBERi0=", "mime_type": "application/pdf"}


def test_a_file_name_reaches_the_openai_view(server_url: str) -> None:
    asked = HumanMessage(
        content=[{"type": "text", "text": "Summarise"}, {**PDF, "filename": "q3.pdf"}]
    )
    with RemoteConnection(server_url) as connection:
        history = FastpacaChatMessageHistory("named", connection)
        history.add_messages([asked])
        assert history.messages == [asked]
    got = httpx.get(f"{server_url}/v1/contexts/named/context", params={"format": "openai"})
    assert got.json()["messages"][0]["content"][1] == {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "q3.pdf"},
    }


def test_a_file_name_the_proxy_stored_reaches_langchain() -> None:
    request = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise"},
                {"type": "file", "file": {"file_data": PDF_URL, "filename": "q3.pdf"}},
            ],
        }
    ]
    stored = [m.to_json() for m in from_openai_chat(request).messages]
    assert from_fastpaca_messages(stored) == [
        HumanMessage(content=[{"type": "text", "text": "Summarise"}, {**PDF, "filename": "q3.pdf"}])
    ]


PDF_URL = "data:application/pdf;base64,JVBERi0="
named_files = st.builds(
    lambda holder, name, extra: {
        **PDF,
        **extra,
        **({holder: {"filename": name}} if holder else {"filename": name}),
    },
    st.sampled_from(["", "extras", "metadata"]),
    st.text(max_size=8),
    extras,
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(named_files, min_size=1, max_size=2))
def test_named_files_round_trip_exactly(content: list[Any]) -> None:
    message = HumanMessage(content=content)
    stored = Message.parse(to_fastpaca(message)).to_json()
    assert from_fastpaca(orjson.loads(orjson.dumps(stored))) == [message]


# -- histories that own their connection: collected, and closed on exit ----------------------


def _ok(messages: list[BaseMessage]) -> AIMessage:
    return AIMessage("ok")


def _loop_threads() -> int:
    return sum(t.name == "fastpaca-EmbeddedConnection" for t in threading.enumerate())


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
async def test_a_history_per_async_call_that_owns_its_store_is_collected(sqlite_url: str) -> None:
    """First used inside LangChain's run, the connection must not keep that run's
    context (whose config holds the history) alive: the history would never be
    collected, and its loop and store threads would pile up."""
    chain = RunnableWithMessageHistory(  # deprecated in langchain-core 1.x, still in use
        RunnableLambda(_ok),
        lambda session_id: Tracked(session_id, sqlite_url),
    )
    threads = _loop_threads()
    for i in range(3):
        await chain.ainvoke([HumanMessage(f"q{i}")], {"configurable": {"session_id": "own"}})
    assert _alive() == []
    for _ in range(100):  # a finalizer that ran on the loop thread lets it end by itself
        if _loop_threads() <= threads:
            break
        await asyncio.sleep(0.05)
    assert _loop_threads() <= threads
    with FastpacaChatMessageHistory("own", sqlite_url) as history:
        assert len(list(history.iter_history())) == 6


EXITING = """
import sys
from langchain_core.messages import HumanMessage
from langchain_fastpaca import EmbeddedConnection, FastpacaChatMessageHistory

owned = FastpacaChatMessageHistory("owned", sys.argv[1])  # closed by nobody but the exit
owned.add_messages([HumanMessage("kept")])
shared = EmbeddedConnection(sys.argv[1])  # never closed either
FastpacaChatMessageHistory("shared", shared).add_messages([HumanMessage("kept too")])
print(len(owned.messages))
"""


def test_open_connections_close_quietly_on_exit(sqlite_url: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", EXITING, sqlite_url], capture_output=True, text=True, timeout=120
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "1\n", "")
    with EmbeddedConnection(sqlite_url) as connection:
        for context_id in ("owned", "shared"):
            assert len(FastpacaChatMessageHistory(context_id, connection).messages) == 1


FORKING = """
import multiprocessing
import sys
from langchain_core.messages import HumanMessage
from langchain_fastpaca import EmbeddedConnection, FastpacaChatMessageHistory

shared = EmbeddedConnection(sys.argv[1])  # opened here, in the parent
FastpacaChatMessageHistory("parent", shared).add_messages([HumanMessage("from the parent")])


def child(queue):
    history = FastpacaChatMessageHistory("child", shared)
    history.add_messages([HumanMessage("from the child")])
    queue.put([m.content for m in history.messages])
    shared.close()


fork = multiprocessing.get_context("fork")
queue = fork.Queue()
worker = fork.Process(target=child, args=(queue,))
worker.start()
worker.join(30)
print(worker.exitcode, queue.get(timeout=5) if worker.exitcode == 0 else None)
worker.kill()
print([m.content for m in FastpacaChatMessageHistory("child", shared).messages])
shared.close()
"""


def test_a_connection_opened_before_fork_works_in_the_child(sqlite_url: str) -> None:
    """As with a web server's or a task queue's worker processes forked after import."""
    run = subprocess.run(
        [sys.executable, "-c", FORKING, sqlite_url], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["0 ['from the child']", "['from the child']"]


# -- a result stored apart from its call still names its tool -----------------------------------


def test_a_result_without_a_name_gets_its_calls_tool_name(target: Target) -> None:
    """As an agent loop stores them: the call with the model's reply, the results
    (``ToolMessage(content, tool_call_id=...)``, no ``name``) with the next call."""
    results = [ToolMessage("Sunny", tool_call_id="w1"), ToolMessage("09:00", tool_call_id="t1")]
    with target.connection() as connection:
        history = FastpacaChatMessageHistory("names", connection)
        history.add_messages(ASKED)
        history.add_messages(results)
        assert history.messages == [*ASKED, *results]  # LangChain reads back what it wrote
        stored = connection.call(lambda: connection.messages("names", 2, 10))
    assert [m["parts"][0]["toolName"] for m in stored] == ["weather", "clock"]
