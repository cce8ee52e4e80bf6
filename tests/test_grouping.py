"""Grouping specs (docs/architecture.md §4): parsing, the strong sets they pick, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cakd_viz.grouping import (
    GROUPING_FORMS,
    class_correlation,
    correlated_classes,
    parse_grouping,
    strong_mask,
    topk_mask,
)


def test_the_forms_are_the_registered_rules_in_order():
    assert GROUPING_FORMS == ("target", "topk:K", "topk+target:K", "mass:P", "corr:R")
    assert list(GROUPING_FORMS) == ["target", "topk:K", "topk+target:K", "mass:P", "corr:R"]


@pytest.mark.parametrize(
    ("spec", "kind", "param"),
    [
        ("target", "target", None),
        ("topk:5", "topk", 5),
        (" topk+target:2 ", "topk+target", 2),
        ("mass:0.9", "mass", 0.9),
        ("corr:-0.25", "corr", -0.25),
        ("topk:3.0", "topk", 3),
    ],
)
def test_specs_parse_and_print_back(spec, kind, param):
    g = parse_grouping(spec)
    assert (g.name, g.param) == (kind, param)
    assert parse_grouping(str(g)) == g


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("mass:0.9999999", "mass:0.9999999"),
        ("mass:0.1234567", "mass:0.1234567"),
        ("corr:0.33333333", "corr:0.33333333"),
        ("topk:1234567", "topk:1234567"),
        ("mass:1e-7", "mass:1e-07"),
        ("topk:5.0", "topk:5"),
        ("mass:0.35000000000000003", "mass:0.35"),
        ("topk:9007199254740993", "topk:9007199254740993"),
        ("topk:9223372036854775807", "topk:9223372036854775807"),
        ("topk:1e60", "topk:9223372036854775807"),  # beyond int64: C - 1 all the same
        ("topk+target:9223372036854775808", "topk+target:9223372036854775807"),
    ],
)
def test_a_spec_prints_back_its_exact_parameter(spec, text):
    """str(grouping) reads back as the parameter typed (the CLI and every saved setting pass the text on):
    never rounded to 6 digits, so mass:0.9999999 is no 'mass:1' (refused) and 0.1234567 no 0.123457;
    float noise from a slider's steps is not shown."""
    g = parse_grouping(spec)
    assert str(g) == text
    assert parse_grouping(str(g)) == parse_grouping(text)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "valid forms: target, topk:K, topk\\+target:K, mass:P, corr:R"),
        ("topk", "needs a parameter"),
        ("topk:0", "K must be a whole number >= 1"),
        ("topk:2.5", "whole number"),
        ("mass:1", "strictly between 0 and 1"),
        ("mass:0", "strictly between"),
        ("corr:1.5", "between -1 and 1"),
        ("target:3", "takes no parameter"),
        ("", "valid forms"),
    ],
)
def test_bad_specs_list_the_valid_forms(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_grouping(spec)


def test_topk_ties_go_to_the_lower_class_index():
    z = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    mask = topk_mask(z, 2).numpy()
    np.testing.assert_array_equal(mask[0], [False, True, True, False, False])
    np.testing.assert_array_equal(mask[1], [True, True, False, False, False])
    np.testing.assert_array_equal(mask[2], [True, True, False, False, False])


def test_topk_matches_a_stable_sort(logits):
    _, teacher, _ = logits
    z = torch.from_numpy(np.round(teacher))  # rounding creates many ties
    order = np.argsort(-z.numpy(), axis=1, kind="stable")[:, :4]
    expected = np.zeros(z.shape, bool)
    np.put_along_axis(expected, order, True, axis=1)
    np.testing.assert_array_equal(topk_mask(z, 4).numpy(), expected)


def test_topk_is_clipped_to_c_minus_one():
    z = torch.randn(4, 3)
    assert strong_mask("topk:10", z).sum(1).tolist() == [2, 2, 2, 2]


def test_target_and_topk_plus_target(logits):
    _, teacher, labels = logits
    z, y = torch.from_numpy(teacher), torch.from_numpy(labels)
    target = strong_mask("target", z, y).numpy()
    assert target.sum(1).tolist() == [1] * len(labels) and target[np.arange(len(labels)), labels].all()
    both = strong_mask("topk+target:2", z, y).numpy()
    top2 = strong_mask("topk:2", z).numpy()
    np.testing.assert_array_equal(both, top2 | target)


@pytest.mark.parametrize("p", [0.3, 0.6, 0.95])
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_mass_picks_the_fewest_top_classes_reaching_p(logits, p, temperature):
    _, teacher, _ = logits
    mask = strong_mask(f"mass:{p}", torch.from_numpy(teacher), temperature=temperature).numpy()
    probs = np.exp(teacher / temperature - teacher.max(1, keepdims=True) / temperature)
    probs /= probs.sum(1, keepdims=True)
    for row, m in zip(probs, mask, strict=True):
        k = m.sum()
        srt = np.sort(row)[::-1]
        assert srt[:k].sum() >= p - 1e-6  # reaches P
        assert k == 1 or srt[: k - 1].sum() < p + 1e-6  # one fewer would not
        assert row[m].min() >= row[~m].max() - 1e-7 if (~m).any() else True  # top classes


def test_correlation_matches_numpy_corrcoef(logits):
    _, teacher, _ = logits
    np.testing.assert_allclose(class_correlation(teacher, chunk_rows=33), np.corrcoef(teacher.T), atol=1e-6)


def test_constant_class_correlates_with_nothing(logits):
    _, teacher, _ = logits
    teacher = teacher.copy()
    teacher[:, 3] = 1.5
    corr = class_correlation(teacher)
    assert corr[3, 3] == 1.0 and np.isnan(corr[3, [0, 1, 2]]).all()
    assert not correlated_classes(corr, -1.0).numpy()[3, [0, 1, 2]].any()


def test_corr_grouping_takes_the_prediction_and_its_correlated_classes():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 2))
    # classes 0,1,2 follow latent 0; classes 3,4 follow latent 1; class 5 is noise
    teacher = np.concatenate(
        [
            base[:, [0]] + 0.1 * rng.normal(size=(500, 3)),
            base[:, [1]] + 0.1 * rng.normal(size=(500, 2)),
            rng.normal(size=(500, 1)),
        ],
        axis=1,
    ).astype(np.float32)
    correlated = correlated_classes(class_correlation(teacher), 0.8)
    mask = strong_mask("corr:0.8", torch.from_numpy(teacher), correlated=correlated).numpy()
    pred = teacher.argmax(1)
    families = {0: {0, 1, 2}, 1: {0, 1, 2}, 2: {0, 1, 2}, 3: {3, 4}, 4: {3, 4}, 5: {5}}
    for m, k in zip(mask, pred, strict=True):
        assert set(np.flatnonzero(m)) == families[k]


