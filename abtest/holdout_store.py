"""The global holdout in the store: its definition, audit trail, and the experiments it covers.

``PUT /v1/holdout`` (`HoldoutStore.put`) checks the new definition against every covered
experiment first: a running experiment with assigned units that would gain members (a new
holdout, another name, a larger share) is a `Conflict` unless ``force``, and then nothing
is written.  Otherwise it writes the holdout's new version with its audit entry, then
brings every experiment to it (`HoldoutStore.sync`): each experiment whose snapshot
changes gets a new version with action ``holdout`` in its own audit trail.  A crash
between the two is repaired by the next `sync` (``abtest holdout sync``, or any
``put``/``release``); an experiment created meanwhile syncs itself
(`abtest.store.Store.create_experiment`).  ``release`` ends the holdout: every experiment
drops its snapshot, and members get their computed variants from then on (not as
exposures of the experiment: they were the holdout's).  See `abtest.holdout` for what
members get and what is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from abtest import keys
from abtest.definitions import StoredDefinition, read_definition, read_history, write_definition
from abtest.errors import Conflict, NotFound
from abtest.holdout import Holdout
from abtest.store import Store


@dataclass(frozen=True)
class StoredHoldout:
    """The global holdout as stored: its definition (None: none or released), version,
    dates, when its current name began (the start of its analysis period) and the
    experiments it covers now."""

    holdout: Holdout | None
    version: int
    created_at: str
    updated_at: str
    started_at: str | None
    covered: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (what ``GET /v1/holdout`` returns)."""
        return {
            "holdout": None if self.holdout is None else self.holdout.to_dict(),
            "version": self.version,
            "created_at": self.created_at or None,
            "updated_at": self.updated_at or None,
            "started_at": self.started_at,
            "covered_experiments": list(self.covered),
        }


class HoldoutStore:
    """Reads and writes of the global holdout, over a `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self) -> StoredHoldout:
        """The current holdout (``holdout`` None when there is none)."""
        return self._stored(read_definition(self.store.redis, keys.holdout_meta()))

    def put(self, holdout: Holdout, *, key_id: str, force: bool = False) -> StoredHoldout:
        """Store ``holdout`` (checked as `abtest.holdout_requests.HoldoutBody`) as its next
        version, then sync every experiment (see the module docstring for the `Conflict` and
        ``force``)."""
        current = read_definition(self.store.redis, keys.holdout_meta())
        self._check(holdout, force=force)
        written = write_definition(
            self.store.redis, keys.holdout_meta(), keys.holdout_history(), current,
            holdout.to_dict(), key_id=key_id, action="update" if current.config else "create",
        )  # fmt: skip
        self.sync(key_id=key_id, force=force)
        return self._stored(written)

    def release(self, *, key_id: str) -> StoredHoldout:
        """End the holdout: it covers nothing from now on (its history stays)."""
        current = read_definition(self.store.redis, keys.holdout_meta())
        if current.config is None:
            raise NotFound("there is no holdout to release", "holdout")
        written = write_definition(
            self.store.redis, keys.holdout_meta(), keys.holdout_history(), current, None,
            key_id=key_id, action="release",
        )  # fmt: skip
        self.sync(key_id=key_id)
        return self._stored(written)

    def history(self) -> list[dict[str, Any]]:
        """The holdout's audit entries, oldest first."""
        return read_history(self.store.redis, keys.holdout_history())

    def sync(self, *, key_id: str, force: bool = True) -> list[str]:
        """Write the holdout's snapshot into every experiment whose snapshot differs; the
        keys of the experiments that got a new version."""
        _, holdout = self.store.holdout()
        changed = []
        for stored in self.store.list_experiments():
            key = stored.experiment.key
            try:
                if self.store.apply_holdout(key, holdout, key_id=key_id, force=force):
                    changed.append(key)
            except NotFound:  # deleted behind the service's back
                continue
        return changed

    def _check(self, holdout: Holdout, *, force: bool) -> None:
        if force:
            return
        for stored in self.store.list_experiments():
            try:
                self.store.apply_holdout(stored.experiment.key, holdout, key_id="", dry_run=True)
            except Conflict as exc:
                raise Conflict(exc.message, "force") from None

    def _stored(self, written: StoredDefinition) -> StoredHoldout:
        holdout = None if written.config is None else Holdout.from_dict(written.config)
        covered = tuple(
            s.experiment.key
            for s in self.store.list_experiments()
            if holdout is not None and s.experiment.holdout == holdout.ref
        )
        started = None if holdout is None else _started_at(self.history(), holdout.name)
        return StoredHoldout(holdout, written.version, written.created_at, written.updated_at,
                             started, covered)  # fmt: skip


def _started_at(history: list[dict[str, Any]], name: str) -> str | None:
    """When the holdout got its current name: the time of the first of the latest run of
    versions with that name (a release or another name in between starts a new period)."""
    started = None
    for entry in reversed(history):
        config = entry.get("config")
        if not isinstance(config, dict) or config.get("name") != name:
            break
        started = entry.get("time")
    return None if started is None else str(started)
