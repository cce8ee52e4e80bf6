"""Small seeded fixtures shared by the test files (200 x 10 logits, docs/architecture.md §7)."""

from __future__ import annotations

import numpy as np
import pytest


def make_logits(n: int = 200, c: int = 10, seed: int = 0, scale: float = 3.0):
    """Teacher, student (a noisy, blurred copy of the teacher) and labels, all numpy.

    Returns (student (N, C) float32, teacher (N, C) float32, labels (N,) int64).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    teacher = rng.normal(0.0, 1.0, size=(n, c)) * scale
    teacher[np.arange(n), labels] += 2.0 * scale
    student = 0.6 * teacher + rng.normal(0.0, 1.5, size=(n, c))
    return student.astype(np.float32), teacher.astype(np.float32), labels.astype(np.int64)


@pytest.fixture
def logits():
    """(student, teacher, labels): 200 x 10, seeded."""
    return make_logits()


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Every test (and every app server a test starts) keeps what cakd-viz caches (built C kernels) in a
    temporary folder, never in the user's ~/.cache/cakd-viz."""
    import os

    folder = tmp_path_factory.mktemp("cakd-cache")
    before = os.environ.get("CAKD_VIZ_CACHE_DIR")
    os.environ["CAKD_VIZ_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("CAKD_VIZ_CACHE_DIR", None)
    else:
        os.environ["CAKD_VIZ_CACHE_DIR"] = before


@pytest.fixture(scope="module")
def chromium():
    """One Chromium per test file (Playwright's sync API allows one per process at a time). Without
    Debian's Chromium the test FAILS and says how to install it."""
    from cakd_viz.app import serve

    missing = serve.chromium_missing()
    if missing:
        pytest.fail(missing)
    with serve.browser() as b:
        yield b
