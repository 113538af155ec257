"""``abtest serve`` (the HTTP service under gunicorn) and ``abtest keys`` (API keys).

`serve` is a plain function too, so ``abtest demo`` and tests can start the service the
same way; on the first start with an empty store it prints ``admin key: <key>`` once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TextIO

from abtest.auth import Role, parse_role
from abtest.cli.store_options import (
    DEFAULT_DATA_DIR,
    REDIS_URL_ENV,
    add_store_arguments,
    choose_store,
    has_password,
)
from abtest.embedded import APPENDFSYNC_CHOICES, APPENDFSYNC_ENV
from abtest.errors import AbtestError, StoreUnavailable

ADMIN_KEY_LINE: Final = "admin key: "
# gunicorn's default (Apache "combined") plus the request time in microseconds.  The key
# travels in the Authorization header, which no field of it prints.
ACCESS_LOG_FORMAT: Final = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` and ``keys create|list|revoke``."""
    serve_cmd = subparsers.add_parser("serve", help="run the HTTP service under gunicorn")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve_cmd.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    serve_cmd.add_argument(
        "--threads", type=int, default=1,
        help="threads per worker; above 1 uses gunicorn's gthread workers (keep-alive)",
    )  # fmt: skip
    serve_cmd.add_argument(
        "--access-log", metavar="FILE",
        help="append one line per request to FILE ('-': stdout); off by default",
    )  # fmt: skip
    serve_cmd.add_argument(
        "--appendfsync", choices=APPENDFSYNC_CHOICES, default=None,
        help=f"embedded redis-server's fsync policy (default: ${APPENDFSYNC_ENV}, else "
        "everysec: a crash of redis-server may lose about 1 s of writes; always: none)",
    )  # fmt: skip
    serve_cmd.add_argument(
        "--monitor", action=argparse.BooleanOptionalAction, default=None,
        help="run 'abtest monitor' beside the service, restarted if it dies (default: on with "
        "the embedded redis-server; with --redis-url run monitors yourself, or pass --monitor)",
    )  # fmt: skip
    add_store_arguments(serve_cmd, exclusive=False)
    serve_cmd.set_defaults(handler=_serve)

    keys_cmd = subparsers.add_parser("keys", help="create, list and revoke API keys")
    actions = keys_cmd.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key and print it (only this once)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", default="", help="a label for listings")
    add_store_arguments(create, exclusive=True)
    create.set_defaults(handler=_keys_create)
    listing = actions.add_parser("list", help="list keys (ids and roles, never the keys)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_store_arguments(listing, exclusive=True)
    listing.set_defaults(handler=_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", help="the key's id (see 'abtest keys list')")
    add_store_arguments(revoke, exclusive=True)
    revoke.set_defaults(handler=_keys_revoke)


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 2,
    threads: int = 1,
    redis_url: str | None = None,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    access_log: str | None = None,
    appendfsync: str | None = None,
    config: Mapping[str, Any] | None = None,
    out: TextIO | None = None,
    on_ready: Callable[[str, str | None], None] | None = None,
    monitor: bool | None = None,
) -> int:
    """Run the service until SIGINT/SIGTERM; return the exit code.

    Without ``redis_url`` an embedded redis-server is started in ``data_dir`` and stopped
    on exit; ``appendfsync`` (default ``$ABTEST_APPENDFSYNC``, else ``everysec``) is its
    fsync policy.  Every file the service creates is private to this user (umask 077).
    ``on_ready(redis_url, admin_key)`` is called once Redis is ready, before
    gunicorn starts (``admin_key`` is None unless it was just created).  ``access_log`` is
    a file (``-``: stdout) that gets one `ACCESS_LOG_FORMAT` line per request.
    ``monitor``: run ``abtest monitor`` as a supervised child (`abtest.monitor_process`);
    None means yes on the embedded redis-server and no with ``redis_url``.
    """
    import redis

    from abtest.embedded import EmbeddedRedis, appendfsync_setting
    from abtest.redis_client import connect
    from abtest.store import Store
    from service import settings

    out = out or sys.stdout
    if redis_url and appendfsync:
        raise AbtestError("applies to the embedded redis-server only; set appendfsync "
                          "in the configuration of your Redis", "--appendfsync")  # fmt: skip
    fsync_policy = appendfsync_setting(appendfsync)  # a bad value stops before anything starts
    master = os.getpid()
    # Access log, metric and heartbeat files, the embedded store: this user's only.
    old_umask = os.umask(0o077)
    # Before any worker imports prometheus_client: values then go to per-process files
    # that a scrape of any worker sums up.
    metrics_dir = tempfile.mkdtemp(prefix="abtest-metrics-", dir=memory_dir())
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    embedded = None
    supervisor = None
    if monitor is None:
        monitor = not redis_url
    try:
        if not redis_url:
            embedded = EmbeddedRedis(data_dir, appendfsync=fsync_policy).start()
            redis_url = embedded.url
            print(f"redis: embedded redis-server, data in {Path(data_dir).resolve()} "
                  f"(appendfsync {fsync_policy})", file=out)  # fmt: skip
        app_config = {**(config or {}), "REDIS_URL": redis_url}
        if "ABTEST_EXPORT_DIR" not in os.environ:
            # Events drained for the results page land beside the data they came from.
            app_config.setdefault("EXPORT_DIR", str(Path(data_dir).resolve() / "export"))
        # A bad setting stops here, in one line, before a key is made or a worker boots.
        settings.load(app_config)
        client = connect(redis_url, decode_responses=True)
        try:
            admin_key = Store(client).create_first_admin_key()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise StoreUnavailable(f"cannot reach Redis: {exc}") from None
        finally:
            client.close()
        if admin_key is not None:
            print(f"{ADMIN_KEY_LINE}{admin_key}", file=out)
            print("  (shown once: store it now; 'abtest keys create' makes more)", file=out)
        if monitor:
            supervisor = _start_monitor(redis_url, app_config, out)
        print(f"abtest: serving on http://{host}:{port} with {workers} worker(s)", file=out)
        out.flush()
        if on_ready is not None:
            on_ready(redis_url, admin_key)
        options = {"bind": f"{host}:{port}", "workers": workers, "threads": threads}
        if access_log is not None:
            options.update(accesslog=access_log, access_log_format=ACCESS_LOG_FORMAT)
        return run_gunicorn(options, app_config)
    finally:
        # Workers are forks of this process and leave through this frame too: only the
        # master may stop Redis and remove the metrics directory.
        if os.getpid() == master:
            if supervisor is not None:
                supervisor.stop()
            if embedded is not None:
                embedded.stop()
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            os.umask(old_umask)


def _start_monitor(redis_url: str, app_config: Mapping[str, Any], out: TextIO) -> Any:
    """Start the supervised ``abtest monitor`` child with the service's settings."""
    from abtest.monitor_process import MonitorSupervisor
    from service import settings

    loaded = settings.load(app_config)
    environment = {
        REDIS_URL_ENV: redis_url,
        "ABTEST_OBSERVATION_HOURS": str(loaded["OBSERVATION_HOURS"]),
        "ABTEST_CLOCK": str(loaded["CLOCK"]),
    }
    export_dir = os.environ.get("ABTEST_EXPORT_DIR") or loaded.get("EXPORT_DIR")
    if export_dir:
        environment["ABTEST_EXPORT_DIR"] = str(Path(export_dir).resolve())
    supervisor = MonitorSupervisor(environment).start()
    print(f"abtest: monitor running beside the service (pid {supervisor.pid}; --no-monitor "
          "turns it off)", file=out)  # fmt: skip
    return supervisor


def run_gunicorn(options: Mapping[str, Any], app_config: Mapping[str, Any], *,
                 wrap: str | None = None) -> int:  # fmt: skip
    """Run ``create_app(app_config)`` under gunicorn in this process until it is stopped.

    ``wrap`` ("module:function") is called with each worker's app and returns the WSGI
    callable to serve instead (the benchmark puts a bare hello-world app beside it).
    """
    from gunicorn.app.base import BaseApplication

    def child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    class Application(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
        def load_config(self) -> None:
            settings = {
                "graceful_timeout": 10, "timeout": 30, "worker_tmp_dir": memory_dir(),
                **options, "child_exit": child_exit,
            }  # fmt: skip
            if int(settings.get("threads", 1)) > 1:
                settings["worker_class"] = "gthread"
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 25.1 opens one control socket per user by default
                # (~/.gunicorn/gunicorn.ctl): a second instance would take it over and the
                # first one's exit would delete it.  abtest serve does not use it.
                settings.setdefault("control_socket_disable", True)
            for name, value in settings.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return load_worker_app(app_config, wrap)

    master = os.getpid()
    try:
        Application().run()
    except SystemExit as exc:  # gunicorn's arbiter exits through sys.exit on shutdown
        if os.getpid() != master:
            raise  # a worker leaving: let it exit, never run the master's clean-up
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def load_worker_app(app_config: Mapping[str, Any], wrap: str | None = None) -> Any:
    """What each gunicorn worker serves: ``create_app(app_config)``, wrapped if asked."""
    import gc
    import importlib

    from service import create_app

    app = create_app(app_config)
    # Everything loaded so far lives as long as the worker: freezing it keeps the
    # collector from walking it again (a full collection of this heap took about
    # 100 ms, a stall for every request in flight; Python docs, gc.freeze).
    gc.freeze()
    if wrap:
        module, _, name = wrap.partition(":")
        return getattr(importlib.import_module(module), name)(app)
    return app


def memory_dir() -> str | None:
    """A tmpfs for the files workers write on every request, or None (the system default).

    Those are gunicorn's heartbeat file, touched after each request (its settings,
    ``worker_tmp_dir``: on a disk-backed directory it "may block a worker for arbitrary
    time"; /dev/shm is the documented fix), and prometheus_client's memory-mapped metric
    files, written by each request's counters.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _serve(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, got {args.port}")
    if args.workers < 1 or args.threads < 1:
        raise UsageError("--workers and --threads must be at least 1")
    if args.access_log not in (None, "-") and not Path(args.access_log).parent.is_dir():
        raise UsageError(f"--access-log: no directory {Path(args.access_log).parent}")
    redis_url = args.redis_url or os.environ.get(REDIS_URL_ENV) or None
    if args.redis_url and has_password(args.redis_url):
        _restart_without_url_in_argv(args)  # does not return
    return serve(host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                 redis_url=redis_url, data_dir=args.data_dir or DEFAULT_DATA_DIR,
                 access_log=args.access_log, appendfsync=args.appendfsync,
                 monitor=args.monitor)  # fmt: skip


def _restart_without_url_in_argv(args: argparse.Namespace) -> None:
    """Replace this process by the same ``abtest serve`` with the URL in the environment.

    ``/proc/<pid>/cmdline`` (what ``ps`` shows every user) holds a process's arguments for
    its whole life, and gunicorn's workers, forked from it, inherit them: a password given
    with ``--redis-url`` would be on show until the service stops.  After ``execve`` the
    arguments are the new ones; the URL travels in ``$ABTEST_REDIS_URL``, which only this
    user can read.  The shell's history still holds it, hence the warning.
    """
    choose_store(args)  # prints the warning
    argv = [sys.executable, "-P", "-m", "abtest", "serve", "--host", args.host,
            "--port", str(args.port), "--workers", str(args.workers),
            "--threads", str(args.threads)]  # fmt: skip
    for flag, value in (("--data-dir", args.data_dir), ("--access-log", args.access_log),
                        ("--appendfsync", args.appendfsync)):  # fmt: skip
        if value is not None:
            argv += [flag, value]
    if args.monitor is not None:
        argv.append("--monitor" if args.monitor else "--no-monitor")
    print("abtest: restarting with the URL in the environment, out of sight of ps",
          file=sys.stderr)  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, {**os.environ, REDIS_URL_ENV: args.redis_url})


def _with_store(args: argparse.Namespace, action: Callable[[Any], int]) -> int:
    import redis

    from abtest.embedded import open_redis
    from abtest.redis_client import connect
    from abtest.store import Store

    store = choose_store(args)
    with open_redis(store.redis_url, store.data_dir) as url:
        client = connect(url, decode_responses=True)
        try:
            return action(Store(client))
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise StoreUnavailable(f"cannot reach Redis: {exc}") from None
        finally:
            client.close()


def _keys_create(args: argparse.Namespace) -> int:
    role = parse_role(args.role, "--role")

    def create(store: Any) -> int:
        token, record = store.create_api_key(role, name=args.name)
        print(token)
        print(f"created {record.role} key {record.id}; it is shown only this once", file=sys.stderr)
        return 0

    return _with_store(args, create)


def _keys_list(args: argparse.Namespace) -> int:
    def listing(store: Any) -> int:
        records = store.list_api_keys()
        if args.json:
            print(json.dumps([r.to_dict() for r in records], indent=2))
            return 0
        print(f"{'id':<14} {'role':<6} {'created':<21} {'revoked':<21} name")
        for r in records:
            revoked = r.revoked_at or "-"
            print(f"{r.id:<14} {r.role.value:<6} {r.created_at:<21} {revoked:<21} {r.name}")
        return 0

    return _with_store(args, listing)


def _keys_revoke(args: argparse.Namespace) -> int:
    def revoke(store: Any) -> int:
        record = store.revoke_api_key(args.key_id)
        print(f"revoked {record.id} ({record.role.value}) at {record.revoked_at}")
        return 0

    return _with_store(args, revoke)
