"""A fake LLM upstream speaking the real OpenAI and Anthropic wire protocols.

A real aiohttp server for tests, examples and benchmarks: OpenAI Chat
Completions, OpenAI Responses and Anthropic Messages, JSON and SSE streaming,
models endpoints, errors in each provider's shape. It echoes by default,
answers with scripted :class:`Reply` objects when told to, and records every
request it receives::

    async with FakeUpstream() as fake:
        fake.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]))
        client = AsyncOpenAI(base_url=fake.openai_base_url, api_key="x")
        ...
        assert fake.last.json["messages"][-1]["content"] == "hi"

Sync clients: ``with FakeUpstream().in_thread() as fake:``. Command line:
``python -m fastpaca_proxy.fake_upstream --port 8787``. See docs/fake-upstream.md.
"""

from .app import create_app
from .errors import anthropic_error_object, error_body, openai_error_object
from .recording import RecordedRequest
from .script import (
    PROTOCOLS,
    ErrorReply,
    FinishReason,
    Protocol,
    Reply,
    ToolCall,
    Turn,
    Usage,
    count_text_tokens,
    default_prompt_tokens,
    last_user_text,
    split_pieces,
)
from .server import (
    DEFAULT_MODELS,
    FakeUpstream,
    PromptTokens,
    run_fake_upstream,
    run_fake_upstream_in_thread,
)

__all__ = [
    "DEFAULT_MODELS",
    "PROTOCOLS",
    "ErrorReply",
    "FakeUpstream",
    "FinishReason",
    "PromptTokens",
    "Protocol",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "Turn",
    "Usage",
    "anthropic_error_object",
    "count_text_tokens",
    "create_app",
    "default_prompt_tokens",
    "error_body",
    "last_user_text",
    "openai_error_object",
    "run_fake_upstream",
    "run_fake_upstream_in_thread",
    "split_pieces",
]
