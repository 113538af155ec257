"""The web console through the real Flask app: sign-in, session cookie, CSRF, confirmations,
and actions that land in the same audit trail as the API."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from abtest.auth import Role
from tests.conftest import Api, simple_config

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Any:
    """The real app, exporting into a temporary directory."""
    from service import create_app

    return create_app(
        {"TESTING": True, "REDIS_URL": redis_url, "EXPORT_DIR": str(tmp_path / "export")}
    )


class Console:
    """A browser-like session on the test client: reads CSRF tokens from the pages."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def token(self, path: str = "/login") -> str:
        """The CSRF token in the forms of ``path``."""
        found = _CSRF.search(self.client.get(path).get_data(as_text=True))
        assert found is not None, f"no CSRF token on {path}"
        return found.group(1)

    def login(self, api_key: str) -> Any:
        """Submit the sign-in form with ``api_key``."""
        return self.client.post("/login", data={"api_key": api_key, "csrf_token": self.token()})

    def act(self, key: str, action: str, **fields: str) -> Any:
        """Confirm ``action`` on its confirmation page, as a person would."""
        query = f"?variant={fields['variant']}" if "variant" in fields else ""
        page = self.client.get(f"/experiments/{key}/{action}{query}").get_data(as_text=True)
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
        return self.client.post(f"/experiments/{key}/{action}", data={**form, **fields})


@pytest.fixture
def console(client: Any, api: Api) -> Console:
    """A console session signed in with the admin key of `api`."""
    session = Console(client)
    assert session.login(api.admin_key).status_code == 302
    return session


def _key_id(api: Api, role: Role) -> str:
    return next(k.id for k in api.store.list_api_keys() if k.role is role)


@pytest.mark.parametrize(
    "path", ["/", "/experiments/exp", "/experiments/exp/ship?variant=treatment"]
)
def test_pages_redirect_to_sign_in(client: Any, api: Api, path: str) -> None:
    """Every console page sends a visitor without a session to the sign-in form."""
    api.create_experiment()
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize(
    ("path", "status"),
    [("/", 200), ("/experiments/exp", 200), ("/experiments/exp/ship?variant=treatment", 200),
     ("/experiments/missing", 404), ("/experiments/exp/delete", 404), ("/login", 200)],
)  # fmt: skip
def test_every_console_response_carries_the_security_headers(
    console: Console, api: Api, path: str, status: int
) -> None:
    """Pages, error pages and the sign-in form: no scripts, no framing, no caching."""
    from service.console import SECURITY_HEADERS

    api.create_experiment()
    response = console.client.get(path)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    signed_out = console.client.application.test_client().get(path)
    assert signed_out.status_code in (200, 302, 404)
    assert signed_out.headers["X-Frame-Options"] == "DENY"


def test_sign_in_sets_a_strict_http_only_cookie(client: Any, api: Api) -> None:
    """An admin key signs in; the cookie is HttpOnly and SameSite=Strict and no URL has the key."""
    response = Console(client).login(api.admin_key)
    assert response.status_code == 302
    assert api.admin_key not in response.headers["Location"]
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    api.create_experiment()
    page = client.get("/").get_data(as_text=True)
    assert 'href="/experiments/exp"' in page and api.admin_key not in page


def test_secure_cookie_is_configurable(redis_url: str, redis_client: redis.Redis) -> None:
    """With SESSION_COOKIE_SECURE the session cookie is only sent over HTTPS."""
    from service import create_app

    app = create_app({"TESTING": True, "REDIS_URL": redis_url, "SESSION_COOKIE_SECURE": True})
    admin = app.extensions["abtest"].store.create_api_key(Role.ADMIN)[0]
    response = Console(app.test_client()).login(admin)
    assert "Secure" in response.headers["Set-Cookie"]


@pytest.mark.parametrize(
    ("which", "status", "message"),
    [
        ("unknown", 401, "unknown API key"),
        ("garbage", 401, "unknown API key"),
        ("empty", 401, "unknown API key"),
        ("revoked", 401, "revoked"),
        ("sdk", 403, "sdk key"),
    ],
)
def test_wrong_keys_cannot_sign_in(
    client: Any, api: Api, which: str, status: int, message: str
) -> None:
    """Unknown, malformed, revoked and sdk keys are refused and leave no session behind."""
    if which == "revoked":
        api.store.revoke_api_key(_key_id(api, Role.ADMIN))
    key = {"unknown": "abt_" + "x" * 43, "garbage": "hello", "empty": "",
           "revoked": api.admin_key, "sdk": api.sdk_key}[which]  # fmt: skip
    response = Console(client).login(key)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_revoking_the_key_ends_the_session(console: Console, api: Api) -> None:
    """The key is checked on every request, so a revoked key loses the console at once."""
    assert console.client.get("/").status_code == 200
    api.store.revoke_api_key(_key_id(api, Role.ADMIN))
    assert console.client.get("/").status_code == 302


