"""A proxied call at the edges of its flow: the request deadline fires while
its turn is being stored, a retry comes after another call of the context,
the context is deleted while the upstream works. The upstream answered (and
was paid for) each time: the answer reaches the client, the turn is stored
once or not at all, and the headers say which."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionUserMessageParam

from fastpaca_proxy.fake_upstream import Reply
from fastpaca_proxy.retries import MAX_CALLS, Answer, Retries, retry_key

from .support import OPENAI_MODEL, Stack, run_stack

FIRST: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
SECOND: ChatCompletionUserMessageParam = {"role": "user", "content": "book the flight"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with run_stack(f"sqlite:///{tmp_path / 'edges.db'}") as started:
        yield started


def _chat_url(stack: Stack, cid: str) -> str:
    return f"{stack.openai_url(cid)}/chat/completions"


def _body(*messages: Mapping[str, Any]) -> dict[str, Any]:
    return {"model": OPENAI_MODEL, "messages": list(messages)}


def _wait_for_upstream_calls(stack: Stack, count: int) -> None:
    """Until the fake upstream has received ``count`` requests (it records a
    request on arrival, before its scripted latency)."""
    for _ in range(1000):
        if len(stack.fake.requests) >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"the upstream received {len(stack.fake.requests)} of {count} calls")


def test_a_turn_whose_store_outlasts_the_deadline_is_stored_and_answered(
    tmp_path: Path,
) -> None:
    """The upstream answered, but the store is held up (another process holds
    SQLite's write lock) until past the request's deadline. The deadline does
    not cut the append the answer was paid for: once the lock is free the
    turn is stored and the client gets its answer, not a 503."""
    db = tmp_path / "deadline.db"
    timeouts = {"request_timeout": 0.2, "upstream_timeout": 1.0, "upstream_connect_timeout": 0.5}
    with run_stack(f"sqlite:///{db}", store_timeout=30.0, **timeouts) as stack:
        sdk = stack.track(
            openai.OpenAI(base_url=stack.openai_url("slow-disk"), api_key="k", max_retries=0)
        )
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=FIRST)
        replies: list[Any] = []

        def call() -> None:
            try:
                replies.append(
                    sdk.chat.completions.with_raw_response.create(
                        model=OPENAI_MODEL, messages=[SECOND]
                    )
                )
            except openai.APIError as exc:
                replies.append(exc)

        holder = sqlite3.connect(db, isolation_level=None, timeout=10)
        caller = threading.Thread(target=call)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the turn's append waits for this lock
            caller.start()
            _wait_for_upstream_calls(stack, 2)
            # the upstream answers at once; the deadline (0.2 + 0.5 + 1.0 s from the
            # call's start) passes while the append waits
            time.sleep(2.5)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
            caller.join(30)
        (raw,) = replies
        assert not isinstance(raw, openai.APIError), raw
        assert raw.parse().choices[0].message.content == "echo: book the flight"
        assert raw.headers["X-Fastpaca-Version"] == "4"  # the turn, stored
        assert stack.texts("slow-disk") == [
            ("user", "hi"),
            ("assistant", "echo: hi"),
            ("user", "book the flight"),
            ("assistant", "echo: book the flight"),
        ]


def test_a_keyed_retry_after_a_regenerate_gets_its_own_answer(stack: Stack) -> None:
    """A call with an Idempotency-Key is answered; another call regenerates
    that turn; the first call's retry (same key, same body) gets the first
    answer again, as OpenAI's and Anthropic's idempotency keys promise, and
    is neither sent upstream nor stored a second time."""
    url = _chat_url(stack, "keyed-regen")
    history = _body(*FIRST, {"role": "assistant", "content": "echo: hi"}, SECOND)
    with httpx.Client(timeout=10) as http:
        assert http.post(url, json=_body(*FIRST)).status_code == 200  # "echo: hi"
        stack.fake.script(Reply(text="Booked."), Reply(text="Rebooked."))
        first = http.post(url, json=history, headers={"Idempotency-Key": "k-1"})
        regenerate = http.post(url, json=history)
        retry = http.post(url, json=history, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == regenerate.status_code == retry.status_code == 200
    assert regenerate.json()["choices"][0]["message"]["content"] == "Rebooked."
    assert retry.content == first.content and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["X-Fastpaca-Version"] == first.headers["X-Fastpaca-Version"]
    assert len(stack.fake.requests) == 3  # the retry was not paid for again
    assert len(stack.log("keyed-regen")) == 6  # q a, q2 a2 (first), q2 a2' (regenerated)
    window = [m["parts"][0]["text"] for m in stack.window("keyed-regen")["messages"]]
    assert window == ["hi", "echo: hi", "book the flight", "Rebooked."]


def test_an_sdk_retry_after_another_call_gets_the_answer_its_client_missed(
    stack: Stack,
) -> None:
    """The client gives up on a slow call; another call of the context is
    answered meanwhile; then the SDK retries the first. The retry gets the
    first call's answer (awaited, or kept since its client missed it), not a
    second upstream call."""
    sdk = stack.track(
        openai.OpenAI(base_url=stack.openai_url("gave-up"), api_key="k", max_retries=0)
    )
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=FIRST)
    stack.fake.clear()
    stack.fake.script(Reply(text="Booked.", latency=1.5), Reply(text="Hotel too."))
    url = _chat_url(stack, "gave-up")
    with httpx.Client(timeout=10) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post(url, json=_body(SECOND), timeout=0.5)
        other = http.post(url, json=_body({"role": "user", "content": "and a hotel"}))
        retry = http.post(url, json=_body(SECOND), headers={"X-Stainless-Retry-Count": "1"})
    assert other.json()["choices"][0]["message"]["content"] == "Hotel too."
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["choices"][0]["message"]["content"] == "Booked."
    assert len(stack.fake.requests) == 2  # the slow call and the other, not the retry
    assert sorted(stack.texts("gave-up")[2:]) == [
        ("assistant", "Booked."),
        ("assistant", "Hotel too."),
        ("user", "and a hotel"),
        ("user", "book the flight"),
    ]


async def test_a_context_keeps_its_last_calls_for_retries() -> None:
    """Each of a context's last ``MAX_CALLS`` calls answers its own retry,
    whatever came after it; older ones are let go, and what is held is counted
    to the byte as calls come and go."""
    retries = Retries()
    keys = [retry_key({}, f'{{"n": {n}}}'.encode())[0] for n in range(MAX_CALLS + 2)]
    calls = [retries.start("c", key) for key in keys]
    middle = calls[-3]
    for n, call in enumerate(calls):  # undelivered (all but one): kept for a retry
        retries.finish("c", call, Answer(200, b"a%d" % n, {}), delivered=call is middle)
    for n, key in enumerate(keys[2:], start=2):
        claimed = await retries.claim("c", key, True)
        if calls[n] is middle:  # its client got it: the same request again is a new call
            assert not isinstance(claimed, Answer)
            retries.finish("c", claimed, None)
        else:
            assert isinstance(claimed, Answer) and claimed.body == b"a%d" % n
    kept = sum(len(key) + 2 for n, key in enumerate(keys[2:], start=2) if calls[n] is not middle)
    assert retries.size == kept
    for key in keys[:2]:  # past the last MAX_CALLS: let go
        claimed = await retries.claim("c", key, True)
        assert not isinstance(claimed, Answer)
        retries.finish("c", claimed, None)
    retries._forget_context("c")
    assert retries.size == 0


def test_a_context_deleted_while_the_upstream_works_gets_the_answer_and_its_version(
    stack: Stack,
) -> None:
    """The context is tombstoned while the upstream works: the turn cannot be
    stored, the answer (paid for) still reaches the client, and the headers
    describe the context as it is (the tombstone's version, its tokens without
    the turn), not the version from before nor a stored turn."""
    cid = "gone"
    sdk = stack.track(openai.OpenAI(base_url=stack.openai_url(cid), api_key="k", max_retries=0))
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=FIRST)
    before = stack.api.get(f"/v1/contexts/{cid}").json()
    stack.fake.script(Reply(text="Too late.", latency=1.5))
    replies: list[Any] = []

    def call() -> None:
        replies.append(
            sdk.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=[SECOND])
        )

    caller = threading.Thread(target=call)
    caller.start()
    try:
        _wait_for_upstream_calls(stack, 2)
        stack.api.delete(f"/v1/contexts/{cid}").raise_for_status()
    finally:
        caller.join(30)
    (raw,) = replies
    assert raw.parse().choices[0].message.content == "Too late."
    after = stack.api.get(f"/v1/contexts/{cid}").json()
    assert after["status"] == "tombstoned" and after["version"] == before["version"] + 1
    assert raw.headers["X-Fastpaca-Version"] == str(after["version"])
    assert raw.headers["X-Fastpaca-Used-Tokens"] == str(stack.window(cid)["used_tokens"])
    assert len(stack.log(cid)) == 2  # the turn is not stored
