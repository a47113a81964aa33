"""An SDK's retry of a proxied call: answered once, stored once (retries.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from fastpaca_proxy.fake_upstream import ErrorReply, Reply
from fastpaca_proxy.retries import MAX_ANSWER_BYTES, MAX_BYTES, Answer, Retries, retry_key

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack, run_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with run_stack(f"sqlite:///{tmp_path / 'r.db'}") as started:
        yield started


FIRST = [{"role": "user", "content": "hi"}]
SECOND = {"role": "user", "content": "book the flight"}


def _openai(stack: Stack, cid: str, **options: Any) -> openai.OpenAI:
    return stack.track(openai.OpenAI(base_url=stack.openai_url(cid), api_key="k", **options))


@pytest.mark.parametrize("resend", [True, False], ids=["resend", "newest"])
def test_a_retry_after_a_client_timeout_gets_the_first_answer(stack: Stack, resend: bool) -> None:
    """The SDK gives up after 1 s and retries; the proxy carries the first call
    through (the upstream takes 1.5 s) and answers the retry with its answer:
    one upstream call, the turn stored once."""
    cid = f"timeout-{resend}"
    _openai(stack, cid, max_retries=0).chat.completions.create(model=OPENAI_MODEL, messages=FIRST)
    first_reply = stack.texts(cid)[-1][1]
    stack.fake.clear()
    stack.fake.script(Reply(text="Booked.", latency=1.5))
    history = [*FIRST, {"role": "assistant", "content": first_reply}, SECOND]
    impatient = _openai(stack, cid, timeout=1.0, max_retries=2)
    raw = impatient.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=history if resend else [SECOND]
    )
    assert raw.parse().choices[0].message.content == "Booked."
    assert raw.headers["Idempotent-Replayed"] == "true"
    assert len(stack.fake.requests) == 1  # the upstream was called once
    assert stack.texts(cid) == [
        ("user", "hi"),
        ("assistant", first_reply),
        ("user", "book the flight"),
        ("assistant", "Booked."),
    ]
    assert int(raw.headers["X-Fastpaca-Version"]) == 4


def test_a_retry_after_a_failed_call_goes_upstream_again(stack: Stack) -> None:
    """The first attempt stored nothing (the upstream failed): the SDK's retry
    is a call like any other, and stores the turn once."""
    stack.fake.script(ErrorReply(500), Reply(text="Second time lucky."))
    sdk = _openai(stack, "failed", max_retries=1)
    reply = sdk.chat.completions.create(model=OPENAI_MODEL, messages=FIRST)
    assert reply.choices[0].message.content == "Second time lucky."
    assert len(stack.fake.requests) == 2
    assert stack.texts("failed") == [("user", "hi"), ("assistant", "Second time lucky.")]


def test_the_same_question_asked_again_is_a_new_turn(stack: Stack) -> None:
    """Not a retry (no retry count, no key): the same body twice is two turns."""
    sdk = _openai(stack, "again", max_retries=0)
    for _ in range(2):
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=[SECOND])
    assert len(stack.fake.requests) == 2
    assert [role for role, _ in stack.texts("again")] == ["user", "assistant"] * 2


def test_an_anthropic_retry_and_an_idempotency_key(stack: Stack) -> None:
    stack.fake.script(Reply(text="Slow answer.", latency=1.5))
    sdk = stack.track(
        anthropic.Anthropic(
            base_url=stack.anthropic_url("claude"), api_key="k", timeout=1.0, max_retries=2
        )
    )
    reply = sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=50, messages=FIRST)
    assert reply.content[0].text == "Slow answer."  # type: ignore[union-attr]
    assert len(stack.fake.requests) == 1
    assert stack.texts("claude") == [("user", "hi"), ("assistant", "Slow answer.")]
    # a client's own key: the same key and body again is the same call
    stack.fake.clear()
    body = {"model": OPENAI_MODEL, "messages": [SECOND]}
    url = f"{stack.openai_url('keyed')}/chat/completions"
    with httpx.Client(timeout=10) as http:
        first = http.post(url, json=body, headers={"Idempotency-Key": "k-1"})
        again = http.post(url, json=body, headers={"Idempotency-Key": "k-1"})
        other = http.post(url, json=body, headers={"Idempotency-Key": "k-2"})
    assert first.status_code == again.status_code == other.status_code == 200
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in other.headers
    assert len(stack.fake.requests) == 2


async def test_what_is_kept_for_retries_is_bounded() -> None:
    """Undelivered answers of many contexts (up to 1 MiB each) are kept up to
    MAX_BYTES in all, the oldest let go first; a delivered one is not kept; a
    large request is kept as a digest; a whole Idempotency-Key counts."""
    retries = Retries()
    big = b"x" * (MAX_ANSWER_BYTES - 10)
    request, _, _ = retry_key({}, b"{}" * 100)
    for i in range(64):
        retries.finish(f"c{i}", retries.start(f"c{i}", request), Answer(200, big, {}))
        assert retries.size <= MAX_BYTES
    assert not isinstance(await retries.claim("c0", request, True), Answer)  # let go
    assert isinstance(await retries.claim("c63", request, True), Answer)  # the newest kept
    retries.finish("d", retries.start("d", request), Answer(200, b"{}", {}), delivered=True)
    assert not isinstance(await retries.claim("d", request, True), Answer)
    large, retry, _ = retry_key({"X-Stainless-Retry-Count": "1"}, b"y" * 1_000_000)
    assert retry and len(large) == 32
    prefix = "t" * 70
    one, retry, keyed = retry_key({"Idempotency-Key": prefix + "1"}, b"{}")
    assert retry and keyed and one != retry_key({"Idempotency-Key": prefix + "2"}, b"{}")[0]


def test_a_retry_flag_on_a_new_turn_with_the_same_words_is_not_replayed(stack: Stack) -> None:
    """The client got its answer; its next turn says the same ("yes") and carries
    a retry count (its first attempt was refused before the proxy saw it): a
    new turn, not the old answer."""
    url = f"{stack.openai_url('yes')}/chat/completions"
    body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "yes"}]}
    with httpx.Client(timeout=10) as http:
        assert http.post(url, json=body).status_code == 200
        again = http.post(url, json=body, headers={"X-Stainless-Retry-Count": "1"})
    assert again.status_code == 200 and "Idempotent-Replayed" not in again.headers
    assert len(stack.fake.requests) == 2
    assert [role for role, _ in stack.texts("yes")] == ["user", "assistant"] * 2


def test_two_retries_of_a_failed_call_go_upstream_once(stack: Stack) -> None:
    """The first attempt fails after 2 s (nothing stored); two retries waited on
    it: one goes upstream, the other gets its answer."""
    stack.fake.script(
        Reply(text="x", latency=2.0, fail_after=0), Reply(text="A1"), Reply(text="A2")
    )
    url = f"{stack.openai_url('two')}/chat/completions"
    body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "book it"}]}
    statuses: dict[int, int] = {}

    def post(attempt: int) -> None:
        time.sleep(attempt * 0.5)
        headers = {"X-Stainless-Retry-Count": str(attempt)} if attempt else {}
        statuses[attempt] = httpx.post(url, json=body, headers=headers, timeout=30).status_code

    threads = [threading.Thread(target=post, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses[1] == statuses[2] == 200
    assert len(stack.fake.requests) == 2  # the failed attempt and one retry
    assert stack.texts("two") == [("user", "book it"), ("assistant", "A1")]
