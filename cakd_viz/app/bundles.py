"""Opening bundles for the app from a URL's source token: "sample:glyphs", "path:runs/x/bundle" or
"upload:<sha256 prefix>" (an uploaded file imported into a bundle on this server). Tokens are hostile
(docs/architecture.md §3, "What a browser can reach"): every failure is a ValueError with one line, safe
as Markdown, naming no server path. Memory-mapped bundles are shared by every session, never modified.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import streamlit as st

from cakd_viz import settings
from cakd_viz.app import config as app_config
from cakd_viz.app.config import plain
from cakd_viz.bundle import Bundle, BundleError, load_bundle
from cakd_viz.decomposition.scan import scan_logits
from cakd_viz.grouping import class_correlation
from cakd_viz.scans import subset_rows
from cakd_viz.validate import check_logits

UPLOAD_DIR = Path(tempfile.gettempdir()) / "cakd-viz-uploads"
PARTIAL_KEEP_S = 3600  # an import that died half-way (its ".partial-" folder) is removed after an hour
SCHEMES = ("sample", "path", "upload")
MAX_NAME_CHARS = 100  # an uploaded file's name is kept (and shown) up to this length
BUNDLE_FILES_LIMIT = 10_000  # entries a path: bundle may hold (each is checked against the data roots)
# The teacher's class correlation is computed over at most this many samples (a fixed random subsample
# beyond; corr:R groupings use that matrix and the pages say so): 100,000 x 1,000 takes ~3 s on 2 cores.
CORRELATION_ROWS = 100_000


class Opened(NamedTuple):
    bundle: Bundle
    source: str  # the canonical source token (paths shortened to their data-root form)
    label: str  # shown as text: "sample: glyphs", "upload: logits.npz", "path: runs/x/bundle"
    key: tuple[str, str]  # (resolved path, stamp of its files' identities): the bundle's identity for caches


def open_source(source: str) -> Opened:
    """Open the bundle a source token names; ValueError (one line, markdown-safe) when it cannot be opened.

    The message is the reason only ("outside the data roots (...)"); callers say what was asked for.
    """
    source = str(source)
    if len(source) > app_config.MAX_PATH_CHARS + 10:
        raise ValueError(f"too long ({len(source):,} characters)")
    kind, sep, rest = source.partition(":")
    if not sep or kind not in SCHEMES:
        raise ValueError("not a bundle source (use sample:NAME, path:PATH or upload:ID)")
    roots = app_config.data_roots()
    if kind == "sample":
        present = app_config.available_samples()  # the shipped samples on disk
        if rest not in present:
            raise ValueError(f"no such shipped sample (shipped: {', '.join(present) or 'none present'})")
        path, label, token = app_config.sample_path(rest), f"sample: {rest}", source
    elif kind == "path":
        path, where = _server_bundle(rest, roots)
        app_config.check_tree_confined(path, roots, limit=BUNDLE_FILES_LIMIT)
        token, label = f"path:{where}", f"path: {where}"
    else:
        if not (len(rest) == 16 and all(ch in "0123456789abcdef" for ch in rest)):
            raise ValueError("not an upload reference of this server")
        upload_root = _upload_root()
        path = upload_root / rest / "bundle"
        if not path.is_dir():
            raise ValueError("that uploaded file is no longer on this server; upload it again")
        try:
            app_config.check_tree_confined(path, [upload_root], limit=BUNDLE_FILES_LIMIT)
        except app_config.PathRefused:
            raise ValueError("that upload holds links out of the upload folder; upload it again") from None
        app_config.touch(upload_root / rest)
        label, token = f"upload: {_upload_name(rest)}", source
    try:
        key = str(path.resolve()), files_stamp(path)
    except OSError:
        raise ValueError("not a bundle directory (no meta.json)") from None
    try:
        bundle = load(*key)
    except Exception as exc:  # an unreadable or invalid bundle must not take the app down
        # the label may hold an upload's name (the browser's) or a folder's: text, like the reason
        raise ValueError(f"{plain(label)}: {_safe(exc, roots=roots)}") from None
    return Opened(bundle, token, label, key)


def path_source(text: str) -> str:
    """The source token of a server path typed by a user; PathRefused when it is outside the data roots."""
    return "path:" + _server_bundle(text, app_config.data_roots(), "; import files with `cakd-viz import`")[1]


def _server_bundle(text: str, roots: list[Path], hint: str = "") -> tuple[Path, str]:
    """(resolved path, its data-root form) of a bundle directory under the data roots."""
    path = app_config.resolve_server_path(text, roots)  # PathRefused is a ValueError
    where = app_config.display_path(path, roots)
    if not (path / "meta.json").is_file():
        raise ValueError(f"{where} is not a bundle directory (no meta.json){hint}")
    return path, where


def upload_limits() -> tuple[int, int]:
    """(largest upload, largest decompressed arrays of one) in bytes, from the server's
    ``server.maxUploadSize`` and ``cakd_viz.app.config.upload_expanded_cap``."""
    mb = st.get_option("server.maxUploadSize") or app_config.UPLOAD_MAX_MB
    return int(mb * 2**20), app_config.upload_expanded_cap(mb)


def upload_name(name: str) -> str:
    """The part of an uploaded file's name that is kept: after the last / or \\, printable characters
    only, at most ``MAX_NAME_CHARS``; "upload" when nothing is left."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[-MAX_NAME_CHARS:] or "upload"


