"""Warnings about the data behind a verdict: dropped outcome events, undefined metrics.

Neither changes the verdict; both point at a logging or configuration problem the
release manager should see next to it.

- **Dropped events.**  An outcome event is dropped when its unit has no exposure in the
  experiment, saw two variants, or the event falls before the first exposure (outside
  the CUPED pre-period) or after the attribution window.  A large share usually means
  exposures are logged late or not at all (e.g. a client that assigns locally and sends
  its exposures after the outcomes), so the warning names each reason's count.
- **Events without a definition.**  An event name that this experiment's units send but
  that no metric reads is listed; when a defined metric has a close spelling
  (``purchse`` / ``purchase``, `difflib.get_close_matches`), the warning says so.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Final

from analysis.data.tables import EventCounts
from analysis.decision.rules import DecisionRules

_REASONS: Final = {
    "unknown_unit": "from units never exposed in this experiment",
    "crossover_unit": "from units excluded as crossovers",
    "before_exposure": "before the unit's first exposure",
    "outside_window": "after the attribution window",
}
_LISTED: Final = 10


def data_warnings(
    *,
    events: EventCounts,
    undefined: Mapping[str, int],
    defined: Sequence[str],
    rules: DecisionRules,
) -> tuple[str, ...]:
    """The dropped-event and undefined-metric warnings of one analysis (possibly none)."""
    out = []
    if events.total and events.dropped_share > rules.dropped_events_warn_share:
        parts = [f"{n:,} {_REASONS[reason]}" for reason, n in events.dropped.items() if n]
        out.append(
            f"{sum(events.dropped.values()):,} of {events.total:,} outcome events "
            f"({events.dropped_share:.1%}) were dropped: {'; '.join(parts)}; above "
            f"{rules.dropped_events_warn_share:.0%}, check that exposures are logged before "
            "outcomes and for every unit"
        )
    if undefined:
        named = []
        for name, n in list(undefined.items())[:_LISTED]:
            close = difflib.get_close_matches(name, defined, n=1, cutoff=0.75)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            named.append(f"'{name}' ({n:,} events{hint})")
        more = len(undefined) - _LISTED
        out.append(
            "events with no metric definition in this analysis: " + ", ".join(named)
            + (f" and {more} more" if more > 0 else "")
        )  # fmt: skip
    return tuple(out)


__all__ = ["data_warnings"]
