"""One adapter per wire format the proxy speaks."""

from .anthropic import AnthropicMessages
from .base import Adapter, Assembler, Usage
from .openai_chat import OpenAIChat
from .openai_responses import OpenAIResponses

__all__ = [
    "Adapter",
    "AnthropicMessages",
    "Assembler",
    "OpenAIChat",
    "OpenAIResponses",
    "Usage",
]
