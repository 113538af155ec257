"""Reading what the store keeps in Redis, whatever the partitioning: for assertions only."""

from __future__ import annotations

from typing import Any

from abtest import keys, layout
from abtest.export_files import Kind, parse


def _partitions(client: Any, experiment: str) -> int:
    return layout.partition_count(client.hget(keys.experiment_meta(experiment), "partitions"))


def exposure_rows(client: Any, experiment: str = "exp") -> list[dict[str, Any]]:
    """Every buffered exposure of ``experiment`` as an export row, partition by partition."""
    codes = {
        code: variant for variant, code in client.hgetall(keys.variant_codes(experiment)).items()
    }
    return [
        parse(Kind.EXPOSURES, fields, experiment=experiment, variants=codes)
        for stream in layout.exposure_streams(experiment, _partitions(client, experiment))
        for _, fields in client.xrange(stream)
    ]


def sticky_variant(client: Any, experiment: str, unit_id: str) -> str | None:
    """The variant stored for ``unit_id``, found as the assign script finds it."""
    partitions = _partitions(client, experiment)
    partition = keys.unit_partition(unit_id, partitions)
    level, split = client.hmget(keys.unit_state(experiment, partition, partitions), "lh", "ls")
    bucket = keys.bucket_of(keys.unit_bucket_hash(unit_id), int(level or 0), int(split or 0))
    prefix = keys.sticky_buckets(experiment, partition, partitions)
    code = client.hget(f"{prefix}:{bucket}", unit_id)
    if code is None:
        return None
    return {c: v for v, c in client.hgetall(keys.variant_codes(experiment)).items()}[code]


def outcome_entries(client: Any) -> list[dict[str, str]]:
    """Every buffered outcome event's fields, over every events partition."""
    counts = {int(c) for c in client.smembers(keys.event_partition_counts())} | {1}
    return [
        fields
        for count in sorted(counts)
        for q in range(count)
        for _, fields in client.xrange(keys.outcomes_stream(q, count))
    ]
