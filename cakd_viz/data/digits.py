"""Digits: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), no download.

Pixels (0-16 in the original) are stored as uint8 0-255 so that every image source in cakd-viz
shares one convention. The train/test split is stratified, with its own numpy seed, so it does not
depend on scikit-learn's splitting code.
"""

from __future__ import annotations

import functools

import numpy as np

CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
NUM_CLASSES = 10
IMAGE_SIZE = 8
TEST_FRACTION = 0.3
# Rounded statistics of the train split (pixels / 255); used to normalise digit inputs.
MEAN, STD = 0.3, 0.4


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # scikit-learn is an optional (app) dependency
        raise ValueError("sample:digits needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    images = np.floor(bunch.images * (255.0 / 16.0) + 0.5).astype(np.uint8)  # (1797, 8, 8)
    return images, bunch.target.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _split_indices(seed: int) -> tuple[np.ndarray, np.ndarray]:
    _, labels = _all_digits()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(TEST_FRACTION * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def digits_split(split: str, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One split: (images (N, 8, 8) uint8, labels (N,) int64); train ~70%, test ~30%, stratified."""
    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train' or 'test', got {split!r}")
    images, labels = _all_digits()
    idx = _split_indices(int(seed))[0 if split == "train" else 1]
    return images[idx], labels[idx]
