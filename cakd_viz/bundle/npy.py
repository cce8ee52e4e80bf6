"""Opening ``.npy`` files memory-mapped, with precise errors for truncated or corrupt files.

``numpy.load`` reports a damaged file as a bare ``ValueError`` ("mmap length is greater than file
size") or, for a file that is not ``.npy`` at all, tries to unpickle it. Here the header is read
first, so the error names the file and says what is wrong; pickles are never loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cakd_viz.validate import BundleError

__all__ = ["open_npy", "npy_header"]

_MAGIC = b"\x93NUMPY"


def npy_header(file: Path, rel: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Read a .npy header: (shape, fortran_order, dtype, data offset). ``rel`` names it in errors."""
    try:
        with open(file, "rb") as fp:
            if fp.read(6) != _MAGIC:
                raise BundleError(f"{rel} is not a .npy file (bad magic bytes); it may be corrupt")
            fp.seek(0)
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
            else:  # 3.0 (utf-8 header): numpy has no public reader for it
                shape, fortran, dtype = np.lib.format._read_array_header(fp, version)
            offset = fp.tell()
    except BundleError:
        raise
    except FileNotFoundError as exc:
        raise BundleError(f"{rel} is missing") from exc
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise BundleError(f"{rel} is corrupt: cannot read its .npy header ({exc})") from exc
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype), offset


def open_npy(file: Path, rel: str, mode: str = "r") -> np.ndarray:
    """Open a .npy file memory-mapped (``mode`` "r" or "r+"), checking header and size first.

    Object dtypes (which would need unpickling) are refused. An array with no elements cannot be
    memory-mapped; it is returned as a plain empty array (the caller's checks then reject it).
    """
    shape, fortran, dtype, offset = npy_header(file, rel)
    if dtype.hasobject:
        raise BundleError(f"{rel} holds Python objects (dtype {dtype}); refusing to unpickle it")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = file.stat().st_size - offset
    if actual < expected:
        raise BundleError(
            f"{rel} is truncated: its header says {shape} {dtype} ({expected} bytes of data), "
            f"the file holds {actual} bytes"
        )
    if actual > expected:
        raise BundleError(
            f"{rel} is corrupt: {actual - expected} unexpected bytes after the {shape} {dtype} data"
        )
    if expected == 0:
        return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    try:
        if mode == "r":
            return np.load(file, mmap_mode="r", allow_pickle=False)
        return np.lib.format.open_memmap(file, mode=mode)
    except (ValueError, OSError) as exc:
        raise BundleError(f"{rel} cannot be opened: {exc}") from exc
