"""Token calibration: how a context's factor learns from the provider's counts.

A context's ``calibration`` is the provider's prompt tokens per token we
estimate; ``used_tokens`` is the estimate times the factor (``model.calibrated``).
Each usable sample (an estimate and the provider's count for the same prompt)
moves the factor: the first samples average, later ones weigh
``CALIBRATION_ALPHA``, and both samples and factor stay in
``CALIBRATION_RANGE``.
"""

from __future__ import annotations

from .model import ContextRecord
from .results import check_int

__all__ = [
    "CALIBRATION_ALPHA",
    "CALIBRATION_MIN_ESTIMATE",
    "CALIBRATION_RANGE",
    "calibrate",
    "calibration_sample",
]

CALIBRATION_RANGE = (0.5, 2.0)  # a sample or factor outside this is clamped
CALIBRATION_ALPHA = 0.3  # EMA weight of a new sample (the first samples average)
CALIBRATION_MIN_ESTIMATE = 16  # prompts smaller than this teach nothing


def calibration_sample(estimate: object, actual: object) -> float | None:
    """``actual / estimate``, clamped; None when the pair teaches nothing."""
    estimate = check_int(estimate, "estimate", 0)
    actual = check_int(actual, "actual", 0)
    if estimate < CALIBRATION_MIN_ESTIMATE or actual <= 0:
        return None
    low, high = CALIBRATION_RANGE
    return min(high, max(low, actual / estimate))


def calibrate(ctx: ContextRecord, sample: float) -> None:
    """Move the context's calibration factor towards ``sample`` (see ``record_usage``)."""
    low, high = CALIBRATION_RANGE
    weight = max(CALIBRATION_ALPHA, 1.0 / (ctx.calibration_samples + 1))
    factor = ctx.calibration + weight * (sample - ctx.calibration)
    ctx.calibration = min(high, max(low, factor))
    ctx.calibration_samples += 1
