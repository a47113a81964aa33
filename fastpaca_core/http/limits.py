"""Limits: what one client may take from the server (docs/http-api.md, "Limits").

:func:`admit` (called by the request middleware, after the API key is
checked) applies, in order:

- **rate**: a token bucket per tenant (per client IP with auth off) on ``/v1``;
  ``FASTPACA_RATE_LIMIT`` requests a second, ``FASTPACA_RATE_BURST`` at once.
  Over it: 429 ``rate_limited`` with ``Retry-After`` (whole seconds). Requests
  with a missing or wrong key spend from their client IP's bucket (auth
  middleware), so key guessing is throttled too.
- **body size**: ``max_body_bytes``, or on the routes of a dialect (the LLM
  proxy's) the dialect's limit (``proxy_max_body_bytes``). A declared
  ``Content-Length`` over it is refused before anything is read; a chunked
  or compressed body is cut off once it passes it (aiohttp's
  ``client_max_size``: the app's is the larger of the two limits, a request
  under the smaller one gets its own). Both 413 ``payload_too_large``.
- **body time**: the whole body must arrive within ``FASTPACA_BODY_TIMEOUT``;
  a client that trickles or stalls gets 408 ``request_timeout``. The body is
  read here, once (handlers get it from aiohttp's cache), so no handler ever
  waits on a slow client. Each request is its own task: a stalled client
  holds its connection only, never the event loop or other clients.
- **deadline** (the request middleware's, :func:`deadline_exceeded` its
  answer): the handler must answer within ``FASTPACA_REQUEST_TIMEOUT``,
  else 503 ``deadline_exceeded``. The deadline is lifted once a response's
  headers went out (websockets, proxied streams: they have their own
  timeouts); proxy routes extend it by the upstream timeout
  (:func:`extend_deadline`).

Refusals that leave a body unread (413, 408) close the connection after the
answer, instead of draining what the client still sends. Every refusal is
rendered by :func:`~.errors.render_error`: in the provider's own shape on
proxy routes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .errors import dialect_of, render_error
from .state import SETTINGS
from .tenants import TENANT

log = logging.getLogger("fastpaca.http")

__all__ = [
    "DEADLINE",
    "DEADLINES",
    "Deadline",
    "Deadlines",
    "RATE_LIMITER",
    "RateLimiter",
    "body_limit",
    "extend_deadline",
    "lift_deadline",
    "admit",
    "deadline_exceeded",
    "throttle_failed_key",
]


class RateLimiter:
    """Token buckets by key: ``rate`` tokens a second, at most ``burst`` saved.

    At most ``max_keys`` buckets are kept; the least recently used go first
    (a bucket idle for ``burst / rate`` seconds is full anyway).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = float(burst if burst > 0 else max(1, math.ceil(rate)))
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0, or the seconds until one is there."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)


class Deadline:
    """One request's deadline (``time.monotonic()``; None once lifted or ended)."""

    __slots__ = ("cancelling", "fired", "task", "when")

    def __init__(self, when: float, task: asyncio.Task[Any]) -> None:
        self.when: float | None = when
        self.task = task
        self.cancelling = task.cancelling()  # cancel requests already pending
        self.fired = False  # the sweep cancelled the task for this deadline


class Deadlines:
    """The requests' deadlines, checked by one sweeping task.

    A timer per request (``asyncio.timeout``: a timer armed and cancelled, a
    context manager entered and left) cost ~4.7% of the server's instructions
    per HTTP append (callgrind); a deadline here is an object in a dict. The
    sweep runs every ``tick`` (a tenth of the timeout, at most a second), so a
    request is cut between its deadline and one tick later: its task is
    cancelled, and the request middleware turns that cancellation, if it is
    this deadline's alone, into the 503 (as ``asyncio.timeout`` turns its own
    into ``TimeoutError``).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # never busier than 100 sweeps a second, whatever the timeout
        self.tick = min(1.0, max(timeout / 10, 0.01))
        self._open: dict[Deadline, None] = {}
        self._running: dict[asyncio.Task[Any], None] = {}  # the handlers' tasks

    def under_way(self) -> int:
        """How many request handlers are in progress (websockets and streams
        included, for as long as they are open)."""
        return len(self._running)

    def alone(self) -> bool:
        """The calling task is a request's, and no other request is in progress."""
        running = self._running
        return len(running) == 1 and asyncio.current_task() in running

    def start(self) -> Deadline:
        """The current task's deadline, ``timeout`` from now."""
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(time.monotonic() + self.timeout, task)
        self._open[deadline] = None
        self._running[task] = None
        return deadline

    @staticmethod
    def answers(deadline: Deadline) -> bool:
        """After the handler raised ``CancelledError``: whether the cancellation
        was this deadline's alone (then it is taken back, and the request answers
        503), as ``asyncio.timeout`` decides; an outside cancellation wins."""
        if not deadline.fired:
            return False
        deadline.fired = False
        return deadline.task.uncancel() <= deadline.cancelling

    def end(self, deadline: Deadline) -> None:
        """The handler is done: the deadline leaves the sweep, and a cancellation
        it sent as the handler ended is taken back."""
        deadline.when = None
        self._open.pop(deadline, None)
        self._running.pop(deadline.task, None)
        if deadline.fired:
            deadline.fired = False
            deadline.task.uncancel()

    def sweep(self) -> None:
        now = time.monotonic()
        # a lifted deadline (a websocket, a stream: open for hours, maybe) is
        # dropped at the first sweep that meets it, not rescanned every tick
        for deadline in [d for d in self._open if d.when is None or d.when <= now]:
            self._open.pop(deadline, None)
            if deadline.when is not None:
                deadline.when = None
                deadline.fired = True
                deadline.task.cancel()

    async def run(self) -> None:
        """Sweep until cancelled (the app's lifetime)."""
        while True:
            await asyncio.sleep(self.tick)
            self.sweep()


