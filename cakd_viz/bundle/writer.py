"""Streaming bundle writer, for data sets larger than memory and for several processes at once; and
:func:`write_bundle`, which writes a whole in-memory bundle through it.

Single process::

    with BundleWriter(out, num_samples=N, num_classes=C, student_names=["kd"]) as w:
        for start, (t, s, y) in batches:               # t, s: (n, C); y: (n,)
            w.write(start, teacher=t, students={"kd": s}, labels=y)
        w.commit()                                     # explicit; an exception in the block aborts

Several ranks (e.g. torchrun), each writing its own rows into one shared temp directory::

    run_id = os.environ["TORCHELASTIC_RUN_ID"]         # any id all ranks agree on
    if rank == 0:
        w = BundleWriter(out, ..., partial_id=run_id)  # creates "<out>.partial-<run_id>"
    dist.barrier()
    if rank != 0:
        w = BundleWriter.attach(BundleWriter.partial_path(out, run_id))
    for start, batch in my_rows: w.write(start, ...)
    w.close()                                          # every rank: flush, record the rows it wrote
    dist.barrier()
    if rank == 0:
        w.commit()                                     # checks all N rows were written, then renames

The temp directory holds the arrays, ``.writer.json`` (the layout, read by :meth:`attach`) and one
``.rows-<id>.json`` per closed writer (the row ranges it wrote). ``commit`` refuses to publish a
bundle with rows nobody wrote; it writes ``meta.json`` last, validates, and renames the directory
to ``path``, so ``path`` never holds a half-written bundle. A process killed outright leaves only
``<path>.partial-<id>`` behind; ``.writer.json`` names its owner (pid, start time, host), and the next
writer to the same ``path`` removes it once that process is gone (:func:`remove_abandoned`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz import atomic, processes
from cakd_viz.bundle.core import FORMAT, load_bundle
from cakd_viz.bundle.npy import open_npy
from cakd_viz.text import a_type
from cakd_viz.validate import (
    BundleError,
    as_numpy,
    check_class_names,
    check_file_name,
    check_fits_dtype,
    check_inputs,
    check_labels,
    check_logits,
    check_student_name,
    iter_row_chunks,
)

__all__ = ["BundleWriter", "write_bundle"]

LAYOUT = ".writer.json"  # inside a partial directory: the writer's layout and its owner process


def allocated_memmap(path: Path, shown: Path, dtype: Any, shape: tuple) -> np.memmap:
    """A new writable ``.npy`` memmap whose disk blocks are allocated before anything is written.

    A memory map writes to disk as its pages are touched, and a page the disk has no room for is a
    SIGBUS that ends the process (a server included), not an error. So the whole file is reserved first
    (``posix_fallocate``): a full disk is then one ``OSError`` naming the file (``shown``: the file in
    the bundle being written, not its temporary folder), here, before any data."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        del arr
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        why = f"no room on the disk for its {size / 2**20:,.1f} MiB ({exc.strerror or exc})"
        raise OSError(exc.errno, why, str(shown)) from None
    return arr


