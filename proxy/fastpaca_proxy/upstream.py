"""The connection to the upstream LLM APIs: where requests go, with which headers.

Upstream base URLs and server-held keys are server settings only; nothing in a
request can change where it is sent (no base URL field, no Host header, no
redirect is followed). Keys are forwarded or injected, never stored or logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Literal

import aiohttp
from aiohttp import web
from yarl import URL

from fastpaca_core.http import SETTINGS
from fastpaca_core.http.tenants import TENANTS, Tenants
from fastpaca_core.settings import Settings

__all__ = ["UPSTREAM", "Provider", "Upstream", "upstream_ctx"]

Provider = Literal["openai", "anthropic"]

_FORWARD: dict[Provider, frozenset[str]] = {
    "openai": frozenset({"authorization", "openai-organization", "openai-project", "openai-beta"}),
    "anthropic": frozenset({"authorization", "x-api-key", "anthropic-version", "anthropic-beta"}),
}
_FORWARD_ANY = frozenset({"accept", "content-type", "user-agent", "idempotency-key"})
_ALLOWED: dict[Provider, frozenset[str]] = {
    provider: names | _FORWARD_ANY for provider, names in _FORWARD.items()
}
_DROP_BACK = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "set-cookie",
        "server",
        "date",
        "proxy-authenticate",
        "upgrade",
    }
)


class Upstream:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        tenants: Tenants | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.tenants = tenants or Tenants.from_settings(settings)
        # the models for which the OpenAI upstream refused ``stream_options``: their
        # streams are sent as the client asked, and their replies counted by the
        # server (a gateway before several models may refuse it for some only)
        self.refuses_usage: set[str] = set()
        self._targets: dict[tuple[Provider, str], URL] = {}

    def target(self, provider: Provider, path: str) -> URL:
        """``url`` parsed, once per route (the client would parse it every call):
        for the routes' fixed paths only (the cache is not bounded)."""
        key = (provider, path)
        found = self._targets.get(key)
        if found is None:
            found = self._targets[key] = URL(self.url(provider, path))
        return found

    def url(self, provider: Provider, path: str) -> str:
        base = (
            self.settings.openai_base_url
            if provider == "openai"
            else self.settings.anthropic_base_url
        )
        return f"{base}/{path.lstrip('/')}"

    def request_headers(self, provider: Provider, incoming: Mapping[str, str]) -> dict[str, str]:
        """The headers to send upstream: an allowlist, with server-held keys injected.

        A Fastpaca key (any tenant's) in ``Authorization: Bearer`` or in
        ``x-api-key`` is consumed here, never forwarded.
        """
        allowed = _ALLOWED[provider]
        headers = {k: v for k, v in incoming.items() if k.lower() in allowed}
        if self.tenants.auth_required:
            for name in list(headers):
                lowered = name.lower()
                if lowered == "authorization":
                    given = headers[name].partition(" ")[2].strip()
                elif lowered == "x-api-key":
                    given = headers[name].strip()
                else:
                    continue
                if self.tenants.is_key(given):
                    del headers[name]
        if provider == "openai" and self.settings.openai_api_key:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {self.settings.openai_api_key}"
        if provider == "anthropic" and self.settings.anthropic_api_key:
            headers = {
                k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-api-key")
            }
            headers["x-api-key"] = self.settings.anthropic_api_key
        headers["Accept-Encoding"] = "identity"
        return headers

    @staticmethod
    def response_headers(upstream: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in upstream.items() if k.lower() not in _DROP_BACK}


UPSTREAM = web.AppKey("upstream", Upstream)


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session for the app's lifetime (cleanup_ctx)."""
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(
        total=settings.upstream_timeout, sock_connect=settings.upstream_connect_timeout
    )
    connector = aiohttp.TCPConnector(limit=0)
    # One session serves every client: cookies an upstream sets (a CDN's, say) must
    # not be kept and sent along with other clients' requests.
    async with aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        app[UPSTREAM] = Upstream(settings, session, app.get(TENANTS))
        yield
