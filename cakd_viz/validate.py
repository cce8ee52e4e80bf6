"""Boundary checks for logits, labels, temperatures, inputs and names, all raising :class:`BundleError`.

Every loader and writer in cakd-viz calls these once, at the boundary; the code behind them trusts
its inputs. Messages are one line and name the file or field, e.g.
``"students/kd.npy has 100 classes, teacher.npy has 10"`` or
``"teacher.npy has 3 NaN values (first at row 17, class 4)"``.

Value checks (NaN/inf) run over row chunks, so a memory-mapped array of any size is checked with
bounded memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # ~4M elements (8 MB of float16) per chunk: bounded memory, cache friendly
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,99}")
_NUMERIC_KINDS = "fiu"  # float, signed and unsigned integer
_INT64_MAX = 2**63 - 1  # the largest label (labels are returned as int64)


class BundleError(ValueError):
    """Invalid bundle, array or import file; the message is one line naming the file or field."""


def as_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a numpy array without copying when possible (torch tensors: detached, on CPU).

    bfloat16 tensors become float32 (numpy has no bfloat16). Memory maps are returned unchanged.
    """
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor; torch is imported already
        import torch

        t = x.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{name}: cannot be read as an array ({exc})") from exc


def iter_row_chunks(num_rows: int, row_size: int, chunk_rows: int = 65536) -> Iterator[slice]:
    """Yield row slices covering ``0..num_rows`` of at most ``chunk_rows`` rows and ~4M elements each."""
    step = max(1, min(chunk_rows, _CHUNK_ELEMENTS // max(1, row_size)))
    for start in range(0, num_rows, step):
        yield slice(start, min(num_rows, start + step))


def _mismatch(name: str, got: int, expected: int, reference: str | None, what: str) -> str:
    return f"{name} has {got} {what}, " + (
        f"{reference} has {expected}" if reference else f"expected {expected}"
    )


def check_logits(
    arr: Any,
    name: str,
    *,
    num_samples: int | None = None,
    num_classes: int | None = None,
    check_values: bool = True,
    chunk_rows: int = 65536,
    reference: str | None = None,
    row_offset: int = 0,
) -> None:
    """Check a logit array of shape (N, C).

    It must be 2-D, of a float or integer dtype (not bool/object/complex), with N >= 1 and C >= 2;
    N and C must equal ``num_samples``/``num_classes`` when given (``reference`` names the array
    they came from, for the message). Unless ``check_values`` is False, NaN and inf are counted
    chunk-wise and reported with the first position (rows shifted by ``row_offset``).
    """
    arr = as_numpy(arr, name)
    if arr.ndim != 2:
        raise BundleError(
            f"{name}: expected a 2-D (N, C) array of logits, got {arr.ndim}-D with shape {tuple(arr.shape)}"
        )
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise BundleError(f"{name}: dtype {arr.dtype} is not numeric; logits must be float or integer")
    n, c = arr.shape
    if n == 0 or c == 0:
        raise BundleError(f"{name} is empty (shape {tuple(arr.shape)})")
    if c < 2:
        raise BundleError(f"{name} has 1 class; logits need at least 2 classes")
    if num_samples is not None and n != num_samples:
        raise BundleError(_mismatch(name, n, num_samples, reference, "samples"))
    if num_classes is not None and c != num_classes:
        raise BundleError(_mismatch(name, c, num_classes, reference, "classes"))
    if check_values and arr.dtype.kind == "f":
        _check_finite(arr, name, chunk_rows, row_offset)


def _all_finite(chunk: np.ndarray) -> bool:
    """Whether every value of a float chunk is finite. float16 is checked on its bits (exponent all
    ones means inf or NaN): numpy's float16 isfinite converts every element and is ~15x slower."""
    if chunk.dtype == np.float16 and chunk.flags.c_contiguous:
        bits = chunk.view(np.uint16)
        return bool(chunk.size == 0 or (bits & np.uint16(0x7FFF)).max() < 0x7C00)
    return bool(np.isfinite(chunk).all())


def _check_finite(arr: np.ndarray, name: str, chunk_rows: int, row_offset: int) -> None:
    """Count NaN and inf chunk by chunk; raise naming how many and where the first of each is."""
    kinds = {"NaN value": np.isnan, "infinite value": np.isinf}
    counts = dict.fromkeys(kinds, 0)
    first: dict[str, tuple[int, int]] = {}
    for rows in iter_row_chunks(arr.shape[0], arr.shape[1], chunk_rows):
        chunk = arr[rows]
        if _all_finite(chunk):
            continue
        for what, test in kinds.items():
            mask = test(chunk)
            k = int(mask.sum())
            if k:
                if what not in first:
                    r, c = np.argwhere(mask)[0]
                    first[what] = (rows.start + int(r) + row_offset, int(c))
                counts[what] += k
    parts = [
        f"{k} {what}{'s' * (k != 1)} (first at row {first[what][0]}, class {first[what][1]})"
        for what, k in counts.items()
        if k
    ]
    if parts:
        raise BundleError(f"{name} has {' and '.join(parts)}")


def label_error(name: str, value, row: int, num_classes: int | None) -> BundleError:
    """The one wording of an out-of-range label, e.g. "labels: label 12 at row 5 is outside 0..9" (without
    ``num_classes``: below 0, or beyond int64, which labels are returned as)."""
    if num_classes is not None:
        allowed = f"0..{num_classes - 1}"
    else:
        allowed = ">= 0" if value < 0 else f"0..{_INT64_MAX}"
    return BundleError(f"{name}: label {value} at row {row} is outside {allowed}")


def check_labels(
    labels: Any,
    name: str,
    *,
    num_samples: int | None = None,
    num_classes: int | None = None,
    reference: str | None = None,
    row_offset: int = 0,
) -> np.ndarray:
    """Check labels of shape (N,) and return them as int64: 1-D, integers (floats holding whole
    numbers are accepted), N rows when ``num_samples`` is given, each in 0..C-1 (without
    ``num_classes``: each >= 0 and within int64). Every loader, writer, decomposition and data source calls this one check.

    Works chunk-wise (a memory-mapped labels.npy of any size); rows in messages are shifted by
    ``row_offset``. The returned array is the input itself when it already is int64.
    """
    labels = as_numpy(labels, name)
    if labels.ndim != 1:
        raise BundleError(f"{name}: expected a 1-D (N,) array of labels, got shape {tuple(labels.shape)}")
    if labels.dtype.kind not in _NUMERIC_KINDS:
        raise BundleError(f"{name}: dtype {labels.dtype} is not numeric; labels must be integers")
    if num_samples is not None and labels.shape[0] != num_samples:
        raise BundleError(_mismatch(name, labels.shape[0], num_samples, reference, "samples"))
    for rows in iter_row_chunks(labels.shape[0], 1, 1 << 22):
        chunk = np.asarray(labels[rows])
        if chunk.dtype.kind == "f":
            bad = ~np.isfinite(chunk) | (chunk != np.round(chunk))
            if bad.any():
                i = int(np.argmax(bad))
                raise BundleError(
                    f"{name}: label {float(chunk[i])} at row {rows.start + i + row_offset} is not an integer"
                )
        bad = (chunk < 0) | (chunk >= (_INT64_MAX + 1 if num_classes is None else num_classes))
        if bad.any():
            i = int(np.argmax(bad))
            raise label_error(name, int(chunk[i]), rows.start + i + row_offset, num_classes)
    return labels if labels.dtype == np.int64 else labels.astype(np.int64)


def check_temperature(temperature: Any, name: str = "temperature") -> float:
    """The temperature as a float: a finite number > 0, else one error in one wording everywhere."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise BundleError(f"{name} must be a finite number > 0, got {temperature!r}") from None
    except OverflowError:  # an int beyond float's range (JSON reads 1 and 400 zeros as one)
        raise BundleError(f"{name} must be a finite number > 0, got {str(temperature)[:10]}…") from None
    if isinstance(temperature, bool) or not np.isfinite(value) or value <= 0:
        raise BundleError(f"{name} must be a finite number > 0, got {temperature!r}")
    return value


def check_inputs(inputs: Any, name: str, *, num_samples: int, reference: str | None = None) -> None:
    """Check inputs of shape (N, ...): at least 1-D, numeric or bool, N rows."""
    inputs = as_numpy(inputs, name)
    if inputs.ndim < 1:
        raise BundleError(f"{name}: expected an (N, ...) array of inputs, got a scalar")
    if inputs.dtype.kind not in _NUMERIC_KINDS + "b":
        raise BundleError(
            f"{name}: dtype {inputs.dtype} is not numeric; inputs must be numbers (e.g. uint8 images)"
        )
    if inputs.shape[0] != num_samples:
        raise BundleError(_mismatch(name, inputs.shape[0], num_samples, reference, "samples"))


def check_class_names(class_names: Any, name: str, *, num_classes: int) -> list[str]:
    """Check and return class names: a sequence of ``num_classes`` strings (a list, tuple or array; not a
    string, nor a dict or set, whose order or values are no list of names)."""
    if isinstance(class_names, str | bytes | Mapping | AbstractSet) or not hasattr(class_names, "__len__"):
        raise BundleError(f"{name}: class names must be a list of strings, got {type(class_names).__name__}")
    names = [_to_str(x, name) for x in class_names]
    if len(names) != num_classes:
        raise BundleError(f"{name} has {len(names)} class names, but the logits have {num_classes} classes")
    return names


def _to_str(x: Any, name: str) -> str:
    if isinstance(x, bytes | np.bytes_):
        return x.decode("utf-8", errors="replace")
    if isinstance(x, str | np.str_):
        return str(x)
    raise BundleError(f"{name}: class names must be strings, found {type(x).__name__} {x!r}")


def check_file_name(name: Any, what: str) -> str:
    """Check that ``name`` is safe as a file name: 1-100 of A-Z a-z 0-9 _ . + = -, not starting with . or -."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name.endswith("."):
        raise BundleError(
            f"invalid {what} {name!r}: use 1-100 letters, digits and _ . + = -, not starting with '.' or '-'"
        )
    return name


def check_student_name(name: Any) -> str:
    """Check that a student name is a safe file name (it becomes ``students/NAME.npy``) and not "teacher"."""
    check_file_name(name, "student name")
    if name == "teacher":
        raise BundleError("invalid student name 'teacher': that name refers to the teacher")
    return name


_FLOAT16_OVERFLOW = 65520.0  # the smallest magnitude that rounds to inf in float16 (its max is 65504)


def check_fits_dtype(arr: np.ndarray, name: str, dtype: np.dtype, *, chunk_rows: int = 65536) -> None:
    """Check that finite float logits (N, C) stay finite when stored as ``dtype`` (float16 overflows)."""
    if np.dtype(dtype) != np.float16 or arr.dtype == np.float16 or arr.size == 0:
        return
    peak = 0.0
    for rows in iter_row_chunks(arr.shape[0], int(np.prod(arr.shape[1:])), chunk_rows):
        chunk = arr[rows]
        peak = max(peak, float(np.max(chunk)), -float(np.min(chunk)))
    if peak >= _FLOAT16_OVERFLOW:
        raise BundleError(
            f"{name} has values up to {peak:g} in magnitude, beyond float16's range (65504); "
            "store it as float32 instead"
        )


def loads_json(text: str | bytes, where: str) -> Any:
    """``json.loads`` for text from a file or a browser: a document nested too deeply for the parser (a
    few thousand brackets) is a one-line ValueError naming ``where``, never a RecursionError; so is text
    that is no JSON (``json.JSONDecodeError`` is a ValueError already, reworded to name ``where``), a
    number too long for Python's int (which says so without ``where``, and names a setting of its own)
    and bytes that are not UTF-8 (a file's, read whole)."""
    import json
    import sys

    try:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:  # the only other one: int's limit on the digits it reads
        digits = sys.get_int_max_str_digits()
        raise ValueError(f"{where}: not valid JSON (a number of more than {digits} digits)") from None
