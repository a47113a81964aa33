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
    api_key: str | None = field(
        default=None,
        metadata=_opt(
            "FASTPACA_API_KEY", "require 'Authorization: Bearer <key>' on /v1 (unset: auth off)"
        ),
    )
    max_body_bytes: int = field(
        default=1024 * 1024,
        metadata=_opt("FASTPACA_MAX_BODY_BYTES", "largest request body accepted, in bytes"),
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
        metadata=_opt("FASTPACA_WS_IDLE_TIMEOUT", "drop a websocket client silent this long (s)"),
    )
    shutdown_timeout: float = field(
        default=10.0,
        metadata=_opt("FASTPACA_SHUTDOWN_TIMEOUT", "seconds in-flight requests get on shutdown"),
    )
    log_level: str = field(
        default="INFO", metadata=_opt("FASTPACA_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR")
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValidationError("port", "must be 0-65535")
        for name in ("max_body_bytes", "max_page_size", "max_streams"):
            if getattr(self, name) < 1:
                raise ValidationError(name, "must be at least 1")
        for name in ("ws_ping_interval", "ws_idle_timeout", "shutdown_timeout"):
            if not getattr(self, name) > 0:
                raise ValidationError(name, "must be greater than 0")
        if self.log_level.upper() not in _LOG_LEVELS:
            raise ValidationError("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")
        if self.api_key == "":
            object.__setattr__(self, "api_key", None)

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
            if value is not None:
                values[name] = value
        return cls(**values)


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
