"""Hostile import files, built in code in well under a second each (tests/test_hostile_files.py and
benchmarks/bench_hostile_inputs.py replay them).

Each builder writes a file that a careless reader would turn into a large allocation, a long
decompression or a traceback: a 1 MB .npz that inflates to 1 GiB, headers that declare huge shapes,
zip entries that lie about their sizes, zip directories with tens of thousands of entries, .safetensors
headers that lie about offsets, and .pt files with compressed members or one storage behind many
tensors. Zips are written by hand (``write_zip``) so that sizes, methods and CRCs can lie.
"""

from __future__ import annotations

import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np

GiB = 2**30


def npy_header(shape: tuple, descr: str = "<f4", fortran: bool = False, version: int = 1) -> bytes:
    """The bytes of a .npy header declaring ``shape`` and ``descr``, whatever the data that follows."""
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {tuple(shape)!r}, }}"
    return npy_header_text(text, version)


def npy_header_text(text: str, version: int = 1) -> bytes:
    """A .npy header whose dictionary is ``text`` as given (padded as numpy pads it), however wrong."""
    size_len = 2 if version == 1 else 4
    pad = (64 - (6 + 2 + size_len + len(text) + 1) % 64) % 64
    text = text + " " * pad + "\n"
    packed = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + packed + text.encode("latin1")


def npy_bytes(arr: np.ndarray) -> bytes:
    """A real .npy file's bytes."""
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


class Entry:
    """One zip member as it will be written: its name, its bytes on disk, and what the directory claims."""

    def __init__(
        self,
        name: str,
        data: bytes,
        *,
        method: int,
        crc: int,
        file_size: int,
        compress_size: int | None = None,
    ) -> None:
        self.name, self.data, self.method, self.crc = name.encode(), data, method, crc
        self.file_size = file_size
        self.compress_size = len(data) if compress_size is None else compress_size


def stored(name: str, payload: bytes, *, claim_size: int | None = None) -> Entry:
    size = len(payload) if claim_size is None else claim_size
    return Entry(name, payload, method=0, crc=zlib.crc32(payload), file_size=size, compress_size=size)


def deflated(name: str, payload: bytes, *, claim_size: int | None = None) -> Entry:
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = co.compress(payload) + co.flush()
    return Entry(
        name,
        data,
        method=8,
        crc=zlib.crc32(payload),
        file_size=len(payload) if claim_size is None else claim_size,
    )


def zeros_deflated(name: str, head: bytes, zero_bytes: int, *, claim_size: int | None = None) -> Entry:
    """``head`` followed by ``zero_bytes`` zeros, deflated without ever holding the zeros: after a full
    flush the compressor starts afresh, so one compressed MiB of zeros repeats verbatim."""
    mib = 2**20
    assert zero_bytes % mib == 0
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = co.compress(head) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(bytes(mib)) + co.flush(zlib.Z_FULL_FLUSH)
    data = first + block * (zero_bytes // mib) + co.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    zeros = bytes(mib)
    for _ in range(zero_bytes // mib):
        crc = zlib.crc32(zeros, crc)
    size = len(head) + zero_bytes
    return Entry(name, data, method=8, crc=crc, file_size=size if claim_size is None else claim_size)


def write_zip(path: Path, entries: list[Entry]) -> Path:
    """A zip archive (no zip64: every size under 4 GiB) holding ``entries`` exactly as described."""
    out, directory = bytearray(), bytearray()
    for e in entries:
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H",
            b"PK\x03\x04",
            20,
            0,
            e.method,
            0,
            0,
            e.crc,
            e.compress_size,
            e.file_size,
            len(e.name),
            0,
        )
        out += e.name + e.data
        directory += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            e.method,
            0,
            0,
            e.crc,
            e.compress_size,
            e.file_size,
            len(e.name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        directory += e.name
    start = len(out)
    out += directory
    n = len(entries)
    out += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), len(directory), start, 0
    )
    path.write_bytes(bytes(out))
    return path


