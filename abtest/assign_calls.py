"""The assign script's calls and replies: what `abtest.store.Store.assign` sends to Redis
for one unit and how it reads the answer.  Pure: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from abtest import keys
from abtest.assignment import Assignment, Reason
from abtest.assignment import assign as assign_pure
from abtest.attributes import encode, segment_attributes
from abtest.experiment import Experiment, Status


class CachedExperiment(NamedTuple):
    """An experiment's config as one worker caches it, with what its assign calls need."""

    version: int
    experiment: Experiment
    sticky: Mapping[str, Assignment]  # variant key -> the Assignment a sticky unit gets
    codes: Mapping[str, str]  # variant key -> its stored code, and back
    variants: Mapping[str, str]
    partitions: tuple[tuple[str, ...], ...]  # the assign script's KEYS, per partition


# Redis runs a batch's script calls back to back, so a bigger batch would delay every other
# client for longer (about 60 µs per call on a 2-core machine: 6 ms for 100).
MAX_BATCH_ASSIGNMENTS: Final = 100


# How far back a caller's own assignment time may date an exposure (`AssignRequest`).
MAX_EXPOSURE_DELAY_US: Final = 3_600_000_000  # one hour


class AssignRequest(NamedTuple):
    """One unit to assign in `Store.assign_many`.

    ``assigned_at`` (epoch µs) is when the caller assigned the unit itself (the client's
    local evaluation), so outcomes it tracked at once are not older than the exposure.  A
    first exposure is stamped with the earlier of it and the time of arrival, but never
    more than `MAX_EXPOSURE_DELAY_US` before arrival; a time in the future (a clock ahead)
    counts as arrival.
    """

    experiment: str
    unit_id: str
    attributes: Mapping[str, Any] | None = None
    assigned_at: int | None = None


def exposure_time(assigned_at: int | None, now: int) -> int:
    """The exposure timestamp (epoch µs) of a unit assigned at ``assigned_at``, now."""
    if assigned_at is None:
        return now
    return min(now, max(assigned_at, now - MAX_EXPOSURE_DELAY_US))


def script_call(
    cached: CachedExperiment,
    unit_id: str,
    attributes: Mapping[str, Any] | None,
    now: int,
    assigned_at: int | None = None,
) -> tuple[Assignment, int, tuple[Any, ...]]:
    """The pure assignment, the unit's partition and the `keys.ASSIGN_SCRIPT` arguments
    (``now``: the store's time, epoch µs; the exposure is dated `exposure_time`)."""
    experiment = cached.experiment
    result = assign_pure(experiment, unit_id, attributes)
    mode, code = _mode(experiment, result.reason)
    variant = result.variant if result.reason is Reason.ASSIGNED else None
    if variant is not None:
        code = cached.codes[variant]
    kept = encode(segment_attributes(attributes)) if variant is not None else ""
    now = exposure_time(assigned_at, now)
    partition = keys.unit_partition(unit_id, len(cached.partitions))
    holdout = "" if experiment.holdout is None else experiment.holdout.name
    return result, partition, (
        cached.version, mode, unit_id, code, now,
        time.strftime("%Y-%m-%d", time.gmtime(now // 1_000_000)), variant or "",
        keys.unit_bucket_hash(unit_id), holdout, kept,
    )  # fmt: skip


def _mode(experiment: Experiment, reason: Reason) -> tuple[str, str]:
    """The script's mode for a result, and the code it stores in ``contact`` mode."""
    if reason is Reason.HOLDOUT:
        return "contact", "h"
    if reason is Reason.SHIPPED and experiment.holdout is not None:
        return "contact", "s"  # logs the holdout's comparison group after the ship
    if experiment.status is Status.RUNNING and reason is not Reason.FORCED:
        return "sticky", ""
    return "check", ""


def read_reply(
    cached: CachedExperiment, result: Assignment, reply: Any
) -> tuple[Assignment, int] | None:
    """The `keys.ASSIGN_SCRIPT`'s reply as an answer; None when the cached config was stale."""
    if isinstance(reply, Exception):
        raise reply
    code, value = reply
    if code == 0:
        return None
    if code in (2, 4) and result.reason not in (Reason.HOLDOUT, Reason.SHIPPED):
        # (A holdout member gets control and a shipped experiment its winner, whatever is
        # stored.)  A variant removed by a forced update is no longer servable: the unit
        # falls back to the recomputed result, without a second exposure.  (4: a legacy
        # entry holds the variant key itself.)
        variant = cached.variants.get(value) if code == 2 else value
        return cached.sticky.get(variant or "", result), cached.version
    return result, cached.version
