"""The CPU path of `decompose`: the fused C kernel (``decompose_kernel.c``), one pass per row.

    kern = kernel()          # None where it is off or cannot be built (then: tensor_path.py)
    run_kernel_many(kern, [student_rows], teacher_rows, Rule.of(grouping, T, labels, correlated), [out],
                    offset, threads=2)

Built on first use by `cakd_viz.native.NativeLibrary` (one build for every x86-64 CPU: the SIMD path is
picked when it loads). Rows are passed where they lie (`kernel_rows`); the engine checks every argument
first. A rule reaches the kernel as its code (``rules.h``) and `Grouping.kernel_args`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cakd_viz.decomposition.result import FLOAT_ARRAYS, INT_ARRAYS
from cakd_viz.grouping import Grouping
from cakd_viz.grouping.base import RULE_MASK
from cakd_viz.native import STRICT_FLAGS, NativeLibrary

ABI_VERSION = 7
# No -ffast-math nor -fassociative-math (unlike the loss kernel): the accurate formulation depends on
# the order and exact meaning of a few operations (differences taken before shifts, the series of phi,
# the finiteness tests). The hot loops are intrinsics, so the compiler's freedom would buy nothing.
FLAGS = STRICT_FLAGS
VARIANTS = (("dispatch", (), ("-lm",)),)  # one build; the instruction set is chosen at run time

DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
ISA_FLAGS = {"auto": 0, "portable": 1, "avx2": 2}  # FLAG_PORTABLE, FLAG_NO_AVX512 of the C source
NO_REDO64 = 4  # FLAG_NO_REDO64: mark the rows the kernel would redo in double (tests)
SIMD_NAMES = {0: "portable C", 1: "AVX2", 2: "AVX-512"}
FLOAT_OUT = FLOAT_ARRAYS  # the kernel's float64 outputs, in its order
INT_OUT = (*INT_ARRAYS, "redo")  # redo: rows left to the caller (float64)
ERR_NONFINITE, ERR_LABEL, ERR_MEMORY, ERR_ARGS = 1, 2, 3, 4

_i64, _int, _dbl, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_void_p
_RULE = [_ptr, _ptr, _int, _i64, _dbl, _dbl, _int]  # labels, correlated, rule, k, mass_p, T, standardize
_RUN = [_int, _int, ctypes.POINTER(_i64)]  # threads, flags, bad_row
# dk_strong_mask(n, c, teacher, t_stride, t_dtype, <rule>, mask, sizes, <run>)
_MASK = [_i64, _i64, _ptr, _i64, _int, *_RULE, _ptr, _ptr, *_RUN]
# dk_decompose_many(n, c, teacher, t_stride, t_dtype, ns, students, s_strides, s_dtypes, <rule>, fouts, iouts, <run>)
_MANY = [_i64, _i64, _ptr, _i64, _int, _int, _ptr, _ptr, _ptr, *_RULE, _ptr, _ptr, *_RUN]
MAX_STUDENTS = 256  # students of one dk_decompose_many call
# dk_scan(n, c, data, stride, dtype, pred, <run>)
_SCAN = [_i64, _i64, _ptr, _i64, _int, _ptr, *_RUN]


@dataclass(frozen=True)
class Kernel:
    """The loaded library's entry points."""

    path: Path
    strong_mask: ctypes._CFuncPtr
    simd_level: int  # 0 portable, 1 AVX2, 2 AVX-512
    pool_size: ctypes._CFuncPtr  # helper threads started so far
    scan: ctypes._CFuncPtr
    decompose_many: ctypes._CFuncPtr

    def describe(self) -> str:
        return f"{SIMD_NAMES[self.simd_level]} path"


def _bind(lib: ctypes.CDLL, path: Path) -> Kernel:
    lib.dk_strong_mask.argtypes, lib.dk_strong_mask.restype = _MASK, _int
    lib.dk_scan.argtypes, lib.dk_scan.restype = _SCAN, _int
    lib.dk_decompose_many.argtypes, lib.dk_decompose_many.restype = _MANY, _int
    lib.dk_simd_level.restype = lib.dk_pool_size.restype = _int
    entries = lib.dk_strong_mask, lib.dk_simd_level(), lib.dk_pool_size, lib.dk_scan, lib.dk_decompose_many
    return Kernel(path, *entries)


