"""Structured synthetic logits, for scale tests and demos (`cakd-viz synth`).

The C classes fall into F families of consecutive classes (named "f03/c17": class 17 of family 3).
Every sample has a label y, and its teacher logits are

    z_t[i] = sigma_f * u[fam(i)] + beta * [fam(i) == fam(y)] + sigma_c * e[i] + alpha * [i == y]

with u ~ N(0, 1) per (sample, family), e ~ N(0, 1) per (sample, class) and a per-sample margin
alpha = a0 * (0.3 + Beta(2, 1)), a0 growing like sqrt(2 log C) so that accuracy barely depends on C.
The shared family term makes classes of one family correlate strongly over the data set (Pearson r
about 0.8) and classes of different families hardly at all, so `corr:R` groups recover the families;
the teacher is accurate but not perfect (about 90-96%), and its mistakes stay mostly inside the family.

Student k (in the order given) is a noisier, rescaled copy of the teacher with noise of the same
family structure:  z_s = gamma_k * (z_t + eta_k * (sigma_f * v[fam(i)] + sigma_c * e'[i])),
eta_k = 0.6 * 1.8**k, gamma_k = 1 + 0.5 * k: the first ("kd") stays close to the teacher, the second
("ce") is noisier and over-confident, and so on.

Rows are generated in fixed blocks of `BLOCK_ROWS`, each from its own seeded stream (one per block and
per array), so the output depends only on the seed and the sizes, never on `chunk_rows`, and the
teacher does not change when students are added. `synth_bundle` streams chunks through `BundleWriter`,
so 1,280,000 x 1,000 float16 needs a few hundred MB of memory at most.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["BLOCK_ROWS", "SynthSpec", "synth_arrays", "synth_bundle"]

BLOCK_ROWS = 4096  # rows per seeded stream: fixes the output independently of the chunk size
DEFAULT_STUDENTS = ("kd", "ce")


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines a synthetic bundle's values."""

    classes: int  # C
    families: int  # F, groups of consecutive classes
    students: tuple[str, ...]  # names; the k-th is noisier than the (k-1)-th
    seed: int = 0
    sigma_f: float = 1.2  # std of the per-family shared logit (makes a family correlate)
    sigma_c: float = 0.6  # std of the per-class logit noise
    beta: float = 1.5  # lift of the true class's whole family
    noise0: float = 0.6  # student noise eta_k = noise0 * noise_growth**k
    noise_growth: float = 1.8
    scale_step: float = 0.5  # student logit scale gamma_k = 1 + scale_step * k

    @property
    def margin(self) -> float:
        """a0: the typical lift of the true class, grows like the max of C Gaussians."""
        return 1.0 + 1.1 * math.sqrt(2.0 * math.log(self.classes))

    def family_of_class(self) -> np.ndarray:
        """(C,) int64: the family of every class; families are consecutive, sizes differ by at most 1."""
        return np.arange(self.classes, dtype=np.int64) * self.families // self.classes

    def class_names(self) -> list[str]:
        """C names like "f03/c17" (family 3, its class 17)."""
        fam = self.family_of_class()
        first = np.searchsorted(fam, fam)  # index of each class's family's first class
        local = np.arange(self.classes) - first
        wf = max(2, len(str(self.families - 1)))
        wc = max(2, len(str(int(local.max()))))
        return [f"f{f:0{wf}d}/c{k:0{wc}d}" for f, k in zip(fam.tolist(), local.tolist(), strict=True)]

    def student_params(self, k: int) -> tuple[float, float]:
        """(eta_k, gamma_k): noise level and logit scale of the k-th student."""
        return self.noise0 * self.noise_growth**k, 1.0 + self.scale_step * k


def make_spec(
    classes: int, *, students: Sequence[str] = DEFAULT_STUDENTS, families: int | None = None, seed: int = 0
) -> SynthSpec:
    """A validated `SynthSpec`; families default to round(sqrt(C)), at least 2."""
    classes = _whole(classes, "classes", 2)
    if families is None:
        families = max(2, round(math.sqrt(classes)))
    if int(families) != families or not 1 <= families <= classes:
        raise ValueError(
            f"families must be a whole number in 1..{classes} (the number of classes), got {families!r}"
        )
    seed = _whole(seed, "seed", 0)
    names = tuple(students)
    if not names:
        raise ValueError("a synthetic bundle needs at least one student")
    if len(set(names)) != len(names):
        raise ValueError(f"student names must differ, got {list(names)}")
    return SynthSpec(classes=classes, families=int(families), students=names, seed=seed)


