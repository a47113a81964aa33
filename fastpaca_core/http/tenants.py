"""Tenants: which API key belongs to whom, and which context ids each one sees.

Keys come from three settings (see docs/http-api.md, "Tenants"):

- ``FASTPACA_API_KEY``: the key of the *default* tenant, whose context ids are
  stored as they are (so data written before tenants existed stays reachable);
- ``FASTPACA_API_KEYS``: ``tenant:key,tenant:key`` pairs;
- ``FASTPACA_API_KEYS_FILE``: a file of ``tenant key`` lines (``#`` comments).

A tenant may hold several keys (rotation); a key belongs to one tenant. With no
key configured, auth is off and every request is the default tenant's.

A named tenant's context ``{id}`` is kept as ``{tenant}/{id}`` in the engine
and the store. ``/`` is not in the public id charset, so it cannot collide with
a public id, and another tenant's context simply does not exist (404) under
anyone else's key. :func:`scoped_id` makes the internal id of a request's
public one; :func:`public_id` and :func:`public_text` turn internal ids back
before anything reaches the client.

Keys are looked up by their SHA-256 digest, so the lookup's timing says nothing
about how much of a key a caller guessed right.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ValidationError
from ..model import TENANT_PATTERN, ContextRecord, validate_public_id
from ..settings import Settings

__all__ = [
    "DEFAULT_TENANT",
    "TENANT",
    "TENANTS",
    "Tenants",
    "context_json",
    "public_id",
    "public_text",
    "scoped_id",
    "tenant_of",
]

DEFAULT_TENANT = ""
"""The tenant of ``FASTPACA_API_KEY`` (and of everyone with auth off): unprefixed ids."""


def _digest(key: str) -> bytes:
    # header bytes that are not UTF-8 arrive as surrogate escapes; they name no key
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Tenants:
    """Key → tenant, by the keys' digests."""

    _by_digest: Mapping[bytes, str]

    @property
    def auth_required(self) -> bool:
        return bool(self._by_digest)

    def resolve(self, key: str) -> str | None:
        """The tenant owning ``key``, or ``None`` for an unknown key."""
        return self._by_digest.get(_digest(key))

    def is_key(self, value: str) -> bool:
        """Whether ``value`` is one of our keys (the proxy never forwards those)."""
        return _digest(value) in self._by_digest

    def names(self) -> set[str]:
        return set(self._by_digest.values())

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Tenants:
        """From ``(tenant, key)`` pairs; a key given to two tenants is an error."""
        by_digest: dict[bytes, str] = {}
        for tenant, key in pairs:
            digest = _digest(key)
            if by_digest.setdefault(digest, tenant) != tenant:
                raise ValidationError("api_keys", "a key is given to more than one tenant")
        return cls(by_digest)

    @classmethod
    def from_settings(cls, settings: Settings) -> Tenants:
        """Read the keys of every setting (the keys file once, at startup)."""
        pairs: list[tuple[str, str]] = []
        if settings.api_key is not None:
            pairs.append((DEFAULT_TENANT, settings.api_key))
        if settings.api_keys is not None:
            pairs.extend(parse_env_keys(settings.api_keys))
        if settings.api_keys_file is not None:
            try:
                text = Path(settings.api_keys_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValidationError("api_keys_file", f"cannot be read: {exc}") from exc
            pairs.extend(parse_key_file(text))
        return cls.of(pairs)


def _pair(tenant: str, key: str, field: str, where: str) -> tuple[str, str]:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise ValidationError(
            field, f"{where}: a tenant name is 1-64 characters of A-Z a-z 0-9 . _ -"
        )
    if not key or not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ValidationError(field, f"{where}: a key is printable ASCII without spaces")
    return tenant, key


def parse_env_keys(text: str) -> list[tuple[str, str]]:
    """``tenant:key,tenant:key`` (``FASTPACA_API_KEYS``)."""
    pairs = []
    for number, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        if not sep:
            raise ValidationError("api_keys", f"entry {number}: expected tenant:key")
        pairs.append(_pair(tenant.strip(), key.strip(), "api_keys", f"entry {number}"))
    return pairs


def parse_key_file(text: str) -> list[tuple[str, str]]:
    """``tenant key`` a line; blank lines and ``#`` comments are skipped."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise ValidationError("api_keys_file", f"line {number}: expected 'tenant key'")
        pairs.append(_pair(words[0], words[1], "api_keys_file", f"line {number}"))
    return pairs


TENANTS = web.AppKey("tenants", Tenants)
TENANT = web.RequestKey("tenant", str)


def tenant_of(request: web.Request) -> str:
    """The request's tenant (set by the auth middleware; default without auth)."""
    tenant = request.get(TENANT)
    return DEFAULT_TENANT if tenant is None else tenant


def scoped_id(request: web.Request, public: object, field: str = "id") -> str:
    """The internal id of the request's tenant for the public ``public`` (checked)."""
    value = validate_public_id(public, field)
    tenant = tenant_of(request)
    return f"{tenant}/{value}" if tenant else value


def public_id(request: web.Request, internal: str) -> str:
    """``internal`` as the request's tenant knows it."""
    tenant = tenant_of(request)
    if tenant and internal.startswith(f"{tenant}/"):
        return internal[len(tenant) + 1 :]
    return internal


def public_text(request: web.Request, text: str) -> str:
    """``text`` (an error message) with the tenant's internal ids made public.

    Messages quote ids as ``'id'``; only quoted prefixes are rewritten.
    """
    tenant = tenant_of(request)
    if not tenant:
        return text
    for quote in ("'", '"'):
        text = text.replace(f"{quote}{tenant}/", quote)
    return text


def context_json(request: web.Request, ctx: ContextRecord) -> dict[str, Any]:
    """The context object, with its public id."""
    data = ctx.to_json()
    data["id"] = public_id(request, ctx.id)
    return data