def zip64_end(
    path: Path,
    *,
    entries: int | None = None,
    cd_size: int | None = None,
    record_at: int | None = None,
    locator_sig: bytes = b"PK\x06\x07",
    record_sig: bytes = b"PK\x06\x06",
) -> Path:
    """Rewrite the end of the zip archive at ``path`` as zip64 writes it (a zip64 end record and its
    locator before an end record whose counts and sizes say "see zip64", where cakd-viz must read the
    zip64 record), the zip64 record telling the truth unless given ``entries``, ``cd_size``, where it is
    (``record_at``) or other signatures. Zip64 records already there (torch.save writes them) are replaced."""
    data = path.read_bytes()
    at = data.rfind(b"PK\x05\x06")
    _, _, _, count, _, size, offset, _ = struct.unpack_from("<4s4H2LH", data, at)
    if data[at - 20 : at - 16] == b"PK\x06\x07":  # already zip64 (torch.save's writer adds the records)
        at = struct.unpack_from("<4sLQL", data, at - 20)[2]
    count = count if entries is None else entries
    size = size if cd_size is None else cd_size
    record = struct.pack("<4sQ2H2L4Q", record_sig, 44, 45, 45, 0, 0, count, count, size, offset)
    locator = struct.pack("<4sLQL", locator_sig, 0, at if record_at is None else record_at, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(data[:at] + record + locator + end)
    return path


# -- .npz ----------------------------------------------------------------------------------------------


def npz_bomb(path: Path, zero_bytes: int = GiB) -> Path:
    """About 1 MB on disk: 'teacher' and 'student' are valid (N, 1024) float32 .npy members of zeros,
    ``zero_bytes`` each once inflated (the issue's 0.9 MB file that decompressed to 1 GB)."""
    head = npy_header((zero_bytes // 4096, 1024))
    return write_zip(
        path,
        [zeros_deflated("teacher.npy", head, zero_bytes), zeros_deflated("student.npy", head, zero_bytes)],
    )


def npz_declared_huge(path: Path, shape: tuple = (10**12, 1000)) -> Path:
    """A tiny .npz whose 'teacher' and 'student' headers declare ``shape`` float32 (their zip entries
    agree, up to what a zip without zip64 can say), and no data."""
    head = npy_header(shape)
    size = min(len(head) + int(np.prod(shape, dtype=object)) * 4, 2**32 - 1)
    return write_zip(path, [stored(f"{k}.npy", head, claim_size=size) for k in ("teacher", "student")])


def npz_lying_entry(path: Path) -> Path:
    """'teacher' inflates to 256 MiB, but its zip entry says 1 KB: the entry must bound what is read."""
    head = npy_header((65536, 1024))
    student = deflated("student.npy", npy_bytes(np.zeros((65536, 1024), np.float16)[:0]))
    return write_zip(path, [zeros_deflated("teacher.npy", head, 256 * 2**20, claim_size=1024), student])


def npz_huge_header(path: Path) -> Path:
    """A version 2 .npy header claiming 4 GiB of header text."""
    head = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{'descr': '<f4'"
    return write_zip(path, [stored("teacher.npy", head), stored("student.npy", head)])


def npz_many_entries(path: Path, count: int = 60_000) -> Path:
    """``count`` empty members with long names: a 6 MB zip directory a reader would hold as objects."""
    return write_zip(path, [stored(f"student_{i:040d}.npy", b"") for i in range(count)])


def npz_bzip2(path: Path) -> Path:
    """A valid .npy member compressed with bzip2 (zipfile inflates bzip2 chunks without a limit)."""
    import bz2

    payload = npy_bytes(np.zeros((4, 3), np.float32))
    data = bz2.compress(payload)
    return write_zip(
        path, [Entry("teacher.npy", data, method=12, crc=zlib.crc32(payload), file_size=len(payload))]
    )


# -- .safetensors --------------------------------------------------------------------------------------


def safetensors_file(path: Path, header: dict, data: bytes = b"", *, header_len: int | None = None) -> Path:
    import json

    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data)
    return path


def safetensors_huge_header(path: Path) -> Path:
    """The first 8 bytes claim a 1 TiB JSON header."""
    return safetensors_file(path, {"teacher": {}}, header_len=2**40)


def safetensors_declared_huge(path: Path) -> Path:
    """'teacher' declares (500000, 1000) float32 at offsets [0, 2e9]; the file holds 16 bytes of data."""
    header = {
        "teacher": {"dtype": "F32", "shape": [500000, 1000], "data_offsets": [0, 2_000_000_000]},
        "student": {"dtype": "F32", "shape": [2, 2], "data_offsets": [2_000_000_000, 2_000_000_016]},
    }
    return safetensors_file(path, header, bytes(16))


def safetensors_overlapping(path: Path) -> Path:
    """Two tensors on the same bytes."""
    header = {
        "teacher": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "student": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    }
    return safetensors_file(path, header, bytes(16))


# -- .pt -----------------------------------------------------------------------------------------------


def pt_recompressed(src: Path, path: Path) -> Path:
    """A torch.save file rewritten with every member deflated (torch.save never compresses)."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    return path


def pt_shared_storage(path: Path, copies: int = 5000, rows: int = 1000, classes: int = 100) -> Path:
    """One (rows, classes) float32 storage saved once, referenced by ``copies`` students: a ~400 KB file
    that would become copies x 400 KB of arrays."""
    import torch

    t = torch.zeros(rows, classes)
    torch.save({"teacher": t, **{f"student_{i}": t for i in range(copies)}}, path)
    return path


def pt_big_pickle(path: Path, names: int = 2_000_000) -> Path:
    """Tiny tensors and a class-name list whose pickle is tens of MB."""
    import torch

    t = torch.zeros(2, 3)
    torch.save({"teacher": t, "student": t, "class_names": [f"class-{i}" for i in range(names)]}, path)
    return path


# -- measuring -----------------------------------------------------------------------------------------


def sample_peaks(proc: subprocess.Popen, interval: float = 0.005, timeout: float = float("inf")) -> dict:
    """Peak VmHWM and RssAnon (bytes) of ``proc``, read from /proc/PID/status until it exits (or for
    ``timeout`` seconds at most).

    VmHWM is the kernel's own high-water mark of the process's memory since it started its program;
    the last reading before exit is its peak. (A child's rusage would not do: Linux carries the
    parent's high-water mark over fork and exec into the child's ru_maxrss.)
    """
    peak = {"peak": 0, "anon": 0}
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            for line in status.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "RssAnon"):
                    field = "peak" if key == "VmHWM" else "anon"
                    peak[field] = max(peak[field], int(value.split()[0]) * 1024)
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(interval)
    return peak
