"""CAKD loss on CPU tensors through its fused C kernel (``cakd_kernel.c``): one call forward, one backward.

Same contract as `tensor_kernel.CAKDFunction` (terms = T^2 x batch means of [BCD, SCD, WCD], natural
weights as contributions, loss = w_b*BCD + w_s*SCD + w_w*WCD added left to right in the input dtype),
but the strong set of a rule the kernel selects itself (`Grouping.kernel_code("loss")`: `target`,
`topk:K` and `topk+target:K`, codes of ``cakd_viz/grouping/rules.h``) is found inside the kernel from
the teacher's logits and the labels, and any other rule comes in as a boolean mask (RULE_MASK). The
library is built on first use by :class:`cakd_viz.native.NativeLibrary`; ``LIBRARY.get()`` is None
where it cannot be.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from cakd_viz.grouping import Grouping
from cakd_viz.grouping.base import RULE_MASK
from cakd_viz.native import NativeLibrary
from cakd_viz.validate import label_error

ABI_VERSION = 4
ROW = 8  # doubles per row in the kernel's per-row record
_i64, _dbl, _int, _ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p
_dbls, _i64s = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int64)
_FORWARD = [_i64, _i64, _ptr, _ptr, _dbl, _int, _i64, _ptr, _ptr, _ptr, _ptr, _dbls, _int, _int, _i64s, _int]
SUMS, BAD = ctypes.c_double * 3, ctypes.c_int64 * 1  # the forward's two small out-arguments
_BACKWARD = [_i64, _i64, _ptr, _ptr, _ptr, _dbl, _dbl, _dbl, _int, _int, _ptr, _int]


@dataclass(frozen=True)
class Kernel:
    """The loaded library's entry points, by dtype name ("float32", "float64")."""

    path: Path
    forward: dict
    backward: dict


def _bind(lib: ctypes.CDLL, path: Path) -> Kernel:
    forward, backward = {}, {}
    for dtype, suffix in (("float32", "f32"), ("float64", "f64")):
        fwd, bwd = getattr(lib, f"cakd_forward_{suffix}"), getattr(lib, f"cakd_backward_{suffix}")
        fwd.argtypes, fwd.restype = _FORWARD, _int
        bwd.argtypes, bwd.restype = _BACKWARD, None
        forward[dtype], backward[dtype] = fwd, bwd
    return Kernel(path, forward, backward)


LIBRARY: NativeLibrary[Kernel] = NativeLibrary(
    "cakd_kernel", Path(__file__).with_name("cakd_kernel.c"), ABI_VERSION, _bind, "fused CAKD loss kernel"
)


def kernel() -> Kernel | None:
    """The fused loss kernel (built on the first call), or None where it is off or cannot be built."""
    return LIBRARY.get()


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def rule_of(grouping: Grouping, c: int) -> tuple[int, int]:
    """(kernel rule code, k clamped to C - 1) for a grouping; RULE_MASK: the caller passes the mask."""
    return grouping.kernel_code("loss"), min(grouping.kernel_args().k, c - 1)


class NativeCAKDFunction(torch.autograd.Function):
    """forward(kernel, student, teacher, rule, k, labels, mask, temperature, weights, natural, term_grads)
    -> (loss 0-dim, terms (3,)) for float32/float64 CPU logits; ``rule`` and ``k`` from ``rule_of``,
    ``mask`` only for a rule the kernel lacks (RULE_MASK)."""

    @staticmethod
    def forward(
        ctx, kern, student, teacher, rule, k, labels, mask, temperature, weights, natural, term_grads
    ):
        n, c = student.shape
        dtype = student.dtype
        name = "float32" if dtype == torch.float32 else "float64"
        student, teacher = student.contiguous(), teacher.contiguous()  # (no copy when they are already)
        mask = (
            mask.to(torch.bool).contiguous() if rule == RULE_MASK else torch.empty((n, c), dtype=torch.bool)
        )
        label_ptr = None
        if rule != RULE_MASK and labels is not None:  # the kernel reads them for the rules that need them
            labels = labels.contiguous()  # kept referenced: the kernel reads it through a raw pointer
            label_ptr = labels.data_ptr()
        probs = torch.empty((2, n, c), dtype=dtype)
        rows = torch.empty((n, ROW), dtype=torch.float64)
        sums, bad = SUMS(), BAD()  # batch sums of the three terms' rows; a bad label's row
        inputs = (n, c, student.data_ptr(), teacher.data_ptr(), 1.0 / temperature, rule, k, label_ptr)
        # the arguments in _FORWARD's order: inputs, buffers, the thread count
        buffers = (mask.data_ptr(), probs.data_ptr(), rows.data_ptr(), sums, *natural, bad)
        code = kern.forward[name](*inputs, *buffers, torch.get_num_threads())
        if code == -1:
            row = int(bad[0])
            raise label_error("labels", int(labels[row]), row, c)
        if code == -3:
            raise ValueError(f"the fused CAKD kernel does not select strong sets for rule code {rule}")
        if code != 0:
            raise MemoryError("the fused CAKD kernel could not allocate its top-k scratch space")
        real = _NUMPY[dtype]
        factor = temperature**2 / n
        terms = np.array([max(x * factor, 0.0) for x in sums], dtype=real)  # >= 0 despite rounding
        w = [real(x) for x in weights]
        loss = w[0] * terms[0] + w[1] * terms[1] + w[2] * terms[2]  # left to right, in the input dtype
        ctx.kern, ctx.name, ctx.setup = kern, name, (temperature, weights, natural, n, c)
        ctx.probs, ctx.mask, ctx.rows = probs, mask, rows
        ctx.set_materialize_grads(False)
        loss_t, terms_t = torch.from_numpy(np.asarray(loss, dtype=real)), torch.from_numpy(terms)
        if not term_grads:
            ctx.mark_non_differentiable(terms_t)
        return loss_t, terms_t

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, grad_terms):
        if grad_loss is None and grad_terms is None:
            return (None,) * 11
        temperature, weights, natural, n, c = ctx.setup
        g = 0.0 if grad_loss is None else float(grad_loss)
        up = [0.0, 0.0, 0.0] if grad_terms is None else grad_terms.tolist()
        scale = temperature / n  # d(T^2 * batch mean)/ds = (T / n) d(term)/du
        cb, cs, cw = ((g * w + u) * scale for w, u in zip(weights, up, strict=True))
        grad = torch.empty((n, c), dtype=ctx.probs.dtype)
        saved = (ctx.probs.data_ptr(), ctx.mask.data_ptr(), ctx.rows.data_ptr())  # in _BACKWARD's order
        rest = (*map(int, natural), grad.data_ptr(), torch.get_num_threads())
        ctx.kern.backward[ctx.name](n, c, *saved, cb, cs, cw, *rest)
        return None, grad, None, None, None, None, None, None, None, None, None
