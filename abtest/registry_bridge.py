"""The MLflow model registry bridge (optional extra ``abtest[mlflow]``).

A retraining job registers a model version in MLflow and points the registered model's
``challenger`` alias at it; the bridge does the rest, one `RegistryBridge.sync` at a time
(``abtest registry watch`` runs it every ``--interval`` seconds, or ``--once``):

* **Register.**  The version under ``challenger`` is registered as a challenger of the
  bound experiment's lineage (`abtest.admin_client.AdminClient.challenge`, idempotent by
  model version) with its ``source``, ``run_id`` and, when the version has an ``endpoint``
  tag, that endpoint as payload.  The version is tagged ``abtest.experiment`` and
  ``abtest.variant``.  While the lineage is testing another challenger the service answers
  409 and the version waits: the next sync tries again.
* **Ship.**  The winner of the newest shipped experiment of the lineage, when it is a
  version of this model, gets the ``champion`` alias (moved only when it points elsewhere).
* **Verdict.**  A challenger whose experiment is over (shipped, rolled back, or stopped and
  superseded by a newer round) is tagged once with ``abtest.verdict`` (``shipped``,
  ``rolled_back``, ``stopped`` or ``champion_kept`` when the experiment shipped another
  variant), ``abtest.reasons`` (the reason of the audit entry that ended it) and
  ``abtest.decision`` (the decision's numbers, when the entry has them).

The registry holds no state of the bridge beyond those tags and aliases, and the service's
answers are idempotent, so a bridge restarted at any point repeats nothing, and two bridges
on the same registry do the same writes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from abtest.admin_client import AdminClient
from abtest.errors import AbtestError, Conflict, InvalidInput
from abtest.store import StoredExperiment

CHALLENGER_ALIAS: Final = "challenger"
CHAMPION_ALIAS: Final = "champion"
ENDPOINT_TAG: Final = "endpoint"
TAG_EXPERIMENT: Final = "abtest.experiment"
TAG_VARIANT: Final = "abtest.variant"
TAG_VERDICT: Final = "abtest.verdict"
TAG_REASONS: Final = "abtest.reasons"
TAG_DECISION: Final = "abtest.decision"
MAX_TAG_VALUE: Final = 5000  # MLflow's limit on a tag value
_MISSING: Final = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
_ENDING_ACTIONS: Final = ("ship", "rollback", "stop")


@dataclass(frozen=True)
class Binding:
    """A registered model and the experiment (lineage root) its challengers enter."""

    model: str
    experiment: str

    @classmethod
    def parse(cls, text: str) -> Binding:
        """``MODEL=EXPERIMENT``; `InvalidInput` (field ``bind``) otherwise."""
        model, sep, experiment = text.partition("=")
        if not sep or not model.strip() or not experiment.strip():
            raise InvalidInput(f"'{text}' is not MODEL=EXPERIMENT", "bind")
        return cls(model.strip(), experiment.strip())


@dataclass(frozen=True)
class BridgeEvent:
    """One thing a sync did or could not do, for the log."""

    model: str
    version: str
    action: str  # registered | waiting | champion | verdict | error
    experiment: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.model} version {self.version}: {self.action} ({self.experiment})"
        return f"{text}: {self.detail}" if self.detail else text


class RegistryBridge:
    """Keeps an MLflow registry and the experiments of ``bindings`` in step (see the module
    docstring).  ``admin`` needs an admin key; ``registry`` is any `mlflow.MlflowClient`."""

    def __init__(
        self, admin: AdminClient, registry: MlflowClient, bindings: Sequence[Binding]
    ) -> None:
        self.admin = admin
        self.registry = registry
        self.bindings = tuple(bindings)

    def sync(self) -> list[BridgeEvent]:
        """One pass over every binding: register, then move aliases and write verdicts."""
        events: list[BridgeEvent] = []
        for binding in self.bindings:
            try:
                events.extend(self._register(binding))
                events.extend(self._outcomes(binding))
            except (AbtestError, MlflowException) as exc:  # the other bindings still run
                events.append(BridgeEvent(binding.model, "-", "error", binding.experiment,
                                          _message(exc)))  # fmt: skip
        return events

    def watch(self, interval: float, *, stop: threading.Event | None = None) -> None:
        """`sync` every ``interval`` seconds, printing its events, until ``stop`` is set."""
        stop = stop or threading.Event()
        while not stop.is_set():
            for event in self.sync():
                print(event, flush=True)
            stop.wait(interval)

    # -- the three steps ------------------------------------------------------------------
    def _register(self, binding: Binding) -> list[BridgeEvent]:
        version = self._by_alias(binding.model, CHALLENGER_ALIAS)
        if version is None or TAG_EXPERIMENT in version.tags:
            return []
        payload: dict[str, Any] = {"source": version.source}
        if version.run_id:
            payload["run_id"] = version.run_id
        if version.tags.get(ENDPOINT_TAG):
            payload["endpoint"] = version.tags[ENDPOINT_TAG]
        event = BridgeEvent(binding.model, str(version.version), "registered", binding.experiment)
        try:
            answer = self.admin.challenge(binding.experiment, binding.model, version.version,
                                          payload=payload)  # fmt: skip
        except Conflict as exc:  # another challenger is under test: wait for its outcome
            return [replace(event, action="waiting", detail=_message(exc))]
        self._tag(version, {TAG_EXPERIMENT: answer["experiment"], TAG_VARIANT: answer["variant"]})
        detail = f"variant '{answer['variant']}' against '{answer['champion']}'"
        return [replace(event, experiment=answer["experiment"], detail=detail)]

    def _outcomes(self, binding: Binding) -> list[BridgeEvent]:
        chain = self.admin.lineage(binding.experiment)
        events = self._move_champion(binding, chain)
        for index, stored in enumerate(chain):
            if not _is_over(stored, is_head=index == len(chain) - 1):
                continue
            experiment = stored.experiment
            for variant in experiment.variants:
                version = _model_version(variant.payload, binding.model)
                if variant.key == experiment.control or version is None:
                    continue
                event = self._verdict(binding.model, version, stored, variant.key)
                if event is not None:
                    events.append(event)
        return events

    def _move_champion(self, binding: Binding, chain: list[StoredExperiment]) -> list[BridgeEvent]:
        shipped = [s for s in chain if s.experiment.status.value == "shipped"]
        if not shipped or shipped[-1].experiment.winner is None:
            return []
        newest = shipped[-1].experiment
        assert newest.winner is not None  # checked above; mypy does not follow the list
        version = _model_version(newest.variant(newest.winner).payload, binding.model)
        if version is None:
            return []
        current = self._by_alias(binding.model, CHAMPION_ALIAS)
        if current is not None and str(current.version) == version:
            return []
        try:
            self.registry.set_registered_model_alias(binding.model, CHAMPION_ALIAS, version)
        except MlflowException as exc:
            return [BridgeEvent(binding.model, version, "error", newest.key, _message(exc))]
        was = "none" if current is None else f"version {current.version}"
        return [BridgeEvent(binding.model, version, "champion", newest.key, f"was {was}")]

    def _verdict(
        self, model: str, version: str, stored: StoredExperiment, variant: str
    ) -> BridgeEvent | None:
        try:
            found = self.registry.get_model_version(model, version)
        except MlflowException as exc:
            if exc.error_code in _MISSING:  # a variant named after a version never registered
                return None
            raise
        if TAG_VERDICT in found.tags:
            return None
        experiment = stored.experiment
        status = experiment.status.value
        verdict = status
        if status == "shipped" and experiment.winner != variant:
            verdict = "champion_kept"
        ending = _ending_entry(self.admin.history(experiment.key))
        reasons = str(ending.get("reason") or f"no reason recorded ({ending.get('action')} by "
                      f"key {ending.get('key_id')} at {ending.get('time')})")  # fmt: skip
        tags = {TAG_VERDICT: verdict, TAG_REASONS: reasons, TAG_EXPERIMENT: experiment.key}
        if ending.get("decision") is not None:
            tags[TAG_DECISION] = json.dumps(ending["decision"], sort_keys=True)
        self._tag(found, tags)
        return BridgeEvent(model, version, "verdict", experiment.key, f"{verdict}: {reasons}")

    # -- the registry ---------------------------------------------------------------------
    def _by_alias(self, model: str, alias: str) -> ModelVersion | None:
        try:
            return self.registry.get_model_version_by_alias(model, alias)
        except MlflowException as exc:
            if exc.error_code in _MISSING:
                return None
            raise

    def _tag(self, version: ModelVersion, tags: Mapping[str, str]) -> None:
        # The verdict goes last: its presence is what makes a later sync skip the version.
        for name in sorted(tags, key=lambda n: n == TAG_VERDICT):
            value = tags[name]
            self.registry.set_model_version_tag(version.name, str(version.version), name,
                                                value[:MAX_TAG_VALUE])  # fmt: skip


def _model_version(payload: Any, model: str) -> str | None:
    """The model version a variant's payload names, when it is one of ``model``'s."""
    if isinstance(payload, Mapping) and payload.get("model") == model:
        version = payload.get("model_version")
        return None if version is None else str(version)
    return None


def _is_over(stored: StoredExperiment, *, is_head: bool) -> bool:
    """Shipped and rolled back are final; a stopped one is over once a newer round began."""
    status = stored.experiment.status.value
    return status in ("shipped", "rolled_back") or (status == "stopped" and not is_head)


def _ending_entry(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit entry that ended the experiment (its newest ship, rollback or stop)."""
    for entry in reversed(history):
        if entry.get("action") in _ENDING_ACTIONS:
            return dict(entry)
    return dict(history[-1]) if history else {}


def _message(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc).splitlines()[0][:300]
