"""What the summarising model is asked: a system prompt and a transcript.

The transcript is plain text, one line group per message, tagged with its seq::

    [12] user: What's the weather in Oslo?
    [13] assistant: calls tool weather (id call_1) with {"city":"Oslo"}
    [14] tool: result of weather (id call_1): {"t":3}

Reasoning and step markers are left out; files are named, not inlined; long
parts are clipped. ``prompt_sha256`` is the sha256 of the system prompt and
the user prompt joined by a blank line: a summary record names exactly what
produced it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .folding import Entry, FoldPlan
from .jsonutil import dumps_str
from .toolcalls import RESULT_TYPE, call_name

__all__ = ["SYSTEM_PROMPT", "Prompt", "build_prompt", "render_message", "render_transcript"]

MAX_PART_CHARS = 2000
MIN_MESSAGE_CHARS = 200  # what a message keeps at least when the transcript is clipped
_SKIPPED = frozenset({"reasoning", "step-start"})

SYSTEM_PROMPT = """\
You maintain the running summary of a conversation between a user and an AI \
assistant that can call tools. Your summary replaces the older part of the \
conversation in the assistant's context window: the assistant will continue \
from your summary and the newest messages alone, so keep everything it still \
needs.

Write the updated summary:
- Fold the previous summary (if any) and the new messages into one summary; \
drop nothing from the previous summary that still matters.
- Keep the user's goals, requests, constraints and preferences; facts, names, \
numbers, identifiers and decisions; what tools were called and what they \
returned, when it matters later; commitments, open questions and unfinished \
tasks.
- Leave out greetings, repetition and raw tool output that is no longer needed.
- Write plain prose or short bullet points in the language of the conversation, \
in the third person ("The user asked ..."). Answer with the summary only: no \
preamble, no reply to the user."""


@dataclass(frozen=True, slots=True)
class Prompt:
    system: str
    user: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.system}\n\n{self.user}".encode()).hexdigest()


def _clip(text: str, limit: int = MAX_PART_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]} [... {len(text) - limit} chars cut]"


def _json(value: Any) -> str:
    try:
        return _clip(dumps_str(value))
    except (TypeError, ValueError):
        return _clip(repr(value))


def _part(part: dict[str, Any]) -> str | None:
    kind = str(part.get("type", ""))
    call_id = part.get("toolCallId")
    if kind == "text":
        text = part.get("text")
        return _clip(text) if isinstance(text, str) else None
    if kind in _SKIPPED:
        return None
    if kind == RESULT_TYPE:
        name = part.get("toolName", "tool")
        if "errorText" in part:
            return f"result of {name} (id {call_id}): error: {_json(part['errorText'])}"
        return f"result of {name} (id {call_id}): {_json(part.get('output'))}"
    if kind.startswith("tool-") or kind == "dynamic-tool":
        name = call_name(part)
        line = f"calls tool {name} (id {call_id}) with {_json(part.get('input'))}"
        if part.get("state") == "output-available":
            line += f", which returned {_json(part.get('output'))}"
        elif part.get("state") == "output-error":
            line += f", which failed: {_json(part.get('errorText'))}"
        return line
    if kind == "file":
        url = str(part.get("url", ""))
        where = part.get("filename") or ("inline data" if url.startswith("data:") else url)
        return f"[file {part.get('mediaType', '')} {_clip(str(where), 200)}]"
    if kind.startswith("source-"):
        return f"[source {_clip(str(part.get('url') or part.get('title') or ''), 200)}]"
    return f"[{kind}: {_json({k: v for k, v in part.items() if k != 'type'})}]"


def render_message(entry: Entry) -> str:
    """One message of the transcript, tagged ``[seq] role:``."""
    lines = [text for text in (_part(p) for p in entry.message.parts) if text]
    body = "\n".join(lines) if lines else "(no text)"
    return f"[{entry.seq}] {entry.message.role}: {body}"


def _share(lengths: list[int], total: int) -> int:
    """The most characters each message may keep so that together they keep
    at most ``total``: the short ones whole, the long ones clipped alike."""
    remaining = total
    ordered = sorted(lengths)
    for index, length in enumerate(ordered):
        share = remaining // (len(ordered) - index)
        if length > share:
            return max(share, MIN_MESSAGE_CHARS)
        remaining -= length
    return ordered[-1] if ordered else 0


def render_transcript(entries: Sequence[Entry], max_chars: int | None = None) -> str:
    """The messages, one ``[seq] role:`` group each, oldest first; with
    ``max_chars``, the longest ones clipped alike until the transcript keeps
    about that many characters (each keeps its tag and at least
    ``MIN_MESSAGE_CHARS``)."""
    lines = [render_message(entry) for entry in entries]
    if max_chars is not None and sum(map(len, lines)) + len(lines) > max_chars:
        marker = len(" [... 1000000 chars cut]") + 1
        cap = _share([len(line) for line in lines], max_chars - marker * len(lines))
        lines = [_clip(line, cap) for line in lines]
    return "\n".join(lines)


def build_prompt(
    plan: FoldPlan,
    *,
    max_summary_tokens: int,
    instructions: str | None = None,
    max_transcript_chars: int | None = None,
) -> Prompt:
    """The request for ``plan``; ``max_transcript_chars`` clips the transcript
    (see :func:`render_transcript`)."""
    sections: list[str] = []
    if plan.previous:
        previous = "\n\n".join(text.strip() for text in plan.previous)
        sections.append(f"Previous summary:\n<previous_summary>\n{previous}\n</previous_summary>")
    else:
        sections.append("There is no previous summary.")
    transcript = render_transcript(plan.entries, max_transcript_chars)
    first, last = plan.entries[0].seq, plan.entries[-1].seq
    sections.append(
        f"New messages (seq {first} to {last}), oldest first:\n"
        f"<transcript>\n{transcript}\n</transcript>"
    )
    ask = (
        "Write the updated summary of the whole conversation up to message "
        f"{plan.up_to_seq}, in at most about {max_summary_tokens} tokens."
    )
    if instructions:
        ask += f"\n\nAdditional instructions:\n{instructions}"
    sections.append(ask)
    return Prompt(SYSTEM_PROMPT, "\n\n".join(sections))
