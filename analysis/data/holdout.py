"""The holdout's exposure log as exposures: one row per unit, its group and its first contact.

The holdout log (``abtest export`` writes it to ``DIR/holdout/``; schema ``unit_id,
experiment, holdout, in_holdout, timestamp``) has one entry per unit and covered experiment:
the unit's first contact with that experiment under the holdout (`abtest.holdout`).  The
cumulative analysis needs one row per unit: its group (``holdout`` for members, ``rest``
for the others) and its first contact over all experiments, in the shape of an exposure
table (``unit_id, experiment, variant, timestamp``), so the same per-unit join
(`analysis.data.join`) attributes its outcomes from then on.  A unit logged in both groups
(possible only if the holdout's share changed under one name) keeps both rows, and the
join excludes it as a crossover.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import pandas as pd

from abtest.errors import InvalidInput
from analysis.data.load import Source, _first_line, _register_raw, connect

HOLDOUT_GROUP: Final = "holdout"
REST_GROUP: Final = "rest"
HOLDOUT_COLUMNS: Final = ("unit_id", "holdout", "in_holdout", "timestamp")


def holdout_first_contacts(
    source: Source,
    *,
    holdout: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Units of one holdout with their group and first contact, as an exposure table.

    Parameters
    ----------
    source : DataFrame or path
        The holdout log (a directory of exported Parquet files, a file, or a frame).
    holdout : str, optional
        The holdout's name; required when the log holds several.
    start, end : datetime, optional
        The period: units whose first contact lies in ``[start, end)`` (naive times are UTC).

    Returns
    -------
    DataFrame
        ``unit_id, experiment, variant, timestamp``: ``experiment`` is the holdout's name,
        ``variant`` is ``holdout`` or ``rest``, ``timestamp`` naive UTC.

    Raises
    ------
    InvalidInput
        An empty or malformed log, several holdouts and none chosen, an unknown holdout,
        or no unit in the period.
    """
    con = connect()
    try:
        raw, _ = _register_raw(con, source, "holdout")
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {raw}").fetchall()
        except Exception as exc:  # duckdb raises many error types for unreadable files
            raise InvalidInput(f"holdout: cannot read the data: {_first_line(exc)}",
                               "holdout") from exc  # fmt: skip
        columns = {str(row[0]) for row in described}
        missing = [c for c in HOLDOUT_COLUMNS if c not in columns]
        if missing:
            raise InvalidInput(f"holdout log is missing column(s): {', '.join(missing)}",
                               f"holdout.{missing[0]}")  # fmt: skip
        names = sorted(str(r[0]) for r in con.execute(f"SELECT DISTINCT holdout FROM {raw}")
                       .fetchall())  # fmt: skip
        if holdout is None:
            if len(names) != 1:
                listed = ", ".join(names) or "none"
                raise InvalidInput(
                    f"the holdout log holds {len(names)} holdouts ({listed}); choose one",
                    "holdout",
                )
            holdout = names[0]
        elif holdout not in names:
            raise InvalidInput(f"no entries of holdout '{holdout}' (found: "
                               f"{', '.join(names) or 'none'})", "holdout")  # fmt: skip
        bounds, params = [], [holdout]
        for op, moment in ((">=", start), ("<", end)):
            if moment is not None:
                bounds.append(f"ts {op} ?")
                params.append(_naive_utc(moment))  # type: ignore[arg-type]
        where = " AND ".join(bounds) or "true"
        frame: pd.DataFrame = con.execute(
            "SELECT unit_id, holdout AS experiment, variant, ts AS timestamp FROM ("
            "  SELECT CAST(unit_id AS VARCHAR) AS unit_id, holdout, "
            f"   CASE WHEN in_holdout THEN '{HOLDOUT_GROUP}' ELSE '{REST_GROUP}' END AS variant,"
            "   min(CAST(timestamp AS TIMESTAMPTZ)) AS ts"
            f"  FROM {raw} WHERE holdout = ? GROUP BY 1, 2, 3"
            f") WHERE {where} ORDER BY timestamp, unit_id",
            params,
        ).df()
    finally:
        con.close()
    if frame.empty:
        raise InvalidInput(f"no unit of holdout '{holdout}' in the period", "start")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_localize(None)
    return frame


def outcomes_before(source: Source, end: datetime) -> pd.DataFrame:
    """The outcome events before ``end`` (the period's end), as a frame."""
    from analysis.data.load import read_outcomes

    frame = read_outcomes(source)
    return frame[frame["timestamp"] < pd.Timestamp(_naive_utc(end))]


def _naive_utc(moment: datetime) -> datetime:
    from datetime import UTC

    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
