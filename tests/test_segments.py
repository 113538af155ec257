"""Segments in the analysis: each metric per attribute value, multiple comparisons across
segments, Cochran's Q heterogeneity test (checked against statsmodels' meta-analysis and
by simulation), and the minimum segment size."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests

from abtest.cli import main
from abtest.errors import InvalidInput
from analysis import analyze
from analysis.report.html import render_html
from analysis.statistics.aggregates import SampleStats
from analysis.statistics.heterogeneity import cochran_q
from analysis.statistics.inference import proportion_difference
from analysis.statistics.multiple import adjust_p_values

T0 = pd.Timestamp("2026-01-05", tz="UTC")
COUNTRIES = ("DE", "FR", "US", "BR", "XX")
SHARES = (0.35, 0.28, 0.22, 0.145, 0.005)  # XX is far below the minimum segment size


def segmented(
    *, n: int = 12_000, lifts: dict[str, float] | None = None, seed: int = 0,
    base: float = 0.10, as_column: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Seeded exposures carrying a country (in an ``attributes`` map, or as a column) and
    purchase outcomes whose treatment lift is ``lifts[country]`` (absolute, default 0).
    Every 100th unit has no country."""
    rng = np.random.default_rng(seed)
    country = rng.choice(COUNTRIES, size=n, p=SHARES)
    unit = np.array([f"u{i}" for i in range(n)])
    treated = rng.random(n) < 0.5
    start = T0 + pd.to_timedelta(rng.integers(0, 7 * 86_400, n), unit="s")
    lift = np.array([(lifts or {}).get(c, 0.0) for c in country])
    converted = rng.random(n) < base + lift * treated
    unset = np.arange(n) % 100 == 0
    exposures = pd.DataFrame({"unit_id": unit, "experiment": "exp",
                              "variant": np.where(treated, "treatment", "control"),
                              "timestamp": start, "config_version": 1})  # fmt: skip
    if as_column:
        exposures["country"] = np.where(unset, None, country)
    else:
        exposures["attributes"] = [{} if u else {"country": c, "platform": "ios"}
                                   for c, u in zip(country, unset, strict=True)]  # fmt: skip
    who = np.flatnonzero(converted)
    outcomes = pd.DataFrame({"event_id": [f"e{i}" for i in who], "unit_id": unit[who],
                             "metric": "purchase", "value": 1.0,
                             "timestamp": start[who] + pd.Timedelta(hours=1)})  # fmt: skip
    return exposures, outcomes


def by_segment(result, metric: str = "purchase"):
    """The comparison of ``metric`` and its rows keyed by segment value."""
    comparison = next(c for c in result.segments.comparisons if c.metric == metric)
    return comparison, {row.segment: row for row in comparison.rows}


# -- Cochran's Q ------------------------------------------------------------------------
@pytest.mark.parametrize(("seed", "k"), [(0, 2), (1, 3), (2, 6), (3, 12)])
def test_cochran_q_agrees_with_statsmodels_meta_analysis(seed, k):
    """Q, its p-value, I², DerSimonian-Laird tau² and the pooled estimate match statsmodels."""
    rng = np.random.default_rng(seed)
    estimates = rng.normal(0.02, 0.03, k)
    se = rng.uniform(0.005, 0.04, k)
    ours = cochran_q(estimates, se)
    with warnings.catch_warnings():  # statsmodels takes sqrt(tau2 - ...) of negatives
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = combine_effects(estimates, se**2, method_re="dl")
    assert ours.q == pytest.approx(ref.q, rel=1e-10)
    assert ours.i_squared == pytest.approx(max(0.0, ref.i2), abs=1e-12)  # theirs untruncated
    assert ours.tau_squared == pytest.approx(max(0.0, ref.tau2), rel=1e-9, abs=1e-15)
    assert ours.pooled_effect == pytest.approx(ref.mean_effect_fe, rel=1e-10)
    assert ours.pooled_se == pytest.approx(ref.sd_eff_w_fe, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.test_homogeneity().pvalue, rel=1e-9)
    assert ours.df == k - 1


