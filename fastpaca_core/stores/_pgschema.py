"""The PostgreSQL store's schema: a numbered list of migrations.

:meth:`.postgres.PostgresStore.open` applies the ones a database has not seen
yet, under an advisory lock, and records each in ``schema_version``.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

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
