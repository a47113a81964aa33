"""Well-formed requests carrying values no store column can hold: always 400, never 5xx.

Each case is a syntactically valid request whose value used to get past
validation and fail in the store (a 500) or later in the background:

- a summaries ``cursor`` naming a version past 2**63-1 (SQLite ``OverflowError``,
  PostgreSQL ``store_error``);
- an ``idempotency_key`` in the JSON body with NUL or control characters
  (PostgreSQL text columns cannot hold NUL); the rule is the header's:
  printable ASCII;
- a ``summarize`` policy whose ``model`` or ``instructions`` hold NUL or
  control characters (accepted, then the summariser failed on every wake-up).

Each runs on SQLite and on PostgreSQL (which must answer under ``CI=true``),
asserts the canonical error shape and the field it names, and that the stored
data reads back byte-identical afterwards.
"""

from __future__ import annotations

import base64
from functools import partial
from typing import Any

import pytest
from live_api import Answer, Server, Start

from fastpaca_core.folding import plan_fold
from fastpaca_core.http.state import ENGINE

MAX_INT = 2**63 - 1
CID = "keep"
SUMMARIZE: dict[str, Any] = {
    "strategy": "summarize",
    "config": {"model": "m", "provider": "openai", "keep_last": 2},
}


def text(i: int) -> dict[str, Any]:
    role = "user" if i % 2 == 0 else "assistant"
    return {"role": role, "parts": [{"type": "text", "text": f"message {i}"}]}


def version_cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def assert_invalid(answer: Answer, field: str) -> None:
    """A 400 in the canonical shape, naming ``field``."""
    assert answer.status == 400, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] == "invalid_request", body
    assert body["message"].startswith(f"{field}: "), body


async def seed(server: Server) -> None:
    """Context ``keep``: a ``summarize`` policy, five messages and one summary record."""
    put = await server.call("PUT", f"/v1/contexts/{CID}", json={"policy": SUMMARIZE})
    assert put.status == 200, put.body
    for i in range(5):
        said = await server.call("POST", f"/v1/contexts/{CID}/messages", json={"message": text(i)})
        assert said.status == 201, said.body
    engine = server.app[ENGINE]
    ctx, rows = await engine.store.read_window(CID)
    assert ctx is not None
    plan = await plan_fold(
        ctx,
        rows,
        keep_last=2,
        max_tokens=10_000,
        read_log=partial(engine.store.read_messages, CID),
    )
    assert plan is not None
    record = await engine.apply_summary(
        plan, "the story so far", provider="openai", model="m", prompt_sha256="0" * 64
    )
    assert record is not None


async def snapshot(server: Server) -> list[bytes]:
    """Everything stored about ``keep``, as the API returns it."""
    paths = [
        f"/v1/contexts/{CID}",
        f"/v1/contexts/{CID}/tail?limit=1000",
        f"/v1/contexts/{CID}/messages?after_seq=0&limit=1000",
        f"/v1/contexts/{CID}/context",
        f"/v1/contexts/{CID}/summaries",
        "/v1/contexts",
    ]
    bodies = []
    for path in paths:
        answer = await server.call("GET", path)
        assert answer.status == 200, (path, answer.status, answer.body)
        bodies.append(answer.body)
    return bodies


@pytest.fixture
async def server(start: Start, durable_url: str) -> Server:
    server = await start(store=durable_url)
    await seed(server)
    return server


# -- Bug A: cursors past int64 ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [f"v|{MAX_INT + 1}", "v|9999999999999999999"],
)
async def test_a_summaries_cursor_past_int64_is_400(server: Server, raw: str) -> None:
    before = await snapshot(server)
    answer = await server.call(
        "GET", f"/v1/contexts/{CID}/summaries", params={"cursor": version_cursor(raw)}
    )
    assert_invalid(answer, "cursor")
    assert await snapshot(server) == before


async def test_the_largest_summaries_cursor_still_pages(server: Server) -> None:
    answer = await server.call(
        "GET", f"/v1/contexts/{CID}/summaries", params={"cursor": version_cursor(f"v|{MAX_INT}")}
    )
    assert answer.status == 200, answer.body
    page = answer.json()
    assert [r["model"] for r in page["summaries"]] == ["m"] and page["next_cursor"] is None