def check_rows(
    teacher: Any,
    students: dict[str, Any],
    labels: Any,
    inputs: Any,
    *,
    num_classes: int | None = None,
    row_offset: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """Validate rows of a bundle against the teacher's (the writer's checks); returns them as numpy
    arrays. ``num_classes``: what the teacher must have; ``row_offset``: where the rows start (messages)."""
    teacher = as_numpy(teacher, "teacher")
    check_logits(teacher, "teacher", num_classes=num_classes, row_offset=row_offset)
    same = {"num_samples": teacher.shape[0], "num_classes": teacher.shape[1], "reference": "teacher"}
    arrays = {}
    for name, arr in students.items():
        arrays[name] = as_numpy(arr, f"student {name!r}")
        check_logits(arrays[name], f"student {name!r}", **same, row_offset=row_offset)
    if labels is not None:
        labels = as_numpy(labels, "labels")
        check_labels(labels, "labels", **same, row_offset=row_offset)
    if inputs is not None:
        inputs = as_numpy(inputs, "inputs")
        check_inputs(inputs, "inputs", num_samples=teacher.shape[0], reference="teacher")
    return teacher, arrays, labels, inputs


def check_fits(teacher: np.ndarray, students: dict[str, np.ndarray], dtype: np.dtype) -> None:
    """Every logit array stays finite when stored as ``dtype`` (``validate.check_fits_dtype``)."""
    for name, arr in {"teacher": teacher, **{f"student {k!r}": v for k, v in students.items()}}.items():
        check_fits_dtype(arr, name, dtype)


class BundleWriter:
    """Write a bundle row block by row block into memmaps inside ``<path>.partial-<id>``.

    ``teacher`` (N, C), ``students[name]`` (N, C), ``labels`` (N,) int64 and ``inputs``
    (N, *inputs_shape) are writable ``np.memmap``s; use :meth:`write` (validates, records rows), or
    fill the memmaps directly and call :meth:`mark_written`. ``dtype`` is "float16" or "float32".
    See the module docstring for multi-process use (:meth:`attach`, :meth:`close`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_samples: int,
        num_classes: int,
        student_names: Sequence[str],
        dtype: str | np.dtype = "float16",
        class_names: Sequence[str] | None = None,
        with_labels: bool = True,
        inputs_shape: Sequence[int] | None = None,
        inputs_dtype: str | np.dtype | None = None,
        meta: dict | None = None,
        overwrite: bool = False,
        partial_id: str | None = None,
    ) -> None:
        self.path = Path(path)
        if num_samples < 1 or num_classes < 2:
            raise BundleError(
                f"a bundle needs num_samples >= 1 and num_classes >= 2, got {num_samples}, {num_classes}"
            )
        if not student_names:
            raise BundleError("student_names: a bundle needs at least one student")
        names = [check_student_name(n) for n in student_names]
        if len(set(names)) != len(names):
            raise BundleError(f"student_names has duplicates: {names}")
        if as_dtype(dtype) not in (np.float16, np.float32):
            raise BundleError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
        if inputs_shape is not None and getattr(as_dtype(inputs_dtype or "float32"), "kind", "") not in tuple(
            "fiub"
        ):
            raise BundleError(f"inputs_dtype must be numeric (e.g. uint8 or float32), got {inputs_dtype!r}")
        if class_names is not None:
            class_names = check_class_names(class_names, "class_names", num_classes=num_classes)
        partial_id = partial_id or uuid.uuid4().hex[:12]
        check_file_name(partial_id, "partial_id")
        check_target(self.path, overwrite)
        layout = {
            "path": str(self.path.resolve()),
            "num_samples": int(num_samples),
            "num_classes": int(num_classes),
            "student_names": names,
            "dtype": str(np.dtype(dtype)),
            "with_labels": bool(with_labels),
            "inputs_shape": None if inputs_shape is None else [int(s) for s in inputs_shape],
            "inputs_dtype": None if inputs_shape is None else str(np.dtype(inputs_dtype or "float32")),
            "overwrite": bool(overwrite),
            "owner": processes.identity(),  # lets the next writer tell a killed writer's leftovers
        }
        layout["meta"] = base_meta(meta, layout, class_names)
        tmp = self.partial_path(self.path, partial_id)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(self.path)
        try:
            tmp.mkdir()
        except FileExistsError:
            raise BundleError(
                f"{tmp} already exists (left by an earlier run?); remove it or use another id"
            ) from None
        try:
            (tmp / "students").mkdir()
            (tmp / LAYOUT).write_text(json.dumps(layout, indent=1), encoding="utf-8")
            self._open(tmp, layout, owner=True, mode="w+")
        except BaseException:  # e.g. no memory to map the arrays, a full disk: leave nothing behind
            self.teacher = self.students = self.labels = self.inputs = None
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def partial_path(path: str | Path, partial_id: str) -> Path:
        """The temp directory ``<path>.partial-<partial_id>`` a writer with that id uses."""
        path = Path(path)
        return path.with_name(f"{path.name}.partial-{partial_id}")

    @classmethod
    def attach(cls, partial_dir: str | Path) -> BundleWriter:
        """Open the temp directory that another process's writer created, to write other rows.

        The attached writer may :meth:`write` and must :meth:`close` when done; it cannot commit.
        """
        tmp = Path(partial_dir)
        try:
            layout = json.loads((tmp / LAYOUT).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BundleError(f"{tmp}: not a partial bundle directory ({LAYOUT} is missing)") from None
        self = cls.__new__(cls)
        self.path = Path(layout["path"])
        self._open(tmp, layout, owner=False, mode="r+")
        return self

    def _open(self, tmp: Path, layout: dict, *, owner: bool, mode: str) -> None:
        self.partial_dir = tmp
        self._layout = layout
        self._owner = owner
        self._rows: list[tuple[int, int]] = []
        self._state = "open"  # -> "closed" | "committed" | "aborted"
        self.num_samples, self.num_classes = layout["num_samples"], layout["num_classes"]
        self.student_names: list[str] = layout["student_names"]
        self.dtype = np.dtype(layout["dtype"])
        n, c = self.num_samples, self.num_classes

        def mm(rel: str, dtype: Any, shape: tuple) -> np.memmap:
            if mode == "w+":
                return allocated_memmap(tmp / rel, Path(layout["path"]) / rel, dtype, shape)
            return open_npy(tmp / rel, rel, mode="r+")

        self.teacher = mm("teacher.npy", self.dtype, (n, c))
        self.students = {s: mm(f"students/{s}.npy", self.dtype, (n, c)) for s in self.student_names}
        self.labels = mm("labels.npy", np.int64, (n,)) if layout["with_labels"] else None
        shape = layout["inputs_shape"]
        self.inputs = None if shape is None else mm("inputs.npy", layout["inputs_dtype"], (n, *shape))

    def __repr__(self) -> str:
        return f"BundleWriter({str(self.path)!r}, partial_dir={str(self.partial_dir)!r}, owner={self._owner})"

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._owner:
            if self._state == "open":
                self.close()  # rank 0 owns the directory and decides whether to commit
        elif self._state != "committed":
            self.abort()
            if exc_type is None:
                raise BundleError(
                    f"BundleWriter for {self.path} left its with-block without commit(); nothing was saved"
                )

    def write(
        self, start: int, *, teacher: Any, students: dict[str, Any], labels: Any = None, inputs: Any = None
    ) -> None:
        """Validate and write rows ``[start, start + n)``: teacher (n, C), students {name: (n, C)},
        labels (n,) (required iff the writer has labels), inputs (n, *inputs_shape) likewise."""
        self._check_open()
        if set(students) != set(self.student_names):
            raise BundleError(
                f"write(): students must be exactly {self.student_names}, got {sorted(students)}"
            )
        for key, given, held in (("labels", labels, self.labels), ("inputs", inputs, self.inputs)):
            if (given is None) != (held is None):
                raise BundleError(
                    f"write(): {key}= is required" if given is None else f"write(): this writer has no {key}"
                )
        teacher, arrays, labels, inputs = check_rows(
            teacher, students, labels, inputs, num_classes=self.num_classes, row_offset=start
        )
        n = teacher.shape[0]
        if start < 0 or start + n > self.num_samples:
            raise BundleError(
                f"write(start={start}): rows {start}..{start + n - 1} are outside 0..{self.num_samples - 1}"
            )
        if inputs is not None and inputs.shape[1:] != self.inputs.shape[1:]:
            raise BundleError(
                f"inputs: rows have shape {inputs.shape[1:]}, the writer expects {self.inputs.shape[1:]}"
            )
        check_fits(teacher, arrays, self.dtype)
        self._put(start, teacher, arrays, labels, inputs)

    def _put(self, start: int, teacher: np.ndarray, students: dict, labels: Any, inputs: Any) -> None:
        """Copy already-validated rows in and record them (no checks)."""
        stop = start + teacher.shape[0]
        self.teacher[start:stop] = teacher
        for name, arr in students.items():
            self.students[name][start:stop] = arr
        if labels is not None:
            self.labels[start:stop] = labels
        if inputs is not None:
            self.inputs[start:stop] = inputs
        self.mark_written(start, stop)

    def mark_written(self, start: int, stop: int) -> None:
        """Record rows ``[start, stop)`` as written (after filling the memmaps directly); a range outside
        ``0..num_samples`` or backwards is refused, as `write` refuses rows past the end."""
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.num_samples:
            raise BundleError(
                f"mark_written({start}, {stop}): not a range of rows within 0..{self.num_samples - 1}"
            )
        self._rows.append((start, stop))

    def close(self) -> None:
        """Flush the memmaps. An attached writer also records its rows for the committer and closes;
        the creating writer stays open for :meth:`commit`."""
        self._check_open()
        self._flush()
        if not self._owner:
            rows_file = self.partial_dir / f".rows-{uuid.uuid4().hex[:12]}.json"
            rows_file.write_text(json.dumps(merge_ranges(self._rows)), encoding="utf-8")
            self._release("closed")

    def commit(self, meta_update: dict | None = None, *, check_values: bool = True) -> Path:
        """Flush, check every row was written, write meta.json last, validate, rename to ``path``.

        ``meta_update`` is merged into meta.json ("teacher"/"students" entries merged per key).
        Only the writer that created the temp directory may commit.
        """
        self._check_open()
        if not self._owner:
            raise BundleError(
                "only the writer that created the partial directory (rank 0) can commit; call close()"
            )
        self._flush()
        self._check_coverage()
        meta = merge_meta(self._layout["meta"], meta_update or {})
        (self.partial_dir / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        self._release("closed")
        load_bundle(self.partial_dir, check_values=check_values)
        for f in [self.partial_dir / LAYOUT, *self.partial_dir.glob(".rows-*.json")]:
            f.unlink()
        # rename to path, replacing an old bundle only when allowed; a writer killed between its renames
        # leaves PATH.old-* for remove_abandoned
        check_target(self.path, self._layout["overwrite"])
        atomic.publish_dir(self.partial_dir, self.path)
        self._state = "committed"
        return self.path

    def abort(self) -> None:
        """Remove the temp directory (and everything written to it)."""
        self._release("aborted")
        shutil.rmtree(self.partial_dir, ignore_errors=True)

    def _check_open(self) -> None:
        if self._state != "open":
            raise BundleError(f"BundleWriter for {self.path} is {self._state}; it cannot write any more")

    def _flush(self) -> None:
        for arr in (self.teacher, *self.students.values(), self.labels, self.inputs):
            if arr is not None:
                arr.flush()

    def _release(self, state: str) -> None:
        self._state = state
        self.teacher, self.students, self.labels, self.inputs = None, {}, None, None

    def _check_coverage(self) -> None:
        rows = list(self._rows)
        for f in self.partial_dir.glob(".rows-*.json"):
            rows += [tuple(r) for r in json.loads(f.read_text(encoding="utf-8"))]
        gap = first_gap(rows, self.num_samples)
        if gap is not None:
            raise BundleError(
                f"commit: rows {gap[0]}..{gap[1] - 1} were never written (of 0..{self.num_samples - 1}); "
                "write them, or call mark_written() after filling the memmaps directly"
            )


# -- the writer's helpers: meta.json, row bookkeeping, what killed writers left -------------------------


def as_dtype(dtype: Any) -> np.dtype | None:
    """``np.dtype(dtype)``, or None when it names no dtype."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def merge_ranges(rows: list[tuple[int, int]]) -> list[list[int]]:
    """Merge overlapping or touching [start, stop) ranges."""
    merged: list[list[int]] = []
    for start, stop in sorted(rows):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return merged


def first_gap(rows: list[tuple[int, int]], num_rows: int) -> tuple[int, int] | None:
    """The first range [start, stop) of ``0..num_rows`` that ``rows`` do not cover, or None."""
    covered = 0
    for start, stop in merge_ranges(rows):
        if start > covered:
            return covered, min(start, num_rows)
        covered = max(covered, stop)
    return None if covered >= num_rows else (covered, num_rows)


def base_meta(meta: dict | None, layout: dict, class_names: list[str] | None) -> dict:
    """meta.json as the writer knows it at the start; the caller's ``meta`` merged in."""
    try:
        user = dict(meta or {})
    except (TypeError, ValueError):  # dict() of a str or a list of non-pairs
        raise BundleError(f"meta must be an object {{KEY: value}}, got {a_type(meta)}") from None
    try:  # checked before anything is written, not when meta.json is
        json.dumps(user)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"meta must hold JSON values only ({exc})") from None
    n, c, dtype = layout["num_samples"], layout["num_classes"], layout["dtype"]
    teacher = user.pop("teacher", None) or {}
    user_students = user.pop("students", None) or {}
    if (
        not isinstance(teacher, dict)
        or not isinstance(user_students, dict)
        or not all(isinstance(entry or {}, dict) for entry in user_students.values())
    ):
        raise BundleError("meta: 'teacher' must be an object and 'students' an object {NAME: {...}}")
    teacher = {"file": "teacher.npy", "dtype": dtype, **teacher}
    students = {
        s: {"file": f"students/{s}.npy", "dtype": dtype, **(user_students.get(s) or {})}
        for s in layout["student_names"]
    }
    shape = layout["inputs_shape"]
    base = {
        "format": FORMAT,
        "num_samples": n,
        "num_classes": c,
        "class_names": class_names if class_names is not None else [str(i) for i in range(c)],
        "labels": layout["with_labels"],
        "inputs": None if shape is None else {"shape": [n, *shape], "dtype": layout["inputs_dtype"]},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return {**user, **base, "teacher": teacher, "students": students}


def merge_meta(meta: dict, update: dict) -> dict:
    """``meta`` updated by ``update``; "teacher"/"students" merged per key, array-derived keys kept."""
    out = {**meta, **{k: v for k, v in update.items() if k not in ("teacher", "students")}}
    out["teacher"] = {**meta["teacher"], **(update.get("teacher") or {})}
    extra = update.get("students") or {}
    out["students"] = {n: {**m, **extra.get(n, {})} for n, m in meta["students"].items()}
    for key in ("format", "num_samples", "num_classes", "labels", "inputs"):
        out[key] = meta[key]  # fixed by the arrays, not by the caller
    return out


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse an existing ``path`` unless ``overwrite``, and never replace something that is not a bundle."""
    if not path.exists():
        return
    if not overwrite:
        raise BundleError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    if path.is_file() or (any(path.iterdir()) and not (path / "meta.json").is_file()):
        raise BundleError(f"{path} exists and is not a cakd bundle; refusing to replace it")


def remove_abandoned(path: Path) -> list[Path]:
    """Remove the ``<path>.partial-*`` and ``<path>.old-*`` directories that killed writers left; returns them.

    A partial directory names its owner in ``.writer.json`` ({"owner": {"pid", "pid_start", "host"}});
    it is removed when that process is gone (``processes.abandoned``), never while it still writes. One
    without an owner on record (killed between creating it and writing the layout) goes after a
    minute. An ``.old-*`` directory is a replaced bundle that its publisher was deleting: always garbage.
    """

    def partial(entry: Path) -> bool:
        return entry.is_dir() and processes.abandoned(_owner(entry), time.time() - entry.stat().st_mtime)

    return atomic.remove_leftovers(path, {f"{path.name}.partial-": partial, f"{path.name}.old-": Path.is_dir})


def _owner(partial_dir: Path) -> dict | None:
    """The owner a partial directory's layout file records, or None (missing or unreadable)."""
    try:
        with open(partial_dir / LAYOUT, "rb") as handle:
            owner = json.loads(handle.read(1 << 20)).get("owner")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return owner if isinstance(owner, dict) else None


def write_bundle(
    path: str | Path,
    *,
    teacher: Any,
    students: Mapping[str, Any],
    labels: Any = None,
    class_names: Any = None,
    inputs: Any = None,
    meta: dict | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Validate and write a bundle; returns its path.

    ``teacher`` (N, C) and each of ``students`` (name -> (N, C)) are numpy arrays or torch tensors,
    ``labels`` (N,), ``inputs`` (N, ...), ``class_names`` C strings (default "0".."C-1").
    ``dtype`` "float16"/"float32" for all logits (default: the teacher's if float16/float32, else
    float32). ``meta`` is merged into meta.json (its "teacher"/"students" entries too). The bundle is
    written into ``<path>.partial-<id>`` and renamed at the end, so a crash never leaves a
    complete-looking bundle; an existing bundle at ``path`` is replaced only with ``overwrite``.
    """
    if not isinstance(students, Mapping) or not students:
        raise BundleError("students: a bundle needs at least one student, given as {name: (N, C) logits}")
    for name in students:
        check_student_name(name)
    teacher, arrays, labels, inputs = check_rows(teacher, students, labels, inputs)
    n, c = teacher.shape
    if dtype is None:  # the teacher's float16/float32, else float32; the writer refuses any other dtype
        dtype = teacher.dtype if teacher.dtype in (np.float16, np.float32) else "float32"
    writer = BundleWriter(  # checks the class names and the dtype before it writes anything
        path,
        num_samples=n,
        num_classes=c,
        student_names=list(arrays),
        dtype=dtype,
        class_names=class_names,
        with_labels=labels is not None,
        inputs_shape=None if inputs is None else inputs.shape[1:],
        inputs_dtype=None if inputs is None else inputs.dtype,
        meta=meta,
        overwrite=overwrite,
    )
    with writer:
        check_fits(teacher, arrays, writer.dtype)
        for rows in iter_row_chunks(n, c):
            writer._put(
                rows.start,
                teacher[rows],
                {k: v[rows] for k, v in arrays.items()},
                None if labels is None else labels[rows],
                None if inputs is None else inputs[rows],
            )
        return writer.commit(check_values=False)  # values were checked above
