"""Aggregates and sweeps, checked against direct numpy/pandas computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cakd_viz import aggregates, decompose
from cakd_viz.aggregates import class_breakdown, dataset_summary, term_histograms
from cakd_viz.diagnose import per_sample_dominant
from cakd_viz.families import cluster_classes, comembership
from cakd_viz.grouping import class_correlation
from cakd_viz.scans import grouping_scan, subset_rows, temperature_scan


@pytest.fixture
def dec(logits):
    student, teacher, labels = logits
    return decompose(student, teacher, labels, grouping="topk:3", temperature=2.0, device="cpu")


def test_class_breakdown_matches_groupby(dec):
    frame = class_breakdown(dec, by="label")
    df = dec.to_frame()
    df["scd_c"] = dec.scd_contribution
    grouped = df.groupby("label")
    expected_share = grouped["scd_c"].sum() / grouped["kl"].sum()
    for _, row in frame.iterrows():
        assert row["count"] == grouped.size()[row["class"]]
        assert row["kl_mean"] == pytest.approx(grouped["kl"].mean()[row["class"]])
        assert row["share_scd"] == pytest.approx(expected_share[row["class"]])
        assert row["share_bcd"] + row["share_scd"] + row["share_wcd"] == pytest.approx(1.0, abs=1e-6)
    assert frame["kl_total"].is_monotonic_decreasing


def test_class_breakdown_by_prediction_and_errors(dec):
    frame = class_breakdown(dec, by="student_pred", num_classes=10, class_names=[f"c{i}" for i in range(10)])
    assert frame["count"].sum() == len(dec)
    assert set(frame["name"]) <= {f"c{i}" for i in range(10)}
    with pytest.raises(ValueError, match="unknown breakdown"):
        class_breakdown(dec, by="nope")
    no_labels = decompose(np.zeros((3, 2), np.float32), np.ones((3, 2), np.float32), device="cpu")
    with pytest.raises(ValueError, match="needs labels"):
        class_breakdown(no_labels)


def test_dataset_summary_and_the_dominant_term(dec, logits):
    _, _, labels = logits
    s = dataset_summary(dec)
    assert s["num_samples"] == 200
    assert s["kl_mean"] == pytest.approx(dec.kl.mean())
    assert s["share_bcd"] + s["share_scd"] + s["share_wcd"] == pytest.approx(1.0, abs=1e-6)
    assert s["student_accuracy"] == pytest.approx((dec.student_pred == labels).mean())
    contrib = np.stack([dec.bcd, dec.scd_contribution, dec.wcd_contribution], 1)
    np.testing.assert_array_equal(per_sample_dominant(dec), contrib.argmax(1))


def test_histograms_count_every_sample(dec):
    for name, frame in term_histograms(dec, bins=20).items():
        assert len(frame) == 20
        values = dec.kl if name == "kl" else dec.contributions()[name]
        assert frame["count"].sum() + frame.attrs["zeros"] == len(values)


def test_histograms_placed_by_a_sample_of_the_values_still_count_every_sample(dec, monkeypatch):
    monkeypatch.setattr(aggregates, "RANGE_SAMPLE", 20)  # the range from every 10th of the 200 values
    for name, frame in term_histograms(dec, bins=20).items():
        values = dec.kl if name == "kl" else dec.contributions()[name]
        logs = np.log10(values[values > 0])
        assert frame["count"].sum() + frame.attrs["zeros"] == len(values)
        lo, hi = frame["left"].iloc[0], frame["right"].iloc[-1]
        assert logs[::10].min() <= lo and hi <= logs[::10].max()  # the sample's range, not all values'
        assert frame["count"].iloc[0] >= (logs <= lo).sum() and frame["count"].iloc[-1] >= (logs > hi).sum()


def test_histograms_of_a_term_that_is_zero_everywhere_hold_no_sample(logits):
    student, teacher, labels = logits
    d = decompose(student, teacher, labels, grouping="topk:1", device="cpu")  # |S| = 1: SCD is 0
    frame = term_histograms(d, bins=20)["scd"]
    assert frame.attrs["zeros"] == len(d) and frame["count"].sum() == 0


def test_sweeps_agree_with_direct_decompositions(logits):
    student, teacher, labels = logits
    sweep = temperature_scan(
        student, teacher, labels, temperatures=[1.0, 4.0], grouping="target", device="cpu"
    )
    direct = decompose(student, teacher, labels, grouping="target", temperature=4.0, device="cpu")
    assert sweep.loc[1, "share_wcd"] == pytest.approx(direct.shares()["wcd"])
    gs = grouping_scan(student, teacher, labels, groupings=["topk:1", "topk:4"], sample=50, device="cpu")
    assert list(gs["grouping"]) == ["topk:1", "topk:4"] and set(gs["n"]) == {50}
    assert isinstance(gs, pd.DataFrame)


def test_subset_is_reproducible():
    np.testing.assert_array_equal(subset_rows(100, 10, seed=3), subset_rows(100, 10, seed=3))
    assert len(subset_rows(5, 10)) == 5


def test_comembership_counts_pairs(logits):
    _, teacher, labels = logits
    counts = comembership(teacher, labels, grouping="topk:2", chunk_rows=37)
    top2 = np.argsort(-teacher, axis=1, kind="stable")[:, :2]
    expected = np.zeros((10, 10))
    for a, b in top2:
        expected[a, a] += 1
        expected[b, b] += 1
        expected[a, b] += 1
        expected[b, a] += 1
    np.testing.assert_array_equal(counts, expected)


def test_cluster_classes_finds_families():
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(400, 3))
    cols = [latent[:, [i // 3]] + 0.2 * rng.normal(size=(400, 1)) for i in range(9)]
    order, family = cluster_classes(class_correlation(np.concatenate(cols, 1)), threshold=0.5)
    assert sorted(order.tolist()) == list(range(9))
    assert len(set(family)) == 3 and all(len(set(family[i : i + 3])) == 1 for i in (0, 3, 6))


def test_class_breakdown_of_no_samples_is_an_empty_table(dec):
    empty = dec.subset(np.zeros(len(dec), dtype=bool))  # e.g. a failure set nobody is in
    frame = class_breakdown(empty)
    assert len(frame) == 0 and list(frame.columns) == list(class_breakdown(dec).columns)
