"""/openapi.json documents exactly the routes the app serves."""

import re

SYSTEM = {"/healthz", "/metrics", "/openapi.json"}


def _routes(app):
    """(path, method) of every JSON API route; the console's HTML pages are not API."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/v1/") or rule.rule in SYSTEM):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((path, method.lower()))
    return found


def test_openapi_matches_the_routes(client, app):
    """Every route is documented and every documented operation is a route."""
    spec = client.get("/openapi.json").get_json()
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert documented == _routes(app)


def test_openapi_roles_match_the_views(client):
    """An operation documented as public answers without a key; the others need one."""
    spec = client.get("/openapi.json").get_json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            url = path.replace("{key}", "exp").replace("{key_id}", "k0")
            status = client.open(url, method=method.upper()).status_code
            assert (status == 401) == (op["x-role"] is not None), (path, method, status)
