"""Reading a run's ``epochs/`` (docs/architecture.md §6), checked: what ``runs.dynamics`` wrote, or a refusal.

    files = read_epochs("runs/20260101-000000-cakd-x")
    files.epochs                      # (1, 2, 3, 5): the kept epochs, as index.json lists them
    files.teacher, files.labels       # (N, C) float32 teacher logits, (N,) int64 labels or None
    files.student(3)                  # (N, C) float16 student logits after epoch 3

Everything is checked against index.json before anything is computed (the checks: docs/architecture.md
§6); a missing or damaged file is one ``ValueError`` line naming it as "RUN_ID/epochs/FILE".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cakd_viz.grouping import parse_grouping
from cakd_viz.runs import store
from cakd_viz.runs.dynamics import EPOCHS_DIR, EPOCHS_FORMAT, MAX_EPOCH_BYTES, SPLITS

INDEX = "index.json"
INDEX_MAX_BYTES = 1 << 20  # index.json lists at most a few thousand epochs: anything larger is refused


@dataclass(frozen=True, eq=False)
class EpochFiles:
    """One run's checked ``epochs/``: the index's settings, the evaluation split's teacher logits (N, C),
    labels (N,) or None, training-split rows (N,) or None, and the kept epochs' student logits on demand."""

    folder: Path
    name: str  # "RUN_ID/epochs", how messages name the folder
    split: str  # "validation" or "test"
    grouping: str
    temperature: float
    standardize: bool  # the held-out terms were of the standardized logits (an LS run)
    epochs: tuple[int, ...]
    not_kept: tuple[int, ...]
    teacher: np.ndarray
    labels: np.ndarray | None
    rows: np.ndarray | None

    @property
    def num_samples(self) -> int:
        return int(self.teacher.shape[0])

    def student(self, epoch: int) -> np.ndarray:
        """The student's (N, C) logits after ``epoch`` (one of ``epochs``), memory-mapped and checked."""
        if epoch not in self.epochs:
            kept = ", ".join(map(str, self.epochs)) or "none"
            raise ValueError(f"{self.name}: epoch {epoch} is not kept (kept: {kept})")
        return _array(self.folder, self.name, f"epoch-{epoch:03d}.npy", "f", self.teacher.shape)


def read_epochs(run_dir: str | Path) -> EpochFiles:
    """The run folder's ``epochs/``, checked (see the module); ValueError (one line naming the file) when
    it is missing or damaged. Student logits are checked when ``EpochFiles.student`` reads them."""
    run_dir = Path(run_dir)
    name = f"{run_dir.name}/{EPOCHS_DIR}"
    folder = run_dir / EPOCHS_DIR
    if not folder.is_dir() or folder.is_symlink():
        raise ValueError(f"{name}: missing (the run keeps no per-epoch logits)")
    index = _index(folder, name)
    n, c = index["rows"], index["classes"]
    teacher = _array(folder, name, "teacher.npy", "f", (n, c))
    labels = _optional(folder, name, "labels.npy", (n,))
    if labels is not None and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(
            f"{name}/labels.npy: labels must lie in 0..{c - 1}, found {labels.min()}..{labels.max()}"
        )
    rows = _optional(folder, name, "rows.npy", (n,))
    if rows is not None and rows.min() < 0:
        raise ValueError(f"{name}/rows.npy: rows of the training split must be >= 0, found {rows.min()}")
    if parse_grouping(index["grouping"]).needs_labels and labels is None:
        raise ValueError(f"{name}/labels.npy: missing, and grouping {index['grouping']} needs labels")
    kept = len(index["epochs"]) * n * c * 2
    if kept > MAX_EPOCH_BYTES:
        raise ValueError(
            f"{name}/{INDEX}: lists {kept:,} bytes of epoch logits, more than runs keep ({MAX_EPOCH_BYTES:,})"
        )
    for epoch in index["epochs"]:
        _present(folder / f"epoch-{epoch:03d}.npy", f"{name}/epoch-{epoch:03d}.npy")
    settings = {
        k: index[k] for k in ("split", "grouping", "temperature", "standardize", "epochs", "not_kept")
    }
    return EpochFiles(folder, name, teacher=teacher, labels=labels, rows=rows, **settings)


