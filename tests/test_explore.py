"""cakd_viz.explore: which samples pass the explorer's filters, in which order, and their rows; every
selection checked against a plain numpy mask built from the logits (argmax of each model's logits, the
labels) and the terms of an independent float64 reference (tests/reference.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import make_logits
from reference import reference_terms

from cakd_viz import decompose
from cakd_viz import explore as ex

C = 12
NAMES = [f"c{i}" for i in range(C)]
FAMILY = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5])


def _topk_mask(t: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-t, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(t, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


@pytest.fixture(scope="module")
def case():
    """Logits of a teacher and students A and B (400 x 12, seeded), their decompositions at topk:3, T = 2,
    and each sample's largest part from the float64 reference."""
    a, t, y = make_logits(400, C, seed=3)
    b = (0.5 * a + 0.5 * t + np.random.default_rng(1).normal(0, 1.0, a.shape)).astype(np.float32)
    da = decompose(a, t, y, grouping="topk:3", temperature=2.0, device="cpu")
    db = decompose(b, t, y, grouping="topk:3", temperature=2.0, device="cpu")
    ref = reference_terms(a, t, _topk_mask(t, 3), 2.0)  # kl, bcd, scd, wcd, p_S, p_W, q_S
    parts = np.stack([ref[:, 1], ref[:, 4] * ref[:, 2], ref[:, 5] * ref[:, 3]], axis=1)
    return {"a": a, "b": b, "t": t, "y": y, "da": da, "db": db, "largest": parts.argmax(1), "ref": ref}


def _plain_masks(c) -> dict:
    """Each filter of the test below, as plain numpy over the logits."""
    pa, pb, pt, y = c["a"].argmax(1), c["b"].argmax(1), c["t"].argmax(1), c["y"]
    return {
        "true": (ex.Filters(true=4), y == 4),
        "teacher": (ex.Filters(teacher=7), pt == 7),
        "pred": (ex.Filters(pred=2), pa == 2),
        "pred_b": (ex.Filters(pred_b=2), pb == 2),
        "pair": (ex.Filters(pair=(11, 10)), (y == 11) & (pa == 10)),
        "any failure": (ex.Filters(failure=ex.ANY_FAILURE), pa != y),
        "both wrong": (ex.Filters(failure="Both wrong"), (pt != y) & (pa != y)),
        "student wrong": (ex.Filters(failure="Student wrong, teacher right"), (pt == y) & (pa != y)),
        "disagree": (ex.Filters(failure="Student disagrees with teacher"), pa != pt),
        "fixed": (ex.Filters(change="fixed"), (pa != y) & (pb == y)),
        "broken": (ex.Filters(change="broken"), (pa == y) & (pb != y)),
        "term wcd": (ex.Filters(term="wcd"), c["largest"] == 2),
        "term bcd": (ex.Filters(term="bcd"), c["largest"] == 0),
        "family": (ex.Filters(family=1), np.isin(y, [2, 3, 4])),
    }


@pytest.mark.parametrize(
    "name",
    ["true", "teacher", "pred", "pred_b", "pair", "any failure", "both wrong", "student wrong", "disagree"]
    + ["fixed", "broken", "term wcd", "term bcd", "family"],
)
def test_each_filter_selects_what_a_plain_mask_selects(case, name):
    filters, want = _plain_masks(case)[name]
    got = ex.match(case["da"], case["db"], filters=filters, family=FAMILY)
    assert want.any() and not want.all(), "the case must make the filter matter"
    np.testing.assert_array_equal(got, want)


def test_filters_together_are_the_and_of_each():
    s, t, y = make_logits(600, C, seed=5)
    d = decompose(s, t, y, grouping="topk:3", temperature=2.0, device="cpu")
    both = ex.Filters(failure=ex.ANY_FAILURE, true=3)
    want = (s.argmax(1) != y) & (y == 3)
    assert want.sum() >= 2
    np.testing.assert_array_equal(ex.match(d, filters=both), want)
    assert not ex.match(d, filters=ex.Filters(true=3, pair=(4, 0))).any()  # contradicting: nothing


