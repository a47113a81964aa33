"""What the upstream receives: every field a real SDK user sends, on every turn.

A field the proxy drops breaks a user with no error (a lost ``cache_control``
silently turns prompt caching off; a lost thinking ``signature`` makes
Anthropic reject the next turn). These tests drive the real ``openai`` and
``anthropic`` SDKs through the proxy to a scripted upstream that answers with
raw bodies (any field a provider returns) and records what it received, over
several turns, in both ways clients talk to it:

- ``full``: the client resends its whole history every turn; the upstream must
  receive exactly what the client sent;
- ``newest``: the client sends only its new messages; the upstream must
  receive the conversation as it happened (the client's messages and the
  upstream's replies, every field kept), rebuilt from the log.

Streamed and non-streamed replies are both stored, so both are checked.
"""

from __future__ import annotations

import collections
import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from fastpaca_core.formats import (
    from_anthropic,
    from_openai_chat,
    from_responses_input,
    to_anthropic,
    to_openai_chat,
    to_responses_input,
)
from fastpaca_core.http import create_app
from fastpaca_core.jsonutil import dumps, loads
from fastpaca_core.model import Message
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy
from fastpaca_proxy.adapters.anthropic import _cap_breakpoints

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, serve_in_thread

JSON = dict[str, Any]

# tiny but real payloads (a 1x1 PNG, a minimal PDF), base64
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9a"
    "wAAAABJRU5ErkJggg=="
)
PDF = "JVBERi0xLjQKMSAwIG9iajw8Pj5lbmRvYmoKdHJhaWxlcjw8Pj4KJSVFT0Y="
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="
EPHEMERAL = {"type": "ephemeral"}

MODES = ["full", "newest"]


def first_difference(actual: Any, expected: Any, path: str = "$") -> str | None:
    """Where two JSON values first differ (``None``: they are equal)."""
    if type(actual) is not type(expected):
        return f"{path}: {actual!r} != {expected!r}"
    if isinstance(actual, dict):
        for key in sorted(actual.keys() | expected.keys()):
            if key not in actual or key not in expected:
                ours, theirs = actual.get(key, "<absent>"), expected.get(key, "<absent>")
                return f"{path}.{key}: {ours!r} != {theirs!r}"
            found = first_difference(actual[key], expected[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(actual, list):
        for index, (a, e) in enumerate(zip(actual, expected, strict=False)):
            found = first_difference(a, e, f"{path}[{index}]")
            if found:
                return found
        if len(actual) != len(expected):
            return f"{path}: {len(actual)} items != {len(expected)}"
        return None
    return None if actual == expected else f"{path}: {actual!r} != {expected!r}"


def check(actual: Any, expected: Any) -> None:
    difference = first_difference(actual, expected)
    assert difference is None, difference


# -- a scripted upstream speaking raw bodies -------------------------------------


class Upstream:
    """Answers each provider path with the next scripted body (JSON, or SSE
    rendered from it when the request streams) and records what it received."""

    def __init__(self) -> None:
        self.replies: dict[str, collections.deque[JSON]] = collections.defaultdict(
            collections.deque
        )
        self.received: list[JSON] = []

    def script(self, path: str, *bodies: JSON) -> None:
        self.replies[path].extend(bodies)

    @property
    def last(self) -> JSON:
        return self.received[-1]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        for path in ("/v1/messages", "/v1/chat/completions", "/v1/responses"):
            app.router.add_post(path, self._answer)
        return app

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        queue = self.replies[request.path]
        reply = queue.popleft() if queue else _default(request.path)
        if not body.get("stream"):
            return web.json_response(reply)
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        render = {
            "/v1/messages": _anthropic_events,
            "/v1/chat/completions": _chat_events,
            "/v1/responses": _responses_events,
        }[request.path]
        for event, data in render(reply):
            head = f"event: {event}\n" if event else ""
            payload = data if isinstance(data, str) else json.dumps(data)
            await out.write(f"{head}data: {payload}\n\n".encode())
        await out.write_eof()
        return out


def _default(path: str) -> JSON:
    if path == "/v1/messages":
        return anthropic_message([{"type": "text", "text": "ok"}])
    if path == "/v1/chat/completions":
        return chat_completion({"role": "assistant", "content": "ok"})
    return response([_output_message("msg_default", "ok")])


def anthropic_message(content: list[JSON], stop: str = "end_turn") -> JSON:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def _anthropic_events(message: JSON) -> Iterator[tuple[str, Any]]:
    """A message as Anthropic streams it, delta by delta."""
    start = {**message, "content": [], "stop_reason": None}
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        deltas: list[JSON] = []
        if kind == "text":
            first: JSON = {"type": "text", "text": ""}
            deltas.append({"type": "text_delta", "text": block["text"]})
            deltas += [
                {"type": "citations_delta", "citation": c} for c in block.get("citations", [])
            ]
        elif kind == "thinking":
            first = {"type": "thinking", "thinking": ""}
            deltas.append({"type": "thinking_delta", "thinking": block["thinking"]})
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind in ("tool_use", "server_tool_use"):
            first = {**block, "input": {}}
            deltas.append({"type": "input_json_delta", "partial_json": json.dumps(block["input"])})
        else:  # redacted_thinking, server blocks: whole in the start event
            first = block
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": first,
            },
        )
        for delta in deltas:
            event = {"type": "content_block_delta", "index": index, "delta": delta}
            yield "content_block_delta", event
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def chat_completion(message: JSON, finish: str = "stop") -> JSON:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": OPENAI_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


