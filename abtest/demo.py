"""``abtest demo``: the whole loop, plan -> assign -> outcomes -> export -> analyse -> ship.

Everything runs on the real components: `abtest serve` as a child process (gunicorn over
the Flask app, the embedded redis-server in a data directory), the Python client speaking
HTTP, `abtest.export` writing Parquet, `analysis` reading it, and the ship action through
the HTTP API.  The simulated users are drawn from ``numpy.random.default_rng(seed)`` in a
fixed order, so the same seed gives the same numbers.

The service runs on a controlled clock (``ABTEST_CLOCK=controlled``, demo and test mode
only), which the demo moves hour by hour through a simulated week that ended before the
run: users arrive over those days (more in the day than at night), each exposure, event
and audit entry is dated on the clock, and the report's charts show the days.

The run's files (the embedded store, ``experiment.json``, ``export/``, ``report.html``,
``decision.json``) stay in a kept folder, ``./abtest-demo/`` unless ``--data-dir`` says
otherwise, with mode 0700; only the processes are stopped.  The next run in the same folder
replaces it; a non-empty folder the demo did not make is refused.

The simulation: each user has a latent propensity (lognormal).  Some users were active
in the week before the experiment (purchases with past timestamps, which CUPED uses as a
covariate).  In the experiment a user converts with probability ``baseline x propensity``,
times ``1 + lift`` under the new model; revenue per purchase is lognormal; every request
has a latency, the new model being a little faster (the guardrail).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from abtest.admin_client import AdminClient
from abtest.errors import InvalidInput, StoreUnavailable

if TYPE_CHECKING:
    from abtest.service_process import ServiceProcess

EXPERIMENT_KEY: Final = "ranker-v2-demo"
CONTROLLED_CLOCK: Final = {"ABTEST_CLOCK": "controlled"}  # the service's clock: the demo's
CONTROL, TREATMENT = "v1", "v2"
BASELINE: Final = 0.10  # conversion rate of the current model
DEFAULT_FOLDER: Final = "abtest-demo"  # under the working directory; kept after the run
MARKER_FILE: Final = ".abtest-demo"
_APP_THREADS: Final = 8
_PRE_PERIOD_DAYS: Final = 7
DEMO_DAYS: Final = 7  # simulated days of traffic


@dataclass(frozen=True)
class DemoSettings:
    """What the demo simulates; the defaults finish in well under a minute."""

    users: int = 6000
    lift: float = 0.30  # relative lift of the conversion rate under the new model
    seed: int = 7
    data_dir: str | None = None  # the kept folder; default DEFAULT_FOLDER
    keep_running: bool = False
    port: int | None = None
    pre_period_share: float = 0.6  # users with activity before the experiment (CUPED)


@dataclass(frozen=True)
class DemoOutcome:
    """What the demo found and did."""

    planned_units_per_variant: int
    units: dict[str, int]
    verdict: str
    variant: str | None
    reasons: tuple[str, ...]
    report: Path
    record: Path
    shipped: str | None
    served_after_ship: dict[str, int]


def demo_experiment(planned_units_per_variant: int) -> dict[str, Any]:
    """The demo's experiment: two versions of a ranking model, one guardrail."""
    return {
        "key": EXPERIMENT_KEY,
        "description": "Demo: ranking model v2 against v1.",
        "owner": "demo@abtest.invalid",
        "hypothesis": "v2 ranks the bought item higher, so more users purchase.",
        "control": CONTROL,
        "variants": [
            {"key": CONTROL, "weight": 1, "payload": {"model": "ranker", "version": "1.8.2"}},
            {"key": TREATMENT, "weight": 1, "payload": {"model": "ranker", "version": "2.0.0"}},
        ],
        "primary_metric": {"name": "purchase", "type": "binomial"},
        "guardrail_metrics": [
            {
                "name": "latency_ms:p95",
                "type": "quantile",
                "higher_is_better": False,
                "margin": 0.05,
            },
        ],
        "secondary_metrics": [{"name": "revenue", "type": "sum"}],
        "planned_units_per_variant": planned_units_per_variant,
    }


