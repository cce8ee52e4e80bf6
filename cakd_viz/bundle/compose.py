"""A read-only view of a bundle with extra students taken from other bundles (e.g. finished runs).

A run writes its own bundle (its student, and the teacher's logits on the held-out split); to set the
tuned student beside the shipped ones, ``compose_students`` checks that the other bundle describes the
same samples (N, C, class names and labels equal) and the same teacher (logits equal within a stated
tolerance), then returns a new ``Bundle`` whose students are the base's plus the extra ones. Nothing
is written: the extra students stay memory-mapped from their own folders.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cakd_viz.bundle.core import Bundle
from cakd_viz.validate import iter_row_chunks

# float16 storage rounds a logit to about 2^-11 of its size (0.0078 at |z| = 28): well inside these
TEACHER_RTOL = 1e-3
TEACHER_ATOL = 1e-3


def check_same_teacher(base: Bundle, other: Bundle, *, name: str = "the other bundle") -> None:
    """ValueError (one line) unless ``other`` has the same N, C, class names, labels and teacher logits
    (|a - b| <= TEACHER_ATOL + TEACHER_RTOL * |b|, element-wise, read chunk by chunk) as ``base``."""
    if (other.num_samples, other.num_classes) != (base.num_samples, base.num_classes):
        raise ValueError(
            f"{name} has {other.num_samples:,} samples x {other.num_classes:,} classes, the open bundle "
            f"{base.num_samples:,} x {base.num_classes:,}: not the same data"
        )
    if [str(c) for c in other.class_names] != [str(c) for c in base.class_names]:
        raise ValueError(f"{name} names its classes differently from the open bundle")
    if (base.labels is None) != (other.labels is None):
        raise ValueError(f"{name} and the open bundle differ in having labels")
    if base.labels is not None and not np.array_equal(np.asarray(base.labels), np.asarray(other.labels)):
        raise ValueError(f"{name} has other labels than the open bundle: not the same held-out samples")
    for rows in iter_row_chunks(base.num_samples, base.num_classes):
        a = np.asarray(other.teacher[rows], dtype=np.float64)
        b = np.asarray(base.teacher[rows], dtype=np.float64)
        if (np.abs(a - b) > TEACHER_ATOL + TEACHER_RTOL * np.abs(b)).any():
            diff = float(np.abs(a - b).max())
            raise ValueError(
                f"{name} was made with another teacher: its teacher logits differ from the open bundle's by "
                f"up to {diff:.3g} (allowed: {TEACHER_ATOL:g} + {TEACHER_RTOL:g}·|z|)"
            )


def compose_students(base: Bundle, extra: dict[str, tuple[Bundle, str]]) -> Bundle:
    """``base`` with more students: ``extra`` maps a new student name to (its bundle, which of its students).

    Every extra bundle must pass ``check_same_teacher``; a name already in ``base`` is refused. The
    result shares ``base``'s arrays, path and class names; its ``meta["composed"]`` lists where each
    extra student comes from.
    """
    students = dict(base.students)
    sources = {}
    for new_name, (other, student) in extra.items():
        if new_name in students:
            raise ValueError(f"student {new_name!r} is in the open bundle already")
        check_same_teacher(base, other, name=new_name)
        students[new_name] = other.student(student)
        sources[new_name] = {"path": str(other.path), "student": student}
    meta = dict(base.meta) | {"composed": sources}
    meta["students"] = dict(base.meta.get("students") or {}) | {
        n: dict((other.meta.get("students") or {}).get(s) or {}) for n, (other, s) in extra.items()
    }
    view = dataclasses.replace(base, meta=meta, students=students)  # a fresh predictions cache
    # holding what was worked out already (opening a bundle scans each file for them): no other argmax pass
    known = [*base.known_predictions().items()]
    known += [(n, other.known_predictions().get(s)) for n, (other, s) in extra.items()]
    for who, pred in known:
        if pred is not None:
            view.remember_predictions(who, pred)
    return view