_CHAT_STREAMED = frozenset(
    {"role", "content", "refusal", "reasoning_content", "audio", "function_call", "tool_calls"}
)


def _chat_events(body: JSON) -> Iterator[tuple[str, Any]]:
    """A completion as Chat Completions streams it."""
    choice = body["choices"][0]
    message = choice["message"]
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": 1,
        "model": body["model"],
    }

    def chunk(delta: JSON, finish: str | None = None) -> tuple[str, JSON]:
        return "", {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    for key in ("reasoning_content", "content", "refusal"):
        if isinstance(message.get(key), str):
            yield chunk({key: message[key]})
    if "audio" in message:
        audio = message["audio"]
        yield chunk({"audio": {"id": audio["id"], "transcript": audio.get("transcript", "")}})
        yield chunk({"audio": {"data": audio.get("data", ""), "expires_at": audio["expires_at"]}})
    for key, value in message.items():  # a provider's own keys, whole
        if key not in _CHAT_STREAMED and value is not None:
            yield chunk({key: value})
    if "function_call" in message:
        call = message["function_call"]
        yield chunk({"function_call": {"name": call["name"], "arguments": ""}})
        yield chunk({"function_call": {"arguments": call["arguments"]}})
    for index, call in enumerate(message.get("tool_calls") or []):
        kind = call["type"]
        head = {"index": index, "id": call["id"], "type": kind}
        if kind == "function":
            function = call["function"]
            yield chunk({"tool_calls": [{**head, "function": {"name": function["name"]}}]})
            delta = {"index": index, "function": {"arguments": function["arguments"]}}
            yield chunk({"tool_calls": [delta]})
        else:
            yield chunk({"tool_calls": [{**head, kind: call[kind]}]})
        extras = {k: v for k, v in call.items() if k not in ("id", "type", kind)}
        if extras:
            yield chunk({"tool_calls": [{"index": index, **extras}]})
    yield chunk({}, choice["finish_reason"])
    yield "", {**base, "choices": [], "usage": body["usage"]}
    yield "", "[DONE]"


def response(output: list[JSON]) -> JSON:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": OPENAI_MODEL,
        "output": output,
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    }


