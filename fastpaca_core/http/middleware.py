"""Request middlewares: access log + latency metrics, and API-key auth (tenants).

The access log is one JSON line per request (route, method, status, duration,
context id), never bodies, message contents or keys.
"""

from __future__ import annotations

import hmac
import logging
import time

from aiohttp import web

from ..errors import FastpacaError
from .errors import HttpError
from .limits import throttle_failed_key
from .state import METRICS, SETTINGS
from .tenants import TENANT, TENANTS, public_text, tenant_of
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
        request.app[METRICS].observe_request(route, request.method, status, elapsed)
        if access_log.isEnabledFor(logging.INFO):
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


def _given_key(request: web.Request) -> str:
    given = request.headers.get(KEY_HEADER)
    if given is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        given = token if scheme.lower() == "bearer" else ""
    return given.strip()


def _check_metrics_key(request: web.Request) -> None:
    key = request.app[SETTINGS].metrics_key
    given = _given_key(request).encode("utf-8", "surrogateescape")
    if key is not None and not hmac.compare_digest(given, key.encode()):
        raise HttpError(401, "unauthorized", "Missing or invalid metrics key")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With API keys configured, every ``/v1`` request needs one; the key names
    the request's tenant (:mod:`.tenants`). ``/metrics`` needs the metrics key
    when one is configured; health and the OpenAPI document stay open.

    A key comes as ``Authorization: Bearer <key>``, or as ``X-Fastpaca-Key: <key>``
    (for proxy clients whose ``Authorization`` carries their provider key).
    Error messages leave with the tenant's public ids.
    """
    path = request.path
    if path == "/v1" or path.startswith("/v1/"):
        tenants = request.app[TENANTS]
        if tenants.auth_required:
            tenant = tenants.resolve(_given_key(request))
            if tenant is None:
                throttled = throttle_failed_key(request)
                if throttled is not None:
                    return throttled
                raise HttpError(401, "unauthorized", "Missing or invalid API key")
            request[TENANT] = tenant
    elif path == "/metrics":
        _check_metrics_key(request)
    try:
        return await handler(request)
    except FastpacaError as exc:
        if not tenant_of(request):
            raise
        raise HttpError(exc.status, exc.code, public_text(request, str(exc))) from exc
