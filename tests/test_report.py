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
from analysis.report.html import render_html, write_report
from tests.test_analyze import synthetic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result():
    """A shipped test whose variant key needs HTML escaping."""
    data = synthetic(n=3000, lift=0.3, seed=41, variants=("control", "<b>v2&x</b>"))
    return analyze(*data, metrics=["purchase:binomial", "revenue:sum"])


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
    """With an attribution window each day holds matured units only, and the title says so."""
    data = synthetic(n=3000, lift=0.3, seed=41)
    windowed = analyze(*data, metrics=["purchase:binomial"], attribution_window=timedelta(hours=48))
    assert "units whose 48 h window closed" in cumulative_figure(windowed).axes[0].get_title()
    assert "window" not in cumulative_figure(result).axes[0].get_title()
