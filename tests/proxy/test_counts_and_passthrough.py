"""Token counts of a request as the proxy would send it (Anthropic's
``count_tokens``, OpenAI's ``responses.input_tokens``), and the SDK calls that
store nothing (models, embeddings, moderations, stored responses), passed
through under the same base URLs. Real SDKs against the fake upstream."""

from __future__ import annotations

import base64
import struct

import anthropic
import httpx
import openai
import pytest

from fastpaca_proxy.fake_upstream import Reply, default_prompt_tokens

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack


def claude(stack: Stack, context_id: str) -> anthropic.Anthropic:
    return stack.track(
        anthropic.Anthropic(
            base_url=stack.anthropic_url(context_id), api_key="sk-ant-client", max_retries=0
        )
    )


def gpt(stack: Stack, base_url: str, **kwargs: object) -> openai.OpenAI:
    return stack.track(
        openai.OpenAI(base_url=base_url, api_key="sk-client", max_retries=0, **kwargs)  # type: ignore[arg-type]
    )


def _counted(stack: Stack, path: str) -> dict[str, object]:
    sent = [r for r in stack.fake.requests if r.path == path]
    assert len(sent) == 1, [r.path for r in stack.fake.requests]
    return sent[0].json


def test_count_tokens_counts_the_window_a_call_would_send(stack: Stack) -> None:
    sdk = claude(stack, "count-1")
    stack.fake.script(Reply(text="Paris."))
    sdk.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "Capital of France?"}],
    )
    stored = stack.window("count-1")
    # a client that sends only its newest message: the count is of the whole
    # conversation the next call will send, not of that one message
    newest = [{"role": "user", "content": "And of Spain?"}]
    raw = sdk.messages.with_raw_response.count_tokens(
        model=ANTHROPIC_MODEL, system="Be brief.", messages=newest
    )
    counted = _counted(stack, "/v1/messages/count_tokens")
    assert counted["system"] == "Be brief."
    assert counted["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Spain?"},
    ]
    assert "max_tokens" not in counted
    assert raw.parse().input_tokens == default_prompt_tokens("anthropic", counted)
    assert raw.headers["X-Fastpaca-Context"] == "count-1"
    assert raw.headers["X-Fastpaca-Version"] == str(stored["version"])
    assert int(raw.headers["X-Fastpaca-Used-Tokens"]) > stored["used_tokens"]
    # nothing stored: the log and the version are as they were
    after = stack.window("count-1")
    assert after["version"] == stored["version"]
    assert [m["role"] for m in stack.log("count-1")] == ["user", "assistant"]


def test_count_tokens_counts_within_the_budget(stack: Stack) -> None:
    assert stack.api.put("/v1/contexts/count-small", json={"token_budget": 40}).status_code == 200
    sdk = claude(stack, "count-small")
    for word in ("one", "two", "three", "four"):
        stack.fake.script(Reply(text=f"reply {word} " * 3))
        sdk.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=50,
            messages=[{"role": "user", "content": f"message {word} " * 3}],
        )
    sdk.messages.count_tokens(model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "five"}])
    counted = _counted(stack, "/v1/messages/count_tokens")["messages"]
    assert isinstance(counted, list)
    texts = [str(m["content"]) for m in counted]
    assert "message one" not in "".join(texts)  # cut to the budget, as a call would be
    assert counted[-1] == {"role": "user", "content": "five"}


def test_count_tokens_creates_no_context(stack: Stack) -> None:
    sdk = claude(stack, "count-new")
    message = [{"role": "user", "content": "Hello there"}]
    answer = sdk.messages.count_tokens(model=ANTHROPIC_MODEL, messages=message)
    assert _counted(stack, "/v1/messages/count_tokens")["messages"] == message
    assert answer.input_tokens > 0
    assert stack.api.get("/v1/contexts/count-new").status_code == 404


def test_count_tokens_of_a_tombstoned_context_is_refused(stack: Stack) -> None:
    sdk = claude(stack, "count-gone")
    stack.fake.script(Reply(text="hi"))
    sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert stack.api.delete("/v1/contexts/count-gone").status_code == 204
    with pytest.raises(anthropic.ConflictError) as info:
        sdk.messages.count_tokens(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "y"}]
        )
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert not [r for r in stack.fake.requests if r.path.endswith("count_tokens")]


def test_count_tokens_by_header_and_without_a_context(stack: Stack) -> None:
    stack.fake.script(Reply(text="ok"))
    claude(stack, "count-h").messages.create(
        model=ANTHROPIC_MODEL, max_tokens=5, messages=[{"role": "user", "content": "first"}]
    )
    plain = stack.track(
        anthropic.Anthropic(base_url=stack.base, api_key="sk-ant-client", max_retries=0)
    )
    newest = [{"role": "user", "content": "second"}]
    plain.messages.count_tokens(
        model=ANTHROPIC_MODEL, messages=newest, extra_headers={"X-Fastpaca-Context": "count-h"}
    )
    counted = _counted(stack, "/v1/messages/count_tokens")["messages"]
    assert isinstance(counted, list) and len(counted) == 3
    stack.fake.clear()
    raw = plain.messages.with_raw_response.count_tokens(model=ANTHROPIC_MODEL, messages=newest)
    assert _counted(stack, "/v1/messages/count_tokens")["messages"] == newest  # as sent
    assert "X-Fastpaca-Context" not in raw.headers