def import_upload(name: str, data: bytes, *, max_bytes: int | None = None) -> str:
    """Import an uploaded npz / safetensors / pt file into a temporary bundle; returns its source token.

    ``data`` is the upload as Streamlit holds it (no copy is made: hashed and written as it is).
    ``max_bytes`` caps the arrays once decompressed (default: ``upload_limits()``); past it, or for a
    bad file, ValueError with one line and nothing left behind. The same bytes always give the same
    token (sha256), so re-uploading is instant.
    """
    name = upload_name(name)
    largest, cap = upload_limits()
    cap = cap if max_bytes is None else int(max_bytes)
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in app_config.UPLOAD_EXTENSIONS:
        raise ValueError(f"unsupported file type; upload one of {', '.join(app_config.UPLOAD_EXTENSIONS)}")
    if len(data) > largest:
        raise ValueError(f"{len(data) / 2**20:,.1f} MB, more than the {largest / 2**20:,.0f} MB upload limit")
    digest = hashlib.sha256(data).hexdigest()[:16]
    upload_root = _upload_root()
    folder = upload_root / digest
    quota = UploadQuota.from_settings()
    if len(data) + cap > quota.max_bytes:  # the file and its arrays, at most, beside each other
        raise ValueError(
            f"an upload may take up to {(len(data) + cap) / 2**20:,.1f} MB here, more than all uploads may "
            f"hold together ({quota.max_bytes / 2**20:,.1f} MB); ask the operator, or open it by server path"
        )
    prune_uploads(keep=digest, room=len(data) + cap, quota=quota)
    if (folder / "bundle" / "meta.json").is_file():
        app_config.touch(folder)
        return f"upload:{digest}"
    from cakd_viz.bundle.imports import import_file  # imported lazily: pulls in torch/safetensors readers

    work = Path(tempfile.mkdtemp(prefix=f"{digest}.partial-", dir=upload_root))  # private to this import
    src = work / f"upload.{ext}"
    try:
        with open(src, "wb") as f:
            f.write(data)
        import_file(src, work / "bundle", overwrite=True, max_bytes=cap)
        (work / "name.txt").write_text(name, encoding="utf-8")
        src.unlink()
        try:
            work.rename(folder)  # atomic; loses only to a concurrent import of the same bytes
        except OSError:
            if not (folder / "bundle" / "meta.json").is_file():
                raise
    except Exception as exc:  # any reader failure (zip, torch, safetensors) becomes one clear line
        swaps = {str(src): src.name, str(work): "the upload"}
        raise ValueError(_safe(exc, swaps=swaps, subject=src.name, name=name)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return f"upload:{digest}"


@dataclass(frozen=True)
class UploadQuota:
    """What the server keeps of uploads, all of them together (the operator's settings)."""

    max_bytes: int  # $CAKD_VIZ_UPLOADS_MAX_GB
    max_count: int  # $CAKD_VIZ_UPLOADS_MAX_COUNT
    keep_s: float  # $CAKD_VIZ_UPLOADS_KEEP_HOURS: an upload unused that long is removed

    @classmethod
    def from_settings(cls) -> UploadQuota:
        return cls(
            int(settings.number("CAKD_VIZ_UPLOADS_MAX_GB") * 2**30),
            int(settings.number("CAKD_VIZ_UPLOADS_MAX_COUNT")),
            float(settings.number("CAKD_VIZ_UPLOADS_KEEP_HOURS")) * 3600,
        )

    def describe(self) -> str:
        return (
            f"the server keeps at most {self.max_count:,} uploads and {self.max_bytes / 2**30:,.1f} GB of them "
            f"in all, each for {self.keep_s / 3600:,.4g} hours after it was last opened; the least recently "
            "opened go first"
        )


def prune_uploads(
    *, keep: str = "", now: float | None = None, room: int = 0, quota: UploadQuota | None = None
) -> list[str]:
    """Make the upload folder fit its quota, with ``room`` bytes and one upload more to spare; returns
    the folder names removed.

    Removed: dead half-imports (older than PARTIAL_KEEP_S), uploads unused for the quota's time, then the
    least recently used until the count and the bytes fit. "Used" is the folder's modification time,
    renewed whenever the upload is opened; ``keep`` (the upload being made) is never removed. A session
    still showing a removed upload keeps its memory-mapped arrays; a link to it says to upload it again.
    """
    quota = quota or UploadQuota.from_settings()
    now = time.time() if now is None else now
    removed, kept = [], []
    try:
        entries = list(UPLOAD_DIR.iterdir())
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.is_dir() or entry.name == keep:
                continue
            used = entry.stat().st_mtime
        except OSError:  # e.g. removed meanwhile by another session's pruning
            continue
        partial = ".partial-" in entry.name
        if now - used > (PARTIAL_KEEP_S if partial else quota.keep_s):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        elif not partial:
            kept.append((used, entry, _size(entry)))
    kept.sort(key=lambda item: item[0])  # least recently used first
    while kept and (len(kept) >= quota.max_count or sum(s for *_, s in kept) + room > quota.max_bytes):
        entry = kept.pop(0)[1]
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


def _size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (allocated blocks, not sparse lengths)."""
    total = 0
    for top, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
    return total


def _upload_root() -> Path:
    return app_config.private_folder(UPLOAD_DIR, "upload folder", "uploads are off")


@st.cache_resource(
    max_entries=6,
    show_spinner="Opening the bundle (every value is checked for NaN and inf, and each model's predictions "
    "taken on the way)…",
)
def load(path: str, stamp: str) -> Bundle:
    """The memory-mapped bundle at `path`, validated (`stamp`: ``files_stamp``), shared by every session."""
    return open_checked(path)


def open_checked(path: str | Path) -> Bundle:
    """``load_bundle(path)`` with its NaN/inf check made by one kernel pass per logit file that also takes
    each model's top-1 predictions (published into the bundle: its accuracies and summary are then
    instant). A bad value raises ``load_bundle``'s own message (``BundleError``)."""
    bundle = load_bundle(path, check_values=False)
    models = [("teacher", "teacher.npy", bundle.teacher)]
    models += [(name, f"students/{name}.npy", arr) for name, arr in bundle.students.items()]
    for who, rel, arr in models:
        try:
            pred = scan_logits(arr, rel)
        except ValueError as exc:
            check_logits(arr, rel)  # counts and places every NaN and inf, as load_bundle says it
            raise BundleError(str(exc)) from None
        bundle.remember_predictions(who, pred)
    return bundle


