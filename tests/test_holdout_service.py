"""The global holdout over HTTP against a real Redis (single server and cluster): definition,
audit trail, what members get before and after a ship, its exposure log and its analysis."""

from __future__ import annotations

from typing import Any

import pytest

from abtest import keys
from abtest.export import export, read_exposures, read_holdout
from abtest.holdout import HoldoutRef
from tests.conftest import simple_config

REDIS_TOPOLOGIES = ("single", "cluster")

HOLDOUT = {"name": "holdout-2025", "share": 0.2, "description": "all of 2025"}
MEMBER = HoldoutRef("holdout-2025", 0.2)


def _put(api: Any, body: dict[str, Any], query: str = "") -> Any:
    return api.call("PUT", "/v1/holdout" + query, body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"share": 0.05}, "name"),
        ({"name": "Bad Name", "share": 0.05}, "name"),
        ({"name": "h", "share": 0}, "share"),
        ({"name": "h", "share": 0.6}, "share"),
        ({"name": "h", "share": True}, "share"),
        ({"name": "h", "share": 0.05, "covers": "some"}, "covers"),
        ({"name": "h", "share": 0.05, "covers": {}}, "covers"),
        ({"name": "h", "share": 0.05, "covers": {"experiments": ["A B"]}}, "covers.experiments[0]"),
        ({"name": "h", "share": 0.05, "covers": {"layers": []}}, "covers"),
        ({"name": "h", "share": 0.05, "salt": "x"}, "salt"),
        ({"name": "h", "share": 0.05, "description": "x" * 2001}, "description"),
    ],
)
def test_a_bad_holdout_is_refused_naming_the_field(api, body, field):
    """Every problem is a 400 naming its field, as for every request body, and nothing is
    stored."""
    response = _put(api, body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["field"] == field
    assert api.call("GET", "/v1/holdout").get_json()["version"] == 0


def test_sdk_keys_cannot_touch_the_holdout(api):
    """The holdout is an admin resource."""
    assert api.call("PUT", "/v1/holdout", HOLDOUT, role="sdk").status_code == 403
    assert api.call("GET", "/v1/holdout", role="sdk").status_code == 403


def test_members_get_control_while_running_and_after_the_ship(api):
    """A member gets control with reason holdout in a running experiment and after the ship;
    the others are assigned, then get the winner; members are never exposures."""
    assert _put(api, HOLDOUT).status_code == 200
    created = api.create_experiment()
    assert created["config"]["holdout"] == {"name": "holdout-2025", "share": 0.2}
    units = [f"user-{i}" for i in range(120)]
    members = {u for u in units if MEMBER.contains(u)}
    assert 10 < len(members) < 40  # 20% of 120, give or take
    for unit in units:
        answer = api.assign("exp", unit)
        if unit in members:
            assert (answer["variant"], answer["reason"]) == ("control", "holdout")
            assert answer["payload"] == {"color": "blue"} and not answer["in_experiment"]
        else:
            assert answer["reason"] == "assigned"
    shipped = api.call("POST", "/v1/experiments/exp/ship", {"variant": "treatment"})
    assert shipped.status_code == 200
    for unit in [*units, "late-1", "late-2", "late-3", "late-4", "late-5"]:
        answer = api.assign("exp", unit)
        expected = ("control", "holdout") if MEMBER.contains(unit) else ("treatment", "shipped")
        assert (answer["variant"], answer["reason"]) == expected
    counts = api.call("GET", "/v1/experiments/exp/exposures").get_json()
    assert counts["total"] == len(units) - len(members)


def test_the_holdout_log_has_each_unit_once_per_experiment_with_its_group(api, tmp_path):
    """Export writes the holdout log: one row per unit and experiment (running contacts and
    the first contacts after the ship), members flagged, none of them in the exposures."""
    _put(api, HOLDOUT)
    api.create_experiment(simple_config("a"))
    api.create_experiment(simple_config("b"))
    units = [f"u{i}" for i in range(60)]
    for unit in units:
        api.assign("a", unit)
        api.assign("a", unit)  # a repeat is no new contact
    api.call("POST", "/v1/experiments/b/ship", {"variant": "treatment"})
    for unit in units[:30]:
        api.assign("b", unit)
        api.assign("b", unit)
    export(api.store.redis, out_dir=tmp_path)
    log = read_holdout(tmp_path).to_pandas()
    assert sorted(log.groupby("experiment").size().items()) == [("a", 60), ("b", 30)]
    assert set(log["holdout"]) == {"holdout-2025"}
    assert all(log["in_holdout"] == log["unit_id"].map(MEMBER.contains))
    exposed = set(read_exposures(tmp_path).to_pandas()["unit_id"])
    assert exposed == {u for u in units if not MEMBER.contains(u)}


def test_covering_a_running_experiment_with_assigned_units_needs_force(api):
    """Members already assigned would switch to control: 409 naming force, nothing written;
    with force the experiment gets an audited version with action holdout."""
    api.create_experiment()
    api.assign("exp", "u1")
    refused = _put(api, HOLDOUT)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["field"] == "force"
    assert api.call("GET", "/v1/holdout").get_json()["version"] == 0
    assert api.call("GET", "/v1/experiments/exp").get_json()["version"] == 2
    assert _put(api, HOLDOUT, "?force=true").status_code == 200
    history = api.call("GET", "/v1/experiments/exp/history").get_json()["history"]
    assert history[-1]["action"] == "holdout"
    assert history[-1]["diff"] == [
        {"field": "holdout", "old": None, "new": {"name": "holdout-2025", "share": 0.2}}
    ]


def test_a_smaller_share_or_a_release_needs_no_force(api):
    """Shrinking or releasing moves no assigned unit: both go through and are audited."""
    _put(api, HOLDOUT)
    api.create_experiment()
    api.assign("exp", "u1")
    smaller = _put(api, {**HOLDOUT, "share": 0.1})
    assert smaller.status_code == 200, smaller.get_json()
    released = api.call("DELETE", "/v1/holdout")
    assert released.status_code == 200
    assert released.get_json()["holdout"] is None
    config = api.call("GET", "/v1/experiments/exp").get_json()["config"]
    assert config["holdout"] is None
    history = api.call("GET", "/v1/holdout/history").get_json()["history"]
    assert [h["action"] for h in history] == ["create", "update", "release"]
    assert history[1]["diff"] == [{"field": "share", "old": 0.2, "new": 0.1}]
    assert api.call("DELETE", "/v1/holdout").status_code == 404


def test_covers_a_list_of_experiments_and_layers(api):
    """Only the listed experiments and the experiments of listed layers carry the holdout,
    including one created afterwards; GET lists them."""
    body = {**HOLDOUT, "covers": {"experiments": ["a"], "layers": ["search"]}}
    api.create_experiment(simple_config("a"), start=False)
    api.create_experiment(simple_config("b"), start=False)
    assert _put(api, body).status_code == 200
    api.create_experiment(
        simple_config("c", layer={"name": "search", "range": [0, 0.5]}), start=False
    )
    got = api.call("GET", "/v1/holdout").get_json()
    assert got["covered_experiments"] == ["a", "c"]
    assert got["started_at"] == got["created_at"]
    assert api.call("GET", "/v1/experiments/b").get_json()["config"]["holdout"] is None


def test_an_experiment_body_cannot_set_or_drop_the_holdout(api):
    """create and update ignore a holdout in the body: the global one decides."""
    _put(api, HOLDOUT)
    forged = simple_config(holdout={"name": "other", "share": 0.5})
    created = api.call("POST", "/v1/experiments", forged).get_json()
    assert created["config"]["holdout"] == {"name": "holdout-2025", "share": 0.2}
    updated = api.call("PUT", "/v1/experiments/exp", simple_config(holdout=None)).get_json()
    assert updated["config"]["holdout"] == {"name": "holdout-2025", "share": 0.2}


def test_sync_repairs_an_experiment_left_behind(api, redis_client):
    """An experiment whose snapshot is stale (a write interrupted between the holdout and
    the experiments) is brought up to date by POST /v1/holdout/sync."""
    api.create_experiment(start=False)
    current = api.call("GET", "/v1/holdout").get_json()
    from abtest.definitions import read_definition, write_definition

    write_definition(redis_client, keys.holdout_meta(), keys.holdout_history(),
                     read_definition(redis_client, keys.holdout_meta()),
                     {**HOLDOUT, "covers": "all"}, key_id="crashed", action="create")  # fmt: skip
    assert current["version"] == 0
    assert api.call("GET", "/v1/experiments/exp").get_json()["config"]["holdout"] is None
    assert api.call("POST", "/v1/holdout/sync").get_json() == {"changed": ["exp"]}
    config = api.call("GET", "/v1/experiments/exp").get_json()["config"]
    assert config["holdout"] == {"name": "holdout-2025", "share": 0.2}


def test_local_evaluation_applies_the_holdout_and_reports_its_contacts(api, url, tmp_path):
    """The client's in-process answers equal the service's, and its reports leave the same
    holdout log as remote calls: members and the rest, once each."""
    from abtest.client import Client

    _put(api, HOLDOUT)
    api.create_experiment()
    units = [f"local-{i}" for i in range(80)]
    with Client(url, api.sdk_key, local_evaluation=True, flush_interval=30) as local:
        answers = {u: local.assign("exp", u) for u in units}
        assert local.flush(timeout=20)
    export(api.store.redis, out_dir=tmp_path)  # before any remote call could log a contact
    log = read_holdout(tmp_path).to_pandas()
    assert sorted(log["unit_id"]) == sorted(units)
    assert all(log["in_holdout"] == log["unit_id"].map(MEMBER.contains))
    for unit in units:
        remote = api.assign("exp", unit)
        assert (answers[unit].variant, answers[unit].reason.value) == (
            remote["variant"], remote["reason"])  # fmt: skip
    assert {a.reason.value for a in answers.values()} == {"holdout", "assigned"}


def test_the_console_page_shows_the_holdout_trail_newest_first(api):
    """The holdout page's history is the experiment page's table: one row per version,
    newest first, each change with its old and new value (the creation's too)."""
    from tests.test_console import Console

    assert Console(api.client).login(api.admin_key).status_code == 302
    empty = api.client.get("/holdout").get_data(as_text=True)
    assert '<td colspan="5" class="muted">never set</td>' in empty
    assert _put(api, HOLDOUT).status_code == 200
    assert _put(api, {**HOLDOUT, "share": 0.1}).status_code == 200
    page = api.client.get("/holdout").get_data(as_text=True)
    trail = page[page.index('id="holdout-history"') :]
    assert trail.index('data-version="2" data-action="update"') < trail.index(
        'data-version="1" data-action="create"'
    )
    assert "<code>share</code>: <del>0.2</del> → <ins>0.1</ins>" in trail
    assert "<code>name</code>: <del>null</del> → <ins>&#34;holdout-2025&#34;</ins>" in trail
    assert "never set" not in trail
