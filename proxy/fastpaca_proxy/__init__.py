"""Fastpaca's OpenAI- and Anthropic-compatible LLM proxy.

Point an OpenAI or Anthropic SDK's base URL at ``/v1/contexts/{id}/openai`` or
``/v1/contexts/{id}/anthropic`` and every conversation is stored, compacted to
its budget and fed back to the model. :func:`install_proxy` mounts the routes
into the canonical API's aiohttp application.

``fastpaca_proxy.fake_upstream`` is a scriptable fake of the OpenAI and
Anthropic APIs for tests, examples and benchmarks.
:func:`estimate_prompt_tokens` counts a request body as the proxy counts what
it sends, which provider usage calibrates (docs/summarization.md).
"""

from .calibration import estimate_prompt_tokens
from .routes import install_proxy

__all__ = ["estimate_prompt_tokens", "install_proxy"]
