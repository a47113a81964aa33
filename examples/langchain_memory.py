"""LangChain chat memory kept by Fastpaca, offline (a fake chat model stands in for the LLM).

The same chain runs twice: first with LangChain's ``InMemoryChatMessageHistory``
(lost on exit, sent to the model whole, however long it grows), then with
``FastpacaChatMessageHistory``: durable, and the model gets the compacted
context, kept under a token budget, while the full log stays on record.

It needs the ``langchain`` extra (``langchain-core``); from the checkout, set
up as in the README:

    .venv/bin/pip install -e '.[langchain]'
    .venv/bin/python examples/langchain_memory.py                    # a temporary SQLite file
    .venv/bin/python examples/langchain_memory.py sqlite:///chat.db  # or postgresql://..., or
    .venv/bin/python examples/langchain_memory.py http://127.0.0.1:4000  # `fastpaca serve`
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from langchain_core.chat_history import BaseChatMessageHistory, InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from langchain_fastpaca import FastpacaChatMessageHistory, connect

# langchain-core 1.x marks RunnableWithMessageHistory and the chat history classes
# deprecated in favour of LangGraph persistence; they stay until 2.0 and work as before.
warnings.filterwarnings("ignore", message=r".*(RunnableWithMessageHistory|ChatMessageHistory)")

QUESTIONS = [f"Tell me fact number {i} about the sea, in detail please." for i in range(1, 21)]


def chat(get_history: Callable[[str], BaseChatMessageHistory], session_id: str) -> list[int]:
    """Ask every question in one session; how many messages the model saw each time.

    The chain: a prompt with the history, a probe counting what reaches the
    model, and a fake chat model.
    """
    seen: list[int] = []

    def probe(prompt: PromptValue) -> PromptValue:
        seen.append(len(prompt.to_messages()))
        return prompt

    replies = (f"Fact {i}: the sea is deep, wide and full of life." for i in itertools.count(1))
    model = GenericFakeChatModel(messages=replies)
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a helpful oceanographer."),
            MessagesPlaceholder("history"),
            ("human", "{question}"),
        ]
    )
    chain = RunnableWithMessageHistory(
        prompt | RunnableLambda(probe) | model,
        get_history,
        input_messages_key="question",
        history_messages_key="history",
    )
    for question in QUESTIONS:
        chain.invoke({"question": question}, {"configurable": {"session_id": session_id}})
    return seen


def main(target: str) -> None:
    # Before: LangChain's in-memory history.
    sessions: dict[str, InMemoryChatMessageHistory] = {}

    def in_memory(session_id: str) -> BaseChatMessageHistory:
        return sessions.setdefault(session_id, InMemoryChatMessageHistory())

    seen = chat(in_memory, "sea")
    print(f"in memory: the model saw {seen[0]} .. {seen[-1]} messages; all lost on exit")

    # After: the same chain, with the history swapped for Fastpaca's. One connection
    # (store pool or HTTP client) serves every session.
    with connect(target) as fastpaca:

        def in_fastpaca(session_id: str) -> BaseChatMessageHistory:
            return FastpacaChatMessageHistory(session_id, fastpaca, token_budget=300)

        seen = chat(in_fastpaca, "sea")
        history = FastpacaChatMessageHistory("sea", fastpaca)
        logged = sum(1 for _ in history.iter_history())
        window = history.messages
        print(f"fastpaca: the model saw at most {max(seen)} messages (budget 300 tokens)")
        print(f"fastpaca: the LLM context holds {len(window)} messages, the log {logged}")
        print(f"fastpaca: last reply: {window[-1].content}")
        history.clear()
        print(f"fastpaca: after clear(): context {len(history.messages)}, log still {logged}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(f"sqlite:///{Path(tmp) / 'chat.db'}")
