"""How much an import may produce: the size limit, its default, parsing "500M"/"2G", and its error.

Every import file declares its arrays' shapes and dtypes before their data (``.npy`` headers inside an
``.npz``, the JSON header of a ``.safetensors`` file, the zip directory of a ``.pt`` file), so an
import adds up what a file would produce and refuses it, in one line, before reading any data:

- when one array, or all of them together, would exceed ``max_bytes`` (:func:`check_limit`);
- when compressed members would expand more than ``BOMB_RATIO`` times the file's size, beyond
  ``BOMB_FLOOR`` (:func:`check_expansion`): a 0.9 MB file that decompresses to 1 GB is a bomb,
  not logits (real logits compress about 1.1x, labels and images 2-20x).

The default limit is half of this machine's physical memory (8 GiB where that cannot be read): an
import holds its arrays in memory while it writes the bundle, so more than that would push the
machine into swap or the out-of-memory killer rather than fail cleanly.
"""

from __future__ import annotations

import os
import re

from cakd_viz.bundle.npy import human_size
from cakd_viz.validate import BundleError

BOMB_RATIO = 100  # bytes an import may produce per byte of file, once past BOMB_FLOOR
BOMB_FLOOR = 256 * 2**20  # any expansion up to this much output is accepted
_FALLBACK_LIMIT = 8 * 2**30
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)


class ImportLimitError(BundleError):
    """An import file would produce more than the import limit allows (the CLI names --max-bytes)."""


def default_max_bytes() -> int:
    """Half of this machine's physical memory (8 GiB when it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_LIMIT


def parse_size(text: str) -> int:
    """A size in bytes: "500M" -> 524288000, "2G" -> 2147483648, "1.5GiB", "800000"; binary units, any case.

    ValueError naming the text when it is not a size.
    """
    m = _SIZE_RE.fullmatch(str(text))
    if m is None:
        raise ValueError(f"expected a size like 500M, 2G or 1.5GiB (or a number of bytes), got {text!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value < 1 or value > 2**62:
        raise ValueError(f"a size must be between 1 byte and 4 EiB, got {text!r}")
    return int(value)


def resolve_limit(max_bytes: int | None) -> int:
    """``max_bytes`` checked, or :func:`default_max_bytes` for None."""
    if max_bytes is None:
        return default_max_bytes()
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a whole number of bytes >= 1 (or None), got {max_bytes!r}")
    return max_bytes


def check_limit(
    src_name: str, what: str, declared: int, limit: int, detail: str | None = None, *, verb: str = "declares"
) -> None:
    """ImportLimitError when ``declared`` bytes exceed ``limit``, e.g.

    "x.npz: member 'teacher' declares (500000, 1000) float32 = 1.9 GiB, over the 1.0 GiB import limit"
    """
    if declared > limit:
        shown = detail or human_size(declared)
        raise ImportLimitError(
            f"{src_name}: {what} {verb} {shown}, over the {human_size(limit)} import limit"
        )


def check_expansion(src_name: str, declared: int, file_size: int) -> None:
    """BundleError when compressed data would expand past ``BOMB_RATIO`` x the file (beyond ``BOMB_FLOOR``)."""
    if declared > BOMB_FLOOR and declared > BOMB_RATIO * max(1, file_size):
        raise BundleError(
            f"{src_name}: its arrays would expand to {human_size(declared)} from a "
            f"{human_size(file_size)} file ({declared // max(1, file_size):,}x); refusing a likely "
            f"decompression bomb (at most {BOMB_RATIO}x beyond {human_size(BOMB_FLOOR)})"
        )
