"""Figures of runs (live terms, held-out terms, sweep heatmap), of two students compared, and heatmap legibility."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import make_logits
from fake_runs import epoch_record

from cakd_viz import compare, decompose
from cakd_viz.classnames import readable_names
from cakd_viz.data.glyphs import CLASS_NAMES
from cakd_viz.families import cluster_classes
from cakd_viz.figures import compare as compare_fig
from cakd_viz.figures import correlation as corr_fig
from cakd_viz.figures import runs as fig
from cakd_viz.figures.style import log_ticks


@pytest.mark.parametrize(
    ("lo", "hi"), [(1, 100), (0.03, 2.2), (0.5, 0.9), (1e-4, 50), (3, 4), (0.021, 0.024), (1.0, 1.7e308)]
)
def test_log_ticks_read_in_order_and_cover_the_data(lo, hi):
    values, labels, (start, stop) = log_ticks(lo, hi)
    assert values == sorted(values) and len(values) >= 2
    assert [float(t) for t in labels] == values  # "0.1, 0.2, 0.5, 1": the label is the value itself
    assert start <= math.log10(lo) and stop >= math.log10(hi)
    assert all(start - 1e-9 <= math.log10(v) <= stop + 1e-9 for v in values)
    mantissas = {round(v / 10 ** math.floor(math.log10(v) + 1e-12), 6) for v in values}
    assert mantissas <= {1.0, 2.0, 5.0}


def test_log_ticks_at_the_ends_of_floats_range():
    """A loss term near float's largest value raised OverflowError (10.0**309), a subnormal one a math
    domain error (log10 of 1e-325, which is 0): the run's chart failed."""
    for lo, hi in ((1.0, 1.7e308), (1e-323, 1e-320), (1e-320, 1e-320)):
        values, labels, (start, stop) = log_ticks(lo, hi)
        assert len(values) >= 2 and all(0 < v < math.inf for v in values) and start < stop


def test_the_live_chart_says_what_it_shows_and_labels_ticks_in_order():
    steps = pd.DataFrame(
        {
            "epoch": np.linspace(0.1, 2, 20),
            "loss": np.linspace(100, 1, 20),
            "ce": np.linspace(3, 0.5, 20),
            "bcd": np.linspace(2, 0.1, 20),
            "scd": np.linspace(1, 0.05, 20),
            "wcd": np.linspace(5, 0.2, 20),
        }
    )
    f = fig.terms_figure(steps)
    y = f.layout.yaxis
    assert y.type == "log" and "× T²" in y.title.text and "unweighted" in y.title.text
    assert [float(t) for t in y.ticktext] == sorted(float(t) for t in y.ticktext)
    assert "before the loss weights" in fig.STEP_NOTE


def test_held_out_terms_parts_stack_to_the_kl_and_raw_terms_are_lines():
    epochs = pd.DataFrame([epoch_record(e, 0.5, kl=1.0 / e) for e in (1, 2, 3)])
    parts = fig.held_out_terms_figure(epochs)
    stacked = [t for t in parts.data if t.stackgroup == "parts"]
    assert len(stacked) == 3
    np.testing.assert_allclose(sum(np.asarray(t.y) for t in stacked), epochs["val_kl"])
    assert "nats" in parts.layout.yaxis.title.text
    raw = fig.held_out_terms_figure(epochs, raw=True)
    assert [t.name for t in raw.data] == ["BCD", "SCD", "WCD"]
    assert not fig.held_out_terms_figure(pd.DataFrame([epoch_record(1, 0.5, terms=False)])).data


