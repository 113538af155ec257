"""The console in real headless Chromium (Debian's ``chromium``, driven by Playwright).

The app runs on a real WSGI server (werkzeug) on a free loopback port in a thread.  Without
/usr/bin/chromium these tests skip with a message; ``.ci/run`` installs it, so CI runs them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from abtest.auth import Role
from abtest.events import parse_events
from tests.conftest import simple_config

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium (persistent context on a temporary --user-data-dir)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def live_app(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Any]:
    """The real app on a werkzeug server in a thread; yields (base URL, store)."""
    from werkzeug.serving import make_server

    from service import create_app

    app = create_app({"REDIS_URL": redis_url, "EXPORT_DIR": str(tmp_path / "export")})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app.extensions["abtest"].store
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab with no cookies."""
    browser.clear_cookies()
    tab = browser.new_page()
    try:
        yield tab
    finally:
        tab.close()


def _running_experiment(store: Any) -> None:
    config = simple_config(
        "checkout-button",
        description="Green checkout button against blue",
        primary_metric={"name": "purchase", "type": "binomial"},
        planned_units_per_variant=1000,
    )
    store.create_experiment(config, key_id="setup")
    store.start_experiment("checkout-button", key_id="setup")
    for i in range(60):
        store.assign("checkout-button", f"user-{i}")
    buyers = range(0, 60, 4)
    store.record_events(
        parse_events([{"event_id": f"e{i}", "unit_id": f"user-{i}", "metric": "purchase"}
                      for i in buyers])
    )  # fmt: skip


def test_release_manager_ships_a_variant(page: Any, live_app: tuple[str, Any]) -> None:
    """Sign in, open the experiment, ship with confirmation, see the status and history change."""
    base, store = live_app
    _running_experiment(store)
    admin_key, record = store.create_api_key(Role.ADMIN, name="release manager")
    # Chromium reports each thing the Content-Security-Policy blocks on the console.
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Security Policy" in m.text else None)

    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    page.fill("#api_key", admin_key)
    page.click("button[type=submit]")
    page.wait_for_selector("#experiments")
    assert admin_key not in page.url
    cookie = next(c for c in page.context.cookies() if c["name"] == "session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # JavaScript cannot read the key

    page.click("a[href='/experiments/checkout-button']")
    assert page.inner_text("#status") == "running"
    page.click("#action-ship-treatment")
    assert "every unit gets 'treatment'" in page.inner_text("#confirm-description")
    # 60 units are too few for a verdict to ship: the page says so and wants a reason.
    assert "Current verdict: invalid" in page.inner_text("#confirm-verdict")
    assert "too few units" in page.inner_text("#confirm-reasons")
    confirm_url = page.url
    page.click("#confirm-button")  # the empty required reason keeps the form from submitting
    assert page.url == confirm_url
    assert store.get_experiment("checkout-button").experiment.status.value == "running"
    page.fill("#reason", "launch date agreed with legal")
    page.click("#confirm-button")

    page.wait_for_selector("#flash")
    assert "Reason given: launch date agreed with legal" in page.inner_text("#ship-reason")
    assert page.inner_text("#status") == "shipped"
    assert page.inner_text("#winner") == "treatment"
    newest = page.locator("#history tbody tr").first
    assert newest.get_attribute("data-action") == "ship"
    assert record.id in newest.inner_text()
    # The console's own stylesheet applies under the policy (its page background).
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
    assert blocked == []
    assert store.get_experiment("checkout-button").experiment.winner == "treatment"
    assert store.history("checkout-button")[-1]["key_id"] == record.id
    assert store.history("checkout-button")[-1]["reason"] == "launch date agreed with legal"


def test_cross_site_form_cannot_ship(page: Any, live_app: tuple[str, Any]) -> None:
    """A signed-in browser that submits a forged form from another page changes nothing."""
    base, store = live_app
    _running_experiment(store)
    admin_key = store.create_api_key(Role.ADMIN)[0]
    page.goto(base + "/login")
    page.fill("#api_key", admin_key)
    page.click("button[type=submit]")
    page.wait_for_selector("#experiments")

    page.set_content(
        f'<form id="f" method="post" action="{base}/experiments/checkout-button/ship">'
        '<input name="confirm" value="checkout-button"><input name="version" value="2">'
        '<input name="variant" value="treatment"></form>'
    )
    with page.expect_navigation():
        page.evaluate("document.getElementById('f').submit()")
    assert "CSRF" in page.content()
    assert store.get_experiment("checkout-button").experiment.status.value == "running"
