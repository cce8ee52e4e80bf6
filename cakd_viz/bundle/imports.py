"""Importing logits from ``.npz``, ``.safetensors`` and ``.pt``/``.pth`` files into a bundle.

Array names (docs/architecture.md §5): ``teacher`` (N, C); ``student`` and/or ``student_NAME`` (N, C),
one or more; optional ``labels`` (N,), ``inputs`` (N, ...) and ``class_names`` (C strings; in a
.safetensors file, the metadata key "class_names" holding a JSON list). Nothing is ever unpickled:
``.npz`` opens with ``allow_pickle=False`` and ``.pt`` with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cakd_viz.bundle.write import write_bundle
from cakd_viz.validate import BundleError, as_numpy

__all__ = ["SUPPORTED_EXTENSIONS", "import_file", "read_arrays"]

SUPPORTED_EXTENSIONS = (".npz", ".safetensors", ".pt", ".pth")
_KNOWN_KEYS = ("teacher", "labels", "student", "student_NAME", "class_names", "inputs")


def _pickle_refusal(src: Path) -> BundleError:
    return BundleError(
        f"{src.name}: contains pickled Python objects; refusing to load (only plain tensors are accepted)"
    )


def read_arrays(src: str | Path) -> dict[str, Any]:
    """Read every array of an import file: name -> numpy array; "class_names" -> list of str.

    Raises :class:`BundleError` for an unknown extension, an unreadable file, or pickled objects.
    """
    src = Path(src)
    ext = src.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise BundleError(
            f"{src.name}: unknown file type {ext!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not src.is_file():
        raise BundleError(f"{src}: no such file")
    if ext == ".npz":
        return _read_npz(src)
    if ext == ".safetensors":
        return _read_safetensors(src)
    return _read_torch(src)


def _read_npz(src: Path) -> dict[str, Any]:
    if not zipfile.is_zipfile(src):  # np.load would try to read it as .npy or as a pickle
        raise BundleError(f"{src.name}: cannot read this .npz file (it is not a zip archive)")
    out: dict[str, Any] = {}
    try:
        with np.load(src, allow_pickle=False) as npz:
            for key in npz.files:
                out[key] = npz[key]
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise _pickle_refusal(src) from None
        raise BundleError(f"{src.name}: cannot read this .npz file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{src.name}: cannot read this .npz file ({exc})") from exc
    if "class_names" in out:
        out["class_names"] = [_decode(x) for x in np.asarray(out["class_names"]).reshape(-1)]
    return out


def _decode(x: Any) -> Any:
    return (
        x.decode("utf-8", errors="replace") if isinstance(x, bytes) else x if isinstance(x, str) else str(x)
    )


def _read_safetensors(src: Path) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    out: dict[str, Any] = {}
    try:
        # framework "pt" reads every dtype, bfloat16 included (converted to float32 by as_numpy)
        with safe_open(str(src), framework="pt") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                out[key] = as_numpy(f.get_tensor(key), f"{src.name}: {key}")
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{src.name}: cannot read this .safetensors file ({exc})") from exc
    if "class_names" in metadata:
        try:
            names = json.loads(metadata["class_names"])
        except json.JSONDecodeError as exc:
            raise BundleError(f"{src.name}: metadata 'class_names' is not a JSON list ({exc})") from exc
        if not isinstance(names, list):
            raise BundleError(f"{src.name}: metadata 'class_names' must be a JSON list of strings")
        out["class_names"] = names
    return out


def _read_torch(src: Path) -> dict[str, Any]:
    import torch

    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # weights_only met a class or function: a real pickle
            refusal = _pickle_refusal(src)
            if "numpy" in str(exc):
                refusal = BundleError(f"{refusal}; save torch tensors, not numpy arrays (torch.from_numpy)")
            raise refusal from None
        raise BundleError(f"{src.name}: cannot read this file (not a valid PyTorch tensor file)") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{src.name}: cannot read this file ({str(exc).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise BundleError(f"{src.name}: expected a dict of tensors, found a {type(obj).__name__}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "students" and isinstance(value, dict):  # {"students": {"kd": tensor}} -> student_kd
            for name, arr in value.items():
                out[f"student_{name}"] = _torch_value(src, f"students.{name}", arr)
        elif key == "class_names" and isinstance(value, list | tuple):
            out[key] = list(value)
        else:
            out[str(key)] = _torch_value(src, str(key), value)
    return out


def _torch_value(src: Path, key: str, value: Any) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        return as_numpy(value, f"{src.name}: {key}")
    if isinstance(value, list | tuple):
        return as_numpy(value, f"{src.name}: {key}")
    raise BundleError(f"{src.name}: {key!r} holds a {type(value).__name__}, expected a tensor")


def _split_keys(src: Path, arrays: dict[str, Any], student_name: str) -> dict[str, Any]:
    """Map file keys to write_bundle arguments; precise errors for missing or unknown keys."""
    found = ", ".join(sorted(arrays)) or "none"
    if "teacher" not in arrays:
        raise BundleError(f"{src.name}: no 'teacher' array (keys found: {found})")
    students: dict[str, Any] = {}
    for key, arr in arrays.items():
        if key == "student":
            students[student_name] = arr
        elif key.startswith("student_"):
            students[key[len("student_") :]] = arr
        elif key not in ("teacher", "labels", "class_names", "inputs"):
            raise BundleError(f"{src.name}: unknown key {key!r}; expected {', '.join(_KNOWN_KEYS)}")
    if "student" in arrays and f"student_{student_name}" in arrays:
        raise BundleError(
            f"{src.name}: both 'student' and 'student_{student_name}' name student {student_name!r}"
        )
    if not students:
        raise BundleError(
            f"{src.name}: no student array (expected 'student' or 'student_NAME'; keys found: {found})"
        )
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
) -> Path:
    """Import a .npz/.safetensors/.pt/.pth file of logits into the bundle directory ``out``.

    ``student_name`` names the array stored as plain "student"; "student_NAME" arrays keep NAME.
    ``dtype`` "float16"/"float32" (default: keep the teacher's float16/float32). Returns ``out``.
    Every error is a :class:`BundleError` whose message starts with the source file's name.
    """
    src = Path(src)
    parts = _split_keys(src, read_arrays(src), student_name)
    meta = {"source": {"file": src.name, "format": src.suffix.lower().lstrip(".")}}
    try:
        return write_bundle(out, **parts, meta=meta, dtype=dtype, overwrite=overwrite)
    except BundleError as exc:
        raise BundleError(f"{src.name}: {exc}") from None
