"""The PostgreSQL store's schema: a numbered list of migrations, and where it lives.

:meth:`.postgres.PostgresStore.open` creates the URL's schema when missing
(:func:`create_schema`) and applies the migrations a database has not seen yet,
under an advisory lock, recording each in ``schema_version`` (:func:`migrate`).
:func:`split_url` takes the ``?schema=`` out of a store URL; :func:`channel_of`
names the schema's NOTIFY channel.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ValidationError

__all__ = ["MIGRATE_TIMEOUT", "MIGRATIONS", "channel_of", "create_schema", "migrate", "split_url"]

NAME_MAX = 63  # bytes in a PostgreSQL name (a schema, a channel)
MIGRATION_LOCK = 0x66617374  # advisory lock id held while migrating
MIGRATE_TIMEOUT = 60.0  # migrating may wait for another process's migration

MIGRATIONS: list[str] = [
    # 1: the log, contexts with their window, idempotency keys, stored events
    """
    CREATE TABLE contexts (
        id text PRIMARY KEY,
        token_budget bigint NOT NULL,
        trigger_ratio double precision NOT NULL,
        policy text NOT NULL,
        metadata text NOT NULL,
        status text NOT NULL,
        version bigint NOT NULL,
        last_seq bigint NOT NULL,
        total_tokens bigint NOT NULL,
        prefix text NOT NULL,
        live_from_seq bigint NOT NULL,
        live_base_tokens bigint NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE INDEX contexts_by_update ON contexts (updated_at DESC, id DESC);
    CREATE TABLE messages (
        context_id text NOT NULL,
        seq bigint NOT NULL,
        role text NOT NULL,
        parts text NOT NULL,
        metadata text NOT NULL,
        token_count bigint NOT NULL,
        cum_tokens bigint NOT NULL,
        version bigint NOT NULL,
        inserted_at timestamptz NOT NULL,
        PRIMARY KEY (context_id, seq)
    );
    CREATE TABLE idempotency_keys (
        context_id text NOT NULL,
        key text NOT NULL,
        request_hash text NOT NULL,
        response text NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (context_id, key)
    );
    CREATE TABLE events (
        context_id text NOT NULL,
        version bigint NOT NULL,
        type text NOT NULL,
        data text NOT NULL,
        PRIMARY KEY (context_id, version)
    );
    """,
    # 2: token calibration, summary records, summariser leases
    """
    ALTER TABLE contexts ADD COLUMN calibration double precision NOT NULL DEFAULT 1.0;
    ALTER TABLE contexts ADD COLUMN calibration_samples bigint NOT NULL DEFAULT 0;
    CREATE TABLE summaries (
        context_id text NOT NULL,
        version bigint NOT NULL,
        from_seq bigint NOT NULL,
        to_seq bigint NOT NULL,
        provider text NOT NULL,
        model text NOT NULL,
        prompt_sha256 text NOT NULL,
        token_count bigint NOT NULL,
        created_at timestamptz NOT NULL,
        message text NOT NULL,
        PRIMARY KEY (context_id, version)
    );
    CREATE TABLE leases (
        context_id text PRIMARY KEY,
        holder text NOT NULL,
        expires_at timestamptz NOT NULL
    );
    """,
    # 2: a tenant's contexts as a range of ids in byte order, whatever the
    # database's collation (list_contexts(tenant=...))
    """
    CREATE INDEX contexts_by_id_bytes ON contexts ((id COLLATE "C"));
    """,
]


def channel_of(schema: str | None) -> str:
    """The NOTIFY channel of a schema's processes. A name is at most
    ``NAME_MAX`` bytes (``pg_notify`` refuses a longer one): a long schema
    name's channel is named by its digest."""
    channel = f"fastpaca_{schema or 'public'}"
    if len(channel.encode()) <= NAME_MAX:
        return channel
    return f"fastpaca_{hashlib.sha256(channel.encode()).hexdigest()[:40]}"


def split_url(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    if schema is not None and not schema.replace("_", "").isalnum():
        raise ValidationError("store", "the schema name must be letters, digits and _")
    if schema is not None and len(schema.encode()) > NAME_MAX:
        # PostgreSQL would cut a longer name short, and another such name to the same one
        raise ValidationError("store", f"the schema name must be at most {NAME_MAX} bytes")
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    return dsn, schema


async def create_schema(conn: Any, schema: str, timeout: float) -> None:
    """``schema``, created when missing: under the migration lock (waited for
    as migrations wait), as CREATE SCHEMA IF NOT EXISTS is not safe against
    another process creating it at the same moment. A schema that exists takes
    no lock (another schema's migration may hold it). ``conn``: an asyncpg
    connection."""
    exists = "SELECT 1 FROM pg_namespace WHERE nspname = $1"
    if await conn.fetchval(exists, schema, timeout=timeout):
        return
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK, timeout=MIGRATE_TIMEOUT
        )
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"', timeout=timeout)


async def migrate(conn: Any) -> None:
    """Apply the migrations the database (``conn``'s search path) has not seen."""
    timeout = MIGRATE_TIMEOUT
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK, timeout=timeout)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version int NOT NULL)", timeout=timeout
        )
        current = await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM schema_version", timeout=timeout
        )
        for number, script in enumerate(MIGRATIONS, start=1):
            if number > current:
                await conn.execute(script, timeout=timeout)
                await conn.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)", number, timeout=timeout
                )
