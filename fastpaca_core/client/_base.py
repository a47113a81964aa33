"""What the sync and async clients share besides the operations: settings, handles."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from ..errors import ValidationError
from ._core import DEFAULT_BASE_URL, Api, Config, RetryPolicy, context_path
from ._stream import CursorSource, EventStream
from ._types import ContextInfo, Policy

__all__ = ["ClientBase", "ContextBase", "ContextOptions"]

C = TypeVar("C", bound="ClientBase[Any]")
TransportT = TypeVar("TransportT")


class ClientBase(abc.ABC, Generic[TransportT]):
    """Settings shared by :class:`Client` and :class:`AsyncClient`.

    ``base_url`` is the server root (``http://127.0.0.1:4000``); a trailing
    ``/v1``, as the TypeScript SDK takes it, is accepted too. ``api_key`` is
    sent as ``Authorization: Bearer``. ``max_retries``, ``backoff`` and
    ``max_backoff`` shape the retries (see :class:`RetryPolicy`); ``timeout``
    is per request, in seconds. ``transport`` replaces httpx's own (tests,
    proxies, custom TLS).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        transport: TransportT | None = None,
    ) -> None:
        retry = RetryPolicy(max_retries=max_retries, backoff=backoff, max_backoff=max_backoff)
        self._api = Api(Config.make(base_url, api_key, retry))
        self._timeout = timeout
        self._open(transport, timeout)

    @abc.abstractmethod
    def _open(self, transport: TransportT | None, timeout: float) -> None:
        """Create the transport-specific HTTP client (sync or async)."""

    @property
    def base_url(self) -> str:
        return self._api.config.base_url

    def _stream_url(self, context_id: str) -> str:
        return f"{self.base_url}{context_path(context_id)}/stream"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


class ContextOptions:
    """The options of ``client.context(...)``: sent as ``PUT`` only when one is given."""

    def __init__(
        self,
        budget: int | None,
        trigger: float | None,
        policy: Policy | Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        create: bool,
    ) -> None:
        self.fields: dict[str, Any] = {
            "budget": budget,
            "trigger": trigger,
            "policy": policy,
            "metadata": metadata,
        }
        self.send = create or any(value is not None for value in self.fields.values())


class ContextBase(Generic[C]):
    """A handle on one context. ``info`` is the context object last returned, if any."""

    def __init__(self, client: C, context_id: str, info: ContextInfo | None = None) -> None:
        self._client = client
        self.id = context_id
        self.info = info

    def _event_stream(
        self,
        cursor: CursorSource,
        *,
        include_messages: bool,
        include_pings: bool,
        heartbeat: float | None,
        reconnect_timeout: float | None,
    ) -> EventStream:
        if not callable(cursor) and (
            not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0
        ):
            raise ValidationError("cursor", f"must be a version (an integer >= 0), not {cursor!r}")
        config = self._client._api.config
        return EventStream(
            self._client._stream_url(self.id),
            context_id=self.id,
            headers=config.headers(),
            cursor=cursor,
            retry=config.retry,
            include_messages=include_messages,
            include_pings=include_pings,
            heartbeat=heartbeat,
            connect_timeout=self._client._timeout,
            reconnect_timeout=reconnect_timeout,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"