def test_count_tokens_refuses_a_body_that_is_not_an_object(stack: Stack) -> None:
    reply = stack.api.post(
        "/v1/contexts/count-bad/anthropic/v1/messages/count_tokens",
        content=b"[1, 2]",
        headers={"anthropic-version": "2023-06-01", "Content-Type": "application/json"},
    )
    assert reply.status_code == 400
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_responses_input_tokens_counts_the_window(stack: Stack) -> None:
    sdk = gpt(stack, stack.openai_url("count-r"))
    stack.fake.script(Reply(text="Oslo."))
    first = sdk.responses.create(model=OPENAI_MODEL, input="Capital of Norway?")
    raw = sdk.responses.input_tokens.with_raw_response.count(
        model=OPENAI_MODEL,
        input="And Sweden?",
        instructions="Be brief.",
        previous_response_id=first.id,
    )
    counted = _counted(stack, "/v1/responses/input_tokens")
    assert "previous_response_id" not in counted  # the log holds the conversation
    assert counted["instructions"] == "Be brief."
    items = counted["input"]
    assert isinstance(items, list)
    assert [item["role"] for item in items] == ["user", "assistant", "user"]
    answer = raw.parse()
    assert answer.input_tokens == default_prompt_tokens("openai_responses", counted)
    assert raw.headers["X-Fastpaca-Version"] == str(stack.window("count-r")["version"])
    assert len(stack.log("count-r")) == 2


def test_embeddings_and_models_pass_through_under_the_base_url(stack: Stack) -> None:
    sdk = gpt(stack, stack.openai_url("pt-1"))
    floats = sdk.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
    )
    assert [d.index for d in floats.data] == [0, 1]
    packed = sdk.embeddings.create(model="text-embedding-3-small", input="a")
    sent = [r for r in stack.fake.requests if r.path == "/v1/embeddings"]
    assert len(sent) == 2
    assert sent[0].headers["authorization"] == "Bearer sk-client"
    assert sent[0].json == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
    }
    if isinstance(packed.data[0].embedding, str):  # an SDK that asks for base64
        raw = base64.b64decode(packed.data[0].embedding)
        packed_vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    else:
        packed_vector = packed.data[0].embedding
    assert packed_vector == pytest.approx(floats.data[0].embedding)
    assert [m.id for m in sdk.models.list().data]
    assert stack.api.get("/v1/contexts/pt-1").status_code == 404  # nothing stored


def test_anthropic_models_pass_through(stack: Stack) -> None:
    sdk = claude(stack, "pt-ant")
    listed = sdk.models.list()
    assert ANTHROPIC_MODEL in [m.id for m in listed.data]
    assert sdk.models.retrieve(ANTHROPIC_MODEL).id == ANTHROPIC_MODEL
    assert [r.path for r in stack.fake.requests] == [
        "/v1/models",
        f"/v1/models/{ANTHROPIC_MODEL}",
    ]
    assert "sk-ant-client" in stack.fake.requests[0].headers["authorization"]


def test_stored_responses_by_id_reach_the_upstream(stack: Stack) -> None:
    for base in (stack.openai_url("pt-r"), f"{stack.base}/v1"):
        stack.fake.clear()
        sdk = gpt(stack, base)
        with pytest.raises(openai.NotFoundError):  # the fake keeps no responses
            sdk.responses.retrieve("resp_abc")
        with pytest.raises(openai.NotFoundError):
            sdk.responses.delete("resp_abc")
        with pytest.raises(openai.NotFoundError):
            sdk.responses.input_items.list("resp_abc", limit=5, order="asc")
        with pytest.raises(openai.NotFoundError):
            sdk.responses.cancel("resp_abc")
        with pytest.raises(openai.NotFoundError):
            sdk.moderations.create(input="hello")
        seen = [(r.method, r.path, r.query) for r in stack.fake.requests]
        assert seen == [
            ("GET", "/v1/responses/resp_abc", {}),
            ("DELETE", "/v1/responses/resp_abc", {}),
            ("GET", "/v1/responses/resp_abc/input_items", {"limit": "5", "order": "asc"}),
            ("POST", "/v1/responses/resp_abc/cancel", {}),
            ("POST", "/v1/moderations", {}),
        ]


def test_a_passed_through_id_stays_one_path_segment(stack: Stack) -> None:
    reply = stack.api.get("/v1/contexts/pt-x/openai/responses/a%2F..%2F..%2Fmodels")
    assert reply.status_code == 404  # the fake's answer for an unknown response
    (sent,) = stack.fake.requests
    assert sent.path == "/v1/responses/a/../../models"  # not resolved to /v1/models


def test_a_passed_through_call_with_the_upstream_down_is_a_502() -> None:
    from fastpaca_core.http import create_app
    from fastpaca_core.settings import Settings
    from fastpaca_proxy import install_proxy

    from .support import serve_in_thread

    config = Settings(store="memory://", openai_base_url="http://127.0.0.1:9/v1")
    with serve_in_thread(lambda: install_proxy(create_app(config))) as base:
        reply = httpx.post(f"{base}/v1/embeddings", json={"model": "m", "input": "x"})
    assert reply.status_code == 502
    assert reply.json()["error"]["type"]


def test_a_dot_segment_is_not_a_way_up(stack: Stack) -> None:
    for path in (
        "/v1/models/%2E%2E",
        "/v1/responses/%2E%2E/cancel",
        "/v1/contexts/pt-d/openai/responses/%2E%2E",
        "/v1/contexts/pt-d/anthropic/v1/models/%2E",
    ):
        method = "POST" if path.endswith("cancel") else "GET"
        reply = stack.api.request(method, path, headers={"anthropic-version": "2023-06-01"})
        assert reply.status_code == 404, (path, reply.text)
        assert "error" in reply.json()
    assert stack.fake.requests == []  # nothing reached the upstream
