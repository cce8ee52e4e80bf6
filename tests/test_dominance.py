"""cakd_viz.dominance: does logit standardization change which term dominates? Per student and per class,
checked against each decomposition's own shares and class breakdown."""

import numpy as np
import pytest
from conftest import make_logits

from cakd_viz import decompose
from cakd_viz.aggregates import class_breakdown
from cakd_viz.dominance import classes_table, students_table
from cakd_viz.terms import heading


@pytest.fixture
def pair():
    student, teacher, labels = make_logits(300, 10, seed=11)
    scaled = (0.3 * teacher).astype(np.float32)  # right ranking, smaller scale: LS forgives it
    kw = {"grouping": "topk:3", "temperature": 2.0}
    plain = {n: decompose(s, teacher, labels, **kw) for n, s in (("noisy", student), ("scaled", scaled))}
    ls = {
        n: decompose(s, teacher, labels, **kw, standardize=True)
        for n, s in (("noisy", student), ("scaled", scaled))
    }
    return plain, ls


def test_every_students_shares_without_and_with_ls(pair):
    plain, ls = pair
    table = students_table(plain, ls).set_index("student")
    for name in plain:
        row = table.loc[name]
        for term, share in plain[name].shares().items():
            assert row[f"share_{term}"] == pytest.approx(share)
            assert row[f"share_{term}_ls"] == pytest.approx(ls[name].shares()[term])
        assert row["kl_mean_ls"] == pytest.approx(float(ls[name].kl.mean()))
        assert row["dominant"] == max(plain[name].shares(), key=plain[name].shares().get)
        assert row["changed"] == (row["dominant"] != row["dominant_ls"])
    assert table.loc["scaled", "kl_mean_ls"] < 1e-9 < table.loc["scaled", "kl_mean"]
    assert heading("share_bcd_ls") == "share of KL: BCD, with LS (%)"


def test_per_class_the_classes_whose_largest_part_changes_come_first(pair):
    plain, ls = pair
    table = classes_table(plain["noisy"], ls["noisy"], by="label", num_classes=10)
    a = class_breakdown(plain["noisy"], by="label", num_classes=10).set_index("class")
    b = class_breakdown(ls["noisy"], by="label", num_classes=10).set_index("class")
    assert sorted(table["class"]) == sorted(a.index)
    for row in table.itertuples():
        assert (row.dominant, row.dominant_ls) == (a.loc[row[1], "dominant"], b.loc[row[1], "dominant"])
        assert row.changed == (row.dominant != row.dominant_ls)
    changed = table["changed"].to_numpy()
    assert not np.any(changed[1:] & ~changed[:-1])  # every changed class before every unchanged one


def test_the_two_decompositions_must_be_plain_then_standardized_of_one_setting(pair):
    plain, ls = pair
    with pytest.raises(ValueError, match="a plain decomposition"):
        students_table(ls, plain)
    other = decompose(
        *make_logits(300, 10, seed=11)[:2], grouping="topk:3", temperature=4.0, standardize=True
    )
    with pytest.raises(ValueError, match="differ in setting"):
        classes_table(plain["noisy"], other)
