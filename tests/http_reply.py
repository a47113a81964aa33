"""An HTTP answer as the API tests keep it: status, headers, raw body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastpaca_core.jsonutil import loads

__all__ = ["Reply"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return loads(self.body)
