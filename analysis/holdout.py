"""What everything shipped added up to: the rest of the units against the global holdout.

`analyze_holdout` reads the holdout's exposure log (`analysis.data.holdout`: one row per
unit, ``holdout`` or ``rest``, from its first contact with a covered experiment) and the
outcome events, joins them per unit with the experiments' own join
(`analysis.data.join`), and runs the experiments' own statistics on the two groups
(`analysis.analyzer.analyze` with ``holdout`` as the control): per metric, the effect of
being outside the holdout, absolute and relative with CIs, Welch/z p-values with Holm (or
BH) across metrics, CUPED when there is pre-contact data, and the sample-ratio check of the
group sizes against the holdout's share (a broken holdout draw or log shows as an SRM).

The estimand: among units that met a covered experiment during the period, the mean
outcome with every covered experiment's treatment (the shipped winners, plus the running
experiments' treatments for the units they assign) minus the mean with control
everywhere.  The two groups are comparable because membership is its own hash draw,
independent of every experiment's draws and of the units (`abtest.holdout`).

References
----------
Kohavi, Tang and Xu (2020), *Trustworthy Online Controlled Experiments*, ch. 23
("Measuring Long-Term Treatment Effects": holdouts); Statsig, "Holdouts" (documentation);
GrowthBook, "Holdouts" (documentation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from abtest.errors import InvalidInput
from analysis.analyzer import MetricSpec, analyze
from analysis.data.holdout import (
    HOLDOUT_GROUP,
    REST_GROUP,
    holdout_first_contacts,
    outcomes_before,
)
from analysis.data.load import Source
from analysis.decision.rows import MetricRow
from analysis.statistics.results import json_float
from analysis.statistics.srm import SrmResult

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HoldoutResult", "analyze_holdout"]


@dataclass(frozen=True)
class HoldoutResult:
    """The cumulative effect of everything the holdout covered, per metric.

    ``rows`` are `MetricRow`s with ``holdout`` as control and ``rest`` as the variant: a
    positive absolute effect of a higher-is-better metric means the shipped changes helped.
    """

    holdout: str
    share: float
    start: str | None
    end: str | None
    units: Mapping[str, int]
    excluded_units: int
    srm: SrmResult
    rows: tuple[MetricRow, ...]
    alpha: float
    correction: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nan/inf as null)."""
        return {
            "holdout": self.holdout,
            "share": self.share,
            "period": {"start": self.start, "end": self.end},
            "groups": [{"group": g, "units": n} for g, n in self.units.items()],
            "excluded_units": self.excluded_units,
            "srm": {"p_value": json_float(self.srm.p_value), "ok": self.srm.ok,
                    "expected": {k: json_float(v) for k, v in self.srm.expected.items()}},
            "metrics": [row.to_dict() for row in self.rows],
            "alpha": self.alpha,
            "correction": self.correction,
        }  # fmt: skip

    def summary(self) -> pd.DataFrame:
        """One row per metric: group sizes and means, the effect with its CIs, p-values."""
        import pandas as pd

        records = []
        for row in self.rows:
            data = row.to_dict()
            abs_lo, abs_hi = data["absolute_ci"] or (None, None)
            rel_lo, rel_hi = data["relative_ci"] or (None, None)
            records.append({
                "metric": row.metric, "type": row.type.value,
                "holdout_units": row.n_control, "rest_units": row.n_variant,
                "holdout_mean": row.control_mean, "rest_mean": row.variant_mean,
                "absolute_effect": data["absolute_effect"],
                "absolute_ci_low": abs_lo, "absolute_ci_high": abs_hi,
                "relative_effect": data["relative_effect"],
                "relative_ci_low": rel_lo, "relative_ci_high": rel_hi,
                "p_value": data["p_value"], "adjusted_p_value": data["adjusted_p_value"],
                "significant": data["significant"], "error": data["error"],
            })  # fmt: skip
        return pd.DataFrame.from_records(records)


def analyze_holdout(
    holdout_log: Source,
    outcomes: Source,
    *,
    metrics: Sequence[MetricSpec],
    share: float,
    holdout: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    attribution_window: Any = None,
    covariates: Source | None = None,
) -> HoldoutResult:
    """The rest against the holdout on ``metrics`` over a period.

    Parameters
    ----------
    holdout_log : DataFrame or path
        The holdout's exposure log (``abtest export`` writes it to ``DIR/holdout``).
    outcomes : DataFrame or path
        Outcome events, as for `analysis.analyze`.
    metrics : sequence of "name:type" or Metric
        The metrics to compare (no primary/secondary roles: one family for the correction).
    share : float
        The holdout's share of units, for the sample-ratio check.
    holdout : str, optional
        The holdout's name; required when the log holds several.
    start, end : datetime, optional
        The period: units first met in ``[start, end)``, outcomes before ``end``.
    alpha, correction
        Significance level; "holm" (default) or "bh" across the metrics.
    attribution_window, covariates
        As for `analysis.analyze`.

    Raises
    ------
    InvalidInput
        A malformed log, no unit in the period, a share outside (0, 1), a group missing
        (no member or no other unit met yet), or any `analysis.analyze` error.
    """
    if not (isinstance(share, int | float) and 0 < share < 1):
        raise InvalidInput(f"share must lie in (0, 1), got {share!r}", "share")
    if start is not None and end is not None and end <= start:
        raise InvalidInput("the period's end must come after its start", "end")
    contacts = holdout_first_contacts(holdout_log, holdout=holdout, start=start, end=end)
    name = str(contacts["experiment"].iloc[0])
    groups = set(contacts["variant"])
    for group, who in ((HOLDOUT_GROUP, "holdout member"), (REST_GROUP, "unit outside it")):
        if group not in groups:
            raise InvalidInput(f"no {who} met a covered experiment in the period yet", "holdout")
    events: Source = outcomes if end is None else outcomes_before(outcomes, end)
    result = analyze(
        contacts, events, metrics=metrics, control=HOLDOUT_GROUP, experiment=name,
        weights={HOLDOUT_GROUP: share, REST_GROUP: 1 - share}, alpha=alpha,
        correction=correction, attribution_window=attribution_window, covariates=covariates,
    )  # fmt: skip
    rows = tuple(row for row in result.rows if row.variant == REST_GROUP)
    return HoldoutResult(
        holdout=name, share=float(share),
        start=None if start is None else start.isoformat(),
        end=None if end is None else end.isoformat(),
        units=dict(result.units), excluded_units=result.excluded_units, srm=result.srm,
        rows=tuple(_one_family(rows)), alpha=alpha, correction=correction,
    )  # fmt: skip


def _one_family(rows: Sequence[MetricRow]) -> list[MetricRow]:
    """`analyze` names the first metric primary and the rest secondary; here they are peers
    (already one family for the correction), so every row is a plain ``metric``."""
    from dataclasses import replace

    return [replace(row, role="metric") for row in rows]