DEADLINES = web.AppKey("deadlines", Deadlines)
DEADLINE = web.RequestKey("deadline", Deadline)


def _too_many(request: web.Request, wait: float) -> web.Response:
    response = render_error(request, 429, "rate_limited", "Too many requests; slow down")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def throttle_failed_key(request: web.Request) -> web.Response | None:
    """A request with a missing or wrong key spends from its client IP's bucket:
    with the rate limit on, guessing keys is throttled like any other traffic."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None:
        return None
    wait = limiter.take(f"unauthorized:{request.remote or '?'}")
    return _too_many(request, wait) if wait > 0 else None


def _is_api(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def _rate_key(request: web.Request) -> str:
    tenant = request.get(TENANT)
    if tenant is not None:
        return f"tenant:{tenant}"
    return f"ip:{request.remote or '?'}"


# A refused body up to this size is still read (and dropped) after the answer,
# for at most aiohttp's lingering time (10 s), so that the client can read the answer
_DRAIN_AT_MOST = 64 * 1024 * 1024


async def _refuse_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response`` and end the connection without handing the body to anyone.

    Closing a socket with unread data in it makes the kernel answer with a reset,
    which can reach the client before it has read the answer: a client still
    sending a body it declared too large would see a connection error, not the
    413. So when the declared rest is of a sane size, the server sends its end
    of the connection (the client sees the answer and the end at once) and
    drains what the client still sends before closing (aiohttp's lingering
    close). A body of unknown or huge size, or one that stalled (408), is cut
    off at once.
    """
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    transport = request.transport
    length = request.content_length
    if (
        response.status == 413
        and length is not None
        and length <= _DRAIN_AT_MOST
        and transport is not None
        and transport.can_write_eof()
    ):
        transport.write_eof()  # the client reads the answer and then its end
    else:
        request.protocol.force_close()  # flushes what was written, skips draining the body
    return response


def body_limit(request: web.Request) -> int:
    """The largest body ``request``'s route accepts, in bytes."""
    dialect = dialect_of(request)
    if dialect is not None and dialect.max_body_bytes is not None:
        return dialect.max_body_bytes
    return request.app[SETTINGS].max_body_bytes


def _undecodable(request: web.Request) -> web.Response:
    return render_error(request, 400, "invalid_request", "The request body could not be decoded")


def _too_large(request: web.Request, limit: int) -> web.Response:
    return render_error(request, 413, "payload_too_large", f"Request body exceeds {limit} bytes")


async def _read_body(request: web.Request) -> tuple[web.Request, web.Response | None]:
    """Read the whole body within the body timeout; a refusal when it cannot be.

    The request comes back as the handler is to see it: with the route's own
    ``client_max_size`` when a chunked or compressed body could pass the
    route's limit before the app's.
    """
    settings = request.app[SETTINGS]
    if not request.body_exists:
        return request, None
    limit = body_limit(request)
    length = request.content_length
    if length is not None and length > limit:
        return request, await _refuse_and_close(request, _too_large(request, limit))
    if not request.can_read_body:
        if length and "Content-Encoding" in request.headers:  # decoded to nothing at all
            return request, await _refuse_and_close(request, _undecodable(request))
        return request, None
    if limit < request.client_max_size and (
        length is None or "Content-Encoding" in request.headers
    ):
        request = request.clone(client_max_size=limit)
    try:
        if request.content.is_eof():  # all here already (a small body): no clock needed
            body = await request.read()
        else:
            async with asyncio.timeout(settings.body_timeout):
                body = await request.read()
        if not body and length and "Content-Encoding" in request.headers:
            return request, await _refuse_and_close(request, _undecodable(request))
    except TimeoutError:
        return request, await _refuse_and_close(
            request,
            render_error(
                request,
                408,
                "request_timeout",
                f"The request body did not arrive within {settings.body_timeout:g} s",
            ),
        )
    except web.HTTPRequestEntityTooLarge:
        return request, await _refuse_and_close(request, _too_large(request, limit))
    except web.RequestPayloadError:  # a corrupt compressed body, broken chunk framing
        return request, await _refuse_and_close(request, _undecodable(request))
    except ConnectionResetError:  # the client left before its body arrived: nobody to answer
        log.info("client left mid-body", extra={"fields": {"remote": request.remote}})
        return request, render_error(
            request, 400, "invalid_request", "The connection closed before the body arrived"
        )
    return request, None


def extend_deadline(request: web.Request, seconds: float) -> None:
    """Give the request ``seconds`` more (a proxied call waiting on its upstream)."""
    deadline = request.get(DEADLINE)
    if deadline is not None and deadline.when is not None:
        deadline.when += seconds


async def lift_deadline(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare``: headers are going out, the deadline no longer applies."""
    deadline = request.get(DEADLINE)
    if deadline is not None:
        deadline.when = None  # and the sweep passes it by


async def admit(request: web.Request) -> tuple[web.Request, web.Response | None]:
    """The rate and the body limits, before the handler runs: the request to
    hand on (a copy holding the route's body limit, where it differs), or the
    refusal to answer with. The deadline is the request middleware's."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is not None and _is_api(request.path):
        wait = limiter.take(_rate_key(request))
        if wait > 0:
            return request, _too_many(request, wait)
    return await _read_body(request)


def deadline_exceeded(request: web.Request) -> web.Response:
    timeout = request.app[SETTINGS].request_timeout
    response = render_error(
        request,
        503,
        "deadline_exceeded",
        f"The request did not complete within {timeout:g} s",
    )
    response.headers["Retry-After"] = "1"
    return response
