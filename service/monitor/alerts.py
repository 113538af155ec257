"""The alert book: health signals become alerts that are raised, refreshed and resolved,
deduplicated by ``(experiment, kind, subject)`` and kept with their history in Redis.

Each check of an experiment hands the book its signals and the kinds it judged
(`AlertBook.record`).  A signal whose condition already has an active alert refreshes it
(last seen, number of checks, latest numbers; a rise to critical is an escalation); a new
condition raises a new alert; an active alert of a judged kind that no signal repeats is
resolved and moves to the experiment's history (the newest `HISTORY_LIMIT`).  Alerts of
kinds not judged this time (a check that could not run, or a rollout decision's alerts,
which only their own hook resolves) are left alone.  Every change is returned as an
`AlertChange`, which the webhooks turn into notifications.

Storage (`abtest.keys`): the active alerts of an experiment are one hash under its hash
tag, written all-or-nothing by `keys.APPLY_ALERTS_SCRIPT` with a revision number compared
and set, so two monitors (a lease handing over) cannot lose or double an update; the
history is a capped list beside it.  `reconcile` is the pure rule; the book only reads,
calls it, and writes.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import redis

from abtest import keys
from abtest.alerts import ACTIVE, RESOLVED, STATUSES, Alert, Severity, dedup_key
from abtest.errors import InvalidInput
from abtest.redis_client import register_script

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient

    # The book needs only the signal's fields, not the statistics (scipy).
    from analysis.statistics.health import HealthSignal

HISTORY_LIMIT: Final = 500  # resolved alerts kept per experiment
_CAS_ATTEMPTS: Final = 20


def iso(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``, as the store writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_alert_id() -> str:
    """``a`` and 11 hex digits (like API key ids)."""
    return "a" + secrets.token_hex(6)[:11]


@dataclass(frozen=True)
class AlertChange:
    """What happened to an alert: ``alert.raised``, ``alert.escalated`` or
    ``alert.resolved`` (`abtest.alerts.EVENTS`), with the alert after the change."""

    event: str
    alert: Alert


def _clean(value: Any) -> Any:
    """JSON-safe numbers: non-finite floats become None, containers are copied."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def reconcile(
    experiment: str,
    active: Mapping[str, Alert],
    signals: Sequence[HealthSignal],
    *,
    judged: Collection[str],
    now: str,
    new_id: Callable[[], str] = new_alert_id,
) -> tuple[dict[str, Alert], list[AlertChange]]:
    """The active alerts after one check, and the changes (pure).

    Parameters
    ----------
    experiment : str
        The experiment checked.
    active : Mapping[str, Alert]
        Its active alerts by `Alert.dedup_key`.
    signals : sequence of HealthSignal
        What the check found (two signals of one condition: the more severe counts).
    judged : collection of str
        The kinds the check judged: their active alerts without a signal are resolved.
    now : str
        The check's time (ISO).
    new_id : callable
        Makes the id of a new alert.

    Returns
    -------
    (active, changes)
    """
    found: dict[str, HealthSignal] = {}
    for signal in signals:
        key = dedup_key(signal.kind, signal.subject)
        if key not in found or signal.severity.rank > found[key].severity.rank:
            found[key] = signal
    after = dict(active)
    changes = []
    for key, signal in found.items():
        numbers = _clean(signal.numbers)
        old = after.get(key)
        if old is None:
            alert = Alert(
                id=new_id(), experiment=experiment, kind=signal.kind, subject=signal.subject,
                severity=signal.severity, message=signal.message, numbers=numbers,
                first_seen=now, last_seen=now, peak_severity=signal.severity,
                first_numbers=numbers,
            )  # fmt: skip
            changes.append(AlertChange("alert.raised", alert))
        else:
            peak = max(old.peak_severity, signal.severity, key=lambda s: s.rank)
            alert = replace(old, severity=signal.severity, message=signal.message,
                            numbers=numbers, last_seen=now, checks=old.checks + 1,
                            peak_severity=peak)  # fmt: skip
            if signal.severity.rank > old.severity.rank:
                changes.append(AlertChange("alert.escalated", alert))
        after[key] = alert
    for key, old in active.items():
        if key not in found and old.kind in judged:
            resolved = replace(old, status=RESOLVED, resolved_at=now)
            del after[key]
            changes.append(AlertChange("alert.resolved", resolved))
    return after, changes


def _by_urgency(alert: Alert) -> tuple[int, str, str]:
    # Critical first, then the oldest condition first.
    return (-alert.severity.rank, alert.first_seen, alert.id)


def _parse(raw: Iterable[str]) -> list[Alert]:
    return [Alert.from_dict(json.loads(text)) for text in raw]


