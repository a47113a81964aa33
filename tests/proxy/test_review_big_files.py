"""A proxied call carrying a big file: the file's bytes are read (base64
decoded, its pages scanned) off the server's event loop, where a 20 MB PDF
took ~90 ms, twice, stalling every other request meanwhile."""

from __future__ import annotations

import base64

import anthropic
import openai

from fastpaca_core.mediatokens import PDF_PAGE_TOKENS

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack

_PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Page >> endobj\n" * 2 + bytes(60_000)
_B64 = base64.b64encode(_PDF).decode()


# the stack's servers run their event loops on a thread of this name (support.py)
LOOP_THREAD = "fastpaca-under-test"


def test_a_big_pdf_through_chat_is_read_off_the_loop(stack: Stack, readers: list[str]) -> None:
    sdk = stack.track(
        openai.OpenAI(base_url=stack.openai_url("big-1"), api_key="sk", max_retries=0)
    )
    reply = sdk.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarise this."},
                    {
                        "type": "file",
                        "file": {
                            "filename": "a.pdf",
                            "file_data": f"data:application/pdf;base64,{_B64}",
                        },
                    },
                ],
            }
        ],
    )
    assert reply.choices[0].message.content
    assert readers and LOOP_THREAD not in readers, readers
    stored = stack.log("big-1")[0]
    assert 2 * PDF_PAGE_TOKENS <= stored["token_count"] < 2 * PDF_PAGE_TOKENS + 60


def test_a_big_document_through_anthropic_is_read_off_the_loop(
    stack: Stack, readers: list[str]
) -> None:
    sdk = stack.track(
        anthropic.Anthropic(base_url=stack.anthropic_url("big-2"), api_key="sk", max_retries=0)
    )
    reply = sdk.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": _B64},
                    },
                    {"type": "text", "text": "Summarise this."},
                ],
            }
        ],
    )
    assert reply.content
    assert readers and LOOP_THREAD not in readers, readers
    stored = stack.log("big-2")[0]
    assert 2 * PDF_PAGE_TOKENS <= stored["token_count"] < 2 * PDF_PAGE_TOKENS + 60
