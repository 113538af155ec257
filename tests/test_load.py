"""Reading exposures and outcomes from frames, CSV and Parquet, with clear errors."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from abtest.errors import InvalidInput
from analysis.data.load import fingerprint, read_exposures, read_outcomes


def exposures_frame() -> pd.DataFrame:
    """Three exposures in the export schema."""
    return pd.DataFrame({
        "unit_id": ["a", "b", "c"],
        "experiment": ["exp"] * 3,
        "variant": ["control", "treatment", "control"],
        "timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 11:00", "2024-01-02 00:00"]),
        "config_version": [1, 1, 2],
    })  # fmt: skip


def outcomes_frame() -> pd.DataFrame:
    """Two outcome events in the export schema."""
    return pd.DataFrame({
        "event_id": ["e1", "e2"],
        "unit_id": ["a", "b"],
        "metric": ["purchase", "revenue"],
        "value": [1.0, 12.5],
        "timestamp": pd.to_datetime(["2024-01-01 12:00", "2024-01-01 13:00"]),
    })  # fmt: skip


def test_dataframe_round_trip():
    """A DataFrame source comes back with the same rows and normalised types."""
    frame = read_exposures(exposures_frame())
    assert list(frame["unit_id"]) == ["a", "b", "c"]
    assert list(frame["config_version"]) == ["1", "1", "2"]
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 10:00")


def test_export_layout_directory_is_read_recursively(tmp_path):
    """A directory in the ``abtest export`` layout (nested folders) is read whole."""
    table = pa.Table.from_pandas(exposures_frame(), preserve_index=False)
    ts = pa.array(exposures_frame()["timestamp"]).cast(pa.timestamp("us", tz="UTC"))
    table = table.set_column(3, "timestamp", ts)
    for day, rows in (("2024-01-01", slice(0, 2)), ("2024-01-02", slice(2, 3))):
        folder = tmp_path / "exposures" / "exp" / day
        folder.mkdir(parents=True)
        pq.write_table(table.slice(rows.start, rows.stop - rows.start), folder / "1_2.parquet")
    (tmp_path / "exposures" / "exp" / ".3_4.parquet.tmp").write_bytes(b"partial")
    frame = read_exposures(tmp_path / "exposures")
    assert sorted(frame["unit_id"]) == ["a", "b", "c"]
    assert frame["timestamp"].max() == pd.Timestamp("2024-01-02")


def test_csv_file(tmp_path):
    """A CSV file with ISO timestamps is read and typed."""
    path = tmp_path / "outcomes.csv"
    outcomes_frame().to_csv(path, index=False)
    frame = read_outcomes(str(path))
    assert list(frame["value"]) == [1.0, 12.5]
    assert frame["timestamp"].iloc[1] == pd.Timestamp("2024-01-01 13:00")


def test_missing_value_column_and_nulls_mean_one():
    """Events without a value count as 1, as in ``POST /v1/events``."""
    frame = outcomes_frame().drop(columns="value")
    assert list(read_outcomes(frame)["value"]) == [1.0, 1.0]
    frame = outcomes_frame().assign(value=[None, 3.0])
    assert list(read_outcomes(frame)["value"]) == [1.0, 3.0]


@pytest.mark.parametrize(
    ("timestamps", "expected"),
    [
        (pd.to_datetime(["2024-01-01 12:00+02:00"] * 2, utc=True), "2024-01-01 10:00"),
        (["2024-01-01T12:00:00+02:00"] * 2, "2024-01-01 10:00"),
        ([1704067200.5, 1704067200.5], "2024-01-01 00:00:00.5"),
    ],
    ids=["tz-aware", "iso-string-with-offset", "epoch-seconds"],
)
def test_timestamps_become_naive_utc(timestamps, expected):
    """Zoned, string and epoch timestamps are all converted to the same UTC instant."""
    frame = read_outcomes(outcomes_frame().assign(timestamp=timestamps))
    assert frame["timestamp"].iloc[0] == pd.Timestamp(expected)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda f: f.drop(columns="variant"), "exposures.variant", "missing column(s): variant"),
        (lambda f: f.drop(columns=["variant", "unit_id"]), "exposures.unit_id", "unit_id, variant"),
        (lambda f: f.iloc[0:0], "exposures", "empty"),
        (lambda f: f.assign(variant=[1, 2, 3]), "exposures.variant", "must be text"),
        (lambda f: f.assign(unit_id=[1.5, 2.5, 3.5]), "exposures.unit_id", "text or integer"),
        (lambda f: f.assign(variant=["a", None, "b"]), "exposures.variant", "1 missing"),
        (lambda f: f.assign(timestamp=["2024-01-01", "soon", "2024-01-02"]),
         "exposures.timestamp", "not ISO-8601"),
        (lambda f: f.assign(timestamp=[True, False, True]), "exposures.timestamp", "timestamp"),
    ],
    ids=["missing-column", "two-missing", "empty", "int-variant", "float-unit", "null-variant",
         "bad-timestamp-string", "bool-timestamp"],
)  # fmt: skip
def test_bad_exposures_name_the_problem(change, field, words):
    """Each malformed exposure source raises InvalidInput naming the column."""
    with pytest.raises(InvalidInput) as info:
        read_exposures(change(exposures_frame()))
    assert info.value.field == field
    assert words in info.value.message


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda f: f.drop(columns="event_id"), "outcomes.event_id", "missing column(s): event_id"),
        (lambda f: f.assign(value=["1", "2"]), "outcomes.value", "must be numeric"),
        (lambda f: f.assign(value=[1.0, math.inf]), "outcomes.value", "non-finite"),
        (lambda f: f.assign(metric=[None, "x"]), "outcomes.metric", "missing"),
    ],
    ids=["missing-event-id", "text-value", "infinite-value", "null-metric"],
)
def test_bad_outcomes_name_the_problem(change, field, words):
    """Each malformed outcome source raises InvalidInput naming the column."""
    with pytest.raises(InvalidInput) as info:
        read_outcomes(change(outcomes_frame()))
    assert info.value.field == field
    assert words in info.value.message


def test_nulls_in_parquet_found_from_statistics(tmp_path):
    """Null counts of a Parquet file are read from its statistics and reported."""
    frame = exposures_frame().assign(unit_id=["a", None, "c"])
    frame.to_parquet(tmp_path / "e.parquet", index=False)
    with pytest.raises(InvalidInput, match=r"unit_id has 1 missing"):
        read_exposures(tmp_path / "e.parquet")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "nope.parquet", "does not exist"),
        (lambda p: (p / "x.json").write_text("{}") and p / "x.json", "neither .parquet nor .csv"),
        (lambda p: p, "no Parquet files"),
        (lambda p: (p / "bad.parquet").write_bytes(b"not parquet") and p / "bad.parquet",
         "cannot read"),
    ],
    ids=["missing-path", "wrong-suffix", "empty-directory", "corrupt-file"],
)  # fmt: skip
def test_bad_paths(tmp_path, make, words):
    """Paths that cannot be read give one clear InvalidInput."""
    with pytest.raises(InvalidInput, match=words):
        read_exposures(make(tmp_path))


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    """The data hash is the same for the same data and changes with one value."""
    frame = exposures_frame()
    assert fingerprint(frame) == fingerprint(frame.copy())
    assert fingerprint(frame) != fingerprint(frame.assign(variant=["control"] * 3))
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    (tmp_path / "d").mkdir()
    frame.to_parquet(tmp_path / "d" / "a.parquet", index=False)
    assert fingerprint(tmp_path / "a.parquet") == fingerprint(str(tmp_path / "a.parquet"))
    assert fingerprint(tmp_path / "d") != fingerprint(tmp_path / "a.parquet")
    assert len(fingerprint(tmp_path / "d")) == 64


@pytest.mark.parametrize("zone", ["UTC", None])
def test_nanosecond_timestamps_read_as_microseconds(tmp_path, zone):
    """Parquet from pandas' nanosecond timestamps (with or without a zone) reads like
    microsecond ones, rounded to the microsecond."""
    frame = exposures_frame()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("datetime64[ns]")
    if zone:
        frame["timestamp"] = frame["timestamp"].dt.tz_localize(zone)
    frame.to_parquet(tmp_path / "e.parquet", index=False)
    read = read_exposures(tmp_path / "e.parquet")
    expected = pd.to_datetime(exposures_frame()["timestamp"]).astype("datetime64[us]")
    assert list(read["timestamp"].astype("datetime64[us]")) == list(expected)


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"engine": "nope"}, "engine"), ({"spark_master": "local[*]"}, "spark_master")],
)
def test_an_unknown_engine_or_a_master_url_without_spark_is_refused(settings, field):
    """Named by field, before any data is read."""
    from analysis import analyze

    with pytest.raises(InvalidInput) as refused:
        analyze(exposures_frame(), outcomes_frame(), metrics=["click:sum"], **settings)
    assert refused.value.field == field
