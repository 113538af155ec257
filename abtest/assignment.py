"""Assignment: which variant a unit gets, as a pure function of (experiment, unit, attributes).

Order of the checks (the first that applies decides the reason):

1. ``forced``         the unit id is in the experiment's overrides (QA), in any status;
2. ``holdout``        shipped, and the unit is in the global holdout covering it: control;
   ``shipped``        the experiment is shipped: everyone else gets the winner;
   ``rolled_back``    its guarded rollout was rolled back: everyone gets control;
3. ``not_running``    draft or stopped: no variant;
4. ``not_targeted``   a targeting rule fails;
5. ``layer_excluded`` the unit's layer slot is outside the experiment's range;
6. ``not_in_traffic`` the traffic draw is at or above the traffic threshold;
7. ``holdout``        the unit is in the global holdout covering the experiment: control;
8. ``assigned``       the variant draw picks a variant by weight.

Only ``assigned`` units are *in the experiment* (they count in the analysis); a forced,
holdout, shipped or rolled-back unit gets a variant but is not an exposure (holdout units
are logged in the holdout's own exposure log, `abtest.holdout`).  The draws are specified in
`abtest.hashing`.  Nothing here does I/O, so the same code runs in the service and in the
Python client's local-evaluation mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from abtest import hashing
from abtest.experiment import Experiment, Status
from abtest.targeting import matches_all

_NO_ATTRIBUTES: Final[Mapping[str, Any]] = {}


class Reason(StrEnum):
    """Why a unit got the variant it got (or none)."""

    FORCED = "forced"
    SHIPPED = "shipped"
    NOT_RUNNING = "not_running"
    NOT_TARGETED = "not_targeted"
    LAYER_EXCLUDED = "layer_excluded"
    NOT_IN_TRAFFIC = "not_in_traffic"
    ASSIGNED = "assigned"
    HOLDOUT = "holdout"
    ROLLED_BACK = "rolled_back"  # last, so the codes of the others never move


REASON_CODES: Final = tuple(Reason)  # index -> Reason, for the batch form's code array


@dataclass(frozen=True, slots=True)
class Assignment:
    """The outcome for one unit: the variant key (or None), its payload and the reason."""

    experiment: str
    variant: str | None
    reason: Reason
    payload: Any = None

    @property
    def in_experiment(self) -> bool:
        """True only for units randomised into a variant (those are exposures)."""
        return self.reason is Reason.ASSIGNED

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "experiment": self.experiment,
            "variant": self.variant,
            "payload": self.payload,
            "in_experiment": self.in_experiment,
            "reason": self.reason.value,
        }


def recorded(experiment: Experiment, result: Assignment) -> bool:
    """True when the service records something for ``result``: a first exposure, or (under a
    holdout) a contact in the holdout's exposure log.  The client's local evaluation reports
    exactly these units, so the logs are the same in both modes."""
    return result.reason is Reason.ASSIGNED or (
        experiment.holdout is not None and result.reason in (Reason.HOLDOUT, Reason.SHIPPED)
    )


@dataclass(frozen=True)
class _Plan:
    """Everything about an experiment that assignment needs, computed once."""

    boundaries: tuple[int, ...]
    traffic_threshold: int
    layer_bounds: tuple[int, int] | None
    variant_prefix: bytes
    traffic_prefix: bytes | None  # None when traffic is 1: every unit is in
    layer_prefix: bytes | None
    assigned: tuple[Assignment, ...]  # one prebuilt result per variant
    forced: Mapping[str, Assignment]
    fixed: Assignment | None  # the result for every non-forced unit (shipped, not running)
    excluded: Mapping[Reason, Assignment]
    holdout_prefix: bytes | None  # None: no holdout covers the experiment (or not live)
    holdout_threshold: int
    holdout: Assignment | None  # control, reason holdout


def _plan(experiment: Experiment) -> _Plan:
    # Cached on the (frozen) experiment itself: it lives exactly as long as the definition.
    cached: _Plan | None = experiment.__dict__.get("_assignment_plan")
    if cached is None:
        cached = _build_plan(experiment)
        object.__setattr__(experiment, "_assignment_plan", cached)
    return cached


def _build_plan(experiment: Experiment) -> _Plan:
    key = experiment.key
    payloads = {v.key: v.payload for v in experiment.variants}
    fixed: Assignment | None = None
    if experiment.status is Status.SHIPPED:
        winner = experiment.winner
        fixed = Assignment(key, winner, Reason.SHIPPED, payloads.get(winner or ""))
    elif experiment.status is Status.ROLLED_BACK:
        control = experiment.control
        fixed = Assignment(key, control, Reason.ROLLED_BACK, payloads.get(control))
    elif experiment.status is not Status.RUNNING:
        fixed = Assignment(key, None, Reason.NOT_RUNNING)
    layer = experiment.layer
    ref = experiment.holdout
    live = experiment.status in (Status.RUNNING, Status.SHIPPED)
    control = experiment.control
    return _Plan(
        boundaries=hashing.variant_boundaries([v.weight for v in experiment.variants]),
        traffic_threshold=hashing.threshold(experiment.traffic),
        layer_bounds=None
        if layer is None
        else (hashing.threshold(layer.start), hashing.threshold(layer.end)),
        variant_prefix=hashing.message_prefix("variant", experiment.seed),
        traffic_prefix=None
        if experiment.traffic >= 1.0
        else hashing.message_prefix("traffic", experiment.seed),
        layer_prefix=None if layer is None else hashing.message_prefix("layer", layer.name),
        assigned=tuple(
            Assignment(key, v.key, Reason.ASSIGNED, v.payload) for v in experiment.variants
        ),
        forced={
            unit: Assignment(key, variant, Reason.FORCED, payloads[variant])
            for unit, variant in experiment.overrides.items()
        },
        fixed=fixed,
        excluded={
            reason: Assignment(key, None, reason)
            for reason in (Reason.NOT_TARGETED, Reason.LAYER_EXCLUDED, Reason.NOT_IN_TRAFFIC)
        },
        holdout_prefix=None
        if ref is None or not live
        else hashing.message_prefix("holdout", ref.name),
        holdout_threshold=0 if ref is None else ref.threshold,
        holdout=None
        if ref is None
        else Assignment(key, control, Reason.HOLDOUT, payloads.get(control)),
    )


def _draw(prefix: bytes, unit_id: str) -> int:
    return int.from_bytes(_sha256(prefix + unit_id.encode()).digest()[:4], "big")


_sha256: Final = hashing.sha256


def assign(
    experiment: Experiment, unit_id: str, attributes: Mapping[str, Any] | None = None
) -> Assignment:
    """The variant ``unit_id`` gets in ``experiment``; never raises for a valid experiment.

    This is the hot path of the service and the client: results are prebuilt per
    experiment, so a call costs one SHA-256 per needed draw and no allocation.

    Examples
    --------
    >>> exp = Experiment.from_dict({"key": "demo", "status": "running",
    ...     "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}]})
    >>> assign(exp, "user-1").reason
    <Reason.ASSIGNED: 'assigned'>
    """
    plan: _Plan = experiment.__dict__.get("_assignment_plan") or _plan(experiment)
    if plan.forced:
        forced = plan.forced.get(unit_id)
        if forced is not None:
            return forced
    if plan.fixed is not None:
        if plan.holdout_prefix is not None and (  # shipped: all but the holdout get the winner
            _draw(plan.holdout_prefix, unit_id) < plan.holdout_threshold
        ):
            assert plan.holdout is not None
            return plan.holdout
        return plan.fixed
    if experiment.targeting and not matches_all(
        experiment.targeting, attributes if attributes is not None else _NO_ATTRIBUTES
    ):
        return plan.excluded[Reason.NOT_TARGETED]
    if plan.layer_prefix is not None:
        assert plan.layer_bounds is not None
        slot = _draw(plan.layer_prefix, unit_id)
        if not plan.layer_bounds[0] <= slot < plan.layer_bounds[1]:
            return plan.excluded[Reason.LAYER_EXCLUDED]
    if plan.traffic_prefix is not None and (
        _draw(plan.traffic_prefix, unit_id) >= plan.traffic_threshold
    ):
        return plan.excluded[Reason.NOT_IN_TRAFFIC]
    if plan.holdout_prefix is not None and (
        _draw(plan.holdout_prefix, unit_id) < plan.holdout_threshold
    ):
        assert plan.holdout is not None
        return plan.holdout
    draw = int.from_bytes(_sha256(plan.variant_prefix + unit_id.encode()).digest()[:4], "big")
    for bound, result in zip(plan.boundaries, plan.assigned, strict=True):
        if draw < bound:
            return result
    raise AssertionError("the last boundary is 2**32")  # pragma: no cover


@dataclass(frozen=True)
class BatchAssignment:
    """Assignments of many units as arrays: ``variant_index`` is -1 where there is no variant.

    ``reason_code`` indexes `REASON_CODES`; `variant_keys` maps indices to keys.
    """

    experiment: str
    variant_keys: tuple[str, ...]
    variant_index: npt.NDArray[np.int16]
    reason_code: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.variant_index.shape[0])

    def variants(self) -> list[str | None]:
        """Variant key (or None) per unit, in input order."""
        keys: list[str | None] = [*self.variant_keys, None]
        return [keys[i] for i in self.variant_index.tolist()]

    def reasons(self) -> list[Reason]:
        """Reason per unit, in input order."""
        return [REASON_CODES[c] for c in self.reason_code.tolist()]

    def counts(self) -> dict[str, int]:
        """Number of units per variant key (units without a variant are not counted)."""
        counts = np.bincount(
            self.variant_index[self.variant_index >= 0], minlength=len(self.variant_keys)
        )
        return dict(zip(self.variant_keys, counts.tolist(), strict=True))


def assign_batch(
    experiment: Experiment,
    unit_ids: Sequence[str],
    attributes: Sequence[Mapping[str, Any]] | None = None,
) -> BatchAssignment:
    """`assign` for many units at once; hashing and bucketing are vectorised with numpy.

    ``attributes``, when given, has one mapping per unit id.  The result agrees with
    `assign` unit by unit (a test checks it).
    """
    plan = _plan(experiment)
    n = len(unit_ids)
    if attributes is not None and len(attributes) != n:
        raise ValueError("attributes must have one mapping per unit id")
    index = np.full(n, -1, dtype=np.int16)
    reason = np.empty(n, dtype=np.int8)
    codes = {r: REASON_CODES.index(r) for r in REASON_CODES}
    held = (
        hashing.buckets("holdout", experiment.holdout.name, unit_ids) < plan.holdout_threshold
        if plan.holdout_prefix is not None and experiment.holdout is not None
        else None
    )
    control = experiment.variant_keys.index(experiment.control)
    if plan.fixed is not None:
        reason[:] = codes[plan.fixed.reason]
        if plan.fixed.variant is not None:
            index[:] = experiment.variant_keys.index(plan.fixed.variant)
        if held is not None:
            reason[held] = codes[Reason.HOLDOUT]
            index[held] = control
    else:
        live = np.ones(n, dtype=bool)
        if experiment.targeting:
            rules = experiment.targeting
            attrs = attributes if attributes is not None else [_NO_ATTRIBUTES] * n
            targeted = np.fromiter((matches_all(rules, a) for a in attrs), dtype=bool, count=n)
            reason[~targeted] = codes[Reason.NOT_TARGETED]
            live &= targeted
        if experiment.layer is not None:
            assert plan.layer_bounds is not None
            slots = hashing.buckets("layer", experiment.layer.name, unit_ids)
            inside = (slots >= plan.layer_bounds[0]) & (slots < plan.layer_bounds[1])
            reason[live & ~inside] = codes[Reason.LAYER_EXCLUDED]
            live &= inside
        if plan.traffic_prefix is not None:
            draws = hashing.buckets("traffic", experiment.seed, unit_ids)
            inside = draws < plan.traffic_threshold
            reason[live & ~inside] = codes[Reason.NOT_IN_TRAFFIC]
            live &= inside
        if held is not None:
            reason[live & held] = codes[Reason.HOLDOUT]
            index[live & held] = control
            live &= ~held
        draws = hashing.buckets("variant", experiment.seed, unit_ids)
        bounds = np.asarray(plan.boundaries, dtype=np.uint64)
        chosen = np.searchsorted(bounds, draws.astype(np.uint64), side="right").astype(np.int16)
        index[live] = chosen[live]
        reason[live] = codes[Reason.ASSIGNED]
    if experiment.overrides:
        for position, unit_id in enumerate(unit_ids):
            forced = plan.forced.get(unit_id)
            if forced is not None and forced.variant is not None:
                index[position] = experiment.variant_keys.index(forced.variant)
                reason[position] = codes[Reason.FORCED]
    return BatchAssignment(experiment.key, experiment.variant_keys, index, reason)