def _output_message(item_id: str, text: str) -> JSON:
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _responses_events(body: JSON) -> Iterator[tuple[str, Any]]:
    created = {**body, "status": "in_progress", "output": []}
    yield (
        "response.created",
        {"type": "response.created", "sequence_number": 0, "response": created},
    )
    yield (
        "response.completed",
        {
            "type": "response.completed",
            "sequence_number": 1,
            "response": body,
        },
    )


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Upstream, str]]:
    """The scripted upstream and Fastpaca's base URL in front of it."""
    fake = Upstream()
    with serve_in_thread(fake.app) as up:
        config = Settings(
            store=f"sqlite:///{tmp_path / 'fidelity.db'}",
            openai_base_url=f"{up}/v1",
            anthropic_base_url=up,
        )
        with serve_in_thread(lambda: install_proxy(create_app(config))) as base:
            yield fake, base


# -- conversations, turn by turn ----------------------------------------------


class Conversation:
    """What the client sends each turn in one mode, and what the upstream
    must receive: the whole conversation as it happened."""

    def __init__(self, mode: str, normal: Callable[[JSON], JSON] = lambda m: m) -> None:
        self.mode = mode
        self.normal = normal
        self.history: list[JSON] = []  # every message so far, replies included
        self.fresh: list[JSON] = []  # the client's messages since the last reply

    def say(self, *messages: JSON) -> list[JSON]:
        """The client's new messages; what it sends in its mode."""
        self.history += copy.deepcopy(list(messages))
        self.fresh += copy.deepcopy(list(messages))
        sent = self.history if self.mode == "full" else self.fresh
        return copy.deepcopy(sent)

    def heard(self, reply: JSON) -> None:
        self.history.append(copy.deepcopy(reply))
        self.fresh = []

    def expected(self) -> list[JSON]:
        """What the upstream must receive now: in ``newest`` mode the turns
        before the request's come from the log, in normalized form
        (``normal``)."""
        if self.mode == "full":
            return self.history
        held = len(self.history) - len(self.fresh)
        return [self.normal(m) for m in self.history[:held]] + self.history[held:]


def anthropic_normal(message: JSON) -> JSON:
    """A turn as ``to_anthropic`` gives it: a lone plain text block is a string."""
    content = message.get("content")
    if isinstance(content, list) and len(content) == 1 and content[0].keys() == {"type", "text"}:
        return {**message, "content": content[0]["text"]}
    return message


# -- Anthropic Messages ---------------------------------------------------------

SYSTEM_BLOCKS = [{"type": "text", "text": "You are terse.", "cache_control": EPHEMERAL}]

ANTHROPIC_TURNS: list[tuple[list[JSON], JSON]] = [
    (
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look at these.", "cache_control": EPHEMERAL},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        "cache_control": {"type": "ephemeral", "ttl": "1h"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                        "title": "Report",
                        "context": "Q3 numbers",
                        "citations": {"enabled": True},
                    },
                    {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "Plain."},
                        "citations": {"enabled": True},
                    },
                    {"type": "image", "source": {"type": "file", "file_id": "file_011"}},
                    {"type": "text", "text": "Future.", "x_future": {"a": [1, None, 2]}},
                ],
                "x_future_message": "kept",
            }
        ],
        anthropic_message(
            [
                {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCkYIARAB"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                {
                    "type": "text",
                    "text": "The report says 3.",
                    "citations": [
                        {
                            "type": "page_location",
                            "cited_text": "3",
                            "document_index": 3,
                            "document_title": "Report",
                            "start_page_number": 1,
                            "end_page_number": 2,
                        }
                    ],
                },
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat"}},
            ],
            stop="tool_use",
        ),
    ),
    (
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "text", "text": "partial", "x_future": 1},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": PNG,
                                },
                            },
                        ],
                        "is_error": True,
                        "cache_control": EPHEMERAL,
                    },
                ],
            }
        ],
        anthropic_message(
            [
                {"type": "thinking", "thinking": "Again.", "signature": "EqQBCkYIAhAC"},
                {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {}},
                {"type": "tool_use", "id": "toolu_3", "name": "other", "input": {"n": [1]}},
            ],
            stop="tool_use",
        ),
    ),
    (
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": "fine",
                        "is_error": False,
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_3"},
                    {"type": "text", "text": "Thanks, and?"},
                ],
            }
        ],
        anthropic_message(
            [
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {"query": "cats"},
                },
                {
                    "type": "web_search_tool_result",
                    "tool_use_id": "srvtoolu_1",
                    "content": [
                        {
                            "type": "web_search_result",
                            "url": "https://x.test/cats",
                            "title": "Cats",
                            "encrypted_content": "EqgfCioIARgBIiQ3",
                            "page_age": "April 30, 2025",
                        }
                    ],
                },
                {
                    "type": "text",
                    "text": "Done.",
                    "citations": [
                        {
                            "type": "web_search_result_location",
                            "url": "https://x.test/cats",
                            "title": "Cats",
                            "encrypted_index": "Eo8BCioIAhgB",
                            "cited_text": "Cats are",
                        }
                    ],
                },
            ]
        ),
    ),
    (
        [{"role": "user", "content": "Last one."}],
        anthropic_message([{"type": "text", "text": "Bye."}]),
    ),
]


