"""The engines that run the per-unit join: DuckDB (default, in process) and Apache Spark.

The join and aggregation are defined once, as SQL in DuckDB's dialect
(`analysis.data.join`, `analysis.data.daily`, the validation of `analysis.data.load`).
DuckDB runs that text as written; the Spark engine transpiles each statement to Spark SQL
with SQLGlot (`analysis.data.engines.spark`).  An engine only knows how to open the
sources, run a statement, and keep an intermediate table; it holds no rule of the join.

Only what is small leaves an engine: per-variant sums, per-day sums, event counts, and the
event values of quantile metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from abtest.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from analysis.data.sources import Location

ENGINES: Final = ("duckdb", "spark")


class Engine(Protocol):
    """What `analysis.data.load` and `analysis.data.join` need from an engine.

    Statements are DuckDB-dialect SQL; relation names are plain identifiers.
    """

    name: str

    def scan_frame(self, relation: str, frame: pd.DataFrame) -> None:
        """Expose a DataFrame as the view ``relation``."""

    def scan_parquet(self, relation: str, locations: list[Location], files: list[str]) -> None:
        """Expose Parquet files as ``relation``: ``files``, all the data files of the
        folders (or the one file) ``locations``."""

    def scan_csv(self, relation: str, location: Location) -> None:
        """Expose a CSV file with a header row as ``relation``."""

    def column_types(self, relation: str) -> dict[str, str]:
        """Column name -> DuckDB type name (upper case) of ``relation``."""

    def parquet_null_counts(self, files: list[str]) -> dict[str, int | None]:
        """Null counts per column from Parquet statistics (None: not in every file's)."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query and fetch its (small) result."""

    def frame(self, sql: str) -> pd.DataFrame:
        """Run a query and fetch its result as a DataFrame."""

    def view(self, name: str, sql: str) -> None:
        """Name a query (evaluated where it is used)."""

    def table(self, name: str, sql: str) -> None:
        """Name a query's result, computed once and kept for the next statements."""

    def close(self) -> None:
        """Release what the engine holds for this analysis."""


def open_engine(engine: str = "duckdb", *, spark_master: str | None = None) -> Engine:
    """A fresh engine for one analysis.

    Parameters
    ----------
    engine : {"duckdb", "spark"}
        DuckDB in this process, or Apache Spark (``pip install 'abtest[spark]'``).
    spark_master : str, optional
        Spark only: the master URL (``local[*]``, ``spark://host:7077``, ``yarn``...) of
        the session to create; an active session in this process is used as it is.

    Raises
    ------
    InvalidInput
        An unknown engine, a master URL for DuckDB, or Spark without pyspark installed.
    """
    if engine == "duckdb":
        if spark_master is not None:
            raise InvalidInput("a Spark master URL needs engine='spark'", "spark_master")
        from analysis.data.engines.duckdb import DuckDBEngine

        return DuckDBEngine()
    if engine == "spark":
        from analysis.data.engines.spark import SparkEngine

        spark: Engine = SparkEngine.start(spark_master)
        return spark
    raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", "engine")
