"""A folder of cached arrays under content keys, safe for many threads and processes at once.

    ROOT/entries/KEY/meta.json, NAME.npy...   a complete entry: it appears whole, by one rename
    ROOT/tmp/KEY.OWNER/                        an entry being written (OWNER: pid, start time, host)
    ROOT/locks/KEY.lock                        held (flock) by the one process computing KEY
    ROOT/locks/KEY.progress                    that process's progress, JSON, rewritten by rename
    ROOT/trash/                                entries on their way out (renamed here, then deleted)

A KEY is 64 hex digits (``make_key``: a hash of what the entry depends on). Writers build an entry in
``tmp/`` and rename it into ``entries/`` (atomic on one file system): a reader sees a whole entry or none,
and the first of two writers of one key wins while the second discards its copy. ``get`` checks every
array against meta.json (dtype, shape, file size) and treats anything torn or foreign as missing (and
removes it). ``compute_once`` takes the key's lock, so that two processes (or threads) asking for one
key compute it once: the others wait for the entry, reading the computing process's progress.

Eviction keeps the folder under ``max_bytes``: least recently used entries first (``get`` renews an
entry's folder time), never the entry just written. Removal renames an entry into ``trash/`` before
deleting it, so no reader ever opens a half-deleted entry; readers that already memory-mapped its files
keep reading them (Linux keeps an unlinked file's pages for as long as they are mapped). Arrays are
always loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cakd_viz import processes

__all__ = ["Cancelled", "Entry", "ResultsCache", "make_key"]

FORMAT = "cakd-results/1"
MAX_META_BYTES = 1 << 20
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")
PROGRESS_EVERY_S = 0.5  # the computing process rewrites its progress file at most this often
LEFTOVER_AGE_S = 3600.0  # a trash folder (or an unowned tmp one) older than this is removed


class Cancelled(Exception):
    """Raised inside a computation whose caller no longer wants it (``cancelled()`` became true)."""


def make_key(*parts) -> str:
    """A 64-hex-digit key from JSON-able parts (dicts, lists, strings, numbers): equal parts, equal key."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A cached entry: read-only arrays (memory-mapped from the cache folder) and its meta information."""

    key: str
    arrays: dict[str, np.ndarray]
    info: dict
    path: Path | None  # the entry's folder (None for arrays kept in memory because storing failed)


@dataclass(frozen=True)
class Progress:
    """What a process computing a key last said: rows (or steps) done of total, and when."""

    done: int
    total: int
    updated: float
    pid: int


