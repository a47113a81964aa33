"""``manual``: never compacts; only raises ``needs_compaction``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ValidationError
from ..model import ContextRecord
from ..window import WindowItem

__all__ = ["Manual"]


class Manual:
    name = "manual"
    compacts = False

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(config, Mapping):
            raise ValidationError("policy.config", "must be an object")
        return dict(config)

    def should_run(self, ctx: ContextRecord, config: Mapping[str, Any]) -> bool:
        return False

    def compact(
        self, items: Sequence[WindowItem], ctx: ContextRecord, config: Mapping[str, Any]
    ) -> list[WindowItem]:
        return list(items)
