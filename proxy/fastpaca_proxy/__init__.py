"""Fastpaca's OpenAI- and Anthropic-compatible LLM proxy.

``fastpaca_proxy.fake_upstream`` is a scriptable fake of the OpenAI and
Anthropic APIs for tests, examples and benchmarks.
"""

__all__: list[str] = []