@st.cache_resource(max_entries=6, show_spinner="Correlating the teacher's logits…")
def correlation(path: str, stamp: str, standardize: bool = False) -> np.ndarray:
    """The teacher's (C, C) class correlation (read-only; shared), over all samples or, beyond
    ``CORRELATION_ROWS``, a fixed random subsample of that many (``correlation_scope`` says which);
    with ``standardize``, of the teacher's logits standardized per sample (what corr:R reads under LS)."""
    return teacher_correlation(load(path, stamp).teacher, standardize=standardize)


def teacher_correlation(
    teacher, max_rows: int = CORRELATION_ROWS, *, standardize: bool = False
) -> np.ndarray:
    """``grouping.class_correlation`` of ``teacher`` (N, C), float64 and read-only, over all rows, or over
    the fixed random ``scans.subset_rows(N, max_rows, 0)`` when N > ``max_rows``."""
    rows = subset_rows(len(teacher), max_rows, 0)
    source = teacher if len(rows) == len(teacher) else np.asarray(teacher[rows])
    matrix = np.asarray(class_correlation(source, standardize=standardize), dtype=np.float64)
    matrix.flags.writeable = False  # one matrix serves every caller
    return matrix


def correlation_scope(num_samples: int) -> str:
    """Which samples the class correlation of a bundle of ``num_samples`` covers, without computing it:
    "over all 50,000 samples" or "over a fixed random subsample of 100,000 of 1,280,000 samples"."""
    if num_samples <= CORRELATION_ROWS:
        return f"over all {num_samples:,} samples"
    return f"over a fixed random subsample of {CORRELATION_ROWS:,} of {num_samples:,} samples"


