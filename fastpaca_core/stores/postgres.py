"""``postgresql://...``: several API processes or machines sharing one database.

asyncpg with a connection pool. Each operation runs in one transaction that
locks the context row (``SELECT ... FOR UPDATE``), so appends from any number
of processes are ordered by the database; the ``(context_id, seq)`` primary
key backs that up. Schema migrations are a numbered list applied under an
advisory lock and recorded in ``schema_version``.

URL options: ``?schema=NAME`` puts the tables in their own schema (created on
open). Multi-host URLs with ``target_session_attrs=read-write``
(``postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write``) connect
to whichever host is the primary, so after a failover the pool's new
connections find the promoted one.

Outages: connecting, and the work of one operation on its connection (every
statement and the commit), each get ``timeout`` seconds; past that, or on any
error that means the server cannot be reached, the operation raises
:class:`StoreUnavailable` (HTTP 503) and its connection is dropped, so the pool
reconnects once the server is back. (Waiting for a free pooled connection is
load, not an outage, and is not timed.) A failure before ``COMMIT`` was sent is
retried once on a fresh connection; a connection lost during ``COMMIT`` leaves
the outcome unknown and is reported as such: retrying with the same
idempotency key is safe either way.

Every write also sends ``NOTIFY fastpaca_<schema>`` with ``token|version|id``
inside its transaction, so it is delivered only on commit;
:meth:`PostgresStore.listen` lets another process hear about changes it did
not make (``token`` tells a store's own writes apart).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the PostgreSQL store needs asyncpg: pip install 'fastpaca[postgres]'"
    ) from exc

from ..errors import FastpacaError, StoreError, StoreUnavailable, ValidationError
from ..events import Event
from ..jsonutil import dumps_str, loads
from ..model import ContextRecord, StoredMessage, SummaryRecord
from ._codec import (
    CONTEXT_COLUMNS,
    MESSAGE_COLUMNS,
    SUMMARY_COLUMNS,
    context_from_row,
    context_values,
    message_from_row,
    summary_from_row,
    summary_values,
)
from ._pglisten import FAILED, UNAVAILABLE, Listener
from .base import IdempotencyRecord, Op, Store, tenant_range

__all__ = ["PostgresStore"]

R = TypeVar("R")
_MIGRATION_LOCK = 0x66617374  # advisory lock id held while migrating
_RETRIES = 5  # for serialisation failures, deadlocks, a lost insert race
_MIGRATE_TIMEOUT = 60.0  # migrating may wait for another process's migration
DEFAULT_TIMEOUT = 3.0
log = logging.getLogger("fastpaca.store")

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

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_UNAVAILABLE = UNAVAILABLE
# an open connection that turned out dead, or one to a standby: worth one more try
_LOST: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    ConnectionResetError,
    BrokenPipeError,
)
_RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.UniqueViolationError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)

_UPDATE_COLUMNS = [c.strip() for c in CONTEXT_COLUMNS.split(",")][1:]
_SAVE_SQL = "UPDATE contexts SET {} WHERE id = $1".format(
    ", ".join(f"{c} = ${i}" for i, c in enumerate(_UPDATE_COLUMNS, start=2))
)
_CREATE_SQL = "INSERT INTO contexts ({}) VALUES ({})".format(
    CONTEXT_COLUMNS, ", ".join(f"${i}" for i in range(1, len(_UPDATE_COLUMNS) + 2))
)
_INSERT_MESSAGES_SQL = (
    f"INSERT INTO messages (context_id, {MESSAGE_COLUMNS}) "
    "SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], "
    "$6::bigint[], $7::bigint[], $8::bigint[], $9::timestamptz[])"
)
_INSERT_SUMMARY_SQL = (
    f"INSERT INTO summaries (context_id, {SUMMARY_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
# the database's clock decides expiry, so processes with skewed clocks agree
_TAKE_LEASE_SQL = (
    "INSERT INTO leases (context_id, holder, expires_at) "
    "VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) "
    "ON CONFLICT (context_id) DO UPDATE SET holder = EXCLUDED.holder, "
    "expires_at = EXCLUDED.expires_at "
    "WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= clock_timestamp() "
    "RETURNING holder"
)
_READ_MESSAGES_SQL = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages "
    "WHERE context_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
)


def _split_url(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    if schema is not None and not schema.replace("_", "").isalnum():
        raise ValidationError("store", "the schema name must be letters, digits and _")
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    return dsn, schema


class _PgTx:
    def __init__(self, conn: Conn, context_id: str, channel: str, token: str) -> None:
        self._conn = conn
        self.context_id = context_id
        self._channel = channel
        self._token = token

    async def load_context(self) -> ContextRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = $1 FOR UPDATE", self.context_id
        )
        return None if row is None else context_from_row(row)

    async def save_context(self, ctx: ContextRecord, *, created: bool) -> None:
        await self._conn.execute(_CREATE_SQL if created else _SAVE_SQL, *context_values(ctx))
        payload = f"{self._token}|{ctx.version}|{self.context_id}"
        await self._conn.execute("SELECT pg_notify($1, $2)", self._channel, payload)

    async def insert_messages(self, rows: list[StoredMessage]) -> None:
        await self._conn.execute(
            _INSERT_MESSAGES_SQL,
            self.context_id,
            [r.seq for r in rows],
            [r.role for r in rows],
            [dumps_str(r.parts) for r in rows],
            [dumps_str(r.metadata) for r in rows],
            [r.token_count for r in rows],
            [r.cum_tokens for r in rows],
            [r.version for r in rows],
            [r.inserted_at for r in rows],
        )

    async def read_messages(self, from_seq: int, to_seq: int) -> list[StoredMessage]:
        rows = await self._conn.fetch(_READ_MESSAGES_SQL, self.context_id, from_seq, to_seq)
        return [message_from_row(r) for r in rows]

    async def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        row = await self._conn.fetchrow(
            "SELECT request_hash, response, created_at FROM idempotency_keys "
            "WHERE context_id = $1 AND key = $2",
            self.context_id,
            key,
        )
        if row is None:
            return None
        return IdempotencyRecord(key, row[0], loads(row[1]), row[2])

    async def put_idempotency(self, record: IdempotencyRecord) -> None:
        await self._conn.execute(
            "INSERT INTO idempotency_keys (context_id, key, request_hash, response, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            self.context_id,
            record.key,
            record.request_hash,
            dumps_str(record.response),
            record.created_at,
        )

    async def insert_event(self, event: Event) -> None:
        await self._conn.execute(
            "INSERT INTO events (context_id, version, type, data) VALUES ($1, $2, $3, $4)",
            self.context_id,
            event.version,
            event.type,
            dumps_str(event.data),
        )

    async def insert_summary(self, record: SummaryRecord) -> None:
        await self._conn.execute(_INSERT_SUMMARY_SQL, self.context_id, *summary_values(record))

    async def take_lease(self, holder: str, ttl: float) -> bool:
        taken = await self._conn.fetchval(_TAKE_LEASE_SQL, self.context_id, holder, float(ttl))
        return taken is not None

    async def drop_lease(self, holder: str) -> None:
        await self._conn.execute(
            "DELETE FROM leases WHERE context_id = $1 AND holder = $2", self.context_id, holder
        )


async def _release(pool: asyncpg.Pool, conn: asyncpg.pool.PoolConnectionProxy) -> None:
    """Give ``conn`` back to the pool. When resetting it fails the pool drops
    it; that must not turn what ``fn`` did (perhaps a commit) into an error."""
    try:
        await pool.release(conn)
    except FAILED as exc:
        log.debug("dropped a broken pooled connection", extra={"fields": {"error": str(exc)}})


def _in_use(exc: BaseException) -> bool:
    """The error came from a connection that was open (not from connecting)."""
    return isinstance(exc, _LOST)


class _Unknown(StoreUnavailable):
    """The connection was lost while ``COMMIT`` was under way."""


class PostgresStore(Store):
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float | None = None,
    ) -> None:
        self.url = url
        self._dsn, self.schema = _split_url(url)
        self._min_size = min_size
        self._max_size = max_size
        self.timeout = timeout or DEFAULT_TIMEOUT
        self._pool: asyncpg.Pool | None = None
        self.channel = f"fastpaca_{self.schema or 'public'}"
        self._token = uuid.uuid4().hex

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = {"search_path": self.schema} if self.schema else None
        try:
            if self.schema:
                conn = await asyncpg.connect(self._dsn, timeout=self.timeout)
                try:
                    await conn.execute(
                        f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"', timeout=self.timeout
                    )
                finally:
                    await conn.close(timeout=self.timeout)
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=settings,
                timeout=self.timeout,  # connecting
                command_timeout=self.timeout,  # each statement
            )
            async with self._pool.acquire(timeout=_MIGRATE_TIMEOUT) as pooled:
                await self._migrate(pooled)
        except _UNAVAILABLE as exc:
            await self.close()
            raise StoreUnavailable(f"cannot reach PostgreSQL: {exc}") from exc
        except asyncpg.PostgresError as exc:
            await self.close()
            raise StoreError(f"PostgreSQL error while opening the store: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except FAILED:
                pool.terminate()

    async def _migrate(self, conn: Conn) -> None:
        timeout = _MIGRATE_TIMEOUT
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK, timeout=timeout)
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

    async def _guard(self, fn: Callable[[Conn], Awaitable[R]]) -> R:
        """Run ``fn`` on a pooled connection, translating driver errors.

        Waiting for a free pooled connection is load, not an outage, and is not
        timed; connecting is (``timeout``), and so is ``fn``: when it runs past
        ``timeout`` its connection is terminated, which fails whatever it awaits
        at once (the server rolls back), so the caller hears within the deadline
        and the pool connects afresh. A connection found dead inside ``fn``
        (stale after a restart) is replaced and ``fn`` tried once more, unless
        the deadline passed; serialisation failures, deadlocks and a lost
        insert race are retried a few times.
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        loop = asyncio.get_running_loop()
        retried_lost = False
        for remaining in range(_RETRIES, 0, -1):
            expired = False
            try:
                conn = await pool.acquire()

                def expire(conn: Conn = conn) -> None:
                    nonlocal expired
                    expired = True
                    conn.terminate()

                timer = loop.call_later(self.timeout, expire)
                try:
                    return await fn(conn)
                except FAILED as exc:
                    if isinstance(exc, _UNAVAILABLE) and not conn.is_closed():
                        conn.terminate()  # e.g. a standby after failover: never reuse it
                    raise
                finally:
                    timer.cancel()
                    await _release(pool, conn)
            except FastpacaError:
                raise
            except _UNAVAILABLE as exc:
                if expired:
                    raise StoreUnavailable(
                        f"PostgreSQL did not answer within {self.timeout:g} s"
                    ) from exc
                if retried_lost or remaining == 1 or not _in_use(exc):
                    raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
                retried_lost = True
            except _RETRYABLE as exc:
                if remaining == 1:
                    raise StoreError(f"PostgreSQL error: {exc}") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"PostgreSQL error: {exc}") from exc
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        async def ping(conn: Conn) -> None:
            await conn.fetchval("SELECT 1")

        await self._guard(ping)

    async def run(self, context_id: str, op: Op[R]) -> R:
        async def attempt(conn: Conn) -> R:
            committing = False
            try:
                async with conn.transaction():
                    result = await op(_PgTx(conn, context_id, self.channel, self._token))
                    committing = True  # leaving the block sends COMMIT
            except _UNAVAILABLE as exc:
                if committing:
                    conn.terminate()
                    raise _Unknown(
                        "PostgreSQL went away during COMMIT, so this write may or may not "
                        "have been applied; retry it with the same Idempotency-Key"
                    ) from exc
                raise
            return result

        return await self._guard(attempt)

    async def get_context(self, context_id: str) -> ContextRecord | None:
        async def read(conn: Conn) -> ContextRecord | None:
            row = await conn.fetchrow(
                f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = $1", context_id
            )
            return None if row is None else context_from_row(row)

        return await self._guard(read)

    async def read_window(
        self, context_id: str
    ) -> tuple[ContextRecord | None, list[StoredMessage]]:
        async def read(conn: Conn) -> tuple[ContextRecord | None, list[StoredMessage]]:
            row = await conn.fetchrow(
                f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = $1", context_id
            )
            if row is None:
                return None, []
            ctx = context_from_row(row)
            if ctx.live_from_seq > ctx.last_seq:
                return ctx, []
            rows = await conn.fetch(_READ_MESSAGES_SQL, context_id, ctx.live_from_seq, ctx.last_seq)
            return ctx, [message_from_row(r) for r in rows]

        return await self._guard(read)

    async def list_contexts(
        self, limit: int, after: tuple[datetime, str] | None, tenant: str | None = None
    ) -> list[ContextRecord]:
        where: list[str] = []
        args: list[object] = []
        if tenant == "":
            where.append("strpos(id, '/') = 0")
        elif tenant is not None:
            # byte order (index contexts_by_id_bytes): under a linguistic collation
            # '/' may sort anywhere, and the range would miss ids
            low, high = tenant_range(tenant)
            args.extend((low, high))
            where.append(f'id COLLATE "C" >= ${len(args) - 1} AND id COLLATE "C" < ${len(args)}')
        if after is not None:
            args.extend(after)
            where.append(f"(updated_at, id) < (${len(args) - 1}, ${len(args)})")
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        args.append(limit)
        sql = (
            f"SELECT {CONTEXT_COLUMNS} FROM contexts {clause}"
            f"ORDER BY updated_at DESC, id DESC LIMIT ${len(args)}"
        )

        async def read(conn: Conn) -> list[ContextRecord]:
            rows = await conn.fetch(sql, *args)
            return [context_from_row(r) for r in rows]

        return await self._guard(read)

    async def read_messages(
        self, context_id: str, from_seq: int, to_seq: int
    ) -> list[StoredMessage]:
        async def read(conn: Conn) -> list[StoredMessage]:
            rows = await conn.fetch(_READ_MESSAGES_SQL, context_id, from_seq, to_seq)
            return [message_from_row(r) for r in rows]

        return await self._guard(read)

    async def read_events(self, context_id: str, after_version: int, limit: int) -> list[Event]:
        async def read(conn: Conn) -> list[Event]:
            rows = await conn.fetch(
                "SELECT version, type, data FROM events WHERE context_id = $1 AND version > $2 "
                "ORDER BY version LIMIT $3",
                context_id,
                after_version,
                limit,
            )
            return [Event(context_id, r[1], int(r[0]), loads(r[2])) for r in rows]

        return await self._guard(read)

    async def list_summaries(
        self, context_id: str, limit: int, before_version: int | None
    ) -> list[SummaryRecord]:
        async def read(conn: Conn) -> list[SummaryRecord]:
            rows = await conn.fetch(
                f"SELECT {SUMMARY_COLUMNS} FROM summaries WHERE context_id = $1 "
                "AND ($2::bigint IS NULL OR version < $2) ORDER BY version DESC LIMIT $3",
                context_id,
                before_version,
                limit,
            )
            return [summary_from_row(r) for r in rows]

        return await self._guard(read)

    async def listen(
        self,
        callback: Callable[[str, int], None],
        on_reconnect: Callable[[], None] | None = None,
    ) -> Callable[[], Awaitable[None]]:
        """Call ``callback(context_id, version)`` for each change other stores commit.

        Uses one dedicated connection, which reconnects by itself when lost (then
        ``on_reconnect()`` is called: changes made meanwhile were not heard);
        returns the coroutine function that stops listening.
        """

        def on_notify(payload: str) -> None:
            token, _, rest = payload.partition("|")
            version, _, context_id = rest.partition("|")
            if token != self._token and version.isdigit() and context_id:
                callback(context_id, int(version))

        listener = Listener(
            self._dsn, self.channel, on_notify, on_reconnect=on_reconnect, timeout=self.timeout
        )
        await listener.start()
        return listener.stop

    async def drop_schema(self) -> None:
        """Remove this store's schema and everything in it (tests and tooling)."""
        if not self.schema:
            raise ValidationError("store", "drop_schema needs a URL with ?schema=")

        async def drop(conn: Conn) -> None:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

        await self._guard(drop)
