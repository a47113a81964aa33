"""Hypothesis strategies: realistic request histories in normalized form, per format.

Normalized: a content list that is one plain text item is given as a string,
and no key is ``null``. ``portable=True`` keeps to what every format carries
(no custom tools, non-object inputs, unparseable arguments, audio, file ids,
empty texts or provider-only items), for the cross-format tests.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from fastpaca_core.jsonutil import dumps_str

Draw = Any
Msg = dict[str, Any]

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
WORDS = st.text(alphabet="abc xyz\n.é", min_size=1, max_size=12)
NAMES = st.sampled_from(["get_weather", "search", "result", "lookup-v2", "db.query"])
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
OBJECTS = st.dictionaries(st.text("abcdef_", max_size=5), JSON, max_size=3)
B64 = st.binary(min_size=1, max_size=9).map(lambda raw: base64.b64encode(raw).decode())
HTTP_IMAGE = st.sampled_from(["https://example.test/cat.png", "https://example.test/a.jpg"])


def _texts(portable: bool) -> st.SearchStrategy[str]:
    return WORDS if portable else TEXT


def _one_text(items: list[Msg], text_type: str) -> str | list[Msg]:
    """Normalized content: one plain text item is a string."""
    if len(items) == 1 and items[0].keys() == {"type", "text"} and items[0]["type"] == text_type:
        return str(items[0]["text"])
    return items


def _arguments(draw: Draw, value: Any, portable: bool) -> str:
    styles = ["compact", "spaced"] if portable else ["compact", "spaced", "invalid"]
    style = draw(st.sampled_from(styles))
    if style == "compact":
        return dumps_str(value)
    if style == "spaced":
        return json.dumps(value)
    return '{"unterminated": ' + dumps_str(value)


# -- OpenAI Chat Completions -------------------------------------------------


@st.composite
def chat_user_item(draw: Draw, portable: bool = False) -> Msg:
    kinds = ["text", "image", "pdf"] + ([] if portable else ["audio", "file_id", "text+"])
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return {"type": "text", "text": draw(_texts(portable))}
    if kind == "text+":
        return {"type": "text", "text": draw(TEXT), "cache_control": {"type": "ephemeral"}}
    if kind == "image":
        url = draw(HTTP_IMAGE | B64.map(lambda b: f"data:image/png;base64,{b}"))
        image: Msg = {"url": url}
        if draw(st.booleans()):
            image["detail"] = draw(st.sampled_from(["low", "high", "auto"]))
        return {"type": "image_url", "image_url": image}
    if kind == "pdf":
        data = draw(B64)
        return {
            "type": "file",
            "file": {"file_data": f"data:application/pdf;base64,{data}", "filename": "a.pdf"},
        }
    if kind == "audio":
        audio = {"data": draw(B64), "format": draw(st.sampled_from(["wav", "mp3"]))}
        return {"type": "input_audio", "input_audio": audio}
    return {"type": "file", "file": {"file_id": "file-abc123"}}


@st.composite
def chat_call(draw: Draw, ids: Iterator[int], portable: bool = False) -> Msg:
    call_id = f"call_{next(ids)}"
    name = draw(NAMES)
    if not portable and draw(st.integers(0, 5)) == 0:
        return {"id": call_id, "type": "custom", "custom": {"name": name, "input": draw(TEXT)}}
    value = draw(OBJECTS if portable else JSON)
    function = {"name": name, "arguments": _arguments(draw, value, portable)}
    call: Msg = {"id": call_id, "type": "function", "function": function}
    if not portable and draw(st.integers(0, 5)) == 0:
        call["extra_content"] = {"google": {"thought_signature": draw(B64)}}
    return call


@st.composite
def chat_turn(draw: Draw, ids: Iterator[int], portable: bool = False) -> list[Msg]:
    """An assistant message and the tool messages answering its calls."""
    texts = _texts(portable)
    calls = draw(st.lists(chat_call(ids, portable), max_size=3))
    out: Msg = {"role": "assistant"}
    if draw(st.integers(0, 3)) == 0:
        out["reasoning_content"] = draw(texts)
    mode = draw(st.sampled_from(["none", "str", "list"] if calls else ["str", "list"]))
    if mode == "str":
        out["content"] = draw(texts)
    elif mode == "list":
        text = st.builds(lambda t: {"type": "text", "text": t}, texts)
        refusal = st.builds(lambda t: {"type": "refusal", "refusal": t}, texts)
        items = draw(st.lists(text if portable else text | refusal, min_size=1, max_size=3))
        out["content"] = _one_text(items, "text")
    if draw(st.integers(0, 4)) == 0:
        out["refusal"] = draw(texts)
    if not portable and draw(st.integers(0, 4)) == 0:
        out["name"] = "helper"
    if calls:
        out["tool_calls"] = calls
    answers = []
    for call in draw(st.permutations(calls)):
        content: Any = draw(texts)
        if draw(st.booleans()):
            items = draw(st.lists(texts, min_size=1, max_size=2))
            content = [{"type": "text", "text": t} for t in items]
        answers.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    return [out, *answers]


@st.composite
def chat_histories(draw: Draw, portable: bool = False) -> list[Msg]:
    ids = itertools.count()
    out: list[Msg] = []
    if draw(st.booleans()):
        out.append({"role": draw(st.sampled_from(["system", "developer"])), "content": "Be brief."})
    for _ in range(draw(st.integers(1, 3))):
        items = draw(st.lists(chat_user_item(portable), min_size=1, max_size=3))
        content = draw(_texts(portable)) if draw(st.booleans()) else _one_text(items, "text")
        user: Msg = {"role": "user", "content": content}
        if not portable and draw(st.integers(0, 4)) == 0:
            user["name"] = "alice"
        out.append(user)
        for _ in range(draw(st.integers(0, 2))):
            out.extend(draw(chat_turn(ids, portable)))
        if draw(st.integers(0, 5)) == 0:
            out.append({"role": "system", "content": [{"type": "text", "text": "Mind the time."}]})
    return out


# -- OpenAI Responses --------------------------------------------------------


@st.composite
def responses_user_item(draw: Draw, portable: bool = False) -> Msg:
    kinds = ["text", "image", "pdf"] + ([] if portable else ["image_id", "file_id", "pdf_url"])
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return {"type": "input_text", "text": draw(_texts(portable))}
    if kind == "image":
        url = draw(HTTP_IMAGE | B64.map(lambda b: f"data:image/jpeg;base64,{b}"))
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    if kind == "image_id":
        return {"type": "input_image", "file_id": "file-img1", "detail": "low"}
    if kind == "pdf":
        data = f"data:application/pdf;base64,{draw(B64)}"
        return {"type": "input_file", "file_data": data, "filename": "report.pdf"}
    if kind == "pdf_url":
        return {"type": "input_file", "file_url": "https://example.test/doc.pdf"}
    return {"type": "input_file", "file_id": "file-doc1"}


@st.composite
def responses_run(draw: Draw, ids: Iterator[int], portable: bool = False) -> list[Msg]:
    """One model turn: reasoning, messages and calls, then the calls' outputs."""
    texts = _texts(portable)

    def reasoning() -> Msg:
        n = next(ids)
        summary = [{"type": "summary_text", "text": t} for t in draw(st.lists(texts, max_size=2))]
        item: Msg = {"type": "reasoning", "id": f"rs_{n}", "summary": summary}
        if draw(st.booleans()):
            item["encrypted_content"] = "gAAAA" + draw(B64)
        return item

    def message() -> Msg:
        n = next(ids)
        if draw(st.booleans()):
            return {"role": "assistant", "content": draw(texts)}
        annotations = draw(
            st.sampled_from(
                [
                    [],
                    [
                        {
                            "type": "url_citation",
                            "start_index": 0,
                            "end_index": 1,
                            "title": "Example",
                            "url": "https://example.test/",
                        }
                    ],
                ]
            )
        )
        content: list[Msg] = [
            {"type": "output_text", "text": draw(texts), "annotations": annotations}
        ]
        if draw(st.integers(0, 4)) == 0:
            content.append({"type": "refusal", "refusal": draw(texts)})
        item: Msg = {
            "type": "message",
            "id": f"msg_{n}",
            "role": "assistant",
            "status": "completed",
            "content": content,
        }
        if draw(st.integers(0, 3)) == 0:
            item["phase"] = "final_answer"
        return item

    def call() -> Msg:
        n = next(ids)
        name = draw(NAMES)
        if not portable and draw(st.integers(0, 5)) == 0:
            return {"type": "custom_tool_call", "call_id": f"call_{n}", "name": name, "input": "x"}
        value = draw(OBJECTS if portable else JSON)
        item: Msg = {
            "type": "function_call",
            "call_id": f"call_{n}",
            "name": name,
            "arguments": _arguments(draw, value, portable),
        }
        if draw(st.booleans()):
            item.update(id=f"fc_{n}", status="completed")
        return item

    def other() -> Msg:
        n = next(ids)
        if draw(st.booleans()):
            return {"type": "item_reference", "id": f"msg_old{n}"}
        action = {"type": "search", "query": draw(TEXT)}
        return {"type": "web_search_call", "id": f"ws_{n}", "status": "completed", "action": action}

    if portable:
        items = [reasoning()] if draw(st.booleans()) else []
        items += [message() for _ in range(draw(st.integers(0, 2)))]
        items += [call() for _ in range(draw(st.integers(0 if items else 1, 3)))]
    else:
        makers = [reasoning, message, call, other]
        kinds = draw(st.lists(st.sampled_from(range(4)), min_size=1, max_size=5))
        items = [makers[k]() for k in kinds]
    outputs = []
    for item in draw(st.permutations([i for i in items if i.get("type", "").endswith("_call")])):
        if item["type"] == "web_search_call":
            continue
        output: Any = draw(texts)
        if draw(st.booleans()):
            output = [{"type": "input_text", "text": t} for t in draw(st.lists(texts, max_size=2))]
        kind = "custom_tool_call_output" if item["type"] == "custom_tool_call" else None
        out: Msg = {"type": kind or "function_call_output", "call_id": item["call_id"]}
        out["output"] = output
        outputs.append(out)
    return items + outputs


