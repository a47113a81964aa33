"""Errors Fastpaca itself raises on proxy routes (auth, rate limit, body size),
as the real SDKs see them: in the provider's own error shape, so each SDK
raises its own typed exception carrying our message; and the proxy's own,
larger body limit (prompts with images)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from fastpaca_proxy.fake_upstream import Reply

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack, run_stack

KEY = "fp-key"
QUESTION = [{"role": "user", "content": "hi"}]
NO_KEY = "Missing or invalid API key"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Stack]:
    with run_stack(f"sqlite:///{tmp_path / 'keyed.db'}", api_key=KEY) as running:
        yield running


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Stack]:
    """One request per client now, then one in 100 s."""
    with run_stack(f"sqlite:///{tmp_path / 'rate.db'}", rate_limit=0.01, rate_burst=1) as running:
        yield running


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Stack]:
    """REST bodies up to 4 KiB, proxy bodies up to 64 KiB."""
    with run_stack(
        f"sqlite:///{tmp_path / 'small.db'}", max_body_bytes=4096, proxy_max_body_bytes=65536
    ) as running:
        yield running


def openai_sdk(stack: Stack, base_url: str, api_key: str = "sk-client", **kw: Any) -> openai.OpenAI:
    return stack.track(openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, **kw))


def anthropic_sdk(stack: Stack, context_id: str, **kw: Any) -> anthropic.Anthropic:
    return stack.track(
        anthropic.Anthropic(
            base_url=stack.anthropic_url(context_id), api_key="sk-ant", max_retries=0, **kw
        )
    )


def image(size: int) -> str:
    """A base64 "image" of about ``size`` bytes."""
    return base64.b64encode(b"\x89PNG" + bytes(size * 3 // 4)).decode()


def image_chat(data: str) -> list[dict[str, Any]]:
    url = f"data:image/png;base64,{data}"
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def image_message(data: str) -> list[dict[str, Any]]:
    source = {"type": "base64", "media_type": "image/png", "data": data}
    content = [{"type": "text", "text": "what is this?"}, {"type": "image", "source": source}]
    return [{"role": "user", "content": content}]


def assert_openai_error(exc: openai.APIStatusError, kind: str, code: str, message: str) -> None:
    """The SDK read the body as OpenAI's error object: its fields are ours."""
    assert exc.body == {"message": message, "type": kind, "param": None, "code": code}
    assert (exc.type, exc.code, exc.param) == (kind, code, None)
    assert message in exc.message


def assert_anthropic_error(exc: anthropic.APIStatusError, kind: str, message: str) -> None:
    assert exc.body == {"type": "error", "error": {"type": kind, "message": message}}
    assert (exc.type, exc.api_message) == (kind, message)
    assert message in exc.message


# -- auth ---------------------------------------------------------------------------


def test_openai_sdk_with_a_wrong_key_gets_authentication_error(keyed: Stack) -> None:
    by_path = openai_sdk(keyed, keyed.openai_url("auth"), api_key="wrong")
    by_header = openai_sdk(
        keyed, f"{keyed.base}/v1", api_key="wrong", default_headers={"X-Fastpaca-Context": "auth"}
    )
    calls = [
        lambda: by_path.chat.completions.create(model=OPENAI_MODEL, messages=QUESTION),
        lambda: by_path.responses.create(model=OPENAI_MODEL, input="hi"),
        lambda: by_path.models.list(),
        lambda: by_header.chat.completions.create(model=OPENAI_MODEL, messages=QUESTION),
        lambda: by_header.responses.create(model=OPENAI_MODEL, input="hi"),
        lambda: by_header.models.retrieve(OPENAI_MODEL),
    ]
    for call in calls:
        with pytest.raises(openai.AuthenticationError) as info:
            call()
        assert info.value.status_code == 401
        assert_openai_error(info.value, "authentication_error", "unauthorized", NO_KEY)
        assert info.value.response.headers["www-authenticate"] == "Bearer"
    assert keyed.fake.requests == []
    # the right key as the SDK's api_key: served
    keyed.fake.script(Reply(text="hello"))
    good = openai_sdk(keyed, keyed.openai_url("auth"), api_key=KEY)
    reply = good.chat.completions.create(model=OPENAI_MODEL, messages=QUESTION)
    assert reply.choices[0].message.content == "hello"


