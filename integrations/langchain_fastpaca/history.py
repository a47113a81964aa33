"""``FastpacaChatMessageHistory``: a LangChain chat history kept by Fastpaca.

``messages`` is the LLM context (compacted by the context's policy, under its
token budget), which is what ``RunnableWithMessageHistory`` feeds the model;
the full log stays readable through :meth:`~FastpacaChatMessageHistory.history`.
Each operation is written once, as a coroutine; the sync methods run it on
the connection's loop and wait, the async ones await it (see ``connection``).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, ToolMessage

from fastpaca_core.errors import ValidationError
from fastpaca_core.model import validate_context_id
from fastpaca_core.toolcalls import RESULT_TYPE, call_name, is_call_part, parts_refs

from ._loop import running_loop
from .connection import Connection, ContextOptions, connect
from .convert import from_fastpaca_messages, to_fastpaca, to_fastpaca_messages

__all__ = ["FastpacaChatMessageHistory", "HistoryPage"]

CANCELLED = "Cancelled: the conversation was cleared before this tool call's result arrived."


def _parts(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(p) for p in message.get("parts") or [] if isinstance(p, Mapping)]


def _call_names(window: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The tool name of every call part in ``window``, by call id."""
    names: dict[str, str] = {}
    for message in window:
        for part in _parts(message):
            made = part.get("toolCallId")
            if isinstance(made, str) and is_call_part(part):
                names[made] = call_name(part) or ""
    return names


