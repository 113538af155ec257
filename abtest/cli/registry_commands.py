"""``abtest registry watch``: the MLflow registry bridge (`abtest.registry_bridge`, the
optional extra ``abtest[mlflow]``) against the HTTP API with an admin key
(``$ABTEST_API_KEY``, ``$ABTEST_URL``); the registry from ``--tracking-uri`` or MLflow's own
``$MLFLOW_TRACKING_URI`` / ``$MLFLOW_REGISTRY_URI``."""

from __future__ import annotations

import argparse

from abtest.cli.lifecycle_commands import _service_arguments


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``registry watch``."""
    registry = subparsers.add_parser("registry", help="the MLflow model registry bridge")
    commands = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    watch = commands.add_parser(
        "watch", help="register 'challenger' aliases, move 'champion', tag verdicts"
    )
    watch.add_argument("--bind", action="append", required=True, metavar="MODEL=EXPERIMENT",
                       help="a registered model and the experiment its challengers enter "
                       "(repeatable)")  # fmt: skip
    watch.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's own)")
    watch.add_argument("--registry-uri", help="MLflow registry URI (default: the tracking URI)")
    watch.add_argument("--interval", type=float, default=60.0, help="seconds between syncs")
    watch.add_argument("--once", action="store_true", help="sync once and exit")
    _service_arguments(watch)
    watch.set_defaults(handler=_watch)


def _watch(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError

    if not args.api_key:
        raise UsageError("an admin API key is needed: set ABTEST_API_KEY or pass --api-key")
    if args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds")
    try:
        from mlflow import MlflowClient

        from abtest.registry_bridge import Binding, RegistryBridge
    except ImportError:
        raise UsageError("the registry bridge needs MLflow: pip install 'abtest[mlflow]'") from None
    from abtest.admin_client import AdminClient

    bindings = [Binding.parse(text) for text in args.bind]
    registry = MlflowClient(tracking_uri=args.tracking_uri,
                            registry_uri=args.registry_uri or args.tracking_uri)  # fmt: skip
    with AdminClient(args.url, args.api_key, timeout=30.0) as admin:
        bridge = RegistryBridge(admin, registry, bindings)
        if not args.once:
            bridge.watch(args.interval)
            return 0
        events = bridge.sync()
        for event in events:
            print(event)
        if not events:
            print("nothing to do")
        return 1 if any(event.action == "error" for event in events) else 0