def test_rules_that_need_inputs_say_so(logits):
    _, teacher, _ = logits
    with pytest.raises(ValueError, match="needs labels"):
        strong_mask("target", torch.from_numpy(teacher))
    with pytest.raises(ValueError, match="correlation matrix"):
        strong_mask("corr:0.5", torch.from_numpy(teacher))


@pytest.mark.parametrize("spec", ["target", "topk:5", "topk+target:2", "mass:0.9", "corr:0.5"])
def test_every_grouping_has_a_description(spec):
    text = parse_grouping(spec).describe()
    assert text.startswith("S = ")


@pytest.mark.parametrize(
    ("spec", "number"),
    [("mass:0.9999999", "0.9999999"), ("corr:0.33333333", "0.33333333"), ("corr:-1", "-1")],
)
def test_a_description_states_the_parameter_as_typed(spec, number):
    """As the spec's text does: captions said mass:0.9999999 holds '1' of the teacher's mass (6 digits)."""
    g = parse_grouping(spec)
    for text in (g.describe(), g.describe(short=True)):
        assert f" {number} of" in text or f">= {number}" in text
        assert text.count(number) == 1 and "1e" not in text


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("topk:" + "9" * 400, "too long"),
        ("topk:1e400", "not a finite number"),
        ("mass:nan", "unknown grouping"),  # the grammar has no words for numbers
        ("topk:1e999", "not a finite number"),
    ],
)
def test_huge_or_non_finite_parameters_are_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_grouping(spec)
    assert len(str(err.value)) < 200  # a message never repeats a huge spec


def test_class_correlation_is_accumulated_in_float64():
    """Logits on a large common offset with small, strongly correlated variations: the correlation agrees
    with numpy's float64 corrcoef to 1e-12 (float32 sums would be off by ~1e-6), so corr:R compares R
    with a float64 value."""
    from cakd_viz.grouping import class_correlation

    rng = np.random.default_rng(5)
    base = rng.normal(size=(50_000, 1))
    noise = rng.normal(size=(50_000, 4)) * np.array([0.1, 0.3, 1.0, 3.0])
    logits = 1000.0 + base + noise  # float64 input, read as float64
    got = class_correlation(logits, chunk_rows=4096)
    np.testing.assert_allclose(got, np.corrcoef(logits, rowvar=False), rtol=0, atol=1e-12)