def _whole(value: object, name: str, minimum: int) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def synth_arrays(
    n: int,
    classes: int,
    *,
    students: Sequence[str] = DEFAULT_STUDENTS,
    families: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """In-memory synthetic logits: (teacher (n, C) float32, {name: (n, C) float32}, labels (n,) int64).

    The same values `synth_bundle` writes for these arguments (before rounding to the bundle dtype).
    """
    n, spec = _whole(n, "n", 1), make_spec(classes, students=students, families=families, seed=seed)
    return _rows(spec, 0, n, _buffers(spec, n))


def synth_bundle(
    out: str | Path,
    *,
    n: int,
    classes: int,
    students: Sequence[str] = DEFAULT_STUDENTS,
    families: int | None = None,
    dtype: str = "float16",
    seed: int = 0,
    chunk_rows: int = 16384,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic bundle of `n` samples x `classes` classes to `out`; returns its path.

    Rows are generated and written `chunk_rows` at a time (rounded to whole blocks of `BLOCK_ROWS`),
    so memory stays near 4 * chunk_rows * C * (3 + students) bytes whatever `n` is. `progress(done, n)`
    is called after each chunk. Deterministic for a seed; an existing `out` is replaced only with
    `overwrite`. Labels are included; class names are "fFF/cKK".
    """
    from cakd_viz.bundle.writer import BundleWriter

    n, spec = _whole(n, "n", 1), make_spec(classes, students=students, families=families, seed=seed)
    step = max(1, int(chunk_rows) // BLOCK_ROWS) * BLOCK_ROWS
    writer = BundleWriter(  # refuses a dtype other than float16/float32 before anything is written
        out,
        num_samples=n,
        num_classes=spec.classes,
        student_names=list(spec.students),
        dtype=dtype,
        class_names=spec.class_names(),
        with_labels=True,
        meta=_meta(spec),
        overwrite=overwrite,
    )
    buffers = _buffers(spec, min(step, n))
    with writer:
        for start in range(0, n, step):
            stop = min(n, start + step)
            teacher, student_logits, labels = _rows(spec, start, stop, buffers)
            writer.write(start, teacher=teacher, students=student_logits, labels=labels)
            if progress is not None:
                progress(stop, n)
        return writer.commit(check_values=False)  # every chunk was checked by write()


def _meta(spec: SynthSpec) -> dict:
    students = {}
    for k, name in enumerate(spec.students):
        eta, gamma = spec.student_params(k)
        students[name] = {
            "description": f"synthetic student: teacher + noise x{eta:.3g}, logits x{gamma:.3g}"
        }
    return {
        "source": "cakd-viz synth",
        "synth": {**asdict(spec), "students": list(spec.students), "block_rows": BLOCK_ROWS},
        "families": spec.family_of_class().tolist(),
        "teacher": {
            "description": "synthetic teacher: accurate but not perfect, classes in correlated families"
        },
        "students": students,
    }


def _rows(
    spec: SynthSpec, start: int, stop: int, buffers: tuple
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Rows [start, stop) of every array, written into (views of) ``buffers``; `start` is a multiple of
    BLOCK_ROWS. `buffers` (teacher (>= n, C), {name: (>= n, C)}, labels (>= n,)): see `_buffers`."""
    n = stop - start
    teacher = buffers[0][:n]
    students = {name: arr[:n] for name, arr in buffers[1].items()}
    labels = buffers[2][:n]
    sizes = np.bincount(spec.family_of_class(), minlength=spec.families)  # (F,) classes per family
    for b0 in range(start, stop, BLOCK_ROWS):
        rows = slice(b0 - start, min(stop, b0 + BLOCK_ROWS) - start)
        block = b0 // BLOCK_ROWS
        _teacher_block(spec, sizes, block, teacher[rows], labels[rows])
        for k, name in enumerate(spec.students):
            _student_block(spec, sizes, block, k, teacher[rows], students[name][rows])
    return teacher, students, labels


def _buffers(spec: SynthSpec, n: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    c = spec.classes
    students = {name: np.empty((n, c), dtype=np.float32) for name in spec.students}
    return np.empty((n, c), dtype=np.float32), students, np.empty(n, dtype=np.int64)


def _rng(spec: SynthSpec, block: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, block, stream])


def _teacher_block(spec: SynthSpec, sizes: np.ndarray, block: int, z: np.ndarray, y: np.ndarray) -> None:
    """Fill one block's teacher logits z (m, C) float32 and labels y (m,) (see the module docstring)."""
    rng = _rng(spec, block, 0)
    m = z.shape[0]
    rows = np.arange(m)
    y[:] = rng.integers(0, spec.classes, size=m)
    u = rng.standard_normal((m, spec.families), dtype=np.float32) * np.float32(spec.sigma_f)  # (m, F)
    fam_of_label = np.searchsorted(np.cumsum(sizes), y, side="right")
    u[rows, fam_of_label] += np.float32(spec.beta)
    alpha = spec.margin * (0.3 + rng.beta(2.0, 1.0, size=m))  # (m,) per-sample difficulty
    rng.standard_normal(dtype=np.float32, out=z)
    z *= np.float32(spec.sigma_c)
    z += np.repeat(u, sizes, axis=1)  # (m, C): each family's shared term on its consecutive classes
    z[rows, y] += alpha.astype(np.float32)


def _student_block(
    spec: SynthSpec, sizes: np.ndarray, block: int, k: int, zt: np.ndarray, z: np.ndarray
) -> None:
    """Fill student k's logits z (m, C) float32 for one block, from the teacher's zt (m, C)."""
    rng = _rng(spec, block, 1 + k)
    eta, gamma = spec.student_params(k)
    v = rng.standard_normal((zt.shape[0], spec.families), dtype=np.float32)  # (m, F)
    v *= np.float32(spec.sigma_f * eta)
    rng.standard_normal(dtype=np.float32, out=z)
    z *= np.float32(spec.sigma_c * eta)
    z += np.repeat(v, sizes, axis=1)
    z += zt
    z *= np.float32(gamma)