@st.composite
def responses_histories(draw: Draw, portable: bool = False) -> list[Msg]:
    ids = itertools.count()
    out: list[Msg] = []
    if draw(st.booleans()):
        out.append({"role": "developer", "content": "Answer in English."})
    for _ in range(draw(st.integers(1, 3))):
        items = draw(st.lists(responses_user_item(portable), min_size=1, max_size=3))
        content = draw(_texts(portable)) if draw(st.booleans()) else _one_text(items, "input_text")
        user: Msg = {"role": "user", "content": content}
        if draw(st.integers(0, 3)) == 0:
            user["type"] = "message"
        out.append(user)
        for _ in range(draw(st.integers(0, 2))):
            out.extend(draw(responses_run(ids, portable)))
        if draw(st.integers(0, 5)) == 0:
            text = [{"type": "input_text", "text": "Use metric units."}]
            out.append({"type": "message", "role": "system", "content": text})
    return out


# -- Anthropic Messages ------------------------------------------------------


@st.composite
def anthropic_user_block(draw: Draw, portable: bool = False) -> Msg:
    kinds = ["text", "image", "image_url", "pdf", "doc_text"]
    kinds += [] if portable else ["image_file", "search_result", "text+", "doc_url"]
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return {"type": "text", "text": draw(WORDS)}
    if kind == "text+":
        return {"type": "text", "text": draw(WORDS), "cache_control": {"type": "ephemeral"}}
    if kind == "image":
        media = draw(st.sampled_from(["image/png", "image/jpeg", "image/webp"]))
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media, "data": draw(B64)},
        }
    if kind == "image_url":
        return {"type": "image", "source": {"type": "url", "url": draw(HTTP_IMAGE)}}
    if kind == "image_file":
        return {"type": "image", "source": {"type": "file", "file_id": "file_011abc"}}
    if kind == "search_result":
        content = [{"type": "text", "text": draw(WORDS)}]
        return {
            "type": "search_result",
            "source": "https://example.test/",
            "title": "T",
            "content": content,
        }
    if kind == "pdf":
        source = {"type": "base64", "media_type": "application/pdf", "data": draw(B64)}
    elif kind == "doc_text":
        source = {"type": "text", "media_type": "text/plain", "data": draw(TEXT)}
    else:
        source = {"type": "url", "url": "https://example.test/paper.pdf"}
    block: Msg = {"type": "document", "source": source}
    if draw(st.booleans()):
        block["title"] = "paper.pdf"
    if draw(st.booleans()):
        block["context"] = "from the library"
        block["citations"] = {"enabled": True}
    return block


