"""The MLflow registry bridge against a real MLflow model registry (MLflow's own SQLite
store, created by the suite once per worker) and the real service over HTTP on a real
Redis: challenger alias -> a test against the champion -> ship -> champion alias moved;
a round the champion keeps -> its version tagged with the verdict and reasons."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # the suite talks to nothing outside

from mlflow import MlflowClient

from abtest.admin_client import AdminClient
from abtest.cli import main
from abtest.registry_bridge import Binding, RegistryBridge
from service.monitor.clock import SettableClock
from service.monitor.runner import Monitor, MonitorSettings
from tests.monitor_traffic import Traffic, rollout_experiment

pytestmark = pytest.mark.slow  # MLflow creates its tables once per worker (about 10 s)


@pytest.fixture(scope="session")
def registry_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite-backed MLflow registry, its tables created once for the session."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'registry.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    return uri


@pytest.fixture
def registry(registry_uri: str) -> MlflowClient:
    """A client of the session's registry."""
    return MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)


@pytest.fixture
def model(registry: MlflowClient) -> str:
    """A registered model of its own per test, with versions 1 and 2."""
    name = f"ranker-{uuid.uuid4().hex[:8]}"
    registry.create_registered_model(name)
    for number in (1, 2):
        registry.create_model_version(name, source=f"s3://models/{name}/{number}")
    return name


@pytest.fixture
def admin(url: str, api: Any) -> Iterator[AdminClient]:
    """An admin client of the service over HTTP."""
    with AdminClient(url, api.admin_key) as client:
        yield client


def _experiment(model: str) -> dict[str, Any]:
    """The lineage root: version 1 (control) against version 2."""
    return {"key": "ranker", "primary_metric": "purchase:binomial",
            "variants": [{"key": "v1", "weight": 1,
                          "payload": {"model": model, "model_version": "1"}},
                         {"key": "v2", "weight": 1,
                          "payload": {"model": model, "model_version": "2"}}]}  # fmt: skip


def _new_version(registry: MlflowClient, model: str, endpoint: str) -> str:
    version = registry.create_model_version(model, source=f"s3://models/{model}/new",
                                            tags={"endpoint": endpoint})  # fmt: skip
    registry.set_registered_model_alias(model, "challenger", version.version)
    return str(version.version)


def test_retrain_challenger_ship_and_the_registry_is_updated(registry, model, admin, api):
    """The whole round trip, each sync idempotent: v2 shipped -> champion 2; version 3 under
    'challenger' -> a running test against v2 with its endpoint; shipped -> champion 3 and
    version 3 tagged shipped; version 4 -> the champion keeps it -> version 4 tagged with
    the verdict and the ship entry's reason, champion still 3."""
    admin.create_experiment(_experiment(model))
    admin.start_experiment("ranker")
    admin.ship_experiment("ranker", "v2")
    bridge = RegistryBridge(admin, registry, [Binding(model, "ranker")])
    first = bridge.sync()
    assert sorted((e.action, e.version) for e in first) == [("champion", "2"), ("verdict", "2")]
    assert str(registry.get_model_version_by_alias(model, "champion").version) == "2"

    third = _new_version(registry, model, "http://models/ranker/3")
    events = bridge.sync()
    assert [(e.action, e.version) for e in events] == [("registered", third)]
    head = admin.lineage("ranker")[-1]
    assert head.experiment.status.value == "running" and head.experiment.control == "v2"
    challenger = head.experiment.variants[1]
    assert challenger.payload["endpoint"] == "http://models/ranker/3"
    assert challenger.payload["model_version"] == third
    tags = registry.get_model_version(model, third).tags
    assert tags["abtest.experiment"] == head.experiment.key
    history = admin.history(head.experiment.key)
    assert bridge.sync() == [] and admin.history(head.experiment.key) == history

    admin.ship_experiment(head.experiment.key, challenger.key, reason="conversion +2%")
    events = bridge.sync()
    assert sorted((e.action, e.version) for e in events) == [("champion", third),
                                                             ("verdict", third)]  # fmt: skip
    assert str(registry.get_model_version_by_alias(model, "champion").version) == third
    tags = registry.get_model_version(model, third).tags
    assert (tags["abtest.verdict"], tags["abtest.reasons"]) == ("shipped", "conversion +2%")

    fourth = _new_version(registry, model, "http://models/ranker/4")
    assert [e.action for e in bridge.sync()] == ["registered"]
    round_four = admin.lineage("ranker")[-1].experiment
    assert round_four.control == challenger.key  # the new champion defends
    admin.ship_experiment(round_four.key, round_four.control,
                          reason="latency p95 +12%: guardrail breached")  # fmt: skip
    assert [e.action for e in bridge.sync()] == ["verdict"]
    tags = registry.get_model_version(model, fourth).tags
    assert tags["abtest.verdict"] == "champion_kept"
    assert tags["abtest.reasons"] == "latency p95 +12%: guardrail breached"
    assert tags["abtest.experiment"] == round_four.key
    assert str(registry.get_model_version_by_alias(model, "champion").version) == third
    assert bridge.sync() == []