def test_cochran_q_by_hand():
    """Equal SEs: Q is the sum of squared deviations from the plain mean over se²."""
    h = cochran_q([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    assert h.q == pytest.approx((1 + 0 + 1) / 0.25)
    assert h.i_squared == pytest.approx((8 - 2) / 8)
    assert cochran_q([0.1, 0.1], [0.01, 0.02]).i_squared == 0.0


@pytest.mark.parametrize(
    ("estimates", "ses", "field"),
    [([0.1], [0.1], "estimates"), ([0.1, 0.2], [0.1], "standard_errors"),
     ([0.1, np.nan], [0.1, 0.1], "estimates"), ([0.1, 0.2], [0.1, 0.0], "standard_errors")],
)  # fmt: skip
def test_cochran_q_refuses_bad_input(estimates, ses, field):
    """Fewer than two segments, mismatched lengths, nan estimates or zero SEs are refused."""
    with pytest.raises(InvalidInput) as info:
        cochran_q(estimates, ses)
    assert info.value.field == field


# -- simulation: false positives and power ------------------------------------------------
def _simulated_q_p_values(rng, *, reps, n, base, lifts):
    """Cochran's Q p-values of ``reps`` experiments with ``n`` units per arm and segment,
    and which segments Holm flags.  The per-segment estimates and SEs are vectorised here;
    the first experiment's are checked against the analysis's own `proportion_difference`."""
    control = rng.binomial(n, base, size=(reps, len(lifts))) / n
    variant = rng.binomial(n, base + np.asarray(lifts), size=(reps, len(lifts))) / n
    effect = variant - control
    se = np.sqrt(control * (1 - control) / n + variant * (1 - variant) / n)
    z_p = 2 * stats.norm.sf(np.abs(effect / se))
    for c, v, e, s in zip(control[0], variant[0], effect[0], se[0], strict=True):
        ours = proportion_difference(control=SampleStats(n, c * n, c * n),
                                     variant=SampleStats(n, v * n, v * n))  # fmt: skip
        assert (ours.absolute_effect, ours.absolute_se) == pytest.approx((e, s))
    p_values = np.array([cochran_q(e, s).p_value for e, s in zip(effect, se, strict=True)])
    flagged = np.array([adjust_p_values(row) < 0.05 for row in z_p])
    return p_values, flagged


def test_heterogeneity_false_positive_rate_is_about_alpha():
    """A common effect in every segment (no heterogeneity): Q rejects in about 5% of 2,000
    seeded experiments (binomial 3-SE band around 0.05: 0.035 to 0.065)."""
    rng = np.random.default_rng(20261130)
    p, _ = _simulated_q_p_values(rng, reps=2000, n=2000, base=0.10, lifts=[0.02] * 5)
    rate = float(np.mean(p < 0.05))
    assert 0.035 <= rate <= 0.065, rate


def test_heterogeneity_finds_a_planted_effect_in_one_segment():
    """A +6 pp effect in one segment of five (none elsewhere; Q's power is about 0.998):
    Q rejects in over 95% of 400 seeded experiments, Holm across segments flags that
    segment, and flags a null one in at most about 5% (3-SE band: 0.08)."""
    rng = np.random.default_rng(7)
    p, flagged = _simulated_q_p_values(rng, reps=400, n=2000, base=0.10,
                                       lifts=[0.06, 0.0, 0.0, 0.0, 0.0])  # fmt: skip
    assert np.mean(p < 0.05) > 0.95
    assert flagged[:, 0].mean() > 0.95
    assert flagged[:, 1:].any(axis=1).mean() < 0.08


# -- analyze(segment=...) -----------------------------------------------------------------
@pytest.fixture(scope="module")
def planted():
    """FR gets a +6 pp lift, every other country none."""
    exposures, outcomes = segmented(lifts={"FR": 0.06}, seed=3)
    return exposures, outcomes, analyze(exposures, outcomes, metrics=["purchase:binomial"],
                                        control="control", segment="country")  # fmt: skip


def test_planted_effect_is_found_end_to_end(planted):
    """The heterogeneity test rejects and only FR is significant after Holm."""
    _, _, result = planted
    comparison, rows = by_segment(result)
    assert comparison.heterogeneity.p_value < 0.01
    assert [s for s, row in rows.items() if row.significant] == ["FR"]


def test_no_heterogeneity_end_to_end():
    """The same lift everywhere: the heterogeneity test does not reject."""
    exposures, outcomes = segmented(lifts=dict.fromkeys(COUNTRIES, 0.03), seed=4)
    result = analyze(exposures, outcomes, metrics=["purchase:binomial"], segment="country")
    comparison, _ = by_segment(result)
    assert comparison.heterogeneity.p_value > 0.05


def test_segment_numbers_equal_an_analysis_of_that_segment_alone(planted):
    """Each segment's effect, CI and p-value are those of analyze() on its units only."""
    exposures, outcomes, result = planted
    _, rows = by_segment(result)
    for country in ("DE", "FR", "US", "BR"):
        mask = exposures["attributes"].map(lambda a, c=country: a.get("country") == c)
        alone = analyze(exposures[mask].drop(columns="attributes"), outcomes,
                        metrics=["purchase:binomial"]).rows[0]  # fmt: skip
        row = rows[country]
        assert (row.n_control, row.n_variant) == (alone.n_control, alone.n_variant)
        assert row.effect.absolute_effect == pytest.approx(alone.effect.absolute_effect)
        assert row.effect.absolute_ci == pytest.approx(alone.effect.absolute_ci)
        assert row.p_value == pytest.approx(alone.p_value)


@pytest.mark.parametrize("correction", ["holm", "bh"])
def test_p_values_are_adjusted_across_segments(correction):
    """Adjusted p-values are statsmodels' Holm / BH over the shown segments' p-values."""
    exposures, outcomes = segmented(lifts={"FR": 0.06}, seed=3)
    result = analyze(exposures, outcomes, metrics=["purchase:binomial"], segment="country",
                     correction=correction)  # fmt: skip
    comparison, _ = by_segment(result)
    shown = [r for r in comparison.rows if r.p_value is not None]
    expected = multipletests([r.p_value for r in shown],
                             method={"holm": "holm", "bh": "fdr_bh"}[correction])[1]  # fmt: skip
    assert [r.adjusted_p_value for r in shown] == pytest.approx(list(expected))
    assert len(shown) == 4  # DE, FR, US, BR; XX and the unset units are too small


def test_heterogeneity_of_the_result_matches_statsmodels(planted):
    """The result's Q is statsmodels' over the shown segments' estimates and SEs."""
    _, _, result = planted
    comparison, _ = by_segment(result)
    effects = [r.effect for r in comparison.rows if r.effect is not None]
    ref = combine_effects(np.array([e.absolute_effect for e in effects]),
                          np.array([e.absolute_se for e in effects]) ** 2)  # fmt: skip
    assert comparison.heterogeneity.q == pytest.approx(ref.q)
    assert comparison.heterogeneity.i_squared == pytest.approx(ref.i2)
    assert comparison.heterogeneity.k == 4


def test_small_segments_show_no_number_and_say_why(planted):
    """XX (about 30 units per arm) and the unset units (about 60) show no count or estimate
    under the default minimum of 100; a minimum of 45 shows the unset units only."""
    exposures, outcomes, result = planted
    _, rows = by_segment(result)
    for small in ("XX", None):
        row = rows[small]
        assert row.below_minimum and row.n_control is None and row.effect is None
        assert "fewer than 100 units" in row.note
    smaller = analyze(exposures, outcomes, metrics=["purchase:binomial"], segment="country",
                      min_segment_units=45)  # fmt: skip
    _, rows = by_segment(smaller)
    assert rows[None].effect is not None and rows["XX"].effect is None
    assert min(rows[None].n_control, rows[None].n_variant) >= 45


def test_result_json_and_summary(planted):
    """to_dict carries the table (strict JSON); summary() has one row per segment."""
    _, _, result = planted
    body = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    table = body["segments"]
    assert table["attribute"] == "country" and table["min_units"] == 100
    assert table["values"][:2] == ["DE", "FR"] and None in table["values"]
    comparison = table["comparisons"][0]
    assert comparison["heterogeneity"]["test"] == "cochran_q"
    assert {row["segment"] for row in comparison["segments"]} == {*COUNTRIES, None}
    frame = result.segments.summary()
    assert len(frame) == 6 and frame.loc[frame["segment"] == "XX", "p_value"].isna().all()


def test_segment_from_a_column_gives_the_same_table(planted):
    """A ``country`` column of its own reads like the exported ``attributes`` map."""
    _, _, result = planted
    exposures, outcomes = segmented(lifts={"FR": 0.06}, seed=3, as_column=True)
    other = analyze(exposures, outcomes, metrics=["purchase:binomial"], segment="country")
    assert other.segments.to_dict() == result.segments.to_dict()


def test_without_segment_the_result_has_no_table(planted):
    """The overall analysis is unchanged when no segment is asked for."""
    exposures, outcomes, result = planted
    plain = analyze(exposures, outcomes, metrics=["purchase:binomial"])
    assert plain.segments is None and "segments" not in plain.to_dict()
    assert plain.rows == result.rows


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"segment": "browser"}, "segment"), ({"segment": "no such"}, "segment"),
     ({"segment": "country", "min_segment_units": 0}, "min_segment_units")],
)  # fmt: skip
def test_bad_segment_settings_name_the_field(planted, settings, field):
    """An attribute the exposures lack, a bad name or a bad minimum is refused by name."""
    exposures, outcomes, _ = planted
    exposures = exposures.assign(attributes=[{"country": "DE"}] * len(exposures))
    with pytest.raises(InvalidInput) as info:
        analyze(exposures.drop(columns="attributes") if settings["segment"] == "browser"
                else exposures, outcomes, metrics=["purchase:binomial"], **settings)  # fmt: skip
    assert info.value.field == field


