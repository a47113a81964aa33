"""The client's logic, written once, with no I/O of its own.

Every operation is a generator (an :data:`Op`): it yields an
``httpx.Request`` and is sent back the ``httpx.Response`` (or the
``httpx.TransportError`` that sending raised), or yields a ``float`` and is
sent ``None`` after the driver slept that many seconds; it returns the parsed
result. Retries, backoff, idempotency keys, request building, error mapping
and response parsing all live here. :class:`~fastpaca_core.client.Client` and
:class:`~fastpaca_core.client.AsyncClient` only drive these generators with
their own transport (``httpx.Client`` + ``time.sleep``, or
``httpx.AsyncClient`` + ``asyncio.sleep``).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from ..errors import ValidationError
from ..jsonutil import JSONError, dumps, loads
from ._errors import ApiError, ConnectionFailed, error_from_response
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

__all__ = ["DEFAULT_BASE_URL", "Api", "Config", "Op", "Outcome", "RetryPolicy", "Step"]

DEFAULT_BASE_URL = "http://127.0.0.1:4000"
RETRY_STATUSES = frozenset({502, 503, 504})
_SCHEMES = ("http://", "https://")
# the longest Retry-After waited for (the OpenAI SDK's bound too); a longer one
# is raised at once, its value in the error, rather than blocking for it
MAX_RETRY_AFTER = 120.0

T = TypeVar("T")
Step = httpx.Request | float
Outcome = httpx.Response | httpx.TransportError | None
Op = Generator[Step, Outcome, T]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: ``backoff * 2**attempt``, capped, times 0.5-1."""

    max_retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0))


@dataclass(frozen=True, slots=True)
class Config:
    base_url: str
    api_key: str | None
    retry: RetryPolicy

    @classmethod
    def make(cls, base_url: str, api_key: str | None, retry: RetryPolicy) -> Config:
        """``base_url`` is the server root; a trailing ``/v1`` (as the TS SDK takes) is dropped."""
        if not isinstance(base_url, str) or not base_url.lower().startswith(_SCHEMES):
            # httpx would refuse it only when sending, and as a connection error
            raise ValidationError(
                "base_url", f"must start with http:// or https:// (got {base_url!r})"
            )
        if api_key is not None and not _header_safe(api_key):
            # the key is not echoed; httpx would refuse the header only when
            # sending, as a connection error retried until the client gives up
            raise ValidationError(
                "api_key",
                "must be printable ASCII with no line break (a key read from a file "
                "keeps its trailing newline: strip it)",
            )
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return cls(base, api_key, retry)

    def headers(self) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers


def _header_safe(value: object) -> bool:
    return isinstance(value, str) and all(" " <= char <= "~" for char in value)


def new_key() -> str:
    return str(uuid.uuid4())


def _check_finite(body: Any) -> None:
    """Refuse NaN and infinities, which JSON cannot hold (orjson would send them
    as ``null``, so a ``trigger_ratio`` of NaN would silently be left out)."""
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("body", f"holds {value!r}, which JSON cannot carry")
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def context_path(context_id: str) -> str:
    """``/v1/contexts/{id}``, the id percent-encoded; the ids ``.`` and ``..``
    (valid ones) with their dots encoded too, or the URL would resolve them
    as path segments and reach another route."""
    if not isinstance(context_id, str) or not context_id:
        raise ValidationError("context_id", "must be a non-empty string")
    encoded = quote(context_id, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return f"/v1/contexts/{encoded}"


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), when present."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return loads(response.content)
    except JSONError:
        return None


def _unexpected(request: httpx.Request, response: httpx.Response, what: str) -> ApiError:
    """A success or a redirect that is not this API's answer: the base URL points
    at another server (the wrong port, a load balancer redirecting to https, a
    path prefix missing). A clear error, never a TypeError from the parsing,
    and never a silent success (a DELETE answered by a redirect deleted nothing)."""
    return ApiError(
        response.status_code,
        "unexpected_redirect" if response.is_redirect else "unexpected_response",
        f"{request.method} {request.url.path}: the server answered "
        f"{response.status_code} {what}; base_url must point at a Fastpaca server",
    )


