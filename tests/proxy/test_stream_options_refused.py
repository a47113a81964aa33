"""An OpenAI-compatible upstream (or an older Azure API version) that refuses
the ``stream_options`` the proxy adds to ask a stream for its usage: the call
is sent again as the client asked, once, and later streams are not asked."""

from __future__ import annotations

import openai
import pytest

from fastpaca_proxy.fake_upstream import ErrorReply, Reply

from .support import OPENAI_MODEL, Stack

REFUSAL = ErrorReply(400, message="Unrecognized request argument supplied: stream_options")


def gpt(stack: Stack, context_id: str) -> openai.OpenAI:
    return stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk-x", max_retries=0)
    )


def _streamed(sdk: openai.OpenAI, text: str) -> str:
    chunks = sdk.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": text}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_refused_stream_options_is_sent_again_without(stack: Stack) -> None:
    sdk = gpt(stack, "so-1")
    stack.fake.script(REFUSAL, Reply(text="first answer"), Reply(text="second answer"))
    assert _streamed(sdk, "hello") == "first answer"
    sent = stack.fake.requests_for("openai_chat")
    assert [r.json.get("stream_options") for r in sent] == [{"include_usage": True}, None]
    log = stack.log("so-1")
    assert [m["role"] for m in log] == ["user", "assistant"]
    assert log[1]["parts"][0]["text"] == "first answer"
    assert log[1]["token_count"] > 0  # counted by the server: no usage came
    # later streams are sent as the client asked: no refusal to wait for
    assert _streamed(sdk, "again") == "second answer"
    sent = stack.fake.requests_for("openai_chat")
    assert len(sent) == 3
    assert "stream_options" not in sent[2].json
    assert len(stack.log("so-1")) == 4


def test_another_refusal_reaches_the_client_unchanged(stack: Stack) -> None:
    sdk = gpt(stack, "so-2")
    stack.fake.script(ErrorReply(400, message="max_tokens is too large"), Reply(text="later"))
    with pytest.raises(openai.BadRequestError) as info:
        _streamed(sdk, "hello")
    assert "max_tokens is too large" in str(info.value)
    assert len(stack.fake.requests_for("openai_chat")) == 1
    # the proxy still asks for usage: the next stream carries stream_options
    assert _streamed(sdk, "hello") == "later"
    assert stack.fake.requests_for("openai_chat")[1].json["stream_options"] == {
        "include_usage": True
    }


def test_a_refusal_of_the_clients_own_options_is_not_retried(stack: Stack) -> None:
    sdk = gpt(stack, "so-3")
    stack.fake.script(REFUSAL)
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(
            model=OPENAI_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},  # the client's own: nothing added
        )
    assert len(stack.fake.requests_for("openai_chat")) == 1
    assert stack.log("so-3") == []


def test_a_retry_refused_again_is_the_clients_answer(stack: Stack) -> None:
    sdk = gpt(stack, "so-4")
    stack.fake.script(REFUSAL, ErrorReply(400, message="stream_options: still refused"))
    with pytest.raises(openai.BadRequestError) as info:
        _streamed(sdk, "hello")
    assert "still refused" in str(info.value)
    assert len(stack.fake.requests_for("openai_chat")) == 2
    stack.fake.script(Reply(text="ok"))
    assert _streamed(sdk, "hello") == "ok"  # not taken as an upstream that refuses
    assert stack.fake.requests_for("openai_chat")[2].json["stream_options"] == {
        "include_usage": True
    }


def test_a_refusal_for_one_model_leaves_the_others_asked(stack: Stack) -> None:
    sdk = gpt(stack, "so-5")
    stack.fake.script(REFUSAL, Reply(text="first"), Reply(text="other model"))
    assert _streamed(sdk, "hello") == "first"
    chunks = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "other model"
    sent = stack.fake.requests_for("openai_chat")
    assert len(sent) == 3
    assert sent[2].json["model"] == "gpt-4o-mini"
    assert sent[2].json["stream_options"] == {"include_usage": True}  # still asked
