"""Apache Spark as the engine of the join: the same SQL, transpiled by SQLGlot.

``pip install 'abtest[spark]'`` (pyspark 4; Spark needs Java 17 or later).  The statements of
`analysis.data.join`, `analysis.data.daily` and `analysis.data.load` are DuckDB SQL;
`to_spark` parses each with SQLGlot's DuckDB dialect and writes it in Spark's.  The few
DuckDB functions SQLGlot reads only as opaque names are mapped to the expressions it
knows (`_DUCKDB_FUNCTIONS`), so the text of the join is still written once.

Sources: Parquet folders are read by Spark itself (``recursiveFileLookup``: any layout,
columns from the files, names starting with ``_`` or ``.`` skipped; the export's
``experiment=<key>`` folders give their files the ``experiment`` column), through its own
Hadoop filesystems: ``s3a://``, ``gs://`` (the GCS connector), ``abfss://``, ``hdfs://``,
local paths.  DataFrames are handed over with ``createDataFrame``.

What reaches the driver: the small results (per-variant and per-day sums, event counts)
and, for quantile metrics only, every counted event value of the metric with its unit id
(exact quantiles and the unit-clustered bootstrap need them; about 30-60 bytes per event).
Intermediate tables are cached (memory, spilling to disk) and released when the analysis
ends.  The session is the active one of this process if there is one (its master and
settings are left as they are, except the SQL time zone, set to UTC for the analysis and
restored after), else a new one on ``spark_master`` (default ``local[*]``), which stays up
for the next analysis: starting Spark takes 10-20 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from abtest.errors import InvalidInput
from abtest.export_files import FOLDER_COLUMN, FOLDER_COLUMN_PATTERN, folder_key

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from analysis.data.sources import Location

_DUCKDB_FUNCTIONS: Final = {"EPOCH_US": "UnixMicros"}
"""DuckDB functions SQLGlot parses as anonymous calls -> the SQLGlot expression they are."""

_TYPE_NAMES: Final = {
    "StringType": "VARCHAR", "LongType": "BIGINT", "IntegerType": "INTEGER",
    "ShortType": "SMALLINT", "ByteType": "TINYINT", "DoubleType": "DOUBLE",
    "FloatType": "FLOAT", "DecimalType": "DECIMAL", "BooleanType": "BOOLEAN",
    "TimestampType": "TIMESTAMP WITH TIME ZONE", "TimestampNTZType": "TIMESTAMP",
    "DateType": "DATE", "BinaryType": "BLOB",
}  # fmt: skip
"""Spark types -> the DuckDB type names the validation of `analysis.data.load` checks."""


def _duckdb_type(data_type: Any) -> str:
    """A Spark type as DuckDB names it: ``MAP(VARCHAR, VARCHAR)`` for the exposures'
    ``attributes`` map, ``STRUCT(...)`` for a struct, scalars by `_TYPE_NAMES`."""
    kind = type(data_type).__name__
    if kind == "MapType":
        return f"MAP({_duckdb_type(data_type.keyType)}, {_duckdb_type(data_type.valueType)})"
    if kind == "StructType":
        fields = ", ".join(f"{f.name} {_duckdb_type(f.dataType)}" for f in data_type.fields)
        return f"STRUCT({fields})"
    return _TYPE_NAMES.get(kind, str(data_type.simpleString()).upper())


def to_spark(sql: str) -> str:
    """One DuckDB statement in Spark SQL."""
    import sqlglot
    from sqlglot import exp

    def known(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and str(node.name).upper() in _DUCKDB_FUNCTIONS:
            kind = getattr(exp, _DUCKDB_FUNCTIONS[str(node.name).upper()])
            return kind(this=node.expressions[0])  # type: ignore[no-any-return]
        return node

    tree = sqlglot.parse_one(sql, read="duckdb").transform(known)
    return tree.sql(dialect="spark")


class SparkEngine:
    """An `analysis.data.engines.Engine` over a SparkSession."""

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._tables: list[DataFrame] = []
        self._views: list[str] = []
        self._time_zone = spark.conf.get("spark.sql.session.timeZone")
        # Naive timestamps are UTC, as on DuckDB; all the join's arithmetic is on epoch µs.
        spark.conf.set("spark.sql.session.timeZone", "UTC")

    @classmethod
    def start(cls, master: str | None = None) -> SparkEngine:
        """On the active session, or a new one on ``master`` (default ``local[*]``).

        Raises
        ------
        InvalidInput
            pyspark is not installed, or Spark cannot start (no Java, a bad master URL).
        """
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise InvalidInput(
                "the Spark engine needs pyspark: pip install 'abtest[spark]'", "engine"
            ) from None
        session = SparkSession.getActiveSession()
        if session is None:
            try:
                session = (
                    SparkSession.builder.master(master or "local[*]")
                    .appName("abtest")
                    .config("spark.sql.session.timeZone", "UTC")
                    .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                    .config("spark.ui.showConsoleProgress", "false")
                    .getOrCreate()
                )
            except Exception as exc:  # py4j and the JVM raise many types; say which failed
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise InvalidInput(f"cannot start Spark: {first}", "spark_master") from exc
        return cls(session)

    def _register(self, relation: str, frame: DataFrame) -> None:
        frame.createOrReplaceTempView(relation)
        self._views.append(relation)

    def scan_frame(self, relation: str, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        # Through Arrow, not pyspark's pandas conversion (which lags pandas releases).
        self._register(relation, self.spark.createDataFrame(pa.Table.from_pandas(frame)))

    def scan_parquet(self, relation: str, locations: list[Location], files: list[str]) -> None:
        # Spark lists the folders itself, in parallel; ``files`` only says whether any lies
        # in an export's experiment=<key> folder, whose key is the files' missing column.
        from pyspark.sql import functions

        reader = self.spark.read.option("mergeSchema", "true")
        if locations[0].is_dir():
            reader = reader.option("recursiveFileLookup", "true").option(
                "pathGlobFilter", "*.parquet"
            )
        frame = reader.parquet(*(location.url for location in locations))
        if any(folder_key(file) for file in files):
            path = functions.col("_metadata.file_path")
            key = functions.nullif(
                functions.regexp_extract(path, FOLDER_COLUMN_PATTERN, 1), functions.lit("")
            )
            if FOLDER_COLUMN in frame.columns:
                key = functions.coalesce(functions.col(FOLDER_COLUMN), key)
            frame = frame.withColumn(FOLDER_COLUMN, key)
        self._register(relation, frame)

    def scan_csv(self, relation: str, location: Location) -> None:
        reader = self.spark.read.option("header", "true").option("inferSchema", "true")
        self._register(relation, reader.csv(location.url))

    def column_types(self, relation: str) -> dict[str, str]:
        schema = self.spark.table(relation).schema
        return {f.name: _duckdb_type(f.dataType) for f in schema.fields}

    def parquet_null_counts(self, files: list[str]) -> dict[str, int | None]:
        del files
        return {}  # counted by a scan instead

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(to_spark(sql)).collect()]

    def frame(self, sql: str) -> pd.DataFrame:
        frame: pd.DataFrame = self.spark.sql(to_spark(sql)).toArrow().to_pandas()
        return frame

    def view(self, name: str, sql: str) -> None:
        self._register(name, self.spark.sql(to_spark(sql)))

    def table(self, name: str, sql: str) -> None:
        from pyspark import StorageLevel

        frame = self.spark.sql(to_spark(sql)).persist(StorageLevel.MEMORY_AND_DISK)
        self._tables.append(frame)
        self._register(name, frame)

    def close(self) -> None:
        for frame in self._tables:
            frame.unpersist()
        for view in set(self._views):
            self.spark.catalog.dropTempView(view)
        self._tables, self._views = [], []
        if self._time_zone is not None:
            self.spark.conf.set("spark.sql.session.timeZone", self._time_zone)