def _success(request: httpx.Request, response: httpx.Response, parse: Callable[[Any], T]) -> T:
    """The parsed body of a 2xx answer (a 3xx is not one: requests are sent
    without following redirects, which would turn a POST into a GET)."""
    if response.is_redirect or response.status_code >= 300:
        location = response.headers.get("location", "nowhere")
        raise _unexpected(request, response, f"redirecting to {location}")
    data = _json(response)
    if data is None and response.content:
        kind = response.headers.get("content-type", "no content type")
        raise _unexpected(request, response, f"with a body that is not JSON ({kind})")
    try:
        return parse(data)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise _unexpected(request, response, f"with JSON of another shape ({exc!r})") from exc


def _nothing(data: Any) -> None:
    """DELETE answers 204, with nothing to read."""


def _message_list(data: Any) -> list[MessageDict]:
    messages = data["messages"]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise TypeError("'messages' is not a list of objects")
    return messages


def _object(value: object, field: str) -> dict[str, Any]:
    """``value`` as a dict to send; anything but a mapping is refused here."""
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be an object (a mapping), not {type(value).__name__}")
    return dict(value)


def _objects(values: object, field: str) -> list[dict[str, Any]]:
    """A list of objects to send: ``values`` must be a list (any iterable but a
    mapping or a string) of mappings."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise ValidationError(field, "must be a list of objects")
    return [_object(value, field) for value in values]


def _message(message: Mapping[str, Any], token_count: int | None) -> dict[str, Any]:
    out = _object(message, "message")
    if token_count is not None:
        out["token_count"] = token_count
    return out


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that are not None: absent options are omitted, never sent as null."""
    return {name: value for name, value in fields.items() if value is not None}


