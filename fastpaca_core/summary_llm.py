"""The LLM that writes summaries, reached through the official SDKs.

``openai.AsyncOpenAI`` (Chat Completions) or ``anthropic.AsyncAnthropic``
(Messages), pointed at the server's configured base URLs with the server-held
keys; SDK retries are off (the summariser retries with its own backoff). SDK
errors become :class:`~fastpaca_core.errors.SummaryUpstreamError` here, with
``retryable`` set for connection trouble, timeouts, 408, 409, 429 and 5xx.
The SDKs are imported on first use, on a worker thread (:meth:`prepare`), so
neither the event loop nor a held lease waits on a multi-second import.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import SummaryUpstreamError
from .summary_prompt import Prompt

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["Completion", "SDKSummaryModel", "SummaryModel"]

_RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    completion_tokens: int | None  # the provider's usage figure, when it gave one
    cut: bool = False  # stopped at the token limit (finish_reason length / max_tokens)


class SummaryModel(Protocol):
    """What the summariser calls; tests may pass their own."""

    def has_key(self, provider: str) -> bool:
        """Whether a server-held key exists for ``provider`` (without one, no call is made)."""
        ...

    async def prepare(self, provider: str) -> None:
        """Get ready to call ``provider`` (import, connect); called before taking a lease."""
        ...

    async def summarize(
        self, provider: str, model: str, prompt: Prompt, max_tokens: int
    ) -> Completion: ...

    async def close(self) -> None: ...


def _failure(exc: BaseException, status: int | None) -> SummaryUpstreamError:
    retryable = status is None or status in _RETRYABLE_STATUS or status >= 500
    where = f"HTTP {status}" if status is not None else type(exc).__name__
    return SummaryUpstreamError(
        f"summary request failed ({where})", retryable=retryable, status=status
    )


class SDKSummaryModel:
    """Summaries from OpenAI or Anthropic (or anything speaking their protocols)."""

    def __init__(
        self,
        *,
        openai_base_url: str,
        anthropic_base_url: str,
        openai_api_key: str | None,
        anthropic_api_key: str | None,
        timeout: float = 120.0,
    ) -> None:
        self._urls = {"openai": openai_base_url, "anthropic": anthropic_base_url}
        self._keys = {"openai": openai_api_key, "anthropic": anthropic_api_key}
        self._timeout = timeout
        self._clients: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SDKSummaryModel:
        return cls(
            openai_base_url=settings.openai_base_url,
            anthropic_base_url=settings.anthropic_base_url,
            openai_api_key=settings.openai_api_key,
            anthropic_api_key=settings.anthropic_api_key,
            timeout=settings.summarizer_timeout,
        )

    def has_key(self, provider: str) -> bool:
        return bool(self._keys.get(provider))

    async def prepare(self, provider: str) -> None:
        if provider not in self._clients:
            await asyncio.to_thread(self._client, provider)

    def _client(self, provider: str) -> Any:
        client = self._clients.get(provider)
        if client is None:
            if provider == "anthropic":
                import anthropic

                client = anthropic.AsyncAnthropic(
                    api_key=self._keys["anthropic"],
                    base_url=self._urls["anthropic"],
                    max_retries=0,
                    timeout=self._timeout,
                )
            else:
                import openai

                client = openai.AsyncOpenAI(
                    api_key=self._keys["openai"],
                    base_url=self._urls["openai"],
                    max_retries=0,
                    timeout=self._timeout,
                )
            self._clients[provider] = client
        return client

    async def summarize(
        self, provider: str, model: str, prompt: Prompt, max_tokens: int
    ) -> Completion:
        if provider == "anthropic":
            completion = await self._anthropic(model, prompt, max_tokens)
        else:
            completion = await self._openai(model, prompt, max_tokens)
        if not completion.text.strip():
            if completion.cut:
                # asking again gets the same: a reasoning model thinks past the limit
                raise SummaryUpstreamError(
                    f"the model spent all of policy.config.max_summary_tokens ({max_tokens}) "
                    "before writing a summary (a reasoning model needs a larger "
                    "max_summary_tokens)",
                    retryable=False,
                )
            raise SummaryUpstreamError("the model returned an empty summary", retryable=True)
        return completion

    async def _openai(self, model: str, prompt: Prompt, max_tokens: int) -> Completion:
        import openai

        try:
            reply = await self._client("openai").chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": prompt.system},
                    {"role": "user", "content": prompt.user},
                ],
                max_completion_tokens=max_tokens,
            )
        except openai.APIStatusError as exc:
            raise _failure(exc, exc.status_code) from exc
        except openai.OpenAIError as exc:  # connection trouble, timeouts
            raise _failure(exc, None) from exc
        text = reply.choices[0].message.content if reply.choices else None
        usage = reply.usage.completion_tokens if reply.usage is not None else None
        cut = bool(reply.choices) and reply.choices[0].finish_reason == "length"
        return Completion(text or "", usage, cut)

    async def _anthropic(self, model: str, prompt: Prompt, max_tokens: int) -> Completion:
        import anthropic

        try:
            reply = await self._client("anthropic").messages.create(
                model=model,
                max_tokens=max_tokens,
                system=prompt.system,
                messages=[{"role": "user", "content": prompt.user}],
            )
        except anthropic.APIStatusError as exc:
            raise _failure(exc, exc.status_code) from exc
        except anthropic.AnthropicError as exc:
            raise _failure(exc, None) from exc
        text = "".join(getattr(b, "text", "") for b in reply.content if b.type == "text")
        usage = reply.usage.output_tokens if reply.usage is not None else None
        return Completion(text, usage, reply.stop_reason == "max_tokens")

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()