def run_demo(settings: DemoSettings, out: TextIO = sys.stdout) -> DemoOutcome:
    """Run the loop end to end, printing each step; return what happened."""
    if settings.users < 100:
        raise InvalidInput("the demo needs at least 100 users", "--users")
    if not -0.9 < settings.lift < 5:
        raise InvalidInput("lift must lie in (-0.9, 5)", "--lift")
    from analysis import sample_size_proportion

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    plan = sample_size_proportion(baseline=BASELINE, mde=settings.lift, relative=True)
    planned = int(plan.n_per_variant)
    say(f"1. plan      baseline {BASELINE:.0%} conversion, detect a {settings.lift:+.0%} "
        f"relative lift (alpha 0.05, power 0.8): {planned:,} users per variant")  # fmt: skip
    if settings.users // 2 < planned:
        say(f"            the demo simulates {settings.users:,} users: fewer than planned, "
            "so expect 'keep_running'")  # fmt: skip
    data_dir = Path(settings.data_dir or DEFAULT_FOLDER)
    old_umask = os.umask(0o077)  # the kept files are this user's only
    try:
        prepare_folder(data_dir)
        with contextlib.ExitStack() as stack:
            return _serve_and_run(stack, data_dir, planned, settings, say)
    finally:
        os.umask(old_umask)


def _serve_and_run(stack: contextlib.ExitStack, data_dir: Path, planned: int,
                   settings: DemoSettings, say: Callable[[str], None]) -> DemoOutcome:  # fmt: skip
    from abtest.embedded import free_port
    from abtest.service_process import running_service

    port = settings.port or free_port()
    server = stack.enter_context(
        running_service(data_dir, port, "--workers", "2", settings=CONTROLLED_CLOCK)
    )
    say(f"2. serve     abtest serve on {server.url} (embedded redis-server in {shown(data_dir)})")
    admin, sdk = demo_keys(server.admin_key, data_dir)
    api = stack.enter_context(AdminClient(server.url, admin, timeout=60.0))
    first_day = simulated_start(DEMO_DAYS)
    api.set_clock(first_day)
    definition = demo_experiment(planned)
    config_file = data_dir / "experiment.json"
    config_file.write_text(json.dumps(definition, indent=2) + "\n", encoding="utf-8")
    api.create_experiment(definition)
    started = api.start_experiment(EXPERIMENT_KEY)
    say(f"3. start     created and started '{EXPERIMENT_KEY}' from {shown(config_file)} "
        f"(config version {started.version})")  # fmt: skip
    units = _simulate(server.url, sdk, settings, api, first_day)
    say(f"4. traffic   {settings.users:,} users over {DEMO_DAYS} simulated days through the HTTP "
        "API with the Python client: "
        + ", ".join(f"{v} {n:,}" for v, n in sorted(units.items())))  # fmt: skip
    export_dir = data_dir / "export"
    rows = _export(data_dir, export_dir)
    say(f"5. export    {rows['exposures']:,} exposures and {rows['outcomes']:,} outcome "
        f"events to Parquet in {shown(export_dir)}")  # fmt: skip
    outcome = _analyse_and_ship(_Run(api, server.url, sdk, data_dir, planned, units, settings), say)
    finish(server, admin, data_dir, keep_running=settings.keep_running, say=say)
    return outcome