def anthropic_client(base: str, context_id: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{base}/v1/contexts/{context_id}/anthropic", api_key="k", max_retries=0
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", MODES)
def test_anthropic_fields_survive_every_turn(
    upstream: tuple[Upstream, str], mode: str, stream: bool
) -> None:
    fake, base = upstream
    chat = Conversation(mode, anthropic_normal)
    with anthropic_client(base, f"ant-{mode}-{stream}") as sdk:
        for messages, reply in ANTHROPIC_TURNS:
            fake.script("/v1/messages", reply)
            sent = chat.say(*messages)
            params: JSON = {
                "model": ANTHROPIC_MODEL,
                "max_tokens": 100,
                "system": SYSTEM_BLOCKS,
                "messages": sent,
            }
            if stream:
                with sdk.messages.stream(**params) as events:
                    got = events.get_final_message().to_dict(mode="json", exclude_none=True)
            else:
                got = sdk.messages.with_raw_response.create(**params).http_response.json()
            assert fake.last["system"] == SYSTEM_BLOCKS
            check(fake.last["messages"], chat.expected())
            check(got["content"], reply["content"])
            chat.heard({"role": "assistant", "content": got["content"]})


def test_anthropic_full_history_moves_its_cache_breakpoint(upstream: tuple[Upstream, str]) -> None:
    """The client moves its breakpoint to its newest message each turn (as
    Anthropic's docs advise): the upstream gets the breakpoints as sent, not
    the ones stored with earlier turns (more than 4 are refused)."""
    fake, base = upstream
    history: list[JSON] = []
    with anthropic_client(base, "ant-moving") as sdk:
        for turn in range(6):
            for message in history:  # the breakpoint moves on
                if isinstance(message["content"], list):
                    message["content"] = message["content"][0]["text"]
            text = f"question {turn}"
            history.append(
                {
                    "role": "user",
                    "content": [{"type": "text", "text": text, "cache_control": EPHEMERAL}],
                }
            )
            reply = sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=history)
            check(fake.last["messages"], history)
            history.append({"role": "assistant", "content": reply.content[0].text})  # type: ignore[union-attr]


def test_anthropic_newest_only_keeps_at_most_four_breakpoints(
    upstream: tuple[Upstream, str],
) -> None:
    """A client sending only its newest message with a breakpoint each turn:
    the stored breakpoints of earlier turns are kept, newest first, within
    Anthropic's limit of 4 (a 5th is refused); the request's own always."""
    fake, base = upstream
    with anthropic_client(base, "ant-cap") as sdk:
        for turn in range(6):
            message = {
                "role": "user",
                "content": [{"type": "text", "text": f"q{turn}", "cache_control": EPHEMERAL}],
            }
            sdk.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=10, system=SYSTEM_BLOCKS, messages=[message]
            )
            sent = fake.last["messages"]
            assert sent[-1] == message
            marked = [
                block["text"]
                for m in sent
                if isinstance(m["content"], list)
                for block in m["content"]
                if "cache_control" in block
            ]
            assert marked == [f"q{i}" for i in range(max(0, turn - 2), turn + 1)]
            # the rest are plain again, exactly as they would have been sent
            assert all(
                m["content"] == [{"type": "text", "text": m["content"][0]["text"]}]
                for m in sent[:-1]
                if m["role"] == "user" and m["content"][0]["text"] not in marked
            )