@pytest.mark.parametrize(
    "raw",
    ["0001-01-01T00:00:00.000000Z|a", "9999-12-31T23:59:59.999999Z|a"],
)
async def test_contexts_cursors_at_the_ends_of_time_page(server: Server, raw: str) -> None:
    """The contexts cursor holds a timestamp (years 1-9999, which both stores
    hold) and a checked id: no value of it overflows a column."""
    answer = await server.call("GET", "/v1/contexts", params={"cursor": version_cursor(raw)})
    assert answer.status == 200, answer.body
    ids = [c["id"] for c in answer.json()["contexts"]]
    assert ids == ([CID] if raw.startswith("9999") else [])


async def test_a_contexts_cursor_with_a_bad_id_is_400(server: Server) -> None:
    forged = version_cursor("2024-01-01T00:00:00.000000Z|" + "a" * 257)
    before = await snapshot(server)
    answer = await server.call("GET", "/v1/contexts", params={"cursor": forged})
    assert_invalid(answer, "cursor")
    assert await snapshot(server) == before


# -- Bug B1: idempotency keys in the body -----------------------------------------

BAD_KEYS = ["k\x00", "\x00", "k\x01", "k\n", "k\t", "k\x7f", "k\x85", "kéy", "k\u2028"]


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize("route", ["messages", "compact"])
async def test_a_body_idempotency_key_with_control_characters_is_400(
    server: Server, route: str, key: str
) -> None:
    before = await snapshot(server)
    body: dict[str, Any] = (
        {"message": text(9)} if route == "messages" else {"replacement": [text(9)]}
    )
    answer = await server.call(
        "POST", f"/v1/contexts/{CID}/{route}", json={**body, "idempotency_key": key}
    )
    assert_invalid(answer, "idempotency_key")
    assert await snapshot(server) == before


async def test_a_printable_ascii_body_key_still_replays(server: Server) -> None:
    key = " k-1 ~!\"#$%&'()*+,./:;<=>?@[\\]^_`{|} "
    body = {"message": text(9), "idempotency_key": key}
    first = await server.call("POST", f"/v1/contexts/{CID}/messages", json=body)
    assert first.status == 201, first.body
    middle = await snapshot(server)
    again = await server.call("POST", f"/v1/contexts/{CID}/messages", json=body)
    assert again.status == 201 and again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await snapshot(server) == middle
    assert first.json()["seq"] == 6


# -- Bug B2: summarize policy settings ----------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"model": "m\x00"}, "policy.config.model"),
        ({"model": "\x00"}, "policy.config.model"),
        ({"model": "m\n"}, "policy.config.model"),
        ({"model": "m\x1b[0m"}, "policy.config.model"),
        ({"model": "m\x9f"}, "policy.config.model"),
        ({"model": "m\u2028"}, "policy.config.model"),
        ({"model": "m", "provider": "openai\x00"}, "policy.config.provider"),
        ({"model": "m", "instructions": "be brief\x00"}, "policy.config.instructions"),
        ({"model": "m", "instructions": "be\x07brief"}, "policy.config.instructions"),
    ],
)
async def test_a_summarize_setting_with_control_characters_is_400(
    server: Server, config: dict[str, Any], field: str
) -> None:
    before = await snapshot(server)
    policy = {"strategy": "summarize", "config": config}
    update = await server.call("PUT", f"/v1/contexts/{CID}", json={"policy": policy})
    assert_invalid(update, field)
    created = await server.call("PUT", "/v1/contexts/fresh", json={"policy": policy})
    assert_invalid(created, field)
    assert await snapshot(server) == before
    missing = await server.call("GET", "/v1/contexts/fresh")
    assert missing.status == 404 and missing.json()["error"] == "context_not_found"


async def test_multiline_instructions_are_still_accepted(server: Server) -> None:
    config = {**SUMMARIZE["config"], "model": "vendor/model:8b v2", "instructions": "a\n\tb\r\n"}
    policy = {"strategy": "summarize", "config": config}
    answer = await server.call("PUT", f"/v1/contexts/{CID}", json={"policy": policy})
    assert answer.status == 200, answer.body
    stored = (await server.call("GET", f"/v1/contexts/{CID}")).json()["policy"]["config"]
    assert stored["model"] == "vendor/model:8b v2" and stored["instructions"] == "a\n\tb\r\n"
