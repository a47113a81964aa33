"""Conversions from our message shape (ai-sdk UIMessage parts) to model APIs.

- :func:`to_openai_chat`: OpenAI Chat Completions ``messages``;
- :func:`to_anthropic`: Anthropic Messages ``{system, messages}``.

Text, images given by URL, tool calls and tool results are converted; parts a
model API has no place for (``reasoning``, ``step-start``, ``data-*``, source
parts) are left out.
"""

from .anthropic import AnthropicPayload, to_anthropic
from .openai_chat import to_openai_chat

__all__ = ["AnthropicPayload", "to_anthropic", "to_openai_chat"]
