"""Bearer keys and roles on every route; key management over HTTP."""

from __future__ import annotations

import pytest

ADMIN_ROUTES = [
    ("POST", "/v1/experiments"), ("PUT", "/v1/experiments/exp"),
    ("POST", "/v1/experiments/exp/start"), ("POST", "/v1/experiments/exp/stop"),
    ("POST", "/v1/experiments/exp/ship"), ("GET", "/v1/experiments/exp/history"),
    ("GET", "/v1/experiments/exp/exposures"), ("GET", "/v1/keys"), ("POST", "/v1/keys"),
    ("DELETE", "/v1/keys/k1"),
]  # fmt: skip
SDK_ROUTES = [
    ("POST", "/v1/assign"), ("POST", "/v1/assign/batch"), ("GET", "/v1/assignments"),
    ("POST", "/v1/events"),
    ("GET", "/v1/experiments"), ("GET", "/v1/experiments/exp"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES + SDK_ROUTES)
@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer abt_unknown", "Basic abc", "Bearer " + "x" * 5000]
)
def test_missing_or_unknown_key_is_401(client, method, path, header):
    """No key, an unknown key or another scheme is 401 with a JSON error."""
    headers = {} if header is None else {"Authorization": header}
    response = client.open(path, method=method, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_sdk_key_on_admin_route_is_403(api, method, path):
    """An sdk key may not manage experiments or keys."""
    response = api.call(method, path, {}, role="sdk")
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_admin_key_may_use_sdk_routes(api):
    """Admin keys include the sdk role."""
    api.create_experiment()
    response = api.call("POST", "/v1/assign", {"experiment": "exp", "unit_id": "u"}, role="admin")
    assert response.status_code == 200


@pytest.mark.parametrize("redis_topology", ["single", "cluster"], indirect=True)
def test_keys_create_list_revoke_over_http(api, client):
    """A created key works, appears in the list without its secret, and stops after revoke."""
    created = api.call("POST", "/v1/keys", {"role": "sdk", "name": "mobile"})
    assert created.status_code == 201
    body = created.get_json()
    token, key_id = body["key"], body["id"]
    assert body["role"] == "sdk"
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/experiments", headers=headers).status_code == 200
    listed = api.call("GET", "/v1/keys").get_json()["keys"]
    assert key_id in {k["id"] for k in listed}
    assert token not in str(listed)
    revoked = api.call("DELETE", f"/v1/keys/{key_id}")
    assert revoked.get_json()["revoked_at"] is not None
    response = client.get("/v1/experiments", headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [({}, 400, "role"), ({"role": "root"}, 400, "role"), ({"role": "sdk", "name": 5}, 400, "name"),
     ({"role": "sdk", "name": "n" * 101}, 400, "name"), ({"role": "sdk", "x": 1}, 400, "x")],
)  # fmt: skip
def test_bad_key_requests(api, body, status, field):
    """Bad key creation requests are 400 naming the field."""
    response = api.call("POST", "/v1/keys", body)
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field


def test_revoking_an_unknown_key_is_404(api):
    """DELETE of a key id that does not exist is 404."""
    assert api.call("DELETE", "/v1/keys/k000000000000").status_code == 404