# -- OpenAI Chat Completions --------------------------------------------------------

CHAT_PREAMBLE: list[JSON] = [
    {"role": "developer", "content": [{"type": "text", "text": "Be terse."}], "name": "ops"},
    {"role": "system", "content": "You help.", "name": "sys"},
]

CHAT_TURNS: list[tuple[list[JSON], JSON]] = [
    (
        [
            {
                "role": "user",
                "name": "alice",
                "content": [
                    {"type": "text", "text": "Look."},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x.test/a.png", "detail": "high"},
                    },
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}},
                    {
                        "type": "file",
                        "file": {
                            "file_data": f"data:application/pdf;base64,{PDF}",
                            "filename": "a.pdf",
                        },
                    },
                    {"type": "file", "file": {"file_id": "file-abc"}},
                    {"type": "text", "text": "Future.", "x_future": {"k": [1]}},
                ],
                "x_future_message": True,
            }
        ],
        chat_completion(
            {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{ "q": "cat" }'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "other", "arguments": "{}"},
                    },
                ],
            },
            "tool_calls",
        ),
    ),
    (
        [
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "other"}],
            },
        ],
        chat_completion({"role": "assistant", "content": None, "refusal": "I can't."}),
    ),
    (
        [{"role": "user", "content": "Say it.", "name": "bob"}],
        chat_completion(
            {
                "role": "assistant",
                "content": None,
                "audio": {
                    "id": "audio_1",
                    "data": WAV,
                    "transcript": "Hello.",
                    "expires_at": 4102444800,  # 2100: still held upstream
                },
            }
        ),
    ),
    (
        [{"role": "user", "content": "Call it the old way."}],
        chat_completion(
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "legacy", "arguments": '{"x":1}'},
            },
            "function_call",
        ),
    ),
    (
        [{"role": "function", "name": "legacy", "content": "42"}],
        chat_completion({"role": "assistant", "content": "The answer is 42."}),
    ),
    (
        [{"role": "user", "content": "Search, then grep."}],
        chat_completion(
            {
                "role": "assistant",
                "content": "On it.",
                "reasoning_details": [{"type": "reasoning.text", "text": "Hm.", "index": 0}],
                "tool_calls": [
                    {
                        "id": "call_3",
                        "type": "function",
                        "function": {"name": "search", "arguments": '{"q":"x"}'},
                        "extra_content": {"google": {"thought_signature": "c2ln"}},
                    },
                    {"id": "call_4", "type": "custom", "custom": {"name": "grep", "input": "foo"}},
                ],
            },
            "tool_calls",
        ),
    ),
    (
        [
            {"role": "tool", "tool_call_id": "call_3", "content": "found"},
            {"role": "tool", "tool_call_id": "call_4", "content": "foo:1"},
        ],
        chat_completion({"role": "assistant", "content": "Found it."}),
    ),
    (
        [{"role": "user", "content": "Bye."}],
        chat_completion({"role": "assistant", "content": "Bye."}),
    ),
]


def _chat_request_form(message: JSON) -> JSON:
    """A reply message as a request takes it back: no nulls, ``audio`` by id."""
    out = {k: v for k, v in message.items() if v is not None}
    if "audio" in out:
        out["audio"] = {"id": out["audio"]["id"]}
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", MODES)
def test_chat_fields_survive_every_turn(
    upstream: tuple[Upstream, str], mode: str, stream: bool
) -> None:
    fake, base = upstream
    chat = Conversation(mode)
    with openai.OpenAI(
        base_url=f"{base}/v1/contexts/chat-{mode}-{stream}/openai", api_key="k", max_retries=0
    ) as sdk:
        for messages, reply in CHAT_TURNS:
            fake.script("/v1/chat/completions", reply)
            sent = [*CHAT_PREAMBLE, *chat.say(*messages)]
            if stream:
                chunks = sdk.chat.completions.create(
                    model=OPENAI_MODEL,
                    messages=sent,
                    stream=True,  # type: ignore[arg-type]
                )
                for _ in chunks:
                    pass
            else:
                sdk.chat.completions.create(model=OPENAI_MODEL, messages=sent)  # type: ignore[arg-type]
            check(fake.last["messages"], [*CHAT_PREAMBLE, *chat.expected()])
            chat.heard(_chat_request_form(reply["choices"][0]["message"]))


