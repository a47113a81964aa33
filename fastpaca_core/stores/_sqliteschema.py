"""The SQLite store's schema (a numbered list of migrations) and where it lives.

:meth:`.sqlite.SQLiteStore.open` applies the migrations a database has not
seen yet, in one write transaction, and records each in ``schema_version``;
:func:`path_of` reads the file's path from a store URL.
"""

from __future__ import annotations

from ..errors import ValidationError

__all__ = ["MIGRATIONS", "path_of"]

MIGRATIONS: list[str] = [
    # 1: the log, contexts with their window, idempotency keys, stored events
    """
    CREATE TABLE contexts (
        id TEXT PRIMARY KEY,
        token_budget INTEGER NOT NULL,
        trigger_ratio REAL NOT NULL,
        policy TEXT NOT NULL,
        metadata TEXT NOT NULL,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        prefix TEXT NOT NULL,
        live_from_seq INTEGER NOT NULL,
        live_base_tokens INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX contexts_by_update ON contexts (updated_at DESC, id DESC);
    CREATE TABLE messages (
        context_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        parts TEXT NOT NULL,
        metadata TEXT NOT NULL,
        token_count INTEGER NOT NULL,
        cum_tokens INTEGER NOT NULL,
        version INTEGER NOT NULL,
        inserted_at TEXT NOT NULL,
        PRIMARY KEY (context_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency_keys (
        context_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (context_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        context_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (context_id, version)
    ) WITHOUT ROWID;
    """,
    # 2: token calibration, summary records, summariser leases
    """
    ALTER TABLE contexts ADD COLUMN calibration REAL NOT NULL DEFAULT 1.0;
    ALTER TABLE contexts ADD COLUMN calibration_samples INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE summaries (
        context_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        from_seq INTEGER NOT NULL,
        to_seq INTEGER NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_sha256 TEXT NOT NULL,
        token_count INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (context_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE leases (
        context_id TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
]


def path_of(url: str) -> str:
    """The database file of ``sqlite:///path`` (any ``?query`` left out).

    ``:memory:`` is refused: SQLite would give each of the store's connections
    (the writer's, the readers') a database of its own, and a read would find
    no tables whenever it did not run on the writer's; ``memory://`` is the
    in-memory store.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValidationError(
            "store", "SQLite URLs look like sqlite:///relative.db or sqlite:////abs.db"
        )
    path = url[len(prefix) :].split("?", 1)[0]
    if path == ":memory:":
        raise ValidationError(
            "store", "sqlite:///:memory: cannot be shared by the store's connections; use memory://"
        )
    return path
