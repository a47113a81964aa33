"""Request middlewares: access log + latency metrics, and API-key auth.

The access log is one JSON line per request (route, method, status, duration,
context id), never bodies, message contents or keys.
"""

from __future__ import annotations

import hmac
import logging
import time

from aiohttp import web

from .errors import HttpError
from .state import METRICS, SETTINGS
from .types import Handler

__all__ = ["KEY_HEADER", "access_middleware", "auth_middleware", "route_of"]

access_log = logging.getLogger("fastpaca.access")

KEY_HEADER = "X-Fastpaca-Key"


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: times the request and logs it, whatever the outcome."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = route_of(request)
        request.app[METRICS].request_latency.labels(route, request.method, str(status)).observe(
            elapsed
        )
        fields: dict[str, object] = {
            "method": request.method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
        }
        context_id = request.match_info.get("id")
        if context_id is not None:
            fields["context_id"] = context_id[:256]
        access_log.info("request", extra={"fields": fields})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With an API key configured, every ``/v1`` request needs the key.

    It comes as ``Authorization: Bearer <key>``, or as ``X-Fastpaca-Key: <key>``
    (for proxy clients whose ``Authorization`` carries their provider key).
    """
    key = request.app[SETTINGS].api_key
    if key is not None and (request.path == "/v1" or request.path.startswith("/v1/")):
        expected = key.encode()
        given = request.headers.get(KEY_HEADER)
        if given is None:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            given = token if scheme.lower() == "bearer" else ""
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise HttpError(401, "unauthorized", "Missing or invalid API key")
    return await handler(request)
