"""What a new version of an experiment changes. Pure.

`diff` is the audit trail's record of a version (`audit_reason` its reason);
`moved_unit_problems` lists the changes that would move units already assigned, which the
store refuses unless forced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from abtest.errors import InvalidInput, Problem
from abtest.experiment import Experiment
from abtest.holdout import moves_assigned_units

MAX_REASON_LENGTH: Final = 2_000


def audit_reason(reason: object) -> str | None:
    """A reason for an audit entry (why ship, why change a metric), stripped; None when
    absent or blank; `InvalidInput` for a non-string or one over `MAX_REASON_LENGTH`."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidInput("must be a string", "reason")
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"at most {MAX_REASON_LENGTH:,} characters", "reason")
    return reason or None


def diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Changed leaves as ``{"field", "old", "new"}``, with dotted paths, in key order.

    Lists are compared whole (a variant list is one value), which keeps entries readable.

    Examples
    --------
    >>> diff({"traffic": 0.5, "seed": "a"}, {"traffic": 1.0, "seed": "a"})
    [{'field': 'traffic', 'old': 0.5, 'new': 1.0}]
    """
    changes: list[dict[str, Any]] = []
    for name in sorted(set(old) | set(new)):
        path = f"{prefix}{name}"
        before, after = old.get(name), new.get(name)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changes += diff(before, after, f"{path}.")
        elif before != after or (name in old) != (name in new):
            changes.append({"field": path, "old": before, "new": after})
    return changes


def moved_unit_problems(old: Experiment, new: Experiment) -> list[Problem]:
    """Changes after which some already-assigned unit would get another variant or none.

    Weight changes are not listed: stored (sticky) assignments absorb them.  Listed are a
    removed variant, a new seed, lower traffic, a layer change that leaves part of the
    old range (or adds a layer), and a holdout that makes new members (they get control).
    Targeting changes are allowed: sticky units keep their variant whatever their attributes.
    """
    problems = []
    removed = [key for key in old.variant_keys if key not in new.variant_keys]
    if removed:
        problems.append(
            Problem("variants", f"removes variant(s) {', '.join(removed)} that units have")
        )
    if new.seed != old.seed:
        problems.append(Problem("seed", "a new seed reshuffles every unit"))
    if new.traffic < old.traffic:
        problems.append(Problem("traffic", f"lowers traffic from {old.traffic} to {new.traffic}"))
    if new.layer != old.layer and new.layer is not None:
        inside = (
            old.layer is not None
            and new.layer.name == old.layer.name
            and new.layer.start <= old.layer.start
            and old.layer.end <= new.layer.end
        )
        if not inside:
            problems.append(Problem("layer.range", "the new layer range leaves out assigned units"))
    if moves_assigned_units(old.holdout, new.holdout):
        assert new.holdout is not None
        problems.append(
            Problem(
                "holdout",
                f"holdout '{new.holdout.name}' would serve control "
                f"to its {new.holdout.share:.1%} of the units already assigned",
            )
        )
    return problems