def files_stamp(path: Path) -> str:
    """What changes whenever a file of the bundle at ``path`` may have: device, inode, size,
    modification and status-change times (ns) of meta.json and of every ``.npy`` in it and in
    ``students/``, hashed. (cakd-viz's writers replace files, a new inode; an edit in place changes the
    times. A tool can set the modification time back, ``touch -r``, but not the status-change time: the
    kernel sets that on every write, so an edit that keeps inode, size and mtime is still seen.)"""
    h = hashlib.sha256()
    files = [path / "meta.json", *sorted(path.glob("*.npy")), *sorted((path / "students").glob("*.npy"))]
    for f in files:
        info = f.stat()
        stamp = (f.name, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        h.update(repr(stamp).encode())
    return h.hexdigest()[:32]


def _upload_name(digest: str) -> str:
    try:
        return (UPLOAD_DIR / digest / "name.txt").read_text(encoding="utf-8").strip() or digest
    except OSError:
        return digest


def _safe(
    exc: BaseException,
    *,
    roots: list[Path] | None = None,
    swaps: dict[str, str] | None = None,
    subject: str = "",
    name: str = "",
) -> str:
    """One line for the browser from a library's error: its first line (with the exception's type unless
    it is a ValueError, the library's way of saying "bad input"), server paths replaced, markdown escaped.
    A message about file ``subject`` loses its leading "subject: " (the caller names the file) and says
    ``name`` wherever it names ``subject``."""
    text = app_config.one_line(str(exc)) or type(exc).__name__
    if not isinstance(exc, ValueError):
        text = f"could not be read ({type(exc).__name__}: {text})"
    for long, short in sorted((swaps or {}).items(), key=lambda s: -len(s[0])):
        text = text.replace(long, short)
    if subject:
        text = text.removeprefix(f"{subject}: ").replace(subject, name or subject)
    return plain(app_config.scrub(text, roots))