# -- OpenAI Responses -----------------------------------------------------------------

RESPONSES_TURNS: list[tuple[list[JSON], JSON]] = [
    (
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look."},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                    {"type": "input_image", "file_id": "file-img", "detail": "auto"},
                    {
                        "type": "input_file",
                        "file_data": f"data:application/pdf;base64,{PDF}",
                        "filename": "a.pdf",
                    },
                    {"type": "input_file", "file_url": "https://x.test/b.pdf"},
                    {"type": "input_file", "file_id": "file-doc"},
                    {"type": "input_text", "text": "Future.", "x_future": [1]},
                ],
                "type": "message",
                "x_future_item": "kept",
            }
        ],
        response(
            [
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Thinking."}],
                    "encrypted_content": "gAAAAB",
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "lookup",
                    "arguments": '{"q": "cat"}',
                    "status": "completed",
                },
            ]
        ),
    ),
    (
        [{"type": "function_call_output", "call_id": "call_1", "output": "a cat"}],
        response(
            [
                {
                    "type": "message",
                    "id": "msg_2",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": "A cat.",
                            "annotations": [
                                {
                                    "type": "url_citation",
                                    "url": "https://x.test",
                                    "start_index": 0,
                                    "end_index": 1,
                                    "title": "x",
                                }
                            ],
                        },
                        {"type": "refusal", "refusal": "No more."},
                    ],
                }
            ]
        ),
    ),
    ([{"role": "user", "content": "Bye."}], response([_output_message("msg_3", "Bye.")])),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", MODES)
def test_responses_fields_survive_every_turn(
    upstream: tuple[Upstream, str], mode: str, stream: bool
) -> None:
    fake, base = upstream
    chat = Conversation(mode)
    developer: JSON = {"role": "developer", "content": "Be terse."}
    with openai.OpenAI(
        base_url=f"{base}/v1/contexts/resp-{mode}-{stream}/openai", api_key="k", max_retries=0
    ) as sdk:
        for items, reply in RESPONSES_TURNS:
            fake.script("/v1/responses", reply)
            sent = [developer, *chat.say(*items)]
            if stream:
                for _ in sdk.responses.create(model=OPENAI_MODEL, input=sent, stream=True):  # type: ignore[arg-type]
                    pass
            else:
                sdk.responses.create(model=OPENAI_MODEL, input=sent)  # type: ignore[arg-type]
            check(fake.last["input"], [developer, *chat.expected()])
            for item in reply["output"]:
                chat.heard(item)


def test_chat_full_history_is_sent_as_the_client_sent_it(upstream: tuple[Upstream, str]) -> None:
    """SDK-style messages (``null`` fields, ``annotations``) and a developer
    message in the middle of the conversation reach the upstream as sent,
    in their places, not moved to the front."""
    fake, base = upstream
    fake.script(
        "/v1/chat/completions",
        chat_completion(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            "tool_calls",
        ),
    )
    history: list[JSON] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "al"},
    ]
    with openai.OpenAI(
        base_url=f"{base}/v1/contexts/chat-as-sent/openai", api_key="k", max_retries=0
    ) as sdk:
        first = sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)  # type: ignore[arg-type]
        check(fake.last["messages"], history)
        history += [
            first.choices[0].message.model_dump(mode="json"),  # content, refusal... null
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "developer", "content": "It is 5 pm now."},
            {"role": "user", "content": "and now?"},
        ]
        assert history[2]["refusal"] is None
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)  # type: ignore[arg-type]
        check(fake.last["messages"], history)
        history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "bye"}]
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)  # type: ignore[arg-type]
        check(fake.last["messages"], history)


