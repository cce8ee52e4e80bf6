"""Importing logits from ``.npz``, ``.safetensors`` and ``.pt``/``.pth`` files into a bundle.

Array names, and how each format is checked before any data is read or decompressed (``limits``,
``zipcheck``): docs/architecture.md §5 "Imports". Nothing is ever unpickled: ``.npz`` members are read by
cakd-viz's own ``.npy`` reader, ``.pt`` files only through ``torch.load(weights_only=True)``; ``.npz``
members are inflated straight into their arrays, ``.safetensors`` tensors memory-mapped (bfloat16
widened to float32).
"""

from __future__ import annotations

import errno
import json
import math
import pickle
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz.bundle.core import check_float
from cakd_viz.bundle.limits import ImportLimitError, check_expansion, check_limit, resolve_limit
from cakd_viz.bundle.npy import NpyHeader, as_text, human_size, read_header
from cakd_viz.bundle.writer import write_bundle
from cakd_viz.bundle.zipcheck import is_zip, open_zip
from cakd_viz.text import a_type
from cakd_viz.validate import BundleError, as_numpy, check_inputs, check_logits

__all__ = ["SUPPORTED_EXTENSIONS", "ImportLimitError", "import_file", "read_arrays"]

SUPPORTED_EXTENSIONS = (".npz", ".safetensors", ".pt", ".pth")
_KNOWN_KEYS = ("teacher", "labels", "student", "student_NAME", "class_names", "inputs")
MAX_SAFETENSORS_HEADER = 16 * 2**20  # the JSON header of a .safetensors file (class names included)
MAX_PICKLE_BYTES = 16 * 2**20  # a .pt file's pickle: a dict of tensors is a few KB
_READ_CHUNK = 4 * 2**20  # bytes decompressed per read of an .npz member
_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",  # bits of bfloat16; widened to float32 on reading
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}


def _pickle_refusal(src: Path) -> BundleError:
    return BundleError(
        f"{src.name}: contains pickled Python objects; refusing to load (only plain tensors are accepted)"
    )


