"""The blocking client: drives the operations of ``_core`` over ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._base import ClientBase, ContextBase, ContextOptions
from ._core import Op, Outcome
from ._stream import SyncEventStream
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

__all__ = ["Client", "Context"]

T = TypeVar("T")


class Client(ClientBase[httpx.BaseTransport]):
    """Blocking Fastpaca client. Use ``with Client(...) as client``."""

    _http: httpx.Client

    def _open(self, transport: httpx.BaseTransport | None, timeout: float) -> None:
        self._http = httpx.Client(transport=transport, timeout=timeout)

    def _run(self, op: Op[T]) -> T:
        outcome: Outcome = None
        while True:
            try:
                step = op.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, float):
                time.sleep(step)
                outcome = None
            else:
                try:
                    outcome = self._http.send(step)
                except httpx.TransportError as exc:
                    outcome = exc

    def context(
        self,
        context_id: str,
        *,
        budget: int | None = None,
        trigger: float | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        create: bool = False,
    ) -> Context:
        """A handle on ``context_id``; ``PUT`` (create or update) only when an option is given.

        ``create=True`` sends the ``PUT`` even without options, creating the
        context with the server's defaults if it does not exist.
        """
        options = ContextOptions(budget, trigger, policy, metadata, create)
        info = None
        if options.send:
            info = self._run(self._api.put_context(context_id, **options.fields))
        return Context(self, context_id, info)

    def get_context(self, context_id: str) -> ContextInfo:
        return self._run(self._api.get_context(context_id))

    def delete_context(self, context_id: str) -> None:
        """Tombstone the context: history stays readable, writes answer 409."""
        self._run(self._api.delete_context(context_id))

    def update_metadata(self, context_id: str, metadata: Mapping[str, Any]) -> ContextInfo:
        """Shallow-merge ``metadata`` into the context's metadata."""
        return self._run(self._api.update_metadata(context_id, metadata))

    def list_contexts(self, *, limit: int | None = None, cursor: str | None = None) -> ContextPage:
        """One page of contexts, most recently updated first."""
        return self._run(self._api.list_contexts(limit, cursor))

    def iter_contexts(self, *, page_size: int | None = None) -> Iterator[ContextInfo]:
        """Every context, most recently updated first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list_contexts(limit=page_size, cursor=cursor)
            yield from page.contexts
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Context(ContextBase[Client]):
    """One context. Writes carry an ``Idempotency-Key`` so retries never duplicate."""

    def append(
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
        return self._client._run(op)

    def append_batch(
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
        return self._client._run(op)

    def context(
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
        return self._client._run(op)

    def compact(
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
        return self._client._run(op)

    def tail(self, *, offset: int | None = None, limit: int | None = None) -> list[MessageDict]:
        """The page ending ``offset`` messages before the newest, oldest first."""
        return self._client._run(self._client._api.tail(self.id, offset, limit))

    def messages(
        self, *, after_seq: int | None = None, limit: int | None = None
    ) -> list[MessageDict]:
        """Up to ``limit`` messages with ``seq > after_seq``, oldest first."""
        return self._client._run(self._client._api.messages(self.id, after_seq, limit))

    def summaries(self, *, limit: int | None = None, cursor: str | None = None) -> SummaryPage:
        """The context's summary records (``summarize`` policy), newest first."""
        return self._client._run(self._client._api.summaries(self.id, limit, cursor))

    def get(self) -> ContextInfo:
        self.info = self._client.get_context(self.id)
        return self.info

    def update_metadata(self, metadata: Mapping[str, Any]) -> ContextInfo:
        self.info = self._client.update_metadata(self.id, metadata)
        return self.info

    def delete(self) -> None:
        self._client.delete_context(self.id)

    def stream(
        self,
        cursor: int | None = None,
        *,
        include_messages: bool = True,
        include_pings: bool = False,
        heartbeat: float | None = 30.0,
        reconnect_timeout: float | None = 60.0,
    ) -> SyncEventStream:
        """Websocket events after version ``cursor`` (default: the current version).

        ``with ctx.stream() as events: for event in events: ...`` (runs its own
        event loop; inside a running one, on a helper thread). A dropped
        connection is tried again for ``reconnect_timeout`` seconds (``None``:
        for ever).
        """
        start = self.get().version if cursor is None else cursor
        stream = self._event_stream(
            start,
            include_messages=include_messages,
            include_pings=include_pings,
            heartbeat=heartbeat,
            reconnect_timeout=reconnect_timeout,
        )
        return SyncEventStream(stream)
