"""A file's bytes are counted by what the file costs, not as base64 text, in
two places they had been missed: a ``url`` of bare base64 (OpenAI's
``file_data`` as a client sent it, not a ``data:`` URL) and a file a tool
returned in its result's ``output``. Either way a 300 KB PDF had counted as
~100,000 tokens and pushed the conversation out of the window."""

from __future__ import annotations

import base64
import random
import threading
from typing import Any

from fastpaca_core.formats import from_anthropic, from_openai_chat, from_responses_input
from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.mediatokens import PDF_PAGE_TOKENS
from fastpaca_core.model import Message
from fastpaca_core.tokens import TokenCounter, reads_much

COUNTER = TokenCounter()
# the part's other keys (its filename, the flag...) and the message's overhead
MARGIN = 40
NOISE = random.Random(11).randbytes(300_000)  # base64 of it tokenises as base64 does
PDF = base64.b64encode(b"%PDF-1.7\n" + b"1 0 obj << /Type /Page >> endobj\n" * 3 + NOISE).decode()
PAGES = 3 * PDF_PAGE_TOKENS
NOTES = "the quarterly numbers, line by line\n" * 200


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _user(parts: list[dict[str, Any]]) -> Message:
    return Message("user", parts)


def _file(message: Message) -> dict[str, Any]:
    (part,) = message.parts
    assert part["type"] == "file", part
    return part


def _chat_file(data: str, filename: str) -> Message:
    item = {"type": "file", "file": {"file_data": data, "filename": filename}}
    (message,) = from_openai_chat([{"role": "user", "content": [item]}]).messages
    return message


def _responses_file(data: str, filename: str) -> Message:
    item = {"type": "input_file", "file_data": data, "filename": filename}
    (message,) = from_responses_input([{"role": "user", "content": [item]}]).messages
    return message


def _as_data_url(part: dict[str, Any], media: str) -> Message:
    """The same file as a ``data:`` URL: what it should cost."""
    return _user([{**part, "mediaType": media, "url": f"data:{media};base64,{part['url']}"}])


def _costs_as_data_url(message: Message, media: str, least: int) -> int:
    part = _file(message)
    count = COUNTER.count_fresh(message)
    assert abs(count - COUNTER.count_fresh(_as_data_url(part, media))) <= MARGIN, count
    assert least <= count <= least + 2 * MARGIN, count
    assert count * 2 < 4 + COUNTER.count_text(dumps_str(part))  # its base64 as text
    assert COUNTER.at_most(message) >= count
    return count


def test_bare_base64_from_chat_and_responses_costs_its_pages() -> None:
    chat = _chat_file(PDF, "report.pdf")
    responses = _responses_file(PDF, "report.pdf")
    # as the converters keep it: the base64 as it came, typed by nothing
    assert _file(chat)["url"] == PDF and _file(chat)["mediaType"] == "application/octet-stream"
    assert _file(responses)["providerMetadata"]["openai"]["fileData"] is True
    for message in (chat, responses):
        count = _costs_as_data_url(message, "application/pdf", PAGES)
        assert count * 10 < len(PDF)
        assert reads_much(message)


def test_bare_base64_takes_its_type_from_the_part_then_its_filename() -> None:
    # a text file by its filename: its text, tokenised
    notes = _chat_file(_b64(NOTES), "notes.txt")
    _costs_as_data_url(notes, "text/plain", COUNTER.count_text(NOTES))
    # a mediaType the part names wins over its filename
    part = {**_file(_chat_file(PDF, "scan.bin")), "mediaType": "application/pdf"}
    _costs_as_data_url(_user([part]), "application/pdf", PAGES)
    # no type known: a token per 4 bytes, as any other file held
    blob = _file(_responses_file(_b64("x" * 40_000), "blob"))
    _costs_as_data_url(_user([blob]), "application/octet-stream", 10_000)
    # a file id or a link holds no bytes: counted as its JSON, as before
    by_id = {"type": "file", "file": {"file_id": "file-abcd1234", "filename": "a.pdf"}}
    (message,) = from_openai_chat([{"role": "user", "content": [by_id]}]).messages
    link = {"type": "file", "mediaType": "application/pdf", "url": "https://x.example/a.pdf"}
    for case in (message, _user([link])):
        # its JSON, as before: its content is not known here
        (part,) = case.parts
        assert COUNTER.count_fresh(case) == 4 + COUNTER.count_text(dumps_str(part))
        assert not reads_much(case)


def _anthropic_result(source: dict[str, Any]) -> Message:
    call = {"type": "tool_use", "id": "t1", "name": "fetch", "input": {}}
    block = {"type": "document", "source": source, "title": "report.pdf"}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": [block]}
    turns = [{"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]
    return from_anthropic(turns).messages[1]


def _responses_result(data: str, filename: str) -> Message:
    call = {"type": "function_call", "call_id": "c1", "name": "fetch", "arguments": "{}"}
    item = {"type": "input_file", "file_data": data, "filename": filename}
    output = {"type": "function_call_output", "call_id": "c1", "output": [item]}
    return from_responses_input([call, output]).messages[1]


def _output_file(message: Message) -> dict[str, Any]:
    (part,) = message.parts
    (item,) = part["output"]
    assert item["type"] == "file", item
    return item


def test_a_file_in_a_tool_result_costs_what_the_file_does() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    text = {"type": "text", "media_type": "text/plain", "data": NOTES}
    cases = [
        # Anthropic's document block: a file part holding a data URL
        (_anthropic_result(pdf), PAGES),
        # Responses' input_file of bare base64 (flagged openai.fileData)
        (_responses_result(PDF, "report.pdf"), PAGES),
        # a text file: its text, tokenised
        (_anthropic_result(text), COUNTER.count_text(NOTES)),
    ]
    for message, least in cases:
        item = _output_file(message)
        count = COUNTER.count_fresh(message)
        alone = COUNTER.count_fresh(_user([item]))
        assert abs(count - alone) <= MARGIN, (count, alone)  # as the file part alone
        assert least <= count <= least + 2 * MARGIN, count
        assert COUNTER.at_most(message) >= count
        if least == PAGES:
            assert count * 10 < len(item["url"])  # far below its base64 as text
            assert reads_much(message)


async def test_a_big_file_a_tool_returned_is_read_off_the_event_loop(
    readers: list[str],
) -> None:
    loop_thread = threading.current_thread().name
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    for message in (
        _anthropic_result(pdf),
        _responses_result(PDF, "r.pdf"),
        _chat_file(PDF, "r.pdf"),
    ):
        readers.clear()
        (counted,) = await TokenCounter(cache_size=0).count_messages([message])
        assert readers and loop_thread not in readers, readers
        assert PAGES <= counted <= PAGES + 2 * MARGIN