def _result_block(draw: Draw, call_id: str, portable: bool) -> Msg:
    block: Msg = {"type": "tool_result", "tool_use_id": call_id}
    shape = draw(st.sampled_from(["str", "blocks"] + ([] if portable else ["none", "image"])))
    if shape == "str":
        block["content"] = draw(TEXT if not portable else WORDS)
    elif shape == "blocks":
        block["content"] = [{"type": "text", "text": t} for t in draw(st.lists(WORDS, max_size=2))]
    elif shape == "image":
        source = {"type": "base64", "media_type": "image/png", "data": draw(B64)}
        block["content"] = [{"type": "text", "text": "chart"}, {"type": "image", "source": source}]
    if draw(st.integers(0, 3)) == 0:
        block["is_error"] = True
    elif not portable and draw(st.integers(0, 4)) == 0:
        block["cache_control"] = {"type": "ephemeral"}
    return block


@st.composite
def anthropic_assistant(draw: Draw, ids: Iterator[int], portable: bool = False) -> list[Msg]:
    blocks: list[Msg] = []
    think = draw(st.integers(0, 3))
    if think == 1:
        blocks.append({"type": "thinking", "thinking": draw(TEXT), "signature": "Eq" + draw(B64)})
    elif think == 2:
        blocks.append({"type": "redacted_thinking", "data": "Eq" + draw(B64)})
    for _ in range(draw(st.integers(0, 2))):
        block: Msg = {"type": "text", "text": draw(WORDS)}
        if draw(st.integers(0, 4)) == 0:
            block["citations"] = [
                {
                    "type": "char_location",
                    "cited_text": "x",
                    "document_index": 0,
                    "document_title": "paper.pdf",
                    "start_char_index": 0,
                    "end_char_index": 1,
                }
            ]
        blocks.append(block)
    if not portable and draw(st.integers(0, 4)) == 0:
        n = next(ids)
        search = {"query": draw(WORDS)}
        blocks.append(
            {
                "type": "server_tool_use",
                "id": f"srvtoolu_{n}",
                "name": "web_search",
                "input": search,
            }
        )
        blocks.append(
            {"type": "web_search_tool_result", "tool_use_id": f"srvtoolu_{n}", "content": []}
        )
    for _ in range(draw(st.integers(0 if blocks else 1, 3))):
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_{next(ids)}",
                "name": draw(NAMES),
                "input": draw(OBJECTS),
            }
        )
    return blocks


@st.composite
def anthropic_histories(draw: Draw, portable: bool = False) -> list[Msg]:
    ids = itertools.count()
    out: list[Msg] = []
    pending: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        results = [_result_block(draw, i, portable) for i in draw(st.permutations(pending))]
        others = draw(
            st.lists(anthropic_user_block(portable), min_size=0 if results else 1, max_size=2)
        )
        out.append({"role": "user", "content": _one_text(results + others, "text")})
        if draw(st.integers(0, 5)) == 0:
            break
        blocks = draw(anthropic_assistant(ids, portable))
        pending = [b["id"] for b in blocks if b["type"] == "tool_use"]
        out.append({"role": "assistant", "content": _one_text(blocks, "text")})
    return out
