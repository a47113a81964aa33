"""Every error response, in one place: ``{"error": code, "message": text}``.

:class:`HttpError` is the transport's leaf of the one exception tree (see
:mod:`fastpaca_core.errors`): malformed JSON, a body too large, a missing API
key, a bad query parameter. :func:`error_answer` maps it, every other
:class:`~fastpaca_core.errors.FastpacaError` (by its ``code`` and ``status``)
and aiohttp's own HTTP errors (unknown route, wrong method, body too large) to
the JSON shape. Anything else is logged and answered as a bare 500.

Routes plugged in that speak another API (the LLM proxy's OpenAI and
Anthropic routes) register a :class:`Dialect` for their paths in the app's
:data:`DIALECTS`: :func:`render_error` then answers in that API's own error
shape (same status, same headers), and the body limit is the dialect's. The
core never imports the package that registers one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..errors import FastpacaError
from ..jsonutil import dumps

__all__ = [
    "DIALECTS",
    "Dialect",
    "Dialects",
    "ErrorBody",
    "HttpError",
    "dialect_of",
    "error_answer",
    "error_response",
    "render_error",
]

log = logging.getLogger("fastpaca.http")

# aiohttp's own errors (raised by the router or while reading a body).
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}

ErrorBody = Callable[[int, str, str], bytes]
"""``(status, code, message) -> body``: one error in another API's JSON shape."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """How the routes of another API answer: their error shape, their body limit."""

    name: str
    error_body: ErrorBody
    max_body_bytes: int | None = None  # None: the app's ``max_body_bytes``


class Dialects:
    """Which paths speak which :class:`Dialect`; a path no pattern matches is ours."""

    def __init__(self) -> None:
        self._rules: list[tuple[re.Pattern[str], Dialect]] = []
        self._any: re.Pattern[str] | None = None

    def add(self, pattern: str, dialect: Dialect) -> None:
        """Paths that ``re.fullmatch`` ``pattern`` speak ``dialect`` (first added wins).

        Paths are matched as the router matches them: decoded, except ``%2F``.
        """
        rules = [*self._rules, (re.compile(pattern), dialect)]  # a bad pattern fails here
        # one alternation, one match a request, when every pattern can be a
        # branch of it: no groups of its own (names could clash with another's
        # or with ours, a numbered backreference would point elsewhere) and no
        # inline flags (global flags must start the whole expression)
        simple = all(p.groups == 0 and not p.flags & ~re.UNICODE for p, _ in rules)
        self._any = (
            re.compile("|".join(f"(?P<d{i}>{p.pattern})" for i, (p, _) in enumerate(rules)))
            if simple
            else None
        )
        self._rules = rules

    def of(self, path: str) -> Dialect | None:
        if self._any is not None:
            # fullmatch tries the branches in order: the first pattern that
            # matches the whole path wins, as one by one
            match = self._any.fullmatch(path)
            if match is None or match.lastgroup is None:
                return None
            return self._rules[int(match.lastgroup[1:])][1]
        for pattern, dialect in self._rules:
            if pattern.fullmatch(path):
                return dialect
        return None


DIALECTS = web.AppKey("dialects", Dialects)


class HttpError(FastpacaError):
    """An error of the HTTP transport itself, with its own code and status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_response(status: int, code: str, message: str) -> web.Response:
    """The error in Fastpaca's own shape (routes without a dialect)."""
    return web.Response(
        status=status,
        body=dumps({"error": code, "message": message}),
        content_type="application/json",
    )


def dialect_of(request: web.Request) -> Dialect | None:
    """The dialect ``request``'s path speaks; ``None``: Fastpaca's own API."""
    dialects = request.app.get(DIALECTS)
    return dialects.of(request.rel_url.path_safe) if dialects is not None else None


def render_error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """The error as ``request``'s route answers errors: its dialect's shape, or ours."""
    dialect = dialect_of(request)
    if dialect is None:
        return error_response(status, code, message)
    return web.Response(
        status=status,
        body=dialect.error_body(status, code, message),
        content_type="application/json",
    )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    if status == 404:
        message = "No such route"
    elif status == 405:
        message = "Method not allowed on this route"
    elif status == 413:
        message = "Request body is too large"
    else:
        message = exc.reason
    code = _HTTP_CODES.get(status, f"http_{status}")
    response = render_error(request, status, code, message)
    if status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def error_answer(request: web.Request, exc: Exception) -> web.Response:
    """The answer to ``exc``, raised while handling ``request`` (the request
    middleware calls this for whatever its handler raised); re-raises what is
    not an error to answer: an aiohttp redirect, a connection the client left."""
    if isinstance(exc, FastpacaError):
        response = render_error(request, exc.status, exc.code, str(exc))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _from_http_exception(request, exc)
    if isinstance(exc, ConnectionError):  # the client left (reset, broken pipe, lost)
        raise exc
    log.error(
        "unhandled error",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"fields": {"route": _route_name(request)}},
    )
    return render_error(request, 500, "internal_error", "Internal server error")


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"
