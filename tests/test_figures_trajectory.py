"""The figures of classes through training: rows in the families order with a line between families, a
colour bar in nats or %, extra columns after a gap, several runs on one colour scale, a difference
centred on 0."""

from __future__ import annotations

import numpy as np
from conftest import make_logits

from cakd_viz.figures.trajectory import difference_heatmap, trajectories_side_by_side, trajectory_heatmap
from cakd_viz.runs.trajectory import difference, trajectory

C = 6
NAMES = [f"c{i}" for i in range(C)]


def _trajectory(steps=(0.1, 0.6), seed: int = 0):
    student, teacher, labels = make_logits(150, C, seed=seed)
    teacher[:, 5] = teacher[:, 2] + 0.01  # classes 2 and 5 look alike: one family
    students = {e + 1: (a * teacher + (1 - a) * student).astype(np.float32) for e, a in enumerate(steps)}
    return trajectory(students, teacher, labels, grouping="topk:2", temperature=2.0)


def test_the_heatmap_draws_classes_in_families_order_with_lines_between_families():
    t = _trajectory()
    fig = trajectory_heatmap(t, "scd_mean", NAMES)
    heat = fig.data[0]
    np.testing.assert_array_equal(heat.z, t.term("scd_mean")[t.order])
    assert list(fig.layout.yaxis.ticktext) == [NAMES[i] for i in t.order]
    assert list(fig.layout.xaxis.ticktext) == ["epoch 1", "epoch 2"]
    families = t.family[t.order]
    assert len(fig.layout.shapes) == int((np.diff(families) != 0).sum())
    assert t.family[2] == t.family[5] and len(fig.layout.shapes) < C - 1
    assert heat.colorbar.title.text == "mean p_S·SCD<br>(nats)"
    assert (heat.zmin, heat.zmax) == (0, np.nanmax(t.term("scd_mean")))  # the scale starts at 0 nats


def test_accuracy_is_drawn_in_percent_and_extra_columns_follow_a_gap():
    t = _trajectory()
    extra = {"ce": np.linspace(0, 1, C)}
    fig = trajectory_heatmap(t, "accuracy", NAMES, extra=extra)
    z = np.asarray(fig.data[0].z, float)
    np.testing.assert_allclose(z[:, :2], t.term("accuracy")[t.order] * 100)
    assert np.isnan(z[:, 2]).all()
    np.testing.assert_allclose(z[:, 3], extra["ce"][t.order] * 100)
    assert list(fig.layout.xaxis.ticktext) == ["epoch 1", "epoch 2", " ", "ce"]
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0, 100) and "(%)" in fig.data[0].colorbar.title.text


def test_runs_side_by_side_share_one_colour_scale_and_the_first_runs_order():
    a, b = _trajectory(seed=0), _trajectory(steps=(0.3, 0.5, 0.9), seed=1)
    fig = trajectories_side_by_side({"run a": a, "run b": b}, "kl_mean", NAMES)
    assert [tr.coloraxis for tr in fig.data] == ["coloraxis", "coloraxis"]
    np.testing.assert_array_equal(fig.data[1].z, b.term("kl_mean")[a.order])
    high = max(np.nanmax(a.term("kl_mean")), np.nanmax(b.term("kl_mean")))
    assert fig.layout.coloraxis.cmax == high and fig.layout.coloraxis.cmin == 0


def test_a_difference_is_centred_on_zero():
    a, b = _trajectory(seed=0), _trajectory(steps=(0.9, 0.1), seed=0)
    epochs, delta = difference(a, b, "kl_mean")
    fig = difference_heatmap(a, epochs, delta, "kl_mean", NAMES)
    heat = fig.data[0]
    assert heat.zmin == -heat.zmax and heat.zmax == np.nanmax(np.abs(delta))
    assert heat.colorscale[0][1] != heat.colorscale[-1][1] and heat.zmid == 0
    assert "B − A" in heat.colorbar.title.text


def test_a_hovered_cell_names_its_epoch():
    """The columns lie at x = 0, 1, ... under their labels; the hover said %{x}: "0" for epoch 1."""
    a, b = _trajectory(seed=0), _trajectory(steps=(0.3, 0.5, 0.9), seed=1)
    figs = [
        trajectory_heatmap(a, "kl_mean", NAMES, extra={"ce": np.zeros(C)}),
        trajectories_side_by_side({"run a": a, "run b": b}, "kl_mean", NAMES),
        difference_heatmap(a, *difference(a, b, "kl_mean"), "kl_mean", NAMES),
    ]
    for heat in (h for fig in figs for h in fig.data):
        assert "%{x}" not in heat.hovertemplate and "%{customdata[2]}" in heat.hovertemplate
        custom = np.asarray(heat.customdata, dtype=object)
        assert custom[0, 0, 2] == "epoch 1" and custom[0, 1, 2] == "epoch 2"
        assert [custom[r, 0, 0] for r in range(C)] == [NAMES[i] for i in a.order]
    assert np.asarray(figs[0].data[0].customdata, dtype=object)[0, -1, 2] == "ce"