def _trials(accs: dict) -> pd.DataFrame:
    rows = []
    for (a, b), values in accs.items():
        rows += [{"alpha": a, "beta": b, "seed": s, "best_acc": v} for s, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_sweep_heatmap_defaults_never_put_the_seed_on_an_axis():
    trials = _trials({(1, 4): (0.9, 0.91), (2, 4): (0.92, 0.9)})
    assert fig.default_axes(trials, ["alpha", "beta", "seed"]) == ("alpha", None)  # beta does not vary
    assert fig.default_axes(trials, ["seed", "alpha"]) == ("alpha", None)
    only_seeds = pd.DataFrame({"seed": [0, 1, 2], "best_acc": [0.5, 0.6, 0.7]})
    assert fig.default_axes(only_seeds, ["seed"]) == ("seed", None)


def test_the_colour_range_is_at_least_the_stated_span():
    cells = fig.cell_table(_trials({(1, 4): (0.978, 0.98), (2, 4): (0.985, 0.983)}), ["beta", "alpha"])
    lo, hi, why = fig.colour_range(cells)
    assert hi - lo == pytest.approx(fig.MIN_COLOUR_SPAN) and lo <= 97.9 and hi >= 98.4 and "5 points" in why
    noisy = fig.cell_table(_trials({(1, 4): (0.6, 0.8), (2, 4): (0.7, 0.71)}), ["beta", "alpha"])
    lo, hi, why = fig.colour_range(noisy)
    pooled = math.sqrt((np.std([60, 80], ddof=1) ** 2 + np.std([70, 71], ddof=1) ** 2) / 2)
    assert hi - lo == pytest.approx(fig.SEED_SPANS * pooled) and "standard deviation" in why
    wide = fig.cell_table(_trials({(1, 4): (0.2,), (2, 4): (0.9,)}), ["beta", "alpha"])
    assert fig.colour_range(wide)[:2] == pytest.approx((20.0, 90.0))


def test_the_heatmap_states_its_range_and_shows_the_spread():
    trials = _trials(
        {
            (1, 4): (0.978, 0.98, 0.982),
            (2, 4): (0.979,) * 3,
            (1, 8): (0.98, 0.981, 0.985),
            (2, 8): (0.99,) * 3,
        }
    )
    f = fig.sweep_heatmap(trials, "alpha", "beta")
    heat = f.data[0]
    assert heat.zmax - heat.zmin >= fig.MIN_COLOUR_SPAN
    assert f"colours {heat.zmin:.1f}–{heat.zmax:.1f}%" in heat.colorbar.title.text
    assert "98.0% ± 0.2 (n=3)" in [t for row in heat.text for t in row]


# -- comparison figures ---------------------------------------------------------------------------------


def test_comparison_figures_carry_both_students_and_the_differences():
    student, teacher, labels = make_logits(200, 6, seed=1)
    a = decompose(student, teacher, labels, grouping="topk:2", temperature=2.0)
    b = decompose((student + teacher) / 2, teacher, labels, grouping="topk:2", temperature=2.0)
    summary = compare.summary(a, b)
    f = compare_fig.mean_terms_figure(summary, "ce", "kd")
    assert [t.name for t in f.data] == ["ce (A)", "kd (B)"]  # the legend says which student is which
    assert f.data[1].text[0] == f"{summary.set_index('measure').loc['kl_mean', 'delta']:+.3g}"
    deltas = compare.class_deltas(a, b, num_classes=6, class_names=list("abcdef"))
    g = compare_fig.class_delta_figure(deltas, "ce", "kd")
    assert [t.meta for t in g.data[:3]] == ["bcd", "scd", "wcd"] and g.layout.barmode == "relative"
    np.testing.assert_allclose(g.data[3].x, deltas["kl_mean_delta"])


# -- heatmap rows ---------------------------------------------------------------------------------------


def test_every_heatmap_row_of_62_glyph_classes_is_labelled_at_a_readable_size():
    rng = np.random.default_rng(0)
    corr = np.corrcoef(rng.normal(size=(62, 200)))
    order, family = cluster_classes(corr, threshold=0.5)
    f = corr_fig.correlation_heatmap(corr, order, family, readable_names(list(CLASS_NAMES)))
    assert f.layout.yaxis.dtick == 1 and f.layout.xaxis.dtick == 1  # one label per row and column
    assert f.layout.yaxis.tickfont.size >= 12
    assert f.layout.height >= 62 * corr_fig.ROW_PX  # each row at least ROW_PX pixels: labels do not overlap
    assert set(f.data[0].y) == set(readable_names(list(CLASS_NAMES)))
