"""Every error response, in one place: ``{"error": code, "message": text}``.

:class:`HttpError` is the transport's leaf of the one exception tree (see
:mod:`fastpaca_core.errors`): malformed JSON, a body too large, a missing API
key, a bad query parameter. :func:`error_middleware` maps it, every other
:class:`~fastpaca_core.errors.FastpacaError` (by its ``code`` and ``status``)
and aiohttp's own HTTP errors (unknown route, wrong method, body too large) to
the JSON shape. Anything else is logged and answered as a bare 500.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..errors import FastpacaError
from ..jsonutil import dumps
from .types import Handler

__all__ = ["HttpError", "error_middleware", "error_response"]

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


class HttpError(FastpacaError):
    """An error of the HTTP transport itself, with its own code and status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=dumps({"error": code, "message": message}),
        content_type="application/json",
    )


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    status = exc.status
    if status == 404:
        message = "No such route"
    elif status == 405:
        message = "Method not allowed on this route"
    elif status == 413:
        message = "Request body is too large"
    else:
        message = exc.reason
    response = error_response(status, _HTTP_CODES.get(status, f"http_{status}"), message)
    if status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FastpacaError as exc:
        response = error_response(exc.status, exc.code, str(exc))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc)
    except ConnectionResetError:
        raise
    except Exception:
        log.exception("unhandled error", extra={"fields": {"route": _route_name(request)}})
        return error_response(500, "internal_error", "Internal server error")


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"