def test_the_cookie_holds_a_session_token_not_the_key(console: Console, api: Api) -> None:
    """After sign-in the session has a random token and the CSRF token; the key is nowhere."""
    with console.client.session_transaction() as session:
        values = dict(session)
    assert set(values) == {"console_session", "console_csrf"}
    assert api.admin_key not in str(values)


def test_sign_out_ends_the_session_even_for_a_copied_cookie(console: Console, app: Any) -> None:
    """Signing out ends the session in Redis: a cookie copied before it no longer works."""
    copied = console.client.get_cookie("session").value
    response = console.client.post("/logout", data={"csrf_token": console.token()})
    assert response.status_code == 302
    assert console.client.get("/").status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", copied)
    assert replay.get("/").status_code == 302


def test_an_idle_session_ends(redis_url: str, redis_client: redis.Redis, api: Api) -> None:
    """``CONSOLE_SESSION_SECONDS`` without a request and the next page asks for the key again."""
    from service import create_app

    app = create_app({"TESTING": True, "REDIS_URL": redis_url, "CONSOLE_SESSION_SECONDS": 1})
    console = Console(app.test_client())
    assert console.login(api.admin_key).status_code == 302
    assert console.client.get("/").status_code == 200
    time.sleep(1.2)
    assert console.client.get("/").status_code == 302


def test_sign_in_rotates_the_csrf_token(client: Any, api: Api) -> None:
    """A token handed out before sign-in is worthless after it (no session fixation)."""
    session = Console(client)
    before = session.token()
    session.client.post("/login", data={"api_key": api.admin_key, "csrf_token": before})
    after = session.token()
    assert before != after
    response = client.post("/logout", data={"csrf_token": before})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("next_value", "expected"),
    [("/experiments/exp", "/experiments/exp"), ("//evil.example/x", "/"),
     ("https://evil.example/", "/"), ("javascript:alert(1)", "/")],
)  # fmt: skip
def test_sign_in_only_returns_to_this_site(
    client: Any, api: Api, next_value: str, expected: str
) -> None:
    """The ``next`` target after sign-in is a local path or the list, never another site."""
    session = Console(client)
    data = {"api_key": api.admin_key, "csrf_token": session.token(), "next": next_value}
    assert client.post("/login", data=data).headers["Location"] == expected


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/login", {"api_key": "from-another-site"}),
        ("/logout", {}),
        ("/experiments/exp/stop", {"confirm": "exp", "version": "2"}),
        ("/experiments/exp/ship", {"confirm": "exp", "version": "2", "variant": "treatment"}),
    ],
)
@pytest.mark.parametrize("csrf", [(None, 400), ("forged", 403), ("", 400)])
def test_posts_need_the_session_csrf_token(
    console: Console, api: Api, path: str, fields: dict[str, str], csrf: tuple[str | None, int]
) -> None:
    """A POST without this session's CSRF token is refused (400 missing, 403 wrong), no change."""
    token, status = csrf
    api.create_experiment()
    data = dict(fields) if token is None else {**fields, "csrf_token": token}
    response = console.client.post(path, data=data)
    assert response.status_code == status
    assert "CSRF" in response.get_data(as_text=True)
    assert api.store.get_experiment("exp").experiment.status.value == "running"
    assert len(api.store.history("exp")) == 2
    assert console.client.get("/experiments/exp/stop").status_code == 200  # still signed in


def test_actions_land_in_the_audit_trail(console: Console, api: Api) -> None:
    """start, stop, start and ship from the console are history entries with the console key."""
    api.create_experiment(start=False)
    admin_id = _key_id(api, Role.ADMIN)
    steps = [("start", {}, "running"), ("stop", {}, "stopped"), ("start", {}, "running"),
             ("ship", {"variant": "treatment", "reason": "owner's call"}, "shipped")]  # fmt: skip
    for action, fields, status in steps:
        response = console.act("exp", action, **fields)
        assert response.status_code == 303, response.get_data(as_text=True)
        assert response.headers["Location"] == f"/experiments/exp?done={action}"
        assert api.store.get_experiment("exp").experiment.status.value == status
    history = api.store.history("exp")
    assert [(h["action"], h["key_id"]) for h in history[1:]] == [
        (action, admin_id) for action, _, _ in steps
    ]
    assert api.store.get_experiment("exp").experiment.winner == "treatment"
    page = console.client.get("/experiments/exp?done=ship").get_data(as_text=True)
    assert 'data-version="5" data-action="ship"' in page
    assert 'id="status">shipped<' in page
    assert "Done: ship" in page


def test_api_sees_the_console_ship(console: Console, api: Api) -> None:
    """A variant shipped in the console is what the API serves to every unit."""
    api.create_experiment()
    assert console.act("exp", "ship", variant="control", reason="rollback").status_code == 303
    assert {api.assign("exp", f"u{i}")["variant"] for i in range(20)} == {"control"}