LIBRARY: NativeLibrary[Kernel] = NativeLibrary(
    "decompose_kernel",
    Path(__file__).with_name("decompose_kernel.c"),
    ABI_VERSION,
    _bind,
    "fused decomposition kernel",
    flags=FLAGS,
    variants=VARIANTS,
)


def kernel() -> Kernel | None:
    """The decomposition kernel (built on the first call), or None where it is off or cannot be built."""
    return LIBRARY.get()


def kernel_dtype(arr) -> bool:
    """Whether the kernel reads this array's dtype itself (float16 or float32, any byte order)."""
    return np.dtype(arr.dtype).newbyteorder("=") in DTYPES


def kernel_rows(rows: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(m, C) rows as (array to keep alive, row stride in bytes, dtype code): the rows themselves where possible.

    The rows themselves when they are float16/float32 in native byte order with unit class stride (any
    row stride, even negative or 0); otherwise a contiguous float32 copy of these rows.
    """
    if rows.dtype not in DTYPES:
        rows = np.ascontiguousarray(rows, dtype=np.float32)  # byte-swapped, and other float dtypes
    elif rows.strides[1] != rows.itemsize:
        rows = np.ascontiguousarray(rows)
    return rows, int(rows.strides[0]), DTYPES[rows.dtype]


def selects(g: Grouping) -> bool:
    """Whether the kernel decides this rule's strong set itself (a rule without a code: the tensor path)."""
    return g.kernel_code("decompose") != RULE_MASK


@dataclass(frozen=True)
class Rule:
    """A grouping and setting as the kernel's arguments. labels: (N,) int64 or None; correlated: (C, C) uint8
    or None; standardize: logit standardization (each row's logits z-scored before T, in the kernel)."""

    code: int
    k: int
    mass_p: float
    temperature: float
    labels: np.ndarray | None
    correlated: np.ndarray | None
    standardize: bool = False

    @classmethod
    def of(cls, g: Grouping, temperature: float, labels, correlated, *, standardize: bool = False) -> Rule:
        """The kernel's arguments for `g`, a rule the kernel selects (`selects`)."""
        args = g.kernel_args()
        y = None if labels is None else np.ascontiguousarray(labels, dtype=np.int64)
        corr = None if correlated is None else np.ascontiguousarray(correlated, dtype=np.uint8)
        code = g.kernel_code("decompose")
        return cls(code, args.k, args.mass_p, float(temperature), y, corr, bool(standardize))

    def args(self, start: int) -> tuple:
        """The kernel's rule arguments for rows from `start` on (labels, correlated, rule, k, mass_p, T, LS)."""
        labels = None if self.labels is None else self.labels.ctypes.data + 8 * start
        corr = None if self.correlated is None else self.correlated.ctypes.data
        return labels, corr, self.code, self.k, self.mass_p, self.temperature, int(self.standardize)


class KernelError(Exception):
    """The kernel refused a call: `code` (ERR_*) at `row` (counted from the call's first row)."""

    def __init__(self, code: int, row: int) -> None:
        super().__init__(f"decompose kernel: error {code} at row {row}")
        self.code, self.row = code, row


def _call(entry: ctypes._CFuncPtr, *args, threads: int, flags: int) -> None:
    """One kernel entry point with its trailing (threads, flags, bad_row); a KernelError for a refusal."""
    bad = _i64(-1)
    code = entry(*args, int(threads), flags, ctypes.byref(bad))
    if code:
        raise KernelError(code, int(bad.value))


def run_kernel_many(
    kern: Kernel,
    students: list[np.ndarray],
    teacher: np.ndarray,
    rule: Rule,
    outs: list[dict[str, np.ndarray]],
    offset: int = 0,
    *,
    threads: int,
    isa: str = "auto",
    redo64: bool = True,
) -> None:
    """Decompose the rows of each of `students` (1 to MAX_STUDENTS) against `teacher` ((m, C) numpy arrays, see `kernel_rows`)
    into ``outs[j][name][offset : offset + m]`` ({name: (N,) contiguous float64 / int64 array, FLOAT_OUT +
    INT_OUT} per student); labels from `rule.labels[offset:]`. One pass over the rows: each row's strong
    set (and, on AVX-512, its weights e^b) is decided once for every student, and ``outs[j]`` is what a
    call with ``students[j]`` alone gives, bit for bit.

    Rows whose BCD float32 arithmetic cannot give to 1e-4 are redone in double by the kernel itself
    (redo64=False marks them instead). ``out["redo"]`` marks the rows the kernel leaves to the caller (to
    compute in float64; their other outputs are not to be used): logits more than 1e15 T apart, and the
    rare rows the double redo cannot take either (teacher logits spanning more than 700 T). Raises
    KernelError (its row counted from `offset`, the lowest over all students) for a non-finite logit
    (ERR_NONFINITE), a bad label or no memory; the other rows are computed.
    """
    zt, t_stride, t_code = kernel_rows(teacher)
    m, c = zt.shape
    rows = [kernel_rows(s) for s in students]  # kept alive until the call returns
    ns = len(rows)
    sptrs = (ctypes.c_void_p * ns)(*(z.ctypes.data for z, _, _ in rows))
    strides = (_i64 * ns)(*(stride for _, stride, _ in rows))
    codes = (_int * ns)(*(code for _, _, code in rows))
    fptrs = (ctypes.c_void_p * (ns * len(FLOAT_OUT)))(
        *(out[name].ctypes.data + 8 * offset for out in outs for name in FLOAT_OUT)
    )
    iptrs = (ctypes.c_void_p * (ns * len(INT_OUT)))(
        *(out[name].ctypes.data + 8 * offset for out in outs for name in INT_OUT)
    )
    flags = ISA_FLAGS[isa] | (0 if redo64 else NO_REDO64)
    args = (m, c, zt.ctypes.data, t_stride, t_code, ns, sptrs, strides, codes, *rule.args(offset))
    _call(kern.decompose_many, *args, fptrs, iptrs, threads=threads, flags=flags)


def kernel_strong_mask(
    kern: Kernel, teacher: np.ndarray, rule: Rule, *, sizes: bool = False, threads: int = 1, isa: str = "auto"
) -> np.ndarray:
    """The kernel's strong set of every row, (N, C) bool, by the same code as `run_kernel_many`; with
    ``sizes`` each row's |S| instead, (N,) int64 (without the (N, C) bytes)."""
    zt, t_stride, t_code = kernel_rows(teacher)
    n, c = zt.shape
    out = np.zeros(n, np.int64) if sizes else np.zeros((n, c), np.uint8)
    ptrs = (None, out.ctypes.data) if sizes else (out.ctypes.data, None)
    _call(
        kern.strong_mask,
        n,
        c,
        zt.ctypes.data,
        t_stride,
        t_code,
        *rule.args(0),
        *ptrs,
        threads=threads,
        flags=ISA_FLAGS[isa],
    )
    return out if sizes else out.view(bool)


def kernel_scan(kern: Kernel, rows: np.ndarray, out: np.ndarray, *, threads: int) -> None:
    """Each row's argmax of (m, C) `rows` (see `kernel_rows`; lowest index among equal maxima, as
    `decompose`'s teacher_pred) into `out` ((m,) contiguous int64), by pass 1 of the decomposition.
    Raises KernelError(ERR_NONFINITE, row) for the first row holding a NaN or an infinity."""
    data, stride, code_dtype = kernel_rows(rows)
    m, c = data.shape
    args = (m, c, data.ctypes.data, stride, code_dtype, out.ctypes.data)
    _call(kern.scan, *args, threads=threads, flags=0)
