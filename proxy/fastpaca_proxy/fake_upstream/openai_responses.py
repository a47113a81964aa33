"""OpenAI Responses on the wire: the ``response`` object and its streaming events.

A stream is ``event: <type>`` / ``data: {...}`` pairs, every event numbered by
``sequence_number`` from 0: ``response.created``, ``response.in_progress``, then
per output item ``response.output_item.added``, its content events and
``response.output_item.done``, and finally ``response.completed`` (or
``response.incomplete``) with the full response and its usage. Output items
come in this order: an optional ``reasoning`` item (summary text streamed as
``response.reasoning_summary_*``), a ``message`` (``output_text`` and/or
``refusal`` parts), then one ``function_call`` item per tool call (arguments
streamed as ``response.function_call_arguments.delta``/``.done``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import openai_error_object
from .script import ErrorReply, Event, ResolvedToolCall, Turn


def usage(turn: Turn) -> dict[str, Any]:
    return {
        "input_tokens": turn.prompt_tokens,
        "input_tokens_details": {"cached_tokens": turn.cached_tokens},
        "output_tokens": turn.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
        "total_tokens": turn.total_tokens,
    }


def _status(turn: Turn) -> str:
    return "incomplete" if turn.finish_reason == "length" else "completed"


def response_object(
    turn: Turn, *, status: str, output: list[dict[str, Any]], final: bool
) -> dict[str, Any]:
    req = turn.request
    reasoning = req.get("reasoning") if isinstance(req.get("reasoning"), dict) else {}
    assert isinstance(reasoning, dict)
    incomplete = status == "incomplete"
    return {
        "id": turn.id,
        "object": "response",
        "created_at": turn.created,
        "status": status,
        "background": False,
        "completed_at": turn.created if final and status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": req.get("max_tool_calls"),
        "model": turn.model,
        "output": output,
        "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": req.get("previous_response_id"),
        "prompt_cache_key": req.get("prompt_cache_key"),
        "reasoning": {
            "effort": reasoning.get("effort"),
            "summary": reasoning.get("summary"),
        },
        "safety_identifier": req.get("safety_identifier"),
        "service_tier": "default",
        "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0),
        "text": req.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": req.get("tools", []),
        "top_logprobs": req.get("top_logprobs", 0),
        "top_p": req.get("top_p", 1.0),
        "truncation": req.get("truncation", "disabled"),
        "usage": usage(turn) if final else None,
        "user": req.get("user"),
        "metadata": req.get("metadata") or {},
    }


def _has_message(turn: Turn) -> bool:
    return bool(turn.text) or turn.refusal is not None or not turn.tool_calls


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


def _message_item(turn: Turn, status: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if status == "completed":
        if turn.text or turn.refusal is None:
            content.append(_text_part(turn.text))
        if turn.refusal is not None:
            content.append(_refusal_part(turn.refusal))
    return {
        "id": turn.message_id,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def _reasoning_item(turn: Turn, done: bool) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": turn.reasoning}] if done else []
    return {"id": turn.reasoning_id, "type": "reasoning", "summary": summary}


def _call_item(call: ResolvedToolCall, done: bool) -> dict[str, Any]:
    return {
        "id": call.item_id,
        "type": "function_call",
        "status": "completed" if done else "in_progress",
        "arguments": call.arguments if done else "",
        "call_id": call.call_id,
        "name": call.name,
    }


def output(turn: Turn) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if turn.reasoning is not None:
        items.append(_reasoning_item(turn, done=True))
    if _has_message(turn):
        items.append(_message_item(turn, "completed"))
    items.extend(_call_item(call, done=True) for call in turn.tool_calls)
    return items


def response(turn: Turn) -> dict[str, Any]:
    """The non-streaming ``response`` object."""
    return response_object(turn, status=_status(turn), output=output(turn), final=True)


def _events(turn: Turn) -> Iterator[dict[str, Any]]:
    """The stream's events in wire order, without sequence numbers."""
    initial = response_object(turn, status="in_progress", output=[], final=False)
    yield {"type": "response.created", "response": initial}
    yield {"type": "response.in_progress", "response": initial}
    index = 0
    if turn.reasoning is not None:
        at = {"output_index": index}
        where = {"item_id": turn.reasoning_id, **at, "summary_index": 0}
        yield {"type": "response.output_item.added", **at, "item": _reasoning_item(turn, False)}
        part = {"type": "summary_text", "text": ""}
        yield {"type": "response.reasoning_summary_part.added", **where, "part": part}
        for piece in turn.pieces(turn.reasoning):
            yield {"type": "response.reasoning_summary_text.delta", **where, "delta": piece}
        yield {"type": "response.reasoning_summary_text.done", **where, "text": turn.reasoning}
        part = {"type": "summary_text", "text": turn.reasoning}
        yield {"type": "response.reasoning_summary_part.done", **where, "part": part}
        yield {"type": "response.output_item.done", **at, "item": _reasoning_item(turn, True)}
        index += 1
    if _has_message(turn):
        at = {"output_index": index}
        item = _message_item(turn, "in_progress")
        yield {"type": "response.output_item.added", **at, "item": item}
        content_index = 0
        if turn.text or turn.refusal is None:
            where = {"item_id": turn.message_id, **at, "content_index": content_index}
            yield {"type": "response.content_part.added", **where, "part": _text_part("")}
            for piece in turn.pieces(turn.text):
                delta = {"delta": piece, "logprobs": []}
                yield {"type": "response.output_text.delta", **where, **delta}
            done = {"text": turn.text, "logprobs": []}
            yield {"type": "response.output_text.done", **where, **done}
            yield {"type": "response.content_part.done", **where, "part": _text_part(turn.text)}
            content_index += 1
        if turn.refusal is not None:
            where = {"item_id": turn.message_id, **at, "content_index": content_index}
            yield {"type": "response.content_part.added", **where, "part": _refusal_part("")}
            for piece in turn.pieces(turn.refusal):
                yield {"type": "response.refusal.delta", **where, "delta": piece}
            yield {"type": "response.refusal.done", **where, "refusal": turn.refusal}
            part = _refusal_part(turn.refusal)
            yield {"type": "response.content_part.done", **where, "part": part}
        item = _message_item(turn, "completed")
        yield {"type": "response.output_item.done", **at, "item": item}
        index += 1
    for call in turn.tool_calls:
        at = {"output_index": index}
        where = {"item_id": call.item_id, **at}
        yield {"type": "response.output_item.added", **at, "item": _call_item(call, False)}
        for piece in turn.argument_pieces(call.arguments):
            yield {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        args = {"arguments": call.arguments}
        yield {"type": "response.function_call_arguments.done", **where, **args}
        yield {"type": "response.output_item.done", **at, "item": _call_item(call, True)}
        index += 1
    status = _status(turn)
    final = response_object(turn, status=status, output=output(turn), final=True)
    yield {"type": f"response.{status}", "response": final}


def stream(turn: Turn) -> Iterator[Event]:
    """The SSE events of a streamed response, numbered from 0; ``*.delta`` ones are paced."""
    for number, payload in enumerate(_events(turn)):
        kind = payload["type"]
        data = {"type": kind, "sequence_number": number, **payload}
        yield Event(data, event=kind, delta=kind.endswith(".delta"))


def stream_error(err: ErrorReply, sequence_number: int) -> Iterator[Event]:
    """The ``error`` event a Responses stream ends with when it fails mid-way."""
    obj = openai_error_object(err)
    data = {
        "type": "error",
        "sequence_number": sequence_number,
        "code": obj["code"] or obj["type"],
        "message": obj["message"],
        "param": obj["param"],
    }
    yield Event(data, event="error")
