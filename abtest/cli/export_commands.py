"""``abtest export``: drain the exposure and outcome streams into Parquet files."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from abtest.cli.store_options import add_store_arguments, choose_store

if TYPE_CHECKING:
    from abtest.redis_client import AnyRedis


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
    add_store_arguments(cmd, exclusive=True)
    cmd.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="stream entries per batch (default 5000)")  # fmt: skip
    cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    cmd.set_defaults(handler=_export)


@contextlib.contextmanager
def _connect(args: argparse.Namespace) -> Iterator[AnyRedis]:
    from abtest.embedded import open_redis
    from abtest.redis_client import connect

    # open_redis uses the server that `abtest serve` runs on the data dir, or starts one on
    # its store for the duration of the export (and refuses a data dir without a store).
    store = choose_store(args)
    with open_redis(store.redis_url, store.data_dir) as resolved:
        client = connect(resolved)
        try:
            yield client
        finally:
            client.close()


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
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise StoreUnavailable(f"cannot reach Redis: {exc}") from None
    summary = result.to_dict()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        rows = summary["rows"]
        print(f"exposures  {rows['exposures']} rows")
        print(f"outcomes   {rows['outcomes']} rows")
        if rows["holdout"]:
            print(f"holdout    {rows['holdout']} rows")
        print(f"files      {summary['files']} written to {out}")
        if summary["quarantined"]:
            print(f"quarantine {summary['quarantined']} malformed entries (see {out}/quarantine)")
        for stream in summary["skipped"]:
            print(f"skipped    {stream} (another export holds it; run again later)")
    return 0