def finish(
    server: ServiceProcess, admin_key: str, data_dir: Path, *, keep_running: bool,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """With ``keep_running``, leave the service and its console up until Ctrl-C; then say
    where the run's files stay."""
    if keep_running:
        say(f"\nconsole: {server.url}/  (sign in with the admin key: {admin_key})")
        say("press Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            while server.process.poll() is None:
                time.sleep(0.5)
    say(f"kept in {shown(data_dir)}/ after the service stops; the next run there replaces it")


@dataclass(frozen=True)
class _Run:
    """What the later steps need from the earlier ones."""

    api: AdminClient
    url: str
    sdk_key: str
    data_dir: Path
    planned: int
    units: dict[str, int]
    settings: DemoSettings


def _analyse_and_ship(run: _Run, say: Callable[[str], None]) -> DemoOutcome:
    from analysis import analyze_experiment, write_report
    from analysis.data.load import fingerprint
    from analysis.decision.record import write_decision_record

    api, data_dir, settings = run.api, run.data_dir, run.settings
    export_dir = data_dir / "export"
    experiment = api.get_experiment(EXPERIMENT_KEY).experiment
    sources = {"exposures": export_dir / "exposures", "outcomes": export_dir / "outcomes"}
    # A simulated session happens at its exposure's instant: every outcome arrives within a
    # second of its exposure, so a second is each unit's whole observation window for the
    # always-valid test (its default, 24 h, suits real sessions).  Analysing as of the
    # simulated week's end, every unit has been observed for its whole window: same seed,
    # same numbers.
    result = analyze_experiment(
        experiment, sources["exposures"], sources["outcomes"], seed=settings.seed,
        observation_window=timedelta(seconds=1), as_of=run.api.clock(),
    )  # fmt: skip
    decision = result.decision
    say(f"6. analyse   verdict: {decision.verdict.upper()}"
        + (f" {decision.variant}" if decision.variant else ""))  # fmt: skip
    for row in result.rows:
        lo, hi = row.to_dict()["relative_ci"] or (float("nan"), float("nan"))
        say(f"            {row.metric:<16} {row.variant}: relative effect "
            f"{row.to_dict()['relative_effect']:+.1%}  95% CI [{lo:+.1%}, {hi:+.1%}]  "
            f"p={row.to_dict()['p_value']:.3g}")  # fmt: skip
    for reason in decision.reasons:
        say(f"            - {reason}")
    for warning in decision.warnings:
        say(f"            ! {warning}")
    report = write_report(result, data_dir / "report.html")
    record = data_dir / "decision.json"
    write_decision_record(
        result, record, experiment=experiment,
        data_sha256={name: fingerprint(path) for name, path in sources.items()},
    )  # fmt: skip
    say(f"7. report    {shown(Path(report))}")
    say(f"            decision record {shown(record)}")
    shipped: str | None = None
    served: dict[str, int] = {}
    if decision.verdict == "ship" and decision.variant:
        api.ship_experiment(EXPERIMENT_KEY, decision.variant)
        shipped = decision.variant
        served = _served(run.url, run.sdk_key, settings.users)
        everyone = served == {f"{shipped} (shipped)": settings.users}
        say(f"8. ship      shipped {shipped}; every one of {settings.users:,} users now gets: "
            + ", ".join(f"{k} {n:,}" for k, n in served.items())
            + (" - ok" if everyone else " - MISMATCH"))  # fmt: skip
    else:
        say(f"8. ship      not shipped: the verdict is '{decision.verdict}'")
    return DemoOutcome(
        planned_units_per_variant=run.planned,
        units=run.units,
        verdict=str(decision.verdict),
        variant=decision.variant,
        reasons=tuple(decision.reasons),
        report=Path(report),
        record=record,
        shipped=shipped,
        served_after_ship=served,
    )


# -- the kept folder and the service ---------------------------------------------------------
def prepare_folder(folder: Path) -> None:
    """Make ``folder`` the run's kept folder: new, empty, or a previous demo run's (replaced).

    A non-empty folder without the demo's marker file is refused: the demo deletes only what
    it made itself.
    """
    from abtest.embedded import private_directory, running_url

    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"{folder} exists and is not a directory", "--data-dir")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / MARKER_FILE).is_file():
            raise InvalidInput(
                f"{folder} is not empty and was not made by abtest demo; "
                "choose another --data-dir", "--data-dir",
            )  # fmt: skip
        if running_url(folder) is not None:
            raise InvalidInput(f"{folder} is in use by a running demo", "--data-dir")
        shutil.rmtree(folder)
    private_directory(folder)
    (folder / MARKER_FILE).write_text(
        "Made by 'abtest demo': its next run in this folder replaces everything here.\n",
        encoding="utf-8",
    )


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def demo_keys(printed_admin_key: str | None, data_dir: Path) -> tuple[str, str]:
    """The admin key (printed by the first start, else a new one) and a new sdk key."""
    import redis

    from abtest.auth import Role
    from abtest.embedded import open_redis
    from abtest.store import Store

    with open_redis(None, data_dir) as redis_url:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            store = Store(client)
            admin = printed_admin_key or store.create_api_key(Role.ADMIN, name="demo-admin")[0]
            sdk = store.create_api_key(Role.SDK, name="demo-app")[0]
        finally:
            client.close()
    return admin, sdk


# -- simulated app traffic ------------------------------------------------------------------
def simulated_start(days: int) -> datetime:
    """Midnight UTC ``days + 1`` days ago: the simulated traffic ends before the present."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days + 1)


def arrival_hours(users: int, days: int, seed: int) -> Any:
    """Each user's hour of arrival (0 to ``24 days - 1``), more by day than by night (a
    generator of its own, so the users' outcomes do not depend on it)."""
    import numpy as np

    hour_of_day = np.arange(24 * days) % 24
    weights = 1.0 + 0.8 * np.sin((hour_of_day - 9) / 24 * 2 * np.pi)  # peak mid-afternoon
    return np.random.default_rng([seed, 1]).choice(24 * days, size=users,
                                                   p=weights / weights.sum())  # fmt: skip


_COUNTRIES: Final = ("DE", "FR", "US", "GB", "BR")
_COUNTRY_SHARES: Final = (0.3, 0.2, 0.25, 0.15, 0.1)


