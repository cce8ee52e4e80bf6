"""cakd_viz.embedding: the 2-D map of the samples. PCA checked against an independent SVD of scipy's
softmax, t-SNE for determinism and for keeping separated groups apart, the subsample for its rows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import make_logits
from scipy.special import softmax

from cakd_viz import embedding
from cakd_viz.scans import subset_rows


def test_pca_places_each_sample_at_its_first_two_principal_components():
    _, t, _ = make_logits(300, 10, seed=1)
    m = embedding.teacher_map(t, temperature=2.0, method="pca")
    p = softmax(t.astype(np.float64) / 2.0, axis=1)
    centred = p - p.mean(axis=0)
    u, sv, _ = np.linalg.svd(centred, full_matrices=False)
    want = u[:, :2] * sv[:2]
    for k in range(2):  # a component's sign is a convention: compare up to it
        sign = np.sign(np.dot(want[:, k], m.xy[:, k]))
        np.testing.assert_allclose(m.xy[:, k], sign * want[:, k], atol=1e-8)
    assert m.rows.tolist() == list(range(300)) and m.scope() == "all 300 samples"


def test_the_same_inputs_and_seed_give_the_same_map():
    _, t, _ = make_logits(80, 8, seed=2, scale=6.0)
    for method in embedding.METHODS:
        one = embedding.teacher_map(t, temperature=4.0, method=method, seed=3)
        two = embedding.teacher_map(t.copy(), temperature=4.0, method=method, seed=3)
        np.testing.assert_array_equal(one.xy, two.xy)


def test_tsne_keeps_groups_that_the_teacher_separates_apart():
    rng = np.random.default_rng(0)
    centres = np.eye(6)[[0, 3]] * 12.0  # two groups of samples, confident in class 0 or class 3
    t = np.concatenate([c + rng.normal(0, 0.5, (60, 6)) for c in centres]).astype(np.float32)
    m = embedding.teacher_map(t, temperature=1.0, method="tsne")
    a, b = m.xy[:60], m.xy[60:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    spread = max(a.std(0).max(), b.std(0).max())
    assert gap > 3 * spread


def test_beyond_the_limit_a_fixed_random_subsample_is_placed_and_said():
    _, t, _ = make_logits(500, 6, seed=4)
    m = embedding.teacher_map(t, temperature=1.0, method="pca", limit=120, seed=0)
    assert m.rows.tolist() == subset_rows(500, 120, 0).tolist() and m.xy.shape == (120, 2)
    assert m.scope() == "120 of 500 samples, drawn at random with seed 0"
    assert embedding.LIMITS["tsne"] <= 5_000  # t-SNE is slow: it never places more than a stated few


@pytest.mark.parametrize("method", list(embedding.METHODS))
def test_samples_the_teacher_cannot_tell_apart_share_one_place(method):
    """A teacher with the same probabilities for every sample (constant logits, or confident past float64's
    range): t-SNE's PCA start divided by their spread, 0, and its Barnes-Hut tree crashed the process on
    the NaN positions (a segmentation fault: the app's server gone); PCA warned of 0 / 0."""
    rows = np.zeros((50, 4), np.float32), np.tile(np.float32([[900, 0, 0, 0]]), (50, 1))
    for t in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m = embedding.teacher_map(t, temperature=1.0, method=method)
        np.testing.assert_array_equal(m.xy, np.zeros((50, 2)))


@pytest.mark.parametrize(
    ("kwargs", "words"), [({"method": "umap"}, "unknown map method"), ({"temperature": 0}, "> 0")]
)
def test_a_bad_method_or_temperature_is_refused(kwargs, words):
    _, t, _ = make_logits(20, 4)
    with pytest.raises(ValueError, match=words):
        embedding.teacher_map(t, **({"temperature": 1.0} | kwargs))


def test_probabilities_are_each_rows_softmax_at_t():
    _, t, _ = make_logits(30, 5)
    rows = np.array([2, 7, 29])
    np.testing.assert_allclose(
        embedding.probabilities(t, rows, 3.0), softmax(t[rows].astype(np.float64) / 3.0, axis=1), rtol=1e-12
    )
