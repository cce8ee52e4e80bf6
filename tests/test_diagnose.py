"""cakd_viz.diagnose: failure sets, rankings, per-class dominant terms and confusion pairs, each checked
against a plain numpy (or loop) re-derivation from the logits."""

from collections import Counter

import numpy as np
import pytest
from conftest import make_logits
from reference import reference_terms

from cakd_viz import decompose
from cakd_viz import diagnose as dg
from cakd_viz.decomposition import membership
from cakd_viz.decomposition.membership import in_strong_set
from cakd_viz.families import cluster_classes
from cakd_viz.grouping import class_correlation

TERMS = ("bcd", "scd", "wcd")
NAMES = [f"c{i}" for i in range(10)]


@pytest.fixture(scope="module")
def case():
    """(student, teacher, labels, decomposition at topk:3, T=2): 200 x 10, seeded."""
    s, t, y = make_logits()
    return s, t, y, decompose(s, t, y, grouping="topk:3", temperature=2.0, device="cpu")


def _topk_mask(t: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-t, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(t, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _reference_contributions(s, t, k=3, temperature=2.0):
    ref = reference_terms(s, t, _topk_mask(t, k), temperature)  # (N, 7): kl, bcd, scd, wcd, p_S, p_W, q_S
    return ref[:, 0], np.stack([ref[:, 1], ref[:, 4] * ref[:, 2], ref[:, 5] * ref[:, 3]], axis=1)


def test_failure_sets_match_plain_argmax(case):
    s, t, y, d = case
    tp, sp = t.argmax(1), s.argmax(1)
    expected = {
        "Student wrong, teacher right": (tp == y) & (sp != y),
        "Both wrong": (tp != y) & (sp != y),
        "Student disagrees with teacher": tp != sp,
    }
    for name, want in expected.items():
        np.testing.assert_array_equal(dg.failure_mask(d, name), want)
    assert all(expected[n].any() for n in expected), "the fixture should exercise every set"


def test_only_disagreement_without_labels(logits):
    s, t, _ = logits
    d = decompose(s, t, grouping="topk:3", device="cpu")
    assert dg.available_sets(d) == ["Student disagrees with teacher"]
    with pytest.raises(ValueError, match="needs labels"):
        dg.failure_mask(d, "Both wrong")
    with pytest.raises(ValueError, match="unknown failure set 'nope'"):
        dg.failure_mask(d, "nope")


@pytest.mark.parametrize("by", list(dg.RANK_KEYS.values()))
def test_failure_table_ranks_like_numpy(case, by):
    s, t, y, d = case
    mask = dg.failure_mask(d, "Both wrong")
    table = dg.failure_table(d, mask, by=by, limit=7, class_names=NAMES)
    kl, contrib = _reference_contributions(s, t)
    key = {
        "kl": kl,
        "bcd": contrib[:, 0],
        "scd_contribution": contrib[:, 1],
        "wcd_contribution": contrib[:, 2],
    }
    key = key.get(by, getattr(d, by))
    rows = np.flatnonzero(mask)
    want = rows[np.argsort(-key[rows], kind="stable")[:7]]
    np.testing.assert_array_equal(table["index"], want)
    assert len(table) == 7 and table[by].is_monotonic_decreasing
    np.testing.assert_allclose(table["kl"], kl[want], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        table["kl"], table["bcd"] + table["scd_contribution"] + table["wcd_contribution"], rtol=1e-5
    )
    assert list(table["dominant"]) == [TERMS[j] for j in contrib[want].argmax(1)]
    assert list(table["label_name"]) == [NAMES[j] for j in y[want]]
    assert list(table["student_name"]) == [NAMES[j] for j in s.argmax(1)[want]]


def test_failure_table_whole_set_and_bad_key(case):
    _, _, _, d = case
    mask = dg.failure_mask(d, "Student disagrees with teacher")
    assert len(dg.failure_table(d, mask)) == mask.sum()
    with pytest.raises(ValueError, match="cannot rank by 'loss'"):
        dg.failure_table(d, mask, by="loss")


def test_class_failures_match_a_loop(case):
    s, t, y, d = case
    mask = dg.failure_mask(d, "Both wrong")
    frame = dg.class_failures(d, mask, by="label", num_classes=10, class_names=NAMES)
    kl, contrib = _reference_contributions(s, t)
    for row in frame.to_dict("records"):
        members = np.flatnonzero(mask & (y == row["class"]))
        assert row["failures"] == len(members) and row["samples"] == (y == row["class"]).sum()
        assert row["name"] == NAMES[row["class"]]
        sums = contrib[members].sum(0)
        np.testing.assert_allclose([row[f"{x}_total"] for x in TERMS], sums, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(row["kl_total"], kl[members].sum(), rtol=1e-4)
        assert row["dominant"] == TERMS[int(sums.argmax())]
        per_sample = Counter(TERMS[j] for j in contrib[members].argmax(1))
        assert [row[f"dominant_count_{x}"] for x in TERMS] == [per_sample[x] for x in TERMS]
    np.testing.assert_allclose(frame[["share_bcd", "share_scd", "share_wcd"]].sum(axis=1), 1.0, rtol=1e-6)
    assert frame["failures"].sum() == mask.sum()
    assert frame["failures"].is_monotonic_decreasing


def test_confusion_pairs_match_a_counter(case):
    s, t, y, d = case
    mask = dg.failure_mask(d, "Student wrong, teacher right")
    _, family = cluster_classes(class_correlation(t), threshold=0.0)
    in_strong = in_strong_set(d.student_pred, t, y, grouping="topk:3", temperature=2.0)
    pairs = dg.confusion_pairs(d, mask, class_names=NAMES, family=family, in_strong=in_strong)
    sp = s.argmax(1)
    rows = np.flatnonzero(mask)
    want = Counter(zip(y[rows].tolist(), sp[rows].tolist(), strict=True))
    got = {(a, b): c for a, b, c in zip(pairs["true"], pairs["predicted"], pairs["count"], strict=True)}
    assert got == dict(want)
    assert pairs["count"].is_monotonic_decreasing
    np.testing.assert_allclose(pairs["share"].sum(), 1.0)
    top = _topk_mask(t, 3)
    for r in pairs.itertuples():
        members = rows[(y[rows] == r.true) & (sp[rows] == r.predicted)]
        assert r.same_family == (family[r.true] == family[r.predicted])
        np.testing.assert_allclose(r.in_strong_rate, top[members, sp[members]].mean())
        assert (r.true_name, r.predicted_name) == (NAMES[r.true], NAMES[r.predicted])
    assert len(dg.confusion_pairs(d, mask, limit=3)) == 3


@pytest.mark.parametrize("grouping", ["target", "topk:1", "topk:4", "mass:0.8"])
def test_in_strong_set_rebuilds_s(logits, grouping, monkeypatch):
    s, t, y = logits
    d = decompose(s, t, y, grouping=grouping, temperature=2.0, device="cpu")
    monkeypatch.setattr(membership, "CHUNK_ROWS", 16)
    rows = np.arange(0, 200, 3)
    sp = s.argmax(1)
    got = in_strong_set(sp[rows], t, y, rows, grouping=grouping, temperature=2.0)
    if grouping == "target":
        strong = np.zeros_like(t, dtype=bool)
        strong[np.arange(200), y] = True
    elif grouping.startswith("topk"):
        strong = _topk_mask(t, int(grouping.split(":")[1]))
    else:
        p = np.exp(t / 2.0 - np.log(np.exp(t / 2.0).sum(1, keepdims=True)))
        order = np.argsort(-t, axis=1, kind="stable")
        csum = np.cumsum(np.take_along_axis(p, order, 1), 1)
        keep = np.arange(10)[None, :] < ((csum < 0.8).sum(1, keepdims=True) + 1)
        strong = np.zeros_like(keep)
        np.put_along_axis(strong, order, keep, axis=1)
    np.testing.assert_array_equal(got, strong[rows, sp[rows]])
    np.testing.assert_array_equal(strong.sum(1), d.strong_size)  # the same S as the decomposition's


def test_csv_download_cannot_run_formulas_and_keeps_numbers():
    import io

    import pandas as pd

    frame = pd.DataFrame(
        {
            "index": [0, 1, 2, 3],
            "label_name": ['=HYPERLINK("http://x")', "+1", "cat", "@SUM(A1)"],
            "kl": [-0.5, 1.25, 2.0, 3.0],
        }
    )
    text = dg.spreadsheet_csv(frame)
    back = pd.read_csv(io.StringIO(text))
    assert back["label_name"].tolist() == ['\'=HYPERLINK("http://x")', "'+1", "cat", "'@SUM(A1)"]
    assert back["kl"].tolist() == [-0.5, 1.25, 2.0, 3.0]  # a negative number is not text: unchanged
    assert frame["label_name"][0].startswith("=")  # the caller's frame is not modified
