"""The async client: drives the operations of ``_core`` over ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._base import ClientBase, ContextBase, ContextOptions
from ._core import Op, Outcome
from ._stream import EventStream
from ._types import (
    AppendResult,
    BatchAppendResult,
    CompactResult,
    ContextInfo,
    ContextPage,
    ContextWindow,
    MessageDict,
    Policy,
    SummaryPage,
    WindowFormat,
)

__all__ = ["AsyncClient", "AsyncContext"]

T = TypeVar("T")


class AsyncClient(ClientBase[httpx.AsyncBaseTransport]):
    """Async Fastpaca client. Use ``async with AsyncClient(...) as client``."""

    _http: httpx.AsyncClient

    def _open(self, transport: httpx.AsyncBaseTransport | None, timeout: float) -> None:
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    async def _run(self, op: Op[T]) -> T:
        outcome: Outcome = None
        while True:
            try:
                step = op.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, float):
                await asyncio.sleep(step)
                outcome = None
            else:
                try:
                    outcome = await self._http.send(step)
                except httpx.TransportError as exc:
                    outcome = exc

    async def context(
        self,
        context_id: str,
        *,
        budget: int | None = None,
        trigger: float | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        create: bool = False,
    ) -> AsyncContext:
        """A handle on ``context_id``; ``PUT`` (create or update) only when an option is given.

        ``create=True`` sends the ``PUT`` even without options, creating the
        context with the server's defaults if it does not exist.
        """
        options = ContextOptions(budget, trigger, policy, metadata, create)
        info = None
        if options.send:
            info = await self._run(self._api.put_context(context_id, **options.fields))
        return AsyncContext(self, context_id, info)

    async def get_context(self, context_id: str) -> ContextInfo:
        return await self._run(self._api.get_context(context_id))

    async def delete_context(self, context_id: str) -> None:
        """Tombstone the context: history stays readable, writes answer 409."""
        await self._run(self._api.delete_context(context_id))

    async def update_metadata(self, context_id: str, metadata: Mapping[str, Any]) -> ContextInfo:
        """Shallow-merge ``metadata`` into the context's metadata."""
        return await self._run(self._api.update_metadata(context_id, metadata))

    async def list_contexts(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> ContextPage:
        """One page of contexts, most recently updated first."""
        return await self._run(self._api.list_contexts(limit, cursor))

    async def iter_contexts(self, *, page_size: int | None = None) -> AsyncIterator[ContextInfo]:
        """Every context, most recently updated first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = await self.list_contexts(limit=page_size, cursor=cursor)
            for info in page.contexts:
                yield info
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncContext(ContextBase[AsyncClient]):
    """One context. Writes carry an ``Idempotency-Key`` so retries never duplicate."""

    async def append(
        self,
        message: Mapping[str, Any],
        *,
        if_version: int | None = None,
        token_count: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append one message (``{"role", "parts", "metadata"?}``)."""
        op = self._client._api.append(
            self.id,
            message,
            if_version=if_version,
            token_count=token_count,
            idempotency_key=idempotency_key,
        )
        return await self._client._run(op)

    async def append_batch(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> BatchAppendResult:
        """Append several messages atomically, with consecutive seqs."""
        op = self._client._api.append_batch(
            self.id, messages, if_version=if_version, idempotency_key=idempotency_key
        )
        return await self._client._run(op)

    async def context(
        self,
        *,
        budget_tokens: int | None = None,
        if_version: int | None = None,
        format: WindowFormat | None = None,
    ) -> ContextWindow:
        """The LLM context (optionally cut to ``budget_tokens``, or converted by ``format``)."""
        op = self._client._api.window(
            self.id, budget_tokens=budget_tokens, if_version=if_version, format=format
        )
        return await self._client._run(op)

    async def compact(
        self,
        replacement: Sequence[Mapping[str, Any]],
        *,
        if_version: int | None = None,
        up_to_seq: int | None = None,
        idempotency_key: str | None = None,
    ) -> CompactResult:
        """Replace the LLM context (or its part covering seqs <= ``up_to_seq``)."""
        op = self._client._api.compact(
            self.id,
            replacement,
            if_version=if_version,
            up_to_seq=up_to_seq,
            idempotency_key=idempotency_key,
        )
        return await self._client._run(op)

    async def tail(
        self, *, offset: int | None = None, limit: int | None = None
    ) -> list[MessageDict]:
        """The page ending ``offset`` messages before the newest, oldest first."""
        return await self._client._run(self._client._api.tail(self.id, offset, limit))

    async def messages(
        self, *, after_seq: int | None = None, limit: int | None = None
    ) -> list[MessageDict]:
        """Up to ``limit`` messages with ``seq > after_seq``, oldest first."""
        return await self._client._run(self._client._api.messages(self.id, after_seq, limit))

    async def summaries(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> SummaryPage:
        """The context's summary records (``summarize`` policy), newest first."""
        return await self._client._run(self._client._api.summaries(self.id, limit, cursor))

    async def get(self) -> ContextInfo:
        self.info = await self._client.get_context(self.id)
        return self.info

    async def update_metadata(self, metadata: Mapping[str, Any]) -> ContextInfo:
        self.info = await self._client.update_metadata(self.id, metadata)
        return self.info

    async def delete(self) -> None:
        await self._client.delete_context(self.id)

    def stream(
        self,
        cursor: int | None = None,
        *,
        include_messages: bool = True,
        include_pings: bool = False,
        heartbeat: float | None = 30.0,
        reconnect_timeout: float | None = 60.0,
    ) -> EventStream:
        """Websocket events after version ``cursor`` (default: the current version).

        ``async with ctx.stream() as events: async for event in events: ...``
        A dropped connection is tried again for ``reconnect_timeout`` seconds
        (``None``: for ever).
        """

        async def current_version() -> int:
            return (await self.get()).version

        return self._event_stream(
            current_version if cursor is None else cursor,
            include_messages=include_messages,
            include_pings=include_pings,
            heartbeat=heartbeat,
            reconnect_timeout=reconnect_timeout,
        )
