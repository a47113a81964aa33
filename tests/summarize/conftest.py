"""Fixtures: a fake upstream that writes summaries, and a summariser on the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fastpaca_core import Engine
from fastpaca_core.summarizer import Summarizer
from fastpaca_proxy.fake_upstream import FakeUpstream, Reply

from .support import FAST, SUMMARY_TEXT, model_for


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(default_reply=Reply(text=SUMMARY_TEXT)) as running:
        yield running


@pytest.fixture
async def summarizer(engine: Engine, fake: FakeUpstream) -> AsyncIterator[Summarizer]:
    async with Summarizer(engine, model_for(fake), FAST) as running:
        yield running
