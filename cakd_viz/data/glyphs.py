"""Glyphs: a 62-class image task (0-9, A-Z, a-z) rendered offline, 32x32 grayscale uint8.

Every glyph comes from Pillow's own embedded font (``ImageFont.load_default(size=...)``, no font
files, no downloads), rasterised once per stroke width into 64x64 templates, then distorted by a
random affine map (rotation, shear, scale, aspect, translation), supersampled 2x2 down to 32x32,
optionally blurred, put on a random background/ink contrast and given uniform noise.

The task has natural families of look-alike classes (o/O/0, l/I/1/i, c/C, s/S/5, v/V, w/W, x/X,
z/Z/2, ...). Glyphs keep their natural relative size (lower-case letters are ~0.77 of capitals)
but the random scale (0.8-1.2) overlaps that cue, so case is only weakly told apart by size.

Determinism: sample ``i`` of a split depends only on ``(seed, split, i)`` through its own
``numpy.random.SeedSequence``; the warp uses only IEEE-exact elementwise arithmetic (rotation from
``tan(theta/2)``, binomial blur kernels, no reductions, no libm), so a split is bit-identical on
every machine with the same (pinned) Pillow/FreeType. Label of sample ``i`` is ``i % 62``.
"""

from __future__ import annotations

import functools
import string

import numpy as np

CLASS_NAMES: tuple[str, ...] = tuple(string.digits + string.ascii_uppercase + string.ascii_lowercase)
NUM_CLASSES = len(CLASS_NAMES)  # 62
IMAGE_SIZE = 32
SPLIT_CODES = {"train": 1, "test": 2}
# Rounded statistics of the default train split (pixels / 255); used to normalise glyph inputs.
MEAN, STD = 0.2, 0.2

_TEMPLATE = 64  # template / supersampled canvas side, 2x the output
_FONT_SIZE = 46
_STROKES = (-1, 0, 1, 2, 3)  # Pillow stroke widths at 64 px; -1 = eroded (thinner than the font)
_NAMESPACE = 0x6C797068  # keeps glyph seeds apart from any other use of the same integers
_CHUNK = 512


