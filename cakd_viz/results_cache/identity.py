"""What identifies an array's values, cheaply, for cache keys: the file behind it, or its bytes.

A memory-mapped ``.npy`` that covers its whole file (as a bundle's arrays are) is identified by the file:
resolved path, device and inode, size, modification time in nanoseconds, and a hash of sampled bytes
(the header, the first and last 64 KiB and six blocks in between). Rewriting a bundle changes at least
one of them: cakd-viz's writers replace files (a new inode), and an edit in place changes the time. Any
other array (in memory, a slice, a big-endian file read into memory) is identified by a hash of all its
bytes, which costs about a second per GB.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["array_identity", "code_fingerprint", "content_digest"]

_BLOCK = 64 * 1024
_SAMPLES = 6  # blocks hashed between the first and the last


def array_identity(arr) -> dict:
    """A JSON-able description that changes whenever the values of ``arr`` may have changed."""
    arr = arr.numpy() if hasattr(arr, "numpy") and not isinstance(arr, np.ndarray) else arr
    file = _whole_file(arr)
    base = {"shape": list(arr.shape), "dtype": np.dtype(arr.dtype).str}
    if file is not None:
        return base | file
    return base | {"sha256": content_digest(arr)}


def content_digest(arr) -> str:
    """sha256 of the array's bytes in C order (read in blocks of rows: memory stays bounded)."""
    a = np.asarray(arr)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.ndim == 0 or a.shape[0] == 0:
        h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()
    row_bytes = max(1, a.nbytes // max(1, a.shape[0]))
    step = max(1, (16 << 20) // row_bytes)
    for start in range(0, a.shape[0], step):
        h.update(np.ascontiguousarray(a[start : start + step]).data)
    return h.hexdigest()


def _whole_file(arr) -> dict | None:
    """The file identity of a memmap that maps its file's whole data region; None for anything else."""
    if not isinstance(arr, np.memmap) or not arr.flags.c_contiguous or arr.filename is None:
        return None
    try:
        info = os.stat(arr.filename)
    except OSError:
        return None
    # A slice of a memmap is a memmap too, with its parent's filename and offset: it covers the whole
    # data region only when the header offset plus its bytes reach the end of the file exactly.
    if int(arr.offset) + int(arr.nbytes) != info.st_size or int(arr.offset) > _BLOCK:
        return None
    try:
        # ... and when its first byte is the first byte after the header.
        start = arr.ctypes.data - np.frombuffer(arr._mmap, dtype=np.uint8).ctypes.data
    except (AttributeError, TypeError, ValueError):
        return None
    if start != (int(arr.offset) % _page()):
        return None
    return {
        "file": str(Path(arr.filename).resolve()),
        "dev": info.st_dev,
        "ino": info.st_ino,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "offset": int(arr.offset),
        "sample": _sampled_bytes(arr.filename, info.st_size),
    }


@lru_cache(maxsize=1)
def _page() -> int:
    return int(__import__("mmap").ALLOCATIONGRANULARITY)


def _sampled_bytes(path: str, size: int) -> str:
    """sha256 of the first and last 64 KiB of the file and ``_SAMPLES`` blocks spread in between."""
    h = hashlib.sha256()
    spots = sorted({0, max(0, size - _BLOCK), *(size * k // (_SAMPLES + 1) for k in range(1, _SAMPLES + 1))})
    with open(path, "rb") as fh:
        for spot in spots:
            fh.seek(spot)
            h.update(fh.read(_BLOCK))
    return h.hexdigest()


@lru_cache(maxsize=4)
def code_fingerprint(*folders_or_files: str) -> str:
    """sha256 over the source files (``.py``, ``.c``, ``.h``) under the given paths of the ``cakd_viz``
    package: a key part that changes when the code computing a cached result changes."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for rel in folders_or_files:
        target = root / rel
        files = sorted(target.rglob("*")) if target.is_dir() else [target]
        for f in files:
            if f.suffix in (".py", ".c", ".h") and f.is_file():
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()