def test_responses_full_history_keeps_developer_items_in_place(
    upstream: tuple[Upstream, str],
) -> None:
    fake, base = upstream
    items: list[JSON] = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    with openai.OpenAI(
        base_url=f"{base}/v1/contexts/resp-in-place/openai", api_key="k", max_retries=0
    ) as sdk:
        sdk.responses.create(model=OPENAI_MODEL, input=items)  # type: ignore[arg-type]
        check(fake.last["input"], items)
        items += [
            _output_message("msg_default", "ok"),
            {"role": "system", "content": "The user is on mobile."},
            {"role": "user", "content": "and?"},
        ]
        sdk.responses.create(model=OPENAI_MODEL, input=items)  # type: ignore[arg-type]
        check(fake.last["input"], items)


def test_anthropic_breakpoints_on_resent_assistant_turns(upstream: tuple[Upstream, str]) -> None:
    """A breakpoint the client puts on a block of an earlier assistant turn
    (tool_use included) is sent where it put it, and gone once it moves on."""
    fake, base = upstream
    fake.script(
        "/v1/messages",
        anthropic_message(
            [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_9", "name": "look", "input": {}},
            ],
            stop="tool_use",
        ),
    )
    history: list[JSON] = [{"role": "user", "content": "look"}]
    with anthropic_client(base, "ant-assistant-marks") as sdk:
        first = sdk.messages.with_raw_response.create(
            model=ANTHROPIC_MODEL, max_tokens=10, messages=history
        ).http_response.json()
        marked = copy.deepcopy(first["content"])
        marked[1]["cache_control"] = EPHEMERAL
        history += [
            {"role": "assistant", "content": marked},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}],
            },
        ]
        sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=history)
        check(fake.last["messages"], history)
        history[1] = {"role": "assistant", "content": first["content"]}  # moved on
        history += [
            {"role": "assistant", "content": "ok"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "q", "cache_control": EPHEMERAL}],
            },
        ]
        sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=history)
        check(fake.last["messages"], history)


# -- odd shapes: kept verbatim rather than changed ----------------------------------------

ODD_CHAT: list[list[JSON]] = [
    [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "x_future": 1}}
            ],
        }
    ],
    [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": None}}
            ],
        }
    ],
    [
        {
            "role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": WAV, "format": "mpeg"}}],
        }
    ],
    [
        {
            "role": "user",
            "content": [{"type": "file", "file": {"file_data": "https://x.test/a.pdf"}}],
        }
    ],
    [{"role": "user", "content": []}],
    [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}", "x_future": True},
                },
                {"id": "c2", "type": "custom", "custom": {"name": "g", "input": "", "x": [1]}},
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": [
                {"type": "text", "text": "a"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "b"},
    ],
    [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "a"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        }
    ],
]

ODD_ANTHROPIC: list[list[JSON]] = [
    [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "url", "url": "https://x.test/a", "x_future": 1},
                }
            ],
        }
    ],
    [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                }
            ],
        }
    ],
    [
        {
            "role": "user",
            "content": [
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "text/plain", "data": "QQ=="},
                }
            ],
        }
    ],
    [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "unsigned"}]},
    ],
    [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "", "cache_control": EPHEMERAL},
                {"type": "text", "text": "a"},
            ],
        }
    ],
    [{"role": "user", "content": "q", "x_future": {"k": 1}}],
    [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}], "x_future": 2},
    ],
]

ODD_RESPONSES: list[list[JSON]] = [
    [
        {
            "role": "user",
            "content": [{"type": "input_image", "image_url": "https://x.test/a", "file_id": "f"}],
        }
    ],
    [
        {
            "role": "user",
            "content": [{"type": "input_file", "file_url": "https://x.test/a", "x_future": 1}],
        }
    ],
]


