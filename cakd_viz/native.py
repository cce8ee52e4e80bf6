"""Plain C kernels, compiled on first use with the system C compiler, cached, and optional.

A `NativeLibrary` names one C source of the package (the loss kernel, declared in
``losses/native_kernel.py``; the decomposition kernel, in ``decomposition/native_path.py``). The first
``get()`` compiles it once per machine with ``$CC`` (else cc, gcc or clang) into
``$CAKD_VIZ_CACHE_DIR/native/`` (default ``~/.cache/cakd-viz/native/``), named by a hash of the source
with the headers it includes, the flags and the platform, written to a temporary file and renamed, so that
concurrent processes (a sweep's trials) never load a half-written library. Plain C, libm and pthreads
through ctypes: no Python or torch headers. Without a compiler, on a failed build or with
``CAKD_VIZ_NATIVE=0`` (a ``cakd_viz.settings`` flag), ``get()`` returns None and the caller uses its
tensor ops; ``status()`` says which and why, and each library's first fallback is logged (not when it
was switched off).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from cakd_viz import atomic, settings

STRICT_FLAGS = ("-O3", "-fPIC", "-shared", "-pthread", "-std=gnu99", "-fno-math-errno", "-fno-trapping-math")
# -fassociative-math lets the compiler vectorise the sums (their order changes, nothing else);
# no -ffast-math: NaN, infinities and signed comparisons keep their IEEE meaning.
FLAGS = (*STRICT_FLAGS, "-fassociative-math", "-fno-signed-zeros")
# Tried first on x86-64: glibc's libmvec gives a vector expf (about 3x faster than the portable one).
VARIANTS = (("mvec", ("-DCAKD_MVEC",), ("-lmvec", "-lm")), ("portable", (), ("-lm",)))
ENV_SWITCH = "CAKD_VIZ_NATIVE"
ENV_CACHE = "CAKD_VIZ_CACHE_DIR"
# Where the package's kernels are declared. `status()` imports these by name so that it lists every
# kernel, built or not yet: a registry lookup, not a dependency (nothing in this module uses them).
KERNEL_MODULES = ("cakd_viz.losses.native_kernel", "cakd_viz.decomposition.native_path")

log = logging.getLogger(__name__)
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
T = TypeVar("T")
LIBRARIES: dict[str, NativeLibrary] = {}  # every library declared so far, by name (for status())


def cache_dir() -> Path:
    """Where built libraries are kept: ``$CAKD_VIZ_CACHE_DIR/native``, else ``~/.cache/cakd-viz/native``."""
    root = os.environ.get(ENV_CACHE, "").strip()
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "cakd-viz"
    return base / "native"


class NativeLibrary(Generic[T]):
    """One C source, built and loaded on the first ``get()``.

    ``bind(lib, path)`` declares the ctypes signatures and returns the object callers use (a small
    record of entry points; if it has a ``describe()`` method, ``status()`` adds its line). The source
    must export ``int NAME_version(void)`` returning ``abi_version``; the loader calls it first, so a
    stale cached build is never used. ``flags`` and ``variants`` (name, extra flags, libraries; tried in
    order) default to this module's ``FLAGS`` and ``VARIANTS``, looked up at build time.
    """

    def __init__(
        self,
        name: str,
        source: Path,
        abi_version: int,
        bind: Callable[[ctypes.CDLL, Path], T],
        what: str,
        *,
        flags: tuple[str, ...] | None = None,
        variants: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] | None = None,
    ) -> None:
        self.name, self.source, self.abi_version, self.bind, self.what = name, source, abi_version, bind, what
        self.flags, self.variants = flags, variants
        self._lock = threading.Lock()
        self._state: dict[str, object] = {}
        LIBRARIES[name] = self

    def get(self) -> T | None:
        """The bound library, building it on the first call; None where it is off or cannot be built."""
        if "kernel" in self._state:
            return self._state["kernel"]  # type: ignore[return-value]
        with self._lock:
            if "kernel" not in self._state:
                self._state["kernel"], self._state["reason"] = self._make()
                if self._state["kernel"] is None and settings.flag(ENV_SWITCH):
                    log.warning(
                        "cakd-viz: the %s is not available (%s); using tensor ops",
                        self.what,
                        self._state["reason"],
                    )
        return self._state["kernel"]  # type: ignore[return-value]

    def status(self) -> str:
        """One line: whether the fused kernel is in use, and where it was built or why not."""
        kern = self.get()
        reason = self._state["reason"]
        if kern is None:
            return f"tensor-op kernel: {reason}"
        describe = getattr(kern, "describe", None)
        return f"fused CPU kernel: {reason}" + (f"; {describe()}" if describe else "")

    def reset(self) -> None:
        """Forget the loaded library (tests; after changing CAKD_VIZ_NATIVE or CC)."""
        with self._lock:
            self._state.clear()

    def _make(self) -> tuple[T | None, str]:
        if not settings.flag(ENV_SWITCH):  # 0, false, no or off; a value not understood is a ValueError
            return None, f"switched off by {ENV_SWITCH}={os.environ[ENV_SWITCH].strip()}"
        compiler = _compiler()
        if compiler is None:
            return None, "no C compiler found (set CC, or install gcc)"
        errors = []
        variants = VARIANTS if self.variants is None else self.variants
        for variant, extra, libs in variants:
            if variant == "mvec" and not _has_libmvec():
                continue
            flags = (*(FLAGS if self.flags is None else self.flags), *extra)
            try:
                path = self._library_path(compiler, flags)
                failed = path.with_suffix(".failed")
                if failed.is_file():  # this variant did not build here before: do not retry every process
                    raise RuntimeError(failed.read_text().strip()[-400:])
                if not path.is_file():
                    try:
                        _build(compiler, flags, libs, self.source, path)
                    except (RuntimeError, subprocess.SubprocessError) as exc:
                        # a source this compiler refuses; not a build cut off on a busy machine (try again)
                        if variant != variants[-1][0] and not isinstance(exc, subprocess.TimeoutExpired):
                            failed.write_text(str(exc))
                        raise
                return self._load(path), f"{variant} build ({compiler}) at {path}"
            except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
                errors.append(f"{variant}: {type(exc).__name__}: {exc}")
        return None, "; ".join(errors)

    def _library_path(self, compiler: str, flags: tuple[str, ...]) -> Path:
        parts = [f.read_bytes() for f in source_files(self.source)]
        parts += [" ".join(flags).encode(), compiler.encode(), platform.machine().encode()]
        key = hashlib.sha256(b"".join(part + b"\0" for part in parts))  # each part ends in a NUL
        suffix = ".dll" if sys.platform == "win32" else ".so"
        return cache_dir() / f"{self.name}-{key.hexdigest()[:16]}{suffix}"

    def _load(self, path: Path) -> T:
        lib = ctypes.CDLL(str(path))
        version = getattr(lib, f"{self.name}_version")
        version.restype = ctypes.c_int
        if version() != self.abi_version:
            raise RuntimeError(f"{path} has ABI version {version()}, expected {self.abi_version}")
        return self.bind(lib, path)


def status() -> list[str]:
    """One line per C kernel of the package: which one computes, and where it was built or why not."""
    for module in KERNEL_MODULES:
        importlib.import_module(module)  # declares its library (see KERNEL_MODULES)
    return [f"{name}: {LIBRARIES[name].status()}" for name in sorted(LIBRARIES)]


def source_files(source: Path) -> list[Path]:
    """The C source and every header it includes by a quoted path (``#include "../grouping/rules.h"``),
    recursively, resolved as the compiler does (relative to the including file): what a build's hash
    covers."""
    found: list[Path] = []
    todo = [source.resolve()]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.append(path)
        for name in _INCLUDE.findall(path.read_text(errors="replace")):
            todo.append((path.parent / name).resolve())
    return found


def _has_libmvec() -> bool:
    return platform.machine() in ("x86_64", "AMD64") and sys.platform.startswith("linux")


def _compiler() -> str | None:
    for name in (os.environ.get("CC", "").strip(), "cc", "gcc", "clang"):
        if name and shutil.which(name.split()[0]):
            return name
    return None


def _build(compiler: str, flags: tuple[str, ...], libs: tuple[str, ...], source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(target) as tmp:  # another process sees no library or the whole one
        cmd = [*compiler.split(), *flags, "-o", str(tmp), str(source), *libs]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()[-800:]}")