def _simulate(
    url: str, sdk_key: str, settings: DemoSettings, api: AdminClient, first_day: datetime
) -> dict[str, int]:
    """Users arrive hour by hour on the controlled clock, get a variant over HTTP, and
    their outcomes are tracked at that time."""
    import numpy as np

    from abtest.client import Client

    rng = np.random.default_rng(settings.seed)
    n = settings.users
    propensity = rng.lognormal(mean=-0.32, sigma=0.8, size=n)  # mean 1
    active_before = rng.random(n) < settings.pre_period_share
    # Active users had up to a week of visits before the test; the same propensity drives
    # their purchases then and now, which is what CUPED's covariate captures.
    pre_purchases = rng.binomial(_PRE_PERIOD_DAYS, np.clip(BASELINE * propensity, 0, 1))
    pre_purchases = np.where(active_before, pre_purchases, 0)
    convert_draw = rng.random(n)
    revenue = rng.lognormal(mean=3.5, sigma=0.6, size=n)
    requests = rng.integers(1, 6, size=n)
    latency_base = rng.lognormal(mean=4.6, sigma=0.35, size=(n, 5))  # about 100 ms
    hours = arrival_hours(n, DEMO_DAYS, settings.seed)
    # Attributes sent at assignment, kept for `abtest analyze --segment country`; their own
    # generator, so the draws above (and the demo's numbers) stay what they were.
    places = np.random.default_rng([settings.seed, 2])
    country = places.choice(_COUNTRIES, size=n, p=_COUNTRY_SHARES)
    platform = places.choice(("ios", "android", "web"), size=n, p=(0.4, 0.4, 0.2))

    def visit(client: Client, i: int, now: float) -> str | None:
        """One user's session at ``now`` (epoch seconds, the clock's); the outcome depends
        only on ``i`` and the seed."""
        unit_id = f"demo-user-{i:06d}"
        for day in range(int(pre_purchases[i])):
            before = now - (day + 1) * 86400
            client.track(unit_id, "purchase", 1.0, timestamp=before)
            client.track(unit_id, "revenue", float(revenue[i]), timestamp=before)
        attributes = {"country": str(country[i]), "platform": str(platform[i])}
        answer = client.assign(EXPERIMENT_KEY, unit_id, attributes)
        if not answer.in_experiment or answer.variant is None:
            return None
        treated = answer.variant == TREATMENT
        rate = BASELINE * propensity[i] * ((1 + settings.lift) if treated else 1.0)
        for latency in latency_base[i, : requests[i]] * (0.95 if treated else 1.0):
            client.track(unit_id, "latency_ms", float(latency), timestamp=now)
        if convert_draw[i] < min(rate, 1.0):
            client.track(unit_id, "purchase", 1.0, timestamp=now)
            client.track(unit_id, "revenue", float(revenue[i]), timestamp=now)
        return answer.variant

    variants: list[str | None] = []
    with Client(url, sdk_key, batch_size=500, flush_interval=0.2, max_buffer=200_000) as client:
        # Concurrent users, as an app server would send them; each user's numbers are fixed
        # by the seed, so the totals do not depend on the interleaving.
        with ThreadPoolExecutor(max_workers=_APP_THREADS) as pool:
            for hour in range(24 * DEMO_DAYS):
                users = np.flatnonzero(hours == hour)
                if not len(users):
                    continue
                now = api.set_clock(first_day + timedelta(hours=int(hour))).timestamp()
                variants += pool.map(visit, [client] * len(users), users.tolist(),
                                     [now] * len(users))  # fmt: skip
        api.set_clock(first_day + timedelta(days=DEMO_DAYS))
        units = Counter(v for v in variants if v is not None)
        if not client.flush(timeout=60):
            raise StoreUnavailable("the client could not deliver every event in time")
        stats = client.stats()
    if stats.dropped or stats.rejected:
        raise StoreUnavailable(f"events were lost: {stats.to_dict()}")
    return dict(units)


def _export(data_dir: Path, export_dir: Path) -> dict[str, int]:
    import redis

    from abtest.embedded import open_redis
    from abtest.export import export

    with open_redis(None, data_dir) as redis_url:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            result = export(client, out_dir=export_dir)
        finally:
            client.close()
    return {"exposures": 0, "outcomes": 0, **result.rows}


def _served(url: str, sdk_key: str, users: int) -> dict[str, int]:
    """What every demo user gets after the ship, asked over HTTP again."""
    from abtest.client import Client

    def ask(client: Client, i: int) -> str:
        answer = client.assign(EXPERIMENT_KEY, f"demo-user-{i:06d}")
        return f"{answer.variant} ({answer.reason.value})"

    with Client(url, sdk_key) as client, ThreadPoolExecutor(max_workers=_APP_THREADS) as pool:
        return dict(Counter(pool.map(lambda i: ask(client, i), range(users))))