def read_arrays(src: str | Path, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Read every array of an import file: name -> numpy array; "class_names" -> list of str.

    ``max_bytes``: the most the arrays may hold in all (and each one), checked from the file's
    declarations before any data is read; None: ``limits.default_max_bytes()`` (half the machine's
    memory). Arrays may be memory-mapped from ``src`` (``.safetensors``, ``.pt``). Raises
    :class:`BundleError` (:class:`ImportLimitError` past the limit) for an unknown extension, an
    unreadable or malformed file, pickled objects, a likely decompression bomb, or a file whose
    declared arrays cannot make a bundle; the message is one line and starts with the file's name.
    """
    src = Path(src)
    limit = resolve_limit(max_bytes)
    ext = src.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise BundleError(
            f"{src.name}: unknown file type {ext!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not src.is_file():
        raise BundleError(f"{src}: no such file")
    try:
        if ext == ".npz":
            return _read_npz(src, limit)
        if ext == ".safetensors":
            return _read_safetensors(src, limit)
        return _read_torch(src, limit)
    except MemoryError:
        raise BundleError(f"{src.name}: out of memory reading it (its arrays fit the import limit)") from None


# -- checks shared by the formats -----------------------------------------------------------------------


def _is_student(key: str) -> bool:
    return key == "student" or key.startswith("student_")


def _role(key: str) -> str:
    """How messages name a logit array: "teacher", "student 'NAME'" (a plain "student": 'student')."""
    return "teacher" if key == "teacher" else f"student {key.removeprefix('student_')!r}"


def _check_keys(src: Path, keys: list[str]) -> None:
    """A teacher, at least one student, and no unknown key."""
    found = ", ".join(sorted(keys)) or "none"
    if "teacher" not in keys:
        raise BundleError(f"{src.name}: no 'teacher' array (keys found: {found})")
    if not any(_is_student(k) for k in keys):
        raise BundleError(
            f"{src.name}: no student array (expected 'student' or 'student_NAME'; keys found: {found})"
        )
    for key in keys:
        if key not in ("teacher", "labels", "class_names", "inputs") and not _is_student(key):
            raise BundleError(f"{src.name}: unknown key {key!r}; expected {', '.join(_KNOWN_KEYS)}")


def _probe(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` that occupies one element (all strides 0), for shape checks."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * len(shape))


def _check_layout(src: Path, declared: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """The checks ``write_bundle`` makes on shapes, made on the declared shapes before reading any data."""
    _check_logit_dtypes(src, {k: v[1] for k, v in declared.items()})
    try:
        check_logits(_probe(*declared["teacher"]), "teacher", check_values=False)
        n, c = declared["teacher"][0]
        same = {"num_samples": n, "num_classes": c, "check_values": False, "reference": "teacher"}
        for key in filter(_is_student, declared):
            check_logits(_probe(*declared[key]), _role(key), **same)
        if "labels" in declared:
            shape = declared["labels"][0]
            if len(shape) != 1:
                raise BundleError(f"labels: expected a 1-D (N,) array of labels, got shape {shape}")
            if shape[0] != n:
                raise BundleError(f"labels has {shape[0]} samples, teacher has {n}")
        if "inputs" in declared:
            check_inputs(_probe(*declared["inputs"]), "inputs", num_samples=n, reference="teacher")
        if "class_names" in declared and math.prod(declared["class_names"][0]) != c:
            count = math.prod(declared["class_names"][0])
            raise BundleError(f"class_names has {count} class names, but the logits have {c} classes")
    except BundleError as exc:
        raise BundleError(f"{src.name}: {exc}") from None
    except ValueError as exc:  # numpy: a declared shape too large to describe at all
        raise BundleError(f"{src.name}: impossible array shapes ({exc})") from None


def _check_logit_dtypes(src: Path, dtypes: dict[str, np.dtype]) -> None:
    """Logits must be float16, float32 or float64, as ``load_bundle`` requires: an integer teacher or
    student is refused in the words of its message ("x.pt: teacher holds int32 values; logits must be ...")."""
    for key, dtype in dtypes.items():
        if key == "teacher" or _is_student(key):
            check_float(np.dtype(dtype), f"{src.name}: {_role(key)}", kinds="iub")


def _check_sizes(src: Path, sizes: dict[str, int], limit: int, shapes: dict[str, str] | None = None) -> None:
    """The arrays' ``sizes`` in bytes within ``limit``: all together, and first each tensor that
    ``shapes`` describes ("(N, C) F32")."""
    for key, shape in (shapes or {}).items():
        check_limit(src.name, f"tensor {key!r}", sizes[key], limit, f"{shape} = {human_size(sizes[key])}")
    total = sum(sizes.values())
    if len(sizes) > 1:
        what = f"its {len(sizes)} arrays"
        check_limit(src.name, what, total, limit, f"{human_size(total)} in all", verb="hold")


# -- .npz ---------------------------------------------------------------------------------------------


def _read_npz(src: Path, limit: int) -> dict[str, Any]:
    if not is_zip(src):  # np.load would try to read it as .npy or as a pickle
        raise BundleError(f"{src.name}: cannot read this .npz file (it is not a zip archive)")
    with open_zip(src, ".npz archive") as zf:
        members = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy") or info.is_dir():
                raise BundleError(f"{src.name}: member {info.filename!r} is not an .npy array")
            members[info.filename[: -len(".npy")]] = info
        _check_keys(src, list(members))
        headers = {key: _member_header(src, zf, key, info, limit) for key, info in members.items()}
        _check_sizes(src, {k: h.nbytes for k, h in headers.items()}, limit)
        check_expansion(src.name, sum(h.nbytes for h in headers.values()), src.stat().st_size)
        _check_layout(src, {k: (h.shape, h.dtype) for k, h in headers.items()})
        out: dict[str, Any] = {key: _read_member(src, zf, members[key], headers[key]) for key in members}
    if "class_names" in out:
        out["class_names"] = [as_text(x) for x in np.asarray(out["class_names"]).reshape(-1)]
    return out


def _member_header(src: Path, zf: zipfile.ZipFile, key: str, info: zipfile.ZipInfo, limit: int) -> NpyHeader:
    """The member's .npy header, checked against its zip entry and the limit (reads ~128 bytes)."""
    name = f"{src.name}: member {key!r}"
    try:
        with zf.open(info) as fp:
            header = read_header(fp, name)
    except BundleError as exc:
        if "Python objects" in str(exc):
            raise _pickle_refusal(src) from None
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{name} is corrupt ({' '.join(str(exc).split())})") from None
    check_limit(src.name, f"member {key!r}", header.nbytes, limit, header.describe())
    held = info.file_size - header.offset
    if held != header.nbytes:
        raise BundleError(
            f"{name} is corrupt: its header declares {header.describe()}, its zip entry holds "
            f"{human_size(max(0, held))} of data"
        )
    return header


def _read_member(src: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, h: NpyHeader) -> np.ndarray:
    """Decompress one member straight into a new array of its declared shape (native byte order)."""
    name = f"{src.name}: member {info.filename[: -len('.npy')]!r}"
    flat = np.empty(math.prod(h.shape), dtype=h.dtype)
    view = memoryview(flat).cast("B") if flat.nbytes else memoryview(b"")
    try:
        with zf.open(info) as fp:
            fp.read(h.offset)
            pos = 0
            while pos < len(view):
                chunk = fp.read(min(_READ_CHUNK, len(view) - pos))
                if not chunk:
                    raise BundleError(f"{name} is truncated: its data ends after {human_size(pos)}")
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            if fp.read(1):
                raise BundleError(f"{name} is corrupt: data beyond its declared {h.describe()}")
    except BundleError:  # already one line naming the member (it is a ValueError: not wrapped again)
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{name} is corrupt ({' '.join(str(exc).split())})") from None
    if not h.dtype.isnative and h.dtype.itemsize > 1:
        if h.dtype.kind in "SU":
            flat = flat.astype(h.dtype.newbyteorder("="))
        else:
            flat = flat.byteswap(inplace=True).view(h.dtype.newbyteorder("="))
    if h.fortran:
        return flat.reshape(h.shape[::-1]).T
    return flat.reshape(h.shape)


# -- .safetensors ---------------------------------------------------------------------------------------


def _read_safetensors(src: Path, limit: int) -> dict[str, Any]:
    file_size = src.stat().st_size
    with open(src, "rb") as fp:
        raw_len = fp.read(8)
        if len(raw_len) != 8:
            raise BundleError(
                f"{src.name}: cannot read this .safetensors file (shorter than its header size)"
            )
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > MAX_SAFETENSORS_HEADER or 8 + header_len > file_size:
            raise BundleError(
                f"{src.name}: cannot read this .safetensors file (its header claims {header_len:,} bytes of "
                f"a {file_size:,}-byte file; at most {human_size(MAX_SAFETENSORS_HEADER)})"
            )
        raw = fp.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(
            f"{src.name}: cannot read this .safetensors file (its header is not JSON: {exc})"
        ) from None
    if not isinstance(header, dict):
        raise BundleError(f"{src.name}: cannot read this .safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise BundleError(f"{src.name}: its __metadata__ must be a JSON object of strings")
    entries = {key: _tensor_entry(src, key, value) for key, value in header.items()}
    data_start, data_len = 8 + header_len, file_size - 8 - header_len
    _check_offsets(src, entries, data_len)
    _check_keys(src, list(entries))
    # what reading makes of each tensor: its shape, and its dtype (bfloat16 widened to float32)
    declared = {
        k: (tuple(shape), np.dtype("<f4" if dtype == "BF16" else _SAFETENSORS_DTYPES[dtype]))
        for k, (dtype, shape, _) in entries.items()
    }
    produced = {k: math.prod(shape) * dtype.itemsize for k, (shape, dtype) in declared.items()}
    _check_sizes(
        src, produced, limit, {k: f"{tuple(shape)} {dtype}" for k, (dtype, shape, _) in entries.items()}
    )
    _check_layout(src, declared)
    out: dict[str, Any] = {}
    for key, (dtype, shape, (begin, _)) in entries.items():
        out[key] = _map_tensor(src, key, dtype, tuple(shape), data_start + begin)
    if "class_names" in metadata:
        try:
            names = json.loads(metadata["class_names"])
        except (TypeError, ValueError, RecursionError) as exc:
            raise BundleError(f"{src.name}: metadata 'class_names' is not a JSON list ({exc})") from None
        if not isinstance(names, list):
            raise BundleError(f"{src.name}: metadata 'class_names' must be a JSON list of strings")
        out["class_names"] = names
    return out


def _tensor_entry(src: Path, key: str, value: Any) -> tuple[str, list[int], tuple[int, int]]:
    """(dtype, shape, (begin, end)) of one header entry, each checked."""
    bad = f"{src.name}: tensor {key!r}:"
    if not isinstance(value, dict):
        raise BundleError(f"{bad} its header entry is not an object")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:  # a list is not even hashable
        raise BundleError(f"{bad} unsupported dtype {dtype!r}; supported: {', '.join(_SAFETENSORS_DTYPES)}")
    if not isinstance(shape, list) or len(shape) > 32 or not all(_whole(s) for s in shape):
        raise BundleError(f"{bad} shape {shape!r} is not a list of whole numbers >= 0")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole(o) for o in offsets):
        raise BundleError(f"{bad} data_offsets {offsets!r} is not [begin, end]")
    begin, end = offsets
    itemsize = np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
    if end < begin or end - begin != math.prod(shape) * itemsize:
        raise BundleError(
            f"{bad} data_offsets {offsets} hold {max(0, end - begin):,} bytes, but {tuple(shape)} {dtype} "
            f"needs {math.prod(shape) * itemsize:,}"
        )
    return dtype, shape, (begin, end)


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_offsets(src: Path, entries: dict[str, tuple], data_len: int) -> None:
    """The tensors' byte ranges must tile the data section exactly: no overlap, no gap, nothing after."""
    covered = 0
    for key, (_, _, (begin, end)) in sorted(entries.items(), key=lambda kv: kv[1][2]):
        if begin != covered:
            raise BundleError(
                f"{src.name}: tensor {key!r} starts at byte {begin:,} of the data, expected {covered:,} "
                "(tensors overlap or leave a gap)"
            )
        covered = end
    if covered != data_len:
        raise BundleError(
            f"{src.name}: the header describes {covered:,} bytes of tensor data, the file holds {data_len:,}"
        )


def _map_tensor(src: Path, key: str, dtype: str, shape: tuple[int, ...], offset: int) -> np.ndarray:
    np_dtype = np.dtype(_SAFETENSORS_DTYPES[dtype])
    if math.prod(shape) == 0:
        arr = np.empty(shape, dtype=np_dtype)
    else:
        try:
            arr = np.memmap(src, dtype=np_dtype, mode="r", offset=offset, shape=shape)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{src.name}: tensor {key!r} cannot be mapped ({exc})") from None
    if dtype == "BF16":  # the top half of a float32: widen the bits
        wide = arr.astype(np.uint32)
        wide <<= 16
        return wide.view(np.float32)
    if not np_dtype.isnative and np_dtype.itemsize > 1:  # on a big-endian machine
        return arr.astype(np_dtype.newbyteorder("="))
    return arr


# -- .pt / .pth ----------------------------------------------------------------------------------------


def _check_torch_zip(src: Path, limit: int) -> None:
    """PyTorch's zip format, stored members only, a bounded pickle, data/ members within the limit."""
    if not is_zip(src):
        raise BundleError(
            f"{src.name}: cannot read this file: it is not a PyTorch zip file (torch.save since PyTorch 1.6); "
            "legacy and other formats are refused: save the tensors with a recent torch.save, or as .safetensors"
        )
    with open_zip(src, "PyTorch file") as zf:
        data = {}
        pickles = 0
        if any(i.filename.endswith("constants.pkl") or "/code/" in i.filename for i in zf.infolist()):
            raise BundleError(
                f"{src.name} is a TorchScript model (torch.jit.save), not a dict of tensors saved with torch.save"
            )
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                raise BundleError(
                    f"{src.name}: member {info.filename!r} is compressed; torch.save never compresses, so "
                    "this is not a file torch.save wrote"
                )
            if info.filename.endswith(".pkl"):
                pickles += 1
                if info.file_size > MAX_PICKLE_BYTES:
                    raise BundleError(
                        f"{src.name}: its pickle {info.filename!r} holds {human_size(info.file_size)} "
                        f"(at most {human_size(MAX_PICKLE_BYTES)} for a dict of tensors)"
                    )
            elif "/data/" in f"/{info.filename}":
                data[info.filename] = info.file_size
        if pickles == 0:
            raise BundleError(f"{src.name}: not a PyTorch file (no pickle inside the zip archive)")
    total = sum(data.values())
    what = f"its {len(data)} tensor storages"
    check_limit(src.name, what, total, limit, f"{human_size(total)} in all", verb="hold")


def _read_torch(src: Path, limit: int) -> dict[str, Any]:
    _check_torch_zip(src, limit)
    import torch

    try:
        with warnings.catch_warnings():  # torch's own advice would print before our one-line error
            warnings.simplefilter("ignore")
            obj = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # weights_only met a class or function: a real pickle
            refusal = _pickle_refusal(src)
            if "numpy" in str(exc):
                refusal = BundleError(f"{refusal}; save torch tensors, not numpy arrays (torch.from_numpy)")
            raise refusal from None
        raise BundleError(f"{src.name}: cannot read this file (not a valid PyTorch tensor file)") from None
    except MemoryError:
        raise
    except Exception as exc:  # torch reports a damaged archive as RuntimeError, KeyError, ValueError ...
        first = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0]  # torch's advice follows
        first = first if len(first) <= 200 else first[:200].rsplit(" ", 1)[0] + " …"
        raise BundleError(f"{src.name}: cannot read this file ({type(exc).__name__}: {first})") from None
    if not isinstance(obj, dict):
        raise BundleError(f"{src.name}: expected a dict of tensors, found {a_type(obj)}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "students" and isinstance(value, dict):  # {"students": {"kd": tensor}} -> student_kd
            for name, arr in value.items():
                if f"student_{name}" in obj:
                    raise BundleError(
                        f"{src.name}: student {str(name)!r} is given twice ('student_{name}' and 'students')"
                    )
                out[f"student_{name}"] = _torch_value(src, f"students.{name}", arr)
        elif key == "class_names" and isinstance(value, list | tuple):
            out[key] = [as_text(x) for x in value]
        else:
            out[str(key)] = _torch_value(src, str(key), value)
    _check_keys(src, list(out))
    _check_logit_dtypes(src, {k: v.dtype for k, v in out.items() if isinstance(v, np.ndarray)})
    # one storage may back many tensors (or a tensor with zero strides): count what comes out
    sizes = {k: math.prod(v.shape) * v.dtype.itemsize for k, v in out.items() if isinstance(v, np.ndarray)}
    _check_sizes(src, sizes, limit, {k: f"{out[k].shape} {out[k].dtype}" for k in sizes})
    check_expansion(src.name, sum(sizes.values()), src.stat().st_size)
    return out


def _torch_value(src: Path, key: str, value: Any) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise BundleError(f"{src.name}: {key!r} is a {value.layout} tensor; save it dense (.to_dense())")
        if value.is_quantized:
            raise BundleError(f"{src.name}: {key!r} is a quantized tensor; save it as floats (.dequantize())")
        if value.is_meta:
            raise BundleError(f"{src.name}: {key!r} is a tensor on the 'meta' device, which holds no values")
        return as_numpy(value, f"{src.name}: {key}")
    if isinstance(value, list | tuple):
        return as_numpy(value, f"{src.name}: {key}")
    raise BundleError(f"{src.name}: {key!r} holds {a_type(value)}, expected a tensor")


# -- into a bundle -------------------------------------------------------------------------------------


def _split_keys(src: Path, arrays: dict[str, Any], student_name: str) -> dict[str, Any]:
    """Map file keys (``read_arrays`` checked them: ``_check_keys``) to write_bundle arguments."""
    if "student" in arrays and f"student_{student_name}" in arrays:
        raise BundleError(
            f"{src.name}: both 'student' and 'student_{student_name}' name student {student_name!r}"
        )
    students = {
        student_name if key == "student" else key.removeprefix("student_"): arr
        for key, arr in arrays.items()
        if _is_student(key)
    }
    return {
        "teacher": arrays["teacher"],
        "students": students,
        "labels": arrays.get("labels"),
        "class_names": arrays.get("class_names"),
        "inputs": arrays.get("inputs"),
    }


def import_file(
    src: str | Path,
    out: str | Path,
    *,
    dtype: str | None = None,
    overwrite: bool = False,
    student_name: str = "student",
    max_bytes: int | None = None,
) -> Path:
    """Import a .npz/.safetensors/.pt/.pth file of logits into the bundle directory ``out``.

    ``student_name`` names the array stored as plain "student"; "student_NAME" arrays keep NAME.
    ``dtype`` "float16"/"float32" (default: keep the teacher's float16/float32). ``max_bytes``: the
    most the file's arrays may hold, checked before any data is read (see :func:`read_arrays`).
    Returns ``out``. Every error is a :class:`BundleError` whose message starts with the source
    file's name; nothing is created at ``out`` unless the import succeeds.
    """
    src = Path(src)
    parts = _split_keys(src, read_arrays(src, max_bytes=max_bytes), student_name)
    meta = {"source": {"file": src.name, "format": src.suffix.lower().lstrip(".")}}
    try:
        return write_bundle(out, **parts, meta=meta, dtype=dtype, overwrite=overwrite)
    except BundleError as exc:
        raise BundleError(f"{src.name}: {exc}") from None
    except MemoryError:
        raise BundleError(f"{src.name}: out of memory writing its bundle") from None
    except OSError as exc:
        if exc.errno == errno.ENOMEM:  # mapping the bundle's arrays found no memory
            raise BundleError(f"{src.name}: out of memory writing its bundle") from None
        raise
