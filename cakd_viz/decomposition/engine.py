"""`decompose` and `decompose_many`: the exact per-sample split of KL(teacher || student) into BCD, SCD, WCD.

CAKD (Zhang et al., arXiv 2410.14741): KL(p || q) = BCD + p_S * SCD + p_W * WCD with p = softmax(z_t / T),
q = softmax(z_s / T) and a strong set S per sample; with S = {label} it is DKD's split (Zhao et al., CVPR
2022). docs/architecture.md §1 has the definitions, the numerics and logit standardization. Arguments are
checked here; then the C kernel (``native_path.py``) computes on the CPU, and the float64 tensor ops
(``tensor_path.py``) on CUDA, without a C compiler or with ``CAKD_VIZ_NATIVE=0``, for float64 logits and
for rules without a kernel code; an "mps" request computes on the CPU (MPS has no float64).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
import torch

from cakd_viz.decomposition import native_path, tensor_path
from cakd_viz.decomposition.inputs import Logits
from cakd_viz.decomposition.result import Decomposition
from cakd_viz.decomposition.threads import default_threads
from cakd_viz.device import resolve_device
from cakd_viz.grouping import DEFAULT_GROUPING, Grouping, class_correlation, parse_grouping
from cakd_viz.validate import check_labels, check_temperature

log = logging.getLogger(__name__)

KERNEL_CHUNK_ELEMENTS = 1 << 24  # per kernel call (a progress step): ~10 ms of work at C = 1,000
TENSOR_CHUNK_ELEMENTS = {"cpu": 1 << 17, "cuda": 1 << 24}  # CPU: cache-sized float64 chunks; GPU: fill it


def decompose(
    student_logits,
    teacher_logits,
    labels=None,
    *,
    grouping: str | Grouping = DEFAULT_GROUPING,
    temperature: float = 1.0,
    device: str | torch.device = "auto",
    correlation: np.ndarray | None = None,
    chunk_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    standardize: bool = False,
) -> Decomposition:
    """Split KL(teacher || student) of every sample into BCD, SCD and WCD.

    student_logits, teacher_logits: (N, C) float16/float32/float64 numpy arrays (memory-mapped, strided or
    byte-swapped are fine), torch tensors (any device), or nested lists of numbers; labels: (N,) integers
    or None. grouping: a spec of docs/architecture.md §4. correlation: a precomputed (C, C)
    class-correlation matrix for `corr:R` (computed from the teacher otherwise). device: "auto" (CUDA if
    present, else CPU), "cpu", "cuda[:N]" or "mps" (computed on the CPU: MPS has no float64). Works
    through chunks of `chunk_rows` rows (a whole number >= 1; None: a size that suits the path), so memory
    stays bounded for arrays larger than RAM; `progress(done, N)` is called after each chunk. standardize:
    z-score each row's teacher and student logits before T (LS, `cakd_viz.standardize`); the correlation
    for corr:R is then the standardized teacher's. Returns a `Decomposition` of (N,) numpy arrays.
    """
    options = (grouping, temperature, device, correlation, chunk_rows, progress, standardize)
    return _decompose({"student_logits": student_logits}, teacher_logits, labels, *options)[0]


def decompose_many(
    student_logits,
    teacher_logits,
    labels=None,
    *,
    grouping: str | Grouping = DEFAULT_GROUPING,
    temperature: float = 1.0,
    device: str | torch.device = "auto",
    correlation: np.ndarray | None = None,
    chunk_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    standardize: bool = False,
) -> list[Decomposition]:
    """`decompose` of several students against one teacher: ``[decompose(s, teacher_logits, labels, ...)
    for s in student_logits]``, bit for bit. On the kernel's path in one pass over the rows: each row's
    strong set (and, on AVX-512, the teacher's weights e^b) is decided once for every student, while the
    teacher's row is in cache. student_logits: a sequence of (N, C) logits, each as `decompose` takes
    them; `progress(done, N)` after each chunk of rows (of every student); standardize as `decompose`'s."""
    students = {f"student_logits[{j}]": x for j, x in enumerate(student_logits)}
    options = (grouping, temperature, device, correlation, chunk_rows, progress, standardize)
    return _decompose(students, teacher_logits, labels, *options)


def _decompose(
    students, teacher_logits, labels, grouping, temperature, device, correlation, chunk_rows, progress, ls
) -> list[Decomposition]:
    """The work of `decompose` and `decompose_many` for ``students`` ({name in messages: logits}), every
    argument checked here: on the kernel's path one pass over the rows for every student (at most
    ``native_path.MAX_STUDENTS`` in a pass), on the tensor-op path one pass each."""
    g = parse_grouping(grouping)
    temp = check_temperature(temperature)
    rows_asked = _check_chunk_rows(chunk_rows)
    zss = [Logits.of(x, name) for name, x in students.items()]
    zt = Logits.of(teacher_logits, "teacher_logits")
    if not zss:
        return []
    for zs in zss:
        n, c = _check_pair(zs, zt)
    y = None if labels is None else check_labels(labels, "labels", num_samples=n, num_classes=c)
    if g.needs_labels and y is None:
        raise ValueError(f"grouping {g} needs labels, and none were given")
    dev = resolve_device(device)
    if dev.type == "mps":
        _warn_mps()
        dev = torch.device("cpu")
    ls = _check_standardize(ls)
    correlated = _correlated(g, zt, correlation, dev, c, ls)

    native = dev.type == "cpu" and native_path.selects(g) and not any(z.is_float64 for z in [zt, *zss])
    kern = native_path.kernel() if native else None
    if kern is not None:
        size = native_path.MAX_STUDENTS
        passes = [zss[i : i + size] for i in range(0, len(zss), size)]
        outs = []
        for j, part in enumerate(passes):
            share = _share(progress, j, len(passes))
            outs += _run_native(kern, part, zt, y, g, temp, correlated, rows_asked, share, ls)
    else:
        rows = rows_asked or max(1, TENSOR_CHUNK_ELEMENTS["cuda" if dev.type == "cuda" else "cpu"] // c)
        outs = [
            tensor_path.decompose_tensors(
                zs, zt, y, g, temp, correlated, dev, rows, _share(progress, j, len(zss)), standardize=ls
            )
            for j, zs in enumerate(zss)
        ]
    for out, zs in zip(outs, zss, strict=True):
        _check_finite(out, zs, zt)
    return [Decomposition(**out, labels=y, grouping=str(g), temperature=temp, standardize=ls) for out in outs]


def _share(progress, j: int, count: int):
    """The progress callback of the j-th of ``count`` passes in a row, as a share of them all."""
    if progress is None:
        return None
    return lambda done, total: progress((j * total + done) // count, total)


def _run_native(
    kern, zss: list[Logits], zt: Logits, y, g: Grouping, temp: float, correlated, rows, progress, ls: bool
):
    """Every output of every student through the C kernel, one call per chunk of rows (threads re-fitted
    to the free CPUs each time): one output dict per student. ls: logit standardization."""
    n, c = zt.shape
    dtypes = dict.fromkeys(native_path.FLOAT_OUT, np.float64) | dict.fromkeys(native_path.INT_OUT, np.int64)
    outs = [{name: np.empty(n, dtype=dtype) for name, dtype in dtypes.items()} for _ in zss]
    rule = native_path.Rule.of(g, temp, y, correlated, standardize=ls)
    rows = rows or max(1, KERNEL_CHUNK_ELEMENTS // c)
    requested = torch.get_num_threads()
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        t_rows, s_rows = zt.numpy_rows(start, stop), [zs.numpy_rows(start, stop) for zs in zss]
        try:
            threads = default_threads(requested, new_pass=start == 0)
            native_path.run_kernel_many(kern, s_rows, t_rows, rule, outs, start, threads=threads)
        except native_path.KernelError as exc:
            _raise_kernel_error(exc, start, zss, zt, c)
        for out, s_part in zip(outs, s_rows, strict=True):
            _redo_rows(out, s_part, t_rows, y, start, stop, g, temp, correlated, ls)
        if progress is not None:
            progress(stop, n)
    for out in outs:
        del out["redo"]
    return outs


def _redo_rows(
    out: dict, s_rows, t_rows, y, start: int, stop: int, g: Grouping, temp: float, correlated, ls: bool
) -> None:
    """The rows of [start, stop) the kernel left to float64 tensor ops (``out["redo"]``: logits more than
    1e15 T apart, teacher logits spanning more than 700 T), in cache-sized batches."""
    redo = np.flatnonzero(out["redo"][start:stop])
    batch = max(1, TENSOR_CHUNK_ELEMENTS["cpu"] // t_rows.shape[1])
    for first in range(0, redo.size, batch):
        rows = redo[first : first + batch]
        y_rows = None if y is None else y[start + rows]
        part = tensor_path.rows_terms(s_rows[rows], t_rows[rows], y_rows, g, temp, correlated, standardize=ls)
        for name, values in part.items():
            out[name][start + rows] = values


def _raise_kernel_error(exc, start: int, zss: list[Logits], zt: Logits, c: int) -> None:
    row = start + exc.row
    if exc.code == native_path.ERR_NONFINITE:
        zt.check_row(row)
        for zs in zss:
            zs.check_row(row)
    if exc.code == native_path.ERR_MEMORY:
        raise MemoryError("decompose: the kernel could not allocate its per-thread scratch space")
    raise RuntimeError(f"decompose: the kernel refused row {row} (code {exc.code}, {c} classes)")


def _check_standardize(standardize) -> bool:
    """True or False (numpy booleans too); anything else is a ValueError (a string "false" is not False)."""
    if not isinstance(standardize, bool | np.bool_):
        raise ValueError(f"standardize must be True or False, got {standardize!r}")
    return bool(standardize)


def _check_chunk_rows(chunk_rows) -> int | None:
    """None (the path's default) or a whole number >= 1; anything else is a ValueError."""
    if chunk_rows is None:
        return None
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(
            f"chunk_rows must be a whole number >= 1 (or None for the default), got {chunk_rows!r}"
        )
    return int(chunk_rows)


def _check_pair(zs: Logits, zt: Logits) -> tuple[int, int]:
    for arr in (zs, zt):
        if len(arr.shape) != 2:
            raise ValueError(f"{arr.name} must have shape (N, C), got {arr.shape}")
        if arr.shape[0] < 1 or arr.shape[1] < 2:
            raise ValueError(f"{arr.name} has shape {arr.shape}: need at least 1 sample and 2 classes")
    if zs.shape != zt.shape:
        raise ValueError(f"{zs.name} has shape {zs.shape}, {zt.name} {zt.shape}")
    return zt.shape


def _correlated(
    g: Grouping, zt: Logits, correlation, dev: torch.device, c: int, ls: bool
) -> np.ndarray | None:
    """What the rule reads from the class correlation (corr:R: the (C, C) boolean matrix `corr >= R`,
    decided in float64), or None for rules that read none. Computed here when not given: of the
    standardized teacher under LS."""
    if not g.needs_correlation:
        return None
    if correlation is None:
        correlation = class_correlation(zt.data, device=dev, standardize=ls)  # a tensor: read by chunks
    corr = np.asarray(correlation)
    if corr.shape != (c, c):
        raise ValueError(f"correlation has shape {corr.shape}, expected ({c}, {c})")
    return g.correlated(corr).numpy()


def _check_finite(out: dict, zs: Logits, zt: Logits) -> None:
    """Non-finite results mean non-finite inputs: name the first culprit."""
    kl = out["kl"]
    if np.isfinite(kl).all():
        return
    row = int(np.flatnonzero(~np.isfinite(kl))[0])
    zt.check_row(row)
    zs.check_row(row)
    raise ValueError(f"decompose: row {row} gave a non-finite result from finite logits")


@functools.cache
def _warn_mps() -> None:
    """Once a process: an "mps" request is computed on the CPU."""
    log.warning("decompose: MPS has no float64, so this decomposition is computed on the CPU")
