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
from langchain_core.messages import BaseMessage

from fastpaca_core.model import validate_context_id

from ._loop import running_loop
from .connection import Connection, ContextOptions, connect
from .convert import from_fastpaca_messages, to_fastpaca_messages

__all__ = ["FastpacaChatMessageHistory", "HistoryPage"]


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
        if running_loop() is None:
            self.connection.call(self._ensure)

    def __repr__(self) -> str:
        return f"FastpacaChatMessageHistory({self.context_id!r}, {self.connection!r})"

    # -- operations, each once, run on the connection's loop ---------------------------

    async def _ensure(self) -> None:
        await self.connection.ensure_context(self.context_id, self.options)

    async def _window(self) -> list[BaseMessage]:
        await self._ensure()
        stored = await self.connection.window(self.context_id, self.budget_tokens)
        return from_fastpaca_messages(stored)

    async def _append(self, stored: list[dict[str, Any]]) -> None:
        await self._ensure()
        await self.connection.append(self.context_id, stored)

    async def _clear(self) -> None:
        await self._ensure()
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
        """Append ``messages`` atomically, in one round trip."""
        if messages:
            stored = to_fastpaca_messages(messages)
            self.connection.call(lambda: self._append(stored))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
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
