"""The fused CPU kernel of the CAKD loss (`_native/cakd_kernel.c`): built on first use, cached, optional.

The C source is compiled once per machine with the system C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) into ``$CAKD_VIZ_CACHE_DIR/native/`` (default ``~/.cache/cakd-viz/native/``), named by a hash
of the source, the flags and the platform, written to a temporary file and renamed, so that concurrent
processes (a sweep's trials) never load a half-written library. It needs no Python or torch headers:
plain C and libm, loaded with ctypes, built in about a second.

Where there is no compiler, the build fails, or ``CAKD_VIZ_NATIVE=0`` is set, `kernel()` returns None
and the losses use their tensor-op kernel (same results to rounding, slower on small CPU batches);
`status()` says which and why, and the first fallback is logged as a warning.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("_native") / "cakd_kernel.c"
# -fassociative-math lets the compiler vectorise the sums (their order changes, nothing else);
# no -ffast-math: NaN, infinities and signed comparisons keep their IEEE meaning.
FLAGS = (
    "-O3", "-fPIC", "-shared", "-pthread", "-std=gnu99",
    "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros",
)  # fmt: skip
# Tried first on x86-64: glibc's libmvec gives a vector expf (about 3x faster than the portable one).
VARIANTS = (("mvec", ("-DCAKD_MVEC",), ("-lmvec", "-lm")), ("portable", (), ("-lm",)))
ABI_VERSION = 3
ROW = 8  # doubles per row in the kernel's per-row record
ENV_SWITCH = "CAKD_VIZ_NATIVE"
ENV_CACHE = "CAKD_VIZ_CACHE_DIR"

log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, object] = {}

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


def cache_dir() -> Path:
    root = os.environ.get(ENV_CACHE, "").strip()
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "cakd-viz"
    return base / "native"


def _compiler() -> str | None:
    for name in (os.environ.get("CC", "").strip(), "cc", "gcc", "clang"):
        if name and shutil.which(name.split()[0]):
            return name
    return None


def _library_path(compiler: str, flags: tuple[str, ...]) -> Path:
    key = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        " ".join(flags).encode(),
        compiler.encode(),
        platform.machine().encode(),
    ):
        key.update(part)
        key.update(b"\0")
    suffix = ".dll" if sys.platform == "win32" else ".so"
    return cache_dir() / f"cakd_kernel-{key.hexdigest()[:16]}{suffix}"


def _build(compiler: str, flags: tuple[str, ...], libs: tuple[str, ...], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-", suffix=target.suffix)
    os.close(fd)
    try:
        cmd = [*compiler.split(), *flags, "-o", tmp, str(SOURCE), *libs]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()[-800:]}")
        os.replace(tmp, target)  # atomic: another process sees the old state or the whole library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> Kernel:
    lib = ctypes.CDLL(str(path))
    if lib.cakd_kernel_version() != ABI_VERSION:
        raise RuntimeError(f"{path} has ABI version {lib.cakd_kernel_version()}, expected {ABI_VERSION}")
    forward, backward = {}, {}
    for dtype, suffix in (("float32", "f32"), ("float64", "f64")):
        fwd, bwd = getattr(lib, f"cakd_forward_{suffix}"), getattr(lib, f"cakd_backward_{suffix}")
        fwd.argtypes, fwd.restype = _FORWARD, _int
        bwd.argtypes, bwd.restype = _BACKWARD, None
        forward[dtype], backward[dtype] = fwd, bwd
    return Kernel(path, forward, backward)


def kernel() -> Kernel | None:
    """The fused kernel, building it on the first call; None where it is switched off or cannot be built."""
    if "kernel" in _state:
        return _state["kernel"]  # type: ignore[return-value]
    with _lock:
        if "kernel" not in _state:
            _state["kernel"], _state["reason"] = _make()
            if _state["kernel"] is None and os.environ.get(ENV_SWITCH, "").strip() != "0":
                log.warning(
                    "cakd-viz: the fused CAKD kernel is not available (%s); using tensor ops",
                    _state["reason"],
                )
    return _state["kernel"]  # type: ignore[return-value]


def _make() -> tuple[Kernel | None, str]:
    if os.environ.get(ENV_SWITCH, "").strip() == "0":
        return None, f"switched off by {ENV_SWITCH}=0"
    compiler = _compiler()
    if compiler is None:
        return None, "no C compiler found (set CC, or install gcc)"
    errors = []
    for name, extra, libs in VARIANTS:
        if name == "mvec" and (
            platform.machine() not in ("x86_64", "AMD64") or not sys.platform.startswith("linux")
        ):
            continue
        flags = (*FLAGS, *extra)
        try:
            path = _library_path(compiler, flags)
            failed = path.with_suffix(".failed")
            if failed.is_file():  # this variant did not build here before: do not retry every process
                raise RuntimeError(failed.read_text().strip()[-400:])
            if not path.is_file():
                try:
                    _build(compiler, flags, libs, path)
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    if name != VARIANTS[-1][0]:
                        failed.write_text(str(exc))
                    raise
            return _load(path), f"{name} build ({compiler}) at {path}"
        except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    return None, "; ".join(errors)


def status() -> str:
    """One line: whether the fused kernel is in use, and where it was built or why not."""
    k = kernel()
    return f"fused CPU kernel: {_state['reason']}" if k else f"tensor-op kernel: {_state['reason']}"


def reset() -> None:
    """Forget the loaded kernel (tests; after changing CAKD_VIZ_NATIVE or CC)."""
    with _lock:
        _state.clear()