def test_a_challenger_waits_while_another_is_under_test(registry, model, admin):
    """A second alias move while a round runs is a 'waiting' event (the 409), tags nothing
    and is registered by the first sync after the round ends."""
    admin.create_experiment(_experiment(model))
    bridge = RegistryBridge(admin, registry, [Binding(model, "ranker")])
    admin.start_experiment("ranker")
    admin.stop_experiment("ranker")
    third = _new_version(registry, model, "e3")
    first = bridge.sync()  # the root, stopped and now superseded, gets its verdict too
    assert [(e.action, e.version) for e in first] == [("registered", third), ("verdict", "2")]
    fourth = _new_version(registry, model, "e4")
    waiting = bridge.sync()
    assert [(e.action, e.version) for e in waiting] == [("waiting", fourth)]
    assert "abtest.experiment" not in registry.get_model_version(model, fourth).tags
    head = admin.lineage("ranker")[-1].experiment.key
    admin.stop_experiment(head)
    events = bridge.sync()
    assert [(e.action, e.version) for e in events] == [("registered", fourth), ("verdict", third)]
    assert registry.get_model_version(model, third).tags["abtest.verdict"] == "stopped"


@pytest.fixture
def cli_env(registry_uri: str, api: Any, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service and the registry named the way a deployment names them: environment."""
    monkeypatch.setenv("ABTEST_API_KEY", api.admin_key)
    monkeypatch.setenv("ABTEST_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_uri)


def test_the_cli_syncs_once_and_refuses_bad_input(registry, model, admin, cli_env, capsys):
    """``abtest registry watch --once`` is one sync; a malformed binding is exit code 2; an
    unknown experiment is an error event (exit 1) that stops no other binding."""
    admin.create_experiment(_experiment(model))
    admin.start_experiment("ranker")
    admin.stop_experiment("ranker")
    third = _new_version(registry, model, "e3")
    command = ["registry", "watch", "--once"]
    assert main([*command, "--bind", f"{model}=missing", "--bind", f"{model}=ranker"]) == 1
    out = capsys.readouterr().out
    assert "error (missing): no experiment 'missing'" in out
    assert f"{model} version {third}: registered (ranker.{model}-v{third})" in out
    assert main([*command, "--bind", f"{model}=ranker"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*command, "--bind", "no-equals-sign"]) == 2
    assert "MODEL=EXPERIMENT" in capsys.readouterr().err


def test_a_rolled_back_rollout_tags_its_version_with_the_verdict_and_reasons(
    registry, model, admin, redis_client
):
    """A guarded rollout of version 2 rolled back by hand: version 2 tagged rolled_back with
    the caller's reason; version 3 enters as a guarded rollout, the monitor rolls its
    latency regression back: version 3 tagged with the monitor's reason and numbers."""
    root = {**rollout_experiment("ranker"), "variants": _experiment(model)["variants"]}
    admin.create_experiment(root)
    admin.start_experiment("ranker")
    admin.rollback("ranker", reason="error rate doubled on the dashboard")
    bridge = RegistryBridge(admin, registry, [Binding(model, "ranker")])
    assert [(e.action, e.version) for e in bridge.sync()] == [("verdict", "2")]
    tags = registry.get_model_version(model, "2").tags
    assert (tags["abtest.verdict"], tags["abtest.reasons"]) == (
        "rolled_back", "error rate doubled on the dashboard")  # fmt: skip
    assert "champion" not in registry.get_registered_model(model).aliases

    third = _new_version(registry, model, "http://models/ranker/3")
    assert [e.action for e in bridge.sync()] == ["registered"]
    head = admin.lineage("ranker")[-1].experiment
    assert head.rollout is not None and head.rollout.variant == f"{model}-v{third}"
    clock = SettableClock(datetime.now(UTC))  # the service's clock is the system's
    monitor = Monitor(redis_client, clock, MonitorSettings(instance="m"))
    traffic = Traffic(monitor.store, clock, experiment=head.key, seed=2,
                      latency={"v1": 200.0, head.rollout.variant: 260.0})  # fmt: skip
    for _ in range(10):
        traffic.hour(200)
        if monitor.run_once().to_dict()["actions"].get(head.key) == "roll_back":
            break
    assert admin.get_experiment(head.key).experiment.status.value == "rolled_back"
    events = bridge.sync()
    assert [(e.action, e.version) for e in events] == [("verdict", third)]
    tags = registry.get_model_version(model, third).tags
    assert tags["abtest.verdict"] == "rolled_back"
    assert tags["abtest.reasons"].startswith("guarded rollout: guardrail latency_ms is higher")
    assert "latency_ms" in tags["abtest.decision"]
    assert tags["abtest.experiment"] == head.key
    assert bridge.sync() == []
