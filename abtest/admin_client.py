"""Python admin client of the abtest service: experiments, their lifecycle, exposures, keys,
the metric catalogue, guarded rollouts, alerts and webhooks, and the controlled clock of demo
and test mode.

    with AdminClient("http://localhost:8000", admin_key) as admin:
        admin.create_experiment(Experiment.from_json_file("examples/ranker-v2.json"))
        admin.start_experiment("ranker-v2")
        admin.exposures("ranker-v2")["srm"]["p_value"]
        admin.ship_experiment("ranker-v2", "v2")

The release manager's side of the HTTP API (apps use `abtest.client.Client`).  Each method
is one request to the same endpoints curl uses, is named after the `abtest.store.Store`
method it reaches, and returns `StoredExperiment` and `ApiKey` records (the audit trail and
exposures as their JSON).  Errors are the typed `abtest` errors (a 409 is `Conflict`); an
unreachable service raises `ServiceUnavailable`.  Writes are never sent twice, since
creating, starting or shipping twice is not the same as once: when the connection breaks
after one went out, `ServiceUnavailable` says its outcome is unknown.  Reads, and revoking
a key, are sent again once in that case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlencode

from abtest.alerts import Alert, Delivery, Severity, Webhook
from abtest.auth import ApiKey, Role
from abtest.catalogue import MetricDefinition
from abtest.catalogue_store import CatalogueEntry
from abtest.client_http import HttpTransport
from abtest.errors import InvalidInput
from abtest.experiment import Experiment, Status
from abtest.store import StoredExperiment

__all__ = ["AdminClient"]

# Sending these twice leaves the same state as once (a second revocation changes nothing).
_IDEMPOTENT: Final = frozenset({"GET", "DELETE"})


class AdminClient:
    """Manage experiments and keys over HTTP with an ``admin`` key."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self._http = HttpTransport(url, api_key, timeout)

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(self, config: Experiment | Mapping[str, Any]) -> StoredExperiment:
        """Store a new experiment as a draft (version 1)."""
        body = config.to_dict() if isinstance(config, Experiment) else dict(config)
        return self._experiment("POST", "/v1/experiments", body)

    def get_experiment(self, key: str) -> StoredExperiment:
        """The current version of one experiment."""
        return self._experiment("GET", _path(key))

    def list_experiments(self, *, status: Status | str | None = None) -> list[StoredExperiment]:
        """Every experiment, or those with one status, sorted by key."""
        query = "" if status is None else "?" + urlencode({"status": _value(Status, status)})
        answer = self._call("GET", "/v1/experiments" + query)
        return [StoredExperiment.from_dict(item) for item in answer["experiments"]]

    def update_experiment(
        self, key: str, config: Experiment | Mapping[str, Any], *, force: bool = False
    ) -> StoredExperiment:
        """Store the next version; `Conflict` if it would move assigned units, unless ``force``."""
        body = config.to_dict() if isinstance(config, Experiment) else dict(config)
        return self._experiment("PUT", _path(key) + ("?force=true" if force else ""), body)

    def start_experiment(self, key: str) -> StoredExperiment:
        """draft or stopped -> running."""
        return self._experiment("POST", _path(key, "start"))

    def stop_experiment(self, key: str) -> StoredExperiment:
        """running -> stopped (sticky assignments are kept)."""
        return self._experiment("POST", _path(key, "stop"))

    def ship_experiment(
        self, key: str, variant: str, *, reason: str | None = None
    ) -> StoredExperiment:
        """running or stopped -> shipped: every unit gets ``variant``; ``reason`` goes into
        the audit entry (say why when shipping against the verdict)."""
        body = {"variant": variant} if reason is None else {"variant": variant, "reason": reason}
        return self._experiment("POST", _path(key, "ship"), body)

    def history(self, key: str) -> list[dict[str, Any]]:
        """Audit entries, oldest first: version, time, key_id, action, diff, config."""
        history: list[dict[str, Any]] = self._call("GET", _path(key, "history"))["history"]
        return history

    def exposures(self, key: str) -> dict[str, Any]:
        """First exposures per variant and day, with the live sample-ratio-mismatch test."""
        answer: dict[str, Any] = self._call("GET", _path(key, "exposures"))
        return answer

    # -- guarded rollouts ---------------------------------------------------------------------
    def rollout(self, key: str, *, limit: int | None = None) -> dict[str, Any]:
        """The guarded rollout: plan, step, state, actions and the newest checks."""
        query = "" if limit is None else "?" + urlencode({"limit": limit})
        answer: dict[str, Any] = self._call("GET", _path(key, "rollout") + query)
        return answer

    def pause_rollout(self, key: str, *, reason: str | None = None) -> dict[str, Any]:
        """Hold the rollout at its step (audited); the rollout afterwards."""
        return self._rollout_action(key, "pause", reason)

    def resume_rollout(self, key: str, *, reason: str | None = None) -> dict[str, Any]:
        """Let the monitor advance a paused rollout again (audited)."""
        return self._rollout_action(key, "resume", reason)

    def rollback(self, key: str, *, reason: str | None = None) -> dict[str, Any]:
        """Roll the rollout back: everyone is served control (audited)."""
        return self._rollout_action(key, "rollback", reason)

    def _rollout_action(self, key: str, action: str, reason: str | None) -> dict[str, Any]:
        body = {} if reason is None else {"reason": reason}
        answer: dict[str, Any] = self._call("POST", _path(key, f"rollout/{action}"), body)
        return answer

    # -- the controlled clock (demo and test mode) --------------------------------------------
    def clock(self) -> datetime:
        """The service's time (its controlled clock's under ``ABTEST_CLOCK=controlled``)."""
        return datetime.fromisoformat(self._call("GET", "/v1/clock")["now"])

    def set_clock(self, now: datetime) -> datetime:
        """Move the controlled clock to ``now`` (a zone-aware time; never backwards);
        `Conflict` when the service runs on the system clock."""
        if now.tzinfo is None:
            raise InvalidInput("needs a time zone", "now")
        return datetime.fromisoformat(
            self._call("POST", "/v1/clock", {"now": now.isoformat()})["now"]
        )

    def challenge(
        self,
        key: str,
        model: str,
        version: str | int,
        *,
        payload: Mapping[str, Any] | None = None,
        variant: str | None = None,
        experiment: str | None = None,
    ) -> dict[str, Any]:
        """Register model ``version`` as a challenger of ``key``'s champion (see
        `abtest.challengers`); ``created`` is False when it was registered before.  Safe to
        repeat: a second registration of the same version changes nothing."""
        body: dict[str, Any] = {"model": {"name": model, "version": str(version)}}
        for name, value in (("payload", payload), ("variant", variant),
                            ("experiment", experiment)):  # fmt: skip
            if value is not None:
                body[name] = dict(value) if isinstance(value, Mapping) else value
        path = _path(key, "challengers")
        answer: dict[str, Any] = self._http.call("POST", path, body, idempotent=True)
        return answer

    def lineage(self, key: str) -> list[StoredExperiment]:
        """``key`` and its challengers' experiments, oldest first (the last is the head)."""
        answer = self._call("GET", _path(key, "lineage"))
        return [StoredExperiment.from_dict(item) for item in answer["lineage"]]

    # -- the global holdout ------------------------------------------------------------------
    def get_holdout(self) -> dict[str, Any]:
        """The holdout (``holdout`` None when none), its period start and covered experiments."""
        answer: dict[str, Any] = self._call("GET", "/v1/holdout")
        return answer

    def set_holdout(self, config: Mapping[str, Any], *, force: bool = False) -> dict[str, Any]:
        """Set the global holdout ``{name, share, covers?, description?}`` (audited); `Conflict`
        when running experiments with assigned units would gain members, unless ``force``."""
        answer: dict[str, Any] = self._call(
            "PUT", "/v1/holdout" + ("?force=true" if force else ""), dict(config)
        )
        return answer

    def release_holdout(self) -> dict[str, Any]:
        """End the holdout: no experiment carries it from now on."""
        answer: dict[str, Any] = self._call("DELETE", "/v1/holdout")
        return answer

    def holdout_history(self) -> list[dict[str, Any]]:
        """The holdout's audit entries, oldest first."""
        history: list[dict[str, Any]] = self._call("GET", "/v1/holdout/history")["history"]
        return history

    def holdout_results(
        self, metrics: Sequence[str] = (), *, start: str | None = None, end: str | None = None
    ) -> dict[str, Any]:
        """The rest against the holdout (`analysis.holdout.HoldoutResult.to_dict`)."""
        query = [("metric", m) for m in metrics]
        query += [(name, value) for name, value in (("start", start), ("end", end)) if value]
        answer: dict[str, Any] = self._call(
            "GET", "/v1/holdout/results" + ("?" + urlencode(query) if query else "")
        )
        return answer

    # -- metric catalogue --------------------------------------------------------------------
    def list_metrics(self) -> list[CatalogueEntry]:
        """Every catalogue metric's current entry, sorted by name."""
        return [CatalogueEntry.from_dict(m) for m in self._call("GET", "/v1/metrics")["metrics"]]

    def unknown_metrics(self) -> dict[str, int]:
        """Events received per metric name that neither the catalogue nor any experiment knew."""
        unknown: dict[str, int] = self._call("GET", "/v1/metrics")["unknown"]
        return unknown

    def get_metric(self, name: str) -> tuple[CatalogueEntry, list[dict[str, Any]]]:
        """One metric's current entry and every version with its audit entry."""
        answer = self._call("GET", "/v1/metrics/" + quote(name, safe="/:"))
        return CatalogueEntry.from_dict(answer), answer["versions"]

    def put_metric(
        self,
        definition: MetricDefinition | Mapping[str, Any],
        *,
        reason: str | None = None,
        base_version: int | None = None,
    ) -> CatalogueEntry:
        """Store a definition as the metric's next version (the same one again changes
        nothing); ``base_version``: the version it was edited from (`Conflict` if stale)."""
        body = (
            definition.to_dict() if isinstance(definition, MetricDefinition) else dict(definition)
        )
        if reason is not None:
            body["reason"] = reason
        if base_version is not None:
            body["base_version"] = base_version
        return CatalogueEntry.from_dict(self._call("PUT", "/v1/metrics", body))

    # -- API keys ----------------------------------------------------------------------------
    def create_api_key(self, role: Role | str, name: str = "") -> tuple[str, ApiKey]:
        """A new key (returned once, never stored in clear) and its public record."""
        answer = self._call("POST", "/v1/keys", {"role": _value(Role, role), "name": name})
        return answer["key"], ApiKey.from_dict(answer)

    def list_api_keys(self) -> list[ApiKey]:
        """Every key's public record."""
        return [ApiKey.from_dict(item) for item in self._call("GET", "/v1/keys")["keys"]]

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key by id; its record with ``revoked_at`` set."""
        return ApiKey.from_dict(self._call("DELETE", "/v1/keys/" + quote(key_id, safe="")))

    # -- alerts and webhooks -------------------------------------------------------------------
    def alerts(
        self,
        *,
        experiment: str | None = None,
        status: str = "active",
        since: datetime | None = None,
    ) -> list[Alert]:
        """Alerts of every experiment (or one): ``status`` active, resolved or all; with
        ``since``, those active at some time since then.  Active first, critical first."""
        query = _query(experiment=experiment, status=status, since=since)
        return [Alert.from_dict(a) for a in self._call("GET", "/v1/alerts" + query)["alerts"]]

    def experiment_alerts(
        self, key: str, *, status: str = "active", since: datetime | None = None
    ) -> list[Alert]:
        """One experiment's alerts (`NotFound` for an unknown experiment)."""
        path = _path(key, "alerts") + _query(status=status, since=since)
        return [Alert.from_dict(a) for a in self._call("GET", path)["alerts"]]

    def create_webhook(
        self,
        url: str,
        *,
        secret: str | None = None,
        min_severity: Severity | str = Severity.WARNING,
        kinds: Iterable[str] = (),
        experiments: Iterable[str] = (),
        description: str = "",
    ) -> tuple[Webhook, str | None]:
        """Register a webhook; returns it and the secret the service generated when none
        was given (shown this once), else None."""
        body: dict[str, Any] = {"url": url, "min_severity": _value(Severity, min_severity),
                                "kinds": list(kinds), "experiments": list(experiments),
                                "description": description}  # fmt: skip
        if secret is not None:
            body["secret"] = secret
        answer = self._call("POST", "/v1/webhooks", body)
        return Webhook.from_dict(answer), answer.get("secret")

    def list_webhooks(self) -> list[Webhook]:
        """Every webhook (never their secrets)."""
        return [Webhook.from_dict(w) for w in self._call("GET", "/v1/webhooks")["webhooks"]]

    def get_webhook(self, webhook_id: str) -> Webhook:
        """One webhook."""
        return Webhook.from_dict(self._call("GET", _webhook_path(webhook_id)))

    def delete_webhook(self, webhook_id: str) -> Webhook:
        """Remove a webhook (its pending deliveries are dropped)."""
        return Webhook.from_dict(self._call("DELETE", _webhook_path(webhook_id)))

    def webhook_deliveries(self, webhook_id: str) -> list[Delivery]:
        """The webhook's pending deliveries, then its ended ones (newest first)."""
        answer = self._call("GET", _webhook_path(webhook_id) + "/deliveries")
        return [Delivery.from_dict(d) for d in answer["deliveries"]]

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close_all()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self._http.call(method, path, body, idempotent=method in _IDEMPOTENT)

    def _experiment(self, method: str, path: str, body: Any = None) -> StoredExperiment:
        return StoredExperiment.from_dict(self._call(method, path, body))


def _value(kind: type[StrEnum], value: StrEnum | str) -> str:
    try:
        return kind(value).value
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidInput(f"must be one of {allowed}", kind.__name__.lower()) from None


def _query(**values: str | datetime | None) -> str:
    given = {k: v.isoformat() if isinstance(v, datetime) else v
             for k, v in values.items() if v is not None}  # fmt: skip
    return "?" + urlencode(given) if given else ""


def _webhook_path(webhook_id: str) -> str:
    return "/v1/webhooks/" + quote(webhook_id, safe="")


def _path(key: str, action: str = "") -> str:
    return "/v1/experiments/" + quote(key, safe="") + ("/" + action if action else "")
