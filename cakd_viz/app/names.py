"""Class-name override lists for the open bundle: uploaded once, kept on this server, named in the URL.

An override file (checked by ``cakd_viz.classnames.parse_override``) is stored under its content hash,
so a link carries ``names=<16 hex digits>`` rather than the names, in ``config.private_folder``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from pathlib import Path

from cakd_viz import atomic
from cakd_viz.app.config import private_folder, touch
from cakd_viz.classnames import parse_override

NAMES_DIR = Path(tempfile.gettempdir()) / "cakd-viz-names"
_TOKEN = re.compile(r"[0-9a-f]{16}")
MAX_BYTES = 64 * 2**20  # the lists kept, all together (a browser may store any number of them)


def store(data: bytes, filename: str, num_classes: int) -> str:
    """Check an uploaded override and keep it; returns its token. ValueError (one line) when it is refused."""
    names = parse_override(data, filename, num_classes)
    text = json.dumps(names, ensure_ascii=False)
    token = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    target = _folder() / f"{token}.json"
    if not target.is_file():
        atomic.write_text(target, text)
    touch(target)
    _prune(keep=target)
    return token


def load(token: str, num_classes: int) -> list[str]:
    """The names a token stands for; ValueError (one line) when it is malformed, unknown here, made for
    another number of classes, or the folder is not this server's."""
    if not _TOKEN.fullmatch(str(token)):
        raise ValueError("not a class-name list reference")
    path = _folder() / f"{token}.json"
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ValueError("that class-name list is not on this server (any more); upload it again") from None
    if not isinstance(names, list) or len(names) != num_classes:
        raise ValueError(
            f"that class-name list has {len(names) if isinstance(names, list) else 0:,} names, the bundle {num_classes:,} classes"
        )
    touch(path)  # used: the last to go
    return [str(n) for n in names]


def _folder() -> Path:
    """NAMES_DIR, created private on first use (``config.private_folder``: ValueError when someone else's)."""
    return private_folder(NAMES_DIR, "class-name folder", "class-name lists are off")


def _prune(keep: Path) -> None:
    """Remove the least recently used lists until those left take at most ``MAX_BYTES`` (``keep`` stays)."""
    kept = []
    for path in NAMES_DIR.glob("*.json"):
        with contextlib.suppress(OSError):  # removed meanwhile
            kept.append(((info := path.stat()).st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in kept)
    for _, size, path in sorted(kept):
        if total <= MAX_BYTES:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size
