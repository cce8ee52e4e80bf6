"""Opening bundles for the app: shipped samples, server paths under the data root, and uploads.

A bundle is named by a source token that fits in a URL: "sample:glyphs", "path:runs/x/bundle" or
"upload:<sha256 prefix>" (an uploaded file imported into a temporary bundle on this server).
Memory-mapped bundles live in `st.cache_resource`; every failure is a ValueError with one line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from appkit import config as app_config
from cakd_viz.bundle import Bundle, load_bundle
from cakd_viz.grouping import class_correlation
from cakd_viz.validate import BundleError

UPLOAD_DIR = Path(tempfile.gettempdir()) / "cakd-viz-uploads"
UPLOAD_KEEP_S = 7 * 24 * 3600  # an upload nobody opened for a week is removed at the next upload
PARTIAL_KEEP_S = 3600  # an import that died half-way (its ".partial-" folder) is removed after an hour


@dataclass(frozen=True)
class Opened:
    bundle: Bundle
    source: str  # the canonical source token (paths shortened to their data-root form)
    label: str  # shown as text: "sample: glyphs", "upload: logits.npz", "path: runs/x/bundle"
    key: tuple[str, float]  # (resolved path, meta.json mtime): the bundle's identity for caches


def open_source(source: str) -> Opened:
    """Open the bundle a source token names; ValueError (one line) when it cannot be opened."""
    kind, _, rest = str(source).partition(":")
    if kind == "sample":
        if rest not in app_config.SAMPLES:
            raise ValueError(f"unknown sample {rest!r}; shipped: {', '.join(app_config.SAMPLES)}")
        path, label, token = app_config.sample_path(rest), f"sample: {rest}", source
    elif kind == "path":
        path = app_config.resolve_server_path(rest)  # PathRefused is a ValueError
        token = f"path:{app_config.display_path(path)}"
        label = f"path: {app_config.display_path(path)}"
    elif kind == "upload":
        if not (len(rest) == 16 and all(ch in "0123456789abcdef" for ch in rest)):
            raise ValueError("malformed upload reference")
        path = UPLOAD_DIR / rest / "bundle"
        if not path.is_dir():
            raise ValueError("that uploaded file is no longer on this server; upload it again")
        _touch(UPLOAD_DIR / rest)
        label, token = f"upload: {_upload_name(rest)}", source
    else:
        raise ValueError(f"unknown bundle source {source!r} (expected sample:, path: or upload:)")
    key = _identity(path)
    try:
        bundle = load(*key)
    except ValueError:
        raise
    except Exception as exc:  # an unreadable file must not take the app down
        raise ValueError(f"{label}: could not be opened ({type(exc).__name__}: {exc})") from None
    return Opened(bundle, token, label, key)


def path_source(text: str) -> str:
    """The source token of a server path typed by a user; PathRefused when it is outside the data root."""
    path = app_config.resolve_server_path(text)
    if not (path / "meta.json").is_file():
        raise ValueError(
            f"{text}: not a bundle directory (no meta.json); import files with `cakd-viz import`"
        )
    return f"path:{app_config.display_path(path)}"


def import_upload(name: str, data: bytes) -> str:
    """Import an uploaded npz / safetensors / pt file into a temporary bundle; returns its source token.

    The same bytes always give the same token (sha256), so re-uploading is instant. A bad file raises
    ValueError with the importer's one-line message and leaves nothing behind.
    """
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in app_config.UPLOAD_EXTENSIONS:
        raise ValueError(
            f"{name}: unsupported file type; upload one of {', '.join(app_config.UPLOAD_EXTENSIONS)}"
        )
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = UPLOAD_DIR / digest
    prune_uploads(keep=digest)
    if (folder / "bundle" / "meta.json").is_file():
        _touch(folder)
        return f"upload:{digest}"
    from cakd_viz.bundle.imports import import_file  # imported lazily: pulls in torch/safetensors readers

    UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{digest}.partial-", dir=UPLOAD_DIR))  # private to this import
    src = work / f"upload.{ext}"
    try:
        src.write_bytes(data)
        import_file(src, work / "bundle", overwrite=True)
        (work / "name.txt").write_text(Path(name).name[:200], encoding="utf-8")
        src.unlink()
        try:
            work.rename(folder)  # atomic; loses only to a concurrent import of the same bytes
        except OSError:
            if not (folder / "bundle" / "meta.json").is_file():
                raise
    except Exception as exc:  # any reader failure (zip, torch, safetensors) becomes a clear message
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, BundleError | ValueError):
            msg = f"{name}: could not be read ({type(exc).__name__}: {msg})"
        raise ValueError(msg) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return f"upload:{digest}"


def prune_uploads(*, keep: str = "", now: float | None = None) -> list[str]:
    """Remove uploads unused for UPLOAD_KEEP_S and dead half-imports; returns the folder names removed.

    "Used" is the folder's modification time, renewed whenever the upload is opened. A session still
    showing a removed upload keeps its memory-mapped arrays; a link to it says to upload it again.
    """
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(UPLOAD_DIR.iterdir())
    except OSError:
        return removed
    for entry in entries:
        limit = PARTIAL_KEEP_S if ".partial-" in entry.name else UPLOAD_KEEP_S
        try:
            stale = entry.is_dir() and entry.name != keep and now - entry.stat().st_mtime > limit
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _touch(folder: Path) -> None:
    try:
        os.utime(folder)
    except OSError:
        pass


@st.cache_resource(max_entries=6, show_spinner="Opening the bundle…")
def load(path: str, stamp: float) -> Bundle:
    """The memory-mapped bundle at `path` (validated once); `stamp` changes when the bundle is rewritten."""
    return load_bundle(path)


@st.cache_data(max_entries=6, show_spinner="Correlating the teacher's logits…")
def correlation(path: str, stamp: float) -> np.ndarray:
    """The teacher's (C, C) class-correlation matrix."""
    return class_correlation(load(path, stamp).teacher)


def _identity(path: Path) -> tuple[str, float]:
    meta = path / "meta.json"
    try:
        return str(path.resolve()), meta.stat().st_mtime
    except OSError:
        raise ValueError(f"{path.name}: not a bundle directory (no meta.json)") from None


def _upload_name(digest: str) -> str:
    try:
        return (UPLOAD_DIR / digest / "name.txt").read_text(encoding="utf-8").strip() or digest
    except OSError:
        return digest
