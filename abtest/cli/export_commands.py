"""``abtest export``: drain the exposure and outcome streams into Parquet files."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis

DEFAULT_DATA_DIR = ".abtest"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``export``."""
    cmd = subparsers.add_parser(
        "export",
        help="drain exposures and outcomes from Redis into Parquet files",
        description="Write every buffered exposure and outcome to DIR/exposures/<experiment>/"
        "<date>/*.parquet and DIR/outcomes/<date>/*.parquet, then remove them from Redis. "
        "Safe to run again after a crash and concurrently.",
    )
    cmd.add_argument("--out", required=True, metavar="DIR", help="output directory")
    source = cmd.add_mutually_exclusive_group()
    source.add_argument("--redis-url", metavar="URL", help="Redis to drain (default: $REDIS_URL)")
    source.add_argument(
        "--data-dir", metavar="DIR",
        help=f"data dir of the embedded redis-server (default: {DEFAULT_DATA_DIR} when no URL)",
    )  # fmt: skip
    cmd.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="stream entries per batch (default 5000)")  # fmt: skip
    cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    cmd.set_defaults(handler=_export)


def _running_embedded_url(data_dir: Path) -> str:
    """URL of the embedded redis-server that another process (``abtest serve``) runs."""
    from abtest.errors import StoreUnavailable

    settings: dict[str, str] = {}
    try:
        text = (data_dir / "redis.conf").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreUnavailable(f"no redis.conf in {data_dir}") from None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        settings[name] = value.strip()
    if "port" not in settings or "requirepass" not in settings:
        raise StoreUnavailable(f"{data_dir / 'redis.conf'} names no port and password")
    return f"redis://:{settings['requirepass']}@127.0.0.1:{settings['port']}/0"


@contextlib.contextmanager
def _connect(args: argparse.Namespace) -> Iterator[Redis[Any]]:
    import redis

    from abtest.embedded import EmbeddedRedis
    from abtest.errors import AbtestError

    url = args.redis_url or (None if args.data_dir else os.environ.get("REDIS_URL"))
    if url:
        client = redis.Redis.from_url(url)
        try:
            yield client
        finally:
            client.close()
        return
    data_dir = Path(args.data_dir or DEFAULT_DATA_DIR)
    server = EmbeddedRedis(data_dir)
    try:
        server.start()
    except AbtestError as exc:
        if "in use" not in exc.message:
            raise
        # `abtest serve` owns this data dir: drain through its server instead.
        client = redis.Redis.from_url(_running_embedded_url(data_dir))
        try:
            yield client
        finally:
            client.close()
        return
    try:
        client = redis.Redis.from_url(server.url)
        try:
            yield client
        finally:
            client.close()
    finally:
        server.stop()


def _export(args: argparse.Namespace) -> int:
    import redis

    from abtest.cli import UsageError
    from abtest.errors import StoreUnavailable
    from abtest.export import DEFAULT_BATCH_SIZE, export

    batch_size = DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    try:
        with _connect(args) as client:
            result = export(client, out_dir=out, batch_size=batch_size)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"cannot reach Redis: {exc}") from None
    except redis.AuthenticationError as exc:
        raise StoreUnavailable(f"Redis refused the password: {exc}") from None
    summary = result.to_dict()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        rows = summary["rows"]
        print(f"exposures  {rows['exposures']} rows")
        print(f"outcomes   {rows['outcomes']} rows")
        print(f"files      {summary['files']} written to {out}")
        if summary["quarantined"]:
            print(f"quarantine {summary['quarantined']} malformed entries (see {out}/quarantine)")
        for stream in summary["skipped"]:
            print(f"skipped    {stream} (another export holds it; run again later)")
    return 0
