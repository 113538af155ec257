"""What a health check reports (`HealthSignal`), the kinds of check, and their defaults.

Shared by the checks (`analysis.statistics.health` and the modules it gathers) and by the
monitor that keeps their alerts; no statistics here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from abtest.alerts import Severity

EXPOSURE_DROP: Final = "exposure_drop"
EVENT_DROP: Final = "event_drop"
SAMPLE_RATIO_MISMATCH: Final = "sample_ratio_mismatch"
MISSING_EVENTS: Final = "missing_events"
METRIC_DROP: Final = "metric_drop"
METRIC_JUMP: Final = "metric_jump"
GUARDRAIL_REGRESSION: Final = "guardrail_regression"
KINDS: Final = (EXPOSURE_DROP, EVENT_DROP, SAMPLE_RATIO_MISMATCH, MISSING_EVENTS,
                METRIC_DROP, METRIC_JUMP, GUARDRAIL_REGRESSION)  # fmt: skip
ALL: Final = "all"  # the subject of an experiment-wide signal

# Defaults, chosen with the false-alarm simulation (see the README's figures).
WINDOW: Final = 14  # periods of baseline: two weeks of days cover the weekly cycle twice
MIN_HISTORY: Final = 7  # no judgement before a week of baseline
RATE_ALPHA: Final = 1e-4
RATE_MAX_RATIO: Final = 0.3  # below 30%: a B2B weekend at 40% of weekdays is not an alarm
RATE_STOP_RATIO: Final = 0.1
TREND_Z: Final = 5.0
TREND_MIN_CHANGE: Final = 0.10  # Twyman: +10% overnight is suspect
TREND_COLLAPSE_RATIO: Final = 0.1
TREND_CRITICAL_JUMP: Final = 1.0  # more than doubled
CUSUM_K: Final = 1.0  # allowance per period, in robust z units
CUSUM_H: Final = 8.0  # decision interval
CUSUM_CLIP: Final = 6.0  # one period's z counts at most this much
MISSING_ALPHA: Final = 1e-6
MISSING_TOLERATED_RATIO: Final = 0.5
GUARDRAIL_ALPHA: Final = 0.025  # one-sided, the verdict's alpha / 2 per direction


@dataclass(frozen=True)
class HealthSignal:
    """One unhealthy condition found by a check.

    ``subject`` names what it concerns: ``"all"``, a variant key, a metric name, or
    ``"metric[variant]"``; ``numbers`` holds the check's figures (JSON-ready).
    """

    kind: str
    severity: Severity
    subject: str
    numbers: Mapping[str, Any]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"kind": self.kind, "severity": self.severity.value, "subject": self.subject,
                "numbers": dict(self.numbers), "message": self.message}  # fmt: skip


def subject(metric: str | None = None, variant: str | None = None) -> str:
    """The subject string of a signal: ``metric[variant]``, ``metric``, ``variant`` or
    ``all`` (brackets occur in neither metric names nor variant keys)."""
    if metric is not None and variant is not None:
        return f"{metric}[{variant}]"
    return metric or variant or ALL


def percent(rel: float) -> str:
    """A relative change for a message: ``+12%``, or ``from 0`` when it is infinite."""
    return "from 0" if rel in (float("inf"), float("-inf")) else f"{rel:+.0%}"


__all__ = [
    "ALL",
    "CUSUM_CLIP",
    "CUSUM_H",
    "CUSUM_K",
    "EVENT_DROP",
    "EXPOSURE_DROP",
    "GUARDRAIL_ALPHA",
    "GUARDRAIL_REGRESSION",
    "KINDS",
    "METRIC_DROP",
    "METRIC_JUMP",
    "MIN_HISTORY",
    "MISSING_ALPHA",
    "MISSING_EVENTS",
    "MISSING_TOLERATED_RATIO",
    "RATE_ALPHA",
    "RATE_MAX_RATIO",
    "RATE_STOP_RATIO",
    "SAMPLE_RATIO_MISMATCH",
    "TREND_COLLAPSE_RATIO",
    "TREND_CRITICAL_JUMP",
    "TREND_MIN_CHANGE",
    "TREND_Z",
    "WINDOW",
    "HealthSignal",
    "percent",
    "subject",
]
