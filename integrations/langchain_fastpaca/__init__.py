"""LangChain integration: a chat message history kept by Fastpaca.

::

    from langchain_fastpaca import EmbeddedConnection, FastpacaChatMessageHistory

    fastpaca = EmbeddedConnection("sqlite:///chat.db")   # or RemoteConnection("http://...")
    history = FastpacaChatMessageHistory("chat-1", fastpaca, token_budget=4000)
    history.add_messages([HumanMessage("Hi"), AIMessage("Hello!")])
    history.messages   # the compacted LLM context, under the budget
    list(history.iter_history())   # the full log

See docs/langchain.md.
"""

from .connection import (
    DEFAULT_STORE_URL,
    Connection,
    ContextOptions,
    EmbeddedConnection,
    RemoteConnection,
    connect,
)
from .convert import from_fastpaca, from_fastpaca_messages, to_fastpaca, to_fastpaca_messages
from .history import FastpacaChatMessageHistory, HistoryPage

__all__ = [
    "DEFAULT_STORE_URL",
    "Connection",
    "ContextOptions",
    "EmbeddedConnection",
    "FastpacaChatMessageHistory",
    "HistoryPage",
    "RemoteConnection",
    "connect",
    "from_fastpaca",
    "from_fastpaca_messages",
    "to_fastpaca",
    "to_fastpaca_messages",
]