class AlertBook:
    """Alerts of every experiment in one Redis (see the module docstring).

    Parameters
    ----------
    client : redis.Redis
        With ``decode_responses=True``.
    history_limit : int
        Resolved alerts kept per experiment (older ones are dropped).
    """

    def __init__(self, client: RedisClient, *, history_limit: int = HISTORY_LIMIT) -> None:
        if history_limit < 1:
            raise InvalidInput("must be at least 1", "history_limit")
        self.redis = client
        self.history_limit = history_limit
        self._apply = register_script(client, keys.APPLY_ALERTS_SCRIPT)

    # -- writing -----------------------------------------------------------------------------
    def record(
        self,
        experiment: str,
        signals: Sequence[HealthSignal],
        *,
        judged: Iterable[str],
        now: datetime,
    ) -> list[AlertChange]:
        """Apply one check's signals (see `reconcile`); returns the changes made."""
        judged = frozenset(judged)
        stamp = iso(now)
        for _ in range(_CAS_ATTEMPTS):
            revision, active = self._read(experiment)
            after, changes = reconcile(experiment, active, signals, judged=judged, now=stamp)
            args: list[str] = [revision, str(self.history_limit)]
            for key, alert in after.items():
                if active.get(key) != alert:
                    args += ["set", key, json.dumps(alert.to_dict(), allow_nan=False)]
            for change in changes:
                if change.event == "alert.resolved":
                    text = json.dumps(change.alert.to_dict(), allow_nan=False)
                    args += ["del", change.alert.dedup_key, "", "push", "", text]
            if len(args) == 2:
                return changes
            keys_ = [keys.alerts(experiment), keys.alerts_revision(experiment),
                     keys.alerts_history(experiment)]  # fmt: skip
            if self._apply(keys=keys_, args=args):
                return changes
        raise redis.RedisError(f"alerts of '{experiment}' kept changing during the update")

    def raise_alert(
        self, experiment: str, signal: HealthSignal, *, now: datetime
    ) -> list[AlertChange]:
        """Raise (or refresh) one alert outside the health checks (a rollout decision)."""
        return self.record(experiment, [signal], judged=(), now=now)

    def resolve(self, experiment: str, kinds: Iterable[str], *, now: datetime) -> list[AlertChange]:
        """Resolve every active alert of ``kinds`` (the condition is over)."""
        return self.record(experiment, [], judged=kinds, now=now)

    # -- reading -----------------------------------------------------------------------------
    def _read(self, experiment: str) -> tuple[str, dict[str, Alert]]:
        # The revision is read first: a write landing between the two reads makes the
        # compare-and-set fail (and the update retry) rather than pass on stale alerts.
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.alerts_revision(experiment))
        pipe.hgetall(keys.alerts(experiment))
        revision, raw = pipe.execute()
        active = {key: Alert.from_dict(json.loads(text)) for key, text in raw.items()}
        return str(revision or "0"), active

    def active(self, experiment: str) -> list[Alert]:
        """The experiment's active alerts, critical first, then oldest first."""
        return sorted(self._read(experiment)[1].values(), key=_by_urgency)

    def history(self, experiment: str, *, limit: int | None = None) -> list[Alert]:
        """The experiment's resolved alerts, newest first."""
        end = -1 if limit is None else max(limit, 1) - 1
        return _parse(self.redis.lrange(keys.alerts_history(experiment), 0, end))

    def alerts(
        self,
        experiments: Iterable[str],
        *,
        status: str = "active",
        since: datetime | None = None,
    ) -> list[Alert]:
        """Alerts of several experiments: ``status`` ``active``, ``resolved`` or ``all``;
        with ``since``, only alerts active at some time since then (every active one, and
        resolved ones resolved since).  Active first (critical, oldest), then resolved
        (newest first)."""
        if status not in STATUSES:
            raise InvalidInput("must be active, resolved or all", "status")
        names = sorted(set(experiments))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            if status != "resolved":
                pipe.hvals(keys.alerts(name))
            if status != "active":
                pipe.lrange(keys.alerts_history(name), 0, -1)
        replies = iter(pipe.execute())
        active: list[Alert] = []
        resolved: list[Alert] = []
        for _ in names:
            if status != "resolved":
                active += _parse(next(replies))
            if status != "active":
                resolved += _parse(next(replies))
        if since is not None:
            cutoff = iso(since)
            resolved = [a for a in resolved if (a.resolved_at or "") >= cutoff]
        resolved.sort(key=lambda a: (a.resolved_at or "", a.id), reverse=True)
        return sorted(active, key=_by_urgency) + resolved

    def counts(self, experiments: Iterable[str]) -> dict[tuple[str, str, str], int]:
        """Active alerts by (experiment, kind, severity), for the Prometheus gauge."""
        out: dict[tuple[str, str, str], int] = {}
        for alert in self.alerts(experiments, status="active"):
            key = (alert.experiment, alert.kind, alert.severity.value)
            out[key] = out.get(key, 0) + 1
        return out


__all__ = [
    "ACTIVE",
    "HISTORY_LIMIT",
    "STATUSES",
    "AlertBook",
    "AlertChange",
    "Severity",
    "iso",
    "new_alert_id",
    "reconcile",
]
