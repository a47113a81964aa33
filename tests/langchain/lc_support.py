"""A scripted conversation through ``RunnableWithMessageHistory``, checked at every model call.

The model is langchain-core's ``GenericFakeChatModel`` replaying a script in
which some replies call tools (two at a time, sometimes with an invalid call
too); the next turn answers them with ``ToolMessage`` s. A step in front of the
model checks what it receives: the history part is exactly the context's
current window, the window is under the token budget, and no tool call is
separated from its results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from langchain_fastpaca import Connection, FastpacaChatMessageHistory, from_fastpaca_messages

BUDGET = 400
SYSTEM = "You answer in one short sentence."


def user_turn(i: int) -> HumanMessage:
    return HumanMessage(f"Question {i}: what about item {i}?", id=f"user-{i}")


def calls_tools(i: int) -> bool:
    return i % 3 == 1


def model_script(turns: int) -> list[AIMessage]:
    """Every reply the model will give, in order."""
    replies: list[AIMessage] = []
    for i in range(turns):
        if calls_tools(i):
            invalid = (
                [{"name": "calc", "args": "{oops", "id": f"bad-{i}", "error": "bad JSON"}]
                if i % 2
                else []
            )
            replies.append(
                AIMessage(
                    content=[{"type": "text", "text": f"Let me look up item {i}."}],
                    tool_calls=[
                        {"name": "lookup", "args": {"item": i}, "id": f"call-{i}-a"},
                        {"name": "calc", "args": {"x": i, "y": [i, i]}, "id": f"call-{i}-b"},
                    ],
                    invalid_tool_calls=invalid,
                )
            )
        usage = {"input_tokens": 50, "output_tokens": 12, "total_tokens": 62}
        replies.append(
            AIMessage(f"Item {i} is fine.", usage_metadata=usage if i % 4 == 0 else None)
        )
    return replies


def tool_results(reply: AIMessage, i: int) -> list[BaseMessage]:
    """What running the reply's tools gives (a long output now and then)."""
    out: list[BaseMessage] = []
    for call in reply.tool_calls:
        words = "details " * (5 + (i * 7) % 40)
        out.append(
            ToolMessage(
                f"{call['name']} result for {i}: {words}",
                tool_call_id=call["id"] or "",
                name=call["name"],
                artifact={"rows": i},
            )
        )
    for bad in reply.invalid_tool_calls:
        out.append(
            ToolMessage(
                "could not parse the arguments", tool_call_id=bad["id"] or "", status="error"
            )
        )
    return out


def check_tool_pairs(messages: list[BaseMessage]) -> None:
    """Every call answered before anything else; every result answers a call."""
    pending: set[str | None] = set()
    for message in messages:
        if isinstance(message, ToolMessage):
            assert message.tool_call_id in pending, f"orphan result {message.tool_call_id}"
            pending.discard(message.tool_call_id)
            continue
        assert not pending, f"calls {pending} unanswered before a {message.type} message"
        if isinstance(message, AIMessage):
            pending = {c["id"] for c in [*message.tool_calls, *message.invalid_tool_calls]}
    assert not pending, f"calls {pending} unanswered at the end"


@dataclass
class Conversation:
    """One session driven turn by turn; ``log`` is every message in order."""

    connection: Connection
    context_id: str
    turns: int
    prompt: bool  # True: system prompt + history placeholder; False: bare message lists
    log: list[BaseMessage] = field(default_factory=list)
    model_calls: int = 0
    _new: list[BaseMessage] = field(default_factory=list)

    def history(self, session_id: str) -> FastpacaChatMessageHistory:
        return FastpacaChatMessageHistory(
            session_id,
            self.connection,
            token_budget=BUDGET,
            policy={"strategy": "last_n", "config": {"limit": 200}},
        )

    def _check(self, value: Any, window: list[dict[str, Any]]) -> Any:
        messages = value.to_messages() if isinstance(value, PromptValue) else list(value)
        if self.prompt:
            assert messages[0].content == SYSTEM
            messages = messages[1:]
        split = len(messages) - len(self._new)
        assert messages[split:] == self._new
        assert messages[:split] == from_fastpaca_messages(window)
        assert sum(m["token_count"] for m in window) <= BUDGET
        check_tool_pairs(messages)
        self.model_calls += 1
        return value

    def _check_sync(self, value: Any) -> Any:
        window = self.connection.call(lambda: self.connection.window(self.context_id, None))
        return self._check(value, window)

    async def _check_async(self, value: Any) -> Any:
        window = await self.connection.acall(lambda: self.connection.window(self.context_id, None))
        return self._check(value, window)

    def chain(self) -> RunnableWithMessageHistory:
        model = GenericFakeChatModel(messages=iter(model_script(self.turns)))
        check: Runnable[Any, Any] = RunnableLambda(self._check_sync, afunc=self._check_async)
        if not self.prompt:
            return RunnableWithMessageHistory(check | model, self.history)
        prompt = ChatPromptTemplate.from_messages(
            [("system", SYSTEM), MessagesPlaceholder("history"), MessagesPlaceholder("input")]
        )
        return RunnableWithMessageHistory(
            prompt | check | model,
            self.history,
            input_messages_key="input",
            history_messages_key="history",
        )

    def _input(self, new: list[BaseMessage]) -> Any:
        self._new = new
        return {"input": new} if self.prompt else new

    def _record(self, new: list[BaseMessage], reply: Any) -> list[BaseMessage]:
        assert isinstance(reply, AIMessage)
        self.log += [*new, reply]
        return tool_results(reply, len(self.log)) if reply.tool_calls else []

    @property
    def config(self) -> Any:
        return {"configurable": {"session_id": self.context_id}}

    def run(self) -> None:
        chain = self.chain()
        for i in range(self.turns):
            new: list[BaseMessage] = [user_turn(i)]
            while new:
                new = self._record(new, chain.invoke(self._input(new), self.config))

    async def arun(self) -> None:
        chain = self.chain()
        for i in range(self.turns):
            new: list[BaseMessage] = [user_turn(i)]
            while new:
                new = self._record(new, await chain.ainvoke(self._input(new), self.config))
