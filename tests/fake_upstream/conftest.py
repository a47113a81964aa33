"""Fixtures: a fake upstream on a loopback port, and real SDK clients pointed at it.

Async tests use ``fake`` (served on the test's own loop); sync SDK clients need
``fake_thread`` (served on a loop in a background thread).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import openai
import pytest

from fastpaca_proxy.fake_upstream import FakeUpstream

OPENAI_MODEL = "gpt-test"
ANTHROPIC_MODEL = "claude-test"


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def fake_thread() -> Iterator[FakeUpstream]:
    with FakeUpstream().in_thread() as upstream:
        yield upstream


@pytest.fixture
async def aopenai(fake: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fake.openai_base_url, api_key="sk-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
def sopenai(fake_thread: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=fake_thread.openai_base_url, api_key="sk-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def aanthropic(fake: FakeUpstream) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fake.anthropic_base_url, api_key="sk-ant-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
def santhropic(fake_thread: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake_thread.anthropic_base_url, api_key="sk-ant-test", max_retries=0
    ) as client:
        yield client
