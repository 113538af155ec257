"""The metric catalogue in Redis: versioned definitions with an audit trail, and the
counters of events accepted for metrics nothing knows.

Key names and scripts come from `abtest.keys`.  Every definition lives under the
``{catalogue}`` hash tag (one slot: they are few and written rarely); each write is one
compare-and-set script that appends the version with its audit entry (time, key id,
reason, diff) and replaces the current entry, so two writers can never both make version
``n``.  Unknown-metric counters live under the events partitions, chosen by a hash of the
metric name (`keys.name_partition`), since they are written with traffic.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from abtest import keys
from abtest.catalogue import MetricDefinition, closest
from abtest.changes import audit_reason, diff
from abtest.errors import Conflict, NotFound
from abtest.json_input import load_stored
from abtest.redis_client import register_script

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient

__all__ = ["MAX_UNKNOWN_NAMES", "CatalogueEntry", "MetricCatalogue"]

MAX_UNKNOWN_NAMES: Final = 1_000  # names counted one by one per partition; the rest as '*'


@dataclass(frozen=True)
class CatalogueEntry:
    """A catalogue definition at one version, with who changed it, when and why."""

    definition: MetricDefinition
    version: int
    updated_at: str
    key_id: str
    reason: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CatalogueEntry:
        """Inverse of `to_dict` (what ``GET /v1/metrics`` lists)."""
        return cls(MetricDefinition.from_dict(data["definition"]), int(data["version"]),
                   str(data["updated_at"]), str(data["key_id"]), data.get("reason"))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``definition`` is exactly `MetricDefinition.to_dict`."""
        return {
            "name": self.definition.name,
            "version": self.version,
            "updated_at": self.updated_at,
            "key_id": self.key_id,
            "reason": self.reason,
            "definition": self.definition.to_dict(),
        }


class MetricCatalogue:
    """Reads and writes of the metric catalogue (one per store)."""

    def __init__(self, client: RedisClient, *, event_partitions: int = 1) -> None:
        self.redis = client
        self.event_partitions = event_partitions
        self._write = register_script(client, keys.WRITE_METRIC_SCRIPT)
        self._count_unknown = register_script(client, keys.COUNT_UNKNOWN_METRICS_SCRIPT)

    def put(
        self,
        definition: MetricDefinition,
        *,
        key_id: str,
        reason: str | None = None,
        base_version: int | None = None,
    ) -> tuple[CatalogueEntry, bool]:
        """Store ``definition`` as the metric's next version; ``(entry, changed)``.

        The same definition again changes nothing (``changed`` False).  ``base_version``:
        the version the caller read (0: the metric must be new); `Conflict` when the
        catalogue has moved on since.  A type change is refused: experiments and stored
        events read the old type, so a new meaning needs a new name.
        """
        reason = audit_reason(reason)
        name = definition.name
        history = self._history(name)
        current = history[-1] if history else None
        version = len(history)
        if base_version is not None and base_version != version:
            raise Conflict(f"metric '{name}' is at version {version}, not {base_version}; "
                           "read it again", "base_version")  # fmt: skip
        if current is not None:
            old = current.definition
            if old == definition:
                return current, False
            if old.type is not definition.type:
                raise Conflict(f"metric '{name}' is a {old.type.value} metric; a new type needs "
                               "a new name", "type")  # fmt: skip
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry = CatalogueEntry(definition, version + 1, now, key_id, reason)
        audit = {
            **entry.to_dict(),
            "diff": diff(
                {} if current is None else current.definition.to_dict(), definition.to_dict()
            ),
        }
        written = int(self._write(
            keys=[keys.metric_catalogue(), keys.metric_versions(name)],
            args=[name, version, json.dumps(entry.to_dict()), json.dumps(audit)],
        ))  # fmt: skip
        if written != version + 1:
            raise Conflict(f"metric '{name}' was changed concurrently; retry", "version")
        return entry, True

    def get(self, name: str, version: int | None = None) -> CatalogueEntry:
        """The current entry, or one version; `NotFound` naming the closest metric."""
        if version is None:
            raw = self.redis.hget(keys.metric_catalogue(), name)
            if raw is None:
                raise NotFound(f"no metric '{name}' in the catalogue{self._hint(name)}", "name")
            return CatalogueEntry.from_dict(load_stored(raw))
        raw = self.redis.lindex(keys.metric_versions(name), version - 1) if version >= 1 else None
        if raw is None:
            if self.redis.hexists(keys.metric_catalogue(), name):
                raise NotFound(f"metric '{name}' has no version {version}", "version")
            raise NotFound(f"no metric '{name}' in the catalogue{self._hint(name)}", "name")
        return CatalogueEntry.from_dict(load_stored(raw))

    def lookup(self, name: str, version: int | None) -> tuple[MetricDefinition, int]:
        """`abtest.catalogue.Lookup` over this catalogue."""
        entry = self.get(name, version)
        return entry.definition, entry.version

    def entries(self) -> list[CatalogueEntry]:
        """Every metric's current entry, sorted by name."""
        raw = self.redis.hgetall(keys.metric_catalogue())
        return [CatalogueEntry.from_dict(load_stored(raw[name])) for name in sorted(raw)]

    def names(self) -> list[str]:
        """Every catalogue metric's name."""
        return sorted(_text(name) for name in self.redis.hkeys(keys.metric_catalogue()))

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of one metric with its audit entry (time, key id, reason, diff)."""
        raw = self.redis.lrange(keys.metric_versions(name), 0, -1)
        history = [load_stored(_text(item)) for item in raw]
        if not history:
            raise NotFound(f"no metric '{name}' in the catalogue{self._hint(name)}", "name")
        return history

    def snapshot(self) -> dict[str, Any]:
        """Every version of every metric, as ``abtest export`` writes it (``catalogue.json``)
        and `abtest.catalogue.read_catalogue` reads it.  Works on a client that returns
        bytes too (export's)."""
        return {"metrics": {name: self.versions(name) for name in self.names()}}

    # -- events for unknown metrics ---------------------------------------------------------
    def count_unknown(self, names: Iterable[str]) -> None:
        """Add one per name (a name listed n times gets n) to the unknown-metric counters."""
        per_partition: dict[int, Counter[str]] = {}
        for name in names:
            partition = keys.name_partition(name, self.event_partitions)
            per_partition.setdefault(partition, Counter())[name] += 1
        # One call per partition: a batch names few unknown metrics, so few partitions.
        for partition, counts in sorted(per_partition.items()):
            args: list[Any] = [MAX_UNKNOWN_NAMES]
            for name, count in sorted(counts.items()):
                args += [name, count]
            self._count_unknown(
                keys=[keys.unknown_metrics(partition, self.event_partitions)], args=args
            )

    def unknown_counts(self) -> dict[str, int]:
        """Events accepted per unknown metric name, most first (over every events
        partitioning the store was written with, as export drains them)."""
        total: Counter[str] = Counter()
        written = self.redis.smembers(keys.event_partition_counts())
        for partitions in {self.event_partitions, *(int(n) for n in written)}:
            for partition in range(partitions):
                for name, count in self.redis.hgetall(
                    keys.unknown_metrics(partition, partitions)
                ).items():
                    total[name] += int(count)
        return dict(sorted(total.items(), key=lambda item: (-item[1], item[0])))

    # -- internals --------------------------------------------------------------------------
    def _history(self, name: str) -> list[CatalogueEntry]:
        raw = self.redis.lrange(keys.metric_versions(name), 0, -1)
        return [CatalogueEntry.from_dict(load_stored(item)) for item in raw]

    def _hint(self, name: str) -> str:
        return closest(name, self.names())


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
