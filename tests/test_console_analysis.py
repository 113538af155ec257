"""What the console says about an experiment's data: the power line, formatted numbers,
the shipped state, the ship confirmation against the verdict, and the same numbers as the
HTML report."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import redis

from analysis import power_proportion
from analysis.report.formatting import percent
from analysis.report.html import render_html
from service.results import experiment_results
from tests.conftest import Api, simple_config
from tests.test_console import Console

# The tests' users buy within moments of their exposure, so a 2-second observation window
# holds their outcomes; a test that needs the always-valid verdict waits for it to close.
OBSERVATION_SECONDS = 2.0


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Any:
    """The real app, exporting into a temporary directory, with a 2-second window."""
    from service import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url,
                       "EXPORT_DIR": str(tmp_path / "export"),
                       "OBSERVATION_HOURS": OBSERVATION_SECONDS / 3600})  # fmt: skip


def _settle() -> None:
    """Wait until every unit assigned so far has been observed for its whole window."""
    time.sleep(OBSERVATION_SECONDS + 0.2)


@pytest.fixture
def console(client: Any, api: Api) -> Console:
    """A console session signed in with the admin key of `api`."""
    session = Console(client)
    assert session.login(api.admin_key).status_code == 302
    return session


def _experiment(api: Api, **changes: Any) -> None:
    config = simple_config(primary_metric={"name": "purchase", "type": "binomial"}, **changes)
    api.create_experiment(config)


def _traffic(api: Api, users: int, buys: Callable[[str, int], bool]) -> None:
    """Assign ``users`` units through the API; unit ``i`` buys when ``buys(variant, i)``,
    right after its assignment (each batch's purchases follow the batch)."""
    for start in range(0, users, 100):
        batch = [{"experiment": "exp", "unit_id": f"user-{i}"}
                 for i in range(start, min(users, start + 100))]  # fmt: skip
        response = api.call("POST", "/v1/assign/batch", {"requests": batch}, role="sdk")
        assert response.status_code == 200, response.get_json()
        events = [{"event_id": f"e{i}", "unit_id": f"user-{i}", "metric": "purchase"}
                  for i, answer in enumerate(response.get_json()["assignments"], start)
                  if buys(answer["variant"], i)]  # fmt: skip
        if events:
            assert api.send_events(events).status_code == 202


def _no_effect(variant: str, i: int) -> bool:
    return i % 5 == 0


def _treatment_wins(variant: str, i: int) -> bool:
    return i % (2 if variant == "treatment" else 8) == 0


def _visible(page: str) -> str:
    """The page's text without its style sheet, config block (raw JSON) and markup, with
    whitespace folded."""
    page = re.sub(r'<style>.*?</style>|<pre id="config">.*?</pre>', "", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


class _Tables(HTMLParser):
    """The text of every cell of the table with id ``table_id``, row by row."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows = table_id, False, []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(" " + data)


def _table(page: str, table_id: str = "metrics") -> list[list[str]]:
    parser = _Tables(table_id)
    parser.feed(page)
    return parser.rows


def test_power_line_uses_the_planned_effect_and_formats_numbers(console: Console, api: Api) -> None:
    """The power line is for the config's minimum_detectable_effect; counts have separators."""
    _experiment(api, planned_units_per_variant=130_016, minimum_detectable_effect=0.1)
    _traffic(api, 300, _no_effect)
    page = console.client.get("/experiments/exp").get_data(as_text=True)
    power = _visible(page[page.index('id="power"') :])
    assert "Power to detect a 10% relative change in purchase" in power
    assert "the planned minimum_detectable_effect" in power
    counts = api.store.exposure_counts("exp").variants
    now = min(counts.values())
    results = api.call("GET", "/v1/experiments/exp/results").get_json()
    control_mean = next(m["control_mean"] for m in results["metrics"])
    expected = power_proportion(baseline=control_mean, effect=0.1, relative=True,
                                n_per_variant=[now, 130_016], alpha=0.05)  # fmt: skip
    assert f"now {percent(float(expected[0]), 2)} with {now} units per variant" in power
    assert f"at the plan of 130,016 units per variant {percent(float(expected[1]), 2)}" in power
    text = _visible(page)
    assert "130,016" in text and "130016" not in text
    # No count of five digits or more without separators anywhere (reasons included).
    assert re.findall(r"(?<![\w.,:-])\d{5,}(?![\w])", text) == []
    assert any("planned 130,016 units per variant" in r for r in results["decision"]["reasons"])


def test_power_line_states_the_default_effect(console: Console, api: Api) -> None:
    """Without minimum_detectable_effect the line says it uses the default 5%."""
    _experiment(api, planned_units_per_variant=500)
    _traffic(api, 300, _no_effect)
    page = console.client.get("/experiments/exp").get_data(as_text=True)
    power = _visible(page[page.index('id="power"') :])
    assert "Power to detect a 5% relative change" in power
    assert "no minimum_detectable_effect in the config: the default 5%" in power


def test_shipped_experiment_shows_its_ship_not_a_verdict(console: Console, api: Api) -> None:
    """Shipped: winner, time, key and reason; no "keep running" and no days left, anywhere."""
    _experiment(api, planned_units_per_variant=130_016)
    _traffic(api, 300, _no_effect)
    before = console.client.get("/experiments/exp").get_data(as_text=True)
    assert "keep running" in before and "more day(s)" in before
    assert console.act("exp", "ship", variant="treatment", reason="PM: ship now").status_code == 303
    page = console.client.get("/experiments/exp").get_data(as_text=True)
    entry = api.store.history("exp")[-1]
    shipped = _visible(page[page.index('id="shipped"') :])
    when = f"{entry['time'][:10]} {entry['time'][11:16]} UTC"
    assert f"Shipped treatment on {when} by key {entry['key_id']} (tests)" in shipped
    assert "Reason given: PM: ship now" in shipped
    listing = console.client.get("/").get_data(as_text=True)
    for text in (_visible(page), _visible(listing)):
        assert "keep running" not in text and "keep_running" not in text
        assert "more day" not in text
    assert "shipped" in _visible(listing[listing.index('data-key="exp"') :])
    assert _table(page)[1][1] == "treatment"  # the final numbers stay on the page
    assert "at the plan" not in _visible(page)  # no unit will be added any more


def test_ship_confirmation_restates_the_verdict(console: Console, api: Api) -> None:
    """The confirmation page shows the verdict and its reasons, and asks for a reason when
    the chosen variant is not the verdict's."""
    _experiment(api)
    _traffic(api, 400, _treatment_wins)
    _settle()
    decision = api.call("GET", "/v1/experiments/exp/results").get_json()["decision"]
    assert (decision["verdict"], decision["variant"]) == ("ship", "treatment")
    follow = console.client.get("/experiments/exp/ship?variant=treatment").get_data(as_text=True)
    against = console.client.get("/experiments/exp/ship?variant=control").get_data(as_text=True)
    for page in (follow, against):
        verdict = _visible(page[page.index('id="confirm-verdict"') :])
        assert "Current verdict: ship treatment" in verdict
        for reason in decision["reasons"]:
            assert reason in verdict
    assert 'id="follows"' in follow and "required" not in follow
    assert 'id="against"' in against and "Reason (required)" in against
    assert re.search(r"<textarea[^>]*name=\"reason\"[^>]*required", against)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_shipping_against_the_verdict_needs_a_reason(
    console: Console, api: Api, reason: str | None
) -> None:
    """Against the verdict (or without one), no reason is a 400 page and nothing changes."""
    _experiment(api, planned_units_per_variant=130_016)
    _traffic(api, 300, _no_effect)
    fields = {"variant": "treatment"} if reason is None else {"variant": "treatment",
                                                             "reason": reason}  # fmt: skip
    response = console.act("exp", "ship", **fields)
    assert response.status_code == 400
    text = _visible(response.get_data(as_text=True))
    assert "the verdict is 'keep running'" in text and "needs a reason" in text
    assert api.store.get_experiment("exp").experiment.status.value == "running"
    assert [h["action"] for h in api.store.history("exp")] == ["create", "start"]


def test_a_reason_against_the_verdict_lands_in_the_audit_trail(console: Console, api: Api) -> None:
    """With a reason the ship goes through; the history endpoint and the page show it."""
    _experiment(api)
    _traffic(api, 400, _treatment_wins)
    reason = "control keeps the legal disclaimer; v2 needs review first"
    assert console.act("exp", "ship", variant="control", reason=reason).status_code == 303
    history = api.call("GET", "/v1/experiments/exp/history").get_json()["history"]
    assert (history[-1]["action"], history[-1]["reason"]) == ("ship", reason)
    page = console.client.get("/experiments/exp").get_data(as_text=True)
    newest = page[page.index('data-action="ship"') :]
    assert f"reason: {reason}" in newest[: newest.index("</tr>")]


def test_shipping_the_verdicts_variant_needs_no_reason(console: Console, api: Api) -> None:
    """Following a ship verdict, the reason is optional (and none is stored)."""
    _experiment(api)
    _traffic(api, 400, _treatment_wins)
    _settle()
    assert console.act("exp", "ship", variant="treatment").status_code == 303
    assert api.store.get_experiment("exp").experiment.winner == "treatment"
    assert "reason" not in api.store.history("exp")[-1]


def test_console_and_report_show_the_same_numbers(console: Console, api: Api, app: Any) -> None:
    """For the same data the console's metrics table, sample ratio and reasons are the
    report's, cell for cell; each effect column names its unit."""
    _experiment(api, secondary_metrics=[{"name": "latency_ms", "type": "sum"}])
    _traffic(api, 400, _treatment_wins)
    latency = [{"event_id": f"l{i}", "unit_id": f"user-{i}", "metric": "latency_ms",
                "value": 100.0 + (i % 7) * 12.5} for i in range(0, 400, 3)]  # fmt: skip
    assert api.send_events(latency).status_code == 202
    page = console.client.get("/experiments/exp").get_data(as_text=True)
    report = render_html(experiment_results(app, api.store.get_experiment("exp")).analysis)
    console_table, report_table = _table(page), _table(report)
    assert console_table == report_table
    headers, purchase, latency_row = console_table[0], console_table[1], console_table[2]
    assert "Abs. effect, variant − control [95% CI]" in headers
    assert "Rel. effect, % of control [95% CI]" in headers
    absolute, relative = purchase[5], purchase[6]
    assert re.fullmatch(r"[+-][\d.]+ pp \[[+-][\d.]+ pp, [+-][\d.]+ pp\]", absolute), absolute
    assert re.fullmatch(r"[+-][\d.]+% \[[+-][\d.]+%, [+-][\d.]+%\]", relative), relative
    assert latency_row[3].endswith(" ms") and " ms [" in latency_row[5]
    srm = re.search(r"p = ([\d.e-]+)", _visible(report[report.index('id="srm"') :]))
    assert srm is not None and f"(p = {srm.group(1)})" in _visible(page)

    def items(text: str) -> list[str]:
        return [_visible(item) for item in re.findall(r"<li[^>]*>(.*?)</li>", text, re.S)]

    shown = items(page[page.index('id="reasons"') : page.index("Sample ratio:")])
    assert shown and set(shown) <= set(items(report))
