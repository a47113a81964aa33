"""Every store backend, through the engine, against a model in plain Python.

A hypothesis state machine drives a few contexts with every write the engine
offers (create/update, single and batch appends with and without idempotency
keys and ``if_version``, compaction of all or part of the window, metadata,
tombstones) and, on durable backends, restarts: the store is closed and
opened again from the same URL. After every step each context is read back
whole (the row, the full log, tail and forward pages, the window) and
compared with the model: seqs gapless, log and window equal to the model,
version and last_seq as counted, tombstoned contexts refuse writes, unknown
ones answer not-found.

Contexts use the ``manual`` policy, so the window is exactly what the
appends and compactions made it (no policy trims it behind the model's back);
policies have their own property tests. Token counts are given with every
message, so the model knows them without a tokenizer.

Hypothesis state machines are synchronous; each machine runs its own event
loop. One test per backend (``store_url``: memory, SQLite file, PostgreSQL
schema of the test's own); ids are unique per machine, so the examples of one
run share the store without seeing each other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from fastpaca_core import Engine, open_store
from fastpaca_core.errors import (
    ContextNotFound,
    ContextTombstoned,
    FastpacaError,
    IdempotencyKeyReused,
    ValidationError,
    VersionConflict,
)
from fastpaca_core.results import request_hash

T = TypeVar("T")

NAMES = ("a", "b", "c")
KEYS = ("k1", "k2", "k3", "k4")
MANUAL = {"strategy": "manual", "config": {}}

# -- strategies ---------------------------------------------------------------

part = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=12)),
    st.builds(
        lambda v: {"type": "data-note", "data": v},
        st.one_of(st.integers(-(2**40), 2**40), st.booleans(), st.none(), st.text(max_size=5)),
    ),
)
metadata = st.dictionaries(st.text(max_size=4), st.integers(0, 9) | st.text(max_size=4), max_size=2)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant", "tool"]),
        "parts": st.lists(part, max_size=3),
        "token_count": st.integers(0, 60),
    },
    optional={"metadata": metadata},
)
names = st.sampled_from(NAMES)
keys = st.none() | st.sampled_from(KEYS)
# how if_version is sent: absent, the current version, or another one
version_modes = st.sampled_from(["none", "right", "wrong"])


@dataclass
class Item:
    """One message of the modelled window."""

    kind: str
    from_seq: int
    to_seq: int
    role: str
    parts: list[dict[str, Any]]
    metadata: dict[str, Any]
    tokens: int


@dataclass
class Model:
    """What one context should hold."""

    budget: int
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # role, parts, metadata, token_count
    window: list[Item] = field(default_factory=list)
    tombstoned: bool = False
    keys: dict[str, tuple[str, Any]] = field(default_factory=dict)  # key -> (digest, result)

    @property
    def last_seq(self) -> int:
        return len(self.log)


def normal(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": m["role"],
        "parts": m["parts"],
        "metadata": m.get("metadata", {}),
        "token_count": m["token_count"],
    }


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.run_id = uuid.uuid4().hex[:10]
        self.models: dict[str, Model] = {}
        # (name, key) -> the request first sent with that key: (kind, args)
        self.requests: dict[tuple[str, str], tuple[str, Any]] = {}
        self.engine = self._open()
        self.restarts = 0

    # -- plumbing ---------------------------------------------------------------

    def _open(self) -> Engine:
        store = open_store(self.url)
        self.run(store.open())
        return Engine(store)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def expect(self, error: type[FastpacaError], coro: Coroutine[Any, Any, object]) -> None:
        try:
            result = self.run(coro)
        except FastpacaError as exc:
            assert type(exc) is error, f"expected {error.__name__}, got {exc!r}"
        else:
            raise AssertionError(f"expected {error.__name__}, got {result!r}")

    def cid(self, name: str) -> str:
        return f"m-{self.run_id}-{name}"

    def teardown(self) -> None:
        try:
            self.run(self.engine.store.close())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    def if_version(self, model: Model | None, mode: str, wrong: int) -> int | None:
        if mode == "none":
            return None
        current = model.version if model is not None else 0
        if mode == "right":
            return current
        return current + wrong

    def gate(self, name: str, key: str | None, digest: str, if_version: int | None) -> Any:
        """The error a write must answer with (class), the replayed result, or None."""
        model = self.models.get(name)
        if model is None:
            return ContextNotFound
        if key is not None and key in model.keys:  # a retry is answered, tombstone or not
            stored_digest, result = model.keys[key]
            return ("replay", result) if stored_digest == digest else IdempotencyKeyReused
        if model.tombstoned:
            return ContextTombstoned
        if if_version is not None and if_version != model.version:
            return VersionConflict
        return None

    # -- contexts ---------------------------------------------------------------

    @initialize(budget=st.integers(1, 2000))
    def start(self, budget: int) -> None:
        """Two contexts exist from the start; the third may be created later."""
        for name in NAMES[:2]:
            self.put_context(name, budget, None)

    @rule(name=names, budget=st.none() | st.integers(1, 2000), meta=st.none() | metadata)
    def put_context(self, name: str, budget: int | None, meta: dict[str, Any] | None) -> None:
        model = self.models.get(name)
        call = self.engine.put_context(
            self.cid(name),
            token_budget=budget,
            policy=MANUAL if model is None else None,
            metadata=meta,
        )
        ctx = self.run(call)  # a tombstoned context's settings stay settable
        if model is None:
            model = self.models[name] = Model(budget=budget or 8000)
        elif budget is not None:
            model.budget = budget
        if meta is not None:
            model.metadata = meta
        assert ctx.version == model.version and ctx.last_seq == model.last_seq
        assert ctx.policy.strategy == "manual"

    @rule(name=names, patch=metadata)
    def update_metadata(self, name: str, patch: dict[str, Any]) -> None:
        model = self.models.get(name)
        call = self.engine.update_metadata(self.cid(name), patch)
        if model is None:
            self.expect(ContextNotFound, call)
            return
        ctx = self.run(call)
        model.metadata = {**model.metadata, **patch}
        assert ctx.metadata == model.metadata

    @rule(name=names, really=st.integers(0, 2))
    def delete(self, name: str, really: int) -> None:
        if really:  # a tombstone ends a context's story: keep them rarer than writes
            return
        model = self.models.get(name)
        call = self.engine.delete_context(self.cid(name))
        if model is None:
            self.expect(ContextNotFound, call)
            return
        self.run(call)
        if not model.tombstoned:
            model.tombstoned = True
            model.version += 1

    # -- appends ----------------------------------------------------------------

    def _append(
        self,
        name: str,
        messages: list[dict[str, Any]],
        batch: bool,
        key: str | None,
        if_version: int | None,
    ) -> None:
        digest = request_hash(
            {
                "op": "append_batch" if batch else "append",
                "messages": [normal(m) for m in messages],
                "if_version": if_version,
                "rewind_to_seq": None,
            }
        )
        cid = self.cid(name)
        call = (
            self.engine.append_batch(cid, messages, if_version=if_version, idempotency_key=key)
            if batch
            else self.engine.append(cid, messages[0], if_version=if_version, idempotency_key=key)
        )
        outcome = self.gate(name, key, digest, if_version)
        if isinstance(outcome, type):
            self.expect(outcome, call)
            return
        result = self.run(call)
        got = (result.version, result.seqs, result.token_estimates)
        if outcome is not None:  # an idempotent replay: the first result, nothing written
            assert result.replayed and got == outcome[1]
            return
        model = self.models[name]
        first = model.last_seq + 1
        for m in messages:
            model.log.append(normal(m))
            seq = model.last_seq
            model.window.append(
                Item(
                    "live", seq, seq, m["role"], m["parts"], normal(m)["metadata"], m["token_count"]
                )
            )
        model.version += len(messages)
        expected = (
            model.version,
            list(range(first, model.last_seq + 1)),
            [m["token_count"] for m in messages],
        )
        assert got == expected and not result.replayed
        if key is not None:
            model.keys[key] = (digest, expected)
            self.requests[(name, key)] = (
                "append_batch" if batch else "append",
                (messages, if_version),
            )

    @rule(name=names, m=message, key=keys, mode=version_modes, wrong=st.sampled_from([1, 3]))
    def append(self, name: str, m: dict[str, Any], key: str | None, mode: str, wrong: int) -> None:
        if_version = self.if_version(self.models.get(name), mode, wrong)
        self._append(name, [m], False, key, if_version)

    @rule(
        name=names,
        ms=st.lists(message, min_size=1, max_size=4),
        key=keys,
        mode=version_modes,
        wrong=st.sampled_from([1, 3]),
    )
    def append_batch(
        self, name: str, ms: list[dict[str, Any]], key: str | None, mode: str, wrong: int
    ) -> None:
        if_version = self.if_version(self.models.get(name), mode, wrong)
        self._append(name, ms, True, key, if_version)

    # -- replaying a key that was used before ----------------------------------------

    @precondition(lambda self: any(m.keys for m in self.models.values()))
    @rule(data=st.data(), same=st.booleans())
    def replay_key(self, data: st.DataObject, same: bool) -> None:
        """Send again what an earlier request with this key sent (``same``), or
        something else under the same key."""
        name = data.draw(st.sampled_from(sorted(n for n, m in self.models.items() if m.keys)))
        model = self.models[name]
        key = data.draw(st.sampled_from(sorted(model.keys)))
        kind, args = self.requests[(name, key)]
        if not same:  # longer than any generated text: never the first request
            other = {"role": "user", "parts": [{"type": "text", "text": f"other than {key}!"}]}
            kind, args = "append", ([{**other, "token_count": 1}], None)
        if kind == "compact":
            replacement, if_version, upto = args
            self._compact(name, replacement, upto, key, if_version)
        else:
            messages, if_version = args
            self._append(name, messages, kind == "append_batch", key, if_version)

    # -- compaction -------------------------------------------------------------

    def _compact(
        self,
        name: str,
        replacement: list[dict[str, Any]],
        upto: int | None,
        key: str | None,
        if_version: int | None,
    ) -> None:
        digest = request_hash(
            {
                "op": "compact",
                "replacement": [normal(m) for m in replacement],
                "if_version": if_version,
                "up_to_seq": upto,
            }
        )
        call = self.engine.compact(
            self.cid(name), replacement, if_version=if_version, up_to_seq=upto, idempotency_key=key
        )
        outcome = self.gate(name, key, digest, if_version)
        model = self.models.get(name)
        if outcome is None and model is not None and upto is not None and upto > model.last_seq:
            outcome = ValidationError
        if isinstance(outcome, type):
            self.expect(outcome, call)
            return
        version = self.run(call)
        if outcome is not None:
            assert version == outcome[1]
            return
        assert model is not None
        items = model.window
        if upto is None:
            replaced, kept = items, []
            cover_to = model.last_seq
        else:
            cut = sum(1 for item in items if item.from_seq <= upto)
            replaced, kept = items[:cut], items[cut:]
            cover_to = max([upto, *(item.to_seq for item in replaced)])
        cover_from = min((item.from_seq for item in replaced), default=min(1, cover_to))
        summary = [
            Item(
                "summary",
                cover_from,
                cover_to,
                m["role"],
                m["parts"],
                normal(m)["metadata"],
                m["token_count"],
            )
            for m in replacement
        ]
        model.window = summary + kept
        model.version += 1
        assert version == model.version
        if key is not None:
            model.keys[key] = (digest, model.version)
            self.requests[(name, key)] = ("compact", (replacement, if_version, upto))

    @rule(
        name=names,
        replacement=st.lists(message, max_size=2),
        back=st.none() | st.integers(-1, 5),
        key=keys,
        mode=version_modes,
        wrong=st.sampled_from([1, 2]),
    )
    def compact(
        self,
        name: str,
        replacement: list[dict[str, Any]],
        back: int | None,
        key: str | None,
        mode: str,
        wrong: int,
    ) -> None:
        """``back``: up_to_seq that many seqs before the newest (-1: one past it)."""
        model = self.models.get(name)
        if_version = self.if_version(model, mode, wrong)
        last = model.last_seq if model is not None else 0
        upto = None if back is None else max(1, last - back)
        self._compact(name, replacement, upto, key, if_version)

    # -- reads and restarts --------------------------------------------------------

    @rule(name=names, offset=st.integers(0, 14), limit=st.integers(1, 14), reopen=st.booleans())
    def tail(self, name: str, offset: int, limit: int, reopen: bool) -> None:
        if reopen:
            self.restart()
        model = self.models.get(name)
        call = self.engine.tail(self.cid(name), offset=offset, limit=limit)
        if model is None:
            self.expect(ContextNotFound, call)
            return
        rows = self.run(call)
        to_seq = model.last_seq - offset
        want = list(range(max(1, to_seq - limit + 1), to_seq + 1)) if to_seq >= 1 else []
        assert [r.seq for r in rows] == want
        assert [self.row(r) for r in rows] == [model.log[s - 1] for s in want]

    @rule(name=names, after=st.integers(0, 14), limit=st.integers(1, 14), reopen=st.booleans())
    def page_forward(self, name: str, after: int, limit: int, reopen: bool) -> None:
        if reopen:
            self.restart()
        model = self.models.get(name)
        call = self.engine.messages(self.cid(name), after_seq=after, limit=limit)
        if model is None:
            self.expect(ContextNotFound, call)
            return
        rows = self.run(call)
        want = list(range(after + 1, min(model.last_seq, after + limit) + 1))
        assert [r.seq for r in rows] == want
        assert [self.row(r) for r in rows] == [model.log[s - 1] for s in want]

    @precondition(lambda self: not self.url.startswith("memory:"))
    @rule()
    def restart(self) -> None:
        """Close the store and open it again from its URL: nothing is lost.

        (Reads restart first half the time too, so restarts are frequent; a
        memory store cannot restart.)"""
        if self.url.startswith("memory:"):
            return
        self.run(self.engine.store.close())
        self.engine = self._open()
        self.restarts += 1

    # -- invariants ---------------------------------------------------------------

    @staticmethod
    def row(r: Any) -> dict[str, Any]:
        return {
            "role": r.role,
            "parts": r.parts,
            "metadata": r.metadata,
            "token_count": r.token_count,
        }

    @invariant()
    def store_matches_model(self) -> None:
        for name in NAMES:
            cid = self.cid(name)
            model = self.models.get(name)
            if model is None:
                self.expect(ContextNotFound, self.engine.get_context(cid))
                self.expect(ContextNotFound, self.engine.window(cid))
                continue
            ctx = self.run(self.engine.get_context(cid))
            assert (ctx.version, ctx.last_seq) == (model.version, model.last_seq)
            assert ctx.status == ("tombstoned" if model.tombstoned else "active")
            assert ctx.metadata == model.metadata and ctx.token_budget == model.budget
            # paging forward in steps of 3 reads the whole log, gapless
            rows: list[Any] = []
            while True:
                after = rows[-1].seq if rows else 0
                page = self.run(self.engine.messages(cid, after_seq=after, limit=3))
                if not page:
                    break
                rows.extend(page)
            assert [r.seq for r in rows] == list(range(1, model.last_seq + 1))
            assert [self.row(r) for r in rows] == model.log
            window = self.run(self.engine.window(cid))
            got = [
                (
                    i.kind,
                    i.from_seq,
                    i.to_seq,
                    i.message.role,
                    i.message.parts,
                    i.message.metadata,
                    i.tokens,
                )
                for i in window.items
            ]
            want = [
                (i.kind, i.from_seq, i.to_seq, i.role, i.parts, i.metadata, i.tokens)
                for i in model.window
            ]
            assert got == want
            assert window.version == model.version
            used = sum(i.tokens for i in model.window)
            assert window.used_tokens == used
            assert window.needs_compaction == (used > model.budget * 0.7)


def run_machine(url: str, examples: int, steps: int) -> None:
    run_state_machine_as_test(
        lambda: StoreMachine(url),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_store_matches_the_model(store_url: str) -> None:
    run_machine(store_url, examples=25, steps=30)
