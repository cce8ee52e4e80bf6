"""Publishing files and folders whole: the one way cakd-viz writes anything another process may read.

A file is written to a temporary name beside its target and renamed over it (``os.replace``, atomic
within a folder), so a reader sees the old file or the whole new one, never half of one; whatever stops
the write (an exception, a full disk, Ctrl-C) removes the temporary file and leaves the target as it
was, and an ``OSError`` names the target, never the temporary name. A killed process can leave its
temporary file behind: names carry ``tag`` (default: the pid and a random part; ``processes.owner_tag()``
where a later writer must tell a dead writer's leftovers from a live one's).

    with replacing(path) as tmp:      # write tmp any way (a compiler's -o, np.save, a library's writer)
        ...
    write_text(path, text); write_json(path, obj); save_npy(path, array)
    publish_dir(tmp_dir, folder)      # a folder made elsewhere, renamed into place (replacing an old one)
    remove_leftovers(path, tests)     # what killed writers of path left beside it
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def replacing(path: str | Path, *, tag: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; when the block ends normally it replaces ``path`` in one rename.
    On any failure the temporary file is removed and ``path`` is untouched; an ``OSError`` about the
    temporary file is raised about ``path`` instead."""
    path = Path(path)
    tmp = path.with_name(
        f".{path.name}.tmp-{tag or f'{os.getpid()}-{secrets.token_hex(3)}'}"
    )  # names its writer
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None and str(exc.filename) not in (str(tmp), str(path)):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: object, *, indent: int | None = 2) -> None:
    """``obj`` as JSON (values JSON cannot hold written as their text), published whole."""
    write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``array`` as a ``.npy`` file (never pickled), published whole."""
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


def publish_dir(tmp: str | Path, path: str | Path) -> None:
    """Rename the finished folder ``tmp`` to ``path``; an existing ``path`` is first renamed aside
    (``PATH.old-*``) and removed after, so ``path`` is never a mix of both. The caller decides whether an
    existing ``path`` may be replaced; a writer killed between the renames leaves ``PATH.old-*``."""
    tmp, path = Path(tmp), Path(path)
    if not path.exists():
        tmp.rename(path)
        return
    old = path.with_name(f"{path.name}.old-{secrets.token_hex(6)}")
    path.rename(old)
    try:
        tmp.rename(path)
    except BaseException:  # the new folder did not arrive: the old one goes back where it was
        old.rename(path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(path: Path, abandoned: dict[str, Callable[[Path], bool]]) -> list[Path]:
    """Remove the entries beside ``path`` whose name starts with a key of ``abandoned`` and that its
    test says a killed writer left (never a link, nor a live writer's); returns those removed."""
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        test = next((t for prefix, t in abandoned.items() if entry.name.startswith(prefix)), None)
        try:
            if test is None or entry.is_symlink() or not test(entry):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
        except OSError:
            continue  # gone already, or not ours to remove
        if not entry.exists():
            removed.append(entry)
    return removed
