"""A photo in the conversation neither pushes it out of the window nor itself."""

from __future__ import annotations

import base64
import os

import openai

from .support import OPENAI_MODEL, Stack


def test_a_photo_keeps_the_conversation_and_itself_in_the_window(stack: Stack) -> None:
    photo = "data:image/jpeg;base64," + base64.b64encode(os.urandom(45_000)).decode()
    client = stack.track(
        openai.OpenAI(base_url=stack.openai_url("photo"), api_key="x", max_retries=0)
    )
    history: list[dict[str, object]] = [
        {"role": "user", "content": "I am planning a trip to Lisbon with my kids."}
    ]
    question = [
        {"type": "text", "text": "What is in this photo?"},
        {"type": "image_url", "image_url": {"url": photo}},
    ]
    for content in (None, question, "Is it suitable for my kids?"):
        if content is not None:
            history.append({"role": "user", "content": content})
        reply = client.chat.completions.create(model=OPENAI_MODEL, messages=history)  # type: ignore[arg-type]
        history.append({"role": "assistant", "content": reply.choices[0].message.content})
    sent = stack.fake.last.json["messages"]
    assert sent[0] == {"role": "user", "content": "I am planning a trip to Lisbon with my kids."}
    assert any(m["content"] == question for m in sent)
    assert stack.window("photo")["used_tokens"] <= 8000