def _open_calls(window: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The tool calls in ``window`` that no later message answers: id -> tool name."""
    names = _call_names(window)
    waiting: dict[str, str] = {}
    for message in window:
        calls, results = parts_refs(_parts(message))
        for answered in results:
            waiting.pop(answered, None)
        waiting.update((call_id, names.get(call_id, "")) for call_id in calls)
    return waiting


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of the log: its messages and the seq to pass as ``after_seq`` next.

    ``next_after_seq`` is ``None`` when the page is empty (the end of the log).
    A stored message written by another way in (the proxy) may read as
    several LangChain messages, so ``messages`` can be longer than ``limit``.
    """

    messages: list[BaseMessage]
    next_after_seq: int | None


class FastpacaChatMessageHistory(BaseChatMessageHistory):
    """Chat history in a Fastpaca context: the full log, and a compacted LLM context.

    ``connection``: a shared :class:`~langchain_fastpaca.Connection`, or a
    target for :func:`~langchain_fastpaca.connect` (a store URL, default
    ``sqlite:///fastpaca.db``, or a server's ``http(s)://`` URL) that this
    history then owns and closes (:meth:`close`, or when it is collected).
    Share one connection between histories where you can: it holds the
    store's pool or the HTTP client.

    ``token_budget``, ``trigger_ratio``, ``policy`` and ``metadata`` configure
    the context, which is created or updated here (on the first call instead,
    when constructed inside a running event loop). ``budget_tokens`` cuts what
    :attr:`messages` returns to that many tokens, at read time only.

    ``clear()`` empties the LLM context (a compaction to nothing) and keeps the
    log: the next model call starts fresh, the conversation stays on record.
    Tool calls still waiting for their results are first answered in the log
    by a cancelled ``ToolMessage`` (``status="error"``), as a compaction may
    not take away a call whose result is still to come.
    ``delete()`` tombstones the context.
    """

    def __init__(
        self,
        context_id: str,
        connection: Connection | str | None = None,
        *,
        token_budget: int | None = None,
        trigger_ratio: float | None = None,
        policy: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self.context_id = validate_context_id(context_id, "context_id")
        if isinstance(connection, Connection):
            self.connection = connection
            self._owned = False
        else:
            self.connection = connect(connection)
            self._owned = True
            weakref.finalize(self, self.connection.close)
        self.options = ContextOptions(token_budget, trigger_ratio, policy, metadata)
        self.budget_tokens = budget_tokens
        # the first and the latest window read since this history last wrote
        self._reads: tuple[list[BaseMessage], list[BaseMessage]] | None = None
        if running_loop() is None:
            try:
                self.connection.call(self._ensure)
            except BaseException:
                self.close()  # a connection of its own is of no use to anyone now
                raise

    def __repr__(self) -> str:
        return f"FastpacaChatMessageHistory({self.context_id!r}, {self.connection!r})"

    # -- operations, each once, run on the connection's loop ---------------------------

    async def _ensure(self) -> None:
        await self.connection.ensure_context(self.context_id, self.options)

    async def _window(self) -> list[BaseMessage]:
        await self._ensure()
        stored = await self.connection.window(self.context_id, self.budget_tokens)
        window = from_fastpaca_messages(stored)
        first = list(window) if self._reads is None else self._reads[0]
        self._reads = (first, list(window))
        return window

    def _new(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        """``messages`` less what ``RunnableWithMessageHistory`` sends again.

        Without ``history_messages_key`` it reads the history before the model
        call and again after it, and stores its input messages past the
        length of the second read. When the window shrank in between (the
        summariser folded it, another client compacted it), that slice starts
        with messages of the first read that are stored already: those are
        left out, so nothing is logged twice.
        """
        batch = list(messages)
        reads, self._reads = self._reads, None
        if reads is not None:
            first, latest = reads
            again = first[len(latest) :]
            if again and batch[: len(again)] == again:
                return batch[len(again) :]
        return batch

    async def _append(self, stored: list[dict[str, Any]]) -> None:
        await self._ensure()
        await self._name_results(stored)
        await self.connection.append(self.context_id, stored)

    async def _name_results(self, stored: list[dict[str, Any]]) -> None:
        """Give results whose ``ToolMessage`` has no ``name`` their call's tool name.

        A call made in the same batch named them already; one made earlier is
        in the window (a call waiting for its result is never compacted away).
        """
        unnamed = [
            part
            for message in stored
            for part in message["parts"]
            if part.get("type") == RESULT_TYPE and not part.get("toolName")
        ]
        if not unnamed:
            return
        names = _call_names(await self.connection.window(self.context_id, None))
        for part in unnamed:
            part["toolName"] = names.get(part["toolCallId"], "")

    async def _clear(self) -> None:
        self._reads = None
        await self._ensure()
        try:
            await self.connection.compact(self.context_id, [])
        except ValidationError:
            # A tool call still waiting for its result cannot be compacted away
            # (its result would arrive alone): record it as cancelled, then clear.
            window = await self.connection.window(self.context_id, None)
            waiting = _open_calls(window)
            if not waiting:
                raise
            results = [
                to_fastpaca(ToolMessage(CANCELLED, tool_call_id=i, name=n or None, status="error"))
                for i, n in waiting.items()
            ]
            await self.connection.append(self.context_id, results)
            await self.connection.compact(self.context_id, [])

    async def _page(self, after_seq: int, limit: int) -> HistoryPage:
        await self._ensure()
        rows = await self.connection.messages(self.context_id, after_seq, limit)
        last = rows[-1].get("seq") if rows else None
        return HistoryPage(from_fastpaca_messages(rows), last if isinstance(last, int) else None)

    async def _delete(self) -> None:
        await self.connection.delete(self.context_id)

    # -- BaseChatMessageHistory -------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The LLM context as LangChain messages: what the model should see."""
        return self.connection.call(self._window)

    async def aget_messages(self) -> list[BaseMessage]:
        return await self.connection.acall(self._window)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` atomically, in one round trip (two when a ``ToolMessage``
        without ``name`` answers a call of an earlier batch: the window names its tool)."""
        messages = self._new(messages)
        if messages:
            stored = to_fastpaca_messages(messages)
            self.connection.call(lambda: self._append(stored))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        messages = self._new(messages)
        if messages:
            stored = to_fastpaca_messages(messages)
            await self.connection.acall(lambda: self._append(stored))

    def clear(self) -> None:
        """Empty the LLM context; the log keeps every message (see the class doc)."""
        self.connection.call(self._clear)

    async def aclear(self) -> None:
        await self.connection.acall(self._clear)

    # -- the full log ---------------------------------------------------------------

    def history(self, *, after_seq: int = 0, limit: int = 100) -> HistoryPage:
        """Up to ``limit`` log messages with ``seq > after_seq``, oldest first."""
        return self.connection.call(lambda: self._page(after_seq, limit))

    async def ahistory(self, *, after_seq: int = 0, limit: int = 100) -> HistoryPage:
        return await self.connection.acall(lambda: self._page(after_seq, limit))

    def iter_history(self, *, page_size: int = 100) -> Iterator[BaseMessage]:
        """Every message of the log, oldest first, fetched a page at a time."""
        page = self.history(limit=page_size)
        while page.next_after_seq is not None:
            yield from page.messages
            page = self.history(after_seq=page.next_after_seq, limit=page_size)

    async def aiter_history(self, *, page_size: int = 100) -> AsyncIterator[BaseMessage]:
        page = await self.ahistory(limit=page_size)
        while page.next_after_seq is not None:
            for message in page.messages:
                yield message
            page = await self.ahistory(after_seq=page.next_after_seq, limit=page_size)

    # -- the context ------------------------------------------------------------------

    def delete(self) -> None:
        """Tombstone the context: the log stays readable, writes are refused."""
        self.connection.call(self._delete)

    async def adelete(self) -> None:
        await self.connection.acall(self._delete)

    def close(self) -> None:
        """Close the connection if this history owns it (it was given a URL)."""
        if self._owned:
            self.connection.close()

    async def aclose(self) -> None:
        if self._owned:
            await self.connection.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
