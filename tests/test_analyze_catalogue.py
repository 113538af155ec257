"""The analysis reads catalogue metrics: names resolved from a catalogue snapshot, each
unit's value capped, and a metric's own attribution window applied."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abtest.errors import InvalidInput
from analysis import analyze

T0 = pd.Timestamp("2024-06-01")


def _version(definition: dict[str, Any], number: int) -> dict[str, Any]:
    return {"name": definition["name"], "version": number, "updated_at": "2024-06-01T00:00:00Z",
            "key_id": "k", "reason": None, "definition": definition}  # fmt: skip


def snapshot(*definitions: dict[str, Any]) -> dict[str, Any]:
    """A catalogue snapshot (the form catalogue.json has) with one version per definition."""
    out: dict[str, list[dict[str, Any]]] = {}
    for definition in definitions:
        versions = out.setdefault(definition["name"], [])
        versions.append(_version(definition, len(versions) + 1))
    return {"metrics": out}


def data(seed: int = 3, n: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Exposures, revenue events (heavy-tailed, some 30 to 60 hours after exposure) and the
    per-unit frame they were drawn from."""
    rng = np.random.default_rng(seed)
    units = pd.DataFrame({
        "unit_id": [f"u{i}" for i in range(n)],
        "variant": np.where(rng.random(n) < 0.5, "treatment", "control"),
        "start": T0 + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
    })  # fmt: skip
    exposures = units.rename(columns={"start": "timestamp"}).assign(
        experiment="exp", config_version=1
    )
    rows = []
    for unit in units.itertuples():
        for _ in range(rng.poisson(1.5)):
            at = unit.start + pd.Timedelta(hours=rng.uniform(0, 60))
            value = float(rng.lognormal(3, 1.5))
            rows.append((f"{unit.unit_id}-{len(rows)}", unit.unit_id, "revenue", value, at))
    outcomes = pd.DataFrame(rows, columns=["event_id", "unit_id", "metric", "value", "timestamp"])
    return exposures, outcomes, units


def expected_effect(
    units: pd.DataFrame, outcomes: pd.DataFrame, *, cap: float | None, hours: float | None
) -> float:
    """statsmodels' Welch difference of per-unit (capped, windowed) revenue sums."""
    joined = outcomes.merge(units, on="unit_id")
    age = joined["timestamp"] - joined["start"]
    if hours is not None:
        joined = joined[age < pd.Timedelta(hours=hours)]
    per_unit = joined.groupby("unit_id")["value"].sum()
    values = units.set_index("unit_id").assign(y=per_unit).fillna({"y": 0.0})
    if cap is not None:
        values["y"] = values["y"].clip(upper=cap)
    t = values.loc[values["variant"] == "treatment", "y"].to_numpy()
    c = values.loc[values["variant"] == "control", "y"].to_numpy()
    compare = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    return float(compare.tconfint_diff(usevar="unequal")[0] + compare.tconfint_diff(
        usevar="unequal")[1]) / 2  # fmt: skip


REVENUE = {"name": "revenue", "type": "sum", "unit": "EUR", "higher_is_better": True,
           "cap": 200.0, "attribution_window_hours": 24.0, "description": ""}  # fmt: skip


def test_a_catalogue_name_brings_its_cap_and_window() -> None:
    """'revenue' resolves to the catalogue's sum metric: each unit's revenue within 24 h of
    its exposure, capped at 200, as statsmodels computes on the same per-unit values."""
    exposures, outcomes, units = data()
    result = analyze(exposures, outcomes, metrics=["revenue"], covariate_window=None,
                     catalogue=snapshot(REVENUE))  # fmt: skip
    row = result.rows[0]
    assert row.effect is not None
    assert row.effect.absolute_effect == pytest.approx(
        expected_effect(units, outcomes, cap=200.0, hours=24.0), rel=1e-9
    )
    # Without the catalogue's settings the number differs: the cap and window did act.
    plain = analyze(exposures, outcomes, metrics=["revenue:sum"], covariate_window=None)
    assert plain.rows[0].effect is not None
    assert plain.rows[0].effect.absolute_effect == pytest.approx(
        expected_effect(units, outcomes, cap=None, hours=None), rel=1e-9
    )
    assert plain.rows[0].effect.absolute_effect != pytest.approx(row.effect.absolute_effect)
    late = result.events.outside_window
    assert late == int(((outcomes.merge(units, on="unit_id").eval("timestamp - start"))
                        >= pd.Timedelta(hours=24)).sum())  # fmt: skip
    assert result.settings.metrics[0].catalogue_version == 1


def test_a_pinned_version_is_read_not_the_latest() -> None:
    """{"catalogue": "revenue", "version": 1} uses version 1 although version 2 exists."""
    exposures, outcomes, units = data()
    catalogue = snapshot(REVENUE, {**REVENUE, "cap": 50.0})
    pinned = analyze(exposures, outcomes, metrics=[{"catalogue": "revenue", "version": 1}],
                     covariate_window=None, catalogue=catalogue)  # fmt: skip
    latest = analyze(exposures, outcomes, metrics=["revenue"], covariate_window=None,
                     catalogue=catalogue)  # fmt: skip
    assert pinned.settings.metrics[0].cap == 200.0
    assert latest.settings.metrics[0].cap == 50.0
    assert pinned.rows[0].effect is not None
    assert pinned.rows[0].effect.absolute_effect == pytest.approx(
        expected_effect(units, outcomes, cap=200.0, hours=24.0), rel=1e-9
    )


@pytest.mark.parametrize(
    ("metrics", "text"),
    [
        (["revenu"], "did you mean 'revenue'"),
        ([{"catalogue": "revenue", "version": 9}], "no version 9"),
        (["revenue", "revenue/visits:ratio"], "different attribution windows"),
    ],
)
def test_bad_catalogue_metrics_are_refused_naming_them(metrics: list[Any], text: str) -> None:
    """An unknown name or version, or one event read with two windows, is InvalidInput."""
    exposures, outcomes, _ = data(n=200)
    with pytest.raises(InvalidInput) as raised:
        analyze(exposures, outcomes, metrics=metrics, catalogue=snapshot(REVENUE))
    assert text in raised.value.message
