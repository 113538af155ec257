"""The admin client against the real Flask app served over real HTTP, on a real Redis."""

from __future__ import annotations

import pytest

from abtest.admin_client import AdminClient
from abtest.auth import Role
from abtest.client import Client, ServiceUnavailable
from abtest.embedded import free_port
from abtest.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from abtest.experiment import Experiment, Status
from tests.conftest import Api, example_config, simple_config


def test_an_experiment_from_draft_to_shipped(api: Api, url: str) -> None:
    """Create, start, refuse a moving change, force it, read exposures, stop, ship, audit."""
    with AdminClient(url, api.admin_key) as admin:
        created = admin.create_experiment(Experiment.from_dict(simple_config("checkout")))
        assert (created.version, created.experiment.status) == (1, Status.DRAFT)
        admin.create_experiment(example_config())  # a plain mapping works too

        def keys(status: Status | str | None = None) -> list[str]:
            return [s.experiment.key for s in admin.list_experiments(status=status)]

        assert keys() == keys("draft") == ["checkout", "ranker-v2"]
        assert admin.start_experiment("checkout").experiment.status is Status.RUNNING
        assert keys(Status.RUNNING) == ["checkout"]
        with Client(url, api.sdk_key) as app:
            for i in range(40):
                app.assign("checkout", f"u{i}")
        narrower = simple_config("checkout", traffic=0.5)
        with pytest.raises(Conflict):
            admin.update_experiment("checkout", narrower)
        assert admin.update_experiment("checkout", narrower, force=True).version == 3
        exposures = admin.exposures("checkout")
        assert exposures["total"] == 40 and 0 <= exposures["srm"]["p_value"] <= 1
        assert admin.stop_experiment("checkout").experiment.status is Status.STOPPED
        shipped = admin.ship_experiment("checkout", "treatment", reason="signed off by PM")
        assert (shipped.experiment.status, shipped.experiment.winner) == (
            Status.SHIPPED, "treatment")  # fmt: skip
        assert admin.get_experiment("checkout") == shipped
        history = admin.history("checkout")
        assert [entry["action"] for entry in history] == ["create", "start", "update", "stop",
                                                          "ship"]  # fmt: skip
        assert history[-1]["reason"] == "signed off by PM"


def test_keys_are_created_listed_and_revoked(api: Api, url: str) -> None:
    """A created sdk key works at once and stops working once revoked."""
    with AdminClient(url, api.admin_key) as admin:
        admin.create_experiment(simple_config("checkout"))
        admin.start_experiment("checkout")
        key, record = admin.create_api_key("sdk", "mobile-app")
        assert (record.role, record.name, record.revoked) == (Role.SDK, "mobile-app", False)
        assert record.id in {k.id for k in admin.list_api_keys()}
        with Client(url, key) as app:
            assert app.assign("checkout", "u1").in_experiment
            assert admin.revoke_api_key(record.id).revoked
            with pytest.raises(Unauthorized):
                app.assign("checkout", "u2")


def test_errors_are_typed(api: Api, url: str) -> None:
    """Unknown experiment, bad input, an sdk key and an unreachable service each raise."""
    with AdminClient(url, api.admin_key) as admin:
        with pytest.raises(NotFound):
            admin.get_experiment("nope")
        with pytest.raises(InvalidInput, match="draft, running"):
            admin.list_experiments(status="paused")
        with pytest.raises(InvalidInput, match="sdk, admin"):
            admin.create_api_key("root")
        with pytest.raises(InvalidInput) as bad:
            admin.create_experiment({"key": "x", "variants": []})
        assert bad.value.field
    with AdminClient(url, api.sdk_key) as sdk, pytest.raises(Forbidden):
        sdk.create_experiment(simple_config("checkout"))
    offline = AdminClient(f"http://127.0.0.1:{free_port()}", api.admin_key, timeout=0.5)
    with offline, pytest.raises(ServiceUnavailable):
        offline.list_experiments()
