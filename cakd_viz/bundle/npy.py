"""Reading ``.npy`` headers and opening ``.npy`` files, with precise errors and bounded memory.

``numpy.load`` reports a damaged file as a bare ``ValueError`` ("mmap length is greater than file
size"), tries to unpickle a file that is not ``.npy`` at all, and reads whatever header length a file
declares. Here the header is read first, by :func:`read_header`, from a file or any stream (a zip
member of an ``.npz``): at most ``MAX_HEADER_BYTES``, parsed as a Python literal, simple numeric or
text dtypes only (pickles and structured dtypes are refused), sizes computed with Python integers so
that a declared shape like ``(10**12, 10**12)`` is a clear error and never an overflow or a
``MemoryError``. Every error is one line naming the file.
"""

from __future__ import annotations

import ast
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cakd_viz.validate import BundleError, iter_row_chunks

__all__ = ["MAX_HEADER_BYTES", "NpyHeader", "as_text", "human_size", "open_npy", "read_header"]

_MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 64 * 1024  # numpy writes about 128 bytes; numpy.load's own limit is 10,000


def human_size(num_bytes: int) -> str:
    """2_147_483_648 -> '2.0 GiB' (binary units, as the --max-bytes suffixes)."""
    value = float(num_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024


def as_text(value: object) -> str:
    """A name read from an array or a file as text: bytes (an ``S`` array's items) decoded as UTF-8,
    anything else by ``str``."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header declares: shape, dtype, memory order, and where the data starts."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # bytes before the data

    @property
    def nbytes(self) -> int:
        """Bytes of data the header declares (a Python int: never overflows)."""
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        """E.g. "(500000, 1000) float32 = 1.9 GiB"."""
        return f"{self.shape} {self.dtype.name} = {human_size(self.nbytes)}"


def read_header(fp: BinaryIO, rel: str) -> NpyHeader:
    """Read a ``.npy`` header from the start of ``fp`` (a file or a zip member); ``rel`` names it in errors."""
    if fp.read(6) != _MAGIC:
        raise BundleError(f"{rel} is not a .npy file (bad magic bytes); it may be corrupt")
    version = fp.read(2)
    if len(version) != 2 or version[0] not in (1, 2, 3):
        raise BundleError(f"{rel} is corrupt: unknown .npy format version {tuple(version)}")
    size_format = "<H" if version[0] == 1 else "<I"
    raw_len = fp.read(struct.calcsize(size_format))
    if len(raw_len) != struct.calcsize(size_format):
        raise BundleError(f"{rel} is corrupt: cannot read its .npy header (the file ends inside it)")
    (length,) = struct.unpack(size_format, raw_len)
    if length > MAX_HEADER_BYTES:
        raise BundleError(
            f"{rel} is corrupt: its .npy header claims {length:,} bytes (a real one has about 128)"
        )
    raw = fp.read(length)
    if len(raw) != length:
        raise BundleError(f"{rel} is corrupt: cannot read its .npy header (the file ends inside it)")
    try:
        text = raw.decode("utf-8" if version[0] == 3 else "latin1")
        fields = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError, TypeError) as exc:
        raise BundleError(f"{rel} is corrupt: cannot read its .npy header ({type(exc).__name__})") from None
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        raise BundleError(f"{rel} is corrupt: its .npy header is not {{'descr', 'fortran_order', 'shape'}}")
    shape, fortran = fields["shape"], fields["fortran_order"]
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise BundleError(f"{rel} is corrupt: its .npy shape {shape!r} is not a tuple of whole numbers")
    if any(s < 0 for s in shape) or len(shape) > 32:
        raise BundleError(f"{rel} is corrupt: impossible .npy shape {shape!r}")
    if not isinstance(fortran, bool):
        raise BundleError(f"{rel} is corrupt: its .npy fortran_order is {fortran!r}")
    try:
        dtype = np.lib.format.descr_to_dtype(fields["descr"])
    except Exception as exc:  # numpy raises TypeError, ValueError or KeyError for a bad descr
        raise BundleError(f"{rel} is corrupt: unknown .npy dtype {fields['descr']!r} ({exc})") from None
    if dtype.hasobject:
        raise BundleError(f"{rel} holds Python objects (dtype {dtype}); refusing to unpickle it")
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biufcSU":
        raise BundleError(f"{rel} has dtype {dtype}; only plain numbers (or text for names) are supported")
    offset = 6 + 2 + struct.calcsize(size_format) + length
    return NpyHeader(tuple(shape), fortran, dtype, offset)


def _file_header(file: Path, rel: str) -> NpyHeader:
    if file.exists() and not file.is_file():  # a FIFO or a device would block or never end
        raise BundleError(f"{rel} is not a regular file")
    try:
        with open(file, "rb") as fp:
            return read_header(fp, rel)
    except FileNotFoundError:
        raise BundleError(f"{rel} is missing") from None
    except OSError as exc:
        raise BundleError(f"{rel} cannot be read ({exc.strerror or exc})") from None


def open_npy(file: Path, rel: str, mode: str = "r") -> np.ndarray:
    """Open a .npy file memory-mapped (``mode`` "r" or "r+"), checking header and size first.

    Object and structured dtypes are refused. A big-endian (non-native) array is read into memory in
    native byte order (mode "r" only): torch cannot take a byte-swapped memory map, and every reader
    then sees the same native dtype. An array with no elements is returned as a plain empty array
    (the caller's checks then reject it).
    """
    h = _file_header(file, rel)
    expected = h.nbytes
    try:
        actual = file.stat().st_size - h.offset
    except OSError as exc:
        raise BundleError(f"{rel} cannot be read ({exc.strerror or exc})") from None
    if actual < expected:
        raise BundleError(
            f"{rel} is truncated: its header says {h.shape} {h.dtype.name} ({expected:,} bytes of data), "
            f"the file holds {max(0, actual):,} bytes"
        )
    if actual > expected:
        raise BundleError(
            f"{rel} is corrupt: {actual - expected:,} unexpected bytes after the {h.shape} {h.dtype.name} data"
        )
    order = "F" if h.fortran else "C"
    if expected == 0:
        return np.empty(h.shape, dtype=h.dtype.newbyteorder("="), order=order)
    try:
        arr = np.memmap(file, dtype=h.dtype, mode=mode, offset=h.offset, shape=h.shape, order=order)
    except (ValueError, OSError, OverflowError) as exc:
        raise BundleError(f"{rel} cannot be opened: {exc}") from None
    if h.dtype.isnative or h.dtype.itemsize == 1:
        return arr
    if mode != "r":
        raise BundleError(f"{rel} is big-endian ({h.dtype.str}); cakd-viz writes native byte order only")
    return _to_native(arr, rel)


def _to_native(arr: np.ndarray, rel: str) -> np.ndarray:
    """A native-byte-order copy of a byte-swapped array, copied row chunk by row chunk."""
    try:
        out = np.empty(
            arr.shape, dtype=arr.dtype.newbyteorder("="), order="F" if arr.flags.f_contiguous else "C"
        )
    except (MemoryError, ValueError):
        raise BundleError(
            f"{rel} is big-endian and too large to convert in memory ({human_size(arr.nbytes)}); "
            "re-save it in native (little-endian) byte order"
        ) from None
    if arr.ndim == 0:
        out[...] = arr
    else:
        for chunk in iter_row_chunks(arr.shape[0], max(1, arr.size // max(1, arr.shape[0]))):
            out[chunk] = arr[chunk]
    out.flags.writeable = False
    return out