def test_confirmation_page_describes_the_action(console: Console, api: Api) -> None:
    """The confirmation page names the variant and changes nothing by itself."""
    api.create_experiment()
    page = console.client.get("/experiments/exp/ship?variant=treatment")
    assert page.status_code == 200
    assert "every unit gets &#39;treatment&#39;" in page.get_data(as_text=True)
    assert api.store.get_experiment("exp").experiment.status.value == "running"


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"version": "2"}, 400, "not confirmed"),
        ({"confirm": "other", "version": "2"}, 400, "not confirmed"),
        ({"confirm": "exp", "version": "1"}, 409, "changed since you looked"),
        ({"confirm": "exp"}, 409, "changed since you looked"),
    ],
)
def test_actions_need_a_current_confirmation(
    console: Console, api: Api, fields: dict[str, str], status: int, message: str
) -> None:
    """Without the confirmation field, or confirmed on an older version, nothing happens."""
    api.create_experiment()
    data = {**fields, "csrf_token": console.token()}
    response = console.client.post("/experiments/exp/stop", data=data)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert api.store.get_experiment("exp").experiment.status.value == "running"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/experiments/nope", 404),
        ("/experiments/exp/ship?variant=nope", 400),
        ("/experiments/exp/ship", 400),
        ("/experiments/exp/delete", 404),
    ],
)
def test_bad_console_requests_are_html_4xx(
    console: Console, api: Api, path: str, status: int
) -> None:
    """Unknown experiments, variants and actions give an HTML error page, not a 500."""
    api.create_experiment()
    response = console.client.get(path)
    assert response.status_code == status
    assert response.mimetype == "text/html"


def test_refused_action_is_explained(console: Console, api: Api) -> None:
    """Shipping an experiment that is already shipped is a 409 page with the reason."""
    api.create_experiment()
    assert console.act("exp", "ship", variant="treatment", reason="go").status_code == 303
    data = {"csrf_token": console.token(), "confirm": "exp", "version": "3",
            "variant": "control", "reason": "again"}  # fmt: skip
    response = console.client.post("/experiments/exp/ship", data=data)
    assert response.status_code == 409
    assert "cannot ship a shipped experiment" in response.get_data(as_text=True)


def test_list_shows_status_units_and_srm(console: Console, api: Api) -> None:
    """The list shows each experiment's status, units per variant and sample-ratio check."""
    api.create_experiment()
    api.create_experiment(simple_config("draft-one"), start=False)
    for i in range(40):
        api.assign("exp", f"user-{i}")
    counts = api.store.exposure_counts("exp").variants
    page = console.client.get("/").get_data(as_text=True)
    row = page[page.index('data-key="exp"') :]
    assert "running" in row
    for variant, n in counts.items():
        assert f"{variant}: <strong>{n}</strong>" in row
    assert '<span class="ok">ok</span>' in row
    draft = page[page.index('data-key="draft-one"') : page.index('data-key="exp"')]
    assert "draft" in draft and "no units" in draft


def test_workers_share_the_session_secret(redis_url: str, redis_client: redis.Redis) -> None:
    """Apps on one Redis (gunicorn workers) accept each other's cookies; SECRET_KEY wins."""
    from service import create_app

    def build(**extra: Any) -> Any:
        return create_app({"TESTING": True, "REDIS_URL": redis_url, **extra})

    first, second, own_secret = build(), build(), build(SECRET_KEY="configured")
    admin = first.extensions["abtest"].store.create_api_key(Role.ADMIN)[0]
    signed_in = first.test_client()
    Console(signed_in).login(admin)
    cookie = signed_in.get_cookie("session").value
    for app, status in ((second, 200), (own_secret, 302)):
        other = app.test_client()
        other.set_cookie("session", cookie)
        assert other.get("/").status_code == status


def test_pages_show_the_analysis(console: Console, api: Api) -> None:
    """With data, the list shows the verdict; the page the metrics, power, reasons and figures."""
    config = simple_config(
        primary_metric={"name": "purchase", "type": "binomial"}, planned_units_per_variant=500
    )
    api.create_experiment(config)
    buyers = {"control": 0, "treatment": 0}
    events = []
    for i in range(120):
        variant = api.assign("exp", f"user-{i}")["variant"]
        if i % 4 == 0:
            buyers[variant] += 1
            events.append({"event_id": f"e{i}", "unit_id": f"user-{i}", "metric": "purchase"})
    assert api.send_events(events).status_code == 202
    verdict = api.call("GET", "/v1/experiments/exp/results").get_json()["decision"]["verdict"]
    listing = console.client.get("/").get_data(as_text=True)
    assert f'class="verdict-{verdict}"' in listing
    page = console.client.get("/experiments/exp").get_data(as_text=True)
    units = api.store.exposure_counts("exp").variants["control"]
    share = 100 * buyers["control"] / units
    assert f'<td class="num">{share:.4g}%</td>' in page[page.index('id="metrics"') :]
    assert 'id="power"' in page and "at the plan of 500" in page
    assert 'id="reasons"' in page
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 3  # effect, cumulative, daily