class ResultsCache:
    """The cache folder at ``root``, bounded to ``max_bytes`` (see the module docstring).

    ``root`` is created private (0700) when missing; a root that is not a folder owned by this user is
    refused (ValueError), since anyone who can write there decides what the app shows.
    """

    def __init__(self, root: str | Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        _private_dir(self.root)
        for sub in ("entries", "tmp", "locks", "trash"):
            _private_dir(self.root / sub)

    def __repr__(self) -> str:
        return f"ResultsCache({str(self.root)!r}, max_bytes={self.max_bytes:,})"

    # -- reading -------------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """The entry under ``key`` with its arrays memory-mapped, or None (missing, torn or foreign:
        such an entry is removed). Renews the entry's last-used time."""
        folder = self._entry_dir(key)
        try:
            info, arrays = self._read(folder, key)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self._remove(folder)
            return None
        with contextlib.suppress(OSError):
            os.utime(folder)
        return Entry(key, arrays, info, folder)

    def _read(self, folder: Path, key: str) -> tuple[dict, dict[str, np.ndarray]]:
        with open(folder / "meta.json", "rb") as fh:
            raw = fh.read(MAX_META_BYTES + 1)
        if len(raw) > MAX_META_BYTES:
            raise ValueError("meta.json too large")
        meta = json.loads(raw.decode("utf-8"))
        if meta.get("format") != FORMAT or meta.get("key") != key:
            raise ValueError("not this entry's meta.json")
        arrays = {}
        for name, spec in meta["arrays"].items():
            if not _NAME_RE.fullmatch(name):
                raise ValueError(f"bad array name {name!r}")
            arrays[name] = _load_array(folder / f"{name}.npy", np.dtype(spec["dtype"]), tuple(spec["shape"]))
        return dict(meta.get("info") or {}), arrays

    def contains(self, key: str) -> bool:
        """Whether a complete-looking entry is there (meta.json present; arrays not checked)."""
        return (self._entry_dir(key) / "meta.json").is_file()

    # -- writing -------------------------------------------------------------------------------------

    def put(self, key: str, arrays: dict[str, np.ndarray], info: dict | None = None) -> Entry:
        """Store ``arrays`` (name -> array) and ``info`` (JSON-able) under ``key``; returns the stored entry
        (memory-mapped). When another writer stored the key first, theirs is kept and returned. Evicts
        least recently used entries beyond ``max_bytes`` (never this one). OSError when it cannot write."""
        _check_key(key)
        target = self._entry_dir(key)
        work = self.root / "tmp" / f"{key}.{processes.owner_tag()}-{os.urandom(4).hex()}"
        work.mkdir(mode=0o700)
        try:
            specs, total = {}, 0
            for name, arr in arrays.items():
                if not _NAME_RE.fullmatch(name):
                    raise ValueError(f"array name {name!r}: lower-case letters, digits and _ only")
                arr = np.ascontiguousarray(arr)
                if arr.dtype.hasobject:
                    raise ValueError(f"array {name!r} holds Python objects; only plain dtypes are cached")
                np.save(work / f"{name}.npy", arr, allow_pickle=False)
                specs[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
                total += (work / f"{name}.npy").stat().st_size
            meta = {
                "format": FORMAT,
                "key": key,
                "created": time.time(),
                "bytes": total,
                "arrays": specs,
                "info": info or {},
            }
            (work / "meta.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
            try:
                os.rename(work, target)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # Another writer got there first: theirs is as good as ours (same key, same inputs).
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.evict(keep=(key,))
        entry = self.get(key)
        if entry is None:  # removed between the rename and here (a tiny bound and a busy neighbour)
            return Entry(key, {n: np.asarray(a) for n, a in arrays.items()}, dict(info or {}), None)
        return entry

    # -- computing once ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, *, blocking: bool = False) -> Iterator[bool]:
        """Hold the key's lock for the ``with`` block; yields whether it was acquired (always True when
        ``blocking``). The lock is an flock on ``locks/KEY.lock``: the kernel releases it when the holder
        dies, so a killed computation never blocks the key."""
        _check_key(key)
        path = self.root / "locks" / f"{key}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                yield False
                return
            # The file may have been removed (by eviction) between our open and our lock: then this lock
            # guards nothing; take the one now at the path.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self._progress_path(key))
            os.close(fd)

    def write_progress(self, key: str, done: int, total: int) -> None:
        """Record this process's progress on ``key`` (read by others waiting for it)."""
        path = self._progress_path(key)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        data = {"done": int(done), "total": int(total), "updated": time.time(), "pid": os.getpid()}
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)

    def progress(self, key: str) -> Progress | None:
        """The progress another process last recorded on ``key``, or None."""
        try:
            data = json.loads(self._progress_path(key).read_text(encoding="utf-8"))
            return Progress(int(data["done"]), int(data["total"]), float(data["updated"]), int(data["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def compute_once(
        self,
        key: str,
        compute: Callable[[Callable[[int, int], None]], tuple[dict[str, np.ndarray], dict]],
        *,
        progress: Callable[[int, int], None] | None = None,
        waiting: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        poll_s: float = 0.2,
    ) -> Entry:
        """The entry under ``key``, computing it at most once across threads and processes.

        ``compute(report)`` returns (arrays, info) and may call ``report(done, total)``; it runs under the
        key's lock, in this process only when no other process holds that lock. While another holds
        it, this waits for the entry, passing the other's progress to ``waiting(done, total)`` ((0, 0)
        before it has said any; default: to ``progress``). ``cancelled()``
        true raises :class:`Cancelled` (while waiting, and inside ``compute`` when it reports). When the
        entry cannot be stored (disk full, read-only folder), the computed arrays are returned in
        memory (``Entry.path`` None).
        """
        while True:
            entry = self.get(key)
            if entry is not None:
                return entry
            with self.lock(key) as mine:
                if mine:
                    entry = self.get(key)  # stored while we were taking the lock
                    return entry if entry is not None else self._compute(key, compute, progress, cancelled)
            if cancelled is not None and cancelled():
                raise Cancelled
            other = self.progress(key)
            tell = waiting or progress
            if tell is not None:
                tell(*((other.done, other.total) if other is not None else (0, 0)))
            time.sleep(poll_s)

    def _compute(self, key: str, compute, progress, cancelled) -> Entry:
        """Run ``compute`` (the caller holds the key's lock) and store what it returns."""
        last = 0.0

        def report(done: int, total: int) -> None:
            nonlocal last
            if cancelled is not None and cancelled():
                raise Cancelled
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S or done >= total:
                last = now
                self.write_progress(key, done, total)
            if progress is not None:
                progress(done, total)

        arrays, info = compute(report)
        try:
            return self.put(key, arrays, info)
        except OSError:
            return Entry(key, {n: np.asarray(a) for n, a in arrays.items()}, dict(info), None)

    # -- size and eviction ---------------------------------------------------------------------------

    def entries(self) -> list[tuple[str, float, int]]:
        """(key, last used, bytes) of every complete entry, oldest use first."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for item in os.scandir(self.root / "entries"):
                if not _KEY_RE.fullmatch(item.name):
                    continue
                try:
                    used = item.stat().st_mtime
                    size = sum(f.stat().st_size for f in os.scandir(item.path) if f.is_file())
                except OSError:
                    continue
                out.append((item.name, used, size))
        return sorted(out, key=lambda e: e[1])

    def size_bytes(self) -> int:
        """Bytes held by complete entries."""
        return sum(size for _, _, size in self.entries())

    def evict(self, keep: tuple[str, ...] = ()) -> list[str]:
        """Remove least recently used entries until the folder holds at most ``max_bytes`` (never those
        in ``keep``), and leftovers of killed writers; returns the keys removed. One process evicts at
        a time; a call that finds another evicting returns at once."""
        removed: list[str] = []
        with self._evict_lock() as mine:
            if not mine:
                return removed
            self._remove_leftovers()
            listed = self.entries()
            total = sum(size for _, _, size in listed)
            for key, _, size in listed:
                if total <= self.max_bytes:
                    break
                if key in keep:
                    continue
                self._remove(self._entry_dir(key))
                self._remove_lock(key)
                total -= size
                removed.append(key)
        return removed

    def clear(self) -> None:
        """Remove every entry (entries in use by readers stay readable to them)."""
        for key, _, _ in self.entries():
            self._remove(self._entry_dir(key))

    @contextlib.contextmanager
    def _evict_lock(self) -> Iterator[bool]:
        fd = os.open(self.root / "locks" / "evict", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            yield True
        finally:
            os.close(fd)

    def _remove(self, folder: Path) -> None:
        """Rename ``folder`` into trash/ (atomic: readers see it whole or not at all), then delete it."""
        grave = self.root / "trash" / f"{folder.name}.{os.getpid()}-{os.urandom(4).hex()}"
        try:
            os.rename(folder, grave)
        except OSError:
            return  # gone already, or another process is removing it
        shutil.rmtree(grave, ignore_errors=True)

    def _remove_lock(self, key: str) -> None:
        """Delete an unused lock file (never one a computation holds: that one stays)."""
        path = self.root / "locks" / f"{key}.lock"
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(path)
            except BlockingIOError:
                pass
            finally:
                os.close(fd)

    def _remove_leftovers(self) -> None:
        """Temporary folders of writers that are gone, and old trash (a remover killed mid-way)."""
        now = time.time()
        for sub in ("tmp", "trash"):
            with contextlib.suppress(FileNotFoundError):
                for item in os.scandir(self.root / sub):
                    try:
                        age = now - item.stat(follow_symlinks=False).st_mtime
                    except OSError:
                        continue
                    if sub == "trash":
                        stale = age > LEFTOVER_AGE_S
                    else:
                        tag = item.name.partition(".")[2].rpartition("-")[0]
                        stale = processes.abandoned(processes.parse_owner_tag(tag), age)
                    if stale:
                        shutil.rmtree(item.path, ignore_errors=True)

    def _entry_dir(self, key: str) -> Path:
        _check_key(key)
        return self.root / "entries" / key

    def _progress_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.progress"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"not a cache key (64 hex digits): {str(key)[:80]!r}")


def _private_dir(path: Path) -> None:
    """Create ``path`` 0700 if missing; refuse a link, a non-folder, or another user's folder."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise ValueError(f"the results cache folder {path} cannot be used ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"the results cache folder {path} is not a folder")
    if info.st_uid != os.getuid():
        raise ValueError(f"the results cache folder {path} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        with contextlib.suppress(OSError):
            path.chmod(0o700)


def _load_array(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """``path`` memory-mapped read-only; ValueError unless it holds exactly ``dtype`` and ``shape``
    (a torn or truncated file, or one replaced by something else)."""
    if int(np.prod(shape, dtype=np.int64)) == 0:
        arr = np.load(path, allow_pickle=False)
    else:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.dtype != dtype or tuple(arr.shape) != shape:
        raise ValueError(f"{path.name}: holds {arr.dtype} {arr.shape}, meta.json says {dtype} {shape}")
    if isinstance(arr, np.memmap) and arr.offset + arr.nbytes != path.stat().st_size:
        raise ValueError(f"{path.name}: the file's size does not match its header")
    return arr
