"""The Redis store: experiments with versions and an audit trail, sticky assignment with
exposure logging, idempotent outcome events and API keys.

Key names and Lua scripts come from `abtest.keys` only (the layout, its partitions and
hash tags are described there).  The scripts are registered once per store and get their
keys through ``KEYS[]``; each touches keys of one hash tag, so they run on one Redis Cluster
shard.  ``assign`` is one round trip (EVALSHA): the script checks that the worker's cached
config is current, returns a stored (sticky) variant if the unit has one, and otherwise
stores the computed variant, appends the first exposure to the stream of the unit's
partition and bumps the counters.  Concurrent requests for one unit therefore cannot
disagree.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from abtest import keys, layout
from abtest.assign_calls import (
    MAX_BATCH_ASSIGNMENTS,
    AssignRequest,
    CachedExperiment,
    read_reply,
    script_call,
)
from abtest.assignment import Assignment, Reason
from abtest.auth import ApiKey, ApiKeys, Role
from abtest.catalogue import resolve_references
from abtest.catalogue_store import MetricCatalogue
from abtest.changes import MAX_REASON_LENGTH, audit_reason, diff, moved_unit_problems
from abtest.definitions import read_definition
from abtest.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, StoreUnavailable
from abtest.events import Event
from abtest.experiment import Experiment, Status, layer_conflicts
from abtest.holdout import Holdout, HoldoutRef, ref_for
from abtest.json_input import load_stored
from abtest.redis_client import register_script
from abtest.rollout_rules import check_rollout_update, starting_step
from abtest.thread_connections import ThreadConnections

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient

__all__ = [
    "MAX_BATCH_ASSIGNMENTS", "MAX_REASON_LENGTH", "AssignRequest", "ExposureCounts", "LeaseLost",
    "Store", "StoredExperiment",
]  # fmt: skip

_LOCK_MS: Final = 10_000


class LeaseLost(Conflict):
    """A monitor's write was refused: its lease on the experiment has passed to another."""

    code = "lease_lost"


@dataclass(frozen=True)
class StoredExperiment:
    """An experiment as stored: the definition plus its version and dates."""

    experiment: Experiment
    version: int
    created_at: str
    updated_at: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredExperiment:
        """Inverse of `to_dict` (what the HTTP API returns for an experiment)."""
        return cls(Experiment.from_dict(data["config"]), int(data["version"]),
                   str(data["created_at"]), str(data["updated_at"]))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``config`` is exactly ``Experiment.to_dict()``."""
        return {
            "key": self.experiment.key,
            "status": self.experiment.status.value,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "config": self.experiment.to_dict(),
        }


@dataclass(frozen=True)
class ExposureCounts:
    """First exposures per variant in total and per UTC day (``YYYY-MM-DD``)."""

    experiment: str
    variants: Mapping[str, int]
    daily: Mapping[str, Mapping[str, int]]

    @property
    def total(self) -> int:
        """Exposures over all variants."""
        return sum(self.variants.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form, days in date order."""
        return {
            "experiment": self.experiment,
            "total": self.total,
            "variants": dict(self.variants),
            "daily": [{"date": d, "variants": dict(self.daily[d])} for d in sorted(self.daily)],
        }


def system_now_us() -> int:
    """The system clock in epoch µs (the store's default clock)."""
    return time.time_ns() // 1000