class Api:
    """One generator per endpoint; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._headers = config.headers()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        context_id: str | None = None,
        idempotency_key: str | None = None,
        parse: Callable[[Any], T],
    ) -> Op[T]:
        """One request, retried while that is safe; returns ``parse`` of the
        decoded JSON body.

        Retried: connection errors and 502/503/504 for requests that are safe to
        repeat (every method but POST, and POSTs with an ``Idempotency-Key``),
        and 429 for every request; ``Retry-After`` is honoured.
        """
        headers = dict(self._headers)
        content: bytes | None = None
        if body is not None:
            try:  # first: it refuses a cycle, which the walk would not end
                content = dumps(body)
            except TypeError as exc:  # a set, a key that is not a string, a 65-bit int
                raise ValidationError("body", f"is not JSON-serialisable ({exc})") from exc
            _check_finite(body)
            headers["content-type"] = "application/json"
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        request = httpx.Request(
            method, self.config.base_url + path, params=query, content=content, headers=headers
        )
        retry = self.config.retry
        repeatable = method != "POST" or idempotency_key is not None
        attempt = 0
        while True:
            outcome = yield request
            if isinstance(outcome, httpx.Response):
                status = outcome.status_code
                if status < 400:
                    return _success(request, outcome, parse)
                wait = retry_after(outcome)
                retryable = status == 429 or (repeatable and status in RETRY_STATUSES)
                too_long = wait is not None and wait > MAX_RETRY_AFTER
                if not retryable or too_long or attempt >= retry.max_retries:
                    raise error_from_response(
                        status,
                        _json(outcome),
                        context_id=context_id,
                        idempotency_key=idempotency_key,
                        retry_after=wait,
                    )
                delay = retry.delay(attempt) if wait is None else wait
            else:
                if outcome is None:
                    raise RuntimeError("the driver sent no outcome for a request")
                if not repeatable or attempt >= retry.max_retries:
                    raise ConnectionFailed(
                        f"{method} {request.url.path}: {type(outcome).__name__}: {outcome}"
                    ) from outcome
                delay = retry.delay(attempt)
            attempt += 1
            yield delay

    # -- contexts ---------------------------------------------------------------

    def put_context(
        self,
        context_id: str,
        *,
        budget: int | None = None,
        trigger: float | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Op[ContextInfo]:
        body = _present(
            token_budget=budget,
            trigger_ratio=trigger,
            policy=None if policy is None else dict(policy),
            metadata=None if metadata is None else _object(metadata, "metadata"),
        )
        return (
            yield from self.call(
                "PUT",
                context_path(context_id),
                body=body,
                context_id=context_id,
                parse=ContextInfo.from_json,
            )
        )

    def get_context(self, context_id: str) -> Op[ContextInfo]:
        path = context_path(context_id)
        return (
            yield from self.call("GET", path, context_id=context_id, parse=ContextInfo.from_json)
        )

    def delete_context(self, context_id: str) -> Op[None]:
        path = context_path(context_id)
        yield from self.call("DELETE", path, context_id=context_id, parse=_nothing)

    def update_metadata(self, context_id: str, metadata: Mapping[str, Any]) -> Op[ContextInfo]:
        path = f"{context_path(context_id)}/metadata"
        body = {"metadata": _object(metadata, "metadata")}
        return (
            yield from self.call(
                "PATCH", path, body=body, context_id=context_id, parse=ContextInfo.from_json
            )
        )

    def list_contexts(self, limit: int | None, cursor: str | None) -> Op[ContextPage]:
        params = {"limit": limit, "cursor": cursor}
        return (
            yield from self.call("GET", "/v1/contexts", params=params, parse=ContextPage.from_json)
        )

    # -- the log ------------------------------------------------------------------

    def append(
        self,
        context_id: str,
        message: Mapping[str, Any],
        *,
        if_version: int | None = None,
        token_count: int | None = None,
        idempotency_key: str | None = None,
    ) -> Op[AppendResult]:
        body = _present(message=_message(message, token_count), if_version=if_version)
        return (
            yield from self.call(
                "POST",
                f"{context_path(context_id)}/messages",
                body=body,
                context_id=context_id,
                idempotency_key=idempotency_key or new_key(),
                parse=AppendResult.from_json,
            )
        )

    def append_batch(
        self,
        context_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Op[BatchAppendResult]:
        body = _present(messages=_objects(messages, "messages"), if_version=if_version)
        return (
            yield from self.call(
                "POST",
                f"{context_path(context_id)}/messages",
                body=body,
                context_id=context_id,
                idempotency_key=idempotency_key or new_key(),
                parse=BatchAppendResult.from_json,
            )
        )

    def tail(self, context_id: str, offset: int | None, limit: int | None) -> Op[list[MessageDict]]:
        params = {"offset": offset, "limit": limit}
        path = f"{context_path(context_id)}/tail"
        return (
            yield from self.call(
                "GET", path, params=params, context_id=context_id, parse=_message_list
            )
        )

    def messages(
        self, context_id: str, after_seq: int | None, limit: int | None
    ) -> Op[list[MessageDict]]:
        params = {"after_seq": after_seq, "limit": limit}
        path = f"{context_path(context_id)}/messages"
        return (
            yield from self.call(
                "GET", path, params=params, context_id=context_id, parse=_message_list
            )
        )

    def summaries(self, context_id: str, limit: int | None, cursor: str | None) -> Op[SummaryPage]:
        params = {"limit": limit, "cursor": cursor}
        path = f"{context_path(context_id)}/summaries"
        return (
            yield from self.call(
                "GET", path, params=params, context_id=context_id, parse=SummaryPage.from_json
            )
        )

    # -- the LLM context ------------------------------------------------------------

    def window(
        self,
        context_id: str,
        *,
        budget_tokens: int | None = None,
        if_version: int | None = None,
        format: WindowFormat | None = None,
    ) -> Op[ContextWindow]:
        params = {"budget_tokens": budget_tokens, "if_version": if_version, "format": format}
        path = f"{context_path(context_id)}/context"
        return (
            yield from self.call(
                "GET", path, params=params, context_id=context_id, parse=ContextWindow.from_json
            )
        )

    def compact(
        self,
        context_id: str,
        replacement: Sequence[Mapping[str, Any]],
        *,
        if_version: int | None = None,
        up_to_seq: int | None = None,
        idempotency_key: str | None = None,
    ) -> Op[CompactResult]:
        body = _present(
            replacement=_objects(replacement, "replacement"),
            if_version=if_version,
            up_to_seq=up_to_seq,
        )
        return (
            yield from self.call(
                "POST",
                f"{context_path(context_id)}/compact",
                body=body,
                context_id=context_id,
                idempotency_key=idempotency_key or new_key(),
                parse=CompactResult.from_json,
            )
        )


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