async def test_anthropic_sdk_with_a_wrong_key_gets_authentication_error(keyed: Stack) -> None:
    # Anthropic's SDK sends its key as x-api-key: ours goes in X-Fastpaca-Key
    for base_url, headers in (
        (keyed.anthropic_url("auth"), {"X-Fastpaca-Key": "wrong"}),
        (keyed.base, {"X-Fastpaca-Context": "auth"}),  # no Fastpaca key at all
    ):
        async with anthropic.AsyncAnthropic(
            base_url=base_url, api_key="sk-ant", max_retries=0, default_headers=headers
        ) as sdk:
            with pytest.raises(anthropic.AuthenticationError) as info:
                await sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=5, messages=QUESTION)
        assert info.value.status_code == 401
        assert_anthropic_error(info.value, "authentication_error", NO_KEY)
        assert info.value.response.headers["www-authenticate"] == "Bearer"
    assert keyed.fake.requests == []
    # REST routes keep Fastpaca's own shape
    rest = keyed.api.get("/v1/contexts", headers={"Authorization": "Bearer wrong"})
    assert rest.status_code == 401
    assert rest.json() == {"error": "unauthorized", "message": NO_KEY}


# -- rate limit ---------------------------------------------------------------------


def test_rate_limited_proxy_calls_raise_the_sdks_rate_limit_error(limited: Stack) -> None:
    limited.fake.script(Reply(text="first"))
    sdk = openai_sdk(limited, limited.openai_url("rate"))
    assert sdk.chat.completions.create(model=OPENAI_MODEL, messages=QUESTION).id
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=QUESTION)
    message = "Too many requests; slow down"
    assert_openai_error(info.value, "rate_limit_error", "rate_limited", message)
    retry_after = info.value.response.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 100
    with pytest.raises(anthropic.RateLimitError) as refused:
        anthropic_sdk(limited, "rate").messages.create(
            model=ANTHROPIC_MODEL, max_tokens=5, messages=QUESTION
        )
    assert_anthropic_error(refused.value, "rate_limit_error", message)
    assert refused.value.response.headers["retry-after"].isdigit()
    assert len(limited.fake.requests) == 1


# -- body size ----------------------------------------------------------------------


def test_proxy_bodies_have_their_own_larger_limit(small: Stack) -> None:
    sdk = openai_sdk(small, small.openai_url("img"))
    small.fake.script(Reply(text="a picture"))
    data = image(30_000)  # over max_body_bytes, under proxy_max_body_bytes
    reply = sdk.chat.completions.create(model=OPENAI_MODEL, messages=image_chat(data))
    assert reply.choices[0].message.content == "a picture"
    assert data.encode() in small.fake.last.raw_body
    log = small.log("img")
    assert [m["role"] for m in log] == ["user", "assistant"]
    assert data in str(log[0]["parts"])
    small.fake.script(Reply(text="a picture too"))
    claude = anthropic_sdk(small, "img-a")
    answer = claude.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=5, messages=image_message(data)
    )
    assert answer.content[0].text == "a picture too"  # type: ignore[union-attr]
    assert [m["role"] for m in small.log("img-a")] == ["user", "assistant"]
    # over proxy_max_body_bytes: 413, in the provider's shape; nothing sent or stored
    sent = len(small.fake.requests)
    too_big = image(100_000)
    message = "Request body exceeds 65536 bytes"
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=image_chat(too_big))
    assert info.value.status_code == 413
    assert_openai_error(info.value, "invalid_request_error", "payload_too_large", message)
    with pytest.raises(anthropic.RequestTooLargeError) as refused:
        claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=5, messages=image_message(too_big))
    assert_anthropic_error(refused.value, "request_too_large", message)
    assert len(small.fake.requests) == sent
    assert len(small.log("img")) == 2
    # a REST append keeps max_body_bytes, and Fastpaca's error shape
    assert_rest_append_too_large(small, "img", 5000, 4096)


def assert_rest_append_too_large(stack: Stack, cid: str, size: int, limit: int) -> None:
    """A REST append keeps ``max_body_bytes`` and Fastpaca's own error shape."""
    part = {"type": "text", "text": "x" * size}
    answer = stack.api.post(
        f"/v1/contexts/{cid}/messages", json={"message": {"role": "user", "parts": [part]}}
    )
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "payload_too_large",
        "message": f"Request body exceeds {limit} bytes",
    }


def test_default_limits_let_an_image_prompt_through(stack: Stack) -> None:
    """Defaults: 1 MiB on REST routes, 32 MiB on the proxy's."""
    data = image(1_500_000)
    stack.fake.script(Reply(text="seen"))
    sdk = openai_sdk(stack, stack.openai_url("big-img"))
    reply = sdk.chat.completions.create(model=OPENAI_MODEL, messages=image_chat(data))
    assert reply.choices[0].message.content == "seen"
    assert [m["role"] for m in stack.log("big-img")] == ["user", "assistant"]
    assert_rest_append_too_large(stack, "big-img", 1_500_000, 1048576)
