"""``abtest demo``: one command from plan to ship on the real components."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo``."""
    from abtest.demo import DemoSettings

    defaults = DemoSettings()
    demo = subparsers.add_parser(
        "demo",
        help="plan, run, analyse and ship a simulated model A/B test end to end",
        description="Starts the service on an embedded Redis, simulates app traffic through "
        "the HTTP API, exports, analyses, writes the report and ships the winner.",
    )
    add = demo.add_argument
    add("--users", type=int, default=defaults.users, help="simulated users (default %(default)s)")
    add("--lift", type=float, default=defaults.lift,
        help="true relative lift of v2's conversion rate (default %(default)s)")  # fmt: skip
    add("--seed", type=int, default=defaults.seed,
        help="random seed: same seed, same numbers (default %(default)s)")  # fmt: skip
    add("--data-dir", default=None,
        help="folder for the run's files, kept afterwards (default ./abtest-demo/; a previous "
        "demo's folder is replaced, any other non-empty folder refused)")  # fmt: skip
    add("--port", type=int, default=None, help="service port (default: a free one)")
    add("--keep-running", action="store_true",
        help="leave the service up with the web console until Ctrl-C")  # fmt: skip
    add("--scenario", choices=("ab", "rollout"), default="ab",
        help="ab: an A/B test from plan to ship (default); rollout: two guarded rollouts over "
        "simulated days, one rolled back by the monitor with a webhook, one shipped")  # fmt: skip
    add(
        "--users-per-hour",
        type=int,
        default=None,
        help="rollout scenario: users per simulated hour on each surface (default 120)",
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from abtest.demo import DemoSettings, run_demo

    if args.scenario == "rollout":
        return _rollout(args)
    if args.users_per_hour is not None:
        from abtest.cli import UsageError

        raise UsageError("--users-per-hour belongs to --scenario rollout")

    outcome = run_demo(
        DemoSettings(
            users=args.users,
            lift=args.lift,
            seed=args.seed,
            data_dir=args.data_dir,
            keep_running=args.keep_running,
            port=args.port,
        )
    )
    return 0 if outcome.report.exists() else 1


def _rollout(args: argparse.Namespace) -> int:
    from abtest.demo_rollout import RolloutDemoSettings, run_rollout_demo

    defaults = RolloutDemoSettings()
    outcome = run_rollout_demo(
        RolloutDemoSettings(
            users_per_hour=args.users_per_hour or defaults.users_per_hour,
            seed=args.seed,
            data_dir=args.data_dir,
            keep_running=args.keep_running,
            port=args.port,
        )
    )
    return 0 if outcome.report.exists() else 1
