"""Hypothesis strategies: LangChain messages of every class, with every kind of content."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

texts = st.text(max_size=12)
keys = st.text(alphabet="abxyz_", min_size=1, max_size=5)  # never "tool_calls"
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
json_dicts = st.dictionaries(keys, json_values, max_size=3)
# keys a part or a hint uses too: blocks holding them must still come back whole
tricky_keys = st.sampled_from(
    ["id", "index", "extras", "annotations", "signature", "cache_control", "providerMetadata",
     "text", "reasoning", "url", "base64", "mime_type", "redactedData", "block", "payload", "str"]
)  # fmt: skip
extras = st.dictionaries(tricky_keys, json_values, max_size=2)
b64 = st.sampled_from(["", "QQ==", "aGVsbG8=", "////"])
mimes = st.sampled_from(["image/png", "audio/wav", "application/pdf", "video/mp4", "image/*"])
urls = st.sampled_from(["https://example.com/a.png", "data:image/png;base64,QQ==", "data:,hi"])


def _block(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    base = st.fixed_dictionaries({"type": st.just(kind), **fields})
    return st.builds(lambda b, e: {**e, **b}, base, extras)


blocks = st.one_of(
    texts,
    _block("text", text=texts),
    _block("reasoning", reasoning=texts),
    _block("thinking", thinking=texts),
    _block("redacted_thinking", data=texts),
    st.builds(
        lambda url, detail: {"type": "image_url", "image_url": {"url": url, **detail}},
        urls,
        st.dictionaries(st.just("detail"), st.sampled_from(["low", "high"]), max_size=1),
    ),
    _block("image", url=urls),
    _block("file", url=urls, mime_type=mimes),
    _block("audio", base64=b64, mime_type=mimes),
    _block("image", base64=b64),  # no mime type: kept whole
    st.builds(
        lambda kind, body: {"type": kind, **body},
        st.sampled_from(["tool_use", "non_standard", "text", "image", "weird", "step-start"]),
        json_dicts,
    ),
)
contents = texts | st.lists(blocks, max_size=4)
optional_texts = st.none() | texts


def _common() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "content": contents,
        "id": optional_texts,
        "name": optional_texts,
        "additional_kwargs": json_dicts,
        "response_metadata": json_dicts,
    }


tool_names = texts | st.sampled_from(["result", "search", "dynamic-tool", ""])
tool_calls = st.lists(
    st.fixed_dictionaries({"name": tool_names, "args": json_dicts, "id": optional_texts}),
    max_size=3,
)
invalid_calls = st.lists(
    st.fixed_dictionaries(
        {"name": st.none() | tool_names, "args": optional_texts, "id": optional_texts}
    ).map(lambda call: {**call, "error": None}),
    max_size=2,
)
counts = st.integers(0, 10**6)
usage = st.none() | st.fixed_dictionaries(
    {"input_tokens": counts, "output_tokens": counts, "total_tokens": counts}
)


def _message(cls: type[BaseMessage], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(lambda kw: cls(**kw), st.fixed_dictionaries({**_common(), **fields}))


messages: st.SearchStrategy[BaseMessage] = st.one_of(
    _message(HumanMessage),
    _message(SystemMessage),
    _message(
        AIMessage, tool_calls=tool_calls, invalid_tool_calls=invalid_calls, usage_metadata=usage
    ),
    _message(
        ToolMessage,
        tool_call_id=texts,
        status=st.sampled_from(["success", "error"]),
        artifact=json_values,
    ),
    _message(
        ChatMessage, role=st.sampled_from(["critic", "user", "assistant", "developer", "tool"])
    ),
    _message(FunctionMessage, name=texts),
)
