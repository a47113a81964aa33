"""Helpers shared by the client tests."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

T = TypeVar("T")


def text(role: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "text": body}], **extra}


async def done(value: T | Any) -> Any:
    """The result of a client call, sync or async alike: awaits it when it is awaitable.

    Lets one scenario drive ``Client`` and ``AsyncClient``: the blocking client
    runs on the test's loop thread, which is fine as the server has its own.
    """
    return await value if inspect.isawaitable(value) else value