@pytest.mark.parametrize("messages", ODD_CHAT)
def test_odd_chat_shapes_come_back_as_they_came(messages: list[JSON]) -> None:
    split = from_openai_chat(messages)
    stored = [Message.parse(loads(dumps(m.to_json()))) for m in split.messages]
    assert to_openai_chat(stored) == messages


@pytest.mark.parametrize("messages", ODD_ANTHROPIC)
def test_odd_anthropic_shapes_come_back_as_they_came(messages: list[JSON]) -> None:
    split = from_anthropic(messages)
    stored = [Message.parse(loads(dumps(m.to_json()))) for m in split.messages]
    assert to_anthropic(stored).messages == messages


@pytest.mark.parametrize("items", ODD_RESPONSES)
def test_odd_responses_shapes_come_back_as_they_came(items: list[JSON]) -> None:
    split = from_responses_input(items)
    stored = [Message.parse(loads(dumps(m.to_json()))) for m in split.messages]
    assert to_responses_input(stored) == items


def test_odd_shapes_survive_the_log(upstream: tuple[Upstream, str]) -> None:
    """Sent once, replayed from the log on the next turns as they came."""
    fake, base = upstream
    with anthropic_client(base, "ant-odd") as sdk:
        expected: list[JSON] = []
        for messages in ODD_ANTHROPIC[:4]:
            turn = messages[-1] if messages[-1]["role"] == "user" else messages[0]
            sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=[turn])
            expected += [turn]
            check(fake.last["messages"], expected)
            expected += [{"role": "assistant", "content": "ok"}]
    with openai.OpenAI(
        base_url=f"{base}/v1/contexts/chat-odd/openai", api_key="k", max_retries=0
    ) as client:
        expected = []
        for messages in ODD_CHAT[:4]:
            client.chat.completions.create(model=OPENAI_MODEL, messages=messages)  # type: ignore[arg-type]
            expected += messages
            check(fake.last["messages"], expected)
            expected += [{"role": "assistant", "content": "ok"}]


# -- the breakpoint limit -----------------------------------------------------------------


def test_the_cap_counts_system_tools_and_tool_results_and_copies_what_it_changes() -> None:
    def text(t: str, mark: bool = False) -> JSON:
        return {"type": "text", "text": t, **({"cache_control": EPHEMERAL} if mark else {})}

    turns: list[JSON] = [
        {"role": "user", "content": [text("a", True), text("b", True)]},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [text("c", True)],
                    "cache_control": EPHEMERAL,
                }
            ],
        },
        {"role": "user", "content": [text("d", True)]},  # the request's own
    ]
    before = copy.deepcopy(turns)
    body = {
        "system": [text("s", True)],
        "tools": [{"name": "t", "input_schema": {}, "cache_control": EPHEMERAL}],
        "messages": [turns[-1]],
    }
    built = list(turns)
    _cap_breakpoints(body, built, 3)
    assert turns == before  # what the log gave is never changed in place
    assert built[0]["content"] == [text("a"), text("b")]
    assert "cache_control" not in built[2]["content"][0]  # the oldest 3 went: a, b, this
    assert built[2]["content"][0]["content"] == [text("c", True)]
    assert built[3] is turns[3]
    # within the limit: nothing changes
    built = turns[1:]  # the tool result, c, d: 3
    _cap_breakpoints({"messages": [turns[-1]]}, built, 2)
    assert all(a is b for a, b in zip(built, turns[1:], strict=True))


# -- what cannot work with a context is refused, in the provider's shape ------------------


@pytest.mark.parametrize(("field", "value"), [("conversation", "conv_1"), ("background", True)])
def test_responses_refuses_what_the_log_cannot_hold(
    upstream: tuple[Upstream, str], field: str, value: Any
) -> None:
    fake, base = upstream
    with openai.OpenAI(
        base_url=f"{base}/v1/contexts/resp-refused/openai", api_key="k", max_retries=0
    ) as sdk:
        with pytest.raises(openai.BadRequestError) as info:
            sdk.responses.create(model=OPENAI_MODEL, input="hi", extra_body={field: value})
    assert info.value.code == "invalid_request"
    assert field in info.value.message
    assert fake.received == []
