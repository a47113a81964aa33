"""Compaction policies, one module per strategy, and their registry."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ValidationError
from ..jsonutil import check_json
from ..model import DEFAULT_POLICY, PolicySpec
from .base import Policy
from .last_n import LastN
from .manual import Manual
from .skip_parts import SkipParts
from .summarize import Summarize

__all__ = ["POLICIES", "Policy", "get_policy", "parse_policy"]

POLICIES: dict[str, Policy] = {p.name: p for p in (LastN(), SkipParts(), Manual(), Summarize())}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValidationError(
            "policy.strategy", f"unknown strategy {name!r}; one of {', '.join(POLICIES)}"
        ) from None


def parse_policy(value: object) -> PolicySpec:
    """Validate ``{"strategy", "config"?}``; ``None`` means the default policy."""
    if value is None:
        return DEFAULT_POLICY
    if not isinstance(value, Mapping):
        raise ValidationError("policy", "must be an object")
    strategy = value.get("strategy")
    if not isinstance(strategy, str):
        raise ValidationError("policy.strategy", "must be a string")
    config = value.get("config")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ValidationError("policy.config", "must be an object")
    policy = get_policy(strategy)
    checked = policy.validate(config)
    check_json(checked, "policy.config")  # stored, and answered with the context
    return PolicySpec(strategy, checked)