def test_samples_come_sorted_by_the_asked_term_ties_in_bundle_order(case):
    d, ref = case["da"], case["ref"]
    rows = ex.filter_samples(d, filters=ex.Filters(failure=ex.ANY_FAILURE), by="wcd_contribution")
    wrong = np.flatnonzero(case["a"].argmax(1) != case["y"])
    wcd_part = ref[:, 5] * ref[:, 3]
    assert sorted(rows.tolist()) == wrong.tolist()
    assert np.all(np.diff(wcd_part[rows]) <= 1e-9 * wcd_part.max())  # largest first, by the reference
    up = ex.filter_samples(d, filters=ex.Filters(failure=ex.ANY_FAILURE), by="bcd", descending=False)
    assert up.tolist() == sorted(wrong.tolist(), key=lambda i: (d.bcd[i], i))
    by_index = ex.filter_samples(d, filters=ex.Filters(failure=ex.ANY_FAILURE), by="index", descending=False)
    assert by_index.tolist() == wrong.tolist()


def test_ties_keep_the_bundle_order():
    d = decompose(np.zeros((5, 4), np.float32), np.zeros((5, 4), np.float32), grouping="topk:1")
    assert ex.filter_samples(d, by="kl").tolist() == [0, 1, 2, 3, 4]  # every KL is 0


def test_without_labels_the_reference_is_the_teachers_class():
    s, t, _ = make_logits(300, C, seed=2)
    d = decompose(s, t, None, grouping="topk:3", temperature=2.0, device="cpu")
    np.testing.assert_array_equal(ex.reference(d), t.argmax(1))
    got = ex.match(d, filters=ex.Filters(pair=(5, 1)), family=FAMILY)
    np.testing.assert_array_equal(got, (t.argmax(1) == 5) & (s.argmax(1) == 1))
    fam = ex.match(d, filters=ex.Filters(family=5), family=FAMILY)
    np.testing.assert_array_equal(fam, np.isin(t.argmax(1), [9, 10, 11]))


@pytest.mark.parametrize(
    ("filters", "words"),
    [
        (ex.Filters(true=1), "needs labels"),
        (ex.Filters(failure=ex.ANY_FAILURE), "needs labels"),
        (ex.Filters(pred_b=1), "student B"),
        (ex.Filters(family=0), "families"),
        (ex.Filters(term="kl"), "unknown term"),
    ],
)
def test_a_filter_that_cannot_apply_is_a_one_line_error(filters, words):
    s, t, _ = make_logits(50, C, seed=2)
    d = decompose(s, t, None, grouping="topk:3", device="cpu")
    with pytest.raises(ValueError, match=words):
        ex.match(d, filters=filters)


def test_an_unknown_sort_is_refused(case):
    with pytest.raises(ValueError, match="cannot sort by"):
        ex.filter_samples(case["da"], by="nope")


def test_top_confusions_count_the_pairs_where_reference_and_prediction_differ(case):
    pa, y = case["a"].argmax(1), case["y"]
    want = Counter((int(r), int(p)) for r, p in zip(y, pa, strict=True) if r != p)
    every = ex.top_confusions(case["da"], limit=None)
    assert {(t, p): n for t, p, n in every.itertuples(index=False)} == dict(want)
    assert every["count"].is_monotonic_decreasing
    top = ex.top_confusions(case["da"], limit=3)
    assert top["count"].tolist() == sorted(want.values(), reverse=True)[:3]
    only = ex.top_confusions(case["da"], y == 4, limit=None)
    assert set(only["true"]) == {4}


def test_the_table_holds_the_asked_rows_in_order_with_names_and_terms(case):
    d, db, ref = case["da"], case["db"], case["ref"]
    rows = np.array([17, 3, 250])
    table = ex.sample_table(d, rows, d_b=db, class_names=NAMES)
    assert table["index"].tolist() == [17, 3, 250]
    assert table["label_name"].tolist() == [NAMES[case["y"][i]] for i in rows]
    assert table["a_says"].tolist() == [NAMES[case["a"][i].argmax()] for i in rows]
    assert table["b_says"].tolist() == [NAMES[case["b"][i].argmax()] for i in rows]
    np.testing.assert_allclose(table["kl"], ref[rows, 0], rtol=1e-3)
    np.testing.assert_allclose(table["wcd_contribution"], ref[rows, 5] * ref[rows, 3], rtol=1e-3, atol=1e-9)
    assert table["dominant"].tolist() == [("bcd", "scd", "wcd")[case["largest"][i]] for i in rows]
    np.testing.assert_allclose(table["kl_b"], db.kl[rows])
    assert list(ex.sample_table(d, rows[:0]).columns)[:2] == ["index", "label"]  # empty, same columns


def test_pages_cut_the_rows_in_order():
    rows = np.arange(100)[::-1]
    assert ex.page_count(100, 48) == 3 and ex.page_count(0, 48) == 1
    assert ex.page_rows(rows, 3, 48).tolist() == list(range(3, -1, -1))
