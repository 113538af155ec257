"""The HTML report: self-contained, verdict first, figures embedded, text escaped."""

from __future__ import annotations

import base64
import html
import re
from datetime import timedelta

import pytest
from matplotlib.figure import Figure

from analysis import analyze
from analysis.report.figures import cumulative_figure, effect_figure, exposures_figure, figure_png
from analysis.report.formatting import (
    count,
    effect_with_ci,
    metric_headers,
    metric_unit,
    number,
)
from analysis.report.html import render_html, write_report
from tests.test_analyze import synthetic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result():
    """A shipped test whose variant key needs HTML escaping."""
    data = synthetic(n=12000, lift=0.3, seed=41, variants=("control", "<b>v2&x</b>"))
    return analyze(
        *data,
        metrics=["purchase:binomial", "revenue:sum"],
        planned_units_per_variant=6000,
        attribution_window=timedelta(hours=48),
    )


def test_report_is_self_contained_with_verdict_on_top(result, tmp_path):
    """One file: the verdict before anything else, images inline, nothing fetched."""
    path = write_report(result, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    body = text[text.index("<body>") :]
    assert body.index("SHIP") < body.index("Sample ratio") < body.index("Metrics")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    assert not re.search(r'(src|href)="(?!data:)', text)


def test_text_is_escaped(result):
    """Variant keys and other data are escaped, never injected as markup."""
    text = render_html(result)
    assert "<b>v2&x</b>" not in text
    assert "&lt;b&gt;v2&amp;x&lt;/b&gt;" in text


def test_srm_status_and_reasons_are_shown(result):
    """The SRM p-value and every decision reason appear in the report."""
    text = render_html(result)
    assert f"{result.srm.p_value:.3g}" in text
    for reason in result.decision.reasons:
        assert html.escape(reason) in text


@pytest.mark.parametrize("build", [effect_figure, cumulative_figure, exposures_figure])
def test_figure_builders_return_figures(result, build):
    """Each builder returns a matplotlib Figure with drawn content, rendered to PNG."""
    figure = build(result)
    assert isinstance(figure, Figure)
    assert figure.axes[0].has_data()
    assert figure_png(figure).startswith(PNG_MAGIC)


def test_cumulative_figure_draws_the_sequential_bounds(result):
    """The cumulative chart has one line per treatment and its confidence-sequence band."""
    ax = cumulative_figure(result).axes[0]
    days = len(result.rows[0].sequential.estimates)
    assert len(ax.lines[0].get_xdata()) == days
    assert len(ax.collections) == 1


def test_one_day_series_gets_a_day_of_margin_and_counts_start_at_zero():
    """A test that ran one day shows its point inside a two-day axis; counts start at 0."""
    data = synthetic(n=1000, lift=0.3, seed=5, days=1)
    one_day = analyze(*data, metrics=["purchase:binomial"])
    for build in (cumulative_figure, exposures_figure):
        low, high = build(one_day).axes[0].get_xlim()
        assert 2 <= high - low < 4  # matplotlib dates are in days
    assert exposures_figure(one_day).axes[0].get_ylim()[0] == 0


def test_cumulative_figure_with_a_window_says_which_units_each_day_holds(result):
    """Each day holds the units whose observation window closed, and the title says which:
    the attribution window, else the 24 h default."""
    assert "units whose 48 h window closed" in cumulative_figure(result).axes[0].get_title()
    data = synthetic(n=3000, lift=0.3, seed=41)
    default = analyze(*data, metrics=["purchase:binomial"])
    assert "units whose 24 h window closed" in cumulative_figure(default).axes[0].get_title()


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [(130_016, 4, "130,016"), (130_016.4, 4, "130,016"), (1_234.5, 4, "1,234"),
     (0.042134, 4, "0.04213"), (12.3456, 4, "12.35"), (0.5, 3, "0.5"), (1.0, 3, "1"),
     (7.56e-05, 3, "7.56e-05"), (9_999.6, 4, "10,000"), (-0.0123, 3, "-0.0123"), (0, 4, "0"),
     (None, 4, "–"), (float("nan"), 4, "–"), (float("inf"), 4, "–")],
)  # fmt: skip
def test_numbers_have_separators_and_significant_digits(value, digits, text):
    """One formatter for the report and the console: separators, no needless exponent."""
    assert number(value, digits) == text


def test_counts_have_separators():
    """Counts read 130,016, never 130016."""
    assert (count(130_016), count(7), count(None)) == ("130,016", "7", "–")


@pytest.mark.parametrize(
    ("estimate", "ci", "scale", "unit", "text"),
    [(0.0035, [0.001, 0.006], 100, " pp", "+0.35 pp [+0.10 pp, +0.60 pp]"),
     (0.0831, [0.024, 0.1422], 100, "%", "+8.3% [+2.4%, +14.2%]"),
     (3.21, [1.04, 5.38], 1, " ms", "+3.2 ms [+1.0 ms, +5.4 ms]"),
     (-1_234.5, [-2_500.0, 31.0], 1, "", "-1,234 [-2,500, +31]"),
     (1.5, [None, 2.0], 1, "", "+1.500 [–, +2.000]"),
     (None, [0.1, 0.2], 1, "", "–")],
)  # fmt: skip
def test_an_effect_and_its_ci_share_one_unit_and_precision(estimate, ci, scale, unit, text):
    """The CI's half-width sets the decimals (two significant digits); each number has the unit."""
    assert effect_with_ci(estimate, ci, scale=scale, unit=unit) == text


@pytest.mark.parametrize(
    ("metric", "kind", "value", "effect_unit"),
    [("purchase", "binomial", "4.213%", " pp"), ("latency_ms:p95", "quantile", "0.04213 ms", " ms"),
     ("load_s", "sum", "0.04213 s", " s"), ("revenue", "sum", "0.04213", ""),
     ("clicks/searches", "ratio", "0.04213", "")],
)  # fmt: skip
def test_metric_units_come_from_the_type_or_the_name(metric, kind, value, effect_unit):
    """Binomial values are shares (%) with effects in pp; *_ms and *_s names carry ms and s."""
    unit = metric_unit(metric, kind)
    assert (unit.value(0.042134), unit.effect_unit) == (value, effect_unit)


def test_metrics_table_labels_units_and_keeps_each_ci_with_its_effect(result):
    """Headers say abs./rel. and the CI level; absolute cells are in pp, relative ones in %."""
    text = render_html(result)
    table = text[text.index('<table id="metrics">') : text.index("</table>", text.index("Metrics"))]
    headers = re.findall(r"<th>(.*?)</th>", table)
    assert headers == [html.escape(h) for h in metric_headers(0.05)]
    assert "Abs. effect, variant − control [95% CI]" in headers
    assert "Rel. effect, % of control [95% CI]" in headers
    purchase = re.findall(r"<td>(.*?)</td>", table[table.index("purchase") :])
    absolute, relative = purchase[4], purchase[5]
    assert re.fullmatch(r"[+-][\d.]+ pp \[[+-][\d.]+ pp, [+-][\d.]+ pp\]", absolute), absolute
    assert re.fullmatch(r"[+-][\d.]+% \[[+-][\d.]+%, [+-][\d.]+%\]", relative), relative
    srm_units = re.findall(r"<tr><td>[^<]*</td><td>([\d,]+)</td>", text)
    assert srm_units and all("," in n for n in srm_units)  # about 1,500 per variant
