"""Conversions between our message shape (ai-sdk UIMessage parts) and model APIs.

- OpenAI Chat Completions: :func:`from_openai_chat`, :func:`to_openai_chat`,
  :func:`reply_from_chat_completion`, :func:`resolve_function_results` (with
  :func:`has_unpaired`: legacy ``function`` messages whose call is in the log);
- OpenAI Responses: :func:`from_responses_input`, :func:`to_responses_input`,
  :func:`reply_from_response`, :func:`resolve_item_references`;
- Anthropic Messages: :func:`from_anthropic`, :func:`to_anthropic`,
  :func:`reply_from_anthropic`.

``from_*`` split a request's conversation into its preamble (system /
developer messages, verbatim) and our messages; ``to_*`` give them back, so
``to_x(from_x(m).messages)`` is ``m`` without its preamble, for requests in
normalized form (see docs/formats.md). Provider extras are kept on the parts
under ``providerMetadata`` / ``callProviderMetadata``; what one provider
cannot replay from another (reasoning, file ids) is left out when converting
across providers, while text, files, tool calls and results always convert.
"""

from ._chat_functions import has_unpaired, resolve_function_results
from ._parts import ChatInput
from .anthropic import AnthropicPayload, from_anthropic, reply_from_anthropic, to_anthropic
from .openai_chat import from_openai_chat, reply_from_chat_completion, to_openai_chat
from .openai_responses import (
    from_responses_input,
    reply_from_response,
    resolve_item_references,
    to_responses_input,
)

__all__ = [
    "AnthropicPayload",
    "ChatInput",
    "from_anthropic",
    "from_openai_chat",
    "from_responses_input",
    "has_unpaired",
    "reply_from_anthropic",
    "reply_from_chat_completion",
    "reply_from_response",
    "resolve_function_results",
    "resolve_item_references",
    "to_anthropic",
    "to_openai_chat",
    "to_responses_input",
]