# -- report and CLI -----------------------------------------------------------------------
def test_report_shows_the_segment_table(planted):
    """The HTML report has the segment table, the heterogeneity line and the footnote."""
    _, _, result = planted
    page = render_html(result)
    assert 'id="segments"' in page and "Segments by country" in page
    assert "Cochran&#x27;s Q" in page and "(not set)" in page
    assert "fewer than 100 units in control or treatment: not shown" in page


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The planted data as an export-like Parquet directory and a CSV of outcomes."""
    root = tmp_path_factory.mktemp("segments")
    exposures, outcomes = segmented(lifts={"FR": 0.06}, seed=3)
    (root / "exposures" / "exp").mkdir(parents=True)
    # As `abtest export` writes them: a map<string, string> column.
    attributes = pa.array([list(a.items()) for a in exposures.pop("attributes")],
                          type=pa.map_(pa.string(), pa.string()))  # fmt: skip
    table = pa.Table.from_pandas(exposures, preserve_index=False)
    pq.write_table(table.append_column("attributes", attributes),
                   root / "exposures" / "exp" / "1_2.parquet")  # fmt: skip
    outcomes.to_csv(root / "outcomes.csv", index=False)
    return root


def test_cli_prints_the_segment_table(files, capsys):
    """``abtest analyze --segment country`` prints one row per segment and the Q test."""
    assert main(["analyze", "--exposures", str(files / "exposures"), "--outcomes",
                 str(files / "outcomes.csv"), "--metric", "purchase:binomial",
                 "--segment", "country", "--min-segment-units", "150"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "segments by country" in out
    fr = next(line for line in out.splitlines() if line.startswith("FR "))
    assert "purchase" in fr and "treatment" in fr and "pp" in fr
    assert "fewer than 150 units in control or treatment: not shown" in out
    assert "Cochran's Q" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--segment", "browser"], "carries the attribute 'browser'"),
     (["--segment", "country", "--min-segment-units", "0"], "--min-segment-units")],
)  # fmt: skip
def test_cli_bad_segment_exits_2(files, capsys, extra, message):
    """A segment the exports lack or a bad minimum: exit 2 and one line naming it."""
    common = ["--exposures", str(files / "exposures"), "--outcomes", str(files / "outcomes.csv")]
    assert main(["analyze", *common, "--metric", "purchase:binomial", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