@functools.lru_cache(maxsize=1)
def glyph_templates() -> np.ndarray:
    """Ink masks of every class at every stroke width, centred on their bounding box.

    Returns (62, len(_STROKES), 68, 68) float64 in [0, 1]: 64x64 canvases with a 2-pixel zero border.
    """
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.load_default(size=_FONT_SIZE)
    out = np.zeros((NUM_CLASSES, len(_STROKES), _TEMPLATE + 4, _TEMPLATE + 4), dtype=np.float64)
    for c, ch in enumerate(CLASS_NAMES):
        for s, width in enumerate(_STROKES):
            stroke = max(width, 0)
            x0, y0, x1, y1 = font.getbbox(ch, stroke_width=stroke)
            img = Image.new("L", (_TEMPLATE, _TEMPLATE), 0)
            # integer offsets keep the bitmap independent of sub-pixel positioning
            pos = ((_TEMPLATE - (x1 - x0)) // 2 - x0, (_TEMPLATE - (y1 - y0)) // 2 - y0)
            ImageDraw.Draw(img).text(pos, ch, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
            if width < 0:
                img = img.filter(ImageFilter.MinFilter(3))
            out[c, s, 2:-2, 2:-2] = np.asarray(img, dtype=np.float64) / 255.0
    return out


def _params(rng: np.random.Generator) -> np.ndarray:
    """One sample's distortion parameters (12,) from its own generator (exact uniforms only)."""
    u = rng.random(11)
    return np.array(
        [
            np.floor(u[0] * len(_STROKES)),  # stroke index
            (2 * u[1] - 1) * 0.14,  # tan(theta/2): rotation within about +-16 degrees
            (2 * u[2] - 1) * 0.3,  # horizontal shear
            0.8 + 0.4 * u[3],  # scale
            0.85 + 0.3 * u[4],  # extra horizontal stretch (aspect)
            (2 * u[5] - 1) * 0.1,  # x translation, fraction of the frame
            (2 * u[6] - 1) * 0.1,  # y translation
            np.floor(u[7] * 3),  # blur: 0 none, 1 [1 2 1]/4, 2 [1 4 6 4 1]/16
            0.65 + 0.35 * u[8],  # ink intensity
            0.25 * u[9],  # background intensity
            0.2 * u[10],  # noise amplitude (uniform, +-)
        ]
    )


def _warp(labels: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Affine-warp templates (bilinear) for a chunk; labels (B,), params (B, 11) -> (B, 64, 64)."""
    tpl = glyph_templates()
    t, k, sc, asp = p[:, 1], p[:, 2], p[:, 3], p[:, 4]
    cos, sin = (1 - t * t) / (1 + t * t), 2 * t / (1 + t * t)
    sx, sy = sc * asp, sc
    # M = R @ [[1, k], [0, 1]] @ diag(sx, sy): maps template coordinates to output coordinates
    m00, m01, m10, m11 = cos * sx, (cos * k - sin) * sy, sin * sx, (sin * k + cos) * sy
    det = m00 * m11 - m01 * m10
    i00, i01, i10, i11 = m11 / det, -m01 / det, -m10 / det, m00 / det
    grid = (np.arange(_TEMPLATE) + 0.5) / _TEMPLATE - 0.5  # pixel centres in the unit frame
    ox = grid[None, None, :] - p[:, 5, None, None]  # (B, 1, 64)
    oy = grid[None, :, None] - p[:, 6, None, None]  # (B, 64, 1)
    sxs = i00[:, None, None] * ox + i01[:, None, None] * oy  # (B, 64, 64)
    sys_ = i10[:, None, None] * ox + i11[:, None, None] * oy
    col = np.clip((sxs + 0.5) * _TEMPLATE - 0.5, -1.0, float(_TEMPLATE)) + 2  # into the padded canvas
    row = np.clip((sys_ + 0.5) * _TEMPLATE - 0.5, -1.0, float(_TEMPLATE)) + 2
    c0, r0 = np.floor(col), np.floor(row)
    fc, fr = col - c0, row - r0
    side = _TEMPLATE + 4
    base = (labels * len(_STROKES) + p[:, 0].astype(np.int64)) * side * side
    idx = base[:, None, None] + r0.astype(np.int64) * side + c0.astype(np.int64)
    flat = tpl.reshape(-1)
    top = flat[idx] * (1 - fc) + flat[idx + 1] * fc
    bottom = flat[idx + side] * (1 - fc) + flat[idx + side + 1] * fc
    return top * (1 - fr) + bottom * fr


def _blur(x: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Separable binomial blur (zero padding) chosen per sample; x (B, H, W), level (B,)."""

    def conv(a: np.ndarray, taps: tuple[float, ...], axis: int) -> np.ndarray:
        r = len(taps) // 2
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        a = np.pad(a, pad)
        n = a.shape[axis] - 2 * r
        out = np.zeros_like(np.take(a, np.arange(n), axis=axis))
        for j, w in enumerate(taps):
            out = out + w * np.take(a, np.arange(j, j + n), axis=axis)
        return out

    b1 = conv(conv(x, (0.25, 0.5, 0.25), 1), (0.25, 0.5, 0.25), 2)
    b2 = conv(conv(x, (0.0625, 0.25, 0.375, 0.25, 0.0625), 1), (0.0625, 0.25, 0.375, 0.25, 0.0625), 2)
    lv = level[:, None, None]
    return np.where(lv == 0, x, np.where(lv == 1, b1, b2))


def render_glyphs(split: str, indices: np.ndarray | list[int], *, seed: int = 0) -> np.ndarray:
    """Render samples ``indices`` of a split; returns (N, 32, 32) uint8 (label of index i: i % 62)."""
    if split not in SPLIT_CODES:
        raise ValueError(f"glyphs split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    out = np.empty((len(indices), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, len(indices), _CHUNK):
        chunk = indices[start : start + _CHUNK]
        rngs = [np.random.default_rng([_NAMESPACE, seed, SPLIT_CODES[split], int(i)]) for i in chunk]
        params = np.stack([_params(r) for r in rngs])  # (B, 11)
        noise = np.stack([r.random((IMAGE_SIZE, IMAGE_SIZE)) for r in rngs])  # (B, 32, 32)
        ink = _warp(chunk % NUM_CLASSES, params)  # (B, 64, 64)
        ink = (ink[:, 0::2, 0::2] + ink[:, 1::2, 0::2] + ink[:, 0::2, 1::2] + ink[:, 1::2, 1::2]) * 0.25
        ink = _blur(ink, params[:, 7])
        fg, bg, amp = (params[:, j, None, None] for j in (8, 9, 10))
        img = bg + (fg - bg) * ink + amp * (2 * noise - 1)
        out[start : start + len(chunk)] = np.floor(np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=4)
def _split_cached(split: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(per_class * NUM_CLASSES)
    images = render_glyphs(split, idx, seed=seed)
    images.setflags(write=False)
    labels = idx % NUM_CLASSES
    labels.setflags(write=False)
    return images, labels


def glyphs_split(split: str, *, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A whole split: (images (N, 32, 32) uint8, labels (N,) int64), N = 62 * per_class, cached."""
    if per_class < 1:
        raise ValueError(f"glyphs per_class must be >= 1, got {per_class}")
    return _split_cached(split, int(per_class), int(seed))
