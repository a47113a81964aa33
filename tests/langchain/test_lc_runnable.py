"""RunnableWithMessageHistory over 52 turns with a small budget, on every kind of target.

Each model call gets the context's window (under budget, tool pairs intact);
at the end the log holds every message of every turn, exactly.
"""

from __future__ import annotations

import pytest
from conftest import Target
from lc_support import Conversation

from langchain_fastpaca import FastpacaChatMessageHistory

pytestmark = pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")

TURNS = 52


def _assert_logged(conversation: Conversation) -> None:
    history = FastpacaChatMessageHistory(conversation.context_id, conversation.connection)
    assert list(history.iter_history(page_size=50)) == conversation.log
    window = history.messages
    assert 0 < len(window) < len(conversation.log) / 4  # compaction did its work
    assert window == conversation.log[-len(window) :]


def test_sync_conversation(target: Target) -> None:
    with target.connection() as connection:
        conversation = Conversation(connection, "lc-sync", TURNS, prompt=False)
        conversation.run()
        assert conversation.model_calls > TURNS
        _assert_logged(conversation)


async def test_async_conversation(target: Target) -> None:
    async with target.connection() as connection:
        conversation = Conversation(connection, "lc-async", TURNS, prompt=True)
        await conversation.arun()
        assert conversation.model_calls > TURNS
        history = FastpacaChatMessageHistory(conversation.context_id, connection)
        assert [m async for m in history.aiter_history(page_size=64)] == conversation.log
