"""Checking a zip archive (``.npz``, ``.pt``) before anything in it is read or decompressed.

Python's ``zipfile`` (and PyTorch's reader) load the whole central directory into memory, one object
per entry, whatever its size; and they trust each entry's declared sizes. So, from the end-of-central-
directory record alone (at most 64 KiB at the end of the file), :func:`open_zip` refuses an archive
whose directory exceeds ``MAX_DIRECTORY_BYTES`` or ``MAX_ENTRIES`` entries, then lists the entries and
refuses duplicate names, encrypted entries, and compression methods whose decompressor cannot be
bounded (only stored and deflated entries are read: ``zipfile`` hands a bzip2 or LZMA chunk to its
decompressor without an output limit).
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from cakd_viz.bundle.npy import human_size
from cakd_viz.validate import BundleError

__all__ = ["MAX_DIRECTORY_BYTES", "MAX_ENTRIES", "is_zip", "open_zip"]

MAX_DIRECTORY_BYTES = 4 * 2**20  # about 60,000 entries of ordinary names; ours hold a handful
MAX_ENTRIES = 65_535
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_LOCATOR = struct.Struct("<4sLQL")  # zip64 end of central directory locator
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record


def is_zip(src: Path) -> bool:
    """``zipfile.is_zipfile``, and True for an archive whose end records it finds but cannot read (it
    raises BadZipFile there, e.g. "span multiple disks"): :func:`open_zip` names that damage."""
    try:
        return zipfile.is_zipfile(src)
    except zipfile.BadZipFile:
        return True


def _directory_size(src: Path, what: str) -> tuple[int, int]:
    """(entries, central directory bytes) from the end records; BundleError when it is not a zip."""
    with open(src, "rb") as fp:
        size = fp.seek(0, 2)
        tail_len = min(size, _EOCD.size + 65_535)
        fp.seek(size - tail_len)
        tail = fp.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            raise BundleError(f"{src.name}: not a zip archive (no end-of-directory record)")
        _, _, _, _, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:  # zip64
            loc_at = size - tail_len + at - _LOCATOR.size
            if loc_at < 0:
                raise BundleError(f"{src.name}: corrupt {what} (zip64 locator missing)")
            fp.seek(loc_at)
            sig, _, eocd64_at, _ = _LOCATOR.unpack(fp.read(_LOCATOR.size))
            if sig != b"PK\x06\x07" or eocd64_at + _EOCD64.size > size:
                raise BundleError(f"{src.name}: corrupt {what} (bad zip64 locator)")
            fp.seek(eocd64_at)
            record = fp.read(_EOCD64.size)
            if len(record) != _EOCD64.size or record[:4] != b"PK\x06\x06":
                raise BundleError(f"{src.name}: corrupt {what} (bad zip64 directory record)")
            fields = _EOCD64.unpack(record)
            entries, cd_size = fields[7], fields[8]
    return entries, cd_size


def open_zip(src: Path, what: str = "zip archive") -> zipfile.ZipFile:
    """Open ``src`` as a zip archive after the checks above; the caller closes it."""
    try:
        entries, cd_size = _directory_size(src, what)
    except OSError as exc:
        raise BundleError(f"{src.name}: cannot be read ({exc.strerror or exc})") from None
    except struct.error:
        raise BundleError(f"{src.name}: corrupt {what} (truncated end records)") from None
    if entries > MAX_ENTRIES or cd_size > MAX_DIRECTORY_BYTES:
        raise BundleError(
            f"{src.name}: its zip directory declares {entries:,} entries in {human_size(cd_size)} "
            f"(at most {MAX_ENTRIES:,} in {human_size(MAX_DIRECTORY_BYTES)}); not a {what} of logits"
        )
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise BundleError(f"{src.name}: corrupt {what} ({' '.join(str(exc).split())})") from None
    try:
        seen: set[str] = set()
        for info in zf.infolist():
            if info.filename in seen:
                raise BundleError(f"{src.name}: the {what} holds {info.filename!r} twice; refusing it")
            seen.add(info.filename)
            if info.flag_bits & 0x1:
                raise BundleError(f"{src.name}: member {info.filename!r} is encrypted; refusing it")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise BundleError(
                    f"{src.name}: member {info.filename!r} uses zip compression method {info.compress_type}; "
                    "only stored and deflated members are read"
                )
    except BaseException:
        zf.close()
        raise
    return zf