def iso_time(epoch_us: int) -> str:
    """``2024-06-01T12:34:56.789Z`` for an epoch µs."""
    moment = datetime.fromtimestamp(epoch_us / 1e6, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _holdout_ref(holdout: Holdout | None, experiment: Experiment) -> HoldoutRef | None:
    layer = None if experiment.layer is None else experiment.layer.name
    return ref_for(holdout, experiment.key, layer)


class Store:
    """All reads and writes of abtest state in one Redis database or Redis Cluster.

    The store caches parsed experiments per config version; every assignment checks the
    version inside its script, so a cached config is never used once a newer one exists.
    One store per process (it is thread-safe: the cache is only ever replaced, not mutated
    in place, redis-py's pool is thread-safe, and the per-request scripts run on each
    thread's own connection, `abtest.thread_connections`).

    ``unit_partitions``: how many partitions an experiment created by this store gets
    (fixed for its lifetime).  ``event_partitions``: how many partitions events are
    spread over.  ``wait_replicas``: writes are confirmed by that many replicas (``WAIT``,
    at most ``wait_timeout_ms``) before they are reported, else `StoreUnavailable`-like
    errors (503).  See `abtest.keys` for what each means for the layout.  ``now_us`` is the
    clock of exposures, events and audit entries (epoch µs); the service passes a
    controlled one in demo and test mode only (`service.monitor.clock`).
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        unit_partitions: int = 1,
        event_partitions: int = 1,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        now_us: Callable[[], int] = system_now_us,
    ) -> None:
        if unit_partitions < 1 or event_partitions < 1:
            raise InvalidInput("partition counts must be at least 1", "partitions")
        self.redis = client
        self.now_us = now_us
        self.api_keys = ApiKeys(client)
        self.catalogue = MetricCatalogue(client, event_partitions=event_partitions)
        self.unit_partitions = unit_partitions
        self.event_partitions = event_partitions
        self._assign = register_script(client, keys.ASSIGN_SCRIPT)
        self._write_version = register_script(client, keys.WRITE_VERSION_SCRIPT)
        self._raise_version = register_script(client, keys.RAISE_VERSION_SCRIPT)
        self._variant_codes = register_script(client, keys.VARIANT_CODES_SCRIPT)
        self._record_events = register_script(client, keys.RECORD_EVENTS_SCRIPT)
        self._release_lock = register_script(client, keys.RELEASE_LOCK_SCRIPT)
        self._cache: dict[str, CachedExperiment] = {}
        self._legacy_seen_days: list[str] | None = None  # found on the first event batch
        # the per-request scripts' connections
        self._scripts = ThreadConnections(
            client, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms
        )

    # -- experiments --------------------------------------------------------------------
    def create_experiment(
        self, config: Mapping[str, Any], *, key_id: str, note: Mapping[str, Any] | None = None
    ) -> StoredExperiment:
        """Store a new experiment as a draft (version 1); `Conflict` if the key exists.

        ``status`` and ``winner`` in ``config`` are ignored: the lifecycle endpoints own them;
        so is ``holdout``: the global holdout's snapshot is written when it covers the key.
        """
        if not isinstance(config, Mapping):
            raise InvalidInput("an experiment must be a JSON object", "$")
        config = resolve_references(config, self.catalogue.lookup)
        version, holdout = self.holdout()
        experiment = Experiment.from_dict(
            {**config, "status": "draft", "winner": None, "holdout": None}
        )
        experiment = experiment.with_changes(holdout=_holdout_ref(holdout, experiment))
        self.redis.sadd(keys.experiments_index(), experiment.key)
        stored = self._write(None, experiment, key_id=key_id, action="create", note=note)
        if stored is None:
            raise Conflict(f"experiment '{experiment.key}' already exists", "key")
        if self.holdout()[0] != version:  # changed meanwhile: its sync may have missed us
            stored = self.apply_holdout(experiment.key, self.holdout()[1], key_id=key_id) or stored
        return stored

    def holdout(self) -> tuple[int, Holdout | None]:
        """The global holdout's version and definition (None: no holdout)."""
        stored = read_definition(self.redis, keys.holdout_meta())
        return stored.version, None if stored.config is None else Holdout.from_dict(stored.config)

    def apply_holdout(
        self, key: str, holdout: Holdout | None, *, key_id: str, force: bool = False,
        dry_run: bool = False,
    ) -> StoredExperiment | None:  # fmt: skip
        """Write ``holdout``'s snapshot into experiment ``key`` as a new, audited version
        (action ``holdout``) when it differs; None when it already matches.

        `Conflict` when the experiment is running with assigned units that would become
        members (they would switch to control), unless ``force``; with ``dry_run`` only that
        check is made.
        """
        current = self.get_experiment(key)
        old = current.experiment
        ref = _holdout_ref(holdout, old)
        if ref == old.holdout:
            return None
        new = old.with_changes(holdout=ref)
        if not force and old.status is Status.RUNNING and self._has_assigned_units(key):
            problems = moved_unit_problems(old, new)
            if problems:
                raise Conflict(f"experiment '{key}': {problems[0].message}; send force=true "
                               "to apply anyway", "holdout")  # fmt: skip
        if dry_run:
            return None
        return self.write_version(current, new, key_id=key_id, action="holdout")

    def get_experiment(self, key: str) -> StoredExperiment:
        """The current version; `NotFound` when there is none."""
        raw = self.redis.hmget(
            keys.experiment_meta(key), ["version", "config", "created_at", "updated_at"]
        )
        if raw[0] is None or raw[1] is None:
            raise NotFound(f"no experiment '{key}'", "experiment")
        return StoredExperiment(
            Experiment.from_dict(load_stored(raw[1])), int(raw[0]), raw[2] or "", raw[3] or ""
        )

    def list_experiments(self, *, status: Status | None = None) -> list[StoredExperiment]:
        """Every experiment (or those of one status), sorted by key."""
        found = []
        for key in sorted(self.redis.smembers(keys.experiments_index())):
            try:
                stored = self.get_experiment(key)
            except NotFound:  # indexed before its first write landed
                continue
            if status is None or stored.experiment.status is status:
                found.append(stored)
        return found

    def update_experiment(
        self, key: str, config: Mapping[str, Any], *, key_id: str, force: bool = False
    ) -> StoredExperiment:
        """Store ``config`` as the next version of ``key``.

        Lifecycle fields (``status``, ``winner``) must be absent or unchanged; ``holdout`` is
        ignored (the global holdout's, for the new layer, is kept).  When units
        are already assigned, a change that would move them (see `moved_unit_problems`) is a
        `Conflict` unless ``force``.
        """
        if not isinstance(config, Mapping):
            raise InvalidInput("an experiment must be a JSON object", "$")
        current = self.get_experiment(key)
        old = current.experiment
        for name, value in (("status", old.status.value), ("winner", old.winner)):
            if name in config and config[name] != value:
                raise Conflict(f"change '{name}' with /start, /stop or /ship", name)
        if old.rollout is not None and old.status is Status.RUNNING:
            check_rollout_update(old, config)
            config = {**config, "traffic": old.traffic}  # the rollout's, not the file's
        if "key" in config and config["key"] != key:
            raise InvalidInput(f"must be '{key}' (the key cannot change)", "key")
        # Unversioned references keep what this experiment already pins (abtest.catalogue).
        pinned = {m.name: m.catalogue_version for m in old.metrics if m.catalogue_version}
        config = resolve_references(config, self.catalogue.lookup, pinned=pinned)
        new = Experiment.from_dict(
            {**config, "key": key, "status": old.status.value, "winner": old.winner,
             "holdout": None}
        )  # fmt: skip
        new = new.with_changes(holdout=_holdout_ref(self.holdout()[1], new))
        if not force and (old.status is Status.RUNNING or self._has_assigned_units(key)):
            problems = moved_unit_problems(old, new)
            if problems:
                raise Conflict(
                    problems[0].message + "; send force=true to apply anyway", problems[0].field
                )
        if new.status is Status.RUNNING:
            with self._lifecycle_lock():
                self._check_layers(new)
                return self.write_version(current, new, key_id=key_id, action="update")
        return self.write_version(current, new, key_id=key_id, action="update")

    def start_experiment(self, key: str, *, key_id: str) -> StoredExperiment:
        """draft or stopped -> running; `Conflict` on a layer overlap with a running one.

        An experiment with a rollout plan starts (or resumes) its guarded rollout: its
        traffic is set to the step it is at (`abtest.rollout_rules.starting_step`).
        """
        with self._lifecycle_lock():
            current = self.get_experiment(key)
            self._require_status(current, {Status.DRAFT, Status.STOPPED}, "start")
            new = current.experiment.with_changes(status=Status.RUNNING)
            state = None
            if new.rollout is not None:
                units = self.exposure_counts(key).variants.get(new.rollout.variant, 0)
                new, state = starting_step(current.experiment.status, new, units=units,
                                           now_us=self.now_us())  # fmt: skip
            self._check_layers(new)
            return self.write_version(current, new, key_id=key_id, action="start",
                                           rollout_state=state)  # fmt: skip

    def stop_experiment(self, key: str, *, key_id: str) -> StoredExperiment:
        """running -> stopped: nobody is assigned any more (sticky assignments are kept)."""
        current = self.get_experiment(key)
        self._require_status(current, {Status.RUNNING}, "stop")
        new = current.experiment.with_changes(status=Status.STOPPED)
        return self.write_version(current, new, key_id=key_id, action="stop")

    def ship_experiment(
        self, key: str, variant: str, *, key_id: str, reason: str | None = None
    ) -> StoredExperiment:
        """running or stopped -> shipped: everyone gets ``variant``.

        ``reason`` (why ship, e.g. against the verdict) is kept in the audit entry; blank
        is the same as none.
        """
        reason = audit_reason(reason)
        current = self.get_experiment(key)
        if variant not in current.experiment.variant_keys:
            raise InvalidInput(f"'{variant}' is not a variant of '{key}'", "variant")
        self._require_status(current, {Status.RUNNING, Status.STOPPED}, "ship")
        new = current.experiment.with_changes(status=Status.SHIPPED, winner=variant)
        note = None if reason is None else {"reason": reason}
        return self.write_version(current, new, key_id=key_id, action="ship", note=note)

    def write_version(
        self,
        current: StoredExperiment,
        new: Experiment,
        *,
        key_id: str,
        action: str,
        note: Mapping[str, Any] | None = None,
        rollout_state: Mapping[str, str | int | float] | None = None,
        fence: str | None = None,
    ) -> StoredExperiment:
        """Store ``new`` as the version after ``current`` with an audit entry (``action``,
        ``key_id``, the diff, ``note``): the write path of every lifecycle change.

        ``rollout_state`` fields are set in the same atomic step; with ``fence`` (a
        monitor's lease value) the write happens only while that lease holds
        (`LeaseLost`).  `Conflict` when the experiment changed since ``current``.
        """
        stored = self._write(current, new, key_id=key_id, action=action, note=note,
                             rollout_state=rollout_state, fence=fence)  # fmt: skip
        if stored is None:
            raise Conflict(f"experiment '{new.key}' was changed concurrently; retry", "version")
        return stored

    def history(self, key: str) -> list[dict[str, Any]]:
        """Audit entries, oldest first: version, time, key_id, action, diff, config."""
        entries = self.redis.lrange(keys.experiment_history(key), 0, -1)
        if not entries:
            raise NotFound(f"no experiment '{key}'", "experiment")
        return [load_stored(entry) for entry in entries]

    # -- assignment (the hot path) ------------------------------------------------------
    def assign(
        self,
        experiment_key: str,
        unit_id: str,
        attributes: Mapping[str, Any] | None = None,
        assigned_at: int | None = None,
    ) -> tuple[Assignment, int]:
        """The unit's assignment and the config version it was computed with; one round trip.

        A stored assignment wins over a recomputed one.  Only a first ``assigned`` result is
        written (sticky variant, exposure, counters); forced and shipped units never are.
        ``assigned_at``: see `AssignRequest`.
        """
        for _ in range(4):
            cached = self._cache.get(experiment_key) or self._load(experiment_key)
            result, partition, args = script_call(cached, unit_id, attributes, self.now_us(),
                                                  assigned_at)  # fmt: skip
            reply = self._scripts.evalsha(
                self._assign, cached.partitions[partition], args, write=True
            )
            answer = read_reply(cached, result, reply)
            if answer is not None:
                return answer
            self._stale(cached, partition, reply[1])
        raise StoreUnavailable("the experiment kept changing during assignment; retry")

    def assign_many(
        self, requests: Sequence[AssignRequest], *, field: str = "requests"
    ) -> list[tuple[Assignment, int]]:
        """`assign` for every request, in order, in one round trip (pipelined script calls).

        At most `MAX_BATCH_ASSIGNMENTS` requests (`PayloadTooLarge` beyond).
        Every experiment is looked up before anything is written: an unknown one is
        `NotFound` (field ``requests[i].experiment``) and no unit is assigned.  A unit listed
        twice gets one exposure.  A request whose cached config turns out stale is assigned
        again on its own with the current config; if its experiment has vanished from Redis
        meanwhile, that is `NotFound` after the others were assigned (a retry returns the
        same answers without second exposures).
        """
        if len(requests) > MAX_BATCH_ASSIGNMENTS:
            raise PayloadTooLarge(
                f"{len(requests)} units in one batch; the limit is {MAX_BATCH_ASSIGNMENTS}", field
            )
        planned = []
        for index, request in enumerate(requests):
            try:
                cached = self._cache.get(request.experiment) or self._load(request.experiment)
            except NotFound as exc:
                raise NotFound(exc.message, f"{field}[{index}].experiment") from None
            planned.append((cached, *script_call(cached, request.unit_id, request.attributes,
                                                 self.now_us(), request.assigned_at)))  # fmt: skip
        replies = self._scripts.evalsha_many(
            self._assign,
            [(cached.partitions[partition], args) for cached, _, partition, args in planned],
            write=True,
        )
        answers = []
        for index, ((cached, result, partition, _), reply) in enumerate(
            zip(planned, replies, strict=True)
        ):
            answer = read_reply(cached, result, reply)
            if answer is None:
                self._stale(cached, partition, reply[1])
                try:
                    answer = self.assign(*requests[index])
                except NotFound as exc:  # deleted from Redis behind the service's back
                    raise NotFound(exc.message, f"{field}[{index}].experiment") from None
            answers.append(answer)
        return answers

    def live_experiment_keys(self) -> list[str]:
        """Keys of running, shipped and rolled-back experiments (those `assignments` reports:
        a rolled-back one serves control to everyone)."""
        live = {Status.RUNNING, Status.SHIPPED, Status.ROLLED_BACK}
        return [s.experiment.key for s in self.list_experiments() if s.experiment.status in live]

    def exposure_counts(self, key: str) -> ExposureCounts:
        """First exposures per variant and per UTC day, from the counters (not the stream,
        which export trims)."""
        experiment = self.get_experiment(key).experiment
        variants = dict.fromkeys(experiment.variant_keys, 0)
        daily: dict[str, dict[str, int]] = {}
        for name in layout.count_keys(key, self._partitions_of(key)):
            for field, count in self.redis.hgetall(name).items():
                kind, _, rest = field.partition(":")
                if kind == "v":
                    variants[rest] = variants.get(rest, 0) + int(count)
                elif kind == "d":
                    day, _, variant = rest.partition(":")
                    counts = daily.setdefault(day, dict.fromkeys(experiment.variant_keys, 0))
                    counts[variant] = counts.get(variant, 0) + int(count)
        return ExposureCounts(key, variants, daily)

    # -- events -------------------------------------------------------------------------
    def record_events(self, events: Sequence[Event]) -> tuple[int, int]:
        """Append events not seen within the dedupe window; ``(accepted, duplicates)``.

        One script call per events partition (`keys.event_partition`), all pipelined: each
        partition's share is accepted atomically or not at all.  If a call fails (its shard
        is down), the error is raised after the others were applied; the client's retry of
        the whole batch is safe, since the events already in count as duplicates.
        """
        if not events:
            return 0, 0
        if self._legacy_seen_days is None:
            self.redis.sadd(keys.event_partition_counts(), self.event_partitions)
            self._legacy_seen_days = (
                [d for d in layout.days() if self.redis.exists(keys.legacy_seen_events(d))]
                if self.event_partitions == 1 else []
            )  # fmt: skip
        calls = layout.event_calls(
            events, self.event_partitions, legacy_days=self._legacy_seen_days,
            now=self.now_us() / 1e6,
        )  # fmt: skip
        replies = self._scripts.evalsha_many(self._record_events, calls, write=True)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return sum(int(r[0]) for r in replies), sum(int(r[1]) for r in replies)

    # -- API keys -----------------------------------------------------------------------
    def create_api_key(self, role: Role, *, name: str = "") -> tuple[str, ApiKey]:
        """A new key (shown once) and its public record."""
        created = self.api_keys.create(role, name=name)
        assert created is not None  # only only_if_empty creation can decline
        return created

    def create_first_admin_key(self) -> str | None:
        """An admin key if the store has no key at all, else None (atomic)."""
        created = self.api_keys.create(Role.ADMIN, name="first admin", only_if_empty=True)
        return None if created is None else created[0]

    def list_api_keys(self) -> list[ApiKey]:
        """Every key's public record."""
        return self.api_keys.list()

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key by id."""
        return self.api_keys.revoke(key_id)

    def verify_api_key(self, token: str) -> ApiKey:
        """The record of a valid key; `Unauthorized` otherwise."""
        return self.api_keys.verify(token)

    # -- internals ----------------------------------------------------------------------
    def _load(self, key: str) -> CachedExperiment:
        stored = self.get_experiment(key)
        experiment = stored.experiment
        # Read after the config: codes only ever grow, so these cover every stored one.
        codes = self.redis.hgetall(keys.variant_codes(key))
        if any(variant not in codes for variant in experiment.variant_keys):
            self._variant_codes(keys=[keys.variant_codes(key)], args=experiment.variant_keys)
            codes = self.redis.hgetall(keys.variant_codes(key))
        partitions = self._partitions_of(key)
        cached = CachedExperiment(
            stored.version,
            experiment,
            {v.key: Assignment(key, v.key, Reason.ASSIGNED, v.payload)
             for v in experiment.variants},
            codes,
            {code: variant for variant, code in codes.items()},
            tuple(layout.unit_script_keys(key, p, partitions) for p in range(partitions)),
        )  # fmt: skip
        self._cache = {**self._cache, key: cached}  # replaced, never mutated: thread-safe reads
        return cached

    def _forget(self, cached: CachedExperiment) -> None:
        key = cached.experiment.key
        if self._cache.get(key) is cached:  # not a newer entry another call already loaded
            self._cache = {k: v for k, v in self._cache.items() if k != key}

    def _stale(self, cached: CachedExperiment, partition: int, seen: str) -> None:
        """After a version mismatch: catch a lagging partition up, or drop a stale cache."""
        key = cached.experiment.key
        if (
            len(cached.partitions) > 1
            and int(seen or 0) < cached.version
            and int(self.redis.hget(keys.experiment_meta(key), "version") or 0) >= cached.version
        ):
            # Meta holds our version (or a newer one); its writer has not yet (or never, if it
            # died) copied it here.  Copies only move up, so this is safe to repeat.
            self._scripts.evalsha(
                self._raise_version, cached.partitions[partition][:1], [cached.version],
                write=True,
            )  # fmt: skip
        else:
            self._forget(cached)

    def _partitions_of(self, key: str) -> int:
        return layout.partition_count(self.redis.hget(keys.experiment_meta(key), "partitions"))

    def _raise_versions(self, key: str, version: int, partitions: int) -> None:
        """Copy a committed version into every partition of ``key`` (before a write returns)."""
        if partitions == 1:
            return  # the assign script reads meta's own version
        calls = [([keys.unit_state(key, p, partitions)], [version]) for p in range(partitions)]
        for reply in self._scripts.evalsha_many(self._raise_version, calls, write=True):
            if isinstance(reply, Exception):
                raise reply

    def _has_assigned_units(self, key: str) -> bool:
        names = [*layout.count_keys(key, self._partitions_of(key)), keys.legacy_assignments(key)]
        return any(self.redis.exists(name) for name in names)

    def _write(
        self,
        current: StoredExperiment | None,
        new: Experiment,
        *,
        key_id: str,
        action: str,
        note: Mapping[str, Any] | None = None,
        rollout_state: Mapping[str, str | int | float] | None = None,
        fence: str | None = None,
    ) -> StoredExperiment | None:
        """Compare-and-set ``new`` as the next version with its audit entry (see
        `write_version`); None on a version conflict."""
        now = iso_time(self.now_us())
        version = 1 if current is None else current.version + 1
        config = new.to_dict()
        entry = {
            "version": version,
            "time": now,
            "key_id": key_id,
            "action": action,
            "diff": diff({} if current is None else current.experiment.to_dict(), config),
            "config": config,
            **(note or {}),
        }
        partitions = self.unit_partitions if current is None else self._partitions_of(new.key)
        names = [keys.experiment_meta(new.key), keys.experiment_history(new.key)]
        args: list[Any] = ["" if current is None else current.version, version,
                           json.dumps(config), now, json.dumps(entry), partitions]  # fmt: skip
        if rollout_state is not None or fence is not None:
            names.append(keys.rollout_state(new.key))
            args.append(fence or "")
            args += [item for pair in (rollout_state or {}).items() for item in pair]
            if fence is not None:
                names.append(keys.monitor_lease(new.key))
        written = int(self._write_version(keys=names, args=args))
        if written == -1:
            raise LeaseLost(f"the monitor lost its lease on '{new.key}'; nothing was written")
        if not written:
            return None
        self._raise_versions(new.key, version, partitions)
        created = now if current is None else current.created_at
        return StoredExperiment(new, version, created, now)

    @staticmethod
    def _require_status(current: StoredExperiment, allowed: set[Status], action: str) -> None:
        status = current.experiment.status
        if status not in allowed:
            raise Conflict(f"cannot {action} a {status.value} experiment", "status")

    def _check_layers(self, new: Experiment) -> None:
        if new.layer is None:
            return
        running = [s.experiment for s in self.list_experiments(status=Status.RUNNING)]
        problems = layer_conflicts([new, *(e for e in running if e.key != new.key)])
        if problems:
            raise Conflict(problems[0].message, problems[0].field)

    @contextmanager
    def _lifecycle_lock(self) -> Iterator[None]:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + _LOCK_MS / 1000
        while not self.redis.set(keys.lifecycle_lock(), token, nx=True, px=_LOCK_MS):
            if time.monotonic() > deadline:
                raise Conflict("another experiment change is in progress; retry", "status")
            time.sleep(0.01)
        try:
            yield
        finally:
            self._release_lock(keys=[keys.lifecycle_lock()], args=[token])