def _index(folder: Path, name: str) -> dict:
    """index.json's fields, each checked."""
    where = f"{name}/{INDEX}"
    path = folder / INDEX
    _present(path, where)
    if path.stat().st_size > INDEX_MAX_BYTES:
        raise ValueError(f"{where}: {path.stat().st_size:,} bytes, more than an index holds")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # undecodable, not JSON, too many digits; too deep
        raise ValueError(f"{where}: not JSON ({_first(exc)})") from None
    if not isinstance(index, dict):
        raise ValueError(f"{where}: not a JSON object")
    if index.get("format") != EPOCHS_FORMAT:
        raise ValueError(f"{where}: 'format' must be {EPOCHS_FORMAT!r}, found {_short(index.get('format'))}")
    if index.get("split") not in SPLITS:
        raise ValueError(f"{where}: 'split' must be validation or test, found {_short(index.get('split'))}")
    for key, least in (("rows", 1), ("classes", 2)):
        if not _whole(index.get(key)) or index[key] < least:
            raise ValueError(
                f"{where}: {key!r} must be a whole number >= {least}, found {_short(index.get(key))}"
            )
    try:
        grouping = str(parse_grouping(str(index.get("grouping"))))
    except ValueError as exc:
        raise ValueError(f"{where}: 'grouping' is not a grouping ({_first(exc)})") from None
    t = store.number(index.get("temperature"))  # None for a whole number beyond float's range
    if t is None or not math.isfinite(t) or t <= 0:
        raise ValueError(
            f"{where}: 'temperature' must be a finite number > 0, found {_short(index.get('temperature'))}"
        )
    standardize = index.get("standardize", False)  # absent in the files of runs before LS
    if not isinstance(standardize, bool):
        raise ValueError(f"{where}: 'standardize' must be true or false, found {_short(standardize)}")
    epochs = _epoch_list(index.get("epochs"), f"{where}: 'epochs'")
    not_kept = _epoch_list(index.get("not_kept", []), f"{where}: 'not_kept'")
    return index | dict(
        grouping=grouping, temperature=t, standardize=standardize, epochs=epochs, not_kept=not_kept
    )


def _epoch_list(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_whole(e) and e >= 1 for e in value):
        raise ValueError(f"{where} must be a list of epoch numbers >= 1, found {_short(value)}")
    if any(b <= a for a, b in zip(value, value[1:], strict=False)):
        raise ValueError(f"{where} must be increasing, found {_short(value)}")
    return tuple(int(e) for e in value)


def _array(folder: Path, name: str, file: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """``folder``/``file`` (``name``/``file`` in messages): memory-mapped, read-only, of dtype ``kind``
    ("f" float, "i" integer) and ``shape``, finite."""
    where = f"{name}/{file}"
    path = folder / file
    _present(path, where)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:  # a truncated file, a pickle, not .npy at all: one line naming the file (not numpy's)
        raise ValueError(
            f"{where}: not a readable .npy array (damaged, truncated, or holding Python objects, which are "
            "never unpickled)"
        ) from None
    if not isinstance(array, np.ndarray):  # an .npz archive: closed, refused
        getattr(array, "close", lambda: None)()
        raise ValueError(f"{where}: an archive, not a .npy array")
    if array.dtype.kind not in (("u", "i") if kind == "i" else ("f",)):
        raise ValueError(
            f"{where}: holds {getattr(array, 'dtype', type(array).__name__)} values, expected {_KIND[kind]}"
        )
    if array.shape != shape:
        raise ValueError(f"{where}: shape {array.shape}, expected {shape} (index.json's rows and classes)")
    if kind == "f" and not _finite(array):
        raise ValueError(f"{where}: holds NaN or infinite values")
    return array


_KIND = {"f": "floats", "i": "whole numbers"}


def _optional(folder: Path, name: str, file: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """An integer file that may be absent (labels.npy, rows.npy), as int64 in memory."""
    if not (folder / file).exists() and not (folder / file).is_symlink():
        return None
    return np.asarray(_array(folder, name, file, "i", shape), dtype=np.int64)


def _present(path: Path, where: str) -> None:
    try:
        link, plain = path.is_symlink(), path.is_file()
    except OSError as exc:  # e.g. the name of a huge epoch number is too long: one line, no server path
        shown = where if len(where) <= 120 else where[:119] + "…"
        raise ValueError(f"{shown}: unreadable ({exc.strerror or type(exc).__name__})") from None
    if link:
        raise ValueError(f"{where}: a link, refused (run folders hold plain files)")
    if not plain:
        raise ValueError(f"{where}: missing")


def _finite(array: np.ndarray, rows: int = 65536) -> bool:
    return all(np.isfinite(array[i : i + rows]).all() for i in range(0, len(array), rows))


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
