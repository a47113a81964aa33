"""Bad input at the engine boundary: a ValidationError naming the field; nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from fastpaca_core import Engine, ValidationError

from .helpers import text

BAD_MESSAGES: list[tuple[Any, str]] = [
    ({"parts": [{"type": "text", "text": "x"}]}, "message.role"),
    ({"role": "wizard", "parts": []}, "message.role"),
    ({"role": "user", "parts": "hello"}, "message.parts"),
    ({"role": "user"}, "message.parts"),
    ({"role": "user", "parts": [{"text": "no type"}]}, "message.parts[0].type"),
    ({"role": "user", "parts": [{"type": 7}]}, "message.parts[0].type"),
    ({"role": "user", "parts": ["text"]}, "message.parts[0]"),
    ({"role": "user", "parts": [], "token_count": -1}, "message.token_count"),
    ({"role": "user", "parts": [], "token_count": "12"}, "message.token_count"),
    ({"role": "user", "parts": [], "token_count": True}, "message.token_count"),
    ({"role": "user", "parts": [], "metadata": []}, "message.metadata"),
    ({"role": "user", "parts": [{"type": "x", "n": 2**70}]}, "message.parts"),
    ("not an object", "message"),
]


@pytest.mark.parametrize(("message", "field"), BAD_MESSAGES)
async def test_bad_message_names_field_and_writes_nothing(
    engine: Engine, message: Any, field: str
) -> None:
    await engine.put_context("c")
    await engine.append("c", text("user", "keep me"))
    before = (await engine.get_context("c")).to_json()
    with pytest.raises(ValidationError) as info:
        await engine.append("c", message)
    assert info.value.field == field
    assert field in str(info.value)
    assert (await engine.get_context("c")).to_json() == before
    assert [m.parts[0]["text"] for m in await engine.tail("c")] == ["keep me"]


BAD_CONFIG: list[tuple[dict[str, Any], str]] = [
    ({"token_budget": 0}, "token_budget"),
    ({"token_budget": -5}, "token_budget"),
    ({"token_budget": 1.5}, "token_budget"),
    ({"trigger_ratio": 0}, "trigger_ratio"),
    ({"trigger_ratio": 1.01}, "trigger_ratio"),
    ({"trigger_ratio": "0.5"}, "trigger_ratio"),
    ({"policy": {"strategy": "wizardry"}}, "policy.strategy"),
    ({"policy": {"strategy": "last_n", "config": {"limit": 0}}}, "policy.config.limit"),
    ({"policy": {"strategy": "last_n", "config": {"limit": -3}}}, "policy.config.limit"),
    (
        {"policy": {"strategy": "skip_parts", "config": {"skip_kinds": "tool"}}},
        "policy.config.skip_kinds",
    ),
    ({"policy": "last_n"}, "policy"),
    ({"metadata": "x"}, "metadata"),
]


@pytest.mark.parametrize(("options", "field"), BAD_CONFIG)
async def test_bad_config_names_field_and_writes_nothing(
    engine: Engine, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await engine.put_context("fresh", **options)
    assert info.value.field == field
    assert (await engine.list_contexts()).contexts == []
    await engine.put_context("c", token_budget=123)
    with pytest.raises(ValidationError):
        await engine.put_context("c", **options)
    assert (await engine.get_context("c")).token_budget == 123


# "tenant/id" is an internal id (http/tenants.py); a malformed tenant part is not
BAD_IDS = ["", "has space", "a/b/y", "/y", "t/", "a:b/y", "t" * 65 + "/y", "é", "x" * 257, "a?b"]


@pytest.mark.parametrize("context_id", BAD_IDS)
async def test_bad_context_ids(engine: Engine, context_id: str) -> None:
    with pytest.raises(ValidationError) as info:
        await engine.put_context(context_id)
    assert info.value.field == "id"
    with pytest.raises(ValidationError):
        await engine.append(context_id, text("user", "x"))
    assert (await engine.list_contexts()).contexts == []


async def test_longest_legal_id(engine: Engine) -> None:
    name = "A.b_c:d-" * 32
    assert len(name) == 256
    assert (await engine.put_context(name)).id == name


async def test_bad_operation_arguments(engine: Engine) -> None:
    await engine.put_context("c")
    await engine.append("c", text("user", "x"))
    cases: list[tuple[Any, str]] = [
        (engine.append("c", text("user", "y"), if_version=-1), "if_version"),
        (engine.append("c", text("user", "y"), idempotency_key=""), "idempotency_key"),
        (engine.append_batch("c", []), "messages"),
        (engine.append_batch("c", "nope"), "messages"),
        (engine.compact("c", "nope"), "replacement"),
        (engine.compact("c", [], up_to_seq=0), "up_to_seq"),
        (engine.window("c", budget_tokens=0), "budget_tokens"),
        (engine.messages("c", after_seq=-1), "after_seq"),
        (engine.update_metadata("c", ["x"]), "metadata"),
    ]
    for coro, field in cases:
        with pytest.raises(ValidationError) as info:
            await coro
        assert info.value.field == field
    assert (await engine.get_context("c")).last_seq == 1


@pytest.mark.parametrize("key", ["k\x00", "tab\tkey", "caf\u00e9", "line\u2028sep", "\ud800"])
async def test_idempotency_keys_are_printable_ascii(engine: Engine, key: str) -> None:
    """As the ``Idempotency-Key`` header must be; a PostgreSQL text column
    cannot hold NUL at all. Nothing is written."""
    await engine.put_context("k")
    with pytest.raises(ValidationError) as err:
        await engine.append("k", text("user", "x"), idempotency_key=key)
    assert err.value.field == "idempotency_key"
    with pytest.raises(ValidationError):
        await engine.compact("k", [text("user", "s")], idempotency_key=key)
    assert (await engine.get_context("k")).version == 0
    await engine.append("k", text("user", "x"), idempotency_key="plain-key_1.2~")


def test_a_version_cursor_past_64_bits_is_not_ours() -> None:
    from fastpaca_core.results import decode_version_cursor, encode_version_cursor

    assert decode_version_cursor(encode_version_cursor(2**63 - 1)) == 2**63 - 1
    for number in (2**63, 10**19 - 1):
        with pytest.raises(ValidationError) as err:
            decode_version_cursor(encode_version_cursor(number))
        assert err.value.field == "cursor"
