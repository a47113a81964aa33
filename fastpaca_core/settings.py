"""Server settings: one dataclass, read from ``FASTPACA_*`` variables and CLI flags.

Every field has a default that works with no configuration at all. Each field's
metadata names its environment variable and help text, so the ``serve``
command builds its flags (and their ``--help``) from this one table.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError

__all__ = ["Settings"]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def _opt(env: str, help_text: str, flag: str | None = None) -> dict[str, Any]:
    return {"env": env, "help": help_text, "flag": flag}


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``fastpaca serve`` needs; defaults work out of the box."""

    host: str = field(default="127.0.0.1", metadata=_opt("FASTPACA_HOST", "address to listen on"))
    port: int = field(default=4000, metadata=_opt("FASTPACA_PORT", "TCP port to listen on"))
    store: str = field(
        default="sqlite:///fastpaca.db",
        metadata=_opt(
            "FASTPACA_STORE", "store URL: sqlite:///path, postgresql://host/db or memory://"
        ),
    )
    # -- store outages (docs/deployment.md) -------------------------------------
    store_timeout: float = field(
        default=3.0,
        metadata=_opt(
            "FASTPACA_STORE_TIMEOUT",
            "seconds a store operation may take (connecting, queries, commit) before the "
            "request answers 503 store_unavailable",
        ),
    )
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata=_opt(
            "FASTPACA_API_KEY", "require 'Authorization: Bearer <key>' on /v1 (unset: auth off)"
        ),
    )
    max_body_bytes: int = field(
        default=1024 * 1024,
        metadata=_opt("FASTPACA_MAX_BODY_BYTES", "largest request body accepted, in bytes"),
    )
    proxy_max_body_bytes: int = field(
        default=32 * 1024 * 1024,
        metadata=_opt(
            "FASTPACA_PROXY_MAX_BODY_BYTES",
            "largest request body accepted on the LLM proxy's routes, in bytes",
        ),
    )
    max_page_size: int = field(
        default=1000,
        metadata=_opt("FASTPACA_MAX_PAGE_SIZE", "largest 'limit' accepted by paged reads"),
    )
    max_streams: int = field(
        default=512,
        metadata=_opt("FASTPACA_MAX_STREAMS", "open websocket streams allowed per process"),
    )
    ws_ping_interval: float = field(
        default=30.0,
        metadata=_opt("FASTPACA_WS_PING_INTERVAL", "seconds between websocket {type: ping}"),
    )
    ws_idle_timeout: float = field(
        default=90.0,
        metadata=_opt(
            "FASTPACA_WS_IDLE_TIMEOUT",
            "drop a websocket client silent this long (s), or taking no byte of a frame",
        ),
    )
    shutdown_timeout: float = field(
        default=10.0,
        metadata=_opt("FASTPACA_SHUTDOWN_TIMEOUT", "seconds in-flight requests get on shutdown"),
    )
    openai_base_url: str = field(
        default="https://api.openai.com/v1",
        metadata=_opt("FASTPACA_OPENAI_BASE_URL", "the OpenAI API the proxy forwards to"),
    )
    anthropic_base_url: str = field(
        default="https://api.anthropic.com",
        metadata=_opt("FASTPACA_ANTHROPIC_BASE_URL", "the Anthropic API the proxy forwards to"),
    )
    openai_api_key: str | None = field(
        default=None,
        repr=False,
        metadata=_opt(
            "FASTPACA_OPENAI_API_KEY",
            "OpenAI key the proxy injects (unset: the client's own key is forwarded)",
        ),
    )
    anthropic_api_key: str | None = field(
        default=None,
        repr=False,
        metadata=_opt(
            "FASTPACA_ANTHROPIC_API_KEY",
            "Anthropic key the proxy injects (unset: the client's own key is forwarded)",
        ),
    )
    upstream_timeout: float = field(
        default=600.0,
        metadata=_opt(
            "FASTPACA_UPSTREAM_TIMEOUT", "seconds an upstream call may take, streams included"
        ),
    )
    upstream_connect_timeout: float = field(
        default=10.0,
        metadata=_opt("FASTPACA_UPSTREAM_CONNECT_TIMEOUT", "seconds to connect to an upstream"),
    )
    summarizer_timeout: float = field(
        default=120.0,
        metadata=_opt("FASTPACA_SUMMARIZER_TIMEOUT", "seconds one summary request may take"),
    )
    summarizer_lease_ttl: float = field(
        default=60.0,
        metadata=_opt(
            "FASTPACA_SUMMARIZER_LEASE_TTL",
            "seconds a summariser's per-context lease lasts unless renewed (crash takeover)",
        ),
    )
    summarizer_retry_initial: float = field(
        default=1.0,
        metadata=_opt(
            "FASTPACA_SUMMARIZER_RETRY_INITIAL", "first backoff after a failed summary request (s)"
        ),
    )
    summarizer_retry_max: float = field(
        default=60.0,
        metadata=_opt(
            "FASTPACA_SUMMARIZER_RETRY_MAX", "longest backoff between summary retries (s)"
        ),
    )
    summarizer_max_attempts: int = field(
        default=6,
        metadata=_opt(
            "FASTPACA_SUMMARIZER_MAX_ATTEMPTS",
            "summary requests tried per wake-up before trimming is left in charge",
        ),
    )
    summarizer_workers: int = field(
        default=4,
        metadata=_opt("FASTPACA_SUMMARIZER_WORKERS", "contexts summarised at once per process"),
    )
    summarizer_max_input_tokens: int = field(
        default=24000,
        metadata=_opt(
            "FASTPACA_SUMMARIZER_MAX_INPUT_TOKENS",
            "most transcript tokens sent in one summary request (a backlog takes several)",
        ),
    )
    # -- tenants and limits (docs/http-api.md "Tenants", "Limits") --------------
    api_keys: str | None = field(
        default=None,
        repr=False,
        metadata=_opt(
            "FASTPACA_API_KEYS",
            "tenant keys as 'tenant:key,tenant:key'; each tenant sees only its own contexts",
        ),
    )
    api_keys_file: str | None = field(
        default=None,
        metadata=_opt(
            "FASTPACA_API_KEYS_FILE",
            "file of tenant keys, one 'tenant key' pair a line ('#' starts a comment)",
        ),
    )
    metrics_key: str | None = field(
        default=None,
        repr=False,
        metadata=_opt(
            "FASTPACA_METRICS_KEY",
            "require 'Authorization: Bearer <key>' on /metrics (unset: /metrics is open)",
        ),
    )
    rate_limit: float = field(
        default=0.0,
        metadata=_opt(
            "FASTPACA_RATE_LIMIT",
            "requests a second allowed per tenant (per client IP with auth off); 0: no limit",
        ),
    )
    rate_burst: int = field(
        default=0,
        metadata=_opt(
            "FASTPACA_RATE_BURST",
            "requests allowed at once above the rate (0: one second's worth, at least 1)",
        ),
    )
    request_timeout: float = field(
        default=30.0,
        metadata=_opt(
            "FASTPACA_REQUEST_TIMEOUT",
            "seconds a request may take (websockets and proxied streams, once started, and a "
            "proxied call once the upstream answered, excepted)",
        ),
    )
    body_timeout: float = field(
        default=10.0,
        metadata=_opt(
            "FASTPACA_BODY_TIMEOUT", "seconds a client has to send its whole request body"
        ),
    )
    log_level: str = field(
        default="INFO", metadata=_opt("FASTPACA_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR")
    )
    event_loop: str = field(
        default="auto",
        metadata=_opt(
            "FASTPACA_EVENT_LOOP",
            "auto (uvloop on SQLite and memory:// where it is installed, as it is by "
            "default on Linux and macOS; asyncio's own on PostgreSQL), uvloop or asyncio",
        ),
    )
    workers: int = field(
        default=1,
        metadata=_opt(
            "FASTPACA_WORKERS",
            "server processes sharing the port (0: one per CPU); more than 1 needs PostgreSQL",
        ),
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValidationError("port", "must be 0-65535")
        for name in (
            "max_body_bytes",
            "proxy_max_body_bytes",
            "max_page_size",
            "max_streams",
            "summarizer_max_attempts",
            "summarizer_workers",
            "summarizer_max_input_tokens",
        ):
            if getattr(self, name) < 1:
                raise ValidationError(name, "must be at least 1")
        for name in (
            "ws_ping_interval",
            "ws_idle_timeout",
            "shutdown_timeout",
            "upstream_timeout",
            "upstream_connect_timeout",
            "summarizer_timeout",
            "summarizer_lease_ttl",
            "summarizer_retry_initial",
            "summarizer_retry_max",
            "store_timeout",
            "request_timeout",
            "body_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValidationError(name, "must be greater than 0")
        for name in ("rate_limit", "rate_burst"):
            if not getattr(self, name) >= 0:
                raise ValidationError(name, "must be 0 (off) or more")
        if self.workers < 0:
            raise ValidationError("workers", "must be 0 (one per CPU) or more")
        if self.workers != 1 and not self.on_postgres:
            raise ValidationError(
                "workers",
                "more than one worker needs a PostgreSQL store: SQLite has one writer per "
                "process and memory:// is private to a process, so workers would not see "
                "each other's writes",
            )
        if self.event_loop not in EVENT_LOOPS:
            raise ValidationError("event_loop", f"must be one of {', '.join(EVENT_LOOPS)}")
        if self.log_level.upper() not in _LOG_LEVELS:
            raise ValidationError("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")
        for name in (
            "api_key",
            "openai_api_key",
            "anthropic_api_key",
            "api_keys",
            "api_keys_file",
            "metrics_key",
        ):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        for name in ("openai_base_url", "anthropic_base_url"):
            url = getattr(self, name)
            if not url.startswith(("http://", "https://")):
                raise ValidationError(name, "must be an http:// or https:// URL")
            object.__setattr__(self, name, url.rstrip("/"))

    @property
    def on_postgres(self) -> bool:
        return self.store.startswith(("postgresql://", "postgres://"))

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level.upper()]

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(cls)

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Defaults, then ``FASTPACA_*`` variables, then ``overrides`` (CLI flags).

        ``None`` in ``overrides`` means "not given" and is skipped.
        """
        values: dict[str, Any] = {}
        env = environ or {}
        for f in cls.fields():
            raw = env.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        for name, value in (overrides or {}).items():
            if value == "" and name in _AUTH_SECRETS:
                # ``--api-key "$UNSET"`` would run the server open: a mistake, not a choice
                raise ValidationError(name, "is empty; leave it out to run without it")
            if value is not None:
                values[name] = value
        return cls(**values)


# settings that turn authentication on: given empty as a flag, refused (see ``load``)
_AUTH_SECRETS = frozenset({"api_key", "api_keys", "api_keys_file", "metrics_key"})


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        raise ValidationError(f.metadata["env"], f"must be a number, got {raw!r}") from exc
    return raw
