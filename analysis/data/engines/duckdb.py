"""The default engine: DuckDB in this process, over local files or fsspec URLs.

Nothing is read into Python memory: each source is a view over the original files, so
the join runs inside DuckDB however large they are (out of core when needed).  Remote URLs
are read through their fsspec filesystem, registered with the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from abtest.export_files import FOLDER_COLUMN, FOLDER_COLUMN_PATTERN, folder_key

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from analysis.data.sources import Location


_FILE: Final = "_abtest_source_file"
"""The column naming each row's file, while the export's folder column is read from it."""


def connect() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection with UTC as its time zone."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    # Row order of intermediate tables is irrelevant here; keeping it costs time and memory.
    con.execute("SET preserve_insertion_order = false")
    return con


class DuckDBEngine:
    """An `analysis.data.engines.Engine` over one DuckDB connection.

    ``con``: an existing connection to work in (left open by `close`); default a new one.
    """

    name = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.owned = con is None
        self.con = connect() if con is None else con
        self._filesystems: set[str] = set()

    def _register_filesystem(self, location: Location) -> None:
        if location.fs is not None and location.protocol not in self._filesystems:
            self.con.register_filesystem(location.fs)
            self._filesystems.add(location.protocol)

    def scan_frame(self, relation: str, frame: pd.DataFrame) -> None:
        self.con.register(relation, frame)

    def scan_parquet(self, relation: str, locations: list[Location], files: list[str]) -> None:
        for location in locations:
            self._register_filesystem(location)
        # Hive partitioning off: folders that are not the export's (date=..., a user's own)
        # add no columns, and files of an earlier layout mix with this one's.  Only the
        # export's experiment=<key> folder supplies a column, to files without it.
        listed = f"[{', '.join(map(quote, files))}]"
        if not any(folder_key(file) for file in files):
            self.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {relation} AS SELECT * FROM read_parquet("
                f"{listed}, union_by_name = true, hive_partitioning = false)"
            )
            return
        scan = (
            f"read_parquet({listed}, union_by_name = true, hive_partitioning = false, "
            f"filename = '{_FILE}')"
        )
        key = f"nullif(regexp_extract({_FILE}, {quote(FOLDER_COLUMN_PATTERN)}, 1), '')"
        known = self.con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        if any(row[0] == FOLDER_COLUMN for row in known):
            columns = (
                f"* EXCLUDE ({_FILE}) REPLACE (coalesce({FOLDER_COLUMN}, {key}) AS {FOLDER_COLUMN})"
            )
        else:
            columns = f"* EXCLUDE ({_FILE}), {key} AS {FOLDER_COLUMN}"
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {relation} AS SELECT {columns} FROM {scan}")

    def scan_csv(self, relation: str, location: Location) -> None:
        self._register_filesystem(location)
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {relation} AS SELECT * FROM "
            f"read_csv({quote(location.path)}, header = true, auto_detect = true)"
        )

    def column_types(self, relation: str) -> dict[str, str]:
        rows = self.con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        return {str(row[0]): str(row[1]).upper() for row in rows}

    def parquet_null_counts(self, files: list[str]) -> dict[str, int | None]:
        # Row-group statistics answer without a scan of 10M rows.
        # A column some files lack (the export's folder column) is not counted here.
        rows = self.con.execute(
            "SELECT path_in_schema, sum(stats_null_count), "
            "count(*) FILTER (WHERE stats_null_count IS NULL), count(DISTINCT file_name) "
            f"FROM parquet_metadata([{', '.join(map(quote, files))}]) GROUP BY 1"
        ).fetchall()
        every = len(set(files))
        return {str(r[0]): None if int(r[2]) or int(r[3]) < every else int(r[1] or 0) for r in rows}

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def frame(self, sql: str) -> pd.DataFrame:
        frame: pd.DataFrame = self.con.execute(sql).df()
        return frame

    def view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def table(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def close(self) -> None:
        if self.owned:
            self.con.close()


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
