"""Which keys a call touches once data is partitioned: the store's and the exporter's map from
an experiment, a unit or an event to its hash tag's keys (names from `abtest.keys`).

Pure: no I/O.  See `abtest.keys` for the layout and the partition functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from abtest import keys
from abtest.events import DEDUPE_WINDOW_DAYS, Event

DAY_SECONDS: Final = 86_400
# Ids are kept through the window's last day: one day longer than the window itself.
SEEN_TTL_SECONDS: Final = (DEDUPE_WINDOW_DAYS + 1) * DAY_SECONDS


def partition_count(raw: str | bytes | None) -> int:
    """An experiment's ``partitions`` meta field (absent before partitioning existed: 1)."""
    return 1 if raw is None else int(raw)


def unit_script_keys(experiment_key: str, partition: int, partitions: int) -> tuple[str, ...]:
    """KEYS of `keys.ASSIGN_SCRIPT` for one partition of an experiment."""
    found: tuple[str, ...] = (
        keys.unit_state(experiment_key, partition, partitions),
        keys.exposures_stream(experiment_key, partition, partitions),
        keys.exposure_counts(experiment_key, partition, partitions),
        keys.sticky_buckets(experiment_key, partition, partitions),
        keys.holdout_stream(experiment_key, partition, partitions),
    )
    if partitions == 1:  # only unpartitioned stores can hold the legacy sticky hash
        found += (keys.legacy_assignments(experiment_key), keys.variant_codes(experiment_key))
    return found


def exposure_streams(experiment_key: str, partitions: int) -> list[str]:
    """Every exposure stream of an experiment, partition by partition."""
    return [keys.exposures_stream(experiment_key, p, partitions) for p in range(partitions)]


def holdout_streams(experiment_key: str, partitions: int) -> list[str]:
    """Every holdout stream of an experiment, partition by partition."""
    return [keys.holdout_stream(experiment_key, p, partitions) for p in range(partitions)]


def count_keys(experiment_key: str, partitions: int) -> list[str]:
    """Every exposure counter hash of an experiment."""
    return [keys.exposure_counts(experiment_key, p, partitions) for p in range(partitions)]


def days(now: float | None = None) -> list[str]:
    """``YYYYMMDD`` of today and the `DEDUPE_WINDOW_DAYS` days before it (UTC), newest first."""
    today = int(time.time() if now is None else now) // DAY_SECONDS
    return [time.strftime("%Y%m%d", time.gmtime((today - i) * DAY_SECONDS))
            for i in range(DEDUPE_WINDOW_DAYS + 1)]  # fmt: skip


def value_text(value: float) -> str:
    """An event value as stored: the digits of an integral value (Redis packs those as an
    integer), else ``repr``; ``float()`` reads both back exactly."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def event_calls(
    events: Sequence[Event], partitions: int, *, legacy_days: Sequence[str] = (),
    now: float | None = None,
) -> list[tuple[list[str], list[Any]]]:  # fmt: skip
    """`keys.RECORD_EVENTS_SCRIPT` calls for ``events``: one per partition that has any.

    ``legacy_days``: days whose pre-compact id sets exist (only unpartitioned stores).
    """
    window = days(now)
    by_partition: dict[int, list[Any]] = {}
    for event in events:
        digest = keys.event_digest(event.event_id)
        args = by_partition.setdefault(keys.event_partition(digest, partitions), [])
        args += [digest, event.event_id, event.unit_id, event.metric, value_text(event.value),
                 str(event.timestamp)]  # fmt: skip
    legacy = [keys.legacy_seen_events(day) for day in legacy_days] if partitions == 1 else []
    calls = []
    for q, args in sorted(by_partition.items()):
        names = [keys.seen_events(day, q, partitions) for day in window]
        calls.append(([keys.outcomes_stream(q, partitions), *names, *legacy],
                      [SEEN_TTL_SECONDS, len(legacy), *args]))  # fmt: skip
    return calls
